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
	if h, ok := strings.CutPrefix(name, "http.request.header."); ok {
		if h == "" {
			return nil, fmt.Errorf("identity: %q names no header", id.Source)
		}
		s.header = textproto.CanonicalMIMEHeaderKey(h)
		s.vouch = "http.reverse_proxy.header." + s.header
	} else if strings.HasPrefix(name, "http.request.") {
		return nil, fmt.Errorf("identity: %q is sent by the client, who could name anyone; use a placeholder set by the site's login, "+
			"such as {http.auth.user.id}, or a request header that forward_auth copies (copy_headers)", id.Source)
	}
	return s, nil
}

// cacheKind names the login cache a source shares with others of its kind.
func (s *loginSource) cacheKind() string {
	if s.kind == loginMetadata {
		return s.kind + "\x00" + s.metaKey
	}
	return s.kind
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
// when a webhook or this paywall's own checkout says there is one now.
type loginCache struct {
	mu      sync.RWMutex
	m       map[string]*loginEntry
	max     int
	flights singleflight.Group
	gen     atomic.Uint64 // counts forgets, so that a read they overtook is not stored
	users   int           // handlers using it; under account.loginsMu
}

type loginEntry struct {
	id      identity // id.customer is "" when Stripe has no customer
	fetched int64    // unix nanos of the Stripe read; 0 when none is needed
}

func newLoginCache(max int) *loginCache {
	c := &loginCache{m: make(map[string]*loginEntry), max: max}
	c.gen.Store(1) // 0 is put's "always"
	return c
}

func (c *loginCache) get(v string) *loginEntry {
	c.mu.RLock()
	e := c.m[v]
	c.mu.RUnlock()
	return e
}

// put remembers a user's customer, unless a forget came after gen (a
// read it overtook knows less); gen 0 always stores (what this paywall did
// itself, which no forget can be newer than).
func (c *loginCache) put(v, customer string, fetched int64, gen uint64) identity {
	id := identity{}
	if customer != "" {
		id = newIdentity(customer, 0)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != 0 && c.gen.Load() != gen {
		return id
	}
	if _, ok := c.m[v]; !ok && len(c.m) >= c.max {
		n := max(1, c.max/100)
		for k := range c.m {
			delete(c.m, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.m[strings.Clone(v)] = &loginEntry{id: id, fetched: fetched}
	return id
}

// forget drops the users for which match is true.
func (c *loginCache) forget(match func(v string, e *loginEntry) bool) {
	c.mu.Lock()
	c.gen.Add(1)
	for v, e := range c.m {
		if match(v, e) {
			delete(c.m, v)
		}
	}
	c.mu.Unlock()
}

// loginCache returns the account's cache for a kind of login, made on first
// use and kept while a handler uses it.
func (a *account) loginCache(kind string, max int) *loginCache {
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	c := a.logins[kind]
	if c == nil {
		c = newLoginCache(max)
		a.logins[kind] = c
	}
	c.users++
	return c
}

func (a *account) releaseLoginCache(kind string) {
	a.loginsMu.Lock()
	defer a.loginsMu.Unlock()
	if c := a.logins[kind]; c != nil {
		if c.users--; c.users <= 0 {
			delete(a.logins, kind)
		}
	}
}

// forgetLogins drops what the account's login caches say when a webhook
// says Stripe's customers changed: users Stripe had no customer for, whose
// email or metadata value a new or changed customer now carries; and, with
// changed, every user matched to that customer, who may no longer have the
// email or metadata they were matched by.
func (a *account) forgetLogins(email string, metadata map[string]string, changed string) {
	a.loginsMu.Lock()
	caches := make(map[string]*loginCache, len(a.logins))
	for k, c := range a.logins {
		caches[k] = c
	}
	a.loginsMu.Unlock()
	for kind, c := range caches {
		key, isMeta := strings.CutPrefix(kind, loginMetadata+"\x00")
		c.forget(func(v string, e *loginEntry) bool {
			switch {
			case changed != "" && e.id.customer == changed:
				return true
			case e.id.customer != "":
				return false
			case kind == loginEmail:
				return email != "" && strings.EqualFold(v, email)
			case isMeta:
				mv, ok := metadata[key]
				return ok && mv == v
			}
			return false
		})
	}
}

// visitor is who a request comes from, as far as the paywall can tell.
type visitor struct {
	identity        // the Stripe customer, when there is one
	login    string // with identity <placeholder>: the site's user, "" for nobody
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
	}
	if e != nil && t-e.fetched < int64(h.CacheTTL)+int64(h.StaleIfError) {
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
		subs, err := h.customerState(cus, t.UnixNano())
		if err != nil {
			return "", false, err
		}
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

// customerForCheckout returns the customer a checkout for a login that has
// none yet is to be made for: with kind metadata, a new customer carrying
// the login in its metadata, remembered at once (Stripe's search would not
// find it for up to a minute). Its idempotency key comes from the login, so
// that concurrent checkouts, here or on another instance within Stripe's 24
// hours, make one customer. Other kinds need none: email prefills Checkout,
// which makes the customer.
func (h *Handler) customerForCheckout(ctx context.Context, v string) (string, error) {
	if h.login.kind != loginMetadata {
		return "", nil
	}
	sum := sha256.Sum256([]byte("paywall customer\x00" + h.login.metaKey + "\x00" + v))
	cus, err := h.stripe.createCustomer(ctx, h.login.metaKey, v, "paywall-customer-"+hex.EncodeToString(sum[:16]))
	if err != nil {
		return "", err
	}
	h.login.logins.put(v, cus, now().UnixNano(), 0)
	return cus, nil
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
