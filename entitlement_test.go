package paywall

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestEntitlement(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	h := &Handler{prices: []string{"price_gold"}, products: []string{"prod_silver"}, GracePeriod: caddy.Duration(72 * time.Hour)}
	gold := []priceRef{{Price: "price_gold", Product: "prod_gold"}}
	silver := []priceRef{{Price: "price_other", Product: "prod_silver"}}
	other := []priceRef{{Price: "price_other", Product: "prod_other"}}
	sub := func(status string, items []priceRef) subscriptionState {
		return subscriptionState{Status: status, Items: items, PeriodStart: t0.Unix()}
	}
	processing := func(items []priceRef) subscriptionState {
		s := sub("incomplete", items)
		s.FirstPaymentProcessing = true
		return s
	}

	for _, tc := range []struct {
		name   string
		subs   []subscriptionState
		at     time.Time
		ok     bool
		reason string
	}{
		{"none", nil, t0, false, reasonNoSubscription},
		{"active price", []subscriptionState{sub("active", gold)}, t0, true, reasonActive},
		{"active by product", []subscriptionState{sub("active", silver)}, t0, true, reasonActive},
		{"active other price", []subscriptionState{sub("active", other)}, t0, false, reasonNoSubscription},
		{"trialing", []subscriptionState{sub("trialing", gold)}, t0, true, reasonTrialing},
		{"cancel at period end still pays", []subscriptionState{{Status: "active", CancelAtPeriodEnd: true, Items: gold}}, t0, true, reasonActive},
		{"past_due within grace", []subscriptionState{sub("past_due", gold)}, t0.Add(71 * time.Hour), true, reasonPastDueGrace},
		{"past_due after grace", []subscriptionState{sub("past_due", gold)}, t0.Add(73 * time.Hour), false, reasonPaymentFailed},
		{"unpaid", []subscriptionState{sub("unpaid", gold)}, t0, false, reasonPaymentFailed},
		{"incomplete", []subscriptionState{sub("incomplete", gold)}, t0, false, reasonPaymentFailed},
		{"incomplete_expired", []subscriptionState{sub("incomplete_expired", gold)}, t0, false, reasonEnded},
		{"canceled", []subscriptionState{sub("canceled", gold)}, t0, false, reasonEnded},
		{"paused after trial", []subscriptionState{sub("paused", gold)}, t0, false, reasonTrialEnded},
		{"canceled at trial end", []subscriptionState{{Status: "canceled", TrialEnd: t0.Unix(), EndedAt: t0.Unix(), Items: gold}}, t0, false, reasonTrialEnded},
		{"canceled long after trial", []subscriptionState{{Status: "canceled", TrialEnd: t0.Unix(), EndedAt: t0.Add(60 * 24 * time.Hour).Unix(), Items: gold}}, t0, false, reasonEnded},
		{"old canceled, new active", []subscriptionState{sub("canceled", gold), sub("active", gold)}, t0, true, reasonActive},
		{"canceled and past_due: payment failed wins", []subscriptionState{sub("canceled", gold), sub("past_due", gold)}, t0.Add(100 * time.Hour), false, reasonPaymentFailed},
		{"unknown future status", []subscriptionState{sub("frozen", gold)}, t0, false, reasonEnded},
		{"incomplete, first payment processing", []subscriptionState{processing(gold)}, t0, false, reasonPaymentProcessing},
		{"processing, other price", []subscriptionState{processing(other)}, t0, false, reasonNoSubscription},
		{"processing beats ended", []subscriptionState{sub("canceled", gold), processing(gold)}, t0, false, reasonPaymentProcessing},
		{"processing beats trial ended", []subscriptionState{processing(gold), sub("paused", gold)}, t0, false, reasonPaymentProcessing},
		{"a failed payment beats processing", []subscriptionState{processing(gold), sub("incomplete", gold)}, t0, false, reasonPaymentFailed},
		{"a failed renewal beats processing", []subscriptionState{sub("past_due", gold), processing(gold)}, t0.Add(100 * time.Hour), false, reasonPaymentFailed},
		{"active beats processing", []subscriptionState{processing(gold), sub("active", gold)}, t0, true, reasonActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := h.entitlement(tc.subs, tc.at)
			if ok != tc.ok || reason != tc.reason {
				t.Fatalf("entitlement = %v, %q; want %v, %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}

	noGrace := &Handler{prices: []string{"price_gold"}}
	if ok, reason := noGrace.entitlement([]subscriptionState{sub("past_due", gold)}, t0); ok || reason != reasonPaymentFailed {
		t.Fatalf("past_due without grace_period = %v, %q; want refused for payment_failed", ok, reason)
	}
}
