package paywall

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Identity says who a visitor is. Without a source, the paywall's own
// signed cookie does, set after Checkout and by email sign-in. With one, the
// site's own login does: basic_auth, forward_auth, a JWT or OIDC plugin.
type Identity struct {
	// A placeholder that holds the signed-in user, such as
	// `{http.auth.user.id}` (set by Caddy's authentication handlers) or
	// `{http.request.header.X-Auth-Email}` (copied by forward_auth from its
	// auth service's answer). Empty: the paywall's cookie.
	Source string `json:"source,omitempty"`

	// What the value is: `email` (the Stripe customer with that email),
	// `customer` (a Stripe customer ID), or `metadata` (the Stripe customer
	// whose metadata under metadata_key is the value).
	Kind string `json:"kind,omitempty"`

	// The customer metadata key, with kind `metadata`.
	MetadataKey string `json:"metadata_key,omitempty"`
}

// The kinds of a login identity.
const (
	loginEmail    = "email"
	loginCustomer = "customer"
	loginMetadata = "metadata"
)

// maxLoginValue bounds what a login's value may be; longer is anonymous.
const maxLoginValue = 512

// loginCandidates bounds the customers one login is matched against.
const loginCandidates = 10

// loginSource reads the site's user from a request, for identity
// <placeholder>.
//
// A value that a client can send itself must never name someone else. The
// placeholders of Caddy's authentication handlers ({http.auth.user.*}) and
// of the site's own vars are set by handlers, never by a client. A request
// header is the client's to send, except where forward_auth ran: it deletes
// the client's copy of every header it copies and sets the auth service's.
// The paywall cannot see which paths the site's forward_auth covers, so it
// asks the request itself: a header identity counts only when the answer of
// an auth service on this very request carried the same header with the
// same value ({http.reverse_proxy.header.<name>}, which forward_auth leaves
// in the request's replacer and no client can set). On a path forward_auth
// does not cover, a client's header is ignored, and the visitor is anonymous.
type loginSource struct {
	kind    string
	metaKey string
	name    string // the placeholder, without braces
	header  string // the request header it reads, canonical, or ""
	vouch   string // the auth answer's placeholder that must agree, with header

	logins    *loginCache
	key       string // of logins in the account
	unvouched logThrottle
}

// newLoginSource checks an identity's source and kind.
func newLoginSource(id *Identity) (*loginSource, error) {
	src := strings.TrimSpace(id.Source)
	name, ok := strings.CutPrefix(src, "{")
	name, closed := strings.CutSuffix(name, "}")
	if !ok || !closed || name == "" || strings.ContainsAny(name, "{}") {
		return nil, fmt.Errorf("identity: %q must be one placeholder, such as {http.auth.user.id}", id.Source)
	}
	s := &loginSource{kind: id.Kind, metaKey: id.MetadataKey, name: name}
	switch id.Kind {
	case loginEmail, loginCustomer:
		if id.MetadataKey != "" {
			return nil, fmt.Errorf("identity: a metadata key goes only with kind metadata")
		}
	case loginMetadata:
		if id.MetadataKey == "" || len(id.MetadataKey) > 40 || strings.ContainsAny(id.MetadataKey, "[]'\"\\") {
			return nil, fmt.Errorf("identity: metadata needs a key of up to 40 characters, without brackets, quotes or backslashes")
		}
	default:
		return nil, fmt.Errorf("identity: kind %q must be email, customer or metadata", id.Kind)
	}
	switch {
	case strings.HasPrefix(name, "http.request.header."):
		h := strings.TrimPrefix(name, "http.request.header.")
		if h == "" {
			return nil, fmt.Errorf("identity: %q names no header", id.Source)
		}
		s.header = textproto.CanonicalMIMEHeaderKey(h)
		s.vouch = "http.reverse_proxy.header." + s.header
	case strings.HasPrefix(name, "http.auth.user."), strings.HasPrefix(name, "http.vars."), strings.HasPrefix(name, "http.reverse_proxy.header."):
	default:
		// Others are the client's to choose ({http.request.cookie.*},
		// {http.regexp.*} of a path or header, the query) or no login at all.
		return nil, fmt.Errorf("identity: %q is not set by a login, and a client could name anyone with it; use {http.auth.user.*} "+
			"(Caddy's authentication handlers), a request header that forward_auth copies ({http.request.header.*}), "+
			"{http.reverse_proxy.header.*}, or {http.vars.*} set by your own config", id.Source)
	}
	return s, nil
}

// cacheKey names the login cache a source shares with the others of its
// kind that sell the same: which of several customers with one email a user
// is matched to depends on what the handler sells.
// With api_keys, the identities answer {http.paywall.keys_url}, which is
// the handler's: handlers with other endpoint prefixes keep their own.
func (s *loginSource) cacheKey(prices, products []string, keysURL string) string {
	return s.kind + "\x00" + s.metaKey + "\x00" + strings.Join(prices, " ") + "\x00" + strings.Join(products, " ") + "\x00" + keysURL
}

// value reads the site's user from the request: "" for nobody.
func (s *loginSource) value(r *http.Request, repl *caddy.Replacer, logger *zap.Logger) string {
	var v string
	if s.header != "" {
		vs := r.Header[s.header]
		if len(vs) != 1 {
			return "" // absent, or several: not one user
		}
		said, _ := repl.Get(s.vouch)
		if str, ok := said.(string); !ok || str != vs[0] {
			if log, n := s.unvouched.allow(now().UnixNano()); log {
				logger.Warn("identity header ignored: no forward_auth answer on this request carried it; "+
					"put forward_auth with copy_headers "+s.header+" in front of this path, or the client could name anyone",
					zap.String("header", s.header), zap.Int("ignored_since_last_line", n))
			}
			return ""
		}
		v = vs[0]
	} else {
		got, ok := repl.Get(s.name)
		if !ok || got == nil {
			return ""
		}
		if str, ok := got.(string); ok {
			v = str
		} else {
			v = caddy.ToString(got)
		}
	}
	v = strings.TrimSpace(v)
	if len(v) > maxLoginValue {
		return ""
	}
	return v
}

// loginCache maps the site's users to Stripe customers: what Stripe said,
// for cache_ttl, like the customers' facts beside it. A user Stripe has no
// customer for is kept too (an identity without customer), and forgotten
// when a webhook or this paywall's own checkout says there is one now. It
// is indexed by customer and by email in lower case, so that a webhook
// forgets what it concerns without walking the cache.
type loginCache struct {
	kind, metaKey string
	keysURL       *any // with api_keys: {http.paywall.keys_url}

	mu         sync.RWMutex
	m          map[string]*loginEntry
	byCustomer map[string]map[string]struct{} // customer → users matched to it
	byEmail    map[string]map[string]struct{} // kind email: lower-case email → users
	max        int

	flights singleflight.Group
	gen     atomic.Uint64 // counts forgets, so that a read they overtook is not stored
	users   int           // handlers using it; under account.loginsMu
}

type loginEntry struct {
	useMark          // for eviction: see evictUnused
	id      identity // id.customer is "" when Stripe has no customer
	fetched int64    // unix nanos of the Stripe read; 0 when none is needed
}

func newLoginCache(kind, metaKey string, max int, keysURL *any) *loginCache {
	c := &loginCache{
		kind: kind, metaKey: metaKey, max: max, keysURL: keysURL,
		m:          make(map[string]*loginEntry),
		byCustomer: make(map[string]map[string]struct{}),
		byEmail:    make(map[string]map[string]struct{}),
	}
	c.gen.Store(1) // 0 is put's "always"
	return c
}

func (c *loginCache) get(v string) *loginEntry {
	c.mu.RLock()
	e := c.m[v]
	c.mu.RUnlock()
	if e != nil {
		e.touch()
	}
	return e
}

// put remembers a user's customer, unless a forget came after gen (a
// read it overtook knows less); gen 0 always stores (what this paywall did
// itself, which no forget can be newer than).
func (c *loginCache) put(v, customer string, fetched int64, gen uint64) identity {
	id := identity{}
	if customer != "" {
		id = newIdentity(customer, 0, c.keysURL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != 0 && c.gen.Load() != gen {
		return id
	}
	used := false
	if old, ok := c.m[v]; ok {
		used = old.used.Load() // a refreshed user stays as recently used as they were
		c.drop(v)
	} else if len(c.m) >= c.max {
		// A full cache drops one in a hundred, users not seen since
		// the last sweep first, as the customers' cache does.
		evictUnused(c.m, max(1, c.max/100), c.drop)
	}
	v = strings.Clone(v)
	e := &loginEntry{id: id, fetched: fetched}
	e.used.Store(used)
	c.m[v] = e
	if customer != "" {
		addIndex(c.byCustomer, customer, v)
	}
	if c.kind == loginEmail {
		addIndex(c.byEmail, strings.ToLower(v), v)
	}
	return id
}

// drop deletes a user and their index entries. Called with mu held.
func (c *loginCache) drop(v string) {
	e := c.m[v]
	if e == nil {
		return
	}
	delete(c.m, v)
	if e.id.customer != "" {
		removeIndex(c.byCustomer, e.id.customer, v)
	}
	if c.kind == loginEmail {
		removeIndex(c.byEmail, strings.ToLower(v), v)
	}
}

func addIndex(ix map[string]map[string]struct{}, k, v string) {
	set := ix[k]
	if set == nil {
		set = make(map[string]struct{}, 1)
		ix[k] = set
	}
	set[v] = struct{}{}
}

func removeIndex(ix map[string]map[string]struct{}, k, v string) {
	if set := ix[k]; set != nil {
		delete(set, v)
		if len(set) == 0 {
			delete(ix, k)
		}
	}
}

// forget drops, after a webhook, the users Stripe had no customer for whose
// email or metadata value a new or changed customer now carries, and with
// changed, every user matched to that customer.
func (c *loginCache) forget(email string, metadata map[string]string, changed string) {
	value, hasValue := metadata[c.metaKey]
	relevant := changed != "" || (c.kind == loginEmail && email != "") || (c.kind == loginMetadata && hasValue)
	if !relevant {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	if changed != "" {
		for v := range c.byCustomer[changed] {
			c.drop(v)
		}
	}
	dropUnmatched := func(v string) {
		if e := c.m[v]; e != nil && e.id.customer == "" {
			c.drop(v)
		}
	}
	switch {
	case c.kind == loginEmail && email != "":
		for v := range c.byEmail[strings.ToLower(email)] {
			dropUnmatched(v)
		}
	case c.kind == loginMetadata && hasValue:
		dropUnmatched(value)
	}
}

// loginCache returns the account's cache for a kind of login, made on first
// use and kept while a handler uses it.
func (a *account) loginCache(key, kind, metaKey string, max int, keysURL *any) *loginCache {
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	c := a.logins[key]
	if c == nil {
		c = newLoginCache(kind, metaKey, max, keysURL)
		a.logins[key] = c
	}
	c.users++
	return c
}

func (a *account) releaseLoginCache(key string) {
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	if c := a.logins[key]; c != nil {
		if c.users--; c.users <= 0 {
			delete(a.logins, key)
		}
	}
}

// hasLogins reports whether the account has login caches (a handler with
// identity <placeholder>).
func (a *account) hasLogins() bool {
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	return len(a.logins) > 0
}

// loginMetadata is the part of a customer's metadata that the account's
// login caches look logins up by; nil when none.
func (a *account) loginMetadata(metadata map[string]string) map[string]string {
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	var out map[string]string
	for _, c := range a.logins {
		if v, ok := metadata[c.metaKey]; ok && c.metaKey != "" {
			if out == nil {
				out = make(map[string]string)
			}
			out[c.metaKey] = v
		}
	}
	return out
}

// forgetLogins drops what the account's login caches say when a webhook
// says Stripe's customers changed (see loginCache.forget).
func (a *account) forgetLogins(email string, metadata map[string]string, changed string) {
	a.loginsMu.Lock()
	caches := make([]*loginCache, 0, len(a.logins))
	for _, c := range a.logins {
		caches = append(caches, c)
	}
	a.loginsMu.Unlock()
	for _, c := range caches {
		c.forget(email, metadata, changed)
	}
}

// visitor is who a request comes from, as far as the paywall can tell.
type visitor struct {
	identity        // the Stripe customer, when there is one
	login    string // with identity <placeholder>: the site's user, "" for nobody
	byKey    bool   // the request presented an API key
	hadTrial bool   // on a refusal: the customer had a free trial already
}

// who says who a request comes from: the paywall's cookie, or the site's
// login and the Stripe customer it maps to. The error means the answer is
// not known (the cookie key cannot be loaded, or Stripe cannot be reached
// for a user not seen before): such a visitor may well have paid.
func (h *Handler) who(r *http.Request, repl *caddy.Replacer, t time.Time) (visitor, error) {
	if h.login != nil {
		return h.whoByLogin(r, repl, t)
	}
	id, known, err := h.cookies.identify(r, t.Unix())
	if !known {
		return visitor{}, err
	}
	return visitor{identity: id}, nil
}

// whoByLogin is who for identity <placeholder>.
func (h *Handler) whoByLogin(r *http.Request, repl *caddy.Replacer, t time.Time) (visitor, error) {
	v := h.login.value(r, repl, h.logger)
	if v == "" {
		return visitor{}, nil
	}
	id, err := h.loginCustomer(v, t.UnixNano())
	return visitor{identity: id, login: v}, err
}

// loginCustomer maps a site's user to their Stripe customer, from the cache
// while younger than cache_ttl, else from one Stripe lookup shared by
// concurrent callers; known mappings serve while Stripe cannot be reached,
// for stale_if_error.
func (h *Handler) loginCustomer(v string, t int64) (identity, error) {
	c := h.login.logins
	e := c.get(v)
	if h.login.kind == loginCustomer {
		if e != nil {
			return e.id, nil
		}
		if !validCustomerID(v) {
			return identity{}, nil
		}
		return c.put(v, v, 0, c.gen.Load()), nil // nothing to ask: the value is the customer
	}
	if e != nil && t-e.fetched < int64(h.CacheTTL) {
		return e.id, nil
	}
	if !h.account.down(t) {
		got, err, _ := c.flights.Do(v, func() (any, error) {
			gen := c.gen.Load()
			customer, _, err := h.findCustomer(context.Background(), v, false)
			if err != nil {
				return identity{}, err
			}
			return c.put(v, customer, now().UnixNano(), gen), nil
		})
		if err == nil {
			return got.(identity), nil
		}
		if errors.Is(err, errStripeUnavailable) {
			h.account.downUntil.Store(now().UnixNano() + int64(outageBackoff))
		}
		h.logStripeFailure(err)
	}
	if e != nil && t-e.fetched < int64(h.CacheTTL)+int64(h.staleIfError) {
		cacheEvents.WithLabelValues("stale_served").Inc()
		return e.id, nil
	}
	return identity{}, errUnknownUnavailable
}

// findCustomer finds the Stripe customer of an email (kind email, and
// email sign-in) or a metadata value: of several, the one whose
// subscription grants access, else the newest that ever subscribed to what
// this paywall sells, else (unless subscribed is required) the newest.
// Emails are matched as given and then, when that finds none, in lower
// case. It costs one lookup, and a subscriptions read for each customer
// found whose facts are not cached, when there are several or subscribed
// is required.
func (h *Handler) findCustomer(ctx context.Context, v string, subscribed bool) (customer string, everSubscribed bool, err error) {
	var found []string
	if h.login != nil && h.login.kind == loginMetadata {
		found, err = h.stripe.customersByMetadata(ctx, h.login.metaKey, v, loginCandidates)
	} else {
		found, err = h.stripe.customersByEmail(ctx, v, loginCandidates)
		if err == nil && len(found) == 0 && strings.ToLower(v) != v {
			found, err = h.stripe.customersByEmail(ctx, strings.ToLower(v), loginCandidates)
		}
	}
	if err != nil || len(found) == 0 {
		return "", false, err
	}
	if len(found) == 1 && !subscribed {
		return found[0], false, nil
	}
	t := now()
	ever := ""
	for _, cus := range found {
		f, err := h.customerState(cus, t.UnixNano())
		if err != nil {
			return "", false, err
		}
		subs := f.subs
		if ok, _ := h.entitlement(subs, t); ok {
			return cus, true, nil
		}
		if ever == "" && h.everSubscribed(subs) {
			ever = cus
		}
	}
	switch {
	case ever != "":
		return ever, true, nil
	case subscribed:
		return "", false, nil
	}
	return found[0], false, nil
}

// everSubscribed reports whether any of subs is, or was, to what this
// handler sells.
func (h *Handler) everSubscribed(subs []subscriptionState) bool {
	for i := range subs {
		if h.covers(&subs[i]) {
			return true
		}
	}
	return false
}

// loginCustomerNow asks Stripe, past the cache, for the customer of a
// site's user about to be sold a subscription, and remembers the answer.
// With kind metadata and no customer yet, it makes one carrying the user
// in its metadata, remembered at once (Stripe's search would not find it
// for up to a minute); its idempotency key comes from the user, so that
// concurrent checkouts, here or on another instance within Stripe's 24
// hours, make one customer. With kind email and none, "": Checkout makes
// the customer, with the email filled in.
func (h *Handler) loginCustomerNow(ctx context.Context, v string) (string, error) {
	c := h.login.logins
	gen := c.gen.Load()
	customer, _, err := h.findCustomer(ctx, v, false)
	if err != nil {
		return "", err
	}
	if customer == "" && h.login.kind == loginMetadata {
		sum := sha256.Sum256([]byte("paywall customer\x00" + h.login.metaKey + "\x00" + v))
		if customer, err = h.stripe.createCustomer(ctx, h.login.metaKey, v, "paywall-customer-"+hex.EncodeToString(sum[:16])); err != nil {
			return "", err
		}
		gen = 0 // made here: nothing a webhook says is newer
	}
	c.put(v, customer, now().UnixNano(), gen)
	return customer, nil
}

// learnLogin remembers the customer a finished checkout made for a login,
// so that the next request is let in without a lookup: with kind email,
// when the payer's email is the login's.
func (h *Handler) learnLogin(v string, sess checkoutSession) {
	if h.login == nil || v == "" || h.login.kind != loginEmail || !strings.EqualFold(sess.CustomerEmail, v) {
		return
	}
	h.login.logins.put(v, sess.Customer, now().UnixNano(), 0)
}
