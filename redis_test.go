package paywall

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/caddy-paywall/paywall/internal/stripefake"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// These tests run several "instances" in one process: handlers of the same
// Stripe account that reach the fake Stripe through addresses of their own,
// so that each has an account (a cache) of its own, as separate Caddy
// processes do, and all share one Redis. miniredis stands in for Redis
// here, for the edge cases; e2e_cluster_test.go runs real redis-servers and
// Caddy binaries.

// withRedis configures a handler to use the Redis at addr.
func withRedis(addr string) option {
	return func(h *Handler) { h.Redis = "redis://" + addr + "/0" }
}

// startRedis starts a miniredis for one test, and makes the listeners'
// retries quick. An operation may take a second rather than 50 ms: under
// make test's load (-race, packages and a browser beside it) a slow answer
// would otherwise count as Redis down, and the tests cut Redis off by
// closing its connections, which no timeout has to notice.
func startRedis(t *testing.T) *miniredis.Miniredis {
	t.Helper()
	m := miniredis.RunT(t)
	oldRetry, oldTimeout := redisRetry, redisTimeout
	redisRetry, redisTimeout = 10*time.Millisecond, time.Second
	t.Cleanup(func() { redisRetry, redisTimeout = oldRetry, oldTimeout })
	return m
}

// sibling is another instance of w's site: the same fake Stripe, clock and
// secrets, a cache of its own.
func (w *world) sibling(opts ...option) *world {
	w.t.Helper()
	api := httptest.NewServer(w.fake)
	w.t.Cleanup(api.Close)
	s := &world{t: w.t, clock: w.clock, fake: w.fake}
	h := provisionTestHandler(w.t, api.URL, opts...)
	w.t.Cleanup(func() { h.account.reads.Wait() })
	if h.account == w.h.account {
		w.t.Fatal("the sibling shares the first instance's account")
	}
	s.h = h
	s.site = httptest.NewServer(http.HandlerFunc(s.serve))
	w.t.Cleanup(s.site.Close)
	return s
}

// eventually waits for cond, polling, up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// payerOnBoth subscribes a browser through a and has b, once listening,
// serve it too: both instances hold the customer.
func payerOnBoth(a, b *world) (*http.Client, string) {
	a.t.Helper()
	c := a.browser()
	cus := a.subscribe(c, "/premium/a")
	for _, inst := range []*world{a, b} {
		if resp := inst.get(c, "/premium/a"); resp.StatusCode != 200 {
			a.t.Fatalf("a payer: %d", resp.StatusCode)
		}
	}
	b.listening()
	return c, cus
}

// listening waits until an instance hears invalidations.
func (w *world) listening() {
	w.t.Helper()
	w.h.redis.ensure()
	eventually(w.t.(*testing.T), 5*time.Second, "subscribed to invalidations", w.h.redis.listening.Load)
}

func TestRedisSharesAPayerBetweenInstances(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()))
	c3 := a.sibling(withRedis(m.Addr()))

	cus, _, c := a.subscriber("active")
	if resp := a.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("instance A: %d", resp.StatusCode)
	}
	for _, inst := range []*world{b, c3} {
		if resp := inst.get(c, "/premium/a"); resp.StatusCode != 200 {
			t.Fatalf("another instance: %d", resp.StatusCode)
		}
		if e := inst.h.account.peek(cus); e == nil || e.source != fromRedis {
			t.Fatalf("another instance's facts: %+v, want them from Redis", e)
		}
	}
	if n := a.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Fatalf("three instances made %d Stripe reads of one customer, want 1", n)
	}

	// Past cache_ttl, the first instance to ask reads Stripe again; the
	// others take its read.
	a.clock.Advance(6 * time.Minute)
	for _, inst := range []*world{b, a, c3} {
		if resp := inst.get(c, "/premium/a"); resp.StatusCode != 200 {
			t.Fatalf("after cache_ttl: %d", resp.StatusCode)
		}
	}
	if n := a.fake.Calls("GET /v1/subscriptions"); n != 2 {
		t.Fatalf("after cache_ttl, three instances made %d Stripe reads in all, want 2", n)
	}
}

func TestRedisConcurrentMissesMakeAboutOneRead(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	insts := []*world{a, a.sibling(withRedis(m.Addr())), a.sibling(withRedis(m.Addr()))}
	_, _, c := a.subscriber("active")
	// The subscription's webhooks first: one that lands after A holds the
	// customer makes A read again, rightly, and that read is not what
	// this test counts.
	a.fake.WaitDeliveries()
	// And every instance connected and listening: an instance that has
	// not reached Redis yet reads Stripe on its own, as it should, and a
	// first subscription marks what it holds for a re-check.
	for _, inst := range insts {
		inst.listening()
	}
	a.fake.SetLatency(200 * time.Millisecond) // the first read holds the lock a while

	urls := make([]string, 30)
	for i := range urls {
		urls[i] = insts[i%3].site.URL + "/premium/a"
	}
	allOK(t, c, urls...)
	if n := a.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Fatalf("concurrent misses on three instances made %d Stripe reads, want 1", n)
	}
}

func TestRedisInvalidationReachesEveryInstance(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()))
	c, cus := payerOnBoth(a, b)

	// The webhook reaches A only (the fake delivers to A's site).
	if err := a.fake.CancelSubscription(a.fake.Subscriptions(cus)[0].ID); err != nil {
		t.Fatal(err)
	}
	a.fake.WaitDeliveries()
	eventually(t, time.Second, "B marks the customer stale", func() bool {
		e := b.h.account.peek(cus)
		return e != nil && e.stale
	})
	reads := a.fake.Calls("GET /v1/subscriptions")
	if status, p := b.problem(c, "/premium/a"); status != 402 || p["reason"] != reasonEnded {
		t.Fatalf("B after the cancellation reached A: %d %v", status, p)
	}
	if n := a.fake.Calls("GET /v1/subscriptions"); n != reads {
		t.Fatalf("B read Stripe again (%d reads, was %d): A's read after the webhook is in Redis", n, reads)
	}
}

func TestRedisOutageFallsBackAndRecovers(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()))
	core, logs := observer.New(zap.InfoLevel)
	a.h.redis.logger.Store(zap.New(core))

	c, cus := payerOnBoth(a, b)
	_, _, other := a.subscriber("active")
	heard := b.h.redis.subscribed.Load()
	addr := m.Addr()
	m.Close()

	// Known and new payers are served from each instance's own state.
	for i := range 20 {
		for _, cl := range []*http.Client{c, other} {
			if resp := a.get(cl, "/premium/a"); resp.StatusCode != 200 {
				t.Fatalf("request %d during the Redis outage: %d", i, resp.StatusCode)
			}
		}
	}
	if n := logs.FilterMessageSnippet("redis unavailable").Len(); n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}

	// A cancellation applied by A while Redis is down is kept...
	if err := a.fake.CancelSubscription(a.fake.Subscriptions(cus)[0].ID); err != nil {
		t.Fatal(err)
	}
	a.fake.WaitDeliveries()
	if status, _ := a.problem(c, "/premium/a"); status != 402 {
		t.Fatalf("A after the cancellation: %d", status)
	}
	if a.h.redis.pendingCount() != 1 {
		t.Fatalf("pending invalidations: %d, want 1", a.h.redis.pendingCount())
	}

	// ...and reaches B once Redis is back.
	m2 := miniredis.NewMiniRedis()
	if err := m2.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m2.Close)
	a.clock.Advance(redisBackoff)
	eventually(t, 5*time.Second, "B hears again", func() bool { return b.h.redis.subscribed.Load() > heard })
	a.get(other, "/premium/b") // any operation ends A's outage
	eventually(t, 5*time.Second, "A publishes what it kept", func() bool { return a.h.redis.pendingCount() == 0 })
	if n := logs.FilterMessageSnippet("redis reachable again").Len(); n != 1 {
		t.Fatalf("the recovery was logged %d times, want once", n)
	}
	eventually(t, 5*time.Second, "B answers 402", func() bool {
		status, _ := b.problem(c, "/premium/a")
		return status == 402
	})
}

// forwarder is a loopback TCP path to a Redis that a test can cut: one
// instance loses Redis while the others keep it (a partition).
type forwarder struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func newForwarder(t *testing.T, target string) *forwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); f.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			if f.cut {
				f.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				f.mu.Unlock()
				c.Close()
				continue
			}
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

// setCut cuts the path (closing what is open) or opens it again.
func (f *forwarder) setCut(cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	if cut {
		for _, c := range f.conns {
			c.Close()
		}
		f.conns = nil
	}
}

// Redis kept its data, but one instance could not reach it (a partition):
// what it applied meanwhile reaches the others when it reaches Redis again,
// not cache_ttl later; without that, the others would find the facts from
// before the change still current in Redis.
func TestRedisInvalidationsKeptDuringAnOutageArePublishedAfter(t *testing.T) {
	m := startRedis(t)
	path := newForwarder(t, m.Addr())
	a := newWorld(t, withRedis(path.addr()))
	b := a.sibling(withRedis(m.Addr()))
	c, cus := payerOnBoth(a, b)

	path.setCut(true) // A alone loses Redis
	if err := a.fake.CancelSubscription(a.fake.Subscriptions(cus)[0].ID); err != nil {
		t.Fatal(err)
	}
	a.fake.WaitDeliveries()
	if status, _ := a.problem(c, "/premium/a"); status != 402 {
		t.Fatalf("A after the cancellation: %d", status)
	}
	if a.h.redis.pendingCount() == 0 {
		t.Fatal("A kept no invalidation to publish")
	}
	if e := b.h.account.peek(cus); e.stale {
		t.Fatal("B heard of a change A could not publish")
	}

	path.setCut(false)
	a.clock.Advance(redisBackoff)
	a.get(a.browser(), "/paywall/checkout?return=%2Fpremium%2Fa") // counted in Redis: A reaches it again
	eventually(t, time.Second, "B hears the kept invalidation", func() bool { return b.h.account.peek(cus).stale })
	if status, _ := b.problem(c, "/premium/a"); status != 402 {
		t.Fatalf("B after A published: %d", status)
	}
}

// One slow operation is not an outage for a change: an invalidation tries
// Redis even while the request path leaves it alone after a failure.
func TestRedisInvalidationTriesRedisDuringTheBackoff(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()))
	_, cus := payerOnBoth(a, b)
	a.h.redis.failed(errors.New("i/o timeout")) // one slow operation
	if err := a.fake.CancelSubscription(a.fake.Subscriptions(cus)[0].ID); err != nil {
		t.Fatal(err)
	}
	a.fake.WaitDeliveries()
	eventually(t, time.Second, "B hears the invalidation", func() bool { return b.h.account.peek(cus).stale })
	if a.h.redis.out.Load() {
		t.Fatal("the published invalidation did not end A's outage")
	}
}

func TestRedisRecoveryRechecksWhatWasCachedDuringTheGap(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	cus, _, c := a.subscriber("active")
	if resp := a.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscribed: %d", resp.StatusCode)
	}
	a.listening()
	a.clock.Advance(time.Second)
	reads := m.CommandCount()

	// What this instance held when it heard again counts as older than
	// cache_ttl: the next request checks it against Redis. The facts
	// keep their own read time, for stale_if_error.
	before := a.h.account.peek(cus)
	a.h.account.resubscribed()
	if resp := a.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("after the gap: %d", resp.StatusCode)
	}
	after := a.h.account.peek(cus)
	if m.CommandCount() == reads || after.source != fromRedis || after.fetched != before.fetched {
		t.Fatalf("after a gap: %d Redis commands, source %d, fetched %d (was %d); want the facts checked against Redis, read time kept",
			m.CommandCount()-reads, after.source, after.fetched, before.fetched)
	}
	if n := a.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Fatalf("%d Stripe reads: an unchanged customer costs none after a gap", n)
	}
	reads = m.CommandCount()
	a.get(c, "/premium/a")
	if m.CommandCount() != reads {
		t.Fatal("the checked entry asked Redis again")
	}
}

func TestRedisOlderReadsNeverOverwriteNewer(t *testing.T) {
	m := startRedis(t)
	w := newWorld(t, withRedis(m.Addr()))
	l := w.h.redis
	ttl := time.Minute
	t0 := w.clock.Now().UnixNano()

	// A read that began before an invalidation is not stored.
	before, err := l.begin("cus_R", false, ttl, time.Second)
	if err != nil || !before.locked {
		t.Fatalf("begin: %+v %v", before, err)
	}
	l.invalidate("cus_R")
	// The generation lives as long as facts do: cache_ttl and
	// stale_if_error, 5m and 24h by default.
	if got, want := m.TTL("paywall:cus:cus_R"), w.h.account.keepFor(); got != want || want != 24*time.Hour+5*time.Minute {
		t.Fatalf("the generation lives %s, want %s (cache_ttl + stale_if_error)", got, want)
	}
	l.store("cus_R", before, facts{subs: []subscriptionState{{Status: "active"}}}, t0)
	if got, _ := l.begin("cus_R", false, ttl, time.Second); got.subs != nil {
		t.Fatalf("a read from before the invalidation was stored: %+v", got)
	}

	// In one generation, a later read replaces an earlier one, never
	// the reverse.
	sf, _ := l.begin("cus_R", true, ttl, time.Second)
	l.store("cus_R", sf, facts{subs: []subscriptionState{{Status: "canceled"}}}, t0+int64(2*time.Second))
	l.store("cus_R", sf, facts{subs: []subscriptionState{{Status: "active"}}}, t0+int64(time.Second))
	got, _ := l.begin("cus_R", false, ttl, time.Second)
	if !got.fresh || len(got.subs) != 1 || got.subs[0].Status != "canceled" {
		t.Fatalf("stored %+v, want the later read", got)
	}
}

func TestRedisLimitsHoldAcrossInstances(t *testing.T) {
	m := startRedis(t)
	limit := func(h *Handler) { h.CheckoutLimit = &Limit{Max: 2, Per: caddy.Duration(10 * time.Minute)} }
	a := newWorld(t, withRedis(m.Addr()), limit)
	b := a.sibling(withRedis(m.Addr()), limit)
	c3 := a.sibling(withRedis(m.Addr()), limit)
	for i, inst := range []*world{a, b, c3} {
		resp := inst.get(inst.browser(), "/paywall/checkout?return=%2Fpremium%2Fa")
		want := http.StatusSeeOther
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("checkout %d from one address: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	// The counters name no address.
	for _, k := range m.Keys() {
		if strings.Contains(k, "127.0.0.1") {
			t.Fatalf("a Redis key names the client's address: %s", k)
		}
	}
}

func TestRedisSigninLinkIsUsedOnce(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()))
	t0 := a.clock.Now().UnixNano()
	exp := t0 + int64(15*time.Minute)
	if !a.h.useLink("link1", t0, exp) {
		t.Fatal("a new link was refused")
	}
	if !b.h.linkUsed("link1", t0) || b.h.useLink("link1", t0, exp) {
		t.Fatal("a link used on one instance works on another")
	}
	// While Redis is down, what this instance used stays used.
	m.Close()
	if a.h.useLink("link1", t0, exp) {
		t.Fatal("a used link worked again while Redis was down")
	}
}

func TestRedisURLPasswordNeverShows(t *testing.T) {
	_, _, err := redisSettings("redis://:hunter2-secret@127.0.0.1:notaport/0")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want one that hides the password", err)
	}
	if !strings.Contains(err.Error(), "redis") {
		t.Fatalf("error %q does not name the option", err)
	}
	if got := redactedURL("redis://user:hunter2-secret@host:6379/0"); strings.Contains(got, "hunter2") || strings.Contains(got, "user") {
		t.Fatalf("redacted URL %q", got)
	}
}

// A Stripe outage never locks out a payer the cluster knows, on an instance
// that never read them: what another instance read serves, within
// stale_if_error, both when this instance's read fails and when it knows
// Stripe is down and reads nothing.
func TestRedisStripeOutageServesWhatAnotherInstanceRead(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()))
	c3 := a.sibling(withRedis(m.Addr()))
	_, _, payer := a.subscriber("active")
	_, _, stranger := a.subscriber("active")
	if resp := a.get(payer, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("before the outage: %d", resp.StatusCode)
	}
	a.fake.SetOutage(stripefake.OutageErrors)
	a.clock.Advance(10 * time.Minute) // past cache_ttl
	if resp := b.get(payer, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("B, whose read fails: %d, want what A read to serve", resp.StatusCode)
	}
	if !c3.h.account.down(c3.clock.Now().UnixNano()) {
		c3.get(stranger, "/premium/a") // C learns that Stripe is down
	}
	if resp := c3.get(payer, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("C, which knows Stripe is down: %d, want what A read to serve", resp.StatusCode)
	}
	if resp := c3.get(stranger, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a payer nobody read, during the outage: %d, want 503", resp.StatusCode)
	}
	a.clock.Advance(25 * time.Hour) // past stale_if_error
	if resp := a.sibling(withRedis(m.Addr())).get(payer, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("beyond stale_if_error: %d, want 503", resp.StatusCode)
	}
}

// A site's user whom another instance knew as "no customer" is let in
// there too once they have paid: the webhook's news reaches every
// instance's login cache.
func TestRedisLoginCachesForgetOnEveryInstance(t *testing.T) {
	m := startRedis(t)
	a := loginWorld(t, loginEmail, "", withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()), func(h *Handler) {
		h.Identity = &Identity{Source: "{http.auth.user.id}", Kind: loginEmail}
	})
	b.auth = a.auth
	const user = "dan@example.com"
	for _, inst := range []*world{a, b} {
		if resp := inst.as(user, http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("before paying: %d", resp.StatusCode)
		}
	}
	b.listening()
	cus := a.fake.CreateCustomer(user)
	a.fake.CreateSubscription(cus, testPrice, "active")
	obj, _ := a.fake.Object(cus)
	if _, err := a.fake.SendEvent("customer.created", obj); err != nil { // delivered to A only
		t.Fatal(err)
	}
	a.fake.WaitDeliveries()
	eventually(t, time.Second, "B lets the user in", func() bool {
		return b.as(user, http.MethodGet, "/premium/a").StatusCode == http.StatusOK
	})
}

// A read that fails gives up its lock at once: the next read, on any
// instance, does not wait for it to expire.
func TestRedisAFailedReadReleasesItsLock(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	cus, _, _ := a.subscriber("active")
	a.fake.SetOutage(stripefake.OutageErrors)
	if _, err := a.h.readCustomer(cus, false); err == nil {
		t.Fatal("the read succeeded during an outage")
	}
	if m.Exists("paywall:lock:" + cus) {
		t.Fatal("a failed read kept its lock")
	}
}

// Facts this version cannot read are read again from Stripe at once, not
// after waiting for a lock nobody takes.
func TestRedisUnreadableFactsAreReadAgain(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	cus, _, c := a.subscriber("active")
	m.HSet("paywall:cus:"+cus, "g", "0", "fg", "0", "f", strconv.FormatInt(a.clock.Now().UnixMilli(), 10), "s", "not json")
	old := sharedReadWait
	sharedReadWait = time.Hour // a wait would hang the test
	t.Cleanup(func() { sharedReadWait = old })
	if resp := a.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("with unreadable facts in Redis: %d", resp.StatusCode)
	}
	if s := m.HGet("paywall:cus:"+cus, "s"); !strings.HasPrefix(s, "[") {
		t.Fatalf("Redis holds %q, want the facts written anew", s)
	}
}

// A read during which the customer changed, news this instance did not
// hear (a gap in its subscription), is not kept as fresh here either.
func TestRedisAReadOvertakenByAChangeIsNotKeptFresh(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	cus, _, c := a.subscriber("active")
	a.fake.SetLatency(300 * time.Millisecond)
	done := make(chan int)
	go func() {
		resp, err := c.Get(a.site.URL + "/premium/a")
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	eventually(t, 5*time.Second, "the read takes its lock", func() bool { return m.Exists("paywall:lock:" + cus) })
	if _, err := m.HIncrBy("paywall:cus:"+cus, "g", 1); err != nil { // changed, and nobody told this instance
		t.Fatal(err)
	}
	if code := <-done; code != 200 {
		t.Fatalf("the request: %d", code)
	}
	if e := a.h.account.peek(cus); e == nil || !e.stale {
		t.Fatalf("entry %+v: a read older than the change is kept as fresh", e)
	}
}

// A config reload provisions the new handlers before it cleans up the old:
// handlers of one account and Redis share one client, which outlives the
// reload and closes with the last handler.
func TestRedisClientOutlivesAReload(t *testing.T) {
	m := startRedis(t)
	old := provisionHandler(t, "http://127.0.0.1:1", withRedis(m.Addr()))
	renewed := provisionHandler(t, "http://127.0.0.1:1", withRedis(m.Addr()))
	if old.redis != renewed.redis {
		t.Fatal("two handlers of one account and Redis have a client each")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := renewed.redis.client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the client after the old handler's cleanup: %v", err)
	}
	link := renewed.redis
	if err := renewed.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := link.client.Ping(context.Background()).Err(); err == nil {
		t.Fatal("the client is still open after the last handler's cleanup")
	}
}
