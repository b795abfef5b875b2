package paywall_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/redisrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// The cluster tests run three Caddy instances of one site (A, B and C: the
// same Caddyfile, cookie secret, webhook secret and Stripe) that share a
// real redis-server. Stripe's webhooks reach A only, as when a load
// balancer sends each delivery to one instance. Every deadline below is
// the claim it checks: the tests poll a condition until it holds or the
// deadline passes, and never sleep in place of waiting for something.
//
// None calls t.Parallel: go test runs the tests that do only after the
// others, so these run with no other Caddy competing for the CPU. Every
// Redis operation has a bound of 50 ms, and one that a starved CPU makes
// late counts as a failure: the instance then keeps to its own memory and
// limits for a second, which is the fallback, not the sharing under test.
// When a claim fails, the message says how many Redis operations each
// instance counted as failed (e2eCluster.redisErrors).

// e2eClusterCaddyfile is the site every instance runs; EXTRA is replaced
// by a test's own options.
const e2eClusterCaddyfile = `http://127.0.0.1:{{.HTTPPort}} {
	paywall /premium/* {
		secret_key {env.E2E_STRIPE_SECRET_KEY}
		price price_demo_monthly
		api_url {env.E2E_API_URL}
		webhook_secret {env.E2E_STRIPE_WEBHOOK_SECRET}
		cookie_secret {env.E2E_COOKIE_SECRET}
		redis {env.PAYWALL_REDIS_URL}
EXTRA	}
	respond "premium content"
}
`

// e2eSubscriptionList is the fake's counter of subscription-list requests,
// the read that tells the paywall whether a customer pays.
const e2eSubscriptionList = "GET /v1/subscriptions"

type e2eCluster struct {
	fake  *stripefake.Server
	redis *redisrun.Server
	nodes []*caddyrun.Instance // A, B, C
	names []string
}

// e2eStartCluster starts Redis, the fake Stripe and three instances of
// the site, with extra (whole lines) added to the paywall block. The fake
// delivers webhooks to A only.
func e2eStartCluster(t *testing.T, extra string) *e2eCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs caddy and redis-server")
	}
	// First, so that Redis stops after the instances.
	rs := redisrun.Start(t)
	fake := e2eFake(t)
	webhookSecret := stripefake.NewWebhookSecret()
	env := map[string]string{
		"E2E_STRIPE_SECRET_KEY":     "sk_test_e2e" + e2eRandomHex(t),
		"E2E_STRIPE_WEBHOOK_SECRET": webhookSecret,
		"E2E_COOKIE_SECRET":         "cookie-" + e2eRandomHex(t) + e2eRandomHex(t),
		"PAYWALL_REDIS_URL":         rs.URL(),
	}
	caddyfile := strings.Replace(e2eClusterCaddyfile, "EXTRA", extra, 1)
	cl := &e2eCluster{fake: fake, redis: rs, names: []string{"A", "B", "C"}}
	for range cl.names {
		cl.nodes = append(cl.nodes, e2eCaddy(t, fake, caddyfile, env))
	}
	fake.AddWebhookEndpoint(cl.nodes[0].URL()+"/paywall/webhook", webhookSecret)
	// Cleanups run last-in first-out: deliveries finish while Caddy runs.
	t.Cleanup(fake.WaitDeliveries)
	return cl
}

// redisErrors says how many Redis operations each instance counted as
// failed, for the messages of failed claims.
func (cl *e2eCluster) redisErrors(t *testing.T) string {
	t.Helper()
	var parts []string
	for i, n := range cl.nodes {
		parts = append(parts, fmt.Sprintf("%s %d", cl.names[i], e2eRedisErrors(t, n)))
	}
	return "failed Redis operations: " + strings.Join(parts, ", ")
}

// e2eStatus asks for u as a program would, without failing the test, so
// that goroutines may call it.
func e2eStatus(c *http.Client, u string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(body), err
}

// e2eSubscribed pays on site with browser c (see e2eSubscribe), waits for
// the checkout's webhooks and returns the customer, as the browser's cookie
// names it (<customer>.<expiry>.<signature>), and its subscription.
func e2eSubscribed(t *testing.T, fake *stripefake.Server, c *http.Client, site string) (customer, sub string) {
	t.Helper()
	e2eSubscribe(t, fake, c, site)
	fake.WaitDeliveries()
	cookie := e2eCookie(c, site, "paywall")
	customer, _, _ = strings.Cut(cookie, ".")
	subs := fake.Subscriptions(customer)
	if len(subs) != 1 || subs[0].Status != "active" {
		t.Fatalf("subscriptions of the browser's customer %q (cookie %q): %+v, want one active", customer, cookie, subs)
	}
	return customer, subs[0].ID
}

// e2eDelivered fails the test unless the events of type typ generated
// after the first `from` deliveries reached A with a 2xx.
func e2eDelivered(t *testing.T, fake *stripefake.Server, from int, typ string) time.Time {
	t.Helper()
	var at time.Time
	for _, d := range fake.Deliveries()[from:] {
		if d.Type != typ {
			continue
		}
		if !d.OK {
			t.Fatalf("delivery of %s to A failed: status %d %s", d.Type, d.StatusCode, d.Err)
		}
		at = d.At
	}
	if at.IsZero() {
		t.Fatalf("%s was not delivered", typ)
	}
	return at
}

// e2eUntil402 asks each node for path with browser c until every one
// answers 402, or until deadline; it returns, for each, how long after from
// it first did (-1 if it did not). Any answer but 200 or 402 fails the test.
func e2eUntil402(t *testing.T, c *http.Client, nodes []*caddyrun.Instance, path string, from, deadline time.Time) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(nodes))
	left := len(nodes)
	for i := range took {
		took[i] = -1
	}
	for {
		for i, n := range nodes {
			if took[i] >= 0 {
				continue
			}
			status, body, err := e2eStatus(c, n.URL()+path)
			if err != nil {
				t.Fatalf("GET %s: %v", n.URL()+path, err)
			}
			switch status {
			case http.StatusOK:
			case http.StatusPaymentRequired:
				took[i] = time.Since(from)
				left--
				if p := e2eProblem(t, body); p.Reason != "subscription_ended" {
					t.Errorf("%s: reason %q, want subscription_ended", n.URL(), p.Reason)
				}
			default:
				t.Fatalf("GET %s = %d, want 200 or 402\n%s", n.URL()+path, status, body)
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return took
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval, not a wait for an event
	}
}

// A payer let in on one instance is let in on the others from what it
// stored in Redis, with no Stripe read of theirs; a cancellation delivered
// to one instance ends access on all within a second.
func TestEndToEndClusterSharesAPayer(t *testing.T) {
	cl := e2eStartCluster(t, "")
	fake, a, b, c := cl.fake, cl.nodes[0], cl.nodes[1], cl.nodes[2]
	// One browser for the three: its cookie jar, as browsers do, sends
	// 127.0.0.1's cookies to every port.
	payer := e2eBrowser(t)
	customer, sub := e2eSubscribed(t, fake, payer, a.URL())

	// A reads the customer once and leaves the facts in Redis. The
	// checkout's webhooks were applied before: none comes after to
	// make these facts old.
	before := fake.Calls(e2eSubscriptionList)
	if res, body := e2eGet(t, payer, a.URL()+"/premium/x", "text/html"); res.StatusCode != http.StatusOK || body != "premium content" {
		t.Fatalf("A after paying: %d %q", res.StatusCode, body)
	}
	if n := fake.Calls(e2eSubscriptionList) - before; n != 1 {
		t.Errorf("A made %d subscription reads for a payer it never read, want 1", n)
	}

	// B and C, which never saw this visitor, let the same browser in
	// from Redis. Twice each: the second request comes after each
	// instance subscribed to invalidations, which makes it check its
	// facts against Redis again.
	before = fake.Calls(e2eSubscriptionList)
	for i := 0; i < 2; i++ {
		for _, n := range []*caddyrun.Instance{b, c} {
			if res, body := e2eGet(t, payer, n.URL()+"/premium/x", "text/html"); res.StatusCode != http.StatusOK || body != "premium content" {
				t.Fatalf("%s with A's cookie: %d %q", n.URL(), res.StatusCode, body)
			}
		}
	}
	if n := fake.Calls(e2eSubscriptionList) - before; n != 0 {
		t.Errorf("B and C made %d subscription reads, want 0 (Redis held A's): %v; %s", n, fake.CallCounts(), cl.redisErrors(t))
	}

	// The subscription ends; Stripe tells A only.
	deliveries := len(fake.Deliveries())
	cancelled := time.Now()
	if err := fake.CancelSubscription(sub); err != nil {
		t.Fatal(err)
	}
	took := e2eUntil402(t, payer, []*caddyrun.Instance{b, c}, "/premium/x", cancelled, cancelled.Add(time.Second))
	fake.WaitDeliveries()
	delivered := e2eDelivered(t, fake, deliveries, "customer.subscription.deleted")
	for i, d := range took {
		name := cl.names[i+1]
		if d < 0 {
			t.Errorf("%s still lets %s in 1 s after the cancellation (delivered to A %v after it); %s",
				name, customer, delivered.Sub(cancelled).Round(time.Millisecond), cl.redisErrors(t))
			continue
		}
		t.Logf("%s answered 402 %v after the cancellation, %v after A answered the webhook",
			name, d.Round(time.Millisecond), cancelled.Add(d).Sub(delivered).Round(time.Millisecond))
	}
	if status, body, err := e2eStatus(payer, a.URL()+"/premium/x"); err != nil || status != http.StatusPaymentRequired {
		t.Errorf("A after the cancellation: %d %v\n%s", status, err, body)
	}
}

// A rate limit counts one address's requests on every instance together.
func TestEndToEndClusterLimitsHoldAcrossInstances(t *testing.T) {
	cl := e2eStartCluster(t, "\t\tcheckout_limit 2 per 10m\n")
	want := []int{http.StatusSeeOther, http.StatusSeeOther, http.StatusTooManyRequests}
	for i, n := range cl.nodes {
		// A new browser each time: the limit is the address's.
		res, body := e2eGet(t, e2eBrowser(t), n.URL()+"/paywall/checkout?return=/premium/x", "text/html")
		if res.StatusCode != want[i] {
			t.Errorf("checkout %d, on %s: %d, want %d; %s\n%s", i+1, cl.names[i], res.StatusCode, want[i], cl.redisErrors(t), body)
		}
		if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Errorf("the 429 on %s has no Retry-After", cl.names[i])
		}
	}
	if n := cl.fake.Calls("POST /v1/checkout/sessions"); n != 2 {
		t.Errorf("%d Checkout Sessions, want 2", n)
	}
}

// e2eRedisErrors reads caddy_paywall_redis_errors_total from an
// instance's admin API.
func e2eRedisErrors(t *testing.T, inst *caddyrun.Instance) int {
	t.Helper()
	res, err := http.Get(inst.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "caddy_paywall_redis_errors_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("caddy_paywall_redis_errors_total %q: %v", v, err)
			}
			return int(f)
		}
	}
	return 0
}

// e2eRedisErrorsReach reports whether an instance's Redis errors reach n
// within timeout.
func e2eRedisErrorsReach(t *testing.T, inst *caddyrun.Instance, n int, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for e2eRedisErrors(t, inst) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling Caddy's metrics, another process
	}
	return true
}

// e2eLogged returns when an instance logged a message that starts with
// msg, from its JSON log lines' ts, for those in [from, to).
func e2eLogged(t *testing.T, inst *caddyrun.Instance, msg string, from, to time.Time) []time.Time {
	t.Helper()
	var at []time.Time
	for _, line := range strings.Split(inst.Logs(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var entry struct {
			TS  float64 `json:"ts"`
			Msg string  `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("a log line that holds %q is not JSON: %v\n%s", msg, err, line)
			continue
		}
		if !strings.HasPrefix(entry.Msg, msg) {
			continue
		}
		ts := time.Unix(0, int64(entry.TS*1e9))
		if !ts.Before(from) && ts.Before(to) {
			at = append(at, ts)
		}
	}
	return at
}

// e2eWaitLogged reports whether an instance logs msg (see e2eLogged) at
// from or later, within timeout of from.
func e2eWaitLogged(t *testing.T, inst *caddyrun.Instance, msg string, from time.Time, timeout time.Duration) bool {
	t.Helper()
	for len(e2eLogged(t, inst, msg, from, from.Add(time.Hour))) == 0 {
		if time.Since(from) > timeout {
			return false
		}
		time.Sleep(10 * time.Millisecond) // another process's output, through a pipe
	}
	return true
}

// e2eLoad keeps asking every instance for the paid page as a paying
// browser, from several goroutines, and counts what was not 200.
type e2eLoad struct {
	served   []atomic.Int64 // answers per instance
	failed   atomic.Int64
	mu       sync.Mutex
	failures []string // the first few
	stop     chan struct{}
	wg       sync.WaitGroup
}

func e2eStartLoad(browser *http.Client, nodes []*caddyrun.Instance, perNode int) *e2eLoad {
	// A request that hangs counts as failed, and end does not wait for
	// it for ever.
	c := *browser
	c.Timeout = 10 * time.Second
	l := &e2eLoad{served: make([]atomic.Int64, len(nodes)), stop: make(chan struct{})}
	for i, n := range nodes {
		for g := 0; g < perNode; g++ {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					status, body, err := e2eStatus(&c, n.URL()+"/premium/x")
					l.served[i].Add(1)
					if err != nil || status != http.StatusOK {
						l.failed.Add(1)
						l.mu.Lock()
						if len(l.failures) < 10 {
							l.failures = append(l.failures, fmt.Sprintf("%s %s: %d %v %.200s",
								time.Now().Format("15:04:05.000"), n.URL(), status, err, body))
						}
						l.mu.Unlock()
					}
				}
			}()
		}
	}
	return l
}

// counts returns how many answers each instance gave so far.
func (l *e2eLoad) counts() []int64 {
	out := make([]int64, len(l.served))
	for i := range l.served {
		out[i] = l.served[i].Load()
	}
	return out
}

// waitMore waits until every instance answered n more requests than in
// since, and fails the test if that takes longer than timeout.
func (l *e2eLoad) waitMore(t *testing.T, since []int64, n int64, timeout time.Duration, when string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		now := l.counts()
		done := true
		for i := range now {
			done = done && now[i]-since[i] >= n
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the instances answered %v requests in %v (from %v), want %d more each", when, now, timeout, since, n)
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval
	}
}

func (l *e2eLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// Redis dies under load: paying visitors keep being served by every
// instance; a cancellation delivered to A during the outage applies on A at
// once and reaches B and C within the stated bound once Redis returns
// (empty, as a Redis without persistence comes back).
func TestEndToEndClusterSurvivesRedisDying(t *testing.T) {
	// A long cache_ttl: B and C can learn of the cancellation only from
	// Redis, not from their facts ageing.
	cl := e2eStartCluster(t, "\t\tcache_ttl 10m\n")
	fake, a, b, c := cl.fake, cl.nodes[0], cl.nodes[1], cl.nodes[2]
	steady := e2eBrowser(t)    // pays throughout, and asks all the time
	canceller := e2eBrowser(t) // cancels while Redis is down
	e2eSubscribed(t, fake, steady, a.URL())
	_, sub := e2eSubscribed(t, fake, canceller, a.URL())
	newcomer := e2eBrowser(t) // first comes while Redis is down
	e2eSubscribed(t, fake, newcomer, a.URL())
	for _, br := range []*http.Client{steady, canceller} {
		for i, n := range cl.nodes {
			if status, body, err := e2eStatus(br, n.URL()+"/premium/x"); err != nil || status != http.StatusOK {
				t.Fatalf("%s before the outage: %d %v\n%s", cl.names[i], status, err, body)
			}
		}
	}

	load := e2eStartLoad(steady, cl.nodes, 2)
	stopped := false
	defer func() {
		if !stopped {
			load.end()
		}
	}()
	load.waitMore(t, make([]int64, len(cl.nodes)), 20, 10*time.Second, "before the outage")

	errs := make([]int, len(cl.nodes))
	for i, n := range cl.nodes {
		errs[i] = e2eRedisErrors(t, n)
	}
	killed := time.Now()
	cl.redis.Kill()
	mark := load.counts()
	logged := true
	for i, n := range cl.nodes {
		if !e2eWaitLogged(t, n, "redis unavailable", killed, 5*time.Second) {
			t.Errorf("%s did not log \"redis unavailable\" within 5 s of Redis dying", cl.names[i])
			logged = false
		}
	}
	if logged {
		t.Logf("every instance logged the outage within %v", time.Since(killed).Round(time.Millisecond))
	}
	load.waitMore(t, mark, 20, 10*time.Second, "Redis down")
	// The outage lasts until every instance has tried Redis again and
	// failed, twice at least (its listener tries every second), so that
	// "once per outage" means more than once per failure.
	for i, n := range cl.nodes {
		if !e2eRedisErrorsReach(t, n, errs[i]+3, 10*time.Second) {
			t.Errorf("%s counted %d Redis errors within 10 s of Redis dying, want %d at least",
				cl.names[i], e2eRedisErrors(t, n), errs[i]+3)
		}
	}
	// A payer whom no instance has read yet is let in everywhere: each
	// instance reads Stripe itself.
	for i, n := range cl.nodes {
		if status, body, err := e2eStatus(newcomer, n.URL()+"/premium/x"); err != nil || status != http.StatusOK {
			t.Errorf("%s, Redis down, a payer it never read: %d %v, want 200\n%s", cl.names[i], status, err, body)
		}
	}

	// The cancellation, while Redis is down: A reads Stripe again as it
	// applies the webhook.
	deliveries := len(fake.Deliveries())
	if err := fake.CancelSubscription(sub); err != nil {
		t.Fatal(err)
	}
	fake.WaitDeliveries()
	e2eDelivered(t, fake, deliveries, "customer.subscription.deleted")
	if status, body, err := e2eStatus(canceller, a.URL()+"/premium/x"); err != nil || status != http.StatusPaymentRequired {
		t.Errorf("A right after the cancellation's webhook, Redis down: %d %v, want 402\n%s", status, err, body)
	}
	for i, n := range []*caddyrun.Instance{b, c} {
		status, _, err := e2eStatus(canceller, n.URL()+"/premium/x")
		t.Logf("%s, Redis down, after the cancellation: %d %v (it cannot know yet)", cl.names[i+1], status, err)
	}
	mark = load.counts()
	load.waitMore(t, mark, 20, 10*time.Second, "Redis down, after the cancellation")

	// From the moment before Redis starts again: the times below
	// include Redis's start, some tens of milliseconds.
	restarted := time.Now()
	cl.redis.Restart(t)
	t.Logf("Redis was down for %v, and answers again %v after its restart began",
		restarted.Sub(killed).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	took := e2eUntil402(t, canceller, []*caddyrun.Instance{b, c}, "/premium/x", restarted, restarted.Add(5*time.Second))
	for i, d := range took {
		name := cl.names[i+1]
		if d < 0 {
			t.Errorf("%s still lets the cancelled visitor in 5 s after Redis returned; %s", name, cl.redisErrors(t))
			continue
		}
		t.Logf("%s answered 402 %v after Redis returned", name, d.Round(time.Millisecond))
	}
	for i, n := range cl.nodes {
		if !e2eWaitLogged(t, n, "redis reachable again", restarted, 5*time.Second) {
			t.Errorf("%s did not log \"redis reachable again\" within 5 s of Redis returning", cl.names[i])
		}
	}
	if status, body, err := e2eStatus(canceller, a.URL()+"/premium/x"); err != nil || status != http.StatusPaymentRequired {
		t.Errorf("A after Redis returned: %d %v, want 402\n%s", status, err, body)
	}
	mark = load.counts()
	load.waitMore(t, mark, 20, 10*time.Second, "Redis back")
	load.end()
	stopped = true

	total := load.counts()
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d of the paying visitor's requests were not answered 200 (answers per instance %v); first ones:\n%s",
			n, total, strings.Join(load.failures, "\n"))
	} else {
		t.Logf("the paying visitor got 200 on all %v requests (per instance)", total)
	}
	for i, n := range cl.nodes {
		if strings.Contains(n.Logs(), "panic") {
			t.Errorf("%s logged a panic", cl.names[i])
		}
		// A Redis operation that a starved CPU made late before the
		// kill is an outage of its own, logged as one: only the lines
		// of this outage count.
		if early := e2eLogged(t, n, "redis unavailable", time.Time{}, killed); len(early) > 0 {
			t.Logf("%s logged %d outages before Redis was killed (an operation over its 50 ms bound)", cl.names[i], len(early))
		}
		down := e2eLogged(t, n, "redis unavailable", killed, time.Now())
		up := e2eLogged(t, n, "redis reachable again", killed, time.Now())
		if len(down) != 1 {
			t.Errorf("%s logged \"redis unavailable\" %d times from Redis's death on, want once", cl.names[i], len(down))
		}
		if len(up) != 1 {
			t.Errorf("%s logged \"redis reachable again\" %d times from Redis's death on, want once", cl.names[i], len(up))
		} else if up[0].Before(restarted) {
			t.Errorf("%s logged \"redis reachable again\" %v before Redis returned", cl.names[i], restarted.Sub(up[0]))
		}
	}
}
