package paywall

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterDirective("paywall", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("paywall", httpcaddyfile.After, "forward_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens and emits one
// route that matches the user's matcher or the endpoints under the prefix,
// which the user's matcher need not cover. Syntax:
//
//	paywall [<matcher>] {
//		secret_key      <sk_… or rk_…>
//		price           <price_id> [...]
//		product         <prod_id> [...]
//		webhook_secret  <whsec_…>
//		cookie_secret   <secret>
//		endpoint_prefix <path>
//		cache_ttl       <duration>
//		stale_if_error  <duration>|off
//		grace_period    <duration>
//		trial_days      <n>
//		allow_promotion_codes
//		support_url     <url>
//		page            <file>
//		site_name       <name>
//		logo            <path>
//		benefits {
//			<one line per benefit>
//		}
//		dry_run
//		api_url         <url>
//		cache_size      <n>
//		stripe_timeout  <duration>
//		cookie_max_age  <duration>
//		cookie_name     <name>
//		cache_control   <value>|off
//		public_url      <https://host>
//		checkout_limit  <n> per <duration> | off
//		email {
//			smtp     <host:port>
//			username <user>
//			password <password>
//			from     <"Name <addr@host>">
//			tls      starttls|implicit|off
//		}
//		signin_link_ttl <duration>
//		signin_limit    <n> per <duration> | off
//		signin_ip_limit <n> per <duration> | off
//		identity        cookie | <placeholder> email|customer | <placeholder> metadata <key>
//		refusals        page|handle_errors
//		redis           <redis://…|rediss://…|unix:///…>
//		redis_prefix    <prefix>
//		api_keys        [max <n>]
//		crawlers        google|bing ...
//		free_views      <n> per <duration> | off
//		free_views_per_ip <n>
//	}
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	h.Next() // the directive name, so that the matcher token comes next
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	var pw Handler
	if err := pw.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}

	prefix := pw.EndpointPrefix
	if prefix == "" {
		prefix = defaultEndpointPrefix
	}
	prefix = strings.TrimRight(prefix, "/")
	var warnings []caddyconfig.Warning
	route := caddyhttp.Route{
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(pw, "handler", "paywall", &warnings)},
	}
	// One route, so that a request pays for one matcher more at most. With
	// no matcher it covers the endpoints already; with one, the prefix is
	// a second matcher set, which Caddy ORs with the user's.
	if matcherSet != nil {
		route.MatcherSetsRaw = []caddy.ModuleMap{
			matcherSet,
			{"path": caddyconfig.JSON(caddyhttp.MatchPath{prefix + "/*"}, &warnings)},
		}
	}
	return []httpcaddyfile.ConfigValue{{Class: "route", Value: route}}, nil
}

// UnmarshalCaddyfile reads the directive's block into h.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		// Not d.ArgErr: it quotes the token, which may be a key written
		// here by mistake.
		return d.Err("paywall takes only a matcher on its line; options such as secret_key go in its block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "price" && opt != "product" {
			return d.Errf("%s: given more than once", opt)
		}
		seen[opt] = true

		switch opt {
		case "secret_key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			// Catch the common mix-ups while the file and line are known.
			// The message never repeats the key.
			if strings.HasPrefix(v, "pk_") || strings.HasPrefix(v, "whsec_") || (!strings.Contains(v, "{") && checkSecretKey(v) != nil) {
				return d.Errf("%s", checkSecretKey(v).Error())
			}
			h.SecretKey = v
		case "webhook_secret":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			if !strings.Contains(v, "{") && !strings.HasPrefix(v, "whsec_") {
				return d.Err("webhook_secret must be a Stripe webhook signing secret (whsec_…)")
			}
			h.WebhookSecret = v
		case "cookie_secret":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.CookieSecret = d.Val()
		case "price":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Prices = append(h.Prices, args...)
		case "product":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Products = append(h.Products, args...)
		case "endpoint_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			if !strings.HasPrefix(v, "/") || strings.TrimRight(v, "/") == "" {
				return d.Errf("endpoint_prefix %q must start with / and not be / alone", v)
			}
			h.EndpointPrefix = v
		case "cache_ttl", "stale_if_error", "grace_period", "stripe_timeout", "cookie_max_age", "signin_link_ttl":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if opt == "stale_if_error" && d.Val() == "off" {
				h.StaleIfError = -1 // no stale state served: see StaleIfError
				break
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: bad duration %q: %v", opt, d.Val(), err)
			}
			if dur < 0 {
				return d.Errf("%s: duration %q must not be negative", opt, d.Val())
			}
			switch opt {
			case "cache_ttl":
				h.CacheTTL = caddy.Duration(dur)
			case "stale_if_error":
				h.StaleIfError = caddy.Duration(dur)
			case "grace_period":
				h.GracePeriod = caddy.Duration(dur)
			case "stripe_timeout":
				h.StripeTimeout = caddy.Duration(dur)
			case "cookie_max_age":
				h.CookieMaxAge = caddy.Duration(dur)
			case "signin_link_ttl":
				h.SigninLinkTTL = caddy.Duration(dur)
			}
		case "trial_days", "cache_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("%s: %q is not a whole number", opt, d.Val())
			}
			if opt == "trial_days" {
				h.TrialDays = n
			} else {
				h.CacheSize = n
			}
		case "checkout_limit", "signin_limit", "signin_ip_limit":
			l, err := parseLimit(d, opt)
			if err != nil {
				return err
			}
			switch opt {
			case "checkout_limit":
				h.CheckoutLimit = l
			case "signin_limit":
				h.SigninLimit = l
			default:
				h.SigninIPLimit = l
			}
			continue
		case "email":
			if d.NextArg() {
				return d.Err("email takes a block: email { smtp <host:port> … }")
			}
			e, err := parseEmailBlock(d)
			if err != nil {
				return err
			}
			h.Email = e
			continue
		case "identity":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "cookie":
				h.Identity = nil
			case len(args) == 2 && (args[1] == loginEmail || args[1] == loginCustomer):
				h.Identity = &Identity{Source: args[0], Kind: args[1]}
			case len(args) == 3 && args[1] == loginMetadata:
				h.Identity = &Identity{Source: args[0], Kind: args[1], MetadataKey: args[2]}
			default:
				return d.Err("identity takes cookie, or <placeholder> email, <placeholder> customer, or <placeholder> metadata <key>")
			}
			if h.Identity != nil {
				if _, err := newLoginSource(h.Identity); err != nil {
					return d.Err(err.Error())
				}
			}
			continue
		case "free_views":
			l, err := parseLimit(d, opt)
			if err != nil {
				return err
			}
			if !l.Off && l.Max > maxFreeViews {
				return d.Errf("free_views: at most %d views per window (the meter is a cookie), not %d", maxFreeViews, l.Max)
			}
			h.FreeViews = l
			continue
		case "free_views_per_ip":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("free_views_per_ip: %q is not a positive whole number", d.Val())
			}
			h.FreeViewsPerIP = n
		case "crawlers":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("crawlers takes the search engines whose verified crawlers may read gated pages: google, bing")
			}
			for _, a := range args {
				if _, ok := crawlerSpecs[a]; !ok {
					return d.Errf("crawlers: unknown search engine %q (known: google, bing)", a)
				}
			}
			h.Crawlers = args
			continue
		case "api_keys":
			args := d.RemainingArgs()
			k := &APIKeys{}
			switch {
			case len(args) == 0:
			case len(args) == 2 && args[0] == "max":
				n, err := strconv.Atoi(args[1])
				if err != nil || n < 1 || n > maxKeysLimit {
					return d.Errf("api_keys max %q must be a whole number from 1 to %d", args[1], maxKeysLimit)
				}
				k.Max = n
			default:
				return d.Errf("api_keys takes nothing or max <n>, such as api_keys max %d", defaultMaxKeys)
			}
			h.APIKeys = k
			continue
		case "allow_promotion_codes":
			h.AllowPromotionCodes = true
		case "dry_run":
			h.DryRun = true
		case "refusals":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if v := d.Val(); v != refusalsPage && v != refusalsHandleErrors {
				return d.Errf("refusals %q must be page or handle_errors", v)
			}
			h.Refusals = d.Val()
		case "benefits":
			// benefits {
			//	Every article, and the archive
			//	A new essay each week
			// }
			// One line each; or, on the option's line, one argument each.
			// words are the tokens from here to the line's end (the
			// one under the cursor first, when given). A brace that is
			// not quoted would open a block of its own or close this
			// one early: a line must quote it.
			words := func(current bool) ([]string, error) {
				var ws []string
				for ok := current || d.NextArg(); ok; ok = d.NextArg() { // NextArg stops before the block's {
					if v := d.Val(); (v == "{" || v == "}") && !d.Token().Quoted() {
						return nil, d.Err("benefits: quote a line that holds { or }")
					}
					ws = append(ws, d.Val())
				}
				return ws, nil
			}
			args, err := words(false)
			if err != nil {
				return err
			}
			h.Benefits = append(h.Benefits, args...)
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				line, err := words(true)
				if err != nil {
					return err
				}
				h.Benefits = append(h.Benefits, strings.Join(line, " "))
			}
			if len(h.Benefits) == 0 {
				return d.Err("benefits: give one line per benefit in its block")
			}
			if len(h.Benefits) > maxBenefits {
				return d.Errf("benefits: at most %d lines (got %d); a short list reads best", maxBenefits, len(h.Benefits))
			}
			continue
		case "site_name", "logo":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if opt == "site_name" {
				h.SiteName = d.Val()
			} else {
				h.Logo = d.Val()
			}
		case "support_url", "page", "api_url", "cookie_name", "cache_control", "public_url", "redis", "redis_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "support_url":
				h.SupportURL = d.Val()
			case "page":
				h.Page = d.Val()
			case "api_url":
				h.APIURL = d.Val()
			case "cookie_name":
				h.CookieName = d.Val()
			case "cache_control":
				h.CacheControl = d.Val()
			case "public_url":
				h.PublicURL = d.Val()
			case "redis":
				h.Redis = d.Val()
			case "redis_prefix":
				h.RedisPrefix = d.Val()
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
		if opt != "price" && opt != "product" && d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if h.SecretKey == "" {
		return d.Err("secret_key is required (for example: secret_key {env.STRIPE_SECRET_KEY})")
	}
	if len(h.Prices) == 0 && len(h.Products) == 0 {
		return d.Err("price or product is required")
	}
	return nil
}

// parseLimit reads <n> per <duration>, or off, for the option opt.
func parseLimit(d *caddyfile.Dispenser, opt string) (*Limit, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &Limit{Off: true}, nil
	case len(args) == 3 && args[1] == "per":
		n, err := strconv.Atoi(args[0])
		if err != nil || n <= 0 {
			return nil, d.Errf("%s: %q is not a positive whole number", opt, args[0])
		}
		dur, err := caddy.ParseDuration(args[2])
		if err != nil || dur <= 0 {
			return nil, d.Errf("%s: %q is not a positive duration", opt, args[2])
		}
		return &Limit{Max: n, Per: caddy.Duration(dur)}, nil
	}
	return nil, d.Errf("%s takes <n> per <duration> (such as 30 per 10m) or off", opt)
}

// parseEmailBlock reads the email block. Its errors never quote the
// password.
func parseEmailBlock(d *caddyfile.Dispenser) (*EmailConfig, error) {
	e := &EmailConfig{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("email: %s given more than once", opt)
		}
		seen[opt] = true
		if !d.NextArg() {
			return nil, d.Errf("email: %s needs a value", opt)
		}
		v := d.Val()
		switch opt {
		case "smtp":
			e.SMTP = v
		case "username":
			e.Username = v
		case "password":
			e.Password = v
		case "from":
			e.From = v
		case "tls":
			if v != "starttls" && v != "implicit" && v != "off" {
				return nil, d.Errf("email: tls %q must be starttls, implicit or off", v)
			}
			e.TLS = v
		default:
			return nil, d.Errf("email: unrecognized option '%s' (smtp, username, password, from, tls)", opt)
		}
		if d.NextArg() {
			return nil, d.Errf("email: %s takes one value (quote a from with spaces: from \"Name <addr@example.com>\")", opt)
		}
	}
	if e.SMTP == "" {
		return nil, d.Err("email: smtp <host:port> is required")
	}
	if e.From == "" {
		return nil, d.Err(`email: from is required, such as from "Example News <news@example.com>"`)
	}
	return e, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
