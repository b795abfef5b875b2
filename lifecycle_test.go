package paywall

import (
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// TestReloadsLeaveNoConnections: a config reload provisions the new handler
// before it cleans up the old one. After 50 reloads, each new handler
// having read one customer from Stripe, only the connection of the handler
// still in service stays open, not one per reload.
func TestReloadsLeaveNoConnections(t *testing.T) {
	const reloads = 50
	fake := stripefake.New(stripefake.Options{})
	if err := fake.Start(); err != nil {
		t.Fatalf("fake Stripe: %v", err)
	}
	t.Cleanup(fake.Close)

	var old *Handler
	for i := range reloads {
		h := provisionHandler(t, fake.URL())
		// A customer of its own, so that the shared cache does not
		// answer for the new handler: it calls Stripe.
		cus := fake.CreateCustomer("")
		fake.CreateSubscription(cus, testPrice, "active")
		r, _ := gateRequest(cookieHeader(t, h, cus))
		var p passed
		if err := h.ServeHTTP(newDiscard(), r, &p); err != nil || p.n.Load() != 1 {
			t.Fatalf("reload %d: the subscriber was refused (%v)", i, err)
		}
		if n := fake.Calls("GET /v1/subscriptions"); n != i+1 {
			t.Fatalf("after reload %d, %d Stripe reads, want %d", i, n, i+1)
		}
		if old != nil {
			if err := old.Cleanup(); err != nil {
				t.Fatalf("reload %d: Cleanup: %v", i, err)
			}
		}
		old = h
	}
	t.Cleanup(func() { _ = old.Cleanup() })

	// The fake sees a client's close a moment after it happens: poll the
	// count until only the connection of the handler in service is left,
	// or the deadline; a straggler is tolerated.
	const settled, most = 1, 2
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	open := fake.OpenConns()
wait:
	for open > settled {
		select {
		case <-poll.C:
			open = fake.OpenConns()
		case <-deadline:
			break wait
		}
	}
	if open > most {
		t.Fatalf("after %d reloads, %d connections stay open to Stripe, want at most %d", reloads, open, most)
	}
	t.Logf("after %d reloads, %d connection(s) open to Stripe", reloads, open)
}
