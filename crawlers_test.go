package paywall

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-paywall/paywall/internal/dnsfake"
)

const (
	googlebotUA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	bingbotUA   = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
	browserUA   = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
)

func withCrawlers(engines ...string) option {
	return func(h *Handler) { h.Crawlers = engines }
}

// crawlerDNS starts a DNS server of the test's own on loopback and sends
// the crawler lookups to it: real DNS over a socket.
func crawlerDNS(t *testing.T) *dnsfake.Server {
	t.Helper()
	s, err := dnsfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	old := crawlerResolver
	crawlerResolver = s.Resolver()
	t.Cleanup(func() { crawlerResolver = old })
	return s
}

// from asks w's handler for a gated page as a client at ip with the
// User-Agent ua, and returns the status and the request's replacer.
func (w *world) from(ip, ua string) (int, *caddy.Replacer) {
	w.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://example.com/premium/a", nil)
	r.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(ip), 40000).String()
	r.Header.Set("User-Agent", ua)
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	rec := httptest.NewRecorder()
	passed := false
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
	if err := w.h.ServeHTTP(rec, r, next); err != nil {
		w.t.Fatal(err)
	}
	if passed {
		return http.StatusOK, repl
	}
	return rec.Code, repl
}

func TestOnlyVerifiedCrawlersReadGatedPages(t *testing.T) {
	dns := crawlerDNS(t)
	dns.PTR("66.249.66.1", "crawl-66-249-66-1.googlebot.com")
	dns.Host("crawl-66-249-66-1.googlebot.com", "66.249.66.1")
	dns.PTR("66.249.90.77", "rate-limited-proxy-66-249-90-77.google.com")
	dns.Host("rate-limited-proxy-66-249-90-77.google.com", "66.249.90.77")
	dns.PTR("2001:4860:4801:10::1", "crawl-2001-4860-4801-10--1.googlebot.com")
	dns.Host("crawl-2001-4860-4801-10--1.googlebot.com", "2001:4860:4801:10::1")
	dns.PTR("157.55.39.1", "msnbot-157-55-39-1.search.msn.com")
	dns.Host("msnbot-157-55-39-1.search.msn.com", "157.55.39.1")
	// A PTR anyone can set for their own address, pointing into Google's
	// domain; its forward record is Google's and names another address.
	dns.PTR("203.0.113.7", "crawl-66-249-66-2.googlebot.com")
	dns.Host("crawl-66-249-66-2.googlebot.com", "66.249.66.2")
	// A Google Cloud VM: a Google name, but not a crawler's.
	dns.PTR("34.1.2.3", "3.2.1.34.bc.googleusercontent.com")
	dns.Host("3.2.1.34.bc.googleusercontent.com", "34.1.2.3")
	// Google's user-triggered fetchers: a user chooses what they fetch.
	dns.PTR("66.249.83.1", "google-proxy-66-249-83-1.google.com")
	dns.Host("google-proxy-66-249-83-1.google.com", "66.249.83.1")
	// A look-alike domain.
	dns.PTR("198.51.100.9", "crawl.notgooglebot.com")
	dns.Host("crawl.notgooglebot.com", "198.51.100.9")

	w := newWorld(t, withCrawlers("google", "bing"))
	for _, tc := range []struct {
		name, ip, ua string
		want         int
	}{
		{"Googlebot", "66.249.66.1", googlebotUA, 200},
		{"Googlebot from google.com", "66.249.90.77", googlebotUA, 200},
		{"Googlebot over IPv6", "2001:4860:4801:10::1", googlebotUA, 200},
		{"bingbot", "157.55.39.1", bingbotUA, 200},
		{"a spoofed Googlebot", "192.0.2.1", googlebotUA, 402},
		{"a PTR without the forward record", "203.0.113.7", googlebotUA, 402},
		{"googleusercontent.com", "34.1.2.3", googlebotUA, 402},
		{"a look-alike domain", "198.51.100.9", googlebotUA, 402},
		{"a user-triggered fetcher of Google's", "66.249.83.1", googlebotUA, 402},
		{"the Rich Results Test, from Google's crawler address", "66.249.66.1", "Mozilla/5.0 (compatible; Google-InspectionTool/1.0)", 402},
		{"Bing's address claiming Google", "157.55.39.1", googlebotUA, 402},
		{"Google's address without the claim", "66.249.66.1", browserUA, 402},
	} {
		status, repl := w.from(tc.ip, tc.ua)
		if status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, status, tc.want)
		}
		if v, _ := repl.Get("http.paywall.status"); status == 200 && v != statusCrawler {
			t.Errorf("%s: {http.paywall.status} = %v", tc.name, v)
		}
	}
	if v, _ := func() (any, bool) {
		_, repl := w.from("157.55.39.1", bingbotUA)
		return repl.Get("http.paywall.crawler")
	}(); v != "bing" {
		t.Errorf("{http.paywall.crawler} = %v", v)
	}
}

func TestCrawlerVerdictsAreKeptAndOnlyClaimsCostALookup(t *testing.T) {
	dns := crawlerDNS(t)
	dns.PTR("66.249.66.1", "crawl-66-249-66-1.googlebot.com")
	dns.Host("crawl-66-249-66-1.googlebot.com", "66.249.66.1")
	w := newWorld(t, withCrawlers("google"))

	for range 3 {
		w.from("192.0.2.1", browserUA)
		w.from("192.0.2.1", bingbotUA) // bing is not configured
	}
	if n := dns.Queries(); n != 0 {
		t.Fatalf("requests that claim no configured crawler made %d DNS queries", n)
	}
	w.from("66.249.66.1", googlebotUA)
	first := dns.Queries()
	if first != 3 {
		t.Fatalf("a verification made %d queries, want the reverse one and the forward A and AAAA", first)
	}
	w.from("66.249.66.1", googlebotUA)
	w.from("192.0.2.1", googlebotUA) // a no: one reverse query
	w.from("192.0.2.1", googlebotUA)
	if n := dns.Queries() - first; n != 1 {
		t.Errorf("kept verdicts: %d more queries, want 1", n)
	}
	// A spoofer's IPv6 addresses: a no is kept for their /64.
	before64 := dns.Queries()
	w.from("2001:db8:1:2::1", googlebotUA)
	w.from("2001:db8:1:2::ffff", googlebotUA)
	w.from("2001:db8:1:2:abcd::7", googlebotUA)
	if n := dns.Queries() - before64; n != 1 {
		t.Errorf("three addresses of one /64: %d queries, want 1", n)
	}
	w.clock.Advance(crawlerNoFor + time.Second)
	before := dns.Queries()
	w.from("66.249.66.1", googlebotUA) // a yes lasts a day
	w.from("192.0.2.1", googlebotUA)   // a no, an hour
	if n := dns.Queries() - before; n != 1 {
		t.Errorf("after an hour: %d queries, want 1 (the no)", n)
	}
}

func TestASlowResolverGivesTheUsual402OnceAMinute(t *testing.T) {
	dns := crawlerDNS(t)
	dns.Hang("")
	old := crawlerLookupTimeout
	crawlerLookupTimeout = 200 * time.Millisecond
	t.Cleanup(func() { crawlerLookupTimeout = old })
	w := newWorld(t, withCrawlers("google"))
	if status, _ := w.from("66.249.66.1", googlebotUA); status != 402 {
		t.Fatalf("a hung resolver: %d", status)
	}
	n := dns.Queries()
	if n == 0 {
		t.Fatal("no query reached the resolver: the test shows nothing")
	}
	if status, _ := w.from("66.249.66.1", googlebotUA); status != 402 || dns.Queries() != n {
		t.Errorf("within the minute: %d, %d more queries", status, dns.Queries()-n)
	}
	w.clock.Advance(crawlerErrorFor + time.Second)
	w.from("66.249.66.1", googlebotUA)
	if dns.Queries() == n {
		t.Error("a failed lookup is kept past its minute")
	}
}
