package paywall

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// outageBackoff is how long the paywall stops asking Stripe after Stripe
// could not be reached, so that an outage costs visitors no waiting.
var outageBackoff = 5 * time.Second

// staleWait is how long a visitor whose facts aged past cache_ttl waits for
// Stripe before the known facts answer. Once a wait ran out, Stripe counts
// as slow until a read succeeds, and such visitors wait no more: a Stripe
// that hangs costs known payers this much once per outage, not once per
// outage back-off.
var staleWait = 500 * time.Millisecond

// staleTimer starts a visitor's staleWait; tests replace it.
var staleTimer = func() (<-chan time.Time, func() bool) {
	t := time.NewTimer(staleWait)
	return t.C, t.Stop
}

// account is the state shared by every handler of one Stripe account, kept
// across config reloads in the accounts pool: what Stripe said about each
// customer, the webhook events already applied, and the limits on checkout.
type account struct {
	mu        sync.RWMutex
	customers map[string]*customerEntry
	max       int
	strs      map[string]string // interned price and product IDs

	// epoch counts invalidations, so that a read which began before a
	// webhook said the customer changed is not stored as fresh.
	epoch     atomic.Uint64
	flights   singleflight.Group
	downUntil atomic.Int64   // unix nanos; Stripe failed recently
	slow      atomic.Bool    // a read outlasted staleWait and none has succeeded since
	reads     sync.WaitGroup // work that may outlive its request (reads, sign-in mails); tests wait for it

	// recent holds the epoch of the last invalidation of customers this
	// node did not hold, so that a read of theirs already in flight is not
	// taken for fresh; when it fills up it is cleared, and recentFloor
	// makes every read that began before that count as possibly stale.
	recent      map[string]uint64
	recentFloor uint64

	seenEvents     eventSet
	rejectedHooks  logThrottle
	stripeFailures logThrottle // reads and endpoint calls that failed

	// checkoutBudget bounds Stripe's checkout calls for the whole account
	// (see checkoutBudgetRate); limiters bound them per client address,
	// one limiter per configured limit, kept while a handler uses it.
	checkoutBudget *tokenBucket
	limitersMu     sync.Mutex
	limiters       map[limitSpec]*sharedLimiter
	limitTrips     logThrottle

	// logins maps the site's users to customers, one cache per kind of
	// identity (see loginCache), kept while a handler uses it.
	loginsMu sync.Mutex
	logins   map[string]*loginCache

	// usedSignins holds the sign-in links already used, until they
	// expire; signinBudget bounds the Stripe lookups of sign-in requests
	// (see signinBudgetRate).
	usedSignins  usedLinks
	signinBudget *tokenBucket

	// links are the account's Redis clients, one per Redis and prefix
	// (see redis.go), kept while a handler uses them; maxTTL and maxKeep
	// are the longest cache_ttl, and cache_ttl plus stale_if_error, of
	// the account's handlers.
	linksMu sync.Mutex
	links   map[string]*redisLink
	maxTTL  atomic.Int64
	maxKeep atomic.Int64

	// readsKeys: a handler of the account has api_keys, so every read
	// of a customer reads the keys too (see stripeClient.subscriptions),
	// unless Stripe refused them since keysDeniedUntil (unix nanos).
	readsKeys       atomic.Bool
	keysDeniedUntil atomic.Int64
	keysRefusals    logThrottle

	// recheckBelow: entries whose read began before this epoch count as
	// older than cache_ttl (see resubscribed).
	recheckBelow atomic.Uint64

	// What the admin API shows (admin.go): the Stripe reads of customers
	// and how many failed, and the handlers that use the account.
	stripeReads  atomic.Uint64
	stripeErrors atomic.Uint64
	handlersMu   sync.Mutex
	handlers     map[*Handler]struct{}
	keyHint      string // the last four characters of the key, for operators

	// offers: what the 402 pages sell, by price or product ID (offer.go).
	offersMu      sync.Mutex
	offers        map[string]*offerCell
	offerFailures logThrottle
	// soldMu orders the product default prices that handlers sell:
	// soldGen moves on with each product.updated, and a read that began
	// before it stores nothing (soldPrice).
	soldMu  sync.Mutex
	soldGen uint64
}

// limitSpec is a limit setting: n per window, of one kind (checkout,
// sign-in per address, sign-in per client address), so that two kinds with
// the same numbers do not share counts.
type limitSpec struct {
	kind   string
	n      int
	window time.Duration
}

type sharedLimiter struct {
	*clientLimiter
	users int
}

// limiter returns the account's limiter for a setting, made on first use.
// A config reload provisions the new handlers before it cleans up the old,
// so a setting that stays keeps its counts.
func (a *account) limiter(l limitSpec) *clientLimiter {
	a.limitersMu.Lock()
	defer a.limitersMu.Unlock()
	sl := a.limiters[l]
	if sl == nil {
		sl = &sharedLimiter{clientLimiter: newClientLimiter(l.n, l.window)}
		a.limiters[l] = sl
	}
	sl.users++
	return sl.clientLimiter
}

// releaseLimiter forgets a setting's limiter once no handler uses it.
func (a *account) releaseLimiter(l limitSpec) {
	a.limitersMu.Lock()
	defer a.limitersMu.Unlock()
	if sl := a.limiters[l]; sl != nil {
		if sl.users--; sl.users <= 0 {
			delete(a.limiters, l)
		}
	}
}

// customerEntry is one customer's facts as Stripe gave them. It is never
// changed once stored, but for its use mark (see makeRoom); a change stores
// a new entry, which keeps the mark.
type customerEntry struct {
	subs        []subscriptionState
	keys        *keyRing // with api_keys: the customer's API keys; nil when not read
	fetched     int64    // unix nanos of the Stripe read
	stale       bool     // a webhook said the customer changed since
	source      uint8    // where the facts came from: fromStripe, fromRedis
	useMark              // fits beside stale: the entry stays 64 bytes
	invalidated uint64   // epoch of the last invalidation
	readEpoch   uint64   // epoch when the stored read began
}

// facts is what Stripe said about a customer: the subscriptions and, when
// a handler of the account has api_keys, the API keys the customer's
// metadata holds (apikeys.go).
type facts struct {
	subs []subscriptionState
	keys *keyRing // nil when the read did not ask for them
}

func (e *customerEntry) facts() facts { return facts{subs: e.subs, keys: e.keys} }

// Where an entry's facts came from, for the admin API.
const (
	fromStripe uint8 = iota
	fromRedis
)

// useMark says an entry was used since eviction last looked at it: the
// "reference bit" of a second-chance (CLOCK) cache. See evictUnused.
type useMark struct{ used atomic.Bool }

// touch marks the entry used. It writes only when the mark is off (once
// per eviction sweep that cleared it), so that the hits of a customer read
// a cache line they share and take no write lock, and allocate nothing.
func (m *useMark) touch() {
	if !m.used.Load() {
		m.used.Store(true)
	}
}

func (m *useMark) mark() *useMark { return m }

// marked is an entry with a use mark.
type marked interface{ mark() *useMark }

// evictUnused deletes n entries of a full map, least recently used first,
// by "second chance" (CLOCK): it walks the map, clears the mark of an entry
// used since the last walk passed it and spares it, and deletes entries
// without the mark. An entry in use is hit again before a walk comes back
// to it, and stays: a burst of visitors who come once evicts, first, the
// entries nobody used since, theirs among them. Called with the map's lock
// held (its hits only read it: they need no write lock and allocate
// nothing, which a list kept in order of use would not allow).
//
// The walk starts where Go's range starts. Caddy's basic auth cache (its
// makeRoom, in caddyauth) does not evict from there: Go's map order is
// "nondeterministic", not random, and chopping off the front of the map
// is "a heavily skewed eviction strategy" (an entry just after the slots a
// deletion emptied comes first more often). The map's order alone, which
// this eviction replaces, made some entries likelier to go than others,
// and took no account of their use. Here the order only decides which
// walk passes an entry; its mark decides whether it goes, and where an
// entry sits in the map has nothing to do with when it was used. Caddy's
// cure, a uniform pick that walks half the map on average, would cost half
// a million steps per deletion in a cache of a million.
//
// When nearly every entry the walk meets is in use (the cache is too small
// for the visitors who are active), it stops sparing them after clearing
// 8n marks, so that an eviction under the lock visits at most 9n entries.
func evictUnused[K comparable, E marked](m map[K]E, n int, drop func(K)) {
	spare := 8 * n
	for n > 0 && len(m) > 0 {
		for k, e := range m {
			if u := &e.mark().used; spare > 0 && u.Load() {
				u.Store(false)
				spare--
				continue
			}
			drop(k)
			if n--; n <= 0 {
				return
			}
		}
	}
}

func newAccount(max int) *account {
	return &account{
		customers: make(map[string]*customerEntry),
		max:       max,
		strs:      make(map[string]string),
		recent:    make(map[string]uint64),

		checkoutBudget: newTokenBucket(checkoutBudgetRate, checkoutBudgetBurst),
		signinBudget:   newTokenBucket(signinBudgetRate, signinBudgetBurst),
		limiters:       make(map[limitSpec]*sharedLimiter),
		logins:         make(map[string]*loginCache),
		links:          make(map[string]*redisLink),
		handlers:       make(map[*Handler]struct{}),
		offers:         make(map[string]*offerCell),
	}
}

// Destruct implements caddy.Destructor; the account holds no resources.
func (a *account) Destruct() error { return nil }

// grow raises the bound when a handler of the same account asks for more,
// and the longest cache_ttl and life of facts in Redis.
func (a *account) grow(max int, ttl, keep time.Duration) {
	a.mu.Lock()
	if max > a.max {
		a.max = max
	}
	a.mu.Unlock()
	for _, m := range []struct {
		v *atomic.Int64
		d time.Duration
	}{{&a.maxTTL, ttl}, {&a.maxKeep, keep}} {
		for {
			old := m.v.Load()
			if int64(m.d) <= old || m.v.CompareAndSwap(old, int64(m.d)) {
				break
			}
		}
	}
}

// keepFor is how long facts and generations live in Redis.
func (a *account) keepFor() time.Duration {
	return max(time.Duration(a.maxKeep.Load()), time.Minute)
}

// register and unregister keep the set of the account's handlers, for the
// admin API.
func (a *account) register(h *Handler) {
	a.handlersMu.Lock()
	a.handlers[h] = struct{}{}
	a.handlersMu.Unlock()
}

func (a *account) unregister(h *Handler) {
	a.handlersMu.Lock()
	delete(a.handlers, h)
	a.handlersMu.Unlock()
}

// handlersSnapshot lists the handlers that use the account.
func (a *account) handlersSnapshot() []*Handler {
	a.handlersMu.Lock()
	defer a.handlersMu.Unlock()
	out := make([]*Handler, 0, len(a.handlers))
	for h := range a.handlers {
		out = append(out, h)
	}
	return out
}

// resubscribed is called when this instance hears invalidations again
// after it could not (and when it first starts to): invalidations published
// in between are lost to it, so every customer it holds counts as older
// than cache_ttl. Known facts still serve while they are read again (their
// read time and stale_if_error are theirs still), and the read asks Redis
// first, which holds the generation those facts must match: a customer who
// did not change costs a Redis read, not a Stripe one. One atomic store,
// however many customers are held: the hits compare their entry's epoch
// with it.
func (a *account) resubscribed() {
	a.recheckBelow.Store(a.epoch.Add(1))
}

// peek returns a customer's entry without marking it used.
func (a *account) peek(customer string) *customerEntry {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.customers[customer]
}

// get returns a customer's entry, marked used (see makeRoom).
func (a *account) get(customer string) *customerEntry {
	a.mu.RLock()
	e := a.customers[customer]
	a.mu.RUnlock()
	if e != nil {
		e.touch()
	}
	return e
}

func (a *account) len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.customers)
}

// store keeps a fresh read unless the customer was invalidated after the
// read began.
func (a *account) store(customer string, f facts, fetched int64, startEpoch uint64, source uint8) {
	subs := f.subs
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.customers[customer]
	// A read that began before the last invalidation, or before the read
	// already stored, knows less than what is there.
	if old != nil && (old.invalidated > startEpoch || old.readEpoch > startEpoch) {
		return
	}
	// A customer this node did not hold may have been invalidated while
	// this read ran: keep the answer, but read again on the next request.
	stale := false
	if old == nil {
		stale = a.recent[customer] > startEpoch || a.recentFloor > startEpoch
		delete(a.recent, customer)
	}
	for i := range subs {
		subs[i].Status = internStatus(subs[i].Status)
		for j := range subs[i].Items {
			subs[i].Items[j].Price = a.intern(subs[i].Items[j].Price)
			subs[i].Items[j].Product = a.intern(subs[i].Items[j].Product)
		}
	}
	if old == nil && len(a.customers) >= a.max {
		a.makeRoom()
	}
	e := &customerEntry{subs: subs, keys: f.keys, fetched: fetched, stale: stale, readEpoch: startEpoch, source: source}
	if old != nil {
		e.invalidated = old.invalidated
		e.used.Store(old.used.Load())
	}
	a.customers[customer] = e
}

// invalidate marks a customer's facts stale and keeps them, so that they can
// still serve if Stripe cannot be reached for the fresh ones. It reports
// whether the customer was known here.
func (a *account) invalidate(customer string) bool {
	a.mu.Lock()
	epoch := a.epoch.Add(1)
	old := a.customers[customer]
	if old != nil {
		e := &customerEntry{subs: old.subs, keys: old.keys, fetched: old.fetched, stale: true, invalidated: epoch, readEpoch: old.readEpoch, source: old.source}
		e.used.Store(old.used.Load())
		a.customers[customer] = e
	} else {
		a.rememberInvalidation(customer, epoch)
	}
	a.mu.Unlock()
	a.flights.Forget(customer)
	return old != nil
}

// rememberInvalidation keeps the epoch of an invalidation of a customer this
// node does not hold (any more), so that a read of theirs that began before
// it is not stored as fresh. Called with mu held.
func (a *account) rememberInvalidation(customer string, epoch uint64) {
	if len(a.recent) >= 10_000 {
		clear(a.recent)
		a.recentFloor = max(a.recentFloor, epoch)
	}
	a.recent[customer] = max(a.recent[customer], epoch)
}

// makeRoom drops about one in a hundred entries, so that a full cache does
// not evict on every insert: those used least recently, by second chance
// (see evictUnused). A customer's entry is marked used by every lookup, and
// is stored unmarked, so that a visitor who comes once and never again
// goes before the subscribers who keep coming. Called with mu held.
func (a *account) makeRoom() {
	evictUnused(a.customers, max(1, a.max/100), func(k string) {
		// An entry a webhook invalidated takes its invalidation with
		// it: a read that began before the webhook must still not be
		// stored as fresh.
		if e := a.customers[k]; e.invalidated > 0 {
			a.rememberInvalidation(k, e.invalidated)
		}
		delete(a.customers, k)
	})
}

func (a *account) intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := a.strs[s]; ok {
		return v
	}
	if len(a.strs) < 10_000 {
		a.strs[s] = s
	}
	return s
}

func internStatus(s string) string {
	for _, known := range [...]string{"active", "trialing", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "paused"} {
		if s == known {
			return known
		}
	}
	return s
}

// down reports whether Stripe failed within outageBackoff.
func (a *account) down(t int64) bool {
	return t < a.downUntil.Load()
}

// errUnknownUnavailable is returned when Stripe cannot be reached and
// nothing is known about the customer: the visitor must wait, not pay.
var errUnknownUnavailable = errors.New("customer state unknown and stripe unavailable")

// customerState returns the subscriptions of a customer, from the cache when
// the entry is younger than cache_ttl, otherwise from one Stripe read shared
// by all concurrent callers; t is now in unix nanoseconds. When Stripe cannot be reached, known facts
// serve for stale_if_error.
func (h *Handler) customerState(customer string, t int64) (facts, error) {
	a := h.account
	e := a.get(customer)
	if e != nil && !e.stale && t-e.fetched < int64(h.CacheTTL) && e.readEpoch >= a.recheckBelow.Load() {
		return e.facts(), nil
	}
	// Known facts that merely aged past cache_ttl may answer if Stripe is
	// slow; facts a webhook said changed may not.
	usable := e != nil && e.fetched > 0 && t-e.fetched < int64(h.CacheTTL)+int64(h.staleIfError)
	if !a.down(t) {
		// Joined here, so that concurrent misses share one read. The
		// wait may end before the read (see staleWait): it is counted
		// in reads until it ends, from before this request can end, so
		// that whoever waits for reads never misses one.
		flight := a.flights.DoChan(customer, func() (any, error) {
			return h.readCustomer(customer, false)
		})
		ch := make(chan singleflight.Result, 1)
		a.reads.Add(1)
		go func() {
			defer a.reads.Done()
			ch <- <-flight
		}()
		var res singleflight.Result
		if usable && !e.stale {
			if a.slow.Load() {
				// Stripe is slow: serve what we know at once;
				// the read goes on and fills the cache.
				cacheEvents.WithLabelValues("stale_served").Inc()
				return e.facts(), nil
			}
			fired, stop := staleTimer()
			select {
			case res = <-ch:
				stop()
			case <-fired:
				a.slow.Store(true)
				cacheEvents.WithLabelValues("stale_served").Inc()
				return e.facts(), nil
			}
		} else {
			res = <-ch
		}
		if res.Err == nil {
			return res.Val.(facts), nil
		}
		cacheEvents.WithLabelValues("stripe_error").Inc()
		h.logStripeFailure(res.Err)
	}
	if usable {
		cacheEvents.WithLabelValues("stale_served").Inc()
		return e.facts(), nil
	}
	if e == nil && h.redis.usable() {
		// Stripe cannot answer and this instance never read the
		// customer: what another instance read serves, within
		// stale_if_error, as this instance's own facts would.
		if f, fetched, ok := h.redis.peek(customer); ok && t-fetched < int64(h.CacheTTL)+int64(h.staleIfError) {
			// Not the keys: Redis's copy may hold one revoked since
			// it was read, which this instance never heard of. A
			// program of this customer waits for Stripe here.
			f.keys = nil
			a.store(customer, f, fetched, a.epoch.Load(), fromRedis)
			a.invalidate(customer) // read Stripe again once it answers
			cacheEvents.WithLabelValues("stale_served").Inc()
			return f, nil
		}
	}
	return facts{}, errUnknownUnavailable
}

// refreshCustomer marks a customer's facts stale, on every instance when
// Redis is configured, and reads them again now, whatever the caches hold,
// unless Stripe is down or, with onlyKnown, this node does not hold the
// customer. It reports whether it read. Webhooks and the admin API call it.
func (h *Handler) refreshCustomer(customer string, onlyKnown bool) (bool, error) {
	known := h.invalidate(customer)
	if onlyKnown && !known {
		return false, nil
	}
	if h.account.down(now().UnixNano()) {
		return false, errStripeUnavailable
	}
	_, err, _ := h.account.flights.Do(customer, func() (any, error) {
		return h.readCustomer(customer, true)
	})
	return true, err
}

// invalidate marks a customer's facts stale here and, when Redis is
// configured, on every instance. It reports whether this node held them.
func (h *Handler) invalidate(customer string) bool {
	known := h.account.invalidate(customer)
	if h.redis != nil {
		h.redis.invalidate(customer)
	}
	return known
}

// logStripeFailure logs a Stripe call that failed, once a minute at most
// with how many failed since: during an outage, every visitor's request
// fails the same way.
func (h *Handler) logStripeFailure(err error) {
	if log, n := h.account.stripeFailures.allow(now().UnixNano()); log {
		msg := "stripe call failed; known facts keep serving, others are asked to retry"
		if !errors.Is(err, errStripeUnavailable) {
			msg = "stripe refused a request (or found nothing it names); every request like it fails until the cause, such as a price or a setting, is fixed"
		}
		h.logger.Warn(msg, zap.Error(err), zap.Int("failures_since_last_line", n))
	}
}

// readCustomer reads a customer's facts: from Redis when another instance
// read them in this cache_ttl (unless force), else from Stripe, storing the
// read in Redis for the others. When another instance is reading Stripe
// for the customer, it waits for that read, up to sharedReadWait.
func (h *Handler) readCustomer(customer string, force bool) (facts, error) {
	a := h.account
	start := a.epoch.Load()
	withKeys := a.readsKeys.Load() && !a.keysDenied(now().UnixNano())
	var sf sharedFacts
	shared := h.redis.usable()
	if shared {
		var err error
		sf, err = h.sharedRead(customer, force)
		shared = err == nil
		// Facts that another instance read without the keys do not
		// answer a handler with api_keys.
		if shared && sf.fresh && (sf.facts.keys != nil || !withKeys) {
			a.store(customer, sf.facts, sf.fetched, start, fromRedis)
			return sf.facts, nil
		}
	}
	cacheEvents.WithLabelValues("stripe_read").Inc()
	a.stripeReads.Add(1)
	f, err := h.stripe.subscriptions(context.Background(), customer, withKeys)
	t := now().UnixNano()
	if errors.Is(err, errKeysForbidden) {
		h.keysForbidden(t)
		err = nil
	}
	if err != nil {
		a.stripeErrors.Add(1)
		if errors.Is(err, errStripeUnavailable) {
			a.downUntil.Store(t + int64(outageBackoff))
		}
		if shared {
			h.redis.release(customer, sf)
		}
		return facts{}, err
	}
	a.slow.Store(false)
	a.store(customer, f, t, start, fromStripe)
	if shared && !h.redis.store(customer, sf, f, t) {
		// A change was published while this read ran, perhaps
		// while this instance could not hear it: read again at the
		// next request.
		a.invalidate(customer)
	}
	return f, nil
}

// sharedReadWait bounds how long a read waits for another instance's read
// of the same customer before it reads Stripe itself; sharedReadPoll is how
// often it looks.
var (
	sharedReadWait = 2 * time.Second
	sharedReadPoll = 10 * time.Millisecond
)

// sharedRead asks Redis for a customer before a Stripe read, and takes the
// read's lock; when another instance holds it, it waits for that
// instance's facts.
func (h *Handler) sharedRead(customer string, force bool) (sharedFacts, error) {
	lockFor := time.Duration(h.StripeTimeout) + time.Second
	sf, err := h.redis.begin(customer, force, time.Duration(h.CacheTTL), lockFor)
	if err != nil || force || sf.fresh || sf.locked || sf.unreadable {
		return sf, err
	}
	deadline := time.Now().Add(min(sharedReadWait, time.Duration(h.StripeTimeout)))
	for time.Now().Before(deadline) {
		time.Sleep(sharedReadPoll)
		if sf, err = h.redis.begin(customer, false, time.Duration(h.CacheTTL), lockFor); err != nil || sf.fresh || sf.locked || sf.unreadable {
			return sf, err
		}
	}
	return sf, nil
}
