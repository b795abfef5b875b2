package paywall

import "testing"

func TestAnOlderReadNeverReplacesANewerOne(t *testing.T) {
	a := newAccount(10)
	newer := []subscriptionState{{Status: "active"}}
	older := []subscriptionState{{Status: "canceled"}}
	a.store("cus_X", facts{subs: newer}, 2, 5, fromStripe)
	a.store("cus_X", facts{subs: older}, 3, 4, fromStripe) // began before the stored read, finished after it
	if got := a.get("cus_X"); got.subs[0].Status != "active" || got.stale {
		t.Fatalf("stored %+v, want the newer read kept", got)
	}
}

func TestAnUnknownCustomersReadDuringAnInvalidationIsStale(t *testing.T) {
	a := newAccount(10)
	start := a.epoch.Load()
	if a.invalidate("cus_X") {
		t.Fatal("cus_X was not held")
	}
	a.store("cus_X", facts{subs: nil}, 1, start, fromStripe)
	a.store("cus_Y", facts{subs: nil}, 1, start, fromStripe)
	if !a.get("cus_X").stale {
		t.Error("a read of cus_X that began before its invalidation was stored as fresh")
	}
	if a.get("cus_Y").stale {
		t.Error("another customer's invalidation made cus_Y's read stale")
	}
	// A newer read of cus_X is fresh, and an invalidation of a held
	// customer keeps the facts, marked stale.
	a.store("cus_X", facts{subs: nil}, 2, a.epoch.Load(), fromStripe)
	if a.get("cus_X").stale {
		t.Error("a read that began after the invalidation is stale")
	}
	if !a.invalidate("cus_X") || !a.get("cus_X").stale {
		t.Error("invalidating a held customer did not mark it stale")
	}
}

// An entry a webhook invalidated, then evicted to make room, takes its
// invalidation with it: a read that began before the webhook is stored
// stale, and read again on the next request.
func TestAnEvictedInvalidationStillMakesAnOlderReadStale(t *testing.T) {
	a := newAccount(1)
	a.store("cus_X", facts{subs: []subscriptionState{{Status: "active"}}}, 1, a.epoch.Load(), fromStripe)
	start := a.epoch.Load() // a read of cus_X begins
	a.invalidate("cus_X")   // a webhook: cus_X cancelled
	a.mu.Lock()
	a.makeRoom() // a burst of visitors evicts cus_X
	a.mu.Unlock()
	if a.get("cus_X") != nil {
		t.Fatal("cus_X was not evicted")
	}
	a.store("cus_X", facts{subs: []subscriptionState{{Status: "active"}}}, 2, start, fromStripe) // the old read lands
	if e := a.get("cus_X"); e == nil || !e.stale {
		t.Fatalf("a read that began before the evicted invalidation was stored as fresh: %+v", e)
	}
}
