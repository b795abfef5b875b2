package paywall

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// identityMockRequest is one request the stripeClient sent, as it left the
// client: its method, path, query, headers and form body.
type identityMockRequest struct {
	method string
	path   string
	query  url.Values
	header http.Header
	form   url.Values
}

// identityMockRecorder sits between the stripeClient and stripe-mock on
// loopback: it notes every request and passes it on unchanged, so that a
// test sees exactly what was sent and stripe-mock still judges it against
// Stripe's OpenAPI spec.
type identityMockRecorder struct {
	mu   sync.Mutex
	reqs []identityMockRequest
}

func newIdentityMockRecorder(t *testing.T, target string) (*identityMockRecorder, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &identityMockRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading a request body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, err := url.ParseQuery(string(body))
		if err != nil {
			t.Errorf("a request body is not a form: %v", err)
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, identityMockRequest{
			method: r.Method,
			path:   r.URL.Path,
			query:  r.URL.Query(),
			header: r.Header.Clone(),
			form:   form,
		})
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// take returns the requests recorded since the last take and forgets them.
func (rec *identityMockRecorder) take() []identityMockRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	return out
}

// only returns the single request recorded since the last take, failing the
// test when there was not exactly one (a retry would show up here too).
func (rec *identityMockRecorder) only(t *testing.T, method, path string) identityMockRequest {
	t.Helper()
	reqs := rec.take()
	if len(reqs) != 1 {
		var seen []string
		for _, r := range reqs {
			seen = append(seen, r.method+" "+r.path)
		}
		t.Fatalf("requests sent: %v, want exactly one %s %s", seen, method, path)
	}
	if reqs[0].method != method || reqs[0].path != path {
		t.Fatalf("request sent: %s %s, want %s %s", reqs[0].method, reqs[0].path, method, path)
	}
	return reqs[0]
}

// TestStripeClientIdentityCallsAgainstStripeMock sends the calls that the
// identity modes add (customer lookup by email, customer search by
// metadata, customer creation, and a Checkout prefilled with an email) to
// stripe-mock, which refuses with 400 anything Stripe's API would refuse,
// and checks the exact shape of each request on the way.
func TestStripeClientIdentityCallsAgainstStripeMock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts stripe-mock")
	}
	rec, base := newIdentityMockRecorder(t, startStripeMock(t))
	c := newStripeClient(stripeMockKey, base, 10*time.Second)
	ctx := context.Background()

	t.Run("customersByEmail", func(t *testing.T) {
		rec.take()
		found, err := c.customersByEmail(ctx, "ann+news@example.com", loginCandidates)
		if err != nil {
			t.Fatalf("customersByEmail: %v", err)
		}
		req := rec.only(t, http.MethodGet, "/v1/customers")
		want := url.Values{"email": {"ann+news@example.com"}, "limit": {"10"}}
		if req.query.Encode() != want.Encode() {
			t.Errorf("query %q, want exactly %q", req.query.Encode(), want.Encode())
		}
		if len(found) == 0 {
			t.Fatal("stripe-mock's customer list fixture holds a customer; got none")
		}
		for _, id := range found {
			if !strings.HasPrefix(id, "cus_") {
				t.Errorf("customer ID %q does not start with cus_", id)
			}
		}
	})

	t.Run("customersByMetadata escapes the value", func(t *testing.T) {
		for _, tc := range []struct{ value, query string }{
			{"u-42", `metadata['user_id']:'u-42'`},
			{`a'b`, `metadata['user_id']:'a\'b'`},
			{`c\d`, `metadata['user_id']:'c\\d'`},
			// A value that tries to end the quote and add a clause of its
			// own stays one quoted value.
			{`x' OR email:'y`, `metadata['user_id']:'x\' OR email:\'y'`},
			{`z\'`, `metadata['user_id']:'z\\\''`},
		} {
			rec.take()
			found, err := c.customersByMetadata(ctx, "user_id", tc.value, loginCandidates)
			if err != nil {
				t.Errorf("customersByMetadata(%q): %v", tc.value, err)
				continue
			}
			req := rec.only(t, http.MethodGet, "/v1/customers/search")
			if got := req.query.Get("query"); got != tc.query {
				t.Errorf("value %q: query %s, want %s", tc.value, got, tc.query)
			}
			if got := req.query.Get("limit"); got != "10" {
				t.Errorf("value %q: limit %q, want 10", tc.value, got)
			}
			if len(req.query) != 2 {
				t.Errorf("value %q: parameters %v, want only query and limit", tc.value, req.query)
			}
			for _, id := range found {
				if !strings.HasPrefix(id, "cus_") {
					t.Errorf("customer ID %q does not start with cus_", id)
				}
			}
		}
	})

	t.Run("createCustomer", func(t *testing.T) {
		rec.take()
		id, err := c.createCustomer(ctx, "user_id", `a'b`, "paywall-customer-0123456789abcdef")
		if err != nil {
			t.Fatalf("createCustomer: %v", err)
		}
		if !strings.HasPrefix(id, "cus_") {
			t.Errorf("customer ID %q does not start with cus_", id)
		}
		req := rec.only(t, http.MethodPost, "/v1/customers")
		want := url.Values{"metadata[user_id]": {`a'b`}}
		if req.form.Encode() != want.Encode() {
			t.Errorf("form %q, want exactly %q", req.form.Encode(), want.Encode())
		}
		if got := req.header.Get("Idempotency-Key"); got != "paywall-customer-0123456789abcdef" {
			t.Errorf("Idempotency-Key %q, want the key given", got)
		}
	})

	t.Run("stripe-mock checks the parameters of a GET", func(t *testing.T) {
		// Without this, the passes of the lookups above would prove
		// nothing about their query strings.
		q := url.Values{"query": {`metadata['user_id']:'u-42'`}, "not_a_stripe_parameter": {"1"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/customers/search?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+stripeMockKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("stripe-mock answered %s to an unknown search parameter, want 400", res.Status)
		}
	})

	checkoutBase := checkoutRequest{
		Price:             "price_stripemock",
		SuccessURL:        "http://127.0.0.1:8080/paywall/success?return=%2Fpremium%2Fx&session_id={CHECKOUT_SESSION_ID}",
		CancelURL:         "http://127.0.0.1:8080/premium/x",
		ClientReferenceID: newNonce(),
		ExpiresAt:         time.Now().Add(checkoutLifetime),
	}

	t.Run("createCheckout with an email and no customer", func(t *testing.T) {
		rec.take()
		req := checkoutBase
		req.CustomerEmail = "ann@example.com"
		sess, err := c.createCheckout(ctx, req)
		if err != nil {
			t.Fatalf("createCheckout: %v", err)
		}
		if !strings.HasPrefix(sess.ID, "cs_") {
			t.Errorf("session ID %q does not start with cs_", sess.ID)
		}
		sent := rec.only(t, http.MethodPost, "/v1/checkout/sessions")
		if got := sent.form.Get("customer_email"); got != "ann@example.com" {
			t.Errorf("customer_email %q, want ann@example.com", got)
		}
		if _, ok := sent.form["customer"]; ok {
			t.Errorf("customer sent with an empty Customer: %v", sent.form)
		}
		if sent.header.Get("Idempotency-Key") == "" {
			t.Error("a checkout POST without an Idempotency-Key (a retry could make a second session)")
		}
	})

	t.Run("createCheckout with a customer sends no email", func(t *testing.T) {
		// Stripe refuses customer and customer_email together; a known
		// customer wins.
		rec.take()
		req := checkoutBase
		req.Customer = "cus_stripemock"
		req.CustomerEmail = "ann@example.com"
		if _, err := c.createCheckout(ctx, req); err != nil {
			t.Fatalf("createCheckout: %v", err)
		}
		sent := rec.only(t, http.MethodPost, "/v1/checkout/sessions")
		if got := sent.form.Get("customer"); got != "cus_stripemock" {
			t.Errorf("customer %q, want cus_stripemock", got)
		}
		if _, ok := sent.form["customer_email"]; ok {
			t.Errorf("customer_email sent together with customer: %v", sent.form)
		}
	})
}

// TestSearchQuoteRoundTripsThroughTheFake: what customersByMetadata sends
// finds, in the fake's reading of Stripe's search language, the customer
// createCustomer made with the very same awkward value, and no other. The
// fake is not Stripe; this guards the pair against drifting apart, while
// the stripe-mock test above pins the exact text sent.
func TestSearchQuoteRoundTripsThroughTheFake(t *testing.T) {
	fake := stripefake.New(stripefake.Options{Logf: t.Logf})
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	c := newStripeClient("sk_test_roundtrip0123456789", fake.URL(), 10*time.Second)
	ctx := context.Background()
	values := []string{`plain`, `a'b`, `c\d`, `x' OR email:'y`, `z\'`, `\`}
	made := map[string]string{}
	for i, v := range values {
		id, err := c.createCustomer(ctx, "user_id", v, "roundtrip-"+string(rune('a'+i)))
		if err != nil {
			t.Fatalf("createCustomer(%q): %v", v, err)
		}
		made[v] = id
	}
	for _, v := range values {
		found, err := c.customersByMetadata(ctx, "user_id", v, loginCandidates)
		if err != nil {
			t.Errorf("customersByMetadata(%q): %v", v, err)
			continue
		}
		if len(found) != 1 || found[0] != made[v] {
			t.Errorf("customersByMetadata(%q) = %v, want only %s", v, found, made[v])
		}
	}
}
