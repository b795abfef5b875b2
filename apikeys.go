package paywall

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// API keys: a subscriber's programs present `Authorization: Bearer <key>`
// and are that subscriber. A key reads
//
//	pwk_<customer ID without cus_>_<id><secret><tag>
//
// with <id> (8), <secret> (24) and <tag> (16) letters and digits:
//
//   - The key names its customer, so verifying it needs no search: the
//     customer's facts (read once per cache_ttl, as for a cookie) hold the
//     keys that live, and the gate looks the key's id up among them.
//   - The tag is an HMAC of the rest with a key derived from the cookie
//     signing key: a key this site did not make is refused by one HMAC,
//     without a Stripe read, so that keys naming made-up customers cannot
//     spend the account's Stripe rate limit. (Changing cookie_secret
//     therefore ends every key, as it ends every cookie.)
//   - The customer's metadata keeps, under paywall_key_<id>, a SHA-256 of
//     the whole key, never the key: the secret is 143 random bits, so the
//     hash cannot be reversed or guessed (a slow password hash buys
//     nothing against that), and the hash itself opens nothing, since the
//     gate hashes what is presented. A stolen metadata value is useless;
//     one deleted in the Dashboard ends the key.
//
// The metadata value is "v1:<hash, base64url>:<created, unix>:<last four
// characters of the key>:<name>", at most 150 bytes of the 500 Stripe
// allows; a customer holds at most maxKeysLimit of them, well inside the 50
// entries Stripe allows with the operator's own.
const (
	keyPrefix     = "pwk_"
	keyIDLen      = 8
	keySecretLen  = 24
	keyTagLen     = 16
	keyBodyLen    = keyIDLen + keySecretLen + keyTagLen
	keyMetaPrefix = "paywall_key_"
	keyMetaV1     = "v1"

	defaultMaxKeys = 10
	maxKeysLimit   = 20
	maxKeyName     = 64 // bytes
	// stripeMetadataMax is how many metadata entries Stripe lets a customer
	// hold, the operator's and the paywall's together.
	stripeMetadataMax = 50
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// APIKeys turns on API keys for programs (`api_keys [max <n>]`).
type APIKeys struct {
	// The most live keys one customer may hold. Default 10, at most 20.
	Max int `json:"max,omitempty"`
}

// keyRecord is one live key, as the customer's metadata holds it.
type keyRecord struct {
	ID      string   `json:"i"`
	Sum     [32]byte `json:"h"`
	Created int64    `json:"c"`
	Last4   string   `json:"l"`
	Name    string   `json:"n,omitempty"`
}

// keyRing is a customer's live keys, oldest first; never changed once made.
type keyRing struct {
	list []keyRecord
	meta int // how many metadata entries the customer holds, the operator's too
}

// emptyKeyRing is the ring of a customer without keys when keys were read,
// and nil (not read) otherwise.
func emptyKeyRing(read bool) *keyRing {
	if read {
		return &keyRing{}
	}
	return nil
}

// has reports whether the ring holds the key id with this hash.
func (k *keyRing) has(id string, sum *[32]byte) bool {
	if k == nil {
		return false
	}
	for i := range k.list {
		if k.list[i].ID == id {
			return hmac.Equal(k.list[i].Sum[:], sum[:])
		}
	}
	return false
}

func (k *keyRing) find(id string) *keyRecord {
	if k == nil {
		return nil
	}
	for i := range k.list {
		if k.list[i].ID == id {
			return &k.list[i]
		}
	}
	return nil
}

func (k *keyRing) len() int {
	if k == nil {
		return 0
	}
	return len(k.list)
}

// keysFromMetadata reads the keys out of a customer's metadata; entries
// that do not parse (edited by hand) are no key.
func keysFromMetadata(md map[string]string) *keyRing {
	ring := &keyRing{meta: len(md)}
	for name, v := range md {
		id, ok := strings.CutPrefix(name, keyMetaPrefix)
		if !ok || !validKeyID(id) {
			continue
		}
		if rec, ok := parseKeyValue(id, v); ok {
			ring.list = append(ring.list, rec)
		}
	}
	slices.SortFunc(ring.list, func(a, b keyRecord) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), strings.Compare(a.ID, b.ID))
	})
	return ring
}

func parseKeyValue(id, v string) (keyRecord, bool) {
	parts := strings.SplitN(v, ":", 5)
	if len(parts) != 5 || parts[0] != keyMetaV1 {
		return keyRecord{}, false
	}
	sum, err := base64.RawURLEncoding.DecodeString(parts[1])
	created, cerr := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || len(sum) != sha256.Size || cerr != nil || len(parts[3]) != 4 {
		return keyRecord{}, false
	}
	rec := keyRecord{ID: id, Created: created, Last4: parts[3], Name: parts[4]}
	copy(rec.Sum[:], sum)
	return rec, true
}

func keyValue(rec keyRecord) string {
	return keyMetaV1 + ":" + base64.RawURLEncoding.EncodeToString(rec.Sum[:]) + ":" +
		strconv.FormatInt(rec.Created, 10) + ":" + rec.Last4 + ":" + rec.Name
}

func validKeyID(id string) bool {
	return len(id) == keyIDLen && isBase62(id)
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// randomBase62 returns n random letters and digits, each uniform (bytes
// from 248 up are drawn again: 248 is 4×62).
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

// parseKey splits a key into its customer and id, and reports whether it
// has the shape of one; its tag is checked by apiKeys.check.
func parseKey(key string) (customer, id string, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	i := strings.LastIndexByte(rest, '_')
	if !found || i <= 0 || len(rest)-i-1 != keyBodyLen || len(key) > 300 {
		return "", "", false
	}
	customer, body := "cus_"+rest[:i], rest[i+1:]
	if !validCustomerID(customer) || !isBase62(body) {
		return "", "", false
	}
	return customer, body[:keyIDLen], true
}

// keySum is what the metadata keeps of a key.
func keySum(key string) [32]byte {
	return sha256.Sum256([]byte("caddy-paywall api key v1\x00" + key))
}

// apiKeys is a handler's API keys: its settings, and the keys verified
// recently, so that a program's requests cost a map lookup, as a cookie's
// do, rather than an HMAC and a hash.
type apiKeys struct {
	max     int
	url     string // <endpoint_prefix>/keys
	urlAny  any
	cookies *cookieJar // whose signing key the tags derive from

	tagMu  sync.Mutex
	tagKey []byte

	mu       sync.RWMutex
	verified map[string]*verifiedKey
}

// verifiedKey is a key made by this site, with what its requests need:
// its customer, id and hash, and the placeholders of its entitled requests.
type verifiedKey struct {
	identity
	id           string
	sum          [32]byte
	placeholders [3]caddy.ReplacerFunc
	useMark
}

func newAPIKeys(cfg *APIKeys, prefix string, cookies *cookieJar) *apiKeys {
	k := &apiKeys{
		max:      cfg.Max,
		url:      prefix + "/keys",
		cookies:  cookies,
		verified: make(map[string]*verifiedKey),
	}
	if k.max == 0 {
		k.max = defaultMaxKeys
	}
	k.urlAny = k.url
	return k
}

// tagKeyBytes derives the tags' key from the cookie signing key, once.
func (k *apiKeys) tagKeyBytes() ([]byte, error) {
	k.tagMu.Lock()
	defer k.tagMu.Unlock()
	if k.tagKey != nil {
		return k.tagKey, nil
	}
	key, err := k.cookies.signingKey()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("caddy-paywall api key tag v1"))
	k.tagKey = m.Sum(nil)
	return k.tagKey, nil
}

// tag is the HMAC of a key's beginning (all but the tag), in base62.
func tag(tagKey []byte, head string) string {
	m := hmac.New(sha256.New, tagKey)
	m.Write([]byte(head))
	sum := m.Sum(nil)
	out := make([]byte, keyTagLen)
	for i := range out {
		out[i] = base62[sum[i]%62] // 16 characters of 5.95 bits: a 95-bit tag
	}
	return string(out)
}

// newKey makes a key for a customer, with an id the ring does not hold.
func (k *apiKeys) newKey(customer string, ring *keyRing) (key string, rec keyRecord, err error) {
	tagKey, err := k.tagKeyBytes()
	if err != nil {
		return "", keyRecord{}, err
	}
	id := randomBase62(keyIDLen)
	for ring.find(id) != nil {
		id = randomBase62(keyIDLen)
	}
	head := keyPrefix + strings.TrimPrefix(customer, "cus_") + "_" + id + randomBase62(keySecretLen)
	key = head + tag(tagKey, head)
	return key, keyRecord{ID: id, Sum: keySum(key), Created: now().Unix(), Last4: key[len(key)-4:]}, nil
}

// lookup returns the verified key, or nil for a key this site did not
// make (a malformed or forged one). The error is for a signing key that
// cannot be loaded.
func (k *apiKeys) lookup(key string) (*verifiedKey, error) {
	k.mu.RLock()
	vk := k.verified[key]
	k.mu.RUnlock()
	if vk != nil {
		vk.touch()
		return vk, nil
	}
	customer, id, ok := parseKey(key)
	if !ok {
		return nil, nil
	}
	tagKey, err := k.tagKeyBytes()
	if err != nil {
		return nil, err
	}
	head := key[:len(key)-keyTagLen]
	if !hmac.Equal([]byte(tag(tagKey, head)), []byte(key[len(head):])) {
		return nil, nil
	}
	key = strings.Clone(key) // the map must not pin the request's header
	vk = k.newVerified(strings.Clone(customer), strings.Clone(id), keySum(key))
	k.mu.Lock()
	if len(k.verified) >= verifiedCap {
		evictUnused(k.verified, verifiedCap/100, func(s string) { delete(k.verified, s) })
	}
	k.verified[key] = vk
	k.mu.Unlock()
	return vk, nil
}

func (k *apiKeys) newVerified(customer, id string, sum [32]byte) *verifiedKey {
	vk := &verifiedKey{identity: newIdentity(customer, 0, &k.urlAny), id: id, sum: sum}
	idAny := any(id)
	for i := range vk.placeholders {
		of := vk.identity.placeholders[i]
		vk.placeholders[i] = func(key string) (any, bool) {
			if key == "http.paywall.key_id" {
				return idAny, true
			}
			return of(key)
		}
	}
	return vk
}

// bearerKey returns the token of an `Authorization: Bearer` header when it
// is one of the paywall's keys; other Bearer tokens (the site's own JWTs)
// are not the paywall's business.
func bearerKey(hdr http.Header) (string, bool) {
	v := hdr["Authorization"]
	if len(v) == 0 {
		return "", false
	}
	a := v[0]
	if len(a) < 7 || !strings.EqualFold(a[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(a[7:])
	return tok, strings.HasPrefix(tok, keyPrefix)
}

// gateKey is the gate for a request that presents one of the paywall's
// keys: the key's customer passes when entitled; a key that is not live
// gets 401, never the cookie's or a stranger's answer.
func (h *Handler) gateKey(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer, key string) error {
	t := now()
	vk, err := h.apiKeys.lookup(key)
	if err != nil {
		return h.refuse(w, r, next, repl, visitor{byKey: true}, http.StatusServiceUnavailable, reasonUnavailable)
	}
	if vk == nil {
		return h.refuseKey(w, r, next, repl)
	}
	f, err := h.customerState(vk.customer, t.UnixNano())
	if err == nil && f.keys == nil {
		// Facts read without the keys: before api_keys was
		// configured, or while Stripe refused them.
		f, err = h.readKeys(vk.customer)
	}
	v := visitor{identity: vk.identity, byKey: true}
	if err != nil || f.keys == nil {
		repl.Set("http.paywall.key_id", vk.id)
		if err == nil {
			return h.keysUncheckable(w, r, next, repl)
		}
		return h.refuse(w, r, next, repl, v, http.StatusServiceUnavailable, reasonUnavailable)
	}
	if !f.keys.has(vk.id, &vk.sum) {
		return h.refuseKey(w, r, next, repl)
	}
	if ok, _ := h.entitlement(f.subs, t); !ok {
		repl.Set("http.paywall.key_id", vk.id) // which key was refused, for the logs
	}
	return h.admit(w, r, next, repl, v, f.subs, &vk.placeholders, t)
}

// readKeys reads a customer's facts, keys included, now, unless Stripe is
// down or refuses the keys (then they stay nil).
func (h *Handler) readKeys(customer string) (facts, error) {
	t := now().UnixNano()
	if h.account.down(t) {
		return facts{}, errStripeUnavailable
	}
	if h.account.keysDenied(t) {
		return facts{}, nil
	}
	v, err, _ := h.account.flights.Do(customer, func() (any, error) {
		return h.readCustomer(customer, false)
	})
	if err != nil {
		return facts{}, err
	}
	return v.(facts), nil
}

// keysDenied reports whether Stripe refused to read customers' keys within
// the last keysDeniedFor.
func (a *account) keysDenied(t int64) bool {
	return t < a.keysDeniedUntil.Load()
}

// keysDeniedFor is how long reads leave the keys out after Stripe refused
// them for lack of a permission.
var keysDeniedFor = time.Minute

// keysForbidden records that Stripe refused to read a customer's keys: the
// restricted key lacks the permission. Reads leave them out for a while
// (browsers are served as before), and the log says what to change, once
// a minute at most.
func (h *Handler) keysForbidden(t int64) {
	h.account.keysDeniedUntil.Store(t + int64(keysDeniedFor))
	if log, n := h.account.keysRefusals.allow(t); log {
		h.logger.Error("api_keys: Stripe refused to read customers, so API keys cannot be checked and programs get 500 (keys_permission); "+
			"give the restricted key the permission Customers: write (Dashboard → Developers → API keys → edit the key)",
			zap.Int("refusals_since_last_line", n))
	}
}

// keysUncheckable answers a key while Stripe refuses to read keys.
func (h *Handler) keysUncheckable(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer) error {
	repl.Set("http.paywall.status", statusUnavailable)
	repl.Set("http.paywall.reason", reasonKeysPermission)
	decisions.WithLabelValues(statusUnavailable, reasonKeysPermission).Inc()
	if h.DryRun {
		return next.ServeHTTP(w, r)
	}
	if h.handleErrors {
		handleErrorsPlaceholders(repl, denial{}, offerWords{})
		w.Header().Set("Cache-Control", "no-store")
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("paywall: "+reasonKeysPermission))
	}
	return h.writeDenial(w, r, denial{Status: http.StatusInternalServerError, Reason: reasonKeysPermission, ReturnPath: r.URL.RequestURI(), notice: true, program: true})
}

// refuseKey answers a key that is not live: malformed, made elsewhere,
// revoked or deleted.
func (h *Handler) refuseKey(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer) error {
	repl.Set("http.paywall.status", statusInvalidKey)
	repl.Set("http.paywall.reason", reasonInvalidKey)
	decisions.WithLabelValues(statusInvalidKey, reasonInvalidKey).Inc()
	if h.DryRun {
		h.logger.Info("dry run: would refuse", zap.Int("status", http.StatusUnauthorized), zap.String("reason", reasonInvalidKey), zap.String("uri", r.URL.RequestURI()))
		return next.ServeHTTP(w, r)
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="`+h.realm(r)+`", error="invalid_token"`)
	if h.handleErrors {
		handleErrorsPlaceholders(repl, denial{}, offerWords{})
		w.Header().Set("Cache-Control", "no-store")
		return caddyhttp.Error(http.StatusUnauthorized, errors.New("paywall: "+reasonInvalidKey))
	}
	return h.writeDenial(w, r, denial{Status: http.StatusUnauthorized, Reason: reasonInvalidKey, ReturnPath: r.URL.RequestURI(), KeysURL: h.apiKeys.url, notice: true, program: true})
}

// realm names the site in a Bearer challenge: its trusted host, or the
// paywall when none can be trusted.
func (h *Handler) realm(r *http.Request) string {
	if base, ok := h.trustedOrigin(r); ok {
		if _, host, ok := strings.Cut(base, "://"); ok && !strings.ContainsAny(host, `"\`) {
			return host
		}
	}
	return "paywall"
}

// cleanKeyName keeps a key's name to one line of printable text of at most
// maxKeyName bytes, without the metadata's separators mattering (the name
// comes last).
func cleanKeyName(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	for len(s) > maxKeyName {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return strings.TrimSpace(s)
}
