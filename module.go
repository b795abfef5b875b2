// Package paywall is a Caddy HTTP handler that answers 402 Payment Required
// to visitors without a paid Stripe subscription and serves the content to
// those who pay.
package paywall

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// now is the clock of the package; tests replace it.
var now = time.Now

const (
	defaultEndpointPrefix = "/paywall"
	defaultCacheTTL       = 5 * time.Minute
	defaultStaleIfError   = 24 * time.Hour
	defaultCacheSize      = 100_000
	defaultStripeTimeout  = 5 * time.Second
	defaultCookieMaxAge   = 30 * 24 * time.Hour
	defaultCookieName     = "paywall"
)

// Handler gates requests on a paid Stripe subscription. Visitors without one
// get 402 Payment Required with a way to subscribe through Stripe Checkout;
// visitors whose subscription pays pass to the next handler.
//
// Requests under `endpoint_prefix` (default `/paywall`) are the handler's own
// endpoints: `checkout`, `success`, `portal`, `logout`, `webhook`, and with
// `api_keys`, `keys`.
//
// Placeholders set for the handlers and logs that follow:
//
// Placeholder | Description
// ------------|-------------
// `{http.paywall.customer}` | the visitor's Stripe customer ID, when known
// `{http.paywall.status}` | `entitled`, `payment_required` or `unavailable`
// `{http.paywall.reason}` | why: `active`, `trialing`, `past_due_grace`, `no_subscription`, `subscription_ended`, `payment_failed`, `payment_processing`, `trial_ended`, `checkout_not_completed`, `stripe_unavailable`
// `{http.paywall.checkout_url}` | the path that starts a checkout for this page
// `{http.paywall.portal_url}` | the path to the billing portal, when the last payment failed
// `{http.paywall.signin_url}` | the path that mails a sign-in link (a form's action), when offered
// `{http.paywall.retry_after}` | seconds to wait, with 503 and 429
// `{http.paywall.product}`, `{http.paywall.price}`, `{http.paywall.trial}` | with `refusals handle_errors`, where a checkout is offered: the product's name, its price per interval and the trial offered, in the visitor's language (see the 402 page's Product, Price and Trial)
// `{http.paywall.key_id}` | with `api_keys`: the id of the API key a request presented; empty for a browser
// `{http.paywall.keys_url}` | with `api_keys`: the path of the visitor's API keys page
type Handler struct {
	// The Stripe secret key (`sk_…`) or restricted key (`rk_…`).
	// Normally `{env.STRIPE_SECRET_KEY}`: placeholders are resolved when the
	// handler is provisioned, so the admin API never shows the key.
	SecretKey string `json:"secret_key,omitempty"`

	// Price IDs. A subscription to any of them grants access; the first is
	// the one sold at checkout.
	Prices []string `json:"prices,omitempty"`

	// Product IDs. A subscription to any price of these products grants access.
	Products []string `json:"products,omitempty"`

	// The signing secret (`whsec_…`) of the Stripe webhook endpoint. When set,
	// `<endpoint_prefix>/webhook` accepts Stripe's events.
	WebhookSecret string `json:"webhook_secret,omitempty"`

	// The key that signs the visitor cookie. When empty, a key is generated
	// once and kept in Caddy's storage, so restarts and nodes that share
	// storage agree.
	CookieSecret string `json:"cookie_secret,omitempty"`

	// The path under which the handler's own endpoints live. Default `/paywall`.
	EndpointPrefix string `json:"endpoint_prefix,omitempty"`

	// How long what Stripe said about a customer is trusted. Default 5m.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// How long known state keeps serving while Stripe cannot be reached.
	// Default 24h. A negative duration (`-1`, `off` in the Caddyfile)
	// turns it off: when Stripe cannot answer, every visitor whose facts
	// are older than cache_ttl gets 503.
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`

	// How long a `past_due` subscription keeps access after the failed
	// renewal (its current_period_start). Default 0.
	GracePeriod caddy.Duration `json:"grace_period,omitempty"`

	// Days of free trial offered at checkout.
	TrialDays int `json:"trial_days,omitempty"`

	// Let visitors enter promotion codes at checkout.
	AllowPromotionCodes bool `json:"allow_promotion_codes,omitempty"`

	// Where a visitor can ask for help, shown on the 402 page.
	SupportURL string `json:"support_url,omitempty"`

	// A file holding the operator's own html/template for the 402 page.
	Page string `json:"page,omitempty"`

	// The site's name at the top of the 402 page, in its title and in
	// sign-in mails. Default: the host of public_url.
	SiteName string `json:"site_name,omitempty"`

	// What a subscription gives, one short line each, listed on the 402
	// page beside the price. At most 8, of 120 characters each.
	Benefits []string `json:"benefits,omitempty"`

	// An image at the top of the 402 page, beside the site's name: a path
	// on this site (`/logo.svg`), or a URL on public_url. The page's
	// Content-Security-Policy allows images from this site only.
	Logo string `json:"logo,omitempty"`

	// Decide, log and set placeholders, but never block.
	DryRun bool `json:"dry_run,omitempty"`

	// The Stripe API base URL, for stripe-mock and local stand-ins.
	// Default: Stripe's own.
	APIURL string `json:"api_url,omitempty"`

	// The most customers kept in the shared cache. Default 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// How long one call to Stripe may take. Default 5s.
	StripeTimeout caddy.Duration `json:"stripe_timeout,omitempty"`

	// How long the visitor cookie lasts. Default 30d.
	CookieMaxAge caddy.Duration `json:"cookie_max_age,omitempty"`

	// The scheme and host visitors use, such as `https://example.com`, for
	// the URLs Stripe sends them back to and for Secure cookies, when a
	// proxy in front of Caddy terminates TLS. Default: what each request
	// shows.
	PublicURL string `json:"public_url,omitempty"`

	// The name of the visitor cookie. Default `paywall`.
	CookieName string `json:"cookie_name,omitempty"`

	// How many checkouts one client address may start (each visit to
	// `<endpoint_prefix>/checkout` or `/portal` that asks Stripe) per
	// window; the next get 429 with Retry-After. `/success` has an
	// allowance of the same size, spent only by links that are not the
	// visitor's. The address is Caddy's client IP, which honours the
	// server's `trusted_proxies`; IPv6 counts by /64. Default 30 per 10m.
	CheckoutLimit *Limit `json:"checkout_limit,omitempty"`

	// The Cache-Control header given to the pages a subscriber is let
	// through to, when no earlier handler set one, so that no shared cache
	// keeps them for others and no browser shows them from its cache after
	// the subscription ends. Default `private, no-cache`; `off` sets none
	// (for an application that sets its own).
	CacheControl string `json:"cache_control,omitempty"`

	// Email sign-in: visitors who subscribed ask for a link by email and
	// are known in any browser they open it in. Without it, no sign-in
	// is offered. Only with the cookie identity.
	Email *EmailConfig `json:"email,omitempty"`

	// How long a mailed sign-in link works. Default 15m.
	SigninLinkTTL caddy.Duration `json:"signin_link_ttl,omitempty"`

	// How many sign-in links one email address may be sent per window.
	// Default 3 per 15m.
	SigninLimit *Limit `json:"signin_limit,omitempty"`

	// How many sign-in links one client address may ask for per window
	// (Caddy's client IP; IPv6 by /64). Default 10 per 15m.
	SigninIPLimit *Limit `json:"signin_ip_limit,omitempty"`

	// Who a visitor is: the paywall's cookie (the default), or the site's
	// own login through a placeholder.
	Identity *Identity `json:"identity,omitempty"`

	// How a request for gated content is refused (402, 503, and the 429
	// of checkout_limit): `page` (the default) answers with the built-in
	// page or `page`'s template; `handle_errors` sets the placeholders and
	// the Link, Retry-After and Cache-Control headers and returns the
	// status as an error, for the site's handle_errors routes to answer.
	// The paywall's own endpoint pages (sign-in, success) stay its own.
	Refusals string `json:"refusals,omitempty"`

	// The Redis that several Caddy instances of the site share, as a URL:
	// `redis://[:password@]host:port/db`, `rediss://…` or
	// `unix:///path/to/socket`; normally a placeholder such as
	// `{env.PAYWALL_REDIS_URL}`, resolved when provisioned, so that the
	// admin API never shows the password. Without it, each instance keeps
	// its own state, as with `off` (so that one Caddyfile serves one
	// instance and several: `redis {$PAYWALL_REDIS:off}`).
	Redis string `json:"redis,omitempty"`

	// API keys for programs: a subscriber creates keys at
	// `<endpoint_prefix>/keys`, kept as hashes in the Stripe customer's
	// metadata, and a request with `Authorization: Bearer pwk_…` is that
	// subscriber. Needs the Stripe key's Customers write permission.
	APIKeys *APIKeys `json:"api_keys,omitempty"`

	// Metered free views: a visitor who does not pay may read this many
	// distinct gated pages per window (at most 50), counted in a signed
	// cookie; `off` (the default) offers none.
	FreeViews *Limit `json:"free_views,omitempty"`

	// How many new free views one client address may take per window,
	// for clients that drop the cookie. Default 10 × free_views.
	FreeViewsPerIP int `json:"free_views_per_ip,omitempty"`

	// Search engines whose verified crawlers read gated pages: `google`,
	// `bing`. A request whose User-Agent claims one is checked by reverse
	// and forward DNS of its client address, as the engines document.
	Crawlers []string `json:"crawlers,omitempty"`

	// What every key and channel of the paywall in Redis starts with.
	// Default `paywall:`; sites that share one Redis give each their own.
	RedisPrefix string `json:"redis_prefix,omitempty"`

	// The exported fields above are the config as written, placeholders
	// and all: Caddy marshals them back into its logs and the admin API,
	// so Provision fills in their defaults but never writes a resolved
	// placeholder (a secret above all) into them. The resolved values are
	// the private copies below (secretKey … products), with the parts
	// built from the config; the request path reads those.
	checkoutLimit limitSpec        // n is 0 when off
	handleErrors  bool             // refusals handle_errors
	staleIfError  time.Duration    // StaleIfError, 0 when off
	signin        *signin          // nil without an email block
	login         *loginSource     // nil with the cookie identity
	apiKeys       *apiKeys         // nil without api_keys
	crawlers      *crawlerVerifier // nil without crawlers
	meter         *meter           // nil without free_views
	limiter       *limiter
	redis         *redisLink        // nil without redis
	accountTag    string            // names the account in Redis, not its key
	originWarned  *atomic.Bool      // the missing public_url was logged
	signinWarned  *atomic.Bool      // … and for sign-in links
	certs         certificateHolder // Caddy's TLS app, when configured

	secretKey     string
	webhookSecret string
	cookieSecret  string
	prefix        string
	apiURL        string
	supportURL    string
	site          *pageSite // site_name, logo, benefits
	prices        []string
	cacheControl  string // "" when off
	publicURL     string
	products      []string

	stripe    stripeAPI
	soldPrice *atomic.Pointer[string] // a product's default price, once read
	account   *account
	poolKey   string
	cookies   *cookieJar
	page      *template.Template
	logger    *zap.Logger
}

// Limit is how many times one client address (or, for signin_limit, one
// email address) may do something per window.
type Limit struct {
	// How many per window.
	Max int `json:"max,omitempty"`

	// The window. Default 10m for checkout_limit, 15m for the sign-in
	// limits.
	Per caddy.Duration `json:"per,omitempty"`

	// No limit at all (for a site whose visitors all arrive through one
	// address that Caddy cannot see past).
	Off bool `json:"off,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.paywall",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, resolves placeholders and builds the Stripe
// client. It makes no network call: Caddy provisions on validate and adapt too.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()

	h.secretKey = strings.TrimSpace(repl.ReplaceAll(h.SecretKey, ""))
	h.webhookSecret = strings.TrimSpace(repl.ReplaceAll(h.WebhookSecret, ""))
	h.cookieSecret = repl.ReplaceAll(h.CookieSecret, "")
	// A secret that was configured but resolves to nothing (an unset
	// environment variable) must not quietly turn a feature off.
	if h.WebhookSecret != "" && h.webhookSecret == "" {
		return errors.New("webhook_secret is empty (is the environment variable it names set?)")
	}
	if h.CookieSecret != "" && h.cookieSecret == "" {
		return errors.New("cookie_secret is empty (is the environment variable it names set?)")
	}
	h.apiURL = strings.TrimRight(repl.ReplaceAll(h.APIURL, ""), "/")
	h.supportURL = repl.ReplaceAll(h.SupportURL, "")
	h.publicURL = strings.TrimRight(repl.ReplaceAll(h.PublicURL, ""), "/")
	if u, err := url.Parse(h.publicURL); err == nil && u.Scheme != "" && u.Host != "" && u.Path == "" && u.RawQuery == "" && u.User == nil {
		// Scheme and host are case-insensitive; Secure cookies and the
		// __Host- checkout cookie follow the scheme, whatever its case.
		h.publicURL = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
	}
	benefits := make([]string, len(h.Benefits))
	for i, b := range h.Benefits {
		benefits[i] = repl.ReplaceKnown(b, "") // a quoted { or } stays
	}
	h.site = newPageSite(strings.TrimSpace(repl.ReplaceAll(h.SiteName, "")), repl.ReplaceAll(h.Logo, ""), benefits, h.publicURL)
	h.prices = resolveIDs(repl, h.Prices)
	h.products = resolveIDs(repl, h.Products)

	h.prefix = h.EndpointPrefix
	if h.prefix == "" {
		h.prefix = defaultEndpointPrefix
	}
	h.prefix = strings.TrimRight(h.prefix, "/")
	if h.CacheTTL == 0 {
		h.CacheTTL = caddy.Duration(defaultCacheTTL)
	}
	if h.StaleIfError == 0 {
		h.StaleIfError = caddy.Duration(defaultStaleIfError)
	}
	h.staleIfError = max(0, time.Duration(h.StaleIfError)) // negative: off
	if h.CacheSize == 0 {
		h.CacheSize = defaultCacheSize
	}
	if h.StripeTimeout == 0 {
		h.StripeTimeout = caddy.Duration(defaultStripeTimeout)
	}
	if h.CookieMaxAge == 0 {
		h.CookieMaxAge = caddy.Duration(defaultCookieMaxAge)
	}
	if h.CookieName == "" {
		h.CookieName = defaultCookieName
	}
	switch h.CacheControl {
	case "":
		h.cacheControl = "private, no-cache"
	case "off":
		h.cacheControl = ""
	default:
		// Whatever the operator wrote, a paid page stays out of shared
		// caches: "max-age=300" becomes "private, max-age=300".
		h.cacheControl, _ = privateCacheControl(h.CacheControl)
	}

	// Refuse a bad key here rather than in Validate: nothing below should
	// be built around a key that can never work.
	if err := checkSecretKey(h.secretKey); err != nil {
		return err
	}

	h.soldPrice = new(atomic.Pointer[string])
	h.originWarned, h.signinWarned = new(atomic.Bool), new(atomic.Bool)
	h.stripe = newStripeClient(h.secretKey, h.apiURL, time.Duration(h.StripeTimeout))

	// One cache per Stripe account, shared by every handler of that account
	// and kept across config reloads.
	sum := sha256.Sum256([]byte(h.apiURL + "\x00" + h.secretKey))
	h.poolKey = hex.EncodeToString(sum[:])
	val, _, err := accounts.LoadOrNew(h.poolKey, func() (caddy.Destructor, error) {
		a := newAccount(h.CacheSize)
		// Set once, here: the admin API reads it while reloads provision.
		if len(h.secretKey) >= 4 {
			a.keyHint = h.secretKey[len(h.secretKey)-4:]
		}
		return a, nil
	})
	if err != nil {
		return err
	}
	h.account = val.(*account)
	h.account.grow(h.CacheSize, time.Duration(h.CacheTTL), time.Duration(h.CacheTTL)+h.staleIfError)
	// The key names the account in Redis (hashed: never the key), whatever
	// API URL each instance reaches Stripe by.
	h.accountTag = hashed("account\x00" + h.secretKey)
	if err := h.provisionRedis(repl); err != nil {
		return err
	}

	h.checkoutLimit = limitFrom(h.CheckoutLimit, "checkout", defaultCheckoutLimit, defaultCheckoutWindow)
	if h.checkoutLimit.n > 0 {
		h.limiter = newLimiter(h.account.limiter(h.checkoutLimit), h.checkoutLimit, h.redis, h.accountTag)
	}
	h.handleErrors = h.Refusals == refusalsHandleErrors
	if err := h.provisionIdentity(repl); err != nil {
		return err
	}
	h.warnLiteralSecrets()
	h.certs = tlsAppOf(ctx)

	// Without cookie_secret, the key is generated once and kept in Caddy's
	// storage; only then is storage asked for, and only when the first
	// cookie is signed or verified (caddy validate and adapt must not
	// write storage).
	var storage func() certmagic.Storage
	if h.cookieSecret == "" {
		storage = ctx.Storage
	}
	h.cookies = newCookieJar(h.CookieName, time.Duration(h.CookieMaxAge), h.cookieSecret, storage, h.logger)
	h.cookies.https = strings.HasPrefix(h.publicURL, "https://")
	if fv := h.FreeViews; fv != nil && !fv.Off && fv.Max > 0 && fv.Max <= maxFreeViews && fv.Per > 0 {
		perIP := h.FreeViewsPerIP
		if perIP <= 0 {
			perIP = 10 * fv.Max
		}
		spec := limitSpec{kind: "free views per address", n: perIP, window: time.Duration(fv.Per)}
		h.meter = &meter{n: fv.Max, window: time.Duration(fv.Per), name: h.CookieName + "_meter", jar: h.cookies, spec: spec,
			perIP: newLimiter(h.account.limiter(spec), spec, h.redis, h.accountTag)}
	}
	if len(h.Crawlers) > 0 {
		h.crawlers, _ = newCrawlerVerifier(h.Crawlers) // an unknown engine fails Validate
	}
	if h.APIKeys != nil {
		h.apiKeys = newAPIKeys(h.APIKeys, h.prefix, h.cookies)
		h.cookies.keysURL = &h.apiKeys.urlAny
		// From now on every read of a customer brings the keys.
		h.account.readsKeys.Store(true)
	}

	if h.Page != "" {
		page, err := loadPageTemplate(h.Page)
		if err != nil {
			return fmt.Errorf("page: %v", err)
		}
		h.page = page
	}
	registerMetrics(ctx)
	// Last: the admin API may use the handler from now on.
	h.account.register(h)
	return nil
}

// Validate checks the configuration; its messages name the option at fault.
func (h *Handler) Validate() error {
	if len(h.prices) == 0 && len(h.products) == 0 {
		return errors.New("price or product is required")
	}
	for _, p := range h.prices {
		if !strings.HasPrefix(p, "price_") && !strings.HasPrefix(p, "plan_") {
			return fmt.Errorf("price %q is not a Stripe price ID (price_…)", p)
		}
	}
	for _, p := range h.products {
		if !strings.HasPrefix(p, "prod_") {
			return fmt.Errorf("product %q is not a Stripe product ID (prod_…)", p)
		}
	}
	if !strings.HasPrefix(h.prefix, "/") || h.prefix == "" {
		return fmt.Errorf("endpoint_prefix %q must start with /", h.EndpointPrefix)
	}
	if h.webhookSecret != "" && !strings.HasPrefix(h.webhookSecret, "whsec_") {
		return errors.New("webhook_secret must be a Stripe webhook signing secret (whsec_…)")
	}
	if h.apiURL != "" {
		u, err := url.Parse(h.apiURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("api_url %q must be an http(s) URL", h.APIURL)
		}
	}
	if h.publicURL != "" {
		u, err := url.Parse(h.publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("public_url %q must be a scheme and host, such as https://example.com", h.PublicURL)
		}
	}
	if h.supportURL != "" {
		u, err := url.Parse(h.supportURL)
		if err != nil || !(u.Scheme == "https" || u.Scheme == "http") || u.Host == "" {
			if err != nil || u.Scheme != "mailto" || u.Opaque == "" {
				return fmt.Errorf("support_url %q must be an https:// (or http://) URL or a mailto: address", h.SupportURL)
			}
		}
	}
	if err := h.site.validate(h.publicURL); err != nil {
		return err
	}
	if h.TrialDays < 0 || h.TrialDays > 730 {
		return fmt.Errorf("trial_days %d must be between 0 and 730", h.TrialDays)
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"cache_ttl", h.CacheTTL}, {"grace_period", h.GracePeriod}, {"stripe_timeout", h.StripeTimeout}, {"cookie_max_age", h.CookieMaxAge}} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative", d.name)
		}
	}
	if h.CacheSize < 0 {
		return fmt.Errorf("cache_size %d must be positive", h.CacheSize)
	}
	if (&http.Cookie{Name: h.CookieName, Value: "x"}).Valid() != nil {
		return fmt.Errorf("cookie_name %q is not a valid cookie name", h.CookieName)
	}
	if h.Refusals != "" && h.Refusals != refusalsPage && h.Refusals != refusalsHandleErrors {
		return fmt.Errorf("refusals %q must be page or handle_errors", h.Refusals)
	}
	if strings.ContainsAny(h.CacheControl, "\r\n") {
		return errors.New("cache_control must be one line")
	}
	ds, ok := splitDirectives(h.CacheControl)
	if !ok {
		return fmt.Errorf("cache_control %q has a quoted string that does not end", h.CacheControl)
	}
	for _, d := range ds {
		if n, _ := directiveName(d); n == "public" || n == "s-maxage" {
			return fmt.Errorf("cache_control %q would let a shared cache keep a subscriber's page for others; leave out %s (or use off, when your application sets its own)", h.CacheControl, n)
		}
	}
	if cl := h.CheckoutLimit; cl != nil && !cl.Off {
		if cl.Max <= 0 || cl.Per < 0 {
			return fmt.Errorf("checkout_limit must be a positive number per a positive duration, such as 30 per 10m, or off")
		}
	}
	if fv := h.FreeViews; fv != nil && !fv.Off && (fv.Max < 1 || fv.Max > maxFreeViews || fv.Per <= 0) {
		return fmt.Errorf("free_views must be from 1 to %d views per a positive duration, such as 3 per 30d, or off", maxFreeViews)
	}
	if h.FreeViewsPerIP < 0 {
		return fmt.Errorf("free_views_per_ip %d must be positive", h.FreeViewsPerIP)
	}
	if _, err := newCrawlerVerifier(h.Crawlers); err != nil {
		return err
	}
	if k := h.APIKeys; k != nil && (k.Max < 0 || k.Max > maxKeysLimit) {
		return fmt.Errorf("api_keys max %d must be between 1 and %d: keys share the customer's %d metadata entries with yours", k.Max, maxKeysLimit, stripeMetadataMax)
	}
	if h.cookieSecret != "" && len(h.cookieSecret) < 32 {
		return errors.New("cookie_secret must be at least 32 characters")
	}
	return nil
}

// Cleanup releases this handler's hold on the shared account cache, and
// closes its Stripe client's idle connections, which would otherwise stay
// open, one set per config reload, until their idle timeout.
func (h *Handler) Cleanup() error {
	if h.account != nil {
		h.account.unregister(h) // first: the admin API stops using it
	}
	if h.stripe != nil {
		h.stripe.close()
	}
	if h.limiter != nil {
		h.account.releaseLimiter(h.checkoutLimit)
	}
	if h.redis != nil {
		h.account.releaseRedisLink(h.redis)
	}
	if s := h.signin; s != nil {
		if s.addrs != nil {
			h.account.releaseLimiter(s.perAddr)
		}
		if s.ips != nil {
			h.account.releaseLimiter(s.perIP)
		}
	}
	if h.login != nil {
		h.account.releaseLoginCache(h.login.key)
	}
	if h.meter != nil {
		h.account.releaseLimiter(h.meter.spec)
	}
	if h.poolKey != "" {
		_, err := accounts.Delete(h.poolKey)
		return err
	}
	return nil
}

// warnLiteralSecrets warns about secrets written into the config itself
// rather than named by a placeholder: Caddy shows the config as written, in
// the admin API's /config/ and in its debug log of the adjusted config.
// The warning names the option, never the value.
func (h *Handler) warnLiteralSecrets() {
	for _, s := range []struct{ option, value, example string }{
		{"secret_key", h.SecretKey, "{env.STRIPE_SECRET_KEY}"},
		{"webhook_secret", h.WebhookSecret, "{env.STRIPE_WEBHOOK_SECRET}"},
		{"cookie_secret", h.CookieSecret, "{env.PAYWALL_COOKIE_SECRET}"},
		{"email password", emailPassword(h.Email), "{env.SMTP_PASSWORD}"},
		{"redis password", redisPassword(h.Redis), "{env.PAYWALL_REDIS_URL}"},
	} {
		if s.value != "" && !strings.Contains(s.value, "{") {
			h.logger.Warn(s.option+" is written in the config itself, so Caddy's admin API (/config/) and its debug log show it; "+
				"name it with a placeholder instead, such as "+s.example, zap.String("option", s.option))
		}
	}
}

// redisPassword is the password a redis URL holds, if any.
func redisPassword(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		p, _ := u.User.Password()
		return p
	}
	return ""
}

// provisionRedis joins the account's client of the configured Redis. It
// makes no network call: the client connects at its first use.
func (h *Handler) provisionRedis(repl *caddy.Replacer) error {
	if h.RedisPrefix == "" {
		h.RedisPrefix = defaultRedisPrefix
	}
	if h.Redis == "" {
		return nil
	}
	raw := strings.TrimSpace(repl.ReplaceAll(h.Redis, ""))
	switch raw {
	case "":
		return errors.New("redis is empty (is the environment variable it names set?); write off for no Redis")
	case "off":
		return nil // one Caddyfile for one instance and for several: redis {$PAYWALL_REDIS:off}
	}
	prefix := repl.ReplaceAll(h.RedisPrefix, "")
	if prefix == "" || strings.ContainsAny(prefix, " \t\r\n") {
		return fmt.Errorf("redis_prefix %q must be a non-empty string without spaces", h.RedisPrefix)
	}
	l, err := h.account.redisLink(raw, prefix, h.logger)
	if err != nil {
		return err
	}
	h.redis = l
	return nil
}

func emailPassword(e *EmailConfig) string {
	if e == nil {
		return ""
	}
	return e.Password
}

// provisionIdentity sets up the identity and email sign-in. Errors name
// the option, never a password.
func (h *Handler) provisionIdentity(repl *caddy.Replacer) error {
	if id := h.Identity; id != nil && id.Source != "" {
		src, err := newLoginSource(id)
		if err != nil {
			return err
		}
		var keysURL *any
		keysPath := ""
		if h.APIKeys != nil {
			keysPath = h.prefix + "/keys"
			v := any(keysPath)
			keysURL = &v
		}
		src.key = src.cacheKey(h.prices, h.products, keysPath)
		src.logins = h.account.loginCache(src.key, src.kind, src.metaKey, h.CacheSize, keysURL)
		h.login = src
	}
	if h.Email == nil {
		return nil
	}
	if h.login != nil {
		return errors.New("email: sign-in by email is for the cookie identity; with identity " + h.Identity.Source +
			", the site's own login says who the visitor is (leave out the email block)")
	}
	c := *h.Email
	c.SMTP = strings.TrimSpace(repl.ReplaceAll(c.SMTP, ""))
	c.Username = repl.ReplaceAll(c.Username, "")
	c.Password = repl.ReplaceAll(c.Password, "")
	c.From = strings.TrimSpace(repl.ReplaceAll(c.From, ""))
	if h.Email.Password != "" && c.Password == "" {
		return errors.New("email: password is empty (is the environment variable it names set?)")
	}
	m, err := newSMTPMailer(c)
	if err != nil {
		return err
	}
	if m.tls == "off" && !isLoopback(m.host) {
		h.logger.Warn("email: tls off sends the mail and the SMTP password unencrypted; use it only for a relay on this machine",
			zap.String("smtp", c.SMTP))
	}
	ttl := time.Duration(h.SigninLinkTTL)
	if ttl == 0 {
		ttl = defaultSigninLinkTTL
	}
	if ttl < 0 || ttl > maxSigninLinkTTL {
		return fmt.Errorf("signin_link_ttl %s must be positive and at most %s", ttl, maxSigninLinkTTL)
	}
	for _, l := range []struct {
		name string
		l    *Limit
	}{{"signin_limit", h.SigninLimit}, {"signin_ip_limit", h.SigninIPLimit}} {
		if l.l != nil && !l.l.Off && (l.l.Max <= 0 || l.l.Per < 0) {
			return fmt.Errorf("%s must be a positive number per a positive duration, such as 3 per 15m, or off", l.name)
		}
	}
	s := &signin{
		mailer:  m,
		ttl:     ttl,
		perAddr: limitFrom(h.SigninLimit, "signin address", defaultSigninLimit, defaultSigninLimitPer),
		perIP:   limitFrom(h.SigninIPLimit, "signin client", defaultSigninIPLimit, defaultSigninLimitPer),
		slots:   make(chan struct{}, signinConcurrentLookups),
	}
	if s.perAddr.n > 0 {
		s.addrs = newLimiter(h.account.limiter(s.perAddr), s.perAddr, h.redis, h.accountTag)
	}
	if s.perIP.n > 0 {
		s.ips = newLimiter(h.account.limiter(s.perIP), s.perIP, h.redis, h.accountTag)
	}
	h.signin = s
	return nil
}

// checkSecretKey refuses keys that cannot call Stripe's API from a server,
// without ever echoing the key.
func checkSecretKey(key string) error {
	switch {
	case key == "":
		return errors.New("secret_key is required (set it, or the environment variable it names)")
	case strings.HasPrefix(key, "pk_"):
		return errors.New("secret_key is a publishable key (pk_…); use the secret key (sk_…) or a restricted key (rk_…)")
	case strings.HasPrefix(key, "whsec_"):
		return errors.New("secret_key is a webhook signing secret (whsec_…); it belongs in webhook_secret")
	case !strings.HasPrefix(key, "sk_") && !strings.HasPrefix(key, "rk_"):
		return errors.New("secret_key must be a Stripe secret key (sk_…) or restricted key (rk_…)")
	}
	return nil
}

// tlsAppOf returns Caddy's TLS app when the config has one, to ask which
// names this Caddy holds certificates for; nil otherwise (also for a context
// made without a config, which AppIfConfigured reports as an error).
func tlsAppOf(ctx caddy.Context) certificateHolder {
	app, err := ctx.AppIfConfigured("tls")
	if err != nil {
		return nil
	}
	c, _ := app.(certificateHolder)
	return c
}

func resolveIDs(repl *caddy.Replacer, ids []string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, strings.Fields(repl.ReplaceAll(id, ""))...)
	}
	return out
}

// accounts holds one *account per Stripe account and API URL, across reloads.
var accounts = caddy.NewUsagePool()

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
