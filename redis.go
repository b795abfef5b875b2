package paywall

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Redis lets several Caddy instances of one site share what each would
// otherwise keep alone: what Stripe said about a customer, the news that it
// changed, the used sign-in links and every rate-limit counter. It is an
// accelerator, never a new way to lock out a payer: every operation has a
// bound of tens of milliseconds, and while Redis fails each instance does
// what it does without Redis, from its own memory.
//
// What lives in Redis, under the configured prefix (default "paywall:"):
//
//	cus:<customer>    a hash: g, the customer's generation, raised by every
//	                  invalidation; s, the facts as JSON; f, the unix
//	                  milliseconds of their Stripe read; fg, the generation
//	                  they were read in. Facts count only in the generation
//	                  they were read in, so a read that began before a
//	                  webhook is never taken for fresh, whatever the clocks
//	                  of the instances say. Kept for cache_ttl plus
//	                  stale_if_error, so that a Stripe outage finds them.
//	lock:<customer>   held by the instance reading Stripe for the customer,
//	                  so that concurrent misses across instances make about
//	                  one read; it expires by itself after stripe_timeout.
//	signin:<link>     a used sign-in link, until the link expires.
//	limit:<…>:<hash>  a rate limit's counter for one address (hashed: the
//	                  addresses of visitors and their emails stay out of
//	                  Redis), as the time its allowance is whole again.
//	budget:<account>  an account's Stripe call budgets (checkout, sign-in).
//	invalidate        the channel of invalidations: "<instance> <customer>".
//
// Invalidations travel by pub/sub rather than a stream: an instance needs
// only the news from the moment it listens (what it cached before was read
// at the generation Redis holds, and is checked against it again after any
// gap, see resubscribed), and pub/sub costs no storage and no trimming. What
// pub/sub loses while an instance cannot hear it, that instance makes up
// for when it hears again; what an instance could not publish while Redis
// was down, it publishes when Redis returns (see pending).

// The bounds on Redis: one operation may take redisTimeout (connecting,
// twice that); after a failure, the request path leaves Redis alone for
// redisBackoff, so that an outage costs a request nothing after the first.
var (
	redisTimeout = 50 * time.Millisecond
	redisBackoff = time.Second
	// redisRetry is how long the listener waits between attempts to
	// subscribe again; redisPing is how long it hears nothing before it
	// pings, and twice that before it takes the connection for dead.
	redisRetry = time.Second
	redisPing  = time.Second
)

const (
	defaultRedisPrefix = "paywall:"

	// maxPendingInvalidations bounds the invalidations kept to publish
	// when Redis returns; beyond it, the others converge within cache_ttl.
	maxPendingInvalidations = 10_000
)

// redisLink is one Redis client, shared by the handlers of one account
// that name the same Redis and prefix, and kept across config reloads like
// the account itself. It starts listening for invalidations at its first
// use, not when provisioned: caddy validate and adapt provision too, and
// must make no network call.
type redisLink struct {
	client  *redis.Client
	prefix  string
	where   string // the URL without its password, for logs and the admin API
	id      string // this instance, so that it skips its own invalidations
	account *account
	logger  *zap.Logger
	users   int // handlers using it; guarded by account.linksMu

	start  sync.Once
	cancel context.CancelFunc
	done   chan struct{} // closed when the listener returns
	psMu   sync.Mutex
	ps     *redis.PubSub // the listener's subscription, closed to end it

	downUntil  atomic.Int64 // unix nanos; the request path skips Redis until then
	out        atomic.Bool  // in an outage, logged once
	outSince   atomic.Int64
	failures   atomic.Uint64 // operations that failed during this outage
	listening  atomic.Bool   // subscribed to invalidations
	subscribed atomic.Uint64 // times it subscribed: 1, and one more after every gap

	pendingMu sync.Mutex
	pending   map[string]struct{} // invalidations Redis did not take
	overflow  bool                // some were not even kept
}

// redisSettings resolves and checks the redis options: the client's
// options and how the URL may be shown. Errors name the option and never
// show a password.
func redisSettings(raw string) (*redis.Options, string, error) {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, "", fmt.Errorf("redis: %s is not a Redis URL (redis://[:password@]host:port/db, rediss://… or unix:///path): %s",
			redactedURL(raw), redactErr(err, raw))
	}
	opts.DialTimeout = 2 * redisTimeout
	opts.ReadTimeout = redisTimeout
	opts.WriteTimeout = redisTimeout
	opts.PoolTimeout = redisTimeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // a retry would double the bound; the caller falls back instead
	opts.DisableIdentity = true
	return opts, redactedURL(raw), nil
}

// redactedURL is a Redis URL with its password (and a username's) hidden.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	return u.Redacted()
}

// redactErr is an error's text without the URL's user and password in it,
// even when the URL does not parse (url.Parse's errors quote it whole).
func redactErr(err error, raw string) string {
	msg := err.Error()
	if info := userinfo(raw); info != "" {
		msg = strings.ReplaceAll(msg, info, "xxxxx")
	}
	return msg
}

// userinfo is the "user:password" of a URL, found as text.
func userinfo(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i > 0 {
		return rest[:i]
	}
	return ""
}

func newRedisLink(opts *redis.Options, where, prefix string, a *account, logger *zap.Logger) *redisLink {
	var id [8]byte
	rand.Read(id[:])
	return &redisLink{
		client:  redis.NewClient(opts),
		prefix:  prefix,
		where:   where,
		id:      hex.EncodeToString(id[:]),
		account: a,
		logger:  logger,
		done:    make(chan struct{}),
		pending: make(map[string]struct{}),
	}
}

// redisLink returns the account's link to a Redis and prefix, made on first
// use; releaseRedisLink closes it once no handler uses it.
func (a *account) redisLink(raw, prefix string, logger *zap.Logger) (*redisLink, error) {
	opts, where, err := redisSettings(raw)
	if err != nil {
		return nil, err
	}
	key := raw + "\x00" + prefix
	a.linksMu.Lock()
	defer a.linksMu.Unlock()
	l := a.links[key]
	if l == nil {
		l = newRedisLink(opts, where, prefix, a, logger)
		a.links[key] = l
	}
	l.users++
	return l, nil
}

func (a *account) releaseRedisLink(l *redisLink) {
	a.linksMu.Lock()
	defer a.linksMu.Unlock()
	if l.users--; l.users > 0 {
		return
	}
	for k, v := range a.links {
		if v == l {
			delete(a.links, k)
		}
	}
	l.close()
}

// linksSnapshot lists the account's Redis links.
func (a *account) linksSnapshot() []*redisLink {
	a.linksMu.Lock()
	defer a.linksMu.Unlock()
	out := make([]*redisLink, 0, len(a.links))
	for _, l := range a.links {
		out = append(out, l)
	}
	return out
}

// ensure starts listening for invalidations, once.
func (l *redisLink) ensure() {
	l.start.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel = cancel
		go l.listen(ctx)
	})
}

func (l *redisLink) close() {
	l.start.Do(func() { close(l.done) }) // never started: nothing listens
	if l.cancel != nil {
		l.cancel()
		l.psMu.Lock()
		if l.ps != nil {
			l.ps.Close() // ends a read that would wait for redisPing
		}
		l.psMu.Unlock()
		<-l.done
	}
	l.client.Close()
}

// usable reports whether the request path may ask Redis now.
func (l *redisLink) usable() bool {
	if l == nil {
		return false
	}
	l.ensure()
	return now().UnixNano() >= l.downUntil.Load()
}

// failed notes an operation that failed: the request path leaves Redis
// alone for redisBackoff, and the first failure of an outage is logged.
func (l *redisLink) failed(err error) {
	redisErrors.Inc()
	t := now().UnixNano()
	l.downUntil.Store(t + int64(redisBackoff))
	l.failures.Add(1)
	if !l.out.Swap(true) {
		l.outSince.Store(t)
		l.logger.Warn("redis unavailable: each instance serves from its own memory and limits on its own until it returns; "+
			"this is logged once per outage (see the metric caddy_paywall_redis_errors_total)",
			zap.String("redis", l.where), zap.Error(errors.New(redactErr(err, l.where))))
	}
}

// ok notes an operation that succeeded; the first after an outage ends it,
// and publishes what could not be published during it.
func (l *redisLink) ok() {
	if l.out.Load() && l.out.Swap(false) {
		since := time.Duration(now().UnixNano() - l.outSince.Load())
		l.logger.Info("redis reachable again", zap.String("redis", l.where),
			zap.Duration("outage", since), zap.Uint64("failed_operations", l.failures.Swap(0)))
		l.account.reads.Add(1)
		go func() {
			defer l.account.reads.Done()
			l.publishPending()
		}()
	}
}

// result notes the outcome of an operation; redis.Nil is an answer.
func (l *redisLink) result(err error) error {
	if err != nil && !errors.Is(err, redis.Nil) {
		l.failed(err)
		return err
	}
	l.ok()
	return nil
}

func (l *redisLink) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), redisTimeout)
}

func (l *redisLink) key(parts ...string) string {
	return l.prefix + strings.Join(parts, ":")
}

// hashed is an address (a client's IP, an email) as it appears in a Redis
// key: not readable by whoever reads Redis.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

// The scripts run atomically in Redis. Times are unix milliseconds: Lua's
// numbers are doubles, exact to 2^53, which nanoseconds exceed.

// beginScript looks a customer up before a Stripe read: it returns the
// generation, the facts and their read time and generation, and, when the
// facts are not fresh (or force is set), whether it took the read's lock.
// KEYS: cus, lock. ARGV: token, lock ms, force, oldest fresh read ms.
var beginScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'g', 's', 'f', 'fg')
local g = tonumber(h[1]) or 0
local s = h[2] or ''
local f = tonumber(h[3]) or 0
local fg = tonumber(h[4]) or -1
if ARGV[3] == '0' and s ~= '' and fg == g and f >= tonumber(ARGV[4]) then
	return {g, s, f, fg, 0}
end
local locked = 0
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then locked = 1 end
return {g, s, f, fg, locked}
`)

// storeScript keeps a Stripe read made in generation ARGV[1], unless an
// invalidation came since or a later read of the same generation is
// there, and gives up the lock if this read held it.
// KEYS: cus, lock. ARGV: generation, read ms, facts, ttl ms, token.
var storeScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'g', 'f', 'fg')
local g = tonumber(h[1]) or 0
local stored = 0
if g == tonumber(ARGV[1]) and ((tonumber(h[3]) or -1) ~= g or (tonumber(h[2]) or 0) < tonumber(ARGV[2])) then
	redis.call('HSET', KEYS[1], 'g', g, 's', ARGV[3], 'f', ARGV[2], 'fg', g)
	redis.call('PEXPIRE', KEYS[1], ARGV[4])
	stored = 1
end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return stored
`)

// invalidateScript raises a customer's generation, so that no instance
// takes the facts read before it for fresh, and tells every instance.
// KEYS: cus. ARGV: ttl ms, channel, message.
var invalidateScript = redis.NewScript(`
local g = redis.call('HINCRBY', KEYS[1], 'g', 1)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return g
`)

// gcraScript is clientLimiter's generic cell rate algorithm in Redis: it
// returns 0 when an event is allowed (and, with take, counts it), else how
// many milliseconds until one would be.
// KEYS: counter. ARGV: now ms, interval ms, slack ms, take.
var gcraScript = redis.NewScript(`
local t = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or t
if tat < t then tat = t end
if tat - t > slack then return tat - t - slack end
if ARGV[4] == '1' then redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - t) end
return 0
`)

// sharedFacts is what Redis holds about a customer when a read begins.
type sharedFacts struct {
	gen      int64
	subs     []subscriptionState // nil when Redis holds none
	fetched  int64               // unix nanos of their Stripe read
	current  bool                // read in the current generation
	fresh    bool                // current, and younger than cache_ttl
	locked   bool                // this read holds the lock
	lockName string
}

// begin asks Redis for a customer's facts before a Stripe read; with force
// it wants only the generation and the lock.
func (l *redisLink) begin(customer string, force bool, ttl, lockFor time.Duration) (sharedFacts, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	t := now()
	token := l.id + strconv.FormatInt(t.UnixNano(), 36)
	forced := "0"
	if force {
		forced = "1"
	}
	res, err := beginScript.Run(ctx, l.client, []string{l.key("cus", customer), l.key("lock", customer)},
		token, lockFor.Milliseconds(), forced, t.Add(-ttl).UnixMilli()).Slice()
	if l.result(err) != nil {
		return sharedFacts{}, err
	}
	if len(res) != 5 {
		return sharedFacts{}, fmt.Errorf("redis: unexpected answer to begin: %d values", len(res))
	}
	gen, _ := res[0].(int64)
	s, _ := res[1].(string)
	f, _ := res[2].(int64)
	fg, _ := res[3].(int64)
	locked, _ := res[4].(int64)
	sf := sharedFacts{gen: gen, current: fg == gen, locked: locked == 1}
	if locked == 1 {
		sf.lockName = token
	}
	if s != "" {
		if err := json.Unmarshal([]byte(s), &sf.subs); err != nil {
			// Not ours to trust (another version wrote it, or not us):
			// the Stripe read that follows writes it anew.
			sf.subs, sf.current = nil, false
		} else {
			if sf.subs == nil {
				sf.subs = []subscriptionState{}
			}
			sf.fetched = time.UnixMilli(f).UnixNano()
			sf.fresh = sf.current && !force && t.UnixNano()-sf.fetched < int64(ttl)
		}
	}
	return sf, nil
}

// store writes a Stripe read made in the generation begin gave, and
// releases the read's lock.
func (l *redisLink) store(customer string, sf sharedFacts, subs []subscriptionState, fetched int64, keep time.Duration) {
	if subs == nil {
		subs = []subscriptionState{}
	}
	b, err := json.Marshal(subs)
	if err != nil {
		return
	}
	ctx, cancel := l.ctx()
	defer cancel()
	err = storeScript.Run(ctx, l.client, []string{l.key("cus", customer), l.key("lock", customer)},
		sf.gen, time.Unix(0, fetched).UnixMilli(), b, keep.Milliseconds(), sf.lockName).Err()
	l.result(err)
}

// invalidate tells every instance that a customer changed. When Redis
// cannot take it, it is kept to publish when Redis returns. It tries Redis
// even while the request path leaves it alone after a failure: a change is
// rare (a webhook, a checkout), and one slow operation must not keep it
// from the other instances until something else on this one asks Redis.
// Its success ends the outage, and publishes what was kept.
func (l *redisLink) invalidate(customer string, keep time.Duration) {
	l.ensure()
	if err := l.publish(customer, keep); err != nil {
		l.keepPending(customer)
		return
	}
	invalidations.WithLabelValues("published").Inc()
}

func (l *redisLink) publish(customer string, keep time.Duration) error {
	ctx, cancel := l.ctx()
	defer cancel()
	err := invalidateScript.Run(ctx, l.client, []string{l.key("cus", customer)},
		keep.Milliseconds(), l.key("invalidate"), l.id+" "+customer).Err()
	return l.result(err)
}

func (l *redisLink) keepPending(customer string) {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	if len(l.pending) >= maxPendingInvalidations {
		if !l.overflow {
			l.overflow = true
			invalidations.WithLabelValues("lost").Inc()
		}
		return
	}
	l.pending[customer] = struct{}{}
}

// publishPending publishes the invalidations Redis could not take during
// an outage, so that the other instances learn them as soon as they hear
// again, not cache_ttl later. Each keeps the longest life a handler gives
// facts (see account.keepFor).
func (l *redisLink) publishPending() {
	l.pendingMu.Lock()
	pending := l.pending
	l.pending = make(map[string]struct{})
	l.overflow = false
	l.pendingMu.Unlock()
	keep := l.account.keepFor()
	for customer := range pending {
		if err := l.publish(customer, keep); err != nil {
			l.pendingMu.Lock()
			for c := range pending {
				l.pending[c] = struct{}{}
			}
			l.pendingMu.Unlock()
			return
		}
		delete(pending, customer)
		invalidations.WithLabelValues("published").Inc()
	}
}

func (l *redisLink) pendingCount() int {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	return len(l.pending)
}

// listen hears the other instances' invalidations until ctx ends,
// subscribing again after every failure.
func (l *redisLink) listen(ctx context.Context) {
	defer close(l.done)
	for {
		l.psMu.Lock()
		if ctx.Err() != nil {
			l.psMu.Unlock()
			return
		}
		ps := l.client.Subscribe(ctx, l.key("invalidate"))
		l.ps = ps
		l.psMu.Unlock()
		l.receive(ctx, ps)
		ps.Close()
		l.listening.Store(false)
		select {
		case <-ctx.Done():
			return
		case <-time.After(redisRetry):
		}
	}
}

// receive applies what the subscription hears until it fails. Silence for
// redisPing gets a ping; silence after the ping is a dead connection.
func (l *redisLink) receive(ctx context.Context, ps *redis.PubSub) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, redisPing)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if ps.Ping(ctx) == nil {
					continue
				}
			}
			l.failed(err)
			return
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				l.listening.Store(true)
				l.subscribed.Add(1)
				l.ok()
				l.account.resubscribed()
			}
		case *redis.Message:
			l.heard(m.Payload)
		case *redis.Pong:
			l.ok() // an instance that asks Redis nothing else learns it is back
		}
	}
}

// heard applies another instance's invalidation: the customer's facts
// here are marked stale, and the login caches forget the customer.
func (l *redisLink) heard(payload string) {
	from, customer, ok := strings.Cut(payload, " ")
	if !ok || from == l.id || !validCustomerID(customer) {
		return
	}
	invalidations.WithLabelValues("received").Inc()
	l.account.invalidate(customer)
	l.account.forgetLogins("", nil, customer)
}

// limit runs the limiter script for a counter; take counts the event.
func (l *redisLink) limit(name string, interval, slack time.Duration, t int64, take bool) (bool, time.Duration, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	taking := "0"
	if take {
		taking = "1"
	}
	wait, err := gcraScript.Run(ctx, l.client, []string{l.key(name)},
		time.Unix(0, t).UnixMilli(), interval.Milliseconds(), slack.Milliseconds(), taking).Int64()
	if l.result(err) != nil {
		return false, 0, err
	}
	return wait <= 0, time.Duration(wait) * time.Millisecond, nil
}

// useLink marks a sign-in link used across instances until it expires;
// false when another instance (or this one) used it first.
func (l *redisLink) useLink(id string, t, expires int64) (bool, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	first, err := l.client.SetNX(ctx, l.key("signin", id), 1, time.Duration(max(expires-t, int64(time.Millisecond)))).Result()
	if l.result(err) != nil {
		return false, err
	}
	return first, nil
}

// linkUsed reports whether any instance used a sign-in link.
func (l *redisLink) linkUsed(id string) (bool, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	n, err := l.client.Exists(ctx, l.key("signin", id)).Result()
	if l.result(err) != nil {
		return false, err
	}
	return n > 0, nil
}

// peek returns the facts Redis holds about a customer, whatever their
// generation and age, for a Stripe outage.
func (l *redisLink) peek(customer string) ([]subscriptionState, int64, bool) {
	ctx, cancel := l.ctx()
	defer cancel()
	v, err := l.client.HMGet(ctx, l.key("cus", customer), "s", "f").Result()
	if l.result(err) != nil || len(v) != 2 {
		return nil, 0, false
	}
	s, _ := v[0].(string)
	f, _ := v[1].(string)
	ms, perr := strconv.ParseInt(f, 10, 64)
	var subs []subscriptionState
	if s == "" || perr != nil || json.Unmarshal([]byte(s), &subs) != nil {
		return nil, 0, false
	}
	if subs == nil {
		subs = []subscriptionState{}
	}
	return subs, time.UnixMilli(ms).UnixNano(), true
}
