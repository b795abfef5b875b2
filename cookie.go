package paywall

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// cookieSecretStorageKey is where a generated cookie key is kept in Caddy's
// storage, shared by restarts and by nodes that share storage.
const cookieSecretStorageKey = "paywall/cookie_secret"

// verifiedCap bounds the memory of cookies verified recently.
const verifiedCap = 100_000

// cookieJar signs and verifies the visitor cookie. The cookie holds a Stripe
// customer ID and an expiry, signed with HMAC-SHA256:
//
//	<customer>.<expiry unix seconds>.<base64url signature>
//
// A cookie verified once is remembered by its exact value until it expires,
// so that the hot path costs a map lookup rather than an HMAC.
type cookieJar struct {
	name      string
	nonce     string // the checkout cookie's name on plain HTTP
	hostNonce string // and on HTTPS: __Host-<nonce>
	maxAge    time.Duration
	keysURL   *any                     // with api_keys: {http.paywall.keys_url} of the identities
	https     bool                     // public_url is https: cookies are Secure whatever Caddy sees
	secret    string                   // from the config, or empty
	storage   func() certmagic.Storage // Caddy's, without cookie_secret; else nil
	logger    *zap.Logger

	keyMu        sync.Mutex
	key          []byte
	signinCipher cipher.AEAD // sign-in links' (signin.go), made from key
	keyFailures  logThrottle // the key could not be loaded

	mu       sync.RWMutex
	verified map[string]*verifiedCookie
}

// verifiedCookie is a cookie value verified once, with its use mark (see
// evictUnused in cache.go).
type verifiedCookie struct {
	identity
	useMark
}

// identity is a verified visitor.
type identity struct {
	customer    string
	customerAny any // boxed once, so setting a placeholder allocates nothing
	expires     int64
	// placeholders answer {http.paywall.*} for this visitor when entitled,
	// one per entitled reason, made once with the identity, so that the
	// hot path adds a provider to the replacer instead of writing three
	// values into its locked map.
	placeholders [3]caddy.ReplacerFunc
}

// newIdentity makes the identity of a verified customer. keysURL, when
// not nil, answers {http.paywall.keys_url}. Each placeholder function holds
// three words (the identity, the reason's index, keysURL) and fits the
// allocator's 32-byte size class, which every verified cookie and login
// pays three times.
func newIdentity(customer string, expires int64, keysURL *any) identity {
	id := identity{customer: customer, customerAny: customer, expires: expires}
	for i := range entitledReasons {
		id.placeholders[i] = func(key string) (any, bool) {
			switch key {
			case "http.paywall.customer":
				return id.customerAny, true
			case "http.paywall.status":
				return statusEntitled, true
			case "http.paywall.reason":
				return entitledReasons[i], true
			case "http.paywall.keys_url":
				if keysURL != nil {
					return *keysURL, true
				}
			case "http.paywall.key_id":
				return "", keysURL != nil // a browser, not a key
			}
			return nil, false
		}
	}
	return id
}

func newCookieJar(name string, maxAge time.Duration, secret string, storage func() certmagic.Storage, logger *zap.Logger) *cookieJar {
	return &cookieJar{
		name:      name,
		nonce:     name + "_checkout",
		hostNonce: "__Host-" + name + "_checkout",
		maxAge:    maxAge,
		secret:    secret,
		storage:   storage,
		logger:    logger,
		verified:  make(map[string]*verifiedCookie),
	}
}

// signingKey returns the key, loading or creating it in storage on first use
// (not in Provision: caddy validate and caddy adapt must not write storage).
func (j *cookieJar) signingKey() ([]byte, error) {
	j.keyMu.Lock()
	defer j.keyMu.Unlock()
	if j.key != nil {
		return j.key, nil
	}
	if j.secret != "" {
		sum := sha256.Sum256([]byte("caddy-paywall cookie v1\x00" + j.secret))
		j.key = sum[:]
		return j.key, nil
	}
	var storage certmagic.Storage
	if j.storage != nil {
		storage = j.storage()
	}
	if storage == nil {
		return nil, errors.New("no cookie_secret and no storage to keep a generated one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Most loads find the key; only its creation needs the storage lock.
	key, err := storage.Load(ctx, cookieSecretStorageKey)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = j.createKey(ctx, storage)
	}
	if err != nil {
		return nil, err
	}
	if len(key) < 32 {
		return nil, errors.New("stored cookie signing key is too short")
	}
	j.key = key
	return j.key, nil
}

// createKey makes the cookie key under the storage lock, unless another
// instance sharing the storage made it first.
func (j *cookieJar) createKey(ctx context.Context, storage certmagic.Storage) ([]byte, error) {
	if err := storage.Lock(ctx, cookieSecretStorageKey); err != nil {
		return nil, err
	}
	defer func() { _ = storage.Unlock(context.Background(), cookieSecretStorageKey) }()
	key, err := storage.Load(ctx, cookieSecretStorageKey)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := storage.Store(ctx, cookieSecretStorageKey, key); err != nil {
		return nil, err
	}
	j.logger.Info("generated a cookie signing key and kept it in storage", zap.String("storage_key", cookieSecretStorageKey))
	return key, nil
}

func (j *cookieJar) sign(key []byte, customer string, expires int64) string {
	payload := customer + "." + strconv.FormatInt(expires, 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns a cookie that identifies the customer until maxAge passes.
func (j *cookieJar) issue(r *http.Request, customer string) (*http.Cookie, error) {
	key, err := j.signingKey()
	if err != nil {
		return nil, err
	}
	t := now()
	exp := t.Add(j.maxAge).Unix()
	return &http.Cookie{
		Name:     j.name,
		Value:    j.sign(key, customer, exp),
		Path:     "/",
		Expires:  time.Unix(exp, 0),
		MaxAge:   int(j.maxAge / time.Second),
		HttpOnly: true,
		Secure:   j.secure(r),
		SameSite: http.SameSiteLaxMode,
	}, nil
}

// clear returns a cookie that deletes the named cookie.
func (j *cookieJar) clear(r *http.Request, name string) *http.Cookie {
	return &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: j.secure(r), SameSite: http.SameSiteLaxMode}
}

// secure reports whether cookies must be Secure: the request came over TLS,
// or public_url says visitors use https in front of a proxy.
func (j *cookieJar) secure(r *http.Request) bool {
	return r.TLS != nil || j.https
}

// identify returns the verified visitor of the request, if any, at t (unix
// seconds). The error is for a signing key that cannot be loaded: the
// visitor may well have paid, so they must not be taken for a stranger.
func (j *cookieJar) identify(r *http.Request, t int64) (identity, bool, error) {
	value, ok := cookieValue(r.Header, j.name)
	if !ok || value == "" {
		return identity{}, false, nil
	}
	j.mu.RLock()
	vc := j.verified[value]
	j.mu.RUnlock()
	if vc != nil {
		if t >= vc.expires {
			return vc.identity, false, nil // not marked: let it go first
		}
		vc.touch()
		return vc.identity, true, nil
	}
	id, ok, err := j.verify(value, t)
	if !ok {
		return identity{}, false, err
	}
	value = strings.Clone(value) // the key must not pin the request's header
	j.mu.Lock()
	if len(j.verified) >= verifiedCap {
		// The cookies used least recently go first, by second chance:
		// a burst of new visitors does not push out the subscribers
		// who keep coming.
		evictUnused(j.verified, verifiedCap/100, func(k string) { delete(j.verified, k) })
	}
	j.verified[value] = &verifiedCookie{identity: id}
	j.mu.Unlock()
	return id, true, nil
}

// renew gives a visitor whose cookie has lived half its life a fresh one, so
// that a subscriber who keeps visiting stays known; one who stopped paying
// stays known too, and subscribes again as the same Stripe customer.
func (j *cookieJar) renew(w http.ResponseWriter, r *http.Request, id identity, t int64) {
	if id.expires-t > int64(j.maxAge/time.Second)/2 {
		return
	}
	if ck, err := j.issue(r, id.customer); err == nil {
		http.SetCookie(w, ck)
		// A response that sets a visitor's cookie must never be kept
		// by a shared cache and handed to someone else, whatever
		// cache_control or an earlier handler says.
		w.Header().Set("Cache-Control", "private, no-store")
	}
}

// verify checks a cookie value's signature and expiry.
func (j *cookieJar) verify(value string, t int64) (identity, bool, error) {
	customer, rest, ok := strings.Cut(value, ".")
	if !ok || !validCustomerID(customer) {
		return identity{}, false, nil
	}
	expStr, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return identity{}, false, nil
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || exp <= t {
		return identity{}, false, nil
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	// The decoder skips \r and \n; only the exact encoding is accepted, so
	// that one signature has one spelling.
	if err != nil || len(got) != sha256.Size || base64.RawURLEncoding.EncodeToString(got) != sig {
		return identity{}, false, nil
	}
	key, err := j.signingKey()
	if err != nil {
		// Once a minute at most while storage is down, with how many
		// visitors it failed since.
		if log, n := j.keyFailures.allow(now().UnixNano()); log {
			j.logger.Error("cannot load the cookie signing key: visitors with a cookie get 503 until storage answers",
				zap.Error(err), zap.Int("failures_since_last_line", n))
		}
		return identity{}, false, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(value[:len(customer)+1+len(expStr)]))
	if !hmac.Equal(got, m.Sum(nil)) {
		return identity{}, false, nil
	}
	customer = strings.Clone(customer)
	return newIdentity(customer, exp, j.keysURL), true, nil
}

// validCustomerID accepts Stripe customer IDs: cus_ followed by letters,
// digits and underscores.
func validCustomerID(s string) bool { return validStripeID(s, "cus_") }

// validSessionID accepts Checkout Session IDs: cs_ followed by letters,
// digits and underscores.
func validSessionID(s string) bool { return validStripeID(s, "cs_") }

// validStripeID accepts a Stripe object ID of the kind prefix names: the
// prefix, then up to 255 bytes in all of letters, digits and underscores.
func validStripeID(s, prefix string) bool {
	if len(s) <= len(prefix) || len(s) > 255 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// newNonce returns a random value that binds a checkout session to the
// browser that started it.
func newNonce() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validNonce accepts what newNonce makes.
func validNonce(s string) bool {
	if len(s) != 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cookieValue finds a cookie in the Cookie headers without allocating,
// unlike r.Cookie, which parses every cookie of the request.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
