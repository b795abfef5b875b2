package paywall

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stripe/stripe-go/v76"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// A failed Stripe call is logged once, where it is handled: during an
// outage, once a minute for every visitor it fails; a refused request once
// a minute too, with Stripe's request ID (Caddy logs a handler's error only
// at debug level on a site with handle_errors).
func TestAFailedStripeCallIsLoggedOnce(t *testing.T) {
	w := newWorld(t)
	core, logs := observer.New(zap.DebugLevel)
	w.h.logger = zap.New(core)
	var browsers []*http.Client
	for i := 0; i < 8; i++ { // 8 × outageBackoff: within one minute
		_, _, c := w.subscriber("active")
		browsers = append(browsers, c)
	}
	w.fake.SetOutage(stripefake.OutageErrors)
	for _, c := range browsers {
		if resp := w.get(c, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a payer not cached, during an outage: %d", resp.StatusCode)
		}
		w.clock.Advance(outageBackoff) // each one asks Stripe
	}
	var lines []string
	for _, e := range logs.All() {
		if e.Level >= zap.WarnLevel {
			lines = append(lines, e.Message)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "stripe call failed") {
		t.Errorf("8 failed reads in a minute logged %d lines at warn or above, want 1: %q", len(lines), lines)
	}
	if e := logs.FilterMessageSnippet("stripe call failed").All(); len(e) == 1 && !strings.Contains(e[0].ContextMap()["error"].(string), "stripe answered 5") {
		t.Errorf("the line lacks what Stripe answered: %v", e[0].ContextMap())
	}
}

func TestARefusedStripeRequestIsLoggedWithTheRequestID(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Prices = []string{"price_does_not_exist"} })
	core, logs := observer.New(zap.DebugLevel)
	w.h.logger = zap.New(core)
	resp := w.get(w.browser(), "/paywall/checkout?return=/premium/a")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("checkout of a price Stripe does not know: %d", resp.StatusCode)
	}
	if e := logs.FilterMessageSnippet("stripe refused a request").All(); len(e) != 1 || !strings.Contains(e[0].ContextMap()["error"].(string), "request ") {
		t.Errorf("a refused request is logged once, with Stripe's request ID: %v", logs.All())
	}
	// What Caddy logs: the handler's error.
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/paywall/checkout?return=/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	err := w.h.ServeHTTP(httptest.NewRecorder(), r, nil)
	if err == nil || !strings.Contains(err.Error(), "stripe answered 400") || !strings.Contains(err.Error(), "request ") {
		t.Errorf("the 502's error: %v", err)
	}
}

// A Stripe error's text never carries Stripe's message, which can quote part
// of the key ("Invalid API Key provided: sk_test_****1234"), nor the URL of
// a network error, which can carry a customer ID.
func TestStripeErrorsNeverQuoteStripesMessage(t *testing.T) {
	c := newStripeClient("sk_test_x", "", time.Second)
	err := c.classify("list subscriptions", &stripe.Error{HTTPStatusCode: 401, Type: stripe.ErrorTypeInvalidRequest,
		Msg: "Invalid API Key provided: sk_test_****1234", RequestID: "req_1"})
	if strings.Contains(err.Error(), "1234") || !strings.Contains(err.Error(), "req_1") || !errors.Is(err, errStripeUnavailable) {
		t.Errorf("401: %v", err)
	}
	err = c.classify("list subscriptions", &url.Error{Op: "Get", URL: "https://api.stripe.com/v1/subscriptions?customer=cus_Secret1", Err: errors.New("connection refused")})
	if strings.Contains(err.Error(), "cus_Secret1") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("network: %v", err)
	}
}
