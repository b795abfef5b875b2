package paywall

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const (
	defaultCheckoutLimit  = 30
	defaultCheckoutWindow = 10 * time.Minute

	// maxLimitedClients bounds the addresses one limiter remembers.
	maxLimitedClients = 100_000
)

// Stripe's checkout calls (creating a session, looking an earlier one up)
// draw on a budget of their own, so that a flood of checkouts from many
// addresses cannot spend the account's Stripe rate limit and leave payers
// whose facts are not cached with 503s. Stripe allows about 100 requests a
// second per account in live mode (25 in test mode), and 25 a second to any
// one endpoint; 10 checkouts a second (a burst of 20) leaves reads at least
// 75 % of live mode's limit and 15 of test mode's 25, and is far more than
// a site sells: 10 a second is 864,000 checkouts a day. Reads for payers
// have no budget: they are already one per customer per cache_ttl, and are
// what must not fail.
const (
	checkoutBudgetRate  = 10
	checkoutBudgetBurst = 20
)

// limitFrom is the setting of a configured limit: the default when none
// is configured, n 0 when it is off.
func limitFrom(l *Limit, kind string, n int, window time.Duration) limitSpec {
	spec := limitSpec{kind: kind, n: n, window: window}
	switch {
	case l == nil:
	case l.Off:
		spec.n = 0
	case l.Max > 0:
		spec.n = l.Max
		if l.Per > 0 {
			spec.window = time.Duration(l.Per)
		}
	}
	return spec
}

// limiter is a configured limit of a handler. With Redis it counts across
// instances (see redis.go); it counts here too, and this count answers
// whenever Redis does not.
type limiter struct {
	local  *clientLimiter
	shared *redisLink // nil without Redis
	name   string     // the counters' name in Redis, before the address
}

// newLimiter is a handler's limiter; tag names the account in Redis, whose
// limits are counted apart from other accounts', as they are in memory.
func newLimiter(local *clientLimiter, spec limitSpec, shared *redisLink, tag string) *limiter {
	return &limiter{local: local, shared: shared,
		name: "limit:" + tag + ":" + strings.ReplaceAll(spec.kind, " ", "_") + ":" + strconv.Itoa(spec.n) + "/" + strconv.FormatInt(spec.window.Milliseconds(), 10) + ":"}
}

// allow takes one event for addr at t; when refused, wait is how long
// until the next one is allowed.
func (l *limiter) allow(addr string, t int64) (bool, time.Duration) {
	ok, wait := l.local.allow(addr, t)
	if l.shared.usable() {
		if sok, swait, err := l.shared.limit(l.name+hashed(addr), time.Duration(l.local.interval), time.Duration(l.local.slack), true); err == nil {
			return sok, swait
		}
	}
	return ok, wait
}

// wouldAllow reports whether allow would take an event, without taking it.
func (l *limiter) wouldAllow(addr string, t int64) (bool, time.Duration) {
	if l.shared.usable() {
		if ok, wait, err := l.shared.limit(l.name+hashed(addr), time.Duration(l.local.interval), time.Duration(l.local.slack), false); err == nil {
			return ok, wait
		}
	}
	return l.local.wouldAllow(addr, t)
}

// budget is one of an account's budgets of Stripe calls: with Redis, one
// for the whole cluster (Stripe's rate limit is the account's, whatever
// instance calls), else this instance's.
type budget struct {
	local     *tokenBucket
	shared    *redisLink
	tag, kind string // the counter in Redis is budget:<tag>:<kind>
}

// budget is one of the account's budgets for this handler.
func (h *Handler) budget(b *tokenBucket, kind string) budget {
	return budget{local: b, shared: h.redis, tag: h.accountTag, kind: kind}
}

func (b budget) take(t int64) bool {
	ok := b.local.take(t)
	if b.shared.usable() {
		interval := time.Duration(float64(time.Second) / b.local.rate)
		if sok, _, err := b.shared.limit("budget:"+b.tag+":"+b.kind, interval, time.Duration(b.local.burst-1)*interval, true); err == nil {
			return sok
		}
	}
	return ok
}

// clientLimiter allows each client address n events per window, with the
// generic cell rate algorithm: one timestamp per address (the time at which
// its allowance is whole again, plus what it used), no timers.
//
// It forgets first the addresses whose allowance has fully come back, which
// lose nothing by being forgotten. Under a flood from more addresses than it
// holds (maxLimitedClients) it then forgets arbitrary ones, each of which
// can start again with at most n: the flood is bounded by its addresses,
// and no address is refused for lack of room.
type clientLimiter struct {
	interval int64 // window / n, in nanoseconds
	slack    int64 // window - interval: how far ahead an address may run
	max      int

	mu  sync.Mutex
	tat map[string]int64 // theoretical arrival time, unix nanos
}

func newClientLimiter(n int, window time.Duration) *clientLimiter {
	interval := int64(window) / int64(n)
	return &clientLimiter{
		interval: interval,
		slack:    int64(window) - interval,
		max:      maxLimitedClients,
		tat:      make(map[string]int64),
	}
}

// allow takes one event for addr at t (unix nanos). When refused, wait is
// how long until the next one is allowed.
func (l *clientLimiter) allow(addr string, t int64) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, known := l.tat[addr]
	if tat < t {
		tat = t
	}
	if tat-t > l.slack {
		return false, time.Duration(tat - t - l.slack)
	}
	if !known && len(l.tat) >= l.max {
		l.makeRoom(t)
	}
	l.tat[addr] = tat + l.interval
	return true, 0
}

// wouldAllow reports whether allow would take an event for addr at t,
// without taking it; when not, wait is how long until it would.
func (l *clientLimiter) wouldAllow(addr string, t int64) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := max(l.tat[addr], t)
	if tat-t > l.slack {
		return false, time.Duration(tat - t - l.slack)
	}
	return true, 0
}

// makeRoom forgets every address whose allowance is whole again and, if that
// is not enough, about one in a hundred others. Called with mu held.
func (l *clientLimiter) makeRoom(t int64) {
	for k, tat := range l.tat {
		if tat <= t {
			delete(l.tat, k)
		}
	}
	n := l.max / 100
	for k := range l.tat {
		if len(l.tat) < l.max || n <= 0 {
			return
		}
		delete(l.tat, k)
		n--
	}
}

// tokenBucket allows rate events a second with bursts of burst.
type tokenBucket struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	last   int64 // unix nanos
}

func newTokenBucket(rate, burst int) *tokenBucket {
	return &tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst)}
}

// take uses one token at t (unix nanos), if there is one.
func (b *tokenBucket) take(t int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last != 0 && t > b.last {
		b.tokens = min(b.burst, b.tokens+float64(t-b.last)/float64(time.Second)*b.rate)
	}
	if t > b.last {
		b.last = t
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientIP is the visitor's address as Caddy determined it, honouring the
// server's trusted_proxies; the connection's address outside Caddy.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
