package paywall_test

import (
	"net/http"
	"strings"
	"testing"
)

// These tests run the real Caddy binary with metered free views
// (`free_views 2 per 1h`): a visitor who does not pay reads two distinct
// gated pages per hour, counted in the signed cookie paywall_meter, and
// a client that keeps no cookies is bounded by free_views_per_ip.

// meterCaddyfile shows what the paywall decided, in plain text, so that
// each answer says whether it was a free view and how many are left.
const meterCaddyfile = `http://127.0.0.1:{{.HTTPPort}} {
	paywall /premium/* {` + e2ePaywallBlock + `
		free_views 2 per 1h
		free_views_per_ip 3
	}
	respond "status={http.paywall.status} left={http.paywall.free_views_left}"
}
`

// meterDo sends one request as a browser's navigation (dest "document"),
// a page's image (dest "image"), or, with dest "", a program that sends
// only Accept.
func meterDo(t *testing.T, c *http.Client, method, u, dest, accept string) (*http.Response, string) {
	t.Helper()
	if dest == "" {
		return identDo(t, c, method, u, accept)
	}
	mode := "no-cors"
	if dest == "document" {
		mode = "navigate"
	}
	return identDo(t, c, method, u, accept, identHeader("Sec-Fetch-Dest", dest), identHeader("Sec-Fetch-Mode", mode))
}

const meterHTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// meterFree checks a free view: 200, the placeholders, and a
// Cache-Control that keeps it out of every cache.
func meterFree(t *testing.T, what string, res *http.Response, body string, left string) {
	t.Helper()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d, want 200 (a free view)\n%s", what, res.StatusCode, body)
	}
	if want := "status=free_view left=" + left; body != want {
		t.Errorf("%s: body %q, want %q", what, body, want)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("%s: Cache-Control %q, want \"private, no-store\"", what, cc)
	}
}

// meterSpent checks the built-in page of a visitor whose free views are
// used up.
func meterSpent(t *testing.T, what string, res *http.Response, body string) {
	t.Helper()
	if res.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("%s: %d, want 402\n%s", what, res.StatusCode, body)
	}
	for _, want := range []string{
		`data-reason="free_views_used"`,
		"You have read your 2 free articles",
		"Subscribe to keep reading everything. Your free articles come back in ",
		`id="subscribe"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("%s: the page lacks %q\n%s", what, want, body)
		}
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
	}
	if strings.Contains(body, "status=free_view") {
		t.Errorf("%s: the refusal shows the content", what)
	}
}

// meterSetsCookie reports whether an answer sets the meter cookie.
func meterSetsCookie(res *http.Response) bool {
	for _, ck := range res.Cookies() {
		if ck.Name == "paywall_meter" {
			return true
		}
	}
	return false
}

func TestEndToEndMeter(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs caddy")
	}
	inst, fake := e2eStart(t, meterCaddyfile, nil)
	site := inst.URL()
	browser := e2eBrowser(t)

	// Only the cookie counts: no call to Stripe for anyone here.
	fake.ResetCalls()

	res, body := meterDo(t, browser, http.MethodGet, site+"/premium/a", "document", meterHTML)
	meterFree(t, "the first page", res, body, "1")
	var meterCookie *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "paywall_meter" {
			meterCookie = ck
		}
	}
	if meterCookie == nil {
		t.Fatalf("the first free view set no paywall_meter cookie: %v", res.Header.Values("Set-Cookie"))
	}
	if !meterCookie.HttpOnly || meterCookie.Path != "/" || meterCookie.SameSite != http.SameSiteLaxMode {
		t.Errorf("paywall_meter cookie %+v, want HttpOnly, Path=/, SameSite=Lax", meterCookie)
	}
	if meterCookie.MaxAge <= 0 || meterCookie.MaxAge > 3600 {
		t.Errorf("paywall_meter Max-Age %d, want at most the window (3600)", meterCookie.MaxAge)
	}

	res, body = meterDo(t, browser, http.MethodGet, site+"/premium/a", "document", meterHTML)
	meterFree(t, "the first page again", res, body, "1")

	// A page's image, after a free view: passes and counts nothing.
	res, body = meterDo(t, browser, http.MethodGet, site+"/premium/a.png", "image", "image/avif,image/webp,*/*")
	meterFree(t, "an image of the free page", res, body, "1")

	// HEAD answers what GET would, without using a view.
	before := e2eCookie(browser, site, "paywall_meter")
	res, body = meterDo(t, browser, http.MethodHead, site+"/premium/b", "document", meterHTML)
	if res.StatusCode != http.StatusOK || body != "" {
		t.Fatalf("HEAD of a new page with a view left: %d %q, want 200 and no body", res.StatusCode, body)
	}
	if meterSetsCookie(res) || e2eCookie(browser, site, "paywall_meter") != before {
		t.Errorf("HEAD of a new page changed the meter: %v", res.Header.Values("Set-Cookie"))
	}

	res, body = meterDo(t, browser, http.MethodGet, site+"/premium/b", "document", meterHTML)
	meterFree(t, "the second page", res, body, "0")

	res, body = meterDo(t, browser, http.MethodGet, site+"/premium/c", "document", meterHTML)
	meterSpent(t, "the third page", res, body)
	if meterSetsCookie(res) {
		t.Errorf("the refusal of the third page set the meter cookie: %v", res.Header.Values("Set-Cookie"))
	}

	// The pages already read still open.
	res, body = meterDo(t, browser, http.MethodGet, site+"/premium/a", "document", meterHTML)
	meterFree(t, "the first page, views spent", res, body, "0")

	spent := e2eCookie(browser, site, "paywall_meter")
	res, body = meterDo(t, browser, http.MethodHead, site+"/premium/c", "document", meterHTML)
	if res.StatusCode != http.StatusPaymentRequired || body != "" {
		t.Errorf("HEAD of the third page: %d %q, want 402 and no body", res.StatusCode, body)
	}
	if meterSetsCookie(res) || e2eCookie(browser, site, "paywall_meter") != spent {
		t.Errorf("HEAD of the third page changed the meter: %v", res.Header.Values("Set-Cookie"))
	}
	res, body = meterDo(t, browser, http.MethodGet, site+"/premium/c", "document", meterHTML)
	meterSpent(t, "the third page after HEAD", res, body)

	// A program asking for JSON never gets a free view, spent or not,
	// and no meter cookie.
	for _, c := range []struct {
		what   string
		client *http.Client
	}{
		{"the reader who spent the views", browser},
		{"a new client", e2eBrowser(t)},
	} {
		res, body = meterDo(t, c.client, http.MethodGet, site+"/premium/json-"+strings.ReplaceAll(c.what, " ", "-"), "", "application/json")
		identRefused(t, "JSON from "+c.what, res, body, http.StatusPaymentRequired, "no_subscription")
		if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, "json") {
			t.Errorf("JSON from %s: Content-Type %q, want a problem document", c.what, ct)
		}
		if meterSetsCookie(res) {
			t.Errorf("JSON from %s set the meter cookie: %v", c.what, res.Header.Values("Set-Cookie"))
		}
	}
	if e2eCookie(browser, site, "paywall_meter") != spent {
		t.Error("the JSON request changed the reader's meter")
	}

	// An image with no free view behind it is refused.
	res, body = meterDo(t, identNoJar(), http.MethodGet, site+"/premium/a.png", "image", "image/avif,image/webp,*/*")
	if res.StatusCode != http.StatusPaymentRequired {
		t.Errorf("an image without a meter: %d, want 402\n%s", res.StatusCode, body)
	}

	if n := visitorCalls(fake); n != 0 || offerReads(fake) > 1 {
		t.Errorf("the fake got %d API calls for visitors without a paywall cookie, want 0 (and the price at most once): %v", n, fake.CallCounts())
	}
}

// A client that drops the meter cookie starts afresh each time, but its
// address reads at most free_views_per_ip new pages per window.
func TestEndToEndMeterPerIP(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs caddy")
	}
	inst, _ := e2eStart(t, meterCaddyfile, nil)
	site := inst.URL()
	for i, page := range []string{"p1", "p2", "p3"} {
		res, body := meterDo(t, identNoJar(), http.MethodGet, site+"/premium/"+page, "document", meterHTML)
		meterFree(t, "new page "+string(rune('1'+i))+" without cookies", res, body, "1")
	}
	res, body := meterDo(t, identNoJar(), http.MethodGet, site+"/premium/p4", "document", meterHTML)
	meterSpent(t, "the fourth new page without cookies", res, body)
	// With no cookie, even a page read before is a new view.
	res, body = meterDo(t, identNoJar(), http.MethodGet, site+"/premium/p1", "document", meterHTML)
	meterSpent(t, "the first page again without cookies", res, body)
}
