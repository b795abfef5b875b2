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

// The bounds on Redis: one operation may take redisTimeout, connecting
// included; after a failure, the request path leaves Redis alone for
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

func init() {
	// go-redis writes its own lines to standard error (a failed dial,
	// every time); the paywall logs an outage once, through Caddy.
	redis.SetLogger(quietRedis{})
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

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
	logger  atomic.Pointer[zap.Logger] // the last handler's to join: a reload may close the old ones'
	users   int                        // handlers using it; guarded by account.linksMu

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
		// Not the parser's words: url.Parse quotes the whole URL, and
		// with a password that holds a / or a ?, finds no password in
		// it to hide.
		return nil, "", fmt.Errorf("redis: %s is not a Redis URL: write redis://[:password@]host:port/db, rediss://… or unix:///path, "+
			"with / ? # @ and %% in the password percent-encoded", redactedURL(raw))
	}
	opts.DialTimeout = redisTimeout
	opts.ReadTimeout = redisTimeout
	opts.WriteTimeout = redisTimeout
	opts.PoolTimeout = redisTimeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1   // a retry would double the bound; the caller falls back instead
	opts.DialerRetries = 1 // the same for connecting
	opts.DisableIdentity = true
	return opts, redactedURL(raw), nil
}

// redactedURL is a URL (Redis's, or the admin API's Stripe API URL) with
// its user and password hidden.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	return u.Redacted()
}

func newRedisLink(opts *redis.Options, where, prefix string, a *account) *redisLink {
	var id [8]byte
	rand.Read(id[:])
	return &redisLink{
		client:  redis.NewClient(opts),
		prefix:  prefix,
		where:   where,
		id:      hex.EncodeToString(id[:]),
		account: a,
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
		l = newRedisLink(opts, where, prefix, a)
		a.links[key] = l
	}
	l.logger.Store(logger)
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
		l.logger.Load().Warn("redis unavailable: each instance serves from its own memory and limits on its own until it returns; "+
			"this is logged once per outage (see the metric caddy_paywall_redis_errors_total)",
			zap.String("redis", l.where), zap.Error(err))
	}
}

// ok notes an operation that succeeded; the first after an outage ends it,
// and publishes what could not be published during it.
func (l *redisLink) ok() {
	if l.out.Load() && l.out.Swap(false) {
		since := time.Duration(now().UnixNano() - l.outSince.Load())
		l.logger.Load().Info("redis reachable again", zap.String("redis", l.where),
			zap.Duration("outage", since), zap.Uint64("failed_operations", l.failures.Swap(0)))
		l.account.reads.Add(1)
		go func() {
			defer l.account.reads.Done()
			l.publishPending()
		}()
	}
}

// result notes the outcome of an operation; redis.Nil is an answer, and a
// client closed because no handler uses it any more (a request still under
// way during a reload that dropped redis) is no outage.
func (l *redisLink) result(err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return err
	}
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
// invalidation came since (-1) or a later read of the same generation is
// there (0), and gives up the lock if this read held it. With replace, it
// replaces what is there in the same generation (facts it cannot read).
// KEYS: cus, lock. ARGV: generation, read ms, facts, ttl ms, token, replace.
var storeScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'g', 'f', 'fg')
local g = tonumber(h[1]) or 0
local stored = -1
if g == tonumber(ARGV[1]) then
	stored = 0
	if ARGV[6] == '1' or (tonumber(h[3]) or -1) ~= g or (tonumber(h[2]) or 0) < tonumber(ARGV[2]) then
		redis.call('HSET', KEYS[1], 'g', g, 's', ARGV[3], 'f', ARGV[2], 'fg', g)
		stored = 1
	end
	if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
return stored
`)

// releaseScript gives up a read's lock, if it still holds it.
// KEYS: lock. ARGV: token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// invalidateScript raises a customer's generation, so that no instance
// takes the facts read before it for fresh, and tells every instance.
// KEYS: cus. ARGV: ttl ms, channel, message.
var invalidateScript = redis.NewScript(`
local g = redis.call('HINCRBY', KEYS[1], 'g', 1)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return g
`)

// gcraScript is clientLimiter's generic cell rate algorithm in Redis: it
// returns 0 when an event is allowed (and, with take, counts it), else how
// many milliseconds until one would be. Its clock is Redis's, which every
// instance shares: the budgets' slack of a second or two is less than the
// clocks of two machines may differ.
// KEYS: counter. ARGV: interval ms, slack ms, take.
var gcraScript = redis.NewScript(`
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or t
if tat < t then tat = t end
if tat - t > slack then return tat - t - slack end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - t) end
return 0
`)

// sharedFacts is what Redis holds about a customer when a read begins.
type sharedFacts struct {
	gen        int64
	facts            // subs nil when Redis holds none
	fetched    int64 // unix nanos of their Stripe read
	fresh      bool  // read in the current generation, younger than cache_ttl
	locked     bool  // this read holds the lock
	lockName   string
	unreadable bool // facts Redis holds that this version cannot read
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
	fms, _ := res[2].(int64)
	fg, _ := res[3].(int64)
	locked, _ := res[4].(int64)
	sf := sharedFacts{gen: gen, locked: locked == 1}
	if locked == 1 {
		sf.lockName = token
	}
	if s != "" {
		if f, ok := decodeFacts(s); !ok {
			// Not ours to read (another version wrote it): read
			// Stripe at once, not after waiting for a lock nobody
			// took; the read writes the facts anew.
			sf.unreadable = true
		} else {
			sf.facts = f
			sf.fetched = time.UnixMilli(fms).UnixNano()
			sf.fresh = fg == gen && !force && t.UnixNano()-sf.fetched < int64(ttl)
		}
	}
	return sf, nil
}

// store writes a Stripe read made in the generation begin gave, and
// releases the read's lock. It reports false when an invalidation came
// since the read began: the read may be older than the change.
func (l *redisLink) store(customer string, sf sharedFacts, f facts, fetched int64) bool {
	b, err := encodeFacts(f)
	if err != nil {
		return true
	}
	ctx, cancel := l.ctx()
	defer cancel()
	replace := "0"
	if sf.unreadable {
		replace = "1"
	}
	res, err := storeScript.Run(ctx, l.client, []string{l.key("cus", customer), l.key("lock", customer)},
		sf.gen, time.Unix(0, fetched).UnixMilli(), b, l.account.keepFor().Milliseconds(), sf.lockName, replace).Int64()
	return l.result(err) != nil || res >= 0
}

// release gives up a read's lock when the read failed, so that the next
// read, here or on another instance, need not wait for it to expire.
func (l *redisLink) release(customer string, sf sharedFacts) {
	if !sf.locked {
		return
	}
	ctx, cancel := l.ctx()
	defer cancel()
	l.result(releaseScript.Run(ctx, l.client, []string{l.key("lock", customer)}, sf.lockName).Err())
}

// invalidate tells every instance that a customer changed. When Redis
// cannot take it, it is kept to publish when Redis returns. It tries Redis
// even while the request path leaves it alone after a failure: a change is
// rare (a webhook, a checkout), and one slow operation must not keep it
// from the other instances until something else on this one asks Redis.
// Its success ends the outage, and publishes what was kept.
func (l *redisLink) invalidate(customer string) {
	l.invalidateKeys(customer, nil)
}

// invalidateKeys is invalidate with the API keys revoked (ids), which the
// other instances drop from the facts they hold. Kept for later while
// Redis cannot take it, without the ids: those instances then read the
// customer again, and until Stripe answers, keys revoked during a Redis
// outage are still in the facts they hold.
func (l *redisLink) invalidateKeys(customer string, revoked []string) {
	l.ensure()
	if err := l.publish(customer, revoked); err != nil {
		l.keepPending(customer)
		return
	}
	invalidations.WithLabelValues("published").Inc()
}

// publish raises the customer's generation and tells every instance. The
// generation lives as long as the facts any handler of the account keeps
// (see account.keepFor).
func (l *redisLink) publish(customer string, revoked []string) error {
	ctx, cancel := l.ctx()
	defer cancel()
	err := invalidateScript.Run(ctx, l.client, []string{l.key("cus", customer)},
		l.account.keepFor().Milliseconds(), l.key("invalidate"), l.message(news{Customer: customer, Revoked: revoked})).Err()
	return l.result(err)
}

// news is what an instance tells the others: a customer whose facts
// changed, and what the login caches must forget (see loginCache.forget):
// a changed customer's email, or the metadata value that names them.
type news struct {
	From     string            `json:"i"`
	Customer string            `json:"c,omitempty"`
	Email    string            `json:"e,omitempty"`
	Metadata map[string]string `json:"m,omitempty"`
	Revoked  []string          `json:"r,omitempty"` // API keys of Customer revoked
	Offer    string            `json:"o,omitempty"` // a price or product whose words changed
}

func (l *redisLink) message(n news) string {
	n.From = l.id
	b, _ := json.Marshal(n)
	return string(b)
}

// forgetLogins tells the other instances' login caches what a webhook
// told this one's. Lost while Redis is down: their entries then last the
// login cache's own lifetime.
func (l *redisLink) forgetLogins(email string, metadata map[string]string) {
	l.ensure()
	ctx, cancel := l.ctx()
	defer cancel()
	l.result(l.client.Publish(ctx, l.key("invalidate"), l.message(news{Email: email, Metadata: metadata})).Err())
}

// offerChanged tells the other instances that a price or product the 402
// pages may show changed. Lost while Redis is down: their copies then last
// offerRefresh.
func (l *redisLink) offerChanged(id string) {
	l.ensure()
	ctx, cancel := l.ctx()
	defer cancel()
	l.result(l.client.Publish(ctx, l.key("invalidate"), l.message(news{Offer: id})).Err())
}

func (l *redisLink) keepPending(customer string) {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	if _, ok := l.pending[customer]; !ok && len(l.pending) >= maxPendingInvalidations {
		l.overflow = true
		invalidations.WithLabelValues("lost").Inc()
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
	for customer := range pending {
		if err := l.publish(customer, nil); err != nil {
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

// heard applies another instance's news: the customer's facts here are
// marked stale, and the login caches forget what the news says changed.
func (l *redisLink) heard(payload string) {
	var n news
	if json.Unmarshal([]byte(payload), &n) != nil || n.From == l.id {
		return
	}
	if n.Customer != "" && !validCustomerID(n.Customer) {
		return
	}
	invalidations.WithLabelValues("received").Inc()
	if n.Offer != "" && validOfferID(n.Offer) {
		l.account.offerChanged(n.Offer)
	}
	if n.Customer != "" {
		l.account.invalidate(n.Customer)
		for _, id := range n.Revoked {
			l.account.forgetKey(n.Customer, id)
		}
	}
	l.account.forgetLogins(n.Email, n.Metadata, n.Customer)
}

// limit runs the limiter script for a counter; take counts the event.
func (l *redisLink) limit(name string, interval, slack time.Duration, take bool) (bool, time.Duration, error) {
	ctx, cancel := l.ctx()
	defer cancel()
	taking := "0"
	if take {
		taking = "1"
	}
	// Milliseconds: a limit of more than a thousand a second counts as
	// a thousand a second here.
	wait, err := gcraScript.Run(ctx, l.client, []string{l.key(name)},
		max(1, interval.Milliseconds()), slack.Milliseconds(), taking).Int64()
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
func (l *redisLink) peek(customer string) (facts, int64, bool) {
	ctx, cancel := l.ctx()
	defer cancel()
	v, err := l.client.HMGet(ctx, l.key("cus", customer), "s", "f").Result()
	if l.result(err) != nil || len(v) != 2 {
		return facts{}, 0, false
	}
	s, _ := v[0].(string)
	fs, _ := v[1].(string)
	ms, perr := strconv.ParseInt(fs, 10, 64)
	f, ok := decodeFacts(s)
	if s == "" || perr != nil || !ok {
		return facts{}, 0, false
	}
	return f, time.UnixMilli(ms).UnixNano(), true
}

// sharedKeys is how facts with keys are kept in Redis. Facts without keys
// are kept as the list of subscriptions alone, as versions before api_keys
// wrote them, so that instances of both versions read each other's; an
// older version takes the object for facts it cannot read and reads Stripe.
type sharedKeys struct {
	Subs []subscriptionState `json:"s"`
	Keys *[]keyRecord        `json:"k"` // missing: not read
	Meta int                 `json:"m,omitempty"`
}

func encodeFacts(f facts) ([]byte, error) {
	subs := f.subs
	if subs == nil {
		subs = []subscriptionState{}
	}
	if f.keys == nil {
		return json.Marshal(subs)
	}
	keys := f.keys.list
	if keys == nil {
		keys = []keyRecord{}
	}
	return json.Marshal(sharedKeys{Subs: subs, Keys: &keys, Meta: f.keys.meta})
}

func decodeFacts(s string) (facts, bool) {
	var f facts
	if strings.HasPrefix(s, "{") {
		var sk sharedKeys
		if json.Unmarshal([]byte(s), &sk) != nil {
			return facts{}, false
		}
		f.subs = sk.Subs
		if sk.Keys != nil {
			f.keys = &keyRing{list: *sk.Keys, meta: sk.Meta}
		}
	} else if json.Unmarshal([]byte(s), &f.subs) != nil {
		return facts{}, false
	}
	if f.subs == nil {
		f.subs = []subscriptionState{}
	}
	return f, true
}
