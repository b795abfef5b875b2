package stripefake_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// TestOpenConns: a kept-alive connection counts until its client closes it.
func TestOpenConns(t *testing.T) {
	s := stripefake.New(stripefake.Options{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	for range 3 {
		resp, err := c.Get(s.URL() + "/v1/prices")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The server counted the connection when it accepted it, before it
	// answered.
	if n := s.OpenConns(); n != 1 {
		t.Fatalf("three calls on one kept-alive connection: %d open, want 1", n)
	}
	tr.CloseIdleConnections()
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for s.OpenConns() != 0 {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("the client closed its connection; %d still open", s.OpenConns())
		}
	}
}
