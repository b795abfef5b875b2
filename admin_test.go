package paywall

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-paywall/paywall/internal/redisrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// The admin API's answers as an operator's script reads them: the field
// names here are the contract.
type adminCustomerDoc struct {
	Customer string `json:"customer"`
	Accounts []struct {
		Account       string `json:"account"`
		APIURL        string `json:"api_url"`
		HeldIn        string `json:"held_in"`
		Source        string `json:"source"`
		ReadAt        string `json:"read_at"`
		AgeSeconds    int64  `json:"age_seconds"`
		Stale         bool   `json:"stale"`
		Subscriptions []struct {
			Status            string   `json:"status"`
			Prices            []string `json:"prices"`
			Products          []string `json:"products"`
			PeriodStart       string   `json:"period_start"`
			TrialEnd          string   `json:"trial_end"`
			EndedAt           string   `json:"ended_at"`
			CancelAtPeriodEnd bool     `json:"cancel_at_period_end"`
		} `json:"subscriptions"`
		Gates []struct {
			EndpointPrefix string   `json:"endpoint_prefix"`
			Prices         []string `json:"prices"`
			Products       []string `json:"products"`
			Entitled       bool     `json:"entitled"`
			Reason         string   `json:"reason"`
		} `json:"gates"`
	} `json:"accounts"`
	Error string `json:"error"`
}

type adminStatsDoc struct {
	Accounts []adminStatsAccountDoc `json:"accounts"`
}

type adminStatsAccountDoc struct {
	Account         string          `json:"account"`
	APIURL          string          `json:"api_url"`
	CustomersCached int             `json:"customers_cached"`
	StripeReads     uint64          `json:"stripe_reads"`
	StripeErrors    uint64          `json:"stripe_errors"`
	StripeBackoff   bool            `json:"stripe_backoff"`
	Redis           []adminRedisDoc `json:"redis"`
}

type adminRedisDoc struct {
	URL                  string `json:"url"`
	Prefix               string `json:"prefix"`
	State                string `json:"state"`
	Listening            bool   `json:"listening"`
	PendingInvalidations int    `json:"pending_invalidations"`
}

// isolatedAccounts gives the test a pool of accounts of its own, restored
// after the handlers' cleanups: the admin API shows, and a refresh reads,
// every account of the process, and another test may leave one behind
// (whose Stripe would be the internet's). Call it before provisioning.
func isolatedAccounts(t *testing.T) {
	t.Helper()
	old := accounts
	accounts = caddy.NewUsagePool()
	t.Cleanup(func() { accounts = old })
}

// admin sends a request to the admin.api.paywall module as Caddy's admin
// endpoint does: the module as registered, its routes in a ServeMux, and an
// error answered as Caddy's handleError answers it, {"error": "…"} with
// the error's status. Every answer is checked for secrets.
func admin(t *testing.T, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	info, err := caddy.GetModule("admin.api.paywall")
	if err != nil {
		t.Fatalf("admin.api.paywall is not registered: %v", err)
	}
	router, ok := info.New().(caddy.AdminRouter)
	if !ok {
		t.Fatal("admin.api.paywall is not a caddy.AdminRouter")
	}
	mux := http.NewServeMux()
	for _, route := range router.Routes() {
		h := route.Handler
		mux.HandleFunc(route.Pattern, func(w http.ResponseWriter, r *http.Request) {
			err := h.ServeHTTP(w, r)
			if err == nil {
				return
			}
			apiErr, ok := err.(caddy.APIError)
			if !ok {
				apiErr = caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
			}
			if apiErr.Message == "" && apiErr.Err != nil {
				apiErr.Message = apiErr.Err.Error()
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(apiErr.HTTPStatus)
			_ = json.NewEncoder(w).Encode(apiErr)
		})
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, target, ct)
	}
	assertNoSecret(t, method+" "+target, rec.Body.String())
	return rec
}

// assertNoSecret fails when an answer holds the Stripe key, any part of it
// but its last four characters, or another secret of the test handlers.
func assertNoSecret(t *testing.T, what, body string) {
	t.Helper()
	for _, secret := range []string{testKey, testKey[:len(testKey)-4], "sk_", hookSecret, strings.Repeat("k", 32), adminRedisPassword} {
		if strings.Contains(body, secret) {
			t.Errorf("%s: the answer holds a secret (%q):\n%s", what, secret, body)
		}
	}
}

const adminRedisPassword = "hunter2-redis-password"

func customerAnswer(t *testing.T, method, target string, want int) adminCustomerDoc {
	t.Helper()
	rec := admin(t, method, target)
	var doc adminCustomerDoc
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("%s %s: not JSON: %v\n%s", method, target, err, rec.Body)
	}
	if rec.Code != want {
		t.Fatalf("%s %s: %d, want %d\n%s", method, target, rec.Code, want, rec.Body)
	}
	return doc
}

// statsOf returns the stats of the account at apiURL.
func statsOf(t *testing.T, apiURL string) adminStatsAccountDoc {
	t.Helper()
	rec := admin(t, http.MethodGet, "/paywall/stats")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /paywall/stats: %d\n%s", rec.Code, rec.Body)
	}
	var doc adminStatsDoc
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("GET /paywall/stats: not JSON: %v\n%s", err, rec.Body)
	}
	for _, a := range doc.Accounts {
		if a.APIURL == apiURL {
			return a
		}
	}
	t.Fatalf("GET /paywall/stats: no account at %s\n%s", apiURL, rec.Body)
	return adminStatsAccountDoc{}
}

func TestAdminCustomerShowsEveryGateOfTheAccountWithoutReadingStripe(t *testing.T) {
	isolatedAccounts(t)
	w := newWorld(t)
	// A second paywall of the same account, which sells another price.
	provisionTestHandler(t, w.h.apiURL, func(h *Handler) {
		h.EndpointPrefix = "/members"
		h.Prices = []string{"price_gold"}
	})
	cus, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscriber: %d", resp.StatusCode)
	}
	readAt := now().UTC().Format(time.RFC3339)
	w.clock.Advance(90 * time.Second)

	doc := customerAnswer(t, http.MethodGet, "/paywall/customers/"+cus, http.StatusOK)
	if doc.Customer != cus || len(doc.Accounts) != 1 {
		t.Fatalf("answer for %s: %+v", cus, doc)
	}
	a := doc.Accounts[0]
	if a.Account != "…6789" || a.APIURL != w.h.apiURL || a.HeldIn != "memory" || a.Source != "stripe" || a.Stale {
		t.Errorf("account %q api_url %q held_in %q source %q stale %v, want …6789 %s memory stripe false",
			a.Account, a.APIURL, a.HeldIn, a.Source, a.Stale, w.h.apiURL)
	}
	if a.ReadAt != readAt || a.AgeSeconds != 90 {
		t.Errorf("read_at %q age %ds, want %s and 90s", a.ReadAt, a.AgeSeconds, readAt)
	}
	if len(a.Subscriptions) != 1 {
		t.Fatalf("subscriptions: %+v", a.Subscriptions)
	}
	s := a.Subscriptions[0]
	if s.Status != "active" || strings.Join(s.Prices, ",") != testPrice || strings.Join(s.Products, ",") != "prod_demo" ||
		s.PeriodStart == "" || s.EndedAt != "" || s.CancelAtPeriodEnd {
		t.Errorf("subscription: %+v", s)
	}
	if _, err := time.Parse(time.RFC3339, s.PeriodStart); err != nil {
		t.Errorf("period_start %q is not RFC 3339", s.PeriodStart)
	}
	if len(a.Gates) != 2 {
		t.Fatalf("gates: %+v, want /members and /paywall", a.Gates)
	}
	if g := a.Gates[0]; g.EndpointPrefix != "/members" || strings.Join(g.Prices, ",") != "price_gold" || g.Entitled || g.Reason != reasonNoSubscription {
		t.Errorf("the /members gate: %+v, want not entitled, no_subscription", g)
	}
	if g := a.Gates[1]; g.EndpointPrefix != "/paywall" || strings.Join(g.Prices, ",") != testPrice || !g.Entitled || g.Reason != reasonActive {
		t.Errorf("the /paywall gate: %+v, want entitled, active", g)
	}

	// Facts another instance read, as this one got them through Redis.
	other := "cus_ReadElsewhere"
	fetched := now().Add(-10 * time.Minute)
	w.h.account.store(other, facts{subs: []subscriptionState{{Status: "past_due", PeriodStart: fetched.Unix(), Items: []priceRef{{Price: "price_gold", Product: "prod_gold"}}}}},
		fetched.UnixNano(), w.h.account.epoch.Load(), fromRedis)
	doc = customerAnswer(t, http.MethodGet, "/paywall/customers/"+other, http.StatusOK)
	if a := doc.Accounts[0]; a.Source != "redis" || a.AgeSeconds != 600 || a.ReadAt != fetched.UTC().Format(time.RFC3339) ||
		a.Gates[0].Entitled || a.Gates[0].Reason != reasonPaymentFailed || a.Gates[1].Reason != reasonNoSubscription {
		t.Errorf("facts read by another instance: %+v, want source redis, 600s old, payment_failed at /members", a)
	}

	// A webhook says the customer changed: the facts are kept, stale.
	w.h.invalidate(cus)
	doc = customerAnswer(t, http.MethodGet, "/paywall/customers/"+cus, http.StatusOK)
	if !doc.Accounts[0].Stale || doc.Accounts[0].Subscriptions[0].Status != "active" {
		t.Errorf("after an invalidation: stale %v, %+v", doc.Accounts[0].Stale, doc.Accounts[0].Subscriptions)
	}
	if n := w.fake.Calls(""); n != 1 {
		t.Errorf("the admin API's GETs called Stripe: %d calls, want only the visitor's read: %v", n, w.fake.CallCounts())
	}
}

func TestAdminRefreshReadsStripeOnceAndTheGateFollows(t *testing.T) {
	isolatedAccounts(t)
	w := newWorld(t)
	cus, sub, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscriber: %d", resp.StatusCode)
	}
	// Canceled at Stripe, and no webhook says so.
	if err := w.fake.SetStatus(sub, "canceled"); err != nil {
		t.Fatal(err)
	}
	reads, calls := w.h.account.stripeReads.Load(), w.fake.Calls("GET /v1/subscriptions")
	if doc := customerAnswer(t, http.MethodGet, "/paywall/customers/"+cus, http.StatusOK); doc.Accounts[0].Subscriptions[0].Status != "active" {
		t.Fatalf("GET without refresh shows %+v, want what the cache holds (active)", doc.Accounts[0].Subscriptions)
	}

	doc := customerAnswer(t, http.MethodPost, "/paywall/customers/"+cus+"/refresh", http.StatusOK)
	a := doc.Accounts[0]
	if a.Subscriptions[0].Status != "canceled" || a.Stale || a.Source != "stripe" || a.AgeSeconds != 0 {
		t.Errorf("after refresh: %+v", a)
	}
	if g := a.Gates[0]; g.Entitled || g.Reason != reasonEnded {
		t.Errorf("after refresh the gate says %+v, want not entitled, subscription_ended", g)
	}
	if got := w.h.account.stripeReads.Load() - reads; got != 1 {
		t.Errorf("refresh: %d Stripe reads counted, want 1", got)
	}
	if got := w.fake.Calls("GET /v1/subscriptions") - calls; got != 1 {
		t.Errorf("refresh: Stripe got %d reads, want 1", got)
	}
	// The visitor meets what the refresh read, at no further read.
	if resp := w.get(c, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("the visitor after the refresh: %d, want 402", resp.StatusCode)
	}
	if got := w.fake.Calls("GET /v1/subscriptions") - calls; got != 1 {
		t.Errorf("the visitor's request after the refresh read Stripe again (%d reads)", got)
	}

	// ?refresh=1 on the GET is the same refresh.
	if err := w.fake.SetStatus(sub, "active"); err != nil {
		t.Fatal(err)
	}
	doc = customerAnswer(t, http.MethodGet, "/paywall/customers/"+cus+"?refresh=1", http.StatusOK)
	if g := doc.Accounts[0].Gates[0]; !g.Entitled || g.Reason != reasonActive {
		t.Errorf("after GET ?refresh=1 the gate says %+v, want entitled", g)
	}
	if got := w.fake.Calls("GET /v1/subscriptions") - calls; got != 2 {
		t.Errorf("GET ?refresh=1: %d reads in all, want 2", got)
	}

	// A customer this instance never held: 404, then a refresh loads it.
	other := w.fake.CreateCustomer("trial@example.com")
	w.fake.CreateSubscription(other, testPrice, "trialing")
	if doc := customerAnswer(t, http.MethodGet, "/paywall/customers/"+other, http.StatusNotFound); !strings.Contains(doc.Error, "no account") {
		t.Errorf("404 error %q does not say that no account holds the customer", doc.Error)
	}
	doc = customerAnswer(t, http.MethodPost, "/paywall/customers/"+other+"/refresh", http.StatusOK)
	if g := doc.Accounts[0].Gates[0]; !g.Entitled || g.Reason != reasonTrialing {
		t.Errorf("refresh of a customer not held: %+v", doc.Accounts[0])
	}
}

// refusingStripe is a Stripe that refuses the list of subscriptions, as
// Stripe refuses a request with a setting it does not accept.
type refusingStripe struct{ stripeAPI }

func (refusingStripe) subscriptions(context.Context, string, bool) (facts, error) {
	return facts{}, &stripeError{op: "list subscriptions", status: 400, typ: "invalid_request_error", code: "parameter_unknown", requestID: "req_refused"}
}

func TestAdminRefreshFailureNamesTheAccountNeverTheKey(t *testing.T) {
	isolatedAccounts(t)
	w := newWorld(t)
	cus, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscriber: %d", resp.StatusCode)
	}

	w.fake.SetOutage(stripefake.OutageErrors)
	rec := admin(t, http.MethodPost, "/paywall/customers/"+cus+"/refresh")
	var doc adminCustomerDoc
	_ = json.Unmarshal(rec.Body.Bytes(), &doc)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("refresh while Stripe fails: %d Retry-After %q, want 503 with Retry-After\n%s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	// Caddy logs the error at error level: it names the account, not the
	// customer.
	if !strings.Contains(doc.Error, "account …6789") || !strings.Contains(doc.Error, "stripe answered 500") || strings.Contains(doc.Error, cus) {
		t.Errorf("the error %q should name account …6789 and what Stripe answered, and not the customer", doc.Error)
	}
	// In the back-off, Stripe is not asked at all.
	calls := w.fake.Calls("")
	if rec := admin(t, http.MethodPost, "/paywall/customers/"+cus+"/refresh"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Errorf("refresh in the back-off: %d Retry-After %q, want 503, 5", rec.Code, rec.Header().Get("Retry-After"))
	}
	if n := w.fake.Calls(""); n != calls {
		t.Errorf("a refresh in the back-off called Stripe (%d calls)", n-calls)
	}
	// What the failed refresh marked stale is still shown, stale.
	if doc := customerAnswer(t, http.MethodGet, "/paywall/customers/"+cus, http.StatusOK); !doc.Accounts[0].Stale {
		t.Errorf("after a failed refresh the facts are not stale: %+v", doc.Accounts[0])
	}

	// A request Stripe refuses is a bad gateway, not an outage.
	w.fake.SetOutage(stripefake.OutageNone)
	w.clock.Advance(outageBackoff + time.Second)
	w.h.stripe = refusingStripe{w.h.stripe}
	rec = admin(t, http.MethodPost, "/paywall/customers/"+cus+"/refresh")
	_ = json.Unmarshal(rec.Body.Bytes(), &doc)
	if rec.Code != http.StatusBadGateway || !strings.Contains(doc.Error, "account …6789") || !strings.Contains(doc.Error, "req_refused") {
		t.Errorf("refresh refused by Stripe: %d %q, want 502 naming the account and Stripe's request", rec.Code, doc.Error)
	}
}

func TestAdminCustomerRefusesMalformedUnknownAndOtherMethods(t *testing.T) {
	isolatedAccounts(t)
	w := newWorld(t)
	for _, tc := range []struct {
		method, target string
		code           int
		allow, says    string
	}{
		{http.MethodGet, "/paywall/customers/cus_NobodyHere", http.StatusNotFound, "", "no account on this instance holds"},
		{http.MethodGet, "/paywall/customers/not-a-customer", http.StatusBadRequest, "", "not a Stripe customer ID"},
		{http.MethodGet, "/paywall/customers/cus_a-b", http.StatusBadRequest, "", "not a Stripe customer ID"},
		{http.MethodPost, "/paywall/customers/not-a-customer/refresh", http.StatusBadRequest, "", "not a Stripe customer ID"},
		{http.MethodGet, "/paywall/customers/cus_x?refresh=yes", http.StatusBadRequest, "", "refresh"},
		{http.MethodGet, "/paywall/customers/cus_x/", http.StatusNotFound, "", "not a paywall admin endpoint"},
		{http.MethodGet, "/paywall/customers/cus_x/forget", http.StatusNotFound, "", "not a paywall admin endpoint"},
		{http.MethodDelete, "/paywall/customers/cus_x", http.StatusMethodNotAllowed, "GET", "method not allowed"},
		{http.MethodPost, "/paywall/customers/cus_x", http.StatusMethodNotAllowed, "GET", "method not allowed"},
		{http.MethodPut, "/paywall/customers/cus_x?refresh=1", http.StatusMethodNotAllowed, "GET", "method not allowed"},
		{http.MethodGet, "/paywall/customers/cus_x/refresh", http.StatusMethodNotAllowed, "POST", "method not allowed"},
		{http.MethodPost, "/paywall/stats", http.StatusMethodNotAllowed, "GET", "method not allowed"},
	} {
		rec := admin(t, tc.method, tc.target)
		var doc adminCustomerDoc
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Errorf("%s %s: not JSON: %v\n%s", tc.method, tc.target, err, rec.Body)
			continue
		}
		if rec.Code != tc.code || rec.Header().Get("Allow") != tc.allow || !strings.Contains(doc.Error, tc.says) {
			t.Errorf("%s %s: %d Allow %q error %q, want %d Allow %q error with %q",
				tc.method, tc.target, rec.Code, rec.Header().Get("Allow"), doc.Error, tc.code, tc.allow, tc.says)
		}
		for _, id := range []string{"cus_x", "cus_NobodyHere", "cus_a-b", "not-a-customer"} {
			if strings.Contains(doc.Error, id) {
				t.Errorf("%s %s: the error %q names the customer (Caddy logs it at error level)", tc.method, tc.target, doc.Error)
			}
		}
	}
	if n := w.fake.Calls(""); n != 0 {
		t.Errorf("refused requests called Stripe %d times", n)
	}
}

func TestAdminStatsCountReadsAndFailuresAndNameNoCustomer(t *testing.T) {
	isolatedAccounts(t)
	w := newWorld(t, func(h *Handler) { h.CacheTTL = caddy.Duration(time.Minute) })
	if s := statsOf(t, w.h.apiURL); s.Account != "…6789" || s.CustomersCached != 0 || s.StripeReads != 0 || s.Redis == nil || len(s.Redis) != 0 {
		t.Errorf("stats of a new account: %+v, want …6789, nothing cached or read, redis []", s)
	}
	ann, _, annBrowser := w.subscriber("active")
	bob, _, bobBrowser := w.subscriber("active")
	for _, c := range []*http.Client{annBrowser, bobBrowser} {
		if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
			t.Fatalf("subscriber: %d", resp.StatusCode)
		}
	}
	s := statsOf(t, w.h.apiURL)
	if s.CustomersCached != 2 || s.StripeReads != 2 || s.StripeErrors != 0 || s.StripeBackoff {
		t.Errorf("after two subscribers' visits: %+v, want 2 cached, 2 reads, no error, no back-off", s)
	}
	if body := admin(t, http.MethodGet, "/paywall/stats").Body.String(); strings.Contains(body, ann) || strings.Contains(body, bob) || strings.Contains(body, "cus_") {
		t.Errorf("the stats name a customer:\n%s", body)
	}

	// Stripe fails a read: counted, and the account backs off.
	w.fake.SetOutage(stripefake.OutageErrors)
	w.clock.Advance(2 * time.Minute)
	if resp := w.get(annBrowser, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("a known payer in an outage: %d", resp.StatusCode)
	}
	w.h.account.reads.Wait() // the read may outlast the known payer's request
	if s := statsOf(t, w.h.apiURL); s.StripeReads != 3 || s.StripeErrors != 1 || !s.StripeBackoff {
		t.Errorf("after a failed read: %+v, want 3 reads, 1 error, back-off", s)
	}
	w.clock.Advance(outageBackoff)
	if s := statsOf(t, w.h.apiURL); s.StripeBackoff {
		t.Errorf("the back-off outlasted outageBackoff: %+v", s)
	}
}

func TestAdminStatsShowRedisLinksAndRefreshInvalidatesThroughEach(t *testing.T) {
	isolatedAccounts(t)
	rs := redisrun.Start(t)
	t.Setenv("PAYWALL_TEST_ADMIN_REDIS", "redis://:"+adminRedisPassword+"@127.0.0.1:1/0")
	w := newWorld(t, func(h *Handler) { h.Redis = rs.URL() })
	// Another paywall of the account, with a Redis that is not there, and
	// its password in the URL.
	provisionTestHandler(t, w.h.apiURL, func(h *Handler) {
		h.EndpointPrefix = "/members"
		h.Redis = "{env.PAYWALL_TEST_ADMIN_REDIS}"
		h.RedisPrefix = "members:"
	})
	// links are the account's Redis links by prefix.
	links := func() map[string]adminRedisDoc {
		out := map[string]adminRedisDoc{}
		for _, l := range statsOf(t, w.h.apiURL).Redis {
			out[l.Prefix] = l
		}
		return out
	}
	got := links()
	if len(got) != 2 {
		t.Fatalf("redis links: %+v, want paywall: and members:", got)
	}
	if l := got["paywall:"]; l.URL != rs.URL() || l.State != "not used yet" || l.Listening || l.PendingInvalidations != 0 {
		t.Errorf("the site's Redis before any use: %+v", l)
	}
	if l := got["members:"]; l.URL != "redis://xxxxx@127.0.0.1:1/0" || l.State != "not used yet" {
		t.Errorf("the unreachable Redis before any use: %+v, want its URL without the password", l)
	}

	cus, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("subscriber: %d", resp.StatusCode)
	}
	// The listener subscribes in the background, on Redis's time.
	deadline := time.Now().Add(10 * time.Second)
	for l := links()["paywall:"]; l.State != "up" || !l.Listening; l = links()["paywall:"] {
		if time.Now().After(deadline) {
			t.Fatalf("the site's Redis in use: %+v, want up and listening", l)
		}
		time.Sleep(10 * time.Millisecond) // Redis's subscription, in another goroutine
	}

	// A refresh reads Stripe once, and tells every instance through each
	// Redis the account's paywalls name: another instance hears it on the
	// site's Redis; the one that is not there keeps it to publish later.
	other := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = other.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	heard := other.Subscribe(ctx, "paywall:invalidate")
	t.Cleanup(func() { _ = heard.Close() })
	if _, err := heard.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatalf("subscribe as another instance: %v", err)
	}
	w.clock.Advance(time.Minute)
	calls := w.fake.Calls("GET /v1/subscriptions")
	doc := customerAnswer(t, http.MethodPost, "/paywall/customers/"+cus+"/refresh", http.StatusOK)
	// The read went through the Redis that is up: the other instances
	// find it there.
	if f, err := other.HGet(ctx, "paywall:cus:"+cus, "f").Result(); err != nil || f != strconv.FormatInt(now().UnixMilli(), 10) {
		t.Errorf("Redis holds the facts read at %q (%v), want the refresh's read at %d", f, err, now().UnixMilli())
	}
	if msg, err := heard.ReceiveMessage(ctx); err != nil || !strings.Contains(msg.Payload, `"c":"`+cus+`"`) {
		t.Errorf("another instance heard %v (%v), want the customer's invalidation", msg, err)
	}
	if got := w.fake.Calls("GET /v1/subscriptions") - calls; got != 1 {
		t.Errorf("refresh with Redis: %d Stripe reads, want 1", got)
	}
	if a := doc.Accounts[0]; a.Source != "stripe" || a.Stale || len(a.Gates) != 2 {
		t.Errorf("after refresh: %+v", a)
	}
	got = links()
	if l := got["members:"]; l.State != "down" || l.PendingInvalidations != 1 {
		t.Errorf("the unreachable Redis after a refresh: %+v, want down with 1 invalidation pending", l)
	}
	if l := got["paywall:"]; l.State != "up" || l.PendingInvalidations != 0 {
		t.Errorf("the site's Redis after a refresh: %+v, want up, nothing pending", l)
	}

	// Redis goes away: the next invalidation waits for it.
	rs.Kill()
	w.h.invalidate(cus)
	if l := links()["paywall:"]; l.State != "down" || l.PendingInvalidations != 1 {
		t.Errorf("the site's Redis once killed: %+v, want down with 1 invalidation pending", l)
	}
}
