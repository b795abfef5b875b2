package paywall

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// downStorage is Caddy's storage while it cannot be reached.
type downStorage struct{ loads int }

var errStorageDown = errors.New("storage unreachable")

func (s *downStorage) Load(context.Context, string) ([]byte, error) {
	s.loads++
	return nil, errStorageDown
}
func (*downStorage) Store(context.Context, string, []byte) error { return errStorageDown }
func (*downStorage) Delete(context.Context, string) error        { return errStorageDown }
func (*downStorage) Exists(context.Context, string) bool         { return false }
func (*downStorage) List(context.Context, string, bool) ([]string, error) {
	return nil, errStorageDown
}
func (*downStorage) Stat(context.Context, string) (certmagic.KeyInfo, error) {
	return certmagic.KeyInfo{}, fs.ErrNotExist
}
func (*downStorage) Lock(context.Context, string) error   { return errStorageDown }
func (*downStorage) Unlock(context.Context, string) error { return nil }

// A storage outage is logged once a minute, not once per visitor, and
// storage is asked for only when a key is needed.
func TestAStorageOutageIsLoggedOnceAMinute(t *testing.T) {
	st := &downStorage{}
	asked := 0
	core, logs := observer.New(zap.InfoLevel)
	j := newCookieJar("paywall", time.Hour, "", func() certmagic.Storage { asked++; return st }, zap.New(core))
	if asked != 0 {
		t.Fatal("storage was asked for before a key was needed")
	}
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", "paywall=cus_A."+"9999999999."+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	for i := 0; i < 100; i++ {
		if _, known, err := j.identify(r, 1_000); known || err == nil {
			t.Fatalf("visit %d: known %v err %v, want the key's error", i, known, err)
		}
	}
	if n := logs.FilterMessageSnippet("cannot load the cookie signing key").Len(); n != 1 {
		t.Errorf("%d log lines for 100 visitors during one outage, want 1", n)
	}
	if st.loads != 100 {
		t.Errorf("%d loads, want one per visit until storage answers", st.loads)
	}
}
