package paywall

// Stripe economy and memory: how many Stripe reads a load causes, and what
// the caches cost in memory. These are tests, run by `make test`: they
// assert counts and bytes, never time. BENCHMARKS.md explains the numbers.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
)

// scaled is n, or a tenth of it under -short: the full sizes take some
// twenty seconds under -race on two cores. `make bench` runs them in full.
func scaled(t *testing.T, n int) int {
	if testing.Short() {
		n /= 10
		t.Logf("-short: scaled to %d", n)
	}
	return n
}

// TestEconomyExpiredEntryConcurrentRequestsMakeOneRead: a thousand requests
// of one known customer arrive together just after the customer's entry
// expired; Stripe is slow to answer. They share one Stripe read.
func TestEconomyExpiredEntryConcurrentRequestsMakeOneRead(t *testing.T) {
	s, cookie := entitledSite(t)
	s.clock.Advance(time.Duration(s.h.CacheTTL) + time.Second)
	s.fake.ResetCalls()
	// Slow enough that every request arrives while the read is in flight.
	s.fake.SetLatency(100 * time.Millisecond)

	const concurrent = 1000
	var p passed
	var refused atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrent {
		r, _ := gateRequest(cookie)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newDiscard()
			<-start
			if err := s.h.ServeHTTP(w, r, &p); err != nil || w.status != 0 {
				refused.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()

	if n := s.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Errorf("%d concurrent requests after expiry made %d Stripe reads, want 1", concurrent, n)
	}
	if p.n.Load() != concurrent || refused.Load() != 0 {
		t.Errorf("%d requests passed and %d were refused, want %d and 0", p.n.Load(), refused.Load(), concurrent)
	}
	t.Logf("%d concurrent requests of one customer whose entry had expired: %d Stripe read", concurrent, s.fake.Calls("GET /v1/subscriptions"))
}

// TestEconomyCustomersWithinTTLReadOnceEach: 10,000 paying customers each
// make 100 requests, spread over 200 s of cache_ttl 5m. Stripe is read once
// per customer: 10,000 reads for 1,000,000 requests.
//
// The reads are counted at the handler's Stripe client, which makes one
// GET /v1/subscriptions per read (TestCacheBound/cache_size counts the same
// thing over HTTP): a million requests through stripe-go and loopback would
// make this test take minutes under -race, and stripefake's subscription
// list sorts every subscription it holds on each call.
func TestEconomyCustomersWithinTTLReadOnceEach(t *testing.T) {
	const (
		requests = 100 // per customer
		workers  = 2
	)
	customers := scaled(t, 10_000)
	c := &skewClock{}
	oldNow := now
	now = c.Now
	t.Cleanup(func() { now = oldNow })
	h := provisionTestHandler(t, "http://127.0.0.1:9", func(h *Handler) { h.CacheTTL = caddy.Duration(5 * time.Minute) })
	stripe := &countingStripe{stripeAPI: h.stripe, per: make(map[string]int)}
	h.stripe = stripe

	shares := make([][]*http.Request, workers)
	for i := range customers {
		r, _ := gateRequest(cookieHeader(t, h, customerID(i)))
		shares[i%workers] = append(shares[i%workers], r)
	}
	// One request of each customer per round; the clock moves 2 s between
	// rounds.
	var p passed
	var refused atomic.Int64
	for round := range requests {
		var wg sync.WaitGroup
		for _, share := range shares {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := newDiscard()
				for _, r := range share {
					w.reset()
					if err := h.ServeHTTP(w, r, &p); err != nil || w.status != 0 {
						refused.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if round < requests-1 {
			c.Advance(2 * time.Second)
		}
	}

	total := int64(customers * requests)
	if p.n.Load() != total || refused.Load() != 0 {
		t.Fatalf("%d requests passed and %d were refused, want %d and 0", p.n.Load(), refused.Load(), total)
	}
	reads, most := stripe.reads()
	if reads != customers || most != 1 {
		t.Errorf("%d requests of %d customers within cache_ttl made %d Stripe reads (at most %d for one customer), want %d (1 each)",
			total, customers, reads, most, customers)
	}
	t.Logf("%d customers x %d requests within cache_ttl: %d Stripe reads", customers, requests, reads)
}

// TestEconomyAnonymousFloodMakesNoRead: 100,000 requests without a valid
// cookie (none, a forged signature, garbage, a checkout never finished, an
// API client) cost Stripe nothing and leave nothing in either cache.
func TestEconomyAnonymousFloodMakesNoRead(t *testing.T) {
	const workers = 4
	flood := scaled(t, 100_000)
	s := newBenchSite(t)
	realCus := s.fake.CreateCustomer("payer@example.com")
	s.fake.CreateSubscription(realCus, testPrice, "active")
	valid, err := s.h.cookies.issue(httptest.NewRequest(http.MethodGet, "/", nil), realCus)
	if err != nil {
		t.Fatal(err)
	}
	sig := valid.Value[strings.LastIndex(valid.Value, ".")+1:]
	exp := now().Add(24 * time.Hour).Unix()

	// One in a hundred is a browser that gets the HTML page; the rest get
	// the problem document, which is cheaper to render and as free for
	// Stripe.
	request := func(i int) *http.Request {
		var r *http.Request
		switch k := i % 100; {
		case k == 0:
			r, _ = gateRequest("", "Accept", "text/html")
		case k < 34:
			r, _ = gateRequest("", "Accept", "application/json")
		case k < 67:
			// Another customer's ID under a signature that is not theirs.
			r, _ = gateRequest(fmt.Sprintf("paywall=%s.%d.%s", customerID(i), exp, sig), "Accept", "application/json")
		default:
			// Garbage, and a checkout started but never finished.
			r, _ = gateRequest(fmt.Sprintf("paywall=garbage%d; paywall_checkout=nonce%d", i, i), "Accept", "application/json")
		}
		return r
	}
	var refused, other atomic.Int64
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newDiscard()
			for i := wk; i < flood; i += workers {
				r := request(i)
				w.reset()
				if err := s.h.ServeHTTP(w, r, noopNext); err == nil && w.status == http.StatusPaymentRequired {
					refused.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()

	if refused.Load() != int64(flood) {
		t.Errorf("%d of %d anonymous requests got 402 (%d something else)", refused.Load(), flood, other.Load())
	}
	if n := visitorCalls(s.fake); n != 0 {
		t.Errorf("an anonymous flood of %d requests made %d Stripe calls, want 0: %v", flood, n, s.fake.CallCounts())
	}
	// What the page sells is read once for them all.
	if n := offerReads(s.fake); n != 1 {
		t.Errorf("an anonymous flood of %d requests read the price %d times, want once", flood, n)
	}
	if n := s.h.account.len(); n != 0 {
		t.Errorf("the flood left %d entries in the customer cache", n)
	}
	s.h.cookies.mu.RLock()
	n := len(s.h.cookies.verified)
	s.h.cookies.mu.RUnlock()
	if n != 0 {
		t.Errorf("the flood left %d entries in the verified-cookie map", n)
	}
	t.Logf("anonymous flood of %d requests: %d Stripe calls", flood, s.fake.Calls(""))
}

// TestMemoryPerCachedCustomer fills a customer cache with 1,000,000
// realistic entries (cus_ and 14 characters, one subscription with one item
// of a shared price and product) and measures the heap they hold. It also
// measures the verified-cookie map at its bound, the other memory a
// returning visitor costs.
func TestMemoryPerCachedCustomer(t *testing.T) {
	customers := scaled(t, 1_000_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	a := newAccount(customers)
	fetched := time.Now().UnixNano()
	for i := range customers {
		a.store(customerID(i), facts{subs: decodedSubscriptions(fetched)}, fetched, a.epoch.Load(), fromStripe)
	}

	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := a.len(); n != customers {
		t.Fatalf("the cache holds %d customers, want %d", n, customers)
	}
	perCustomer := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(customers)
	runtime.KeepAlive(a)
	t.Logf("customer cache: %d entries hold %.1f MiB of heap: %.0f bytes per cached customer",
		customers, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), perCustomer)
	if perCustomer > 512 {
		t.Errorf("%.0f bytes per cached customer, want at most 512", perCustomer)
	}
	a = nil

	// The verified-cookie map, filled to its bound through identify.
	h := provisionTestHandler(t, "http://127.0.0.1:9")
	visitors := scaled(t, verifiedCap)
	requests := make([]*http.Request, visitors)
	for i := range requests {
		requests[i], _ = gateRequest(cookieHeader(t, h, customerID(i)))
	}
	t0 := now().Unix()
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, r := range requests {
		if _, ok, _ := h.cookies.identify(r, t0); !ok {
			t.Fatal("a fresh cookie did not verify")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perCookie := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(visitors)
	runtime.KeepAlive(requests)
	t.Logf("verified-cookie map: %d entries (its bound is %d): %.0f bytes per verified cookie", visitors, verifiedCap, perCookie)
	if perCookie > 512 {
		t.Errorf("%.0f bytes per verified cookie, want at most 512", perCookie)
	}
	t.Logf("a returning visitor costs %.0f bytes in all", perCustomer+perCookie)
}

// TestCacheBound: cache_size bounds the customer cache, whether it fills
// with Stripe reads or meets webhook invalidations of customers it does not
// hold; the verified-cookie map stays within its own bound.
func TestCacheBound(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		const bound = 1000
		a := newAccount(bound)
		fetched := time.Now().UnixNano()
		for i := range 10 * bound {
			a.store(customerID(i), facts{subs: decodedSubscriptions(fetched)}, fetched, a.epoch.Load(), fromStripe)
			if n := a.len(); n > bound {
				t.Fatalf("after %d customers the cache holds %d, bound %d", i+1, n, bound)
			}
		}
	})
	t.Run("all_in_use", func(t *testing.T) {
		// Every entry used since the last eviction: a few are spared,
		// then some go all the same.
		const bound = 50
		a := newAccount(bound)
		fetched := time.Now().UnixNano()
		for i := range 3 * bound {
			for j := range i {
				a.get(customerID(j))
			}
			a.store(customerID(i), facts{subs: decodedSubscriptions(fetched)}, fetched, a.epoch.Load(), fromStripe)
			if n := a.len(); n > bound {
				t.Fatalf("after %d customers all in use the cache holds %d, bound %d", i+1, n, bound)
			}
		}
	})
	t.Run("invalidate", func(t *testing.T) {
		const bound = 1000
		a := newAccount(bound)
		for i := range 10 * bound {
			a.invalidate(customerID(i))
		}
		if n := a.len(); n > bound {
			t.Fatalf("after %d invalidations the cache holds %d, bound %d", 10*bound, n, bound)
		}
	})
	t.Run("cache_size", func(t *testing.T) {
		const bound, customers = 200, 1000
		stub := newSubscriptionStub(t)
		h := provisionTestHandler(t, stub.url, func(h *Handler) { h.CacheSize = bound })
		var p passed
		w := newDiscard()
		for i := range customers {
			r, _ := gateRequest(cookieHeader(t, h, customerID(i)))
			if err := h.ServeHTTP(w, r, &p); err != nil || w.status != 0 {
				t.Fatalf("customer %d refused: status %d, %v", i, w.status, err)
			}
			if n := h.account.len(); n > bound {
				t.Fatalf("after %d customers the cache holds %d, cache_size %d", i+1, n, bound)
			}
		}
		if reads, _ := stub.reads(); reads != customers {
			t.Errorf("%d Stripe reads for %d new customers", reads, customers)
		}
	})
	t.Run("verified_cookies", func(t *testing.T) {
		// Filled to its bound directly, then past it through identify,
		// which must make room.
		h := provisionTestHandler(t, "http://127.0.0.1:9")
		t0 := now().Unix()
		for i := range verifiedCap {
			cus := customerID(i)
			h.cookies.verified[fmt.Sprintf("%s.%d.sig%d", cus, t0+3600, i)] = &verifiedCookie{identity: identity{customer: cus, customerAny: cus, expires: t0 + 3600}}
		}
		for i := verifiedCap; i < verifiedCap+1000; i++ {
			r, _ := gateRequest(cookieHeader(t, h, customerID(i)))
			if _, ok, _ := h.cookies.identify(r, t0); !ok {
				t.Fatal("a fresh cookie did not verify")
			}
			h.cookies.mu.RLock()
			n := len(h.cookies.verified)
			h.cookies.mu.RUnlock()
			if n > verifiedCap {
				t.Fatalf("the verified-cookie map holds %d, bound %d", n, verifiedCap)
			}
		}
	})
}

// TestEvictionKeepsActiveSubscribers: a full cache meets a burst of new
// visitors, five times its size, while some of the subscribers it holds
// keep coming. Evicting in the map's order would drop them as often as
// anyone (all but about e^-5 of them, and as many Stripe reads); evicting
// what was not used since the last eviction keeps every one of them, and
// drops those who stopped coming and the burst's own visitors instead.
func TestEvictionKeepsActiveSubscribers(t *testing.T) {
	t.Run("customers", func(t *testing.T) {
		const (
			bound  = 1000
			active = bound / 10
			burst  = 5 * bound
			round  = bound / 100 // new visitors per eviction
		)
		h := provisionTestHandler(t, "http://127.0.0.1:9", func(h *Handler) { h.CacheSize = bound })
		stripe := &countingStripe{stripeAPI: h.stripe, per: make(map[string]int)}
		h.stripe = stripe
		var p passed
		w := newDiscard()
		visit := func(i int) {
			t.Helper()
			r, _ := gateRequest(cookieHeader(t, h, customerID(i)))
			w.reset()
			if err := h.ServeHTTP(w, r, &p); err != nil || w.status != 0 {
				t.Fatalf("customer %d refused: status %d, %v", i, w.status, err)
			}
		}
		// The cache fills up; the first tenth keep coming, once between
		// two evictions.
		for i := range bound {
			visit(i)
		}
		for n := 0; n < burst; n += round {
			for i := range active {
				visit(i)
			}
			for i := range round {
				visit(bound + n + i)
			}
			if n := h.account.len(); n > bound {
				t.Fatalf("the cache holds %d, cache_size %d", n, bound)
			}
		}
		stripe.mu.Lock()
		reread, kept := 0, 0
		for i := range active {
			reread += stripe.per[customerID(i)] - 1
		}
		stripe.mu.Unlock()
		for i := range active {
			if h.account.customers[customerID(i)] != nil {
				kept++
			}
		}
		idle := 0
		for i := active; i < bound; i++ {
			if h.account.customers[customerID(i)] != nil {
				idle++
			}
		}
		if kept != active || reread != 0 {
			t.Errorf("during a burst of %d new visitors, the %d active subscribers were read again %d times, and %d are out of the cache at the end; want none",
				burst, active, reread, active-kept)
		}
		t.Logf("cache_size %d, a burst of %d new visitors: %d of %d active subscribers kept (%d read again), %d of %d who stopped coming",
			bound, burst, kept, active, reread, idle, bound-active)
	})
	t.Run("verified_cookies", func(t *testing.T) {
		const (
			active = verifiedCap / 100
			burst  = 5 * verifiedCap / 100
			round  = verifiedCap / 100 // new cookies per eviction
		)
		h := provisionTestHandler(t, "http://127.0.0.1:9")
		t0 := now().Unix()
		// Filled with cookies verified once, less room for the active.
		for i := range verifiedCap - active {
			cus := customerID(i)
			h.cookies.verified[fmt.Sprintf("%s.%d.sig%d", cus, t0+3600, i)] = &verifiedCookie{identity: identity{customer: cus, customerAny: cus, expires: t0 + 3600}}
		}
		identify := func(cookie string) {
			t.Helper()
			r, _ := gateRequest(cookie)
			if _, ok, _ := h.cookies.identify(r, t0); !ok {
				t.Fatal("a fresh cookie did not verify")
			}
		}
		cookies := make([]string, active)
		values := make([]string, active)
		for i := range cookies {
			cookies[i] = cookieHeader(t, h, customerID(verifiedCap+i))
			values[i], _ = cookieValue(http.Header{"Cookie": {cookies[i]}}, h.cookies.name)
			identify(cookies[i])
		}
		// held counts the active cookies still in the map.
		held := func() int {
			h.cookies.mu.RLock()
			defer h.cookies.mu.RUnlock()
			n := 0
			for _, v := range values {
				if h.cookies.verified[v] != nil {
					n++
				}
			}
			return n
		}
		// The active come once between two evictions; a cookie evicted
		// is verified again (an HMAC) when it comes.
		reverified := 0
		for n := 0; n < burst; n += round {
			reverified += active - held()
			for _, c := range cookies {
				identify(c)
			}
			for i := range round {
				identify(cookieHeader(t, h, customerID(2*verifiedCap+n+i)))
			}
		}
		h.cookies.mu.RLock()
		size := len(h.cookies.verified)
		h.cookies.mu.RUnlock()
		kept := held()
		if size > verifiedCap || kept != active || reverified != 0 {
			t.Errorf("the verified-cookie map holds %d (bound %d); during a burst of %d new cookies, the %d active were verified again %d times, and %d are out at the end; want none",
				size, verifiedCap, burst, active, reverified, active-kept)
		}
		t.Logf("verified cookies, a burst of %d new: %d of %d active kept (%d verified again)", burst, kept, active, reverified)
	})
	t.Run("logins", func(t *testing.T) {
		// The login cache marks a user on every hit, as the customers'
		// cache does: a burst of users who come once goes first.
		const (
			bound  = 1000
			active = bound / 10
			burst  = 5 * bound
			round  = bound / 100
		)
		c := newLoginCache(loginEmail, "", bound, nil)
		t0 := time.Now().UnixNano()
		user := func(i int) string { return fmt.Sprintf("user%d@example.com", i) }
		for i := range bound {
			c.put(user(i), customerID(i), t0, 0)
		}
		lost := 0
		for n := 0; n < burst; n += round {
			for i := range active {
				if c.get(user(i)) == nil {
					lost++
					c.put(user(i), customerID(i), t0, 0) // looked up again
				}
			}
			for i := range round {
				c.put(user(bound+n+i), "", t0, 0)
			}
		}
		if n := len(c.m); n > bound || lost != 0 {
			t.Errorf("the login cache holds %d (bound %d); during a burst of %d new users, the %d active were looked up again %d times; want none",
				n, bound, burst, active, lost)
		}
		t.Logf("logins, a burst of %d new: %d of %d active looked up again", burst, lost, active)
	})
}

// customerID returns a distinct, realistic Stripe customer ID for i: cus_
// and 14 letters and digits, freshly allocated as a decoded one would be.
func customerID(i int) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b [18]byte
	copy(b[:], "cus_")
	x := uint64(i)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	for j := 4; j < 13; j++ { // nine scrambled characters
		x ^= x >> 29
		x *= 0xBF58476D1CE4E5B9
		b[j] = alphabet[x%62]
	}
	for j, n := 17, i; j >= 13; j-- { // five that make it unique
		b[j] = alphabet[n%62]
		n /= 62
	}
	return string(b[:])
}

// decodedSubscriptions is what stripeClient.subscriptions returns for a
// customer with one active subscription: freshly decoded strings, slices
// grown by append.
func decodedSubscriptions(t int64) []subscriptionState {
	st := subscriptionState{
		Status:      strings.Clone("active"),
		PeriodStart: t / 1e9,
	}
	st.Items = append(st.Items, priceRef{Price: strings.Clone(testPrice), Product: strings.Clone("prod_PfXyZ2eZvKYlo2")})
	var out []subscriptionState
	return append(out, st)
}

// subscriptionStub answers GET /v1/subscriptions on loopback for any
// customer with one active subscription to testPrice, and counts the reads
// of each customer.
type subscriptionStub struct {
	url string
	mu  sync.Mutex
	per map[string]int
}

func newSubscriptionStub(t *testing.T) *subscriptionStub {
	t.Helper()
	s := &subscriptionStub{per: make(map[string]int)}
	start := time.Now().Unix()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cus := r.URL.Query().Get("customer")
		if r.Method != http.MethodGet || r.URL.Path != "/v1/subscriptions" || !validCustomerID(cus) {
			http.Error(w, `{"error":{"type":"invalid_request_error","message":"stub: unexpected request"}}`, http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.per[cus]++
		s.mu.Unlock()
		sub := "sub_" + cus[4:]
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","url":"/v1/subscriptions","has_more":false,"data":[{"id":%q,"object":"subscription","customer":%q,"status":"active","cancel_at_period_end":false,"current_period_start":%d,"current_period_end":%d,"trial_end":null,"ended_at":null,"items":{"object":"list","url":"/v1/subscription_items","has_more":false,"data":[{"id":"si_%s","object":"subscription_item","quantity":1,"price":{"id":%q,"object":"price","product":"prod_demo"}}]}}]}`,
			sub, cus, start, start+30*86400, cus[4:], testPrice)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// reads returns the number of reads and the most reads of one customer.
func (s *subscriptionStub) reads() (total, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.per {
		total += n
		most = max(most, n)
	}
	return total, most
}

// countingStripe is the handler's Stripe client with its subscription
// reads answered in process (one active subscription to testPrice, as
// stripeClient decodes it) and counted per customer.
type countingStripe struct {
	stripeAPI
	mu  sync.Mutex
	per map[string]int
}

func (c *countingStripe) subscriptions(_ context.Context, customer string, withKeys bool) (facts, error) {
	c.mu.Lock()
	c.per[customer]++
	c.mu.Unlock()
	return facts{subs: decodedSubscriptions(time.Now().UnixNano()), keys: emptyKeyRing(withKeys)}, nil
}

func (c *countingStripe) reads() (total, most int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.per {
		total += n
		most = max(most, n)
	}
	return total, most
}

// TestEconomyThreeInstancesShareReads: three instances behind a load
// balancer, each customer's requests landing on any of them, over three
// cache_ttl periods. Alone, each instance reads each customer once per
// cache_ttl; sharing Redis, the cluster does.
func TestEconomyThreeInstancesShareReads(t *testing.T) {
	const customers, visits, periods = 200, 9, 3
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "alone", true: "redis"}[shared], func(t *testing.T) {
			var opts []option
			if shared {
				opts = append(opts, withRedis(startRedis(t).Addr()))
			}
			a := newWorld(t, opts...)
			insts := []*world{a, a.sibling(opts...), a.sibling(opts...)}
			clients := make([]*http.Client, customers)
			for i := range clients {
				_, _, clients[i] = a.subscriber("active")
			}
			a.fake.ResetCalls()
			for p := range periods {
				for v := range visits {
					for i, c := range clients {
						inst := insts[(i+v+p)%len(insts)]
						if resp := inst.get(c, "/premium/a"); resp.StatusCode != 200 {
							t.Fatalf("period %d visit %d: %d", p, v, resp.StatusCode)
						}
					}
				}
				a.clock.Advance(time.Duration(a.h.CacheTTL) + time.Second)
			}
			reads := a.fake.Calls("GET /v1/subscriptions")
			per := float64(reads) / customers / periods
			t.Logf("3 instances, %d customers x %d requests per cache_ttl, %d periods: %d Stripe reads, %.2f per customer per cache_ttl",
				customers, visits, periods, reads, per)
			if want := map[bool]float64{false: 3, true: 1}[shared]; per != want {
				t.Fatalf("%.2f reads per customer per cache_ttl, want %.0f", per, want)
			}
		})
	}
}

// The memory figures (256 bytes per cached customer) count on the entry's
// size: where its facts came from and its use mark fit in its padding, and
// the API keys' pointer fills the 64-byte size class the allocator gave
// the 56 bytes it had before.
func TestCustomerEntryStays64Bytes(t *testing.T) {
	if n := unsafe.Sizeof(customerEntry{}); n != 64 {
		t.Fatalf("customerEntry is %d bytes, was 64: measure the cache's memory again (TestMemoryPerCachedCustomer)", n)
	}
}
