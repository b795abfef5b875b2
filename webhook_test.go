package paywall

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestAReplayedWebhookIsAppliedOnce(t *testing.T) {
	w := newWorld(t)
	cus, sub, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	body, _ := json.Marshal(map[string]any{"id": "evt_replayed", "type": "customer.subscription.updated",
		"data": map[string]any{"object": map[string]any{"id": sub, "object": "subscription", "customer": cus}}})
	sig := w.signed(body, w.clock.Now(), hookSecret)
	w.fake.ResetCalls()
	for i := 0; i < 20; i++ {
		if got := w.postWebhook(body, sig); got != 200 {
			t.Fatalf("delivery %d: %d", i+1, got)
		}
	}
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Errorf("one event replayed 20 times made %d Stripe reads, want 1", n)
	}
	// Another event about the same customer is applied.
	other, _ := json.Marshal(map[string]any{"id": "evt_next", "type": "customer.subscription.updated",
		"data": map[string]any{"object": map[string]any{"id": sub, "object": "subscription", "customer": cus}}})
	if got := w.postWebhook(other, w.signed(other, w.clock.Now(), hookSecret)); got != 200 {
		t.Fatal(got)
	}
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 2 {
		t.Errorf("a new event made %d reads in all, want 2", n)
	}
}

func TestAFloodOfUnsignedWebhooksLogsOneLineAMinute(t *testing.T) {
	w := newWorld(t)
	core, logs := observer.New(zapcore.InfoLevel)
	w.h.logger = zap.New(core)
	body := []byte(`{"id":"evt_x","type":"invoice.paid"}`)
	for i := 0; i < 50; i++ {
		if got := w.postWebhook(body, ""); got != 400 {
			t.Fatalf("unsigned: %d", got)
		}
	}
	if n := logs.FilterMessage("webhook rejected").Len(); n != 1 {
		t.Fatalf("50 unsigned webhooks in a minute: %d log lines, want 1", n)
	}
	w.clock.Advance(time.Minute)
	w.postWebhook(body, "")
	lines := logs.FilterMessage("webhook rejected").All()
	if len(lines) != 2 || fmt.Sprint(lines[1].ContextMap()["rejected_since_last_line"]) != "49" {
		t.Fatalf("a minute later: %d lines, the last %v; want 2, saying 49 were left out", len(lines), lines[len(lines)-1].ContextMap())
	}
}

func TestEventSetForgetsTheOldestFirst(t *testing.T) {
	var s eventSet
	t0 := int64(1e18)
	for i := 0; i < seenEventsCap+10; i++ {
		if !s.first(fmt.Sprintf("evt_%d", i), t0) {
			t.Fatalf("event %d taken for a replay", i)
		}
	}
	if len(s.until) != seenEventsCap {
		t.Fatalf("%d events remembered, want the cap %d", len(s.until), seenEventsCap)
	}
	if !s.first("evt_0", t0) {
		t.Error("the oldest event is still remembered beyond the cap")
	}
	if s.first(fmt.Sprintf("evt_%d", seenEventsCap+9), t0) {
		t.Error("the newest event was forgotten")
	}
	if !s.first("evt_500", t0+int64(seenEventsFor)) {
		t.Error("an event is remembered beyond seenEventsFor")
	}
}
