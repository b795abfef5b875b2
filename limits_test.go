package paywall

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestClientLimiterAllowsNPerWindowPerAddress(t *testing.T) {
	l := newClientLimiter(3, 30*time.Minute)
	t0 := int64(1e18)
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", t0); !ok {
			t.Fatalf("event %d refused", i+1)
		}
	}
	ok, wait := l.allow("a", t0)
	if ok || wait != 10*time.Minute {
		t.Fatalf("4th: ok %v wait %v, want refused for 10m", ok, wait)
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Error("another address was refused")
	}
	if ok, _ := l.allow("a", t0+int64(10*time.Minute)); !ok {
		t.Error("one event's share of the window later: refused")
	}
}

func TestClientLimiterStaysBounded(t *testing.T) {
	l := newClientLimiter(1, time.Hour)
	l.max = 1000
	t0 := int64(1e18)
	for i := 0; i < 5000; i++ {
		if ok, _ := l.allow(fmt.Sprint(i), t0); !ok {
			t.Fatalf("a new address was refused for lack of room (%d)", i)
		}
	}
	if len(l.tat) > l.max {
		t.Fatalf("%d addresses remembered, cap %d", len(l.tat), l.max)
	}
	// Addresses whose allowance came back are forgotten first: at the cap,
	// with nine such addresses and one still within its window, a new one
	// takes the place of the former.
	l2 := newClientLimiter(1, time.Minute)
	l2.max = 10
	for i := 0; i < 9; i++ {
		l2.allow(fmt.Sprint("old", i), t0)
	}
	l2.allow("busy", t0+int64(2*time.Minute))
	l2.allow("new", t0+int64(2*time.Minute)+1)
	if _, ok := l2.tat["busy"]; !ok || len(l2.tat) != 2 {
		t.Errorf("after making room: %v, want busy and new", l2.tat)
	}
}

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(10, 20)
	t0 := int64(1e18)
	n := 0
	for b.take(t0) {
		n++
	}
	if n != 20 {
		t.Fatalf("burst %d, want 20", n)
	}
	if !b.take(t0+int64(100*time.Millisecond)) || b.take(t0+int64(100*time.Millisecond)) {
		t.Error("a tenth of a second should give back one token")
	}
	if b.take(t0) {
		t.Error("time going backwards gave a token")
	}
}

// The address logged and counted is an address, never address:port: Caddy's
// client IP, or the connection's host outside Caddy.
func TestClientIPHasNoPort(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/paywall/webhook", nil)
	r.RemoteAddr = "[2001:db8::1]:54321"
	if got := clientIP(r); got != "2001:db8::1" {
		t.Errorf("without Caddy's variable: %q", got)
	}
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.7"})
	if got := clientIP(r.WithContext(ctx)); got != "192.0.2.7" {
		t.Errorf("with Caddy's client IP: %q", got)
	}
}
