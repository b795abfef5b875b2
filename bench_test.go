package paywall

// Benchmarks of the request path. `make bench` runs them with -benchmem;
// BENCHMARKS.md holds the numbers and what they mean for an operator.
//
//	go test -run '^$' -bench . -benchmem .
//
// They call ServeHTTP directly, the way Caddy's route does, with a no-op
// next handler, so what they time is the paywall and nothing else.

import (
	"bytes"
	"context"
	"fmt"
	"github.com/alicebob/miniredis/v2"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// skewClock is the real clock moved forward by an offset the benchmark
// sets. Unlike the tests' clock it takes no lock, so a parallel benchmark
// measures the handler, not contention on the test's clock, and a cache hit
// pays for time.Now as it does in production.
type skewClock struct{ offset atomic.Int64 }

func (c *skewClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *skewClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// benchSite is a provisioned handler in front of the fake Stripe, served on
// loopback by the fake's own listener: like the tests' world, for
// testing.TB and without a site server around the handler.
type benchSite struct {
	clock *skewClock
	fake  *stripefake.Server
	h     *Handler
}

// newBenchSite provisions a handler against a fresh fake Stripe on
// loopback. Like newWorld it replaces the package clock: callers must not
// run in parallel with tests that do too.
func newBenchSite(tb testing.TB, opts ...option) *benchSite {
	tb.Helper()
	c := &skewClock{}
	oldNow := now
	now = c.Now
	tb.Cleanup(func() { now = oldNow })

	fake := stripefake.New(stripefake.Options{Now: c.Now})
	if err := fake.Start(); err != nil {
		tb.Fatalf("fake Stripe: %v", err)
	}
	tb.Cleanup(fake.Close)
	h := provisionTestHandler(tb, fake.URL(), opts...)
	return &benchSite{clock: c, fake: fake, h: h}
}

// cookieHeader returns a Cookie header value that identifies customer.
func cookieHeader(tb testing.TB, h *Handler, customer string) string {
	tb.Helper()
	ck, err := h.cookies.issue(&http.Request{}, customer)
	if err != nil {
		tb.Fatal(err)
	}
	// A browser sends the site's other cookies too.
	return "_ga=GA1.1.123456789.1700000000; " + ck.Name + "=" + ck.Value + "; theme=dark"
}

// gatedURL is the page every benchmark request asks for.
var gatedURL = &url.URL{Scheme: "http", Host: "example.com", Path: "/premium/article", RawQuery: "page=2"}

// gateRequest is a GET of a gated page as Caddy hands it to a handler,
// with a replacer in its context. It is built field by field rather than
// parsed by httptest.NewRequest: the tests build a million of them.
func gateRequest(cookie string, header ...string) (*http.Request, *caddy.Replacer) {
	u := *gatedURL
	h := http.Header{
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) bench"},
		"Accept-Language": {"en-US,en;q=0.9"},
	}
	if cookie != "" {
		h["Cookie"] = []string{cookie}
	}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	repl := caddy.NewReplacer()
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       u.Host,
		RemoteAddr: "192.0.2.1:54321",
		RequestURI: u.RequestURI(),
	}
	return r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)), repl
}

// discard is a ResponseWriter that keeps only the status, so that a
// benchmark times the handler rather than a recorder's buffer.
type discard struct {
	header http.Header
	status int
}

func newDiscard() *discard { return &discard{header: make(http.Header)} }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(status int)      { d.status = status }

// reset readies the writer for the next request without allocating.
func (d *discard) reset() {
	clear(d.header)
	d.status = 0
}

// passed counts the requests that reached the content.
type passed struct{ n atomic.Int64 }

func (p *passed) ServeHTTP(http.ResponseWriter, *http.Request) error {
	p.n.Add(1)
	return nil
}

var noopNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// respondNext answers as Caddy's respond does: a status, then the body.
var respondNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(helloBody)
	return err
})

var helloBody = []byte("hello")

// entitledSite is a site with one paying customer whose state is cached,
// and that customer's Cookie header.
func entitledSite(tb testing.TB, opts ...option) (*benchSite, string) {
	tb.Helper()
	s := newBenchSite(tb, opts...)
	cus := s.fake.CreateCustomer("reader@example.com")
	s.fake.CreateSubscription(cus, testPrice, "active")
	cookie := cookieHeader(tb, s.h, cus)
	r, _ := gateRequest(cookie)
	w := newDiscard()
	var p passed
	if err := s.h.ServeHTTP(w, r, &p); err != nil || p.n.Load() != 1 {
		tb.Fatalf("warm-up request: err %v, status %d, passed %d", err, w.status, p.n.Load())
	}
	if n := s.fake.Calls("GET /v1/subscriptions"); n != 1 {
		tb.Fatalf("warm-up made %d Stripe reads, want 1", n)
	}
	return s, cookie
}

// BenchmarkGateCached is the hot path: a paying visitor whose cookie was
// verified a moment ago and whose Stripe state is cached.
//
//   - plugin: requests prepared by Caddy (a replacer each, as the server
//     makes them) in batches, outside the timer, because the handler adds
//     a placeholder provider to the request's replacer; the response
//     header starts empty, as every response's does. Every allocation left
//     is the plugin's own.
//   - caddy_request/*: what Caddy does per request (a new replacer,
//     caddyhttp.PrepareRequest, a new response header), without and with
//     the paywall. The difference is what the paywall adds to a real
//     request, including the growth of Caddy's replacer map for the three
//     placeholders it sets.
func BenchmarkGateCached(b *testing.B) {
	s, cookie := entitledSite(b)
	b.Run("plugin", func(b *testing.B) {
		base, _ := gateRequest(cookie)
		w := benchPrepared(b, s.h, func(w http.ResponseWriter) *http.Request {
			return caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
		})
		if w.status != http.StatusOK {
			b.Fatalf("status %d: the visitor was refused", w.status)
		}
	})
	// The same with Redis configured: a customer in memory costs no Redis
	// command (counted), so the hit must cost what it costs without.
	b.Run("plugin_with_redis", func(b *testing.B) {
		m := miniredis.RunT(b)
		rs, rcookie := entitledSite(b, withRedis(m.Addr()))
		base, _ := gateRequest(rcookie)
		// Once subscribed, the instance checks what it held against
		// Redis once (see resubscribed): let that happen before timing.
		for !rs.h.redis.listening.Load() {
			time.Sleep(time.Millisecond)
		}
		warm := newDiscard()
		if err := rs.h.ServeHTTP(warm, caddyhttp.PrepareRequest(base, caddy.NewReplacer(), warm, nil), respondNext); err != nil || warm.status != http.StatusOK {
			b.Fatalf("warm-up after subscribing: %v %d", err, warm.status)
		}
		before, start := m.CommandCount(), time.Now()
		w := benchPrepared(b, rs.h, func(w http.ResponseWriter) *http.Request {
			return caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
		})
		if w.status != http.StatusOK {
			b.Fatalf("status %d: the visitor was refused", w.status)
		}
		// The listener's ping, once a second of silence, is all.
		if n := m.CommandCount() - before; n > 1+int(time.Since(start)/redisPing) {
			b.Fatalf("%d Redis commands during %d cache hits", n, b.N)
		}
	})
	for _, gated := range []bool{false, true} {
		name := "caddy_request/without_paywall"
		if gated {
			name = "caddy_request/with_paywall"
		}
		b.Run(name, func(b *testing.B) {
			base := httptest.NewRequest(http.MethodGet, "http://example.com/premium/article?page=2", nil)
			base.Header.Set("Cookie", cookie)
			w := newDiscard()
			server := []string{"Caddy"}
			b.ReportAllocs()
			for b.Loop() {
				// A response header of its own, holding what Caddy's
				// server sets first, as net/http gives every response.
				w.header = http.Header{"Server": server}
				repl := caddy.NewReplacer()
				r := caddyhttp.PrepareRequest(base, repl, w, nil)
				var err error
				if gated {
					err = s.h.ServeHTTP(w, r, respondNext)
				} else {
					err = respondNext.ServeHTTP(w, r)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if w.status != http.StatusOK {
				b.Fatalf("status %d: the visitor was refused", w.status)
			}
		})
	}
}

// BenchmarkGateCachedAPIKey is the hot path of a program: a request with
// `Authorization: Bearer pwk_…` whose key was verified a moment ago and
// whose customer's facts (subscriptions and keys) are cached; and, beside
// it, the cookie's hot path on a handler with api_keys, which must cost what
// BenchmarkGateCached/plugin costs. Requests are prepared as there.
func BenchmarkGateCachedAPIKey(b *testing.B) {
	s := newBenchSite(b, withAPIKeys(0))
	cus := s.fake.CreateCustomer("reader@example.com")
	s.fake.CreateSubscription(cus, testPrice, "active")
	key, rec, err := s.h.apiKeys.newKey(cus, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.fake.UpdateCustomer(cus, "", map[string]string{keyMetaPrefix + rec.ID: keyValue(rec)}); err != nil {
		b.Fatal(err)
	}
	cookie := cookieHeader(b, s.h, cus)
	for name, header := range map[string][]string{
		"key":    {"Authorization", "Bearer " + key},
		"cookie": {"Cookie", cookie},
	} {
		b.Run(name, func(b *testing.B) {
			base, _ := gateRequest("", header...)
			warm := newDiscard()
			if err := s.h.ServeHTTP(warm, caddyhttp.PrepareRequest(base, caddy.NewReplacer(), warm, nil), respondNext); err != nil || warm.status != http.StatusOK {
				b.Fatalf("warm-up: %v %d", err, warm.status)
			}
			reads := s.fake.Calls("GET /v1/subscriptions")
			w := benchPrepared(b, s.h, func(w http.ResponseWriter) *http.Request {
				return caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
			})
			if w.status != http.StatusOK {
				b.Fatalf("status %d: the program was refused", w.status)
			}
			if n := s.fake.Calls("GET /v1/subscriptions") - reads; n != 0 {
				b.Fatalf("%d Stripe reads during cache hits", n)
			}
		})
	}
}

// BenchmarkGateCachedLogin is the hot path with identity from the site's
// login: basic_auth has put the user in {http.auth.user.id} (email kind),
// whose customer and subscriptions are cached. Requests are prepared as in
// BenchmarkGateCached/plugin.
func BenchmarkGateCachedLogin(b *testing.B) {
	s := newBenchSite(b, func(h *Handler) {
		h.Identity = &Identity{Source: "{http.auth.user.id}", Kind: loginEmail}
	})
	cus := s.fake.CreateCustomer("reader@example.com")
	s.fake.CreateSubscription(cus, testPrice, "active")
	login := func() *http.Request {
		r, repl := gateRequest("")
		repl.Set("http.auth.user.id", "reader@example.com")
		return r
	}
	w := newDiscard()
	var p passed
	if err := s.h.ServeHTTP(w, login(), &p); err != nil || p.n.Load() != 1 {
		b.Fatalf("warm-up request: err %v, status %d", err, w.status)
	}
	w = benchPrepared(b, s.h, func(http.ResponseWriter) *http.Request { return login() })
	if w.status != http.StatusOK {
		b.Fatalf("status %d: the user was refused", w.status)
	}
	if n := s.fake.Calls("GET /v1/customers"); n != 1 {
		b.Fatalf("%d customer lookups, want 1", n)
	}
}

// benchPrepared times h on requests made by mk, through a next handler that
// answers as respond does. The requests are made in batches outside the
// timer: each needs a replacer of its own, to which the handler adds.
func benchPrepared(b *testing.B, h *Handler, mk func(http.ResponseWriter) *http.Request) *discard {
	w := newDiscard()
	const batch = 4096
	reqs := make([]*http.Request, batch)
	prepare := func() {
		for i := range reqs {
			reqs[i] = mk(w)
		}
	}
	prepare()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == batch {
			b.StopTimer()
			prepare()
			i = 0
			b.StartTimer()
		}
		w.reset() // every response starts with no header set
		if err := h.ServeHTTP(w, reqs[i], respondNext); err != nil {
			b.Fatal(err)
		}
		i++
	}
	return w
}

// BenchmarkGateCachedParallel is the hot path from every core at once:
// one goroutine per visitor, each with its own cookie, all against the
// shared caches and their read locks.
func BenchmarkGateCachedParallel(b *testing.B) {
	s := newBenchSite(b)
	const visitors = 256
	cookies := make([]string, visitors)
	for i := range cookies {
		cus := s.fake.CreateCustomer(fmt.Sprintf("reader%d@example.com", i))
		s.fake.CreateSubscription(cus, testPrice, "active")
		cookies[i] = cookieHeader(b, s.h, cus)
		r, _ := gateRequest(cookies[i])
		if err := s.h.ServeHTTP(newDiscard(), r, noopNext); err != nil {
			b.Fatal(err)
		}
	}
	var next, total atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		base, _ := gateRequest(cookies[next.Add(1)%visitors])
		w := newDiscard()
		// A counter of its own, so that the goroutines share no cache
		// line the handler does not make them share.
		var mine passed
		for pb.Next() {
			// A replacer per request, as Caddy's server makes: the
			// handler adds its placeholders to it.
			r := caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
			w.reset()
			if err := s.h.ServeHTTP(w, r, &mine); err != nil {
				b.Error(err)
				return
			}
		}
		total.Add(mine.n.Load())
	})
	b.StopTimer()
	if int(total.Load()) != b.N {
		b.Fatalf("%d of %d requests passed", total.Load(), b.N)
	}
}

// BenchmarkGateAnonymous402 is a visitor without a cookie getting the 402:
// the HTML page a browser gets, and the problem document an API client gets.
func BenchmarkGateAnonymous402(b *testing.B) {
	s := newBenchSite(b)
	// With crawlers: a browser that claims no crawler costs a look at
	// its User-Agent, and no DNS query.
	crawling := newBenchSite(b, withCrawlers("google", "bing"))
	for _, tc := range []struct {
		name, accept string
		site         *benchSite
	}{
		{"html", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", s},
		{"json", "application/json", s},
		{"html_with_crawlers", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", crawling},
	} {
		s := tc.site
		b.Run(tc.name, func(b *testing.B) {
			r, _ := gateRequest("", "Accept", tc.accept)
			w := newDiscard()
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				if err := s.h.ServeHTTP(w, r, noopNext); err != nil {
					b.Fatal(err)
				}
			}
			if w.status != http.StatusPaymentRequired {
				b.Fatalf("status %d, want 402", w.status)
			}
		})
	}
	// What the page sells is read once, for every page.
	if n, o := visitorCalls(s.fake), offerReads(s.fake); n != 0 || o != 1 {
		b.Fatalf("anonymous visitors made %d Stripe calls, and read the price %d times (want 0 and 1)", n, o)
	}
}

// BenchmarkGateExpiredEntry is a known customer whose cache entry expired:
// every iteration moves the clock past cache_ttl, so every request reads
// the customer from the fake Stripe over loopback, through stripe-go.
func BenchmarkGateExpiredEntry(b *testing.B) {
	s, cookie := entitledSite(b)
	ttl := time.Duration(s.h.CacheTTL)
	r, _ := gateRequest(cookie)
	w := newDiscard()
	s.fake.ResetCalls()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		s.clock.Advance(ttl + time.Second)
		if err := s.h.ServeHTTP(w, r, noopNext); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if w.status != 0 {
		b.Fatalf("status %d: the visitor was refused", w.status)
	}
	reads := s.fake.Calls("GET /v1/subscriptions")
	if reads != n {
		b.Fatalf("%d Stripe reads for %d expired requests", reads, n)
	}
	b.ReportMetric(float64(reads)/float64(n), "stripe-reads/op")
}

// BenchmarkWebhookInvalidation is one signed customer.subscription.updated
// event through the webhook endpoint: signature check, decoding, marking
// the customer stale and, for a customer this node has cached, the Stripe
// read (fake, loopback) that follows. An event about a customer the node
// does not know costs no read.
//
// Every iteration sends the same signed event, which the endpoint applies
// once: the cases that measure a new event forget it between iterations,
// and replayed_event measures the replay that is answered without a read.
func BenchmarkWebhookInvalidation(b *testing.B) {
	for _, tc := range []struct {
		name          string
		known, replay bool
	}{{"cached_customer", true, false}, {"unknown_customer", false, false}, {"replayed_event", true, true}} {
		known := tc.known
		b.Run(tc.name, func(b *testing.B) {
			s := newBenchSite(b)
			cus := s.fake.CreateCustomer("hooked@example.com")
			sub := s.fake.CreateSubscription(cus, testPrice, "active")
			if known {
				r, _ := gateRequest(cookieHeader(b, s.h, cus))
				if err := s.h.ServeHTTP(newDiscard(), r, noopNext); err != nil {
					b.Fatal(err)
				}
			}
			payload := []byte(fmt.Sprintf(`{"id":"evt_bench","object":"event","api_version":"2024-06-20","type":"customer.subscription.updated","data":{"object":{"id":%q,"object":"subscription","customer":%q,"status":"active"}}}`, sub, cus))
			signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: hookSecret, Timestamp: now()})
			body := bytes.NewReader(payload)
			r := httptest.NewRequest(http.MethodPost, "http://example.com/paywall/webhook", body)
			r.Header.Set("Stripe-Signature", signed.Header)
			r.Header.Set("Content-Type", "application/json")
			w := newDiscard()
			s.fake.ResetCalls()
			b.ReportAllocs()
			n := 0
			seen := &s.h.account.seenEvents
			for b.Loop() {
				if !tc.replay {
					seen.mu.Lock()
					clear(seen.until)
					seen.order, seen.head = seen.order[:0], 0
					seen.mu.Unlock()
				}
				body.Reset(payload)
				r.Body = readCloser{body}
				w.reset()
				if err := s.h.ServeHTTP(w, r, noopNext); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if w.status != http.StatusOK {
				b.Fatalf("status %d, want 200", w.status)
			}
			reads := s.fake.Calls("GET /v1/subscriptions")
			want := n
			if !known {
				want = 0
			} else if tc.replay {
				want = 1
			}
			if reads != want {
				b.Fatalf("%d Stripe reads for %d events", reads, n)
			}
			b.ReportMetric(float64(reads)/float64(n), "stripe-reads/op")
		})
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// BenchmarkCookieVerifyCold is the path the verified-cookie map saves: the
// HMAC over a cookie not seen before. For contrast with GateCached.
func BenchmarkCookieVerifyCold(b *testing.B) {
	s := newBenchSite(b)
	h := s.h
	cookie := cookieHeader(b, h, "cus_Q2w3E4r5T6y7U8")
	value, _ := cookieValue(http.Header{"Cookie": {cookie}}, h.cookies.name)
	t := now().Unix()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := h.cookies.verify(value, t); !ok {
			b.Fatal("cookie did not verify")
		}
	}
}

// BenchmarkPaidWriter is what keeping a paid page private costs a response
// beyond setting its Cache-Control: the pooled writer, and the look at the
// headers when the status is written (the CDN-only headers, and the
// Cache-Control value against the paywall's own). direct is the same
// response written without it.
func BenchmarkPaidWriter(b *testing.B) {
	const ours = "private, no-cache"
	r := httptest.NewRequest(http.MethodGet, "http://example.com/premium/a", nil)
	for _, wrapped := range []bool{false, true} {
		name := "direct"
		if wrapped {
			name = "wrapped"
		}
		b.Run(name, func(b *testing.B) {
			w := newDiscard()
			value := []string{ours}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				w.header["Cache-Control"] = value
				if !wrapped {
					_ = respondNext.ServeHTTP(w, r)
					continue
				}
				pw := paidWriters.Get().(*paidWriter)
				pw.ResponseWriter, pw.ours, pw.checked = w, ours, false
				_ = respondNext.ServeHTTP(pw, r)
				pw.ResponseWriter = nil
				paidWriters.Put(pw)
			}
			if w.status != http.StatusOK || w.header.Get("Cache-Control") != ours {
				b.Fatalf("status %d, Cache-Control %q", w.status, w.header.Get("Cache-Control"))
			}
		})
	}
}

// BenchmarkSigninAnswer is the answer to a request for a sign-in link, for
// a subscriber's address and for one Stripe does not know: the lookup and
// the mail run after the answer, so the two should cost the same. Limits
// and the sign-in budget are off, so that every request is one that would
// mail; the work after the answer runs beside the timed loop and is waited
// for at the end.
func BenchmarkSigninAnswer(b *testing.B) {
	s := newBenchSite(b, withEmail, func(h *Handler) {
		h.SigninLimit = &Limit{Off: true}
		h.SigninIPLimit = &Limit{Off: true}
	})
	s.h.signin.mailer = &mailbox{}
	s.h.account.signinBudget = newTokenBucket(1_000_000, 1_000_000)
	cus := s.fake.CreateCustomer("reader@example.com")
	s.fake.CreateSubscription(cus, testPrice, "active")
	for _, email := range []string{"reader@example.com", "nobody@example.com"} {
		name := "subscriber"
		if email != "reader@example.com" {
			name = "unknown"
		}
		b.Run(name, func(b *testing.B) {
			body := "email=" + url.QueryEscape(email) + "&return=%2Fpremium%2Farticle"
			w := newDiscard()
			b.ReportAllocs()
			for b.Loop() {
				r, _ := gateRequest("", "Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin")
				r.Method = http.MethodPost
				r.URL.Path = "/paywall/signin"
				r.Host = "localhost"
				r.Body = io.NopCloser(strings.NewReader(body))
				w.reset()
				if err := s.h.ServeHTTP(w, r, noopNext); err != nil || w.status != http.StatusAccepted {
					b.Fatalf("status %d, err %v", w.status, err)
				}
			}
			b.StopTimer()
			s.h.account.reads.Wait()
		})
	}
}
