// Command authsvc is what an operator would build instead of the paywall:
// a minimal external service for Caddy's forward_auth that answers 200 when
// the request carries a cookie whose HMAC verifies, and 401 otherwise. The
// load run (bench/loadrun) puts it behind forward_auth to compare that
// design with the paywall handler.
//
// It checks the paywall's own cookie format (<customer>.<expiry>.<base64url
// HMAC-SHA256>, keyed the way the paywall derives its key from
// cookie_secret), so one visitor cookie serves both sites. It does the HMAC
// on every request and never asks Stripe: the cheapest such service can be,
// which flatters forward_auth in the comparison.
//
//	AUTHSVC_COOKIE_SECRET=... authsvc -addr 127.0.0.1:9123
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9123", "loopback address to listen on")
	name := flag.String("cookie", "paywall", "name of the cookie to check")
	flag.Parse()
	secret := os.Getenv("AUTHSVC_COOKIE_SECRET")
	if len(secret) < 32 {
		log.Fatal("authsvc: AUTHSVC_COOKIE_SECRET must hold at least 32 characters")
	}
	sum := sha256.Sum256([]byte("caddy-paywall cookie v1\x00" + secret))
	key := sum[:]

	http.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(*name)
		if err != nil || !valid(key, c.Value, time.Now().Unix()) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// valid checks the signature and the expiry of a cookie value.
func valid(key []byte, value string, now int64) bool {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return false
	}
	payload, sig := value[:i], value[i+1:]
	_, expStr, ok := strings.Cut(payload, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || exp <= now {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return hmac.Equal(got, m.Sum(nil))
}
