package paywall

import (
	"context"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// TestAFirstPaymentProcessingWaitsThenIsLetIn: a subscriber whose first
// payment is a bank debit still on its way is refused (identity is not
// entitlement) with words that say to wait and not to pay again, in their
// language, and nothing to pay with; once the money arrives, the webhook
// lets them in at once.
func TestAFirstPaymentProcessingWaitsThenIsLetIn(t *testing.T) {
	w := newWorld(t) // cache_ttl 5m: only the webhook can make the change visible
	_, sub, c := w.subscriber("active")
	if err := w.fake.SetFirstPaymentProcessing(sub); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ acceptLanguage, lang string }{
		{"en-GB,en;q=0.9", "en"},
		{"id-ID,id;q=0.9,en;q=0.5", "id"},
	} {
		resp := w.get(c, "/premium/a", "Accept", acceptBrowser, "Accept-Language", tc.acceptLanguage)
		body := bodyOf(resp)
		if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, `data-reason="payment_processing"`) {
			t.Fatalf("%s: status %d, want 402 for payment_processing:\n%s", tc.lang, resp.StatusCode, body)
		}
		strs := pageStrings[tc.lang]
		for _, k := range []string{"title_payment_processing", "detail_payment_processing", "processing_note"} {
			if !strings.Contains(body, template.HTMLEscapeString(strs[k])) {
				t.Errorf("%s: the page lacks %s %q", tc.lang, k, strs[k])
			}
		}
		if element(body, "subscribe") != "" || element(body, "update-payment") != "" || strings.Contains(body, "/paywall/checkout") {
			t.Errorf("%s: the page offers to pay:\n%s", tc.lang, body)
		}
		if link := resp.Header.Get("Link"); link != "" {
			t.Errorf("%s: Link %q", tc.lang, link)
		}
	}
	if !strings.Contains(pageStrings["en"]["detail_payment_processing"], "Do not pay again.") {
		t.Errorf("the English words do not say not to pay again")
	}

	status, p := w.problem(c, "/premium/a")
	if status != http.StatusPaymentRequired || p["reason"] != reasonPaymentProcessing || p["type"] != problemTypeBase+reasonPaymentProcessing {
		t.Fatalf("problem: %d %v", status, p)
	}
	if _, ok := p["checkout_url"]; ok {
		t.Errorf("the problem document offers a checkout: %v", p)
	}

	if err := w.fake.SettleFirstPayment(sub, true); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	for _, d := range w.fake.Deliveries() {
		if d.StatusCode != http.StatusOK {
			t.Errorf("delivery %+v was not accepted", d)
		}
	}
	if resp := w.get(c, "/premium/a"); resp.StatusCode != http.StatusOK || bodyOf(resp) != "premium content" {
		t.Fatalf("after the payment cleared: %d", resp.StatusCode)
	}
	if got := w.placeholder("http.paywall.reason"); got != reasonActive {
		t.Errorf("reason %v, want %s", got, reasonActive)
	}
}

// TestAFirstPaymentTheBankRefusedIsAPaymentFailed: once the bank refuses
// the debit, the subscription is still incomplete, and the visitor is told
// the payment failed and how to fix it, no longer to wait.
func TestAFirstPaymentTheBankRefusedIsAPaymentFailed(t *testing.T) {
	w := newWorld(t)
	_, sub, c := w.subscriber("active")
	if err := w.fake.SetFirstPaymentProcessing(sub); err != nil {
		t.Fatal(err)
	}
	if status, p := w.problem(c, "/premium/a"); status != http.StatusPaymentRequired || p["reason"] != reasonPaymentProcessing {
		t.Fatalf("while processing: %d %v", status, p)
	}
	if err := w.fake.SettleFirstPayment(sub, false); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	status, p := w.problem(c, "/premium/a")
	if status != http.StatusPaymentRequired || p["reason"] != reasonPaymentFailed || p["portal_url"] == nil {
		t.Fatalf("after the bank refused: %d %v", status, p)
	}
}

// TestInvoicePaymentIntentPinnedToAnAPIVersion: firstPaymentProcessing
// expands an invoice's payment_intent, which Stripe removed in API version
// 2025-03-31.basil: from there on the read fails, and every first payment
// still on its way would read as payment_failed again. stripe-go pins the
// version it sends; an upgrade past it must find the payment another way.
func TestInvoicePaymentIntentPinnedToAnAPIVersion(t *testing.T) {
	if stripe.APIVersion >= "2025-03-31" {
		t.Fatalf("stripe-go now pins API version %s, without Invoice.payment_intent: in stripeClient.firstPaymentProcessing, "+
			"find a first payment that is processing another way (the invoice's payments)", stripe.APIVersion)
	}
}

// TestFirstPaymentLookupAgainstStripeMock sends the reads to stripe-mock
// through a recorder: the subscriptions list asks for no expansion (so that
// a restricted key needs only the Subscriptions permission), and the read
// of an incomplete subscription's invoice expands payment_intent in
// stripe-go's form encoding, which stripe-mock accepts.
func TestFirstPaymentLookupAgainstStripeMock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts stripe-mock")
	}
	base := startStripeMock(t)
	var mu sync.Mutex
	var seen []*http.Request
	var statuses []int
	recorder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		mu.Lock()
		seen = append(seen, r)
		statuses = append(statuses, res.StatusCode)
		mu.Unlock()
		w.Header().Set("Content-Type", res.Header.Get("Content-Type"))
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(recorder.Close)

	c := newStripeClient(stripeMockKey, recorder.URL, 10*time.Second)
	if _, err := c.subscriptions(context.Background(), "cus_stripemock", false); err != nil {
		t.Fatalf("subscriptions: %v", err)
	}
	c.firstPaymentProcessing(context.Background(), "in_stripemock")
	mu.Lock()
	defer mu.Unlock()
	var list, inv *http.Request
	for i, r := range seen {
		if statuses[i] != http.StatusOK {
			t.Errorf("stripe-mock answered %d to %s %s", statuses[i], r.Method, r.URL)
		}
		switch {
		case r.URL.Path == "/v1/subscriptions":
			list = r
		case r.URL.Path == "/v1/invoices/in_stripemock":
			inv = r
		}
	}
	if list == nil || inv == nil {
		t.Fatalf("requests %v, want the list and the invoice", seen)
	}
	for k := range list.URL.Query() {
		if strings.HasPrefix(k, "expand") {
			t.Errorf("the subscriptions list expands %s: a restricted key would need more than Subscriptions", k)
		}
	}
	if got := inv.URL.Query().Get("expand[0]"); got != "payment_intent" {
		t.Errorf("the invoice read expands %q, want payment_intent", got)
	}
}

// A visitor whose payment is on its way is never sold a second
// subscription: checkout (an old tab, a bookmark) sends them back to the
// page, and the refusal names no checkout, on the page or in its headers.
func TestAFirstPaymentProcessingIsNotSoldAgain(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Refusals = refusalsHandleErrors })
	_, sub, c := w.subscriber("incomplete")
	if err := w.fake.SetFirstPaymentProcessing(sub); err != nil {
		t.Fatal(err)
	}
	resp := w.get(c, "/premium/a")
	if resp.StatusCode != http.StatusPaymentRequired || resp.Header.Get("Link") != "" {
		t.Errorf("refusal through handle_errors: %d Link %q", resp.StatusCode, resp.Header.Get("Link"))
	}
	resp = w.get(c, "/paywall/checkout?return=/premium/a")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" {
		t.Errorf("checkout: %d to %q, want back to the page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := len(w.fake.Sessions()); n != 0 {
		t.Errorf("%d checkout sessions for a payment on its way", n)
	}
}

// A restricted key without the Invoices permission (or an invoice read that
// fails) costs nothing but the processing words: the subscriptions read
// succeeds, and the incomplete subscription counts as a failed payment, as
// it did before payment_processing; only incomplete subscriptions ask.
func TestAnInvoiceReadThatFailsLocksNobodyOut(t *testing.T) {
	w := newWorld(t)
	_, sub, c := w.subscriber("active")
	if err := w.fake.SetFirstPaymentProcessing(sub); err != nil {
		t.Fatal(err)
	}
	w.fake.SetOutageFor("GET /v1/invoices/{id}", stripefake.OutageErrors)
	resp := w.get(c, "/premium/a")
	if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(bodyOf(resp), `data-reason="payment_failed"`) {
		t.Fatalf("with the invoice read failing: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
	_, _, paid := w.subscriber("active")
	w.fake.ResetCalls()
	if resp := w.get(paid, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a paying subscriber: %d", resp.StatusCode)
	}
	if n := w.fake.Calls("GET /v1/invoices/{id}"); n != 0 {
		t.Errorf("%d invoice reads for an active subscription, want none", n)
	}
}
