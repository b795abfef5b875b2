package paywall

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func withFreeViews(n int, per time.Duration, perIP int) option {
	return func(h *Handler) {
		h.FreeViews = &Limit{Max: n, Per: caddy.Duration(per)}
		h.FreeViewsPerIP = perIP
	}
}

// read asks for a gated page as a browser's tab does.
func (w *world) read(c *http.Client, path string, header ...string) *http.Response {
	w.t.Helper()
	return w.get(c, path, append([]string{"Sec-Fetch-Dest", "document", "Accept", "text/html,*/*;q=0.8"}, header...)...)
}

func meterCookie(w *world, c *http.Client) *http.Cookie {
	u, _ := url.Parse(w.site.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "paywall_meter" {
			return ck
		}
	}
	return nil
}

func TestFreeViewsCountDistinctPagesPerWindow(t *testing.T) {
	w := newWorld(t, withFreeViews(3, 30*24*time.Hour, 0))
	c := w.browser()
	for i, tc := range []struct {
		path string
		left int
	}{{"/premium/a", 2}, {"/premium/b", 1}, {"/premium/a", 1}, {"/premium/b?page=2", 1}, {"/premium/c", 0}} {
		resp := w.read(c, tc.path)
		if resp.StatusCode != 200 {
			t.Fatalf("view %d (%s): %d", i, tc.path, resp.StatusCode)
		}
		if v := w.placeholder("http.paywall.free_views_left"); v != tc.left || w.placeholder("http.paywall.status") != statusFreeView {
			t.Errorf("view %d (%s): left %v status %v, want %d", i, tc.path, v, w.placeholder("http.paywall.status"), tc.left)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "private, no-store" {
			t.Errorf("a free view's Cache-Control %q", cc)
		}
	}
	resp := w.read(c, "/premium/d")
	body := bodyOf(resp)
	if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, "You have read your 3 free articles") ||
		!strings.Contains(body, "come back in 30 days") || !strings.Contains(body, `id="subscribe"`) {
		t.Fatalf("after the last view: %d %s", resp.StatusCode, body)
	}
	if resp := w.read(c, "/premium/d", "Accept-Language", "id"); !strings.Contains(bodyOf(resp), "Anda sudah membaca 3 artikel gratis") {
		t.Errorf("in Indonesian: %s", bodyOf(resp))
	}
	// A page already read stays open.
	if resp := w.read(c, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("a page read before: %d", resp.StatusCode)
	}
	w.clock.Advance(29 * 24 * time.Hour)
	if body := bodyOf(w.read(c, "/premium/d")); !strings.Contains(body, "come back in 24 hours") {
		t.Errorf("a day before the window ends: %s", body)
	}
	w.clock.Advance(24*time.Hour + time.Second)
	if resp := w.read(c, "/premium/d"); resp.StatusCode != 200 || w.placeholder("http.paywall.free_views_left") != 2 {
		t.Errorf("a new window: %d left %v", resp.StatusCode, w.placeholder("http.paywall.free_views_left"))
	}
}

func TestFreeViewsAreBoundedPerAddressForClientsWithoutCookies(t *testing.T) {
	w := newWorld(t, withFreeViews(2, time.Hour, 5))
	noJar := &http.Client{}
	for i := range 5 {
		if resp := w.read(noJar, "/premium/p"+string(rune('a'+i))); resp.StatusCode != 200 {
			t.Fatalf("view %d without cookies: %d", i, resp.StatusCode)
		}
	}
	resp := w.read(noJar, "/premium/pz")
	if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(bodyOf(resp), "free_views_used") {
		t.Errorf("past free_views_per_ip: %d", resp.StatusCode)
	}
	// A forged meter cookie is no meter: it is held to the same bound.
	c := w.browser()
	u, _ := url.Parse(w.site.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "paywall_meter", Value: "v1.0.0..AAAA"}})
	if resp := w.read(c, "/premium/new"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("a forged meter from a spent address: %d", resp.StatusCode)
	}
	// HEAD answers what GET would: the address has no view left.
	if resp := w.do(noJar, http.MethodHead, "/premium/py", "Sec-Fetch-Dest", "document"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("HEAD from a spent address: %d", resp.StatusCode)
	}
	// The same address written as IPv4-mapped IPv6 is the same address.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "[::ffff:127.0.0.1]:4000"
	if k := w.h.limitKey(r); k != "127.0.0.1" {
		t.Errorf("limitKey of an IPv4-mapped address: %q", k)
	}
}

func TestATamperedMeterCountsAsNone(t *testing.T) {
	w := newWorld(t, withFreeViews(1, time.Hour, 0))
	c := w.browser()
	w.read(c, "/premium/a")
	ck := meterCookie(w, c)
	if ck == nil {
		t.Fatal("no meter cookie")
	}
	if resp := w.read(c, "/premium/b"); resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("second page of one: %d", resp.StatusCode)
	}
	// The same cookie with the pages list emptied: the signature fails,
	// so it is a fresh meter (one more view, counted for the address).
	parts := strings.Split(ck.Value, ".")
	parts[3] = ""
	forged := *ck
	forged.Value = strings.Join(parts, ".")
	m, ok := w.h.meter.read(&http.Request{Header: http.Header{"Cookie": {"paywall_meter=" + forged.Value}}}, now().Unix())
	if ok {
		t.Fatalf("a tampered meter verified: %+v", m)
	}
	if _, ok := w.h.meter.read(&http.Request{Header: http.Header{"Cookie": {"paywall_meter=" + ck.Value}}}, now().Unix()); !ok {
		t.Fatal("the meter as issued does not verify: the test shows nothing")
	}
}

func TestSubscribersAreNotMeteredAndProgramsGetNoFreeViews(t *testing.T) {
	w := newWorld(t, withFreeViews(1, time.Hour, 0))
	_, _, c := w.subscriber("active")
	for _, p := range []string{"/premium/a", "/premium/b", "/premium/c"} {
		if resp := w.read(c, p); resp.StatusCode != 200 || meterCookie(w, c) != nil || w.placeholder("http.paywall.status") != statusEntitled {
			t.Fatalf("a subscriber on %s: %d, meter %v", p, resp.StatusCode, meterCookie(w, c))
		}
	}
	anon := w.browser()
	if resp := w.get(anon, "/premium/a", "Accept", "application/json"); resp.StatusCode != 402 || meterCookie(w, anon) != nil ||
		!strings.Contains(bodyOf(resp), `"reason":"no_subscription"`) {
		t.Errorf("JSON: %d %s", resp.StatusCode, bodyOf(resp))
	}
	// HEAD answers what GET would, without using the view.
	if resp := w.do(anon, http.MethodHead, "/premium/a", "Sec-Fetch-Dest", "document"); resp.StatusCode != 200 || meterCookie(w, anon) != nil {
		t.Errorf("HEAD: %d, meter %v", resp.StatusCode, meterCookie(w, anon))
	}
	if resp := w.read(anon, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("the view HEAD left: %d", resp.StatusCode)
	}
	if resp := w.do(anon, http.MethodHead, "/premium/b", "Sec-Fetch-Dest", "document"); resp.StatusCode != 402 {
		t.Errorf("HEAD with no view left: %d", resp.StatusCode)
	}
}

func TestAFailedPaymentIsToldNotGivenFreeViews(t *testing.T) {
	w := newWorld(t, withFreeViews(3, time.Hour, 0))
	_, _, failed := w.subscriber("past_due")
	if resp := w.read(failed, "/premium/a"); resp.StatusCode != 402 || !strings.Contains(bodyOf(resp), "payment_failed") {
		t.Errorf("a failed payment: %d", resp.StatusCode)
	}
	_, _, ended := w.subscriber("canceled")
	if resp := w.read(ended, "/premium/a"); resp.StatusCode != 200 || w.placeholder("http.paywall.status") != statusFreeView {
		t.Errorf("a lapsed subscriber's free view: %d", resp.StatusCode)
	}
}

func TestAFreePagesImagesLoadForAWhile(t *testing.T) {
	w := newWorld(t, withFreeViews(1, 24*time.Hour, 0))
	c := w.browser()
	image := []string{"Sec-Fetch-Dest", "image", "Accept", "image/avif,image/webp,*/*"}
	if resp := w.get(c, "/premium/figure.png", image...); resp.StatusCode != 402 {
		t.Errorf("an image without a free view: %d", resp.StatusCode)
	}
	w.read(c, "/premium/a")
	left := meterCookie(w, c).Value
	if resp := w.get(c, "/premium/figure.png", image...); resp.StatusCode != 200 || meterCookie(w, c).Value != left {
		t.Errorf("the free page's image: %d, meter changed %v", resp.StatusCode, meterCookie(w, c).Value != left)
	}
	// An article asked for as an image, or as nothing in particular,
	// is not a subresource: no page comes out that way.
	w.content = func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(rw, "<p>premium article</p>")
	}
	if resp := w.get(c, "/premium/b", image...); resp.StatusCode != 402 || strings.Contains(bodyOf(resp), "premium article") {
		t.Errorf("an article as an image: %d %q", resp.StatusCode, bodyOf(resp))
	}
	w.content = func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, "<!doctype html><p>premium article</p>")
	}
	if resp := w.get(c, "/premium/b", image...); resp.StatusCode != 402 || strings.Contains(bodyOf(resp), "premium article") {
		t.Errorf("an article as an image, its type sniffed: %d %q", resp.StatusCode, bodyOf(resp))
	}
	w.content = func(rw http.ResponseWriter, r *http.Request) { // as file_server does: io.Copy, through ReadFrom
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		// A reader without WriteTo (as a file's is), so that io.Copy
		// takes the writer's ReadFrom.
		io.Copy(rw, struct{ io.Reader }{strings.NewReader("<p>premium article</p>")})
	}
	if resp := w.get(c, "/premium/b", image...); resp.StatusCode != 402 || strings.Contains(bodyOf(resp), "premium article") {
		t.Errorf("an article as an image, copied: %d %q", resp.StatusCode, bodyOf(resp))
	}
	for _, dest := range []string{"empty", "iframe", "frame", "object"} {
		if resp := w.get(c, "/premium/b", "Sec-Fetch-Dest", dest); resp.StatusCode == 200 && strings.Contains(bodyOf(resp), "premium article") {
			t.Errorf("an article as %s: %d", dest, resp.StatusCode)
		}
	}
	if resp := w.get(c, "/premium/data", "Sec-Fetch-Dest", "empty", "Accept", "application/json"); resp.StatusCode != 402 {
		t.Errorf("a fetch for JSON: %d", resp.StatusCode)
	}
	w.content = nil
	w.clock.Advance(meterSubresources + time.Second)
	if resp := w.get(c, "/premium/figure.png", image...); resp.StatusCode != 402 {
		t.Errorf("an image long after: %d", resp.StatusCode)
	}
}

func TestDryRunLogsFreeViewsAndCountsNothing(t *testing.T) {
	w := newWorld(t, withFreeViews(1, time.Hour, 1), func(h *Handler) { h.DryRun = true })
	noJar := &http.Client{}
	for i := range 3 {
		if resp := w.read(noJar, "/premium/p"+string(rune('a'+i))); resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("dry run %d: %d %q", i, resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
	}
	w.h.DryRun = false
	if resp := w.read(noJar, "/premium/x"); resp.StatusCode != 200 {
		t.Errorf("after the dry run, the address's first view: %d", resp.StatusCode)
	}
}
