package stripefake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// clock is an injectable, advanceable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

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

func start(t *testing.T, opts stripefake.Options) *stripefake.Server {
	t.Helper()
	s := stripefake.New(opts)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func sdk(t *testing.T, base, key string) *client.API {
	t.Helper()
	return client.New(key, stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(base),
		HTTPClient:        &http.Client{Timeout: 5 * time.Second},
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	}))
}

// browser does not follow redirects, so tests can inspect them.
var browser = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func postForm(t *testing.T, u string, form url.Values) *http.Response {
	t.Helper()
	res, err := browser.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func stripeError(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("want *stripe.Error, got %T %v", err, err)
	}
	return se
}

func newCheckout(t *testing.T, sc *client.API, mut func(*stripe.CheckoutSessionParams)) *stripe.CheckoutSession {
	t.Helper()
	p := &stripe.CheckoutSessionParams{
		Mode:              stripe.String("subscription"),
		LineItems:         []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_demo_monthly"), Quantity: stripe.Int64(1)}},
		SuccessURL:        stripe.String("http://localhost:8080/paywall/success?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:         stripe.String("http://localhost:8080/pricing"),
		ClientReferenceID: stripe.String("nonce123"),
	}
	if mut != nil {
		mut(p)
	}
	cs, err := sc.CheckoutSessions.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestCheckoutToPortalWithSDK(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")

	cs := newCheckout(t, sc, func(p *stripe.CheckoutSessionParams) {
		p.CustomerEmail = stripe.String("ada@example.com")
		p.AddMetadata("plan", "premium")
	})
	if !strings.HasPrefix(cs.ID, "cs_test_") || cs.URL != s.URL()+"/c/pay/"+cs.ID {
		t.Fatalf("id %q url %q", cs.ID, cs.URL)
	}
	if cs.Status != "open" || cs.PaymentStatus != "unpaid" || cs.Mode != "subscription" ||
		cs.ClientReferenceID != "nonce123" || cs.CustomerEmail != "ada@example.com" || cs.Customer != nil ||
		cs.Subscription != nil || cs.Metadata["plan"] != "premium" || cs.ExpiresAt <= cs.Created {
		t.Fatalf("new session: %+v", cs)
	}

	if err := s.CompleteCheckout(cs.ID, stripefake.CardSuccess); err != nil {
		t.Fatal(err)
	}
	gp := &stripe.CheckoutSessionParams{}
	gp.AddExpand("customer")
	gp.AddExpand("subscription")
	got, err := sc.CheckoutSessions.Get(cs.ID, gp)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "complete" || got.PaymentStatus != "paid" || got.ClientReferenceID != "nonce123" {
		t.Fatalf("completed session: status %q payment %q", got.Status, got.PaymentStatus)
	}
	if got.Customer == nil || got.Customer.Email != "ada@example.com" || !strings.HasPrefix(got.Customer.ID, "cus_") {
		t.Fatalf("expanded customer: %+v", got.Customer)
	}
	if got.Subscription == nil || got.Subscription.Status != "active" || got.Subscription.Customer.ID != got.Customer.ID {
		t.Fatalf("expanded subscription: %+v", got.Subscription)
	}

	lp := &stripe.SubscriptionListParams{Customer: stripe.String(got.Customer.ID), Status: stripe.String("all")}
	it := sc.Subscriptions.List(lp)
	var subs []*stripe.Subscription
	for it.Next() {
		subs = append(subs, it.Subscription())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(subs) != 1 {
		t.Fatalf("want 1 subscription, got %d", len(subs))
	}
	sub := subs[0]
	if sub.ID != got.Subscription.ID || sub.Status != stripe.SubscriptionStatusActive || sub.TrialEnd != 0 || sub.CanceledAt != 0 {
		t.Fatalf("listed subscription: %+v", sub)
	}
	if sub.CurrentPeriodEnd <= sub.CurrentPeriodStart || sub.Items == nil || len(sub.Items.Data) != 1 {
		t.Fatalf("period/items: %+v", sub)
	}
	item := sub.Items.Data[0]
	if item.Price.ID != "price_demo_monthly" || item.Price.Product.ID != "prod_demo" || item.Price.UnitAmount != 500 ||
		item.Price.Recurring.Interval != "month" || item.Quantity != 1 {
		t.Fatalf("item: %+v price %+v", item, item.Price)
	}

	ps, err := sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{
		Customer:  stripe.String(got.Customer.ID),
		ReturnURL: stripe.String("http://localhost:8080/account"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ps.ID, "bps_") || ps.URL != s.URL()+"/p/session/"+ps.ID || ps.Customer != got.Customer.ID || ps.ReturnURL != "http://localhost:8080/account" {
		t.Fatalf("portal session: %+v", ps)
	}

	for key, want := range map[string]int{
		"POST /v1/checkout/sessions":       1,
		"GET /v1/checkout/sessions/{id}":   1,
		"GET /v1/subscriptions":            1,
		"POST /v1/billing_portal/sessions": 1,
		"":                                 4,
	} {
		if n := s.Calls(key); n != want {
			t.Errorf("Calls(%q) = %d, want %d (all: %v)", key, n, want, s.CallCounts())
		}
	}
	s.ResetCalls()
	if n := s.Calls(""); n != 0 {
		t.Errorf("after ResetCalls: %d", n)
	}
}

func TestHostedCheckoutDeclineThenPay(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	cs := newCheckout(t, sc, nil)

	status, page := get(t, cs.URL)
	if status != 200 {
		t.Fatalf("GET checkout page: %d", status)
	}
	for _, want := range []string{
		stripefake.Banner, "Premium — $5.00 / month", `id="email"`, `id="card"`, `value="4242 4242 4242 4242"`,
		`id="pay"`, `id="back" href="http://localhost:8080/pricing"`, "4000 0000 0000 0002", `name="viewport"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("checkout page lacks %q", want)
		}
	}
	if strings.Contains(page, `id="error"`) || strings.Contains(page, "<script") {
		t.Error("fresh page shows an error or a script")
	}

	res := postForm(t, cs.URL, url.Values{"email": {"bob@example.com"}, "card": {"4000 0000 0000 0002"}})
	page = body(t, res)
	if res.StatusCode != http.StatusPaymentRequired || !strings.Contains(page, `id="error"`) ||
		!strings.Contains(page, "Your card was declined. Try another card.") || !strings.Contains(page, `value="bob@example.com"`) {
		t.Fatalf("decline: %d\n%s", res.StatusCode, page)
	}
	if got, _ := s.Session(cs.ID); got.Status != "open" || got.Customer != "" {
		t.Fatalf("session after decline: %+v", got)
	}

	res = postForm(t, cs.URL, url.Values{"email": {"bob@example.com"}, "card": {"4242 4242 4242 4242"}})
	body(t, res)
	want := "http://localhost:8080/paywall/success?session_id=" + cs.ID
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
		t.Fatalf("pay: %d Location %q, want %q", res.StatusCode, res.Header.Get("Location"), want)
	}
	got, _ := s.Session(cs.ID)
	if got.Status != "complete" || got.PaymentStatus != "paid" || got.Subscription == "" {
		t.Fatalf("session after pay: %+v", got)
	}
	if c, ok := s.Customer(got.Customer); !ok || c.Email != "bob@example.com" {
		t.Fatalf("customer: %+v", c)
	}
	status, page = get(t, cs.URL)
	if status != 200 || !strings.Contains(page, "complete") || strings.Contains(page, `id="pay"`) {
		t.Fatalf("completed page: %d\n%s", status, page)
	}
	if err := s.CompleteCheckout(cs.ID, ""); !errors.Is(err, stripefake.ErrNotOpen) {
		t.Fatalf("second completion: %v", err)
	}
	// The hosted pages are not API calls.
	if n := s.Calls(""); n != 1 {
		t.Fatalf("API calls = %d (%v)", n, s.CallCounts())
	}
}

func TestCompleteCheckoutDeclined(t *testing.T) {
	s := start(t, stripefake.Options{})
	cs := newCheckout(t, sdk(t, s.URL(), "sk_test_x"), nil)
	if err := s.CompleteCheckout(cs.ID, stripefake.CardDeclined); !errors.Is(err, stripefake.ErrCardDeclined) {
		t.Fatalf("want ErrCardDeclined, got %v", err)
	}
	if err := s.CompleteCheckout(cs.ID, "1234"); err == nil || errors.Is(err, stripefake.ErrCardDeclined) {
		t.Fatalf("invalid card: %v", err)
	}
	if got, _ := s.Session(cs.ID); got.Status != "open" {
		t.Fatalf("status %q", got.Status)
	}
	if err := s.CompleteCheckout("cs_test_nope", ""); !errors.Is(err, stripefake.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
}

func TestTrialCheckoutExistingCustomer(t *testing.T) {
	clk := newClock()
	s := start(t, stripefake.Options{Now: clk.Now})
	sc := sdk(t, s.URL(), "sk_test_x")
	cus := s.CreateCustomer("cy@example.com")
	cs := newCheckout(t, sc, func(p *stripe.CheckoutSessionParams) {
		p.Customer = stripe.String(cus)
		p.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{TrialPeriodDays: stripe.Int64(7)}
	})
	_, page := get(t, cs.URL)
	if !strings.Contains(page, `id="trial"`) || !strings.Contains(page, "Start trial") || !strings.Contains(page, `value="cy@example.com" readonly`) {
		t.Fatalf("trial page:\n%s", page)
	}
	if err := s.CompleteCheckout(cs.ID, ""); err != nil {
		t.Fatal(err)
	}
	got, err := sc.CheckoutSessions.Get(cs.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.PaymentStatus != "no_payment_required" || got.Customer.ID != cus {
		t.Fatalf("trial session: %q customer %+v", got.PaymentStatus, got.Customer)
	}
	sub, _ := s.Subscription(got.Subscription.ID)
	now := clk.Now()
	if sub.Status != "trialing" || !sub.TrialStart.Equal(now) || !sub.TrialEnd.Equal(now.AddDate(0, 0, 7)) || !sub.CurrentPeriodEnd.Equal(sub.TrialEnd) {
		t.Fatalf("trial subscription: %+v", sub)
	}
	var types []string
	for _, e := range s.Events() {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "checkout.session.completed,customer.subscription.created" {
		t.Fatalf("events: %v", types)
	}
}

func TestCheckoutValidation(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	cus := s.CreateCustomer("")
	cases := []struct {
		name  string
		mut   func(*stripe.CheckoutSessionParams)
		param string
		code  stripe.ErrorCode
	}{
		{"both customer and email", func(p *stripe.CheckoutSessionParams) {
			p.Customer, p.CustomerEmail = stripe.String(cus), stripe.String("a@example.com")
		}, "customer", ""},
		{"payment mode", func(p *stripe.CheckoutSessionParams) { p.Mode = stripe.String("payment") }, "mode", ""},
		{"no mode", func(p *stripe.CheckoutSessionParams) { p.Mode = nil }, "mode", ""},
		{"unknown price", func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Price = stripe.String("price_nope") },
			"line_items[0][price]", stripe.ErrorCodeResourceMissing},
		{"unknown customer", func(p *stripe.CheckoutSessionParams) { p.Customer = stripe.String("cus_nope") },
			"customer", stripe.ErrorCodeResourceMissing},
		{"no success_url", func(p *stripe.CheckoutSessionParams) { p.SuccessURL = nil }, "success_url", ""},
		{"no cancel_url", func(p *stripe.CheckoutSessionParams) { p.CancelURL = nil }, "cancel_url", ""},
		{"expires too soon", func(p *stripe.CheckoutSessionParams) { p.ExpiresAt = stripe.Int64(time.Now().Unix() + 60) }, "expires_at", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &stripe.CheckoutSessionParams{
				Mode:       stripe.String("subscription"),
				LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_demo_monthly"), Quantity: stripe.Int64(1)}},
				SuccessURL: stripe.String("http://localhost/ok"),
				CancelURL:  stripe.String("http://localhost/no"),
			}
			tc.mut(p)
			_, err := sc.CheckoutSessions.New(p)
			se := stripeError(t, err)
			if se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest || se.Param != tc.param || (tc.code != "" && se.Code != tc.code) {
				t.Fatalf("got %d %s %s %q: %s", se.HTTPStatusCode, se.Type, se.Code, se.Param, se.Msg)
			}
		})
	}
}

func TestCheckoutExpiry(t *testing.T) {
	clk := newClock()
	s := start(t, stripefake.Options{Now: clk.Now})
	sc := sdk(t, s.URL(), "sk_test_x")
	cs := newCheckout(t, sc, func(p *stripe.CheckoutSessionParams) {
		p.ExpiresAt = stripe.Int64(clk.Now().Add(time.Hour).Unix())
	})
	clk.Advance(time.Hour)
	got, err := sc.CheckoutSessions.Get(cs.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "expired" || got.URL != "" {
		t.Fatalf("status %q url %q", got.Status, got.URL)
	}
	if _, page := get(t, cs.URL); !strings.Contains(page, `id="expired"`) || strings.Contains(page, `id="pay"`) {
		t.Fatalf("expired page:\n%s", page)
	}
	if err := s.CompleteCheckout(cs.ID, ""); !errors.Is(err, stripefake.ErrNotOpen) {
		t.Fatalf("complete expired: %v", err)
	}
	if ev := s.Events(); len(ev) != 1 || ev[0].Type != "checkout.session.expired" {
		t.Fatalf("events: %+v", ev)
	}
	_, err = sc.CheckoutSessions.Get("cs_test_missing", nil)
	if se := stripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing {
		t.Fatalf("missing session: %+v", se)
	}
}

// hook is a webhook endpoint that records what it receives.
type hook struct {
	mu       sync.Mutex
	bodies   [][]byte
	headers  []http.Header
	failures int // answer 500 to this many requests first
	srv      *httptest.Server
}

func newHook(t *testing.T, failures int) *hook {
	h := &hook{failures: failures}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.bodies = append(h.bodies, b)
		h.headers = append(h.headers, r.Header.Clone())
		if h.failures > 0 {
			h.failures--
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func TestWebhooksSignedAndVerified(t *testing.T) {
	s := start(t, stripefake.Options{})
	h := newHook(t, 0)
	const secret = "whsec_test_secret"
	s.AddWebhookEndpoint(h.srv.URL+"/paywall/webhook", secret)
	cs := newCheckout(t, sdk(t, s.URL(), "sk_test_x"), nil)
	if err := s.CompleteCheckout(cs.ID, ""); err != nil {
		t.Fatal(err)
	}
	s.WaitDeliveries()

	h.mu.Lock()
	defer h.mu.Unlock()
	want := []string{"customer.created", "checkout.session.completed", "customer.subscription.created", "invoice.paid"}
	if len(h.bodies) != len(want) {
		t.Fatalf("got %d deliveries, want %d", len(h.bodies), len(want))
	}
	for i, b := range h.bodies {
		hdr := h.headers[i]
		if ct := hdr.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("content type %q", ct)
		}
		sig := hdr.Get("Stripe-Signature")
		if !strings.HasPrefix(sig, "t=") || !strings.Contains(sig, ",v1=") {
			t.Fatalf("signature header %q", sig)
		}
		ev, err := webhook.ConstructEventWithOptions(b, sig, secret, webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		if string(ev.Type) != want[i] || ev.APIVersion != stripefake.DefaultAPIVersion || ev.Livemode || !strings.HasPrefix(ev.ID, "evt_") {
			t.Fatalf("event %d: type %s version %s", i, ev.Type, ev.APIVersion)
		}
		if _, err := webhook.ConstructEventWithOptions(b, sig, "whsec_wrong", webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true}); err == nil {
			t.Fatal("wrong secret verified")
		}
		switch ev.Type {
		case "checkout.session.completed":
			var got stripe.CheckoutSession
			if err := json.Unmarshal(ev.Data.Raw, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != cs.ID || got.Status != "complete" || got.Subscription == nil || got.Customer == nil {
				t.Fatalf("session snapshot: %+v", got)
			}
		case "customer.subscription.created":
			if ev.Data.Object["status"] != "active" || ev.Data.Object["object"] != "subscription" {
				t.Fatalf("subscription snapshot: %v", ev.Data.Object)
			}
		}
	}
	// The SDK's strict check rejects a newer api_version, as documented.
	if _, err := webhook.ConstructEvent(h.bodies[0], h.headers[0].Get("Stripe-Signature"), secret); err == nil {
		t.Fatal("ConstructEvent accepted a 2024 api_version")
	}
	for _, d := range s.Deliveries() {
		if !d.OK || d.StatusCode != 200 || d.Attempt != 1 || !d.Final {
			t.Fatalf("delivery: %+v", d)
		}
	}
}

func TestWebhookRetries(t *testing.T) {
	s := start(t, stripefake.Options{WebhookBackoff: time.Millisecond, WebhookAttempts: 3})
	h := newHook(t, 1)
	dead := newHook(t, 100)
	s.AddWebhookEndpoint(h.srv.URL, "whsec_a")
	s.AddWebhookEndpoint(dead.srv.URL, "whsec_b", "customer.subscription.updated")
	id, err := s.SendEvent("customer.subscription.updated", map[string]any{"id": "sub_x", "object": "subscription", "status": "active"})
	if err != nil {
		t.Fatal(err)
	}
	s.WaitDeliveries()
	var toH, toDead []stripefake.Delivery
	for _, d := range s.Deliveries() {
		if d.EventID != id {
			t.Fatalf("unexpected event %s", d.EventID)
		}
		if d.URL == h.srv.URL {
			toH = append(toH, d)
		} else {
			toDead = append(toDead, d)
		}
	}
	if len(toH) != 2 || toH[0].StatusCode != 500 || toH[0].OK || toH[0].Final || toH[1].StatusCode != 200 || !toH[1].Final {
		t.Fatalf("retry log: %+v", toH)
	}
	if len(toDead) != 3 || !toDead[2].Final || toDead[2].OK {
		t.Fatalf("dead endpoint log: %+v", toDead)
	}
	// An endpoint filtered to other types gets nothing.
	s.AddWebhookEndpoint(dead.srv.URL, "whsec_c", "invoice.paid")
	n := len(s.Deliveries())
	if _, err := s.SendEvent("customer.created", json.RawMessage(`{"id":"cus_1","object":"customer"}`)); err != nil {
		t.Fatal(err)
	}
	s.WaitDeliveries()
	if got := len(s.Deliveries()) - n; got != 1 {
		t.Fatalf("%d new deliveries, want 1", got)
	}
}

func TestPortalPageActions(t *testing.T) {
	clk := newClock()
	s := start(t, stripefake.Options{Now: clk.Now, SignatureNow: time.Now})
	h := newHook(t, 0)
	s.AddWebhookEndpoint(h.srv.URL, "whsec_x")
	sc := sdk(t, s.URL(), "sk_test_x")
	cus := s.CreateCustomer("dee@example.com")
	old := s.CreateSubscription(cus, "price_demo_monthly", "canceled")
	clk.Advance(time.Minute)
	sub := s.CreateSubscription(cus, "price_demo_monthly", "active")
	ps, err := sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String(cus), ReturnURL: stripe.String("http://localhost:8080/")})
	if err != nil {
		t.Fatal(err)
	}
	_, page := get(t, ps.URL)
	for _, want := range []string{stripefake.Banner, "dee@example.com", `id="cancel"`, `id="fail-renewal"`, `id="return" href="http://localhost:8080/"`, `id="status">active`, "sub-" + old} {
		if !strings.Contains(page, want) {
			t.Errorf("portal page lacks %q", want)
		}
	}
	if strings.Contains(page, `id="update-payment"`) {
		t.Error("update-payment offered for an active subscription")
	}

	act := func(action string, wantStatus int) {
		t.Helper()
		res := postForm(t, ps.URL, url.Values{"subscription": {sub}, "action": {action}})
		b := body(t, res)
		if res.StatusCode != wantStatus {
			t.Fatalf("%s: status %d\n%s", action, res.StatusCode, b)
		}
		if wantStatus == http.StatusSeeOther && res.Header.Get("Location") != "/p/session/"+ps.ID {
			t.Fatalf("%s: Location %q", action, res.Header.Get("Location"))
		}
	}
	clk.Advance(24 * time.Hour)
	act("fail_renewal", http.StatusSeeOther)
	got, _ := s.Subscription(sub)
	if got.Status != "past_due" || !got.CurrentPeriodStart.Equal(clk.Now()) || !got.CurrentPeriodEnd.Equal(clk.Now().AddDate(0, 1, 0)) {
		t.Fatalf("after failed renewal: %+v", got)
	}
	if _, page = get(t, ps.URL); !strings.Contains(page, `id="update-payment"`) || strings.Contains(page, `id="fail-renewal"`) {
		t.Fatalf("past_due page:\n%s", page)
	}
	act("fail_renewal", http.StatusConflict)
	act("update_payment", http.StatusSeeOther)
	if got, _ = s.Subscription(sub); got.Status != "active" {
		t.Fatalf("after update payment: %s", got.Status)
	}
	act("cancel", http.StatusSeeOther)
	if got, _ = s.Subscription(sub); got.Status != "canceled" || !got.CanceledAt.Equal(clk.Now()) || !got.EndedAt.Equal(clk.Now()) {
		t.Fatalf("after cancel: %+v", got)
	}
	// Someone else's subscription cannot be touched through this portal.
	other := s.CreateSubscription(s.CreateCustomer("eve@example.com"), "price_demo_monthly", "active")
	res := postForm(t, ps.URL, url.Values{"subscription": {other}, "action": {"cancel"}})
	body(t, res)
	if res.StatusCode == http.StatusSeeOther {
		t.Fatal("cancelled another customer's subscription")
	}

	s.WaitDeliveries()
	var types []string
	for _, d := range s.Deliveries() {
		types = append(types, d.Type)
	}
	want := "invoice.payment_failed,customer.subscription.updated,invoice.paid,customer.subscription.updated,customer.subscription.deleted"
	if strings.Join(types, ",") != want {
		t.Fatalf("webhooks: %v", types)
	}

	if status, _ := get(t, s.URL()+"/p/session/bps_nope"); status != 404 {
		t.Fatalf("unknown portal session: %d", status)
	}
	_, err = sc.BillingPortalSessions.New(&stripe.BillingPortalSessionParams{Customer: stripe.String("cus_nope")})
	if se := stripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing {
		t.Fatalf("portal for unknown customer: %+v", se)
	}
}

func TestControlSimulations(t *testing.T) {
	clk := newClock()
	s := start(t, stripefake.Options{Now: clk.Now})
	cus := s.CreateCustomer("f@example.com")
	sub := s.CreateSubscription(cus, "price_demo_monthly", "trialing")
	got, _ := s.Subscription(sub)
	if !got.TrialEnd.Equal(clk.Now().AddDate(0, 0, 14)) {
		t.Fatalf("default trial: %+v", got)
	}
	clk.Advance(time.Hour)
	if err := s.Renew(sub); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Subscription(sub)
	if got.Status != "active" || !got.TrialEnd.Equal(clk.Now()) || !got.CurrentPeriodStart.Equal(clk.Now()) {
		t.Fatalf("after renew: %+v", got)
	}
	if err := s.SetCancelAtPeriodEnd(sub, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscription(sub, func(x *stripefake.Subscription) {
		x.Status = "unpaid"
		x.ID = "sub_hijack"
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.Subscription(sub); got.Status != "unpaid" || !got.CancelAtPeriodEnd || got.ID != sub {
		t.Fatalf("after SetSubscription: %+v", got)
	}
	if err := s.FailRenewal(sub); !errors.Is(err, stripefake.ErrInvalidState) {
		t.Fatalf("fail renewal of unpaid: %v", err)
	}
	if err := s.SetStatus(sub, "bogus"); err == nil {
		t.Fatal("SetStatus accepted a bogus status")
	}
	if err := s.CancelSubscription("sub_nope"); !errors.Is(err, stripefake.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	if _, err := s.SendSubscriptionEvent("customer.subscription.updated", sub); err != nil {
		t.Fatal(err)
	}
	ev := s.Events()
	if ev[len(ev)-1].Type != "customer.subscription.updated" || !strings.Contains(string(ev[len(ev)-1].Payload), `"status":"unpaid"`) {
		t.Fatalf("last event: %s", ev[len(ev)-1].Payload)
	}
	raw, ok := s.Object(sub)
	if !ok || !strings.Contains(string(raw), `"cancel_at_period_end":true`) {
		t.Fatalf("Object: %s", raw)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("CreateSubscription with unknown price did not panic")
			}
		}()
		s.CreateSubscription(cus, "price_nope", "active")
	}()
}

func TestListPaginationAndFilters(t *testing.T) {
	clk := newClock()
	s := start(t, stripefake.Options{Now: clk.Now})
	sc := sdk(t, s.URL(), "sk_test_x")
	cus := s.CreateCustomer("g@example.com")
	var ids []string // oldest first
	for i := 0; i < 25; i++ {
		status := "active"
		if i%5 == 0 {
			status = "canceled"
		}
		ids = append(ids, s.CreateSubscription(cus, "price_demo_monthly", status))
		if i%2 == 0 {
			clk.Advance(time.Second) // some share a timestamp: order must still be stable
		}
	}
	s.CreateSubscription(s.CreateCustomer("other@example.com"), "price_demo_monthly", "active")

	p := &stripe.SubscriptionListParams{Customer: stripe.String(cus), Status: stripe.String("all")}
	p.Limit = stripe.Int64(10)
	it := sc.Subscriptions.List(p)
	var got []string
	for it.Next() {
		got = append(got, it.Subscription().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 25 {
		t.Fatalf("listed %d", len(got))
	}
	for i, id := range got {
		if id != ids[24-i] {
			t.Fatalf("position %d: %s, want %s (newest first)", i, id, ids[24-i])
		}
	}
	if n := s.Calls("GET /v1/subscriptions"); n != 3 {
		t.Fatalf("pages fetched: %d", n)
	}

	dp := &stripe.SubscriptionListParams{Customer: stripe.String(cus)}
	dp.AddExpand("data.customer")
	it = sc.Subscriptions.List(dp)
	n := 0
	for it.Next() {
		if it.Subscription().Status == "canceled" {
			t.Fatal("default list includes canceled")
		}
		if it.Subscription().Customer.Email != "g@example.com" {
			t.Fatal("expand data.customer ignored")
		}
		n++
	}
	if it.Err() != nil || n != 20 {
		t.Fatalf("default list: %d %v", n, it.Err())
	}

	it = sc.Subscriptions.List(&stripe.SubscriptionListParams{Customer: stripe.String("cus_nope"), Status: stripe.String("all")})
	for it.Next() {
	}
	if se := stripeError(t, it.Err()); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing || se.Param != "customer" {
		t.Fatalf("unknown customer: %+v", se)
	}

	// Customer lookup by email, as the plugin may do.
	cit := sc.Customers.List(&stripe.CustomerListParams{Email: stripe.String("g@example.com")})
	var found []string
	for cit.Next() {
		found = append(found, cit.Customer().ID)
	}
	if cit.Err() != nil || len(found) != 1 || found[0] != cus {
		t.Fatalf("customers by email: %v %v", found, cit.Err())
	}
}

func TestOutageErrorsAndRateLimit(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	cus := s.CreateCustomer("h@example.com")
	list := func() error {
		it := sc.Subscriptions.List(&stripe.SubscriptionListParams{Customer: stripe.String(cus), Status: stripe.String("all")})
		for it.Next() {
		}
		return it.Err()
	}
	s.SetOutage(stripefake.OutageErrors)
	se := stripeError(t, list())
	if se.HTTPStatusCode != 500 || se.Type != stripe.ErrorTypeAPI || se.RequestID == "" {
		t.Fatalf("errors outage: %+v", se)
	}
	s.SetOutage(stripefake.OutageRateLimit)
	if se := stripeError(t, list()); se.HTTPStatusCode != 429 || se.Code != stripe.ErrorCodeRateLimit {
		t.Fatalf("rate limit: %+v", se)
	}
	s.SetOutage(stripefake.OutageNone)
	if err := list(); err != nil {
		t.Fatal(err)
	}
	if n := s.Calls("GET /v1/subscriptions"); n != 3 {
		t.Fatalf("calls: %d", n)
	}
}

func TestOutageHangEndsWithClientContext(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	s.SetOutage(stripefake.OutageHang)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := &stripe.CheckoutSessionParams{}
	p.Context = ctx
	begin := time.Now()
	_, err := sc.CheckoutSessions.Get("cs_test_x", p)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("hang outlived the context: %v", d)
	}
	if n := s.Calls("GET /v1/checkout/sessions/{id}"); n != 1 {
		t.Fatalf("calls: %d", n)
	}
}

func TestOutageHangEndsOnClose(t *testing.T) {
	s := stripefake.New(stripefake.Options{})
	entered := make(chan struct{})
	var once sync.Once
	// The Server also works mounted in an httptest.Server.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered) })
		s.ServeHTTP(w, r)
	}))
	defer ts.Close()
	defer s.Close()
	s.SetOutage(stripefake.OutageHang)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/subscriptions", nil)
		req.Header.Set("Authorization", "Bearer sk_test_x")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusServiceUnavailable {
				err = errors.New(res.Status)
			}
		}
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("request ended before reaching the fake: %v", err)
	}
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the hanging request")
	}
}

func TestLatency(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	p := &stripe.CustomerListParams{}
	p.Context = ctx
	it := sc.Customers.List(p)
	for it.Next() {
	}
	if !errors.Is(it.Err(), context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", it.Err())
	}
	s.SetLatency(time.Millisecond)
	it = sc.Customers.List(&stripe.CustomerListParams{})
	for it.Next() {
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
}

func TestAuthUnknownRoutesAndIdempotency(t *testing.T) {
	s := start(t, stripefake.Options{})
	do := func(method, path, key string) (int, map[string]any) {
		req, _ := http.NewRequest(method, s.URL()+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, m
	}
	if st, m := do("GET", "/v1/subscriptions", ""); st != 401 || m["error"].(map[string]any)["type"] != "invalid_request_error" {
		t.Fatalf("no key: %d %v", st, m)
	}
	_, err := sdk(t, s.URL(), "pk_test_x").Customers.Get("cus_x", nil)
	if se := stripeError(t, err); se.HTTPStatusCode != 401 {
		t.Fatalf("publishable key: %+v", se)
	}
	if st, m := do("GET", "/v1/charges/ch_123", "rk_test_x"); st != 404 || m["error"] == nil {
		t.Fatalf("unknown route: %d %v", st, m)
	}
	if n := s.Calls("GET /v1/charges/{id}"); n != 1 {
		t.Fatalf("unknown route count: %v", s.CallCounts())
	}

	sc := sdk(t, s.URL(), "sk_test_x")
	mk := func() string {
		p := &stripe.CheckoutSessionParams{
			Mode:       stripe.String("subscription"),
			LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_demo_monthly"), Quantity: stripe.Int64(1)}},
			SuccessURL: stripe.String("http://localhost/ok"),
			CancelURL:  stripe.String("http://localhost/no"),
		}
		p.SetIdempotencyKey("same-key")
		cs, err := sc.CheckoutSessions.New(p)
		if err != nil {
			t.Fatal(err)
		}
		return cs.ID
	}
	if a, b := mk(), mk(); a != b {
		t.Fatalf("idempotent replay created two sessions: %s %s", a, b)
	}
	if n := len(s.Sessions()); n != 1 {
		t.Fatalf("%d sessions", n)
	}
}

func TestSendEventCustomObjectAndIndex(t *testing.T) {
	s := start(t, stripefake.Options{APIVersion: "2023-10-16"})
	h := newHook(t, 0)
	s.AddWebhookEndpoint(h.srv.URL, "whsec_y")
	cus := s.CreateCustomer("i@example.com")
	obj, _ := s.Object(cus)
	if _, err := s.SendEvent("customer.updated", obj); err != nil {
		t.Fatal(err)
	}
	s.WaitDeliveries()
	h.mu.Lock()
	b, sig := h.bodies[0], h.headers[0].Get("Stripe-Signature")
	h.mu.Unlock()
	ev, err := webhook.ConstructEvent(b, sig, "whsec_y") // same version: strict check passes
	if err != nil {
		t.Fatal(err)
	}
	var c stripe.Customer
	if err := json.Unmarshal(ev.Data.Raw, &c); err != nil || c.ID != cus || c.Email != "i@example.com" {
		t.Fatalf("customer in event: %+v %v", c, err)
	}
	if st, page := get(t, s.URL()+"/"); st != 200 || !strings.Contains(page, stripefake.Banner) || !strings.Contains(page, "customer.updated") {
		t.Fatalf("index: %d\n%s", st, page)
	}
	// Sign matches what stripe-go computes.
	now := time.Now()
	hdr := stripefake.Sign([]byte(`{}`), "whsec_z", now)
	if err := webhook.ValidatePayload([]byte(`{}`), hdr, "whsec_z"); err != nil {
		t.Fatal(err)
	}
}

func TestFirstPaymentProcessing(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_123")
	cus := s.CreateCustomer("sepa@example.com")
	sub := s.CreateSubscription(cus, "price_demo_monthly", "active")
	if err := s.SetFirstPaymentProcessing(sub); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Events()); n != 0 {
		t.Fatalf("SetFirstPaymentProcessing sent %d events", n)
	}
	list := func(expand ...string) *stripe.Subscription {
		t.Helper()
		p := &stripe.SubscriptionListParams{Customer: stripe.String(cus), Status: stripe.String("all")}
		for _, e := range expand {
			p.AddExpand(e)
		}
		it := sc.Subscriptions.List(p)
		if !it.Next() {
			t.Fatalf("no subscription listed: %v", it.Err())
		}
		return it.Subscription()
	}
	got := list()
	if got.Status != stripe.SubscriptionStatusIncomplete || got.LatestInvoice == nil || got.LatestInvoice.Status != "" {
		t.Fatalf("unexpanded: status %s, latest_invoice %+v (want an id only)", got.Status, got.LatestInvoice)
	}
	// Expanding the PaymentIntent expands the invoice on the way, as Stripe does.
	got = list("data.latest_invoice.payment_intent")
	inv := got.LatestInvoice
	if inv == nil || inv.Status != stripe.InvoiceStatusOpen || inv.BillingReason != stripe.InvoiceBillingReasonSubscriptionCreate ||
		inv.PaymentIntent == nil || inv.PaymentIntent.Status != stripe.PaymentIntentStatusProcessing {
		t.Fatalf("expanded: latest_invoice %+v, payment_intent %+v", inv, inv.PaymentIntent)
	}
	if raw, ok := s.Object(inv.PaymentIntent.ID); !ok || !strings.Contains(string(raw), `"status":"processing"`) {
		t.Fatalf("Object(%s) = %s", inv.PaymentIntent.ID, raw)
	}

	// The bank refuses: still incomplete, the payment now needs a method.
	if err := s.SettleFirstPayment(sub, false); err != nil {
		t.Fatal(err)
	}
	got = list("data.latest_invoice.payment_intent")
	if got.Status != stripe.SubscriptionStatusIncomplete || got.LatestInvoice.PaymentIntent.Status != stripe.PaymentIntentStatusRequiresPaymentMethod {
		t.Fatalf("after a refused debit: %s, %s", got.Status, got.LatestInvoice.PaymentIntent.Status)
	}
	if err := s.SettleFirstPayment(sub, true); !errors.Is(err, stripefake.ErrInvalidState) {
		t.Fatalf("settling a payment no longer processing: %v", err)
	}

	// Another try that clears: active, with the events Stripe sends.
	if err := s.SetFirstPaymentProcessing(sub); err != nil {
		t.Fatal(err)
	}
	if err := s.SettleFirstPayment(sub, true); err != nil {
		t.Fatal(err)
	}
	got = list("data.latest_invoice.payment_intent")
	if got.Status != stripe.SubscriptionStatusActive || !got.LatestInvoice.Paid || got.LatestInvoice.PaymentIntent.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("after the money arrived: %s, paid %v, %s", got.Status, got.LatestInvoice.Paid, got.LatestInvoice.PaymentIntent.Status)
	}
	var types []string
	for _, ev := range s.Events() {
		types = append(types, ev.Type)
	}
	if want := "invoice.payment_failed invoice.paid customer.subscription.updated"; strings.Join(types, " ") != want {
		t.Fatalf("events: %v, want %s", types, want)
	}

	if err := s.SettleFirstPayment("sub_nope", true); !errors.Is(err, stripefake.ErrNotFound) {
		t.Fatalf("unknown subscription: %v", err)
	}
	if err := s.CancelSubscription(sub); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFirstPaymentProcessing(sub); !errors.Is(err, stripefake.ErrInvalidState) {
		t.Fatalf("processing on a canceled subscription: %v", err)
	}
}

// metadataKeys returns n keys k00, k01, … with value "v".
func metadataKeys(n int) map[string]string {
	md := make(map[string]string, n)
	for i := 0; i < n; i++ {
		md[fmt.Sprintf("k%02d", i)] = "v"
	}
	return md
}

func TestMetadataLimits(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	refused := func(t *testing.T, err error, msg string) {
		t.Helper()
		se := stripeError(t, err)
		if se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest || se.Param != "metadata" || se.Msg != msg {
			t.Fatalf("want 400 invalid_request_error on metadata %q, got %+v", msg, se)
		}
	}
	customers := func() int {
		it := sc.Customers.List(&stripe.CustomerListParams{})
		n := 0
		for it.Next() {
			n++
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return n
	}
	const tooMany = "Invalid metadata: metadata can have up to 50 keys, but the customer would have 51 keys."
	const longKey = "Invalid metadata: keys can be up to 40 characters long."
	const longValue = "Invalid metadata: values can be up to 500 characters long."

	// Create: 51 keys are refused and nothing is created.
	p := &stripe.CustomerParams{Email: stripe.String("m@example.com")}
	for k, v := range metadataKeys(51) {
		p.AddMetadata(k, v)
	}
	_, err := sc.Customers.New(p)
	refused(t, err, tooMany)
	if n := customers(); n != 0 || len(s.Events()) != 0 {
		t.Fatalf("a refused create left %d customers, %d events", n, len(s.Events()))
	}

	// Update: the limit counts the keys after the merge.
	full := newCustomer(t, sc, "m@example.com", metadataKeys(50))
	events := len(s.Events())
	up := &stripe.CustomerParams{Email: stripe.String("changed@example.com")}
	up.AddMetadata("k50", "v")
	_, err = sc.Customers.Update(full, up)
	refused(t, err, tooMany)
	if c, _ := s.Customer(full); c.Email != "m@example.com" || len(c.Metadata) != 50 || len(s.Events()) != events {
		t.Fatalf("a refused update changed the customer: %s, %d keys, %d events", c.Email, len(c.Metadata), len(s.Events())-events)
	}
	up = &stripe.CustomerParams{}
	up.AddMetadata("k00", "") // deleting one makes room for another in the same request
	up.AddMetadata("k50", "v")
	got, err := sc.Customers.Update(full, up)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Metadata["k00"]; ok || len(got.Metadata) != 50 || got.Metadata["k50"] != "v" {
		t.Fatalf("delete and add: %v", got.Metadata)
	}

	// Lengths count characters: 40 for a key, 500 for a value.
	id := newCustomer(t, sc, "n@example.com", map[string]string{"keep": "1"})
	for _, c := range []struct {
		key, value, msg string
	}{
		{strings.Repeat("k", 40), "v", ""},
		{strings.Repeat("é", 40), "v", ""},
		{strings.Repeat("k", 41), "v", longKey},
		{"value", strings.Repeat("é", 500), ""},
		{"value", strings.Repeat("v", 501), longValue},
		{strings.Repeat("k", 41), "", longKey}, // deleting does not excuse a key no customer can have
	} {
		before, _ := s.Customer(id)
		up := &stripe.CustomerParams{}
		up.AddMetadata(c.key, c.value)
		got, err := sc.Customers.Update(id, up)
		if c.msg == "" {
			if err != nil || got.Metadata[c.key] != c.value {
				t.Fatalf("%d-character key, %d-character value: %v", len([]rune(c.key)), len([]rune(c.value)), err)
			}
			continue
		}
		refused(t, err, c.msg)
		if after, _ := s.Customer(id); !maps.Equal(after.Metadata, before.Metadata) {
			t.Fatalf("a refused update changed the metadata: %v", after.Metadata)
		}
	}
	create := &stripe.CustomerParams{}
	create.AddMetadata("v", strings.Repeat("v", 501))
	_, err = sc.Customers.New(create)
	refused(t, err, longValue)

	// Checkout sessions and subscriptions take metadata under the same limits.
	cp := &stripe.CheckoutSessionParams{
		Mode:       stripe.String("subscription"),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String("price_demo_monthly"), Quantity: stripe.Int64(1)}},
		SuccessURL: stripe.String("http://localhost/ok"),
		CancelURL:  stripe.String("http://localhost/no"),
	}
	for k, v := range metadataKeys(51) {
		cp.AddMetadata(k, v)
	}
	_, err = sc.CheckoutSessions.New(cp)
	refused(t, err, "Invalid metadata: metadata can have up to 50 keys, but the checkout session would have 51 keys.")
	if n := len(s.Sessions()); n != 0 {
		t.Fatalf("a refused checkout created %d sessions", n)
	}

	sub := s.CreateSubscription(id, "price_demo_monthly", "active")
	events = len(s.Events())
	sp := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}
	sp.AddMetadata(strings.Repeat("k", 41), "v")
	_, err = sc.Subscriptions.Update(sub, sp)
	refused(t, err, longKey)
	if got, _ := s.Subscription(sub); got.CancelAtPeriodEnd || len(got.Metadata) != 0 || len(s.Events()) != events {
		t.Fatalf("a refused update changed the subscription: %+v", got)
	}
	sp = &stripe.SubscriptionParams{}
	sp.AddMetadata("a", "1")
	sp.AddMetadata("b", "2")
	if _, err := sc.Subscriptions.Update(sub, sp); err != nil {
		t.Fatal(err)
	}
	sp = &stripe.SubscriptionParams{}
	sp.AddMetadata("a", "")
	if got, err := sc.Subscriptions.Update(sub, sp); err != nil || len(got.Metadata) != 1 || got.Metadata["b"] != "2" {
		t.Fatalf("an empty value deletes a subscription's key: %v %v", got.Metadata, err)
	}
}

func TestPermissionDenied(t *testing.T) {
	s := start(t, stripefake.Options{})
	const key = "rk_test_51SecretPartOfTheKeyabcd"
	sc := sdk(t, s.URL(), key)
	id := s.CreateCustomer("p@example.com")
	s.SetPermissionDenied("POST /v1/customers/{id}", "rak_customer_write")

	update := func() (*stripe.Customer, error) {
		p := &stripe.CustomerParams{Email: stripe.String("changed@example.com")}
		p.SetIdempotencyKey("perm-1")
		return sc.Customers.Update(id, p)
	}
	_, err := update()
	se := stripeError(t, err)
	want := "The provided key 'rk_test_" + strings.Repeat("*", len(key)-len("rk_test_abcd")) + "abcd' does not have the required permissions for this endpoint " +
		"on account 'acct_stripefake'. Having the 'rak_customer_write' permission would allow this request to continue."
	if se.HTTPStatusCode != http.StatusForbidden || se.Type != stripe.ErrorTypeInvalidRequest || se.Msg != want {
		t.Fatalf("got %+v\nwant message %s", se, want)
	}
	if strings.Contains(se.Msg, "SecretPartOfTheKey") {
		t.Fatal("the message shows the key")
	}
	if c, _ := s.Customer(id); c.Email != "p@example.com" || len(s.Events()) != 0 {
		t.Fatalf("a refused update changed the customer: %+v", c)
	}
	if n := s.Calls("POST /v1/customers/{id}"); n != 1 {
		t.Fatalf("the refused call was not counted: %v", s.CallCounts())
	}
	// Other calls go through.
	if _, err := sc.Customers.Get(id, nil); err != nil {
		t.Fatal(err)
	}

	// The body has the shape of Stripe's: a type and a message, no code or param.
	req, _ := http.NewRequest("POST", s.URL()+"/v1/customers/"+id, strings.NewReader("email=x%40example.com"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer sk_test_ab")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Error map[string]string `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden || len(raw.Error) != 2 || raw.Error["type"] != "invalid_request_error" ||
		!strings.HasPrefix(raw.Error["message"], "The provided key 'sk_test_**' does not") {
		t.Fatalf("raw: %d %v", res.StatusCode, raw.Error)
	}

	// Without the rule the request passes; the refusal was not kept for replay.
	s.SetPermissionDenied("POST /v1/customers/{id}", "")
	if c, err := update(); err != nil || c.Email != "changed@example.com" {
		t.Fatalf("after the rule was removed: %v %v", c, err)
	}
}

func TestListExpandsCustomerWithMetadata(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	cus := newCustomer(t, sc, "e@example.com", map[string]string{"user": "u7"})
	subs := map[string]bool{
		s.CreateSubscription(cus, "price_demo_monthly", "active"):   true,
		s.CreateSubscription(cus, "price_demo_monthly", "canceled"): true,
	}
	params := &stripe.SubscriptionListParams{Customer: stripe.String(cus), Status: stripe.String("all")}
	params.AddExpand("data.customer")
	it := sc.Subscriptions.List(params)
	n := 0
	for it.Next() {
		sub := it.Subscription()
		if !subs[sub.ID] || sub.Customer == nil || sub.Customer.ID != cus || sub.Customer.Email != "e@example.com" ||
			sub.Customer.Metadata["user"] != "u7" {
			t.Fatalf("subscription %s, customer %+v", sub.ID, sub.Customer)
		}
		n++
	}
	if it.Err() != nil || n != 2 {
		t.Fatalf("listed %d: %v", n, it.Err())
	}
	// Unexpanded, the customer is an id.
	it = sc.Subscriptions.List(&stripe.SubscriptionListParams{Customer: stripe.String(cus)})
	if !it.Next() || it.Subscription().Customer.ID != cus || it.Subscription().Customer.Email != "" {
		t.Fatalf("unexpanded: %+v %v", it.Subscription(), it.Err())
	}
}
