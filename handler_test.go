package paywall

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stripe/stripe-go/v76/webhook"
	"go.uber.org/zap"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

const (
	testKey    = "sk_test_handler_0123456789"
	hookSecret = "whsec_handler_test_secret"
	testPrice  = "price_demo_monthly"
)

func init() {
	for k, v := range map[string]string{
		"PAYWALL_TEST_SECRET_KEY":     testKey,
		"PAYWALL_TEST_WEBHOOK_SECRET": hookSecret,
		"PAYWALL_TEST_COOKIE_SECRET":  strings.Repeat("k", 32),
	} {
		if err := os.Setenv(k, v); err != nil {
			panic(err)
		}
	}
}

// provisionTestHandler provisions a handler against the Stripe API at
// apiURL, with a silent logger: a benchmark of the webhook would otherwise
// time the writing of its info line to the terminal. Tests and benchmarks
// share it.
func provisionTestHandler(tb testing.TB, apiURL string, opts ...option) *Handler {
	tb.Helper()
	h := provisionHandler(tb, apiURL, opts...)
	tb.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// provisionHandler is provisionTestHandler without the Cleanup, for tests
// that clean up themselves, as a config reload does.
func provisionHandler(tb testing.TB, apiURL string, opts ...option) *Handler {
	tb.Helper()
	// The secrets come from the environment, as operators are told to
	// keep them: a literal one would be warned about on every provision.
	h := &Handler{
		SecretKey:     "{env.PAYWALL_TEST_SECRET_KEY}",
		Prices:        []string{testPrice},
		WebhookSecret: "{env.PAYWALL_TEST_WEBHOOK_SECRET}",
		CookieSecret:  "{env.PAYWALL_TEST_COOKIE_SECRET}",
		APIURL:        apiURL,
		StripeTimeout: caddy.Duration(2 * time.Second),
	}
	for _, o := range opts {
		o(h)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		tb.Fatalf("Provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		tb.Fatalf("Validate: %v", err)
	}
	h.logger = zap.NewNop()
	h.cookies.logger = h.logger
	if h.redis != nil {
		h.redis.logger.Store(h.logger)
	}
	return h
}

// clock is the test's time: it moves only when the test says so.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is a site with one paywall handler in front of a content handler,
// and a stateful fake Stripe behind it.
type world struct {
	t     testing.TB
	clock *clock
	fake  *stripefake.Server
	h     *Handler
	site  *httptest.Server
	hook  string // the fake's webhook endpoint that delivers to the site

	mu      sync.Mutex
	last    *caddy.Replacer                      // the replacer of the last request that reached the content
	content http.HandlerFunc                     // what the site serves behind the paywall; "premium content" when nil
	auth    func(*http.Request, *caddy.Replacer) // the site's login before the paywall, when set
}

type option func(*Handler)

// newWorld provisions a handler against a fresh fake Stripe. Tests that use
// it must not run in parallel: they replace the package clock.
func newWorld(t testing.TB, opts ...option) *world {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	oldNow := now
	now = c.Now
	t.Cleanup(func() { now = oldNow })

	fake := stripefake.New(stripefake.Options{Now: c.Now})
	fakeSrv := httptest.NewServer(fake)
	t.Cleanup(fakeSrv.Close)
	// Cleanups run last-in first-out: the site closes, the fake ends the
	// calls it holds, then the reads that outlived their requests (a
	// visitor served known facts while Stripe hangs) have finished before
	// the next test replaces the clock.
	var h *Handler
	t.Cleanup(func() {
		if h != nil {
			h.account.reads.Wait()
		}
	})
	t.Cleanup(fake.Close)

	h = provisionTestHandler(t, fakeSrv.URL, opts...)

	w := &world{t: t, clock: c, fake: fake, h: h}
	w.site = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.site.Close)
	w.hook = fake.AddWebhookEndpoint(w.site.URL+"/paywall/webhook", hookSecret)
	return w
}

// handOver asks the handler itself for path, with c's cookies and the
// headers, as Caddy would, and returns the request's replacer and the error
// the handler hands to Caddy (and so to the site's handle_errors).
func (w *world) handOver(path string, c *http.Client, header ...string) (*caddy.Replacer, error) {
	w.t.Helper()
	repl := caddy.NewReplacer()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if c != nil {
		for _, ck := range c.Jar.Cookies(mustParseURL(w.t, w.site.URL)) {
			r.AddCookie(ck)
		}
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	return repl, w.h.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
}

func mustParseURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// serve is what Caddy does around the handler: a replacer in the context,
// the next handler, and HandlerError turned into a status.
func (w *world) serve(rw http.ResponseWriter, r *http.Request) {
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w.mu.Lock()
	auth := w.auth
	w.mu.Unlock()
	if auth != nil {
		auth(r, repl)
	}
	next := caddyhttp.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) error {
		w.mu.Lock()
		w.last = repl
		content := w.content
		w.mu.Unlock()
		if content != nil {
			content(rw, r)
			return nil
		}
		_, err := io.WriteString(rw, "premium content")
		return err
	})
	if err := w.h.ServeHTTP(rw, r, next); err != nil {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			rw.WriteHeader(he.StatusCode)
			return
		}
		rw.WriteHeader(http.StatusInternalServerError)
	}
}

// browser is a client with its own cookies that does not follow redirects.
func (w *world) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func (w *world) get(c *http.Client, path string, header ...string) *http.Response {
	return w.do(c, http.MethodGet, path, header...)
}

func (w *world) do(c *http.Client, method, path string, header ...string) *http.Response {
	w.t.Helper()
	req, err := http.NewRequest(method, w.site.URL+path, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return string(b)
}

// problem reads the RFC 9457 document of a JSON refusal.
func (w *world) problem(c *http.Client, path string) (int, map[string]any) {
	w.t.Helper()
	resp := w.get(c, path, "Accept", "application/json")
	var p map[string]any
	if err := json.Unmarshal([]byte(bodyOf(resp)), &p); err != nil {
		w.t.Fatalf("GET %s: status %d, body is not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, p
}

// subscribe goes through checkout and success in browser c and returns the
// new customer.
func (w *world) subscribe(c *http.Client, ret string) string {
	w.t.Helper()
	sess := w.startPaid(c, ret)
	resp := w.followSuccess(c, sess)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != ret {
		w.t.Fatalf("success: status %d Location %q, want 303 to %q", resp.StatusCode, resp.Header.Get("Location"), ret)
	}
	w.fake.WaitDeliveries()
	return sess.Customer
}

// startPaid starts a checkout in browser c and pays it at Stripe.
func (w *world) startPaid(c *http.Client, ret string) stripefake.CheckoutSession {
	w.t.Helper()
	resp := w.get(c, "/paywall/checkout?return="+url.QueryEscape(ret))
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("checkout: %d %s", resp.StatusCode, bodyOf(resp))
	}
	sess := w.sessionOf(resp.Header.Get("Location"))
	if err := w.fake.CompleteCheckout(sess.ID, stripefake.CardSuccess); err != nil {
		w.t.Fatal(err)
	}
	sess, _ = w.fake.Session(sess.ID)
	return sess
}

// sessionOf finds the checkout session a hosted checkout URL points to.
func (w *world) sessionOf(location string) stripefake.CheckoutSession {
	w.t.Helper()
	id := location[strings.LastIndex(location, "/")+1:]
	sess, ok := w.fake.Session(id)
	if !ok {
		w.t.Fatalf("checkout redirected to %q, not to a session of the fake", location)
	}
	return sess
}

// followSuccess opens the success URL Stripe sends the visitor to.
func (w *world) followSuccess(c *http.Client, sess stripefake.CheckoutSession) *http.Response {
	w.t.Helper()
	u := strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", sess.ID)
	if !strings.HasPrefix(u, w.site.URL) {
		w.t.Fatalf("success URL %q is not on the site %q", u, w.site.URL)
	}
	return w.get(c, strings.TrimPrefix(u, w.site.URL))
}

// cookieFor returns a browser already known as customer.
func (w *world) cookieFor(customer string) *http.Client {
	w.t.Helper()
	c := w.browser()
	req := httptest.NewRequest(http.MethodGet, w.site.URL, nil)
	ck, err := w.h.cookies.issue(req, customer)
	if err != nil {
		w.t.Fatal(err)
	}
	u, _ := url.Parse(w.site.URL)
	c.Jar.SetCookies(u, []*http.Cookie{ck})
	return c
}

func (w *world) subscriber(status string) (string, string, *http.Client) {
	cus := w.fake.CreateCustomer("reader@example.com")
	sub := w.fake.CreateSubscription(cus, testPrice, status)
	return cus, sub, w.cookieFor(cus)
}

func (w *world) placeholder(key string) any {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return nil
	}
	v, _ := w.last.Get(key)
	return v
}

func TestAnonymousVisitorGets402WithoutCallingStripe(t *testing.T) {
	w := newWorld(t)
	c := w.browser()

	resp := w.get(c, "/premium/a?x=1", "Accept", "text/html")
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("status %d, want 402", resp.StatusCode)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	if got := resp.Header.Get("Link"); got != `</paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1>; rel="payment"` {
		t.Errorf("Link %q", got)
	}
	if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("Content-Type %q, want HTML for a browser", resp.Header.Get("Content-Type"))
	}

	status, p := w.problem(c, "/premium/a")
	if status != 402 || p["reason"] != reasonNoSubscription || p["status"] != float64(402) {
		t.Errorf("problem %d %v", status, p)
	}
	if cu, _ := p["checkout_url"].(string); !strings.HasPrefix(cu, w.site.URL+"/paywall/checkout?return=") {
		t.Errorf("checkout_url %q is not absolute on the site", cu)
	}

	head := w.do(c, http.MethodHead, "/premium/a")
	if head.StatusCode != 402 || bodyOf(head) != "" {
		t.Errorf("HEAD: status %d body %q, want 402 and no body", head.StatusCode, bodyOf(head))
	}
	if n := visitorCalls(w.fake); n != 0 {
		t.Errorf("anonymous visitors cost %d Stripe calls, want 0", n)
	}
	if n := offerReads(w.fake); n != 1 {
		t.Errorf("the pages read the price %d times, want once for them all", n)
	}
}

func TestCheckoutSuccessGrantsAccess(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.TrialDays = 7; h.AllowPromotionCodes = true })
	c := w.browser()

	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout status %d", resp.StatusCode)
	}
	sess := w.sessionOf(resp.Header.Get("Location"))
	if sess.Mode != "subscription" || sess.Price != testPrice || sess.ClientReferenceID == "" {
		t.Fatalf("session %+v", sess)
	}
	if !strings.Contains(sess.SuccessURL, "session_id={CHECKOUT_SESSION_ID}") {
		t.Errorf("success URL %q lacks the literal {CHECKOUT_SESSION_ID}", sess.SuccessURL)
	}
	if sess.CancelURL != w.site.URL+"/premium/a" {
		t.Errorf("cancel URL %q", sess.CancelURL)
	}
	var nonce, started string
	for _, ck := range resp.Cookies() {
		if ck.Name == "paywall_checkout" {
			parts := strings.Split(ck.Value, ".")
			nonce, started = parts[0], parts[1]
			if len(parts) != 4 || parts[2]+"."+parts[3] != testPrice+".7" {
				t.Errorf("checkout cookie %q does not name what it sells (%s, 7 days' trial)", ck.Value, testPrice)
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
				t.Errorf("nonce cookie %+v must be HttpOnly and SameSite=Lax", ck)
			}
		}
	}
	if nonce == "" || nonce != sess.ClientReferenceID || started != sess.ID {
		t.Fatalf("checkout cookie %q.%q does not match client_reference_id %q and session %s", nonce, started, sess.ClientReferenceID, sess.ID)
	}

	// Before paying, coming back to the page explains the unfinished checkout.
	if _, p := w.problem(c, "/premium/a"); p["reason"] != reasonCheckoutNotDone {
		t.Errorf("reason before paying %v, want %s", p["reason"], reasonCheckoutNotDone)
	}
	// Success before payment does not let anyone in.
	if resp := w.followSuccess(c, sess); resp.StatusCode != http.StatusSeeOther || hasCookie(resp, "paywall") {
		t.Fatalf("success of an open session: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	if err := w.fake.CompleteCheckout(sess.ID, ""); err != nil {
		t.Fatal(err)
	}
	sess, _ = w.fake.Session(sess.ID)
	resp = w.followSuccess(c, sess)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" {
		t.Fatalf("success: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	id := cookieNamed(resp, "paywall")
	if id == nil || !id.HttpOnly || id.SameSite != http.SameSiteLaxMode || !strings.HasPrefix(id.Value, sess.Customer+".") {
		t.Fatalf("identity cookie %+v", id)
	}
	if ck := cookieNamed(resp, "paywall_checkout"); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("the nonce cookie must be cleared after success: %+v", ck)
	}

	resp = w.get(c, "/premium/a")
	if resp.StatusCode != 200 || bodyOf(resp) != "premium content" {
		t.Fatalf("after paying: %d %q", resp.StatusCode, bodyOf(resp))
	}
	if got := resp.Header.Get("Cache-Control"); got != "private, no-cache" {
		t.Errorf("a subscriber's page has Cache-Control %q, want private, no-cache", got)
	}
	if got := w.placeholder("http.paywall.customer"); got != sess.Customer {
		t.Errorf("{http.paywall.customer} = %v, want %s", got, sess.Customer)
	}
	if got := w.placeholder("http.paywall.status"); got != statusEntitled {
		t.Errorf("{http.paywall.status} = %v", got)
	}
	if got := w.placeholder("http.paywall.reason"); got != reasonTrialing {
		t.Errorf("{http.paywall.reason} = %v, want trialing (trial_days 7)", got)
	}

	// An entitled visitor asking for checkout again is sent back, not charged twice.
	before := w.fake.Calls("POST /v1/checkout/sessions")
	resp = w.get(c, "/paywall/checkout?return=%2Fpremium%2Fb")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/b" {
		t.Errorf("checkout while entitled: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if after := w.fake.Calls("POST /v1/checkout/sessions"); after != before {
		t.Errorf("checkout while entitled created a session")
	}
}

func hasCookie(resp *http.Response, name string) bool { return cookieNamed(resp, name) != nil }

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, ck := range resp.Cookies() {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

func TestSuccessURLReplayedGainsNothing(t *testing.T) {
	w := newWorld(t)
	payer := w.browser()
	resp := w.get(payer, "/paywall/checkout?return=%2Fpremium%2Fa")
	sess := w.sessionOf(resp.Header.Get("Location"))
	if err := w.fake.CompleteCheckout(sess.ID, ""); err != nil {
		t.Fatal(err)
	}
	sess, _ = w.fake.Session(sess.ID)

	// Another browser, with no nonce.
	thief := w.browser()
	if resp := w.followSuccess(thief, sess); resp.StatusCode != http.StatusForbidden || hasCookie(resp, "paywall") {
		t.Fatalf("replay without nonce: %d %v", resp.StatusCode, resp.Cookies())
	}
	// Another browser that started a checkout of its own: a nonce, not this one.
	w.get(thief, "/paywall/checkout?return=%2F")
	if resp := w.followSuccess(thief, sess); resp.StatusCode != http.StatusForbidden || hasCookie(resp, "paywall") {
		t.Fatalf("replay with another nonce: %d %v", resp.StatusCode, resp.Cookies())
	}
	if resp := w.get(thief, "/premium/a"); resp.StatusCode != 402 {
		t.Fatalf("thief reads premium: %d", resp.StatusCode)
	}

	// The payer gets in, and the answer clears the checkout cookie.
	if resp := w.followSuccess(payer, sess); !hasCookie(resp, "paywall") {
		t.Fatalf("payer: %d %v", resp.StatusCode, resp.Cookies())
	}
	if resp := w.followSuccess(thief, sess); resp.StatusCode != http.StatusForbidden || hasCookie(resp, "paywall") {
		t.Fatalf("replay by another browser after the payer: %d %v", resp.StatusCode, resp.Cookies())
	}

	for _, bad := range []string{"", "nope", "cs_test_<script>", "cs_" + strings.Repeat("a", 300)} {
		if resp := w.get(payer, "/paywall/success?session_id="+url.QueryEscape(bad)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("session_id %q: %d, want 400", bad, resp.StatusCode)
		}
	}
	// A browser with a checkout of its own, and a session Stripe does not know.
	if resp := w.get(thief, "/paywall/success?session_id=cs_test_doesnotexist"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown session: %d, want 400", resp.StatusCode)
	}
}

func TestDeclinedCardExplainsTheFailure(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	sess := w.sessionOf(resp.Header.Get("Location"))
	if err := w.fake.CompleteCheckout(sess.ID, stripefake.CardDeclined); !errors.Is(err, stripefake.ErrCardDeclined) {
		t.Fatalf("declined card: %v", err)
	}
	status, p := w.problem(c, "/premium/a")
	if status != 402 || p["reason"] != reasonCheckoutNotDone {
		t.Fatalf("after a declined card: %d %v", status, p)
	}
}

func TestTamperedAndExpiredCookies(t *testing.T) {
	w := newWorld(t)
	cus, _, good := w.subscriber("active")
	if resp := w.get(good, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("valid cookie: %d", resp.StatusCode)
	}
	u, _ := url.Parse(w.site.URL)
	valid := good.Jar.Cookies(u)[0].Value
	other := w.fake.CreateCustomer("other@example.com")
	w.fake.CreateSubscription(other, testPrice, "active")
	parts := strings.Split(valid, ".")

	w.fake.ResetCalls()
	for name, value := range map[string]string{
		"other customer, same signature": other + "." + parts[1] + "." + parts[2],
		"later expiry, same signature":   cus + "." + fmt.Sprint(time.Now().Add(1000*time.Hour).Unix()) + "." + parts[2],
		"flipped signature":              parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"no signature":                   parts[0] + "." + parts[1],
		"garbage":                        "%%%",
		"empty":                          "",
	} {
		c := w.browser()
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "paywall", Value: value, Path: "/"}})
		status, p := w.problem(c, "/premium/a")
		if status != 402 || p["reason"] != reasonNoSubscription {
			t.Errorf("%s: %d %v, want 402 no_subscription", name, status, p)
		}
	}
	if n := visitorCalls(w.fake); n != 0 {
		t.Errorf("forged cookies cost %d Stripe calls, want 0", n)
	}

	// The same cookie after its expiry.
	w.clock.Advance(31 * 24 * time.Hour)
	if status, p := w.problem(good, "/premium/a"); status != 402 || p["reason"] != reasonNoSubscription {
		t.Errorf("expired cookie: %d %v", status, p)
	}
}

func TestOpenRedirectAttemptsFallBackToRoot(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	for _, ret := range []string{"https://evil.example/", "//evil.example", "/\\evil.example", "http:evil.example", "/\t/evil.example", "javascript:alert(1)", ""} {
		resp := w.do(c, http.MethodPost, "/paywall/logout?return="+url.QueryEscape(ret))
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("logout return %q → Location %q, want /", ret, loc)
		}
		resp = w.get(c, "/paywall/checkout?return="+url.QueryEscape(ret))
		sess := w.sessionOf(resp.Header.Get("Location"))
		if sess.CancelURL != w.site.URL+"/" || !strings.HasPrefix(sess.SuccessURL, w.site.URL+"/paywall/success?return=%2F&") {
			t.Errorf("checkout return %q → cancel %q success %q", ret, sess.CancelURL, sess.SuccessURL)
		}
	}
}

func TestCacheHitsCostNoStripeRead(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CacheTTL = caddy.Duration(time.Minute) })
	_, _, c := w.subscriber("active")
	for i := 0; i < 20; i++ {
		if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Fatalf("20 requests within cache_ttl made %d Stripe reads, want 1", n)
	}
	w.clock.Advance(59 * time.Second)
	w.get(c, "/premium/a")
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Fatalf("a request within cache_ttl made a Stripe read (total %d)", n)
	}
	w.clock.Advance(2 * time.Second)
	w.get(c, "/premium/a")
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 2 {
		t.Fatalf("after cache_ttl: %d reads, want 2", n)
	}
}

// allOK gets the URLs at once, all released together, and fails the test
// unless every answer is 200.
func allOK(t *testing.T, c *http.Client, urls ...string) {
	t.Helper()
	var wg sync.WaitGroup
	codes := make(chan int, len(urls))
	start := make(chan struct{})
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := c.Get(u)
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Fatalf("a concurrent request got %d", code)
		}
	}
}

func TestParallelColdRequestsMakeOneRead(t *testing.T) {
	w := newWorld(t)
	_, _, c := w.subscriber("active")
	urls := make([]string, 100)
	for i := range urls {
		urls[i] = w.site.URL + "/premium/a"
	}
	allOK(t, c, urls...)
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Fatalf("100 parallel cold requests made %d Stripe reads, want 1", n)
	}
}

func TestStatusesAndReasons(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.GracePeriod = caddy.Duration(48 * time.Hour) })
	for _, tc := range []struct {
		status string
		code   int
		reason string
	}{
		{"active", 200, reasonActive},
		{"trialing", 200, reasonTrialing},
		{"past_due", 200, reasonPastDueGrace},
		{"unpaid", 402, reasonPaymentFailed},
		{"incomplete", 402, reasonPaymentFailed},
		{"incomplete_expired", 402, reasonEnded},
		{"canceled", 402, reasonEnded},
		{"paused", 402, reasonTrialEnded},
	} {
		_, _, c := w.subscriber(tc.status)
		resp := w.get(c, "/premium/a", "Accept", "application/problem+json")
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", tc.status, resp.StatusCode, tc.code)
			continue
		}
		if tc.code == 200 {
			if got := w.placeholder("http.paywall.reason"); got != tc.reason {
				t.Errorf("%s: reason %v, want %s", tc.status, got, tc.reason)
			}
			continue
		}
		var p map[string]any
		_ = json.Unmarshal([]byte(bodyOf(resp)), &p)
		if p["reason"] != tc.reason {
			t.Errorf("%s: reason %v, want %s", tc.status, p["reason"], tc.reason)
		}
		_, hasPortal := p["portal_url"]
		if hasPortal != (tc.reason == reasonPaymentFailed) {
			t.Errorf("%s: portal_url present = %v", tc.status, hasPortal)
		}
	}

	// Another price of the same account grants nothing.
	cus := w.fake.CreateCustomer("other-price@example.com")
	w.fake.AddPrice(stripefake.Price{ID: "price_other", Product: "prod_other", ProductName: "Other", UnitAmount: 100})
	w.fake.CreateSubscription(cus, "price_other", "active")
	if status, p := w.problem(w.cookieFor(cus), "/premium/a"); status != 402 || p["reason"] != reasonNoSubscription {
		t.Errorf("another price: %d %v", status, p)
	}
}

func TestGracePeriodEnds(t *testing.T) {
	w := newWorld(t, func(h *Handler) {
		h.GracePeriod = caddy.Duration(24 * time.Hour)
		h.CacheTTL = caddy.Duration(time.Minute)
	})
	_, sub, c := w.subscriber("active")
	if err := w.fake.FailRenewal(sub); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("within grace: %d", resp.StatusCode)
	}
	w.clock.Advance(25 * time.Hour)
	status, p := w.problem(c, "/premium/a")
	if status != 402 || p["reason"] != reasonPaymentFailed {
		t.Fatalf("after grace: %d %v", status, p)
	}
	// Checkout sends a visitor whose payment failed to the portal, not to a second subscription.
	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/paywall/portal?return=") {
		t.Fatalf("checkout after a failed payment: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = w.get(c, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), w.fake.URL()) && !strings.Contains(resp.Header.Get("Location"), "/p/session/") {
		t.Fatalf("portal: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := w.fake.Calls("POST /v1/billing_portal/sessions"); n != 1 {
		t.Errorf("portal sessions created: %d", n)
	}
}

func TestLapsedCustomerSubscribesAgainAsThemselves(t *testing.T) {
	w := newWorld(t)
	cus, _, c := w.subscriber("canceled")
	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	sess := w.sessionOf(resp.Header.Get("Location"))
	if sess.Customer != cus {
		t.Fatalf("checkout for a lapsed customer used customer %q, want %q", sess.Customer, cus)
	}
}

func TestPortalNeedsAVisitor(t *testing.T) {
	w := newWorld(t)
	resp := w.get(w.browser(), "/paywall/portal?return=%2Fpremium%2Fa")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" {
		t.Fatalf("portal for nobody: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := w.fake.Calls(""); n != 0 {
		t.Errorf("portal for nobody called Stripe %d times", n)
	}
}

func TestOutage(t *testing.T) {
	w := newWorld(t, func(h *Handler) {
		h.CacheTTL = caddy.Duration(time.Minute)
		h.StaleIfError = caddy.Duration(time.Hour)
		h.StripeTimeout = caddy.Duration(300 * time.Millisecond)
	})
	_, _, known := w.subscriber("active")
	if resp := w.get(known, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("before the outage: %d", resp.StatusCode)
	}
	_, _, unknown := w.subscriber("active")

	for _, mode := range []stripefake.Outage{stripefake.OutageErrors, stripefake.OutageHang} {
		w.fake.SetOutage(mode)
		w.clock.Advance(2 * time.Minute) // past cache_ttl, and past any back-off

		if resp := w.get(known, "/premium/a"); resp.StatusCode != 200 {
			t.Errorf("%s: a known payer got %d, want the stale state to serve", mode, resp.StatusCode)
		}
		resp := w.get(unknown, "/premium/a", "Accept", "application/json")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: a visitor we cannot check got %d Retry-After %q, want 503 with Retry-After", mode, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		resp = w.get(w.browser(), "/paywall/checkout?return=%2Fpremium%2Fa")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: checkout during an outage: %d, want 503 with Retry-After", mode, resp.StatusCode)
		}
	}

	// Known state serves for stale_if_error, not longer.
	w.clock.Advance(2 * time.Hour)
	if resp := w.get(known, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("beyond stale_if_error: %d, want 503", resp.StatusCode)
	}

	// Recovery.
	w.fake.SetOutage(stripefake.OutageNone)
	w.clock.Advance(time.Minute)
	if resp := w.get(known, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("after the outage: %d", resp.StatusCode)
	}
}

func TestWebhookCancellationTakesEffect(t *testing.T) {
	w := newWorld(t) // cache_ttl 5m: only the webhook can make the change visible
	c := w.browser()
	cus := w.subscribe(c, "/premium/a")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscribed: %d", resp.StatusCode)
	}
	subs := w.fake.Subscriptions(cus)
	if err := w.fake.CancelSubscription(subs[0].ID); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	for _, d := range w.fake.Deliveries() {
		if d.StatusCode != 200 {
			t.Errorf("delivery %+v was not accepted", d)
		}
	}
	if status, p := w.problem(c, "/premium/a"); status != 402 || p["reason"] != reasonEnded {
		t.Fatalf("after cancellation webhook: %d %v", status, p)
	}

	// Subscribing again (the same customer) takes effect at once too.
	w.subscribe(c, "/premium/a")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscribed again: %d", resp.StatusCode)
	}
}

// post sends a raw webhook.
func (w *world) postWebhook(body []byte, sig string) int {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.site.URL+"/paywall/webhook", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (w *world) signed(body []byte, at time.Time, secrets ...string) string {
	p := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secrets[0], Timestamp: at})
	h := p.Header
	for _, s := range secrets[1:] {
		h += ",v1=" + hex.EncodeToString(webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: s, Timestamp: at}).Signature)
	}
	return h
}

func TestWebhookVerification(t *testing.T) {
	w := newWorld(t)
	cus, sub, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("active: %d", resp.StatusCode)
	}
	event := func(typ, apiVersion string, object map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"id": "evt_test", "object": "event", "type": typ, "api_version": apiVersion, "data": map[string]any{"object": object}})
		return b
	}
	// Stripe cancels; the event then arrives with a snapshot that claims
	// "active" (an older event delivered late): Stripe is the truth.
	if err := w.fake.SetStatus(sub, "canceled"); err != nil {
		t.Fatal(err)
	}
	late := event("customer.subscription.updated", "2025-03-31.basil", map[string]any{"id": sub, "object": "subscription", "customer": cus, "status": "active"})
	t0 := w.clock.Now()

	for _, tc := range []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"no signature", late, "", 400},
		{"forged", late, w.signed(late, t0, "whsec_someone_else"), 400},
		{"signed over another body", late, w.signed([]byte(`{}`), t0, hookSecret), 400},
		{"expired", late, w.signed(late, t0.Add(-301*time.Second), hookSecret), 400},
		{"from the future", late, w.signed(late, t0.Add(301*time.Second), hookSecret), 400},
		{"garbage header", late, "t=abc,v1=zz", 400},
		{"unreadable body", []byte("not json"), w.signed([]byte("not json"), t0, hookSecret), 400},
	} {
		if got := w.postWebhook(tc.body, tc.sig); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// Nothing rejected may change what we know.
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("a rejected webhook changed access: %d", resp.StatusCode)
	}

	// A valid, late, newer-API-version event, signed during a secret
	// rotation (two v1 values), delivered twice.
	sig := w.signed(late, t0.Add(-299*time.Second), "whsec_old_secret", hookSecret)
	for i := 0; i < 2; i++ {
		if got := w.postWebhook(late, sig); got != 200 {
			t.Fatalf("valid event, delivery %d: %d", i+1, got)
		}
	}
	if status, p := w.problem(c, "/premium/a"); status != 402 || p["reason"] != reasonEnded {
		t.Fatalf("after the event: %d %v, want 402 subscription_ended (Stripe's state, not the snapshot)", status, p)
	}

	// Unknown types and events about no customer are acknowledged.
	for _, typ := range []string{"product.created", "radar.early_fraud_warning.created", "customer.subscription.updated"} {
		body := event(typ, "2099-01-01", map[string]any{"id": "x_1", "object": "thing"})
		if got := w.postWebhook(body, w.signed(body, t0, hookSecret)); got != 200 {
			t.Errorf("%s: %d, want 200", typ, got)
		}
	}
	// Only POST.
	if resp := w.get(w.browser(), "/paywall/webhook"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET webhook: %d", resp.StatusCode)
	}
}

func TestWebhookOutOfOrderAndExpandedCustomer(t *testing.T) {
	w := newWorld(t)
	cus, sub, c := w.subscriber("active")
	w.get(c, "/premium/a")
	t0 := w.clock.Now()
	// Deleted arrives before an older "updated"; each makes us read Stripe.
	if err := w.fake.SetStatus(sub, "canceled"); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"customer.subscription.deleted", "customer.subscription.updated"} {
		b, _ := json.Marshal(map[string]any{"id": "evt_" + typ, "type": typ, "data": map[string]any{"object": map[string]any{"id": sub, "object": "subscription", "customer": map[string]any{"id": cus, "object": "customer"}}}})
		if got := w.postWebhook(b, w.signed(b, t0, hookSecret)); got != 200 {
			t.Fatalf("%s: %d", typ, got)
		}
	}
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 402 {
		t.Fatalf("after out-of-order events: %d", resp.StatusCode)
	}
}

func TestWebhookDisabledWithoutSecret(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.WebhookSecret = "" })
	if got := w.postWebhook([]byte(`{}`), "t=1,v1=00"); got != http.StatusNotFound {
		t.Fatalf("webhook without webhook_secret: %d, want 404", got)
	}
}

func TestEndpointsRefuseWrongMethodsAndUnknownPaths(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/paywall/logout", 405},
		{http.MethodDelete, "/paywall/checkout", 405},
		{http.MethodPost, "/paywall/success?session_id=cs_test_x", 405},
		{http.MethodGet, "/paywall/nothing", 404},
		{http.MethodGet, "/paywall", 404},
	} {
		if resp := w.do(c, tc.method, tc.path); resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
	// A path that only shares the prefix's letters is gated, not an endpoint.
	if resp := w.get(c, "/paywallet"); resp.StatusCode != 402 {
		t.Errorf("/paywallet: %d, want 402", resp.StatusCode)
	}
}

func TestLogoutForgetsTheVisitor(t *testing.T) {
	w := newWorld(t)
	_, _, c := w.subscriber("active")
	resp := w.do(c, http.MethodPost, "/paywall/logout?return=%2Fpremium%2Fa")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if ck := cookieNamed(resp, "paywall"); ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("logout did not clear the cookie: %+v", ck)
	}
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 402 {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

func TestDryRunNeverBlocks(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.DryRun = true })
	resp := w.get(w.browser(), "/premium/a")
	if resp.StatusCode != 200 || bodyOf(resp) != "premium content" {
		t.Fatalf("dry run: %d %q", resp.StatusCode, bodyOf(resp))
	}
	if got := w.placeholder("http.paywall.status"); got != statusPaymentRequired {
		t.Errorf("{http.paywall.status} = %v", got)
	}
	if got := w.placeholder("http.paywall.reason"); got != reasonNoSubscription {
		t.Errorf("{http.paywall.reason} = %v", got)
	}
	if got, _ := w.placeholder("http.paywall.checkout_url").(string); !strings.HasPrefix(got, "/paywall/checkout?return=") {
		t.Errorf("{http.paywall.checkout_url} = %q", got)
	}
}

func TestProductGrantsAndSellsItsDefaultPrice(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Prices = nil; h.Products = []string{"prod_demo"} })
	_, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscriber to a price of the product: %d", resp.StatusCode)
	}
	resp := w.get(w.browser(), "/paywall/checkout?return=%2F")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout with product only: %d %s", resp.StatusCode, bodyOf(resp))
	}
	if sess := w.sessionOf(resp.Header.Get("Location")); sess.Price != testPrice {
		t.Fatalf("sold %q, want the product's default price %q", sess.Price, testPrice)
	}
}

func TestCookieRenewsWhileTheVisitorKeepsComing(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CookieMaxAge = caddy.Duration(30 * 24 * time.Hour) })
	_, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); hasCookie(resp, "paywall") {
		t.Fatalf("a fresh cookie was renewed at once")
	}
	// Each visit after half the cookie's life renews it, so a subscriber
	// who comes back every 20 days is never taken for a stranger.
	for day := 20; day <= 100; day += 20 {
		w.clock.Advance(20 * 24 * time.Hour)
		resp := w.get(c, "/premium/a")
		if resp.StatusCode != 200 {
			t.Fatalf("day %d: %d", day, resp.StatusCode)
		}
		if !hasCookie(resp, "paywall") {
			t.Fatalf("day %d: the cookie was not renewed", day)
		}
	}
}

func TestTwoTabsShareOneCheckoutNonce(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	first := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"))
	second := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fb").Header.Get("Location"))
	if first.ClientReferenceID != second.ClientReferenceID {
		t.Fatalf("a second tab's checkout changed the nonce: the first tab's payment would be refused")
	}
	if err := w.fake.CompleteCheckout(first.ID, ""); err != nil {
		t.Fatal(err)
	}
	first, _ = w.fake.Session(first.ID)
	if resp := w.followSuccess(c, first); !hasCookie(resp, "paywall") {
		t.Fatalf("paying in the first tab: %d", resp.StatusCode)
	}
}

func TestOneFreeTrialPerCustomer(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.TrialDays = 14 })
	cus := w.fake.CreateCustomer("trial@example.com")
	w.fake.CreateSubscription(cus, testPrice, "trialing")
	sub := w.fake.Subscriptions(cus)[0].ID
	if err := w.fake.SetStatus(sub, "canceled"); err != nil {
		t.Fatal(err)
	}
	sess := w.sessionOf(w.get(w.cookieFor(cus), "/paywall/checkout?return=%2F").Header.Get("Location"))
	if sess.TrialPeriodDays != 0 {
		t.Fatalf("a customer who had a trial was offered %d more days", sess.TrialPeriodDays)
	}
	fresh := w.sessionOf(w.get(w.browser(), "/paywall/checkout?return=%2F").Header.Get("Location"))
	if fresh.TrialPeriodDays != 14 {
		t.Fatalf("a new visitor was offered %d trial days, want 14", fresh.TrialPeriodDays)
	}
}

func TestCheckoutForADeletedCustomerStartsAfresh(t *testing.T) {
	w := newWorld(t)
	c := w.cookieFor("cus_deletedlongago")
	resp := w.get(c, "/paywall/checkout?return=%2F")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout for a customer Stripe no longer has: %d", resp.StatusCode)
	}
	if sess := w.sessionOf(resp.Header.Get("Location")); sess.Customer != "" {
		t.Fatalf("the session reuses customer %q", sess.Customer)
	}
}

func TestSignOutFromAnotherSiteIsRefused(t *testing.T) {
	w := newWorld(t)
	_, _, c := w.subscriber("active")
	for _, h := range [][]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}} {
		if resp := w.do(c, http.MethodPost, "/paywall/logout", h...); resp.StatusCode != http.StatusForbidden || hasCookie(resp, "paywall") {
			t.Errorf("%s: %d %v, want 403 and the cookie kept", h[0], resp.StatusCode, resp.Cookies())
		}
	}
	u, _ := url.Parse(w.site.URL)
	if resp := w.do(c, http.MethodPost, "/paywall/logout", "Sec-Fetch-Site", "same-origin", "Origin", u.Scheme+"://"+u.Host); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("same-site sign-out: %d", resp.StatusCode)
	}
}

func TestWebhookForAStrangerCostsNoRead(t *testing.T) {
	w := newWorld(t)
	cus := w.fake.CreateCustomer("stranger@example.com")
	body, _ := json.Marshal(map[string]any{"id": "evt_1", "type": "invoice.paid", "data": map[string]any{"object": map[string]any{"id": "in_1", "object": "invoice", "customer": cus}}})
	if got := w.postWebhook(body, w.signed(body, w.clock.Now(), hookSecret)); got != 200 {
		t.Fatalf("webhook: %d", got)
	}
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 0 {
		t.Fatalf("a webhook about a customer this node never saw made %d reads", n)
	}
}

func TestAnAbandonedCheckoutDoesNotMarkStripeDown(t *testing.T) {
	w := newWorld(t)
	w.fake.SetOutage(stripefake.OutageHang)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.site.URL+"/paywall/checkout?return=%2F", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	// Cancel once the request is waiting on Stripe.
	for w.fake.Calls("POST /v1/checkout/sessions") == 0 {
		runtime.Gosched()
	}
	cancel()
	<-done
	w.fake.SetOutage(stripefake.OutageNone)
	if w.h.account.down(now().UnixNano()) {
		t.Fatal("a visitor who closed the tab marked Stripe down for everyone")
	}
}

func TestCacheControlCanBeChangedOrTurnedOff(t *testing.T) {
	for _, tc := range []struct{ option, want string }{{"", "private, no-cache"}, {"private, max-age=60", "private, max-age=60"}, {"off", ""}} {
		w := newWorld(t, func(h *Handler) { h.CacheControl = tc.option })
		_, _, c := w.subscriber("active")
		resp := w.get(c, "/premium/a")
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != tc.want {
			t.Errorf("cache_control %q: %d with Cache-Control %q, want %q", tc.option, resp.StatusCode, resp.Header.Get("Cache-Control"), tc.want)
		}
	}
}

func TestPublicURLBehindATLSProxy(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.PublicURL = "https://shop.example/" })
	c := w.browser()
	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	sess := w.sessionOf(resp.Header.Get("Location"))
	if !strings.HasPrefix(sess.SuccessURL, "https://shop.example/paywall/success?") || sess.CancelURL != "https://shop.example/premium/a" {
		t.Fatalf("success %q cancel %q, want them on https://shop.example", sess.SuccessURL, sess.CancelURL)
	}
	// On HTTPS the checkout cookie has a __Host- name, which no sibling
	// subdomain or plain-HTTP page can plant.
	if ck := cookieNamed(resp, "__Host-paywall_checkout"); ck == nil || !ck.Secure || ck.Path != "/" || ck.Domain != "" {
		t.Fatalf("the checkout cookie must be __Host-, Secure, for / when public_url is https: %+v", ck)
	}
	if _, p := w.problem(c, "/premium/a"); !strings.HasPrefix(p["checkout_url"].(string), "https://shop.example/paywall/checkout?") {
		t.Fatalf("checkout_url %v", p["checkout_url"])
	}
}

func TestARenewedCookieIsNeverCachedForOthers(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CacheControl = "off" })
	_, _, c := w.subscriber("active")
	w.clock.Advance(20 * 24 * time.Hour)
	resp := w.get(c, "/premium/a")
	if !hasCookie(resp, "paywall") || resp.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("renewal: cookie %v, Cache-Control %q; want the cookie and private, no-store", hasCookie(resp, "paywall"), resp.Header.Get("Cache-Control"))
	}
}

// A payer whose facts merely aged past cache_ttl is served from them when
// Stripe is slow, instead of waiting for stripe_timeout.
func TestASlowStripeDoesNotHoldUpAKnownPayer(t *testing.T) {
	oldTimer := staleTimer
	t.Cleanup(func() { staleTimer = oldTimer })
	staleTimer = func() (<-chan time.Time, func() bool) { // the wait runs out at once
		fired := make(chan time.Time, 1)
		fired <- time.Time{}
		return fired, func() bool { return false }
	}
	w := newWorld(t, func(h *Handler) {
		h.CacheTTL = caddy.Duration(time.Minute)
		h.StripeTimeout = caddy.Duration(time.Minute) // far beyond the client's patience below
	})
	_, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	w.fake.SetOutage(stripefake.OutageHang)
	w.clock.Advance(2 * time.Minute)
	c.Timeout = 10 * time.Second
	resp, err := c.Get(w.site.URL + "/premium/a")
	if err != nil {
		t.Fatalf("a known payer waited on a hanging Stripe: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a known payer during a slow Stripe: %d, want the known facts to serve", resp.StatusCode)
	}
}
