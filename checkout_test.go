package paywall

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// lostAnswer sends a request with browser c's cookies, as c would, and
// throws the answer away: the connection dropped, or the visitor gave up,
// before the browser stored anything it said.
func (w *world) lostAnswer(c *http.Client, path string) *http.Response {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodGet, w.site.URL+path, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	u, _ := url.Parse(w.site.URL)
	for _, ck := range c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// successPath is the path of the success URL Stripe sends a payer of sess to.
func (w *world) successPath(sess stripefake.CheckoutSession) string {
	return strings.TrimPrefix(strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", sess.ID), w.site.URL)
}

func TestAPayerWhoseSuccessPageWasLostGetsInByReloadingIt(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	sess := w.startPaid(c, "/premium/a")

	w.fake.ResetCalls()
	if resp := w.lostAnswer(c, w.successPath(sess)); resp.StatusCode != http.StatusSeeOther || !hasCookie(resp, "paywall") {
		t.Fatalf("success: %d %v", resp.StatusCode, resp.Cookies())
	}
	// Nothing but the session's own read stands between the payment and
	// the cookie: no read of the customer that a slow Stripe could hold.
	if calls := w.fake.CallCounts(); w.fake.Calls("") != 1 || calls["GET /v1/checkout/sessions/{id}"] != 1 {
		t.Errorf("the success answer made Stripe calls %v, want only the session's read", calls)
	}

	resp := w.followSuccess(c, sess)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" || !hasCookie(resp, "paywall") {
		t.Fatalf("the reload of the success page: %d to %q, cookies %v; want the payer let in", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("after the reload: %d", resp.StatusCode)
	}
	if n := w.fake.Calls("POST /v1/checkout/sessions"); n != 0 {
		t.Errorf("%d checkouts created after the payment, want none", n)
	}
}

func TestAPayerWhoseSuccessPageWasLostIsLetInByTheArticleNotSoldAgain(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	sess := w.startPaid(c, "/premium/a")
	w.lostAnswer(c, w.successPath(sess))

	// The article knows only that this browser started a checkout, and
	// asks Stripe nothing to say so.
	w.fake.ResetCalls()
	status, p := w.problem(c, "/premium/a")
	if status != http.StatusPaymentRequired || p["reason"] != reasonCheckoutNotDone {
		t.Fatalf("the article after a lost success page: %d %v", status, p)
	}
	if n := visitorCalls(w.fake); n != 0 {
		t.Errorf("the article made %d Stripe calls for a visitor who is not a known customer", n)
	}
	// Its button resumes the checkout: paid, so the payer is let in.
	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" || !hasCookie(resp, "paywall") {
		t.Fatalf("checkout after a paid session: %d to %q cookies %v; want the payer let in", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	if ck := cookieNamed(resp, "paywall_checkout"); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("the checkout cookie must be cleared once the checkout is finished: %+v", ck)
	}
	if n := w.fake.Calls("POST /v1/checkout/sessions"); n != 0 {
		t.Errorf("a payer was sold %d more checkouts", n)
	}
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("after resuming: %d", resp.StatusCode)
	}
	if subs := w.fake.Subscriptions(sess.Customer); len(subs) != 1 {
		t.Errorf("the payer has %d subscriptions, want 1", len(subs))
	}
}

func TestCheckoutSendsABrowserBackToItsOpenSession(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	first := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location")
	for i := 0; i < 5; i++ {
		if again := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fb").Header.Get("Location"); again != first {
			t.Fatalf("checkout %d sent the browser to %q, want its open session %q", i+2, again, first)
		}
	}
	if n := w.fake.Calls("POST /v1/checkout/sessions"); n != 1 {
		t.Errorf("one browser made %d Checkout Sessions, want 1", n)
	}

	// A declined card leaves the session open: back to it, to try another.
	sess := w.sessionOf(first)
	_ = w.fake.CompleteCheckout(sess.ID, stripefake.CardDeclined)
	if again := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"); again != first {
		t.Errorf("after a declined card: %q, want the same session", again)
	}
	// An expired session is replaced by a new one, with the same nonce.
	if err := w.fake.ExpireCheckout(sess.ID); err != nil {
		t.Fatal(err)
	}
	next := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location")
	if next == first || w.sessionOf(next).ClientReferenceID != sess.ClientReferenceID {
		t.Errorf("after expiry: %q, want a new session for the same browser", next)
	}
	// Another browser gets its own.
	if other := w.get(w.browser(), "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"); other == next {
		t.Error("another browser was sent to this browser's session")
	}
}

// A browser is sent back to its open session only while that session sells
// what the page now shows: after the price changes, the old session is
// closed and a new one sells the new price. A cookie of before the price
// was kept in it is still resumed.
func TestAnOpenCheckoutOfAnotherPriceIsNotResumed(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Prices = nil; h.Products = []string{"prod_demo"} })
	w.fake.AddPrice(stripefake.Price{ID: "price_new", Product: "prod_demo", ProductName: "Premium", UnitAmount: 800, Interval: "month"})
	c := w.browser()
	first := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"))
	if first.Price != testPrice {
		t.Fatalf("the first checkout sells %s", first.Price)
	}
	if again := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location")); again.ID != first.ID {
		t.Fatalf("the same price: a new session %s, want %s again", again.ID, first.ID)
	}
	if err := w.fake.UpdateProduct("prod_demo", "", "price_new"); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	next := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"))
	if next.ID == first.ID || next.Price != "price_new" {
		t.Errorf("after the price changed: session %s selling %s, want a new one selling price_new", next.ID, next.Price)
	}
	if old, _ := w.fake.Session(first.ID); old.Status != "expired" {
		t.Errorf("the session of the old price is %s, want expired", old.Status)
	}
	// The cookie as it was before it kept the price: resumed as then.
	u := mustParseURL(t, w.site.URL)
	var nonce string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "paywall_checkout" {
			nonce, _, _ = strings.Cut(ck.Value, ".")
		}
	}
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "paywall_checkout", Value: nonce + "." + next.ID, Path: "/"}})
	if again := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location")); again.ID != next.ID {
		t.Errorf("a cookie without the price: a new session %s, want %s resumed", again.ID, next.ID)
	}
}

func TestSuccessRefusalsExplainWhatToDo(t *testing.T) {
	w := newWorld(t)
	payer := w.browser()
	sess := w.startPaid(payer, "/premium/a")
	for _, tc := range []struct {
		name   string
		c      *http.Client
		path   string
		status int
		reason string
		words  string
	}{
		{"a malformed session", payer, "/paywall/success?return=%2Fpremium%2Fa&session_id=nope", 400, reasonCheckoutLinkInvalid, "Tautan pembayaran ini tidak berlaku"},
		{"another browser", w.browser(), w.successPath(sess), 403, reasonCheckoutOtherBrowser, "Pembayaran ini milik browser lain"},
	} {
		resp := w.get(tc.c, tc.path, "Accept-Language", "id-ID,id;q=0.9", "Accept", "text/html")
		body := bodyOf(resp)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.words) || !strings.Contains(body, `href="/premium/a"`) ||
			!strings.Contains(resp.Header.Get("Content-Type"), "text/html") || hasCookie(resp, "paywall") {
			t.Errorf("%s: %d %q\n%s", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		_, p := w.problem(tc.c, tc.path)
		if p["reason"] != tc.reason || p["status"] != float64(tc.status) {
			t.Errorf("%s: problem %v", tc.name, p)
		}
		if strings.Contains(body, `id="signin"`) {
			t.Errorf("%s: a sign-in form without email sign-in configured:\n%s", tc.name, body)
		}
	}
}

// With email sign-in, a payer whose return from Stripe cannot be completed
// here (another browser, a broken link) is offered the way in that works
// on any device, beside the way back; in both languages and in JSON.
func TestSuccessRefusalsOfferSigninByEmail(t *testing.T) {
	w, _ := signinWorld(t)
	payer := w.browser()
	sess := w.startPaid(payer, "/premium/a")
	for _, tc := range []struct {
		name, path string
		c          *http.Client
		lang, want string
	}{
		{"another browser", w.successPath(sess), w.browser(), "en", "Paid already? Sign in by email"},
		{"a broken link", "/paywall/success?return=%2Fpremium%2Fa&session_id=nope", payer, "id", "Sudah membayar? Masuk lewat email"},
	} {
		body := pageOf(w.get(tc.c, tc.path, "Accept-Language", tc.lang, "Accept", "text/html"))
		for _, want := range []string{tc.want, `<form id="signin" class="signin" method="post" action="/paywall/signin">`,
			`name="return" value="/premium/a"`, `id="back" class="button" href="/premium/a"`} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the page lacks %s:\n%s", tc.name, want, body)
			}
		}
		if _, p := w.problem(tc.c, tc.path); p["signin_url"] != w.site.URL+"/paywall/signin" {
			t.Errorf("%s: problem's signin_url %v", tc.name, p["signin_url"])
		}
	}
}

func TestCheckoutLimitPerClientAddress(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CheckoutLimit = &Limit{Max: 3, Per: caddy.Duration(30 * time.Minute)} })
	core, logs := observer.New(zapcore.WarnLevel)
	w.h.logger = zap.New(core)
	for i := 0; i < 3; i++ {
		if resp := w.get(w.browser(), "/paywall/checkout?return=%2F"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("checkout %d: %d", i+1, resp.StatusCode)
		}
	}
	for i := 0; i < 3; i++ {
		resp := w.get(w.browser(), "/paywall/checkout?return=%2F", "Accept", "text/html")
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || ra < 590 || ra > 600 || !strings.Contains(bodyOf(resp), "Too many checkouts from your network") ||
			!strings.Contains(bodyOf(resp), "about 10 minutes") {
			t.Fatalf("checkout beyond the limit: %d Retry-After %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), bodyOf(resp))
		}
	}
	if n := w.fake.Calls("POST /v1/checkout/sessions"); n != 3 {
		t.Errorf("%d Checkout Sessions, want 3", n)
	}
	if lines := logs.FilterMessageSnippet("checkout_limit reached").All(); len(lines) != 1 ||
		lines[0].ContextMap()["client_ip"] != "127.0.0.1" || !strings.Contains(lines[0].Message, "trusted_proxies") {
		t.Errorf("log lines for the limit: %v, want one naming the address and trusted_proxies", lines)
	}
	w.clock.Advance(10 * time.Minute)
	if resp := w.get(w.browser(), "/paywall/checkout?return=%2F"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a window's share later: %d, want a checkout", resp.StatusCode)
	}
}

func TestCheckoutLimitDefaultsAndOff(t *testing.T) {
	w := newWorld(t)
	if w.h.checkoutLimit != (limitSpec{"checkout", 30, 10 * time.Minute}) || w.h.limiter == nil {
		t.Errorf("default checkout limit %+v", w.h.checkoutLimit)
	}
	off := newWorld(t, func(h *Handler) { h.CheckoutLimit = &Limit{Off: true} })
	if off.h.limiter != nil {
		t.Error("checkout_limit off still limits")
	}
	// More than the default's 30 from one address, a second apart so
	// that the account's budget is never the limit.
	for i := 0; i < defaultCheckoutLimit+5; i++ {
		off.clock.Advance(time.Second)
		if resp := off.get(off.browser(), "/paywall/checkout?return=%2F"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("checkout_limit off: checkout %d got %d", i+1, resp.StatusCode)
		}
	}
}

func TestACheckoutFloodLeavesStripesReadsToPayers(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CheckoutLimit = &Limit{Off: true} })
	w.fake.SetOutageFor("POST /v1/checkout/sessions", stripefake.OutageRateLimit)
	busy := 0
	for i := 0; i < 100; i++ {
		resp := w.get(w.browser(), "/paywall/checkout?return=%2F", "Accept", "application/json")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("checkout %d while Stripe limits checkouts: %d", i+1, resp.StatusCode)
		}
		if strings.Contains(bodyOf(resp), reasonCheckoutBusy) {
			busy++
		}
	}
	if n := w.fake.Calls("POST /v1/checkout/sessions"); n != checkoutBudgetBurst {
		t.Errorf("a flood of 100 checkouts made %d calls to Stripe, want the budget's %d", n, checkoutBudgetBurst)
	}
	if busy != 100-checkoutBudgetBurst {
		t.Errorf("%d checkouts were told the paywall is busy, want %d", busy, 100-checkoutBudgetBurst)
	}
	// A payer this node has not cached yet is read, not refused.
	_, _, payer := w.subscriber("active")
	if resp := w.get(payer, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("a payer during a checkout flood: %d, want 200", resp.StatusCode)
	}
	// The budget comes back with time.
	w.fake.SetOutageFor("POST /v1/checkout/sessions", "")
	w.clock.Advance(time.Second)
	if resp := w.get(w.browser(), "/paywall/checkout?return=%2F"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a second later: %d, want a checkout", resp.StatusCode)
	}
}

func TestAHungCheckoutStartsTheOutageBackoff(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.StripeTimeout = caddy.Duration(200 * time.Millisecond) })
	w.fake.SetOutageFor("POST /v1/checkout/sessions", stripefake.OutageHang)
	for i := 0; i < 3; i++ {
		if resp := w.get(w.browser(), "/paywall/checkout?return=%2F"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("checkout %d on a hung Stripe: %d, want 503", i+1, resp.StatusCode)
		}
	}
	// The first waited for Stripe; the others were answered by the back-off.
	// (The SDK's one retry may follow the first attempt within the timeout.)
	if n := w.fake.Calls("POST /v1/checkout/sessions"); n < 1 || n > 2 {
		t.Errorf("%d checkout calls reached a hung Stripe, want those of the first visitor only", n)
	}
	w.fake.SetOutageFor("POST /v1/checkout/sessions", "")
	w.clock.Advance(outageBackoff)
	if resp := w.get(w.browser(), "/paywall/checkout?return=%2F"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the back-off: %d", resp.StatusCode)
	}
}

// Once a payer waited staleWait for a hung Stripe, the next payers whose
// facts aged are served from them at once, for as long as Stripe hangs.
func TestAHungStripeHoldsUpAgedPayersOncePerOutage(t *testing.T) {
	// The first aged payer's wait runs out at once; a later one that
	// waited would wait for ever.
	var waits atomic.Int32
	oldTimer := staleTimer
	t.Cleanup(func() { staleTimer = oldTimer })
	staleTimer = func() (<-chan time.Time, func() bool) {
		if waits.Add(1) > 1 {
			return nil, func() bool { return false }
		}
		fired := make(chan time.Time, 1)
		fired <- time.Time{}
		return fired, func() bool { return false }
	}
	w := newWorld(t, func(h *Handler) {
		h.CacheTTL = caddy.Duration(time.Minute)
		h.StripeTimeout = caddy.Duration(time.Minute) // the fake hangs until it closes
	})
	var payers []*http.Client
	for i := 0; i < 3; i++ {
		_, _, c := w.subscriber("active")
		if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
		payers = append(payers, c)
	}
	w.fake.SetOutage(stripefake.OutageHang)
	w.clock.Advance(2 * time.Minute)
	for i, c := range payers {
		c.Timeout = 10 * time.Second
		resp, err := c.Get(w.site.URL + "/premium/a")
		if err != nil {
			t.Fatalf("aged payer %d waited on the hung Stripe: %v", i+1, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("aged payer %d: %d", i+1, resp.StatusCode)
		}
	}
	if n := waits.Load(); n != 1 {
		t.Errorf("%d payers waited for the hung Stripe, want 1", n)
	}
}

func TestAForgedHostNeverReachesStripe(t *testing.T) {
	w := newWorld(t)
	core, logs := observer.New(zapcore.WarnLevel)
	w.h.logger = zap.New(core)
	_, _, payer := w.subscriber("past_due")
	for _, tc := range []struct {
		path string
		c    *http.Client
	}{
		{"/paywall/checkout?return=%2Fpremium%2Fa", w.browser()},
		{"/paywall/portal?return=%2Fpremium%2Fa", payer}, // a failed payment: the portal, not a checkout
	} {
		{
			path, c := tc.path, tc.c
			req, _ := http.NewRequest(http.MethodGet, w.site.URL+path, nil)
			req.Host = "evil.example"
			req.Header.Set("Accept", "text/html")
			u, _ := url.Parse(w.site.URL)
			for _, ck := range c.Jar.Cookies(u) {
				req.AddCookie(ck) // the jar goes by the Host, which is forged
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := bodyOf(resp)
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "Checkout is not available at this address") {
				t.Errorf("%s with Host evil.example: %d\n%s", path, resp.StatusCode, body)
			}
		}
	}
	if n := w.fake.Calls("POST /v1/checkout/sessions") + w.fake.Calls("POST /v1/billing_portal/sessions"); n != 0 {
		t.Errorf("%d sessions were made for a forged Host", n)
	}
	if lines := logs.FilterMessageSnippet("public_url is needed").All(); len(lines) != 1 {
		t.Errorf("%d log lines about public_url, want 1", len(lines))
	}
	// The article's problem document gives a path, not a URL on the forged host.
	req, _ := http.NewRequest(http.MethodGet, w.site.URL+"/premium/a", nil)
	req.Host = "evil.example"
	req.Header.Set("Accept", "application/json")
	resp, err := w.browser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := bodyOf(resp)
	resp.Body.Close()
	if strings.Contains(body, "evil.example") || !strings.Contains(body, `"checkout_url":"/paywall/checkout?return=`) {
		t.Errorf("problem document for a forged Host: %s", body)
	}
}

func TestHeadOnTheEndpointsHasNoEffect(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	sess := w.startPaid(c, "/premium/a")
	w.fake.ResetCalls()
	for _, path := range []string{"/paywall/checkout?return=%2F", w.successPath(sess), "/paywall/portal?return=%2F"} {
		resp := w.do(c, http.MethodHead, path)
		if resp.StatusCode != http.StatusNoContent || len(resp.Cookies()) != 0 {
			t.Errorf("HEAD %s: %d %v, want 204 and nothing set", path, resp.StatusCode, resp.Cookies())
		}
	}
	if n := w.fake.Calls(""); n != 0 {
		t.Errorf("HEAD made %d Stripe calls", n)
	}
	if resp := w.do(c, http.MethodDelete, "/paywall/checkout"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("DELETE checkout: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

type certNames map[string]bool

func (c certNames) HasCertificateForSubject(name string) bool { return c[name] }

func TestOriginTrustsNamesCaddyHoldsCertificatesFor(t *testing.T) {
	h := pageHandler()
	h.publicURL = ""
	h.certs = certNames{"b.example.com": true}
	for _, tc := range []struct {
		host, sni string
		tls       bool
		header    string
		want      string
	}{
		// A browser that sends b's requests over a's connection (one
		// certificate for both): b is a name this Caddy holds.
		{"b.example.com", "a.example.com", true, "", "https://b.example.com"},
		{"evil.example", "a.example.com", true, "", ""},
		{"a.example.com", "a.example.com", true, "", "https://a.example.com"},
		{"localhost:8080", "", false, "", "http://localhost:8080"},
		{"[::1]:8080", "", false, "", "http://[::1]:8080"},
		{"127.0.0.1:8080", "", false, "X-Forwarded-For", ""}, // a local proxy in front: public_url is needed
		{"localhost:8080!", "", false, "", ""},
		{"example.com", "", false, "", ""},
	} {
		r := httptestRequest(tc.host)
		if tc.tls {
			r.TLS = &tls.ConnectionState{ServerName: tc.sni}
		}
		if tc.header != "" {
			r.Header.Set(tc.header, "203.0.113.9")
		}
		got, ok := h.origin(r)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Host %q, TLS %v %q, %s: origin %q %v, want %q", tc.host, tc.tls, tc.sni, tc.header, got, ok, tc.want)
		}
	}
}

func httptestRequest(host string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://placeholder/paywall/checkout", nil)
	r.Host = host
	return r
}

func TestACompletedCheckoutLetsItsBrowserInForADayOnly(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	sess := w.startPaid(c, "/premium/a")
	w.lostAnswer(c, w.successPath(sess))
	w.clock.Advance(checkoutLifetime + checkoutCookieLifetime)
	if resp := w.followSuccess(c, sess); hasCookie(resp, "paywall") {
		t.Fatalf("a session completed a day ago still lets its browser in: %d", resp.StatusCode)
	}
}

func TestACheckoutWhosePaymentIsUnderWayIsNotSoldAgain(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	sess := w.startPaid(c, "/premium/a")
	// A bank debit: the session is complete, the money on its way.
	if err := w.fake.SetSessionPaymentStatus(sess.ID, "unpaid"); err != nil {
		t.Fatal(err)
	}
	w.lostAnswer(c, w.successPath(sess))
	resp := w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa")
	if resp.StatusCode != http.StatusSeeOther || !hasCookie(resp, "paywall") || w.fake.Calls("POST /v1/checkout/sessions") != 1 {
		t.Fatalf("checkout after a completed, unpaid session: %d %v, %d sessions; want the visitor known and no second session",
			resp.StatusCode, resp.Cookies(), w.fake.Calls("POST /v1/checkout/sessions"))
	}
}

func TestMadeUpSuccessLinksAreHeldToTheCheckoutLimit(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CheckoutLimit = &Limit{Max: 5, Per: caddy.Duration(time.Hour)} })
	for i := 0; i < 20; i++ {
		c := w.browser()
		u, _ := url.Parse(w.site.URL)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "paywall_checkout", Value: newNonce(), Path: "/"}})
		w.get(c, "/paywall/success?session_id=cs_test_madeup"+strconv.Itoa(i))
	}
	if n := w.fake.Calls("GET /v1/checkout/sessions/{id}"); n != 5 {
		t.Errorf("20 made-up success links from one address made %d Stripe reads, want checkout_limit's 5", n)
	}
}

func TestAnIPv6HostCountsAsOneAddress(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CheckoutLimit = &Limit{Max: 2, Per: caddy.Duration(time.Hour)} })
	t0 := now().UnixNano()
	allowed := 0
	for i := 1; i <= 4; i++ {
		r := httptestRequest("localhost")
		r.RemoteAddr = "[2001:db8:1:2::" + strconv.Itoa(i) + "]:4000"
		if ok, _ := w.h.limiter.allow(w.h.limitKey(r), t0); ok {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("4 addresses of one /64 started %d checkouts, want 2", allowed)
	}
	r := httptestRequest("localhost")
	r.RemoteAddr = "[2001:db8:1:3::1]:4000"
	if ok, _ := w.h.limiter.allow(w.h.limitKey(r), t0); !ok {
		t.Error("another /64 was refused")
	}
}

func TestOnHTTPSTheCheckoutCookieIsHostOnly(t *testing.T) {
	h := pageHandler()
	h.cookies = newCookieJar("paywall", time.Hour, strings.Repeat("k", 32), nil, zap.NewNop())
	nonce, sid := newNonce(), "cs_test_abc"
	for _, tc := range []struct {
		name, cookie        string
		tls                 bool
		wantNonce, wantSess string
	}{
		{"HTTPS, __Host- cookie", "__Host-paywall_checkout=" + nonce + "." + sid, true, nonce, sid},
		// Set under the plain name, on HTTPS: by this site before the
		// upgrade, or planted by a sibling subdomain: its nonce only.
		{"HTTPS, plain cookie", "paywall_checkout=" + nonce + "." + sid, true, nonce, ""},
		{"HTTP, plain cookie", "paywall_checkout=" + nonce + "." + sid, false, nonce, sid},
		{"HTTP, __Host- cookie", "__Host-paywall_checkout=" + nonce + "." + sid, false, "", ""},
	} {
		r := httptestRequest("example.com")
		if tc.tls {
			r.TLS = &tls.ConnectionState{ServerName: "example.com"}
		}
		r.Header.Set("Cookie", tc.cookie)
		n, s, _ := h.checkoutCookie(r)
		if n != tc.wantNonce || s != tc.wantSess {
			t.Errorf("%s: nonce %q session %q, want %q %q", tc.name, n, s, tc.wantNonce, tc.wantSess)
		}
		if !h.startedCheckout(r) {
			t.Errorf("%s: not taken for a started checkout", tc.name)
		}
	}
}

func TestAReplacedCheckoutIsClosedSoItCannotBePaidToo(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	first := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"))
	// Too close to its end to send a visitor back to.
	w.clock.Advance(checkoutLifetime - resumeMargin + time.Minute)
	next := w.sessionOf(w.get(c, "/paywall/checkout?return=%2Fpremium%2Fa").Header.Get("Location"))
	if next.ID == first.ID {
		t.Fatal("a session with minutes left was resumed")
	}
	if old, _ := w.fake.Session(first.ID); old.Status != "expired" {
		t.Errorf("the replaced session is %s, want expired: a tab still showing it could be paid too", old.Status)
	}
	if err := w.fake.CompleteCheckout(first.ID, stripefake.CardSuccess); err == nil {
		t.Error("the replaced session could still be paid")
	}
}

func TestAPayerComingBackFromStripeIsNotHeldToTheLimitsOfOthers(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.CheckoutLimit = &Limit{Max: 1, Per: caddy.Duration(time.Hour)} })
	c := w.browser()
	sess := w.startPaid(c, "/premium/a") // uses the address's one checkout
	// The budget spent by others does not stop the payer either.
	for w.h.account.checkoutBudget.take(now().UnixNano()) {
	}
	if resp := w.followSuccess(c, sess); resp.StatusCode != http.StatusSeeOther || !hasCookie(resp, "paywall") {
		t.Fatalf("a payer back from Stripe: %d %v", resp.StatusCode, resp.Cookies())
	}
	// A made-up link from the same address, now over its limit, is told
	// to wait, on a page that sends a payer back to the link.
	other := w.browser()
	u, _ := url.Parse(w.site.URL)
	other.Jar.SetCookies(u, []*http.Cookie{{Name: "paywall_checkout", Value: newNonce(), Path: "/"}})
	w.get(other, "/paywall/success?session_id=cs_test_madeup1")
	resp := w.get(other, "/paywall/success?session_id=cs_test_madeup2", "Accept", "text/html")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(bodyOf(resp), "nothing will be charged again") ||
		!strings.Contains(bodyOf(resp), `href="/paywall/success?session_id=cs_test_madeup2"`) {
		t.Errorf("a made-up link over the limit: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
}
