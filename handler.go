package paywall

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// denial is a refusal and what the visitor can do about it.
type denial struct {
	Status      int    // 402, or 503 when Stripe cannot be reached
	Reason      string // one of the reason constants
	CheckoutURL string // a path on this site that starts a checkout and comes back here
	PortalURL   string // a path on this site to the billing portal; set when payment failed
	LogoutURL   string // a path on this site to forget the visitor; set when one is known
	ReturnPath  string // where the visitor was going
	KeysURL     string // a path on this site to the visitor's API keys; set with api_keys for a known customer
	RetryAfter  int    // seconds; set with 503 and 429
	SigninURL   string // a path on this site that mails a sign-in link; set when offered
	Token       string // the sign-in link being confirmed
	signinEmail string // and the address it was mailed to, masked
	notice      bool   // a refusal of an endpoint: always the built-in page
	account     bool   // the site's login says who the visitor is
	signinTTL   time.Duration
	maxKeys     int   // api_keys max, for the words of keys_max
	program     bool  // the request presented an API key
	freeViews   int   // free_views n, for the words of free_views_used
	freeBack    int64 // unix seconds: when free views come back
	known       bool  // a customer is known for this visitor
	trialDays   int   // the trial a checkout would give this visitor
	offer       *offer
}

// sells reports whether the refusal offers a checkout to buy, and so shows
// what it sells: a 402 of the gate with a checkout, not a failed payment
// (whose way out is the billing portal).
func (d *denial) sells() bool {
	return !d.notice && d.Status == http.StatusPaymentRequired && d.CheckoutURL != "" && d.Reason != reasonPaymentFailed
}

// ServeHTTP serves the endpoints under the prefix and gates everything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if p := r.URL.Path; strings.HasPrefix(p, h.prefix) && (len(p) == len(h.prefix) || p[len(h.prefix)] == '/') {
		return h.serveEndpoint(w, r, p[len(h.prefix):])
	}
	return h.gate(w, r, next)
}

// gate lets a paying visitor through and refuses everyone else. A cache hit
// costs two map lookups under read locks and no allocation.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if h.apiKeys != nil {
		if key, ok := bearerKey(r.Header); ok {
			return h.gateKey(w, r, next, repl, key)
		}
	}
	t := now()
	v, err := h.who(r, repl, t)
	if err != nil {
		return h.refuse(w, r, next, repl, visitor{}, http.StatusServiceUnavailable, reasonUnavailable)
	}
	if v.customer == "" {
		reason := reasonNoSubscription
		if h.startedCheckout(r) {
			reason = reasonCheckoutNotDone
		}
		return h.refuse(w, r, next, repl, v, http.StatusPaymentRequired, reason)
	}
	id := v.identity
	if h.login == nil {
		h.cookies.renew(w, r, id, t.Unix())
	}
	f, err := h.customerState(id.customer, t.UnixNano())
	if err != nil {
		return h.refuse(w, r, next, repl, v, http.StatusServiceUnavailable, reasonUnavailable)
	}
	return h.admit(w, r, next, repl, v, f.subs, &id.placeholders, t)
}

// admit lets a visitor whose subscriptions pay through, with the
// placeholders of their identity (or key), and refuses one whose do not.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer, v visitor, subs []subscriptionState, placeholders *[3]caddy.ReplacerFunc, t time.Time) error {
	ok, reason := h.entitlement(subs, t)
	if !ok {
		v.hadTrial = h.hadTrial(subs) // one trial per customer: the page does not offer another
		return h.refuse(w, r, next, repl, v, http.StatusPaymentRequired, reason)
	}
	repl.Map(placeholders[entitledIndex(reason)])
	decisionsEntitled.Inc()
	return h.pass(w, r, next)
}

// pass serves an entitled request.
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.cacheControl == "" {
		return next.ServeHTTP(w, r) // cache_control off: the application owns caching
	}
	// What a subscriber is shown must not be kept by a shared cache and
	// served to others, nor shown again by the browser from its cache after
	// the subscription ends; whatever caching headers others set, the
	// writer keeps the page private.
	if hdr := w.Header(); hdr["Cache-Control"] == nil {
		hdr["Cache-Control"] = []string{h.cacheControl}
	}
	pw := paidWriters.Get().(*paidWriter)
	pw.ResponseWriter, pw.ours, pw.checked = w, h.cacheControl, false
	err := next.ServeHTTP(pw, r)
	pw.ResponseWriter = nil
	paidWriters.Put(pw)
	return err
}

// entitledReasons are the reasons a visitor passes, in the order of
// identity.placeholders.
var entitledReasons = [3]any{reasonActive, reasonTrialing, reasonPastDueGrace}

func entitledIndex(reason string) int {
	switch reason {
	case reasonTrialing:
		return 1
	case reasonPastDueGrace:
		return 2
	}
	return 0
}

// refuse sets the placeholders of a refusal and answers it, or in dry_run
// logs it and serves the request anyway.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer, id visitor, status int, reason string) error {
	// A search engine's crawler, verified, reads what it indexes; only
	// requests that claim to be one get this far and cost a lookup.
	if h.crawlers != nil && status == http.StatusPaymentRequired && !id.byKey {
		if engine, ok := h.crawlers.verified(r); ok {
			repl.Set("http.paywall.status", statusCrawler)
			repl.Set("http.paywall.reason", reasonVerifiedCrawler)
			repl.Set("http.paywall.crawler", engine)
			decisions.WithLabelValues(statusCrawler, reasonVerifiedCrawler).Inc()
			return h.pass(w, r, next)
		}
	}
	var freeBack int64
	// Free views for those who do not pay (anonymous, lapsed, unknown);
	// not for a customer whose payment failed or is on its way, whose
	// page says what to do about it.
	if h.meter != nil && status == http.StatusPaymentRequired && !id.byKey && reason != reasonPaymentFailed && reason != reasonPaymentProcessing {
		served, used, back, err := h.freeView(w, r, next, repl)
		if served {
			return err
		}
		if used && reason == reasonNoSubscription {
			reason, freeBack = reasonFreeViewsUsed, back
			repl.Set("http.paywall.free_views_left", 0)
		}
	}
	ret := r.URL.RequestURI()
	d := denial{
		Status:     status,
		Reason:     reason,
		ReturnPath: ret,
		account:    h.login != nil,
		program:    id.byKey,
		freeViews:  h.meterViews(),
		freeBack:   freeBack,
		known:      id.customer != "",
	}
	if !id.hadTrial {
		d.trialDays = h.TrialDays
	}
	switch reason {
	case reasonPaymentProcessing:
		// Nothing to pay, on the page, in the Link header or in a
		// placeholder: the payment is on its way.
	case reasonPaymentFailed:
		d.PortalURL = h.prefix + "/portal?return=" + url.QueryEscape(ret)
		fallthrough
	default:
		d.CheckoutURL = h.prefix + "/checkout?return=" + url.QueryEscape(ret)
	}
	if id.customer != "" && h.login == nil && !id.byKey {
		d.LogoutURL = h.prefix + "/logout?return=" + url.QueryEscape(ret)
	}
	if h.apiKeys != nil && id.customer != "" {
		d.KeysURL = h.apiKeys.url
	}
	// Email sign-in, for a visitor this browser does not know; not for
	// a known one whose subscription lapsed, who is to subscribe again.
	if h.signin != nil && id.customer == "" && !id.byKey && status == http.StatusPaymentRequired {
		d.SigninURL = h.prefix + "/signin"
		d.signinTTL = h.signin.ttl
	}
	statusValue := statusPaymentRequired
	if status == http.StatusServiceUnavailable {
		statusValue = statusUnavailable
		d.RetryAfter = h.retryAfter()
	}
	if id.customer != "" {
		repl.Set("http.paywall.customer", id.customerAny)
	}
	repl.Set("http.paywall.status", statusValue)
	repl.Set("http.paywall.reason", reason)
	if h.handleErrors {
		// What the site's own error page sells, in the visitor's
		// language, as the built-in page shows it; empty where it
		// offers nothing, or until the price is known.
		var words offerWords
		if d.sells() {
			if o := h.pageOffer(); o != nil {
				lang := negotiateLanguage(r.Header.Values("Accept-Language"))
				words = o.words(pageStrings[lang], lang, d.trialDays)
			}
		}
		handleErrorsPlaceholders(repl, d, words)
	} else {
		repl.Set("http.paywall.checkout_url", d.CheckoutURL)
	}
	if h.apiKeys != nil {
		repl.Set("http.paywall.keys_url", h.apiKeys.urlAny)
	}
	decisions.WithLabelValues(statusValue, reason).Inc()

	if h.DryRun {
		h.logger.Info("dry run: would refuse", zap.Int("status", status), zap.String("reason", reason), zap.String("uri", ret))
		return next.ServeHTTP(w, r)
	}
	// Programs learn from a refusal how to present a key, beside how to
	// pay (the Link header).
	if h.apiKeys != nil && status == http.StatusPaymentRequired && id.customer == "" && len(r.Header["Authorization"]) == 0 && wantsProblemJSON(r.Header.Values("Accept")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+h.realm(r)+`"`)
	}
	if ce := h.logger.Check(zap.DebugLevel, "refused"); ce != nil {
		ce.Write(zap.Int("status", status), zap.String("reason", reason), zap.String("customer", id.customer), zap.String("uri", ret))
	}
	if h.handleErrors {
		return h.refusalForCaddy(w, d)
	}
	return h.writeDenial(w, r, d)
}

// handleErrorsPlaceholders sets, for the site's handle_errors, every
// placeholder a refusal may fill, empty where this one has nothing: Caddy
// leaves a placeholder nobody set as it is written, so an error page shared
// by several refusals would show another's raw.
func handleErrorsPlaceholders(repl *caddy.Replacer, d denial, words offerWords) {
	repl.Set("http.paywall.checkout_url", d.CheckoutURL)
	repl.Set("http.paywall.portal_url", d.PortalURL)
	repl.Set("http.paywall.signin_url", d.SigninURL)
	repl.Set("http.paywall.retry_after", d.RetryAfter)
	repl.Set("http.paywall.product", words.product)
	repl.Set("http.paywall.price", words.price)
	repl.Set("http.paywall.trial", words.trial)
}

// Values of refusals.
const (
	refusalsPage         = "page"
	refusalsHandleErrors = "handle_errors"
)

// refusalForCaddy hands a refusal to the site's handle_errors routes, as
// basic_auth hands them its 401: the headers that belong to the refusal
// whatever page answers it, and the status as an error. The placeholders
// are set already.
func (h *Handler) refusalForCaddy(w http.ResponseWriter, d denial) error {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if d.RetryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(d.RetryAfter))
	} else if d.CheckoutURL != "" && !strings.ContainsAny(d.CheckoutURL, "<>\r\n") {
		hdr.Set("Link", "<"+d.CheckoutURL+`>; rel="payment"`)
	}
	return caddyhttp.Error(d.Status, errors.New("paywall: "+d.Reason))
}

// retryAfter is the number of seconds a visitor should wait while Stripe
// cannot be reached.
func (h *Handler) retryAfter() int {
	left := time.Duration(h.account.downUntil.Load() - now().UnixNano())
	secs := int(left/time.Second) + 1
	if secs < 5 {
		secs = 5
	}
	return secs
}

func (h *Handler) serveEndpoint(w http.ResponseWriter, r *http.Request, name string) error {
	switch name {
	case "/checkout":
		if ok, err := allow(w, r, http.MethodGet, http.MethodHead, http.MethodPost); !ok {
			return err
		}
		return h.serveCheckout(w, r)
	case "/success":
		if ok, err := allow(w, r, http.MethodGet, http.MethodHead); !ok {
			return err
		}
		return h.serveSuccess(w, r)
	case "/portal":
		if ok, err := allow(w, r, http.MethodGet, http.MethodHead, http.MethodPost); !ok {
			return err
		}
		return h.servePortal(w, r)
	case "/logout":
		if h.login != nil {
			return caddyhttp.Error(http.StatusNotFound, errors.New("paywall: sign-out is the site's own, with identity "+h.Identity.Source))
		}
		if ok, err := allow(w, r, http.MethodPost); !ok {
			return err
		}
		return h.serveLogout(w, r)
	case "/signin":
		if h.signin == nil {
			return caddyhttp.Error(http.StatusNotFound, errors.New("paywall: no email block configured, so no sign-in by email"))
		}
		if ok, err := allow(w, r, http.MethodGet, http.MethodHead, http.MethodPost); !ok {
			return err
		}
		return h.serveSignin(w, r)
	case "/keys":
		return h.serveKeys(w, r, "")
	case "/webhook":
		if h.webhookSecret == "" {
			return caddyhttp.Error(http.StatusNotFound, errors.New("paywall: no webhook_secret configured"))
		}
		if ok, err := allow(w, r, http.MethodPost); !ok {
			return err
		}
		return h.serveWebhook(w, r)
	}
	if rest, ok := strings.CutPrefix(name, "/keys/"); ok {
		return h.serveKeys(w, r, rest)
	}
	return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("paywall: no endpoint %q", name))
}

// allow reports whether the method is one of methods; otherwise it sets
// the Allow header and returns a 405 for Caddy's error handling, as
// file_server does. HEAD, where allowed, is answered here with 204 and none
// of GET's effects (a Checkout Session made, a checkout finished, a link
// used): link checkers and mail scanners send it.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) (bool, error) {
	for _, m := range methods {
		if r.Method == m {
			if m == http.MethodHead {
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusNoContent)
				return false, nil
			}
			return true, nil
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return false, caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("paywall: %s not allowed on this endpoint", r.Method))
}

// replacerOf is the request's replacer; a new one for a request that did not
// come through Caddy's server (unit tests of single endpoints).
func replacerOf(r *http.Request) *caddy.Replacer {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		return repl
	}
	return caddy.NewReplacer()
}

// returnPath reads the same-site path to come back to, from the query or a
// posted form.
func returnPath(r *http.Request) string {
	ret := r.URL.Query().Get("return")
	if ret == "" && r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		ret = r.PostFormValue("return")
	}
	return safeReturn(ret)
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, ret string) error {
	return h.writeDenial(w, r, denial{
		Status:      http.StatusServiceUnavailable,
		Reason:      reasonUnavailable,
		CheckoutURL: h.prefix + "/checkout?return=" + url.QueryEscape(ret),
		ReturnPath:  ret,
		RetryAfter:  h.retryAfter(),
	})
}

// sameSite reports whether a state-changing request comes from this site, by
// the headers browsers send: Sec-Fetch-Site, or else Origin. A request with
// neither (curl, an old browser) is let through: it cannot carry a cookie
// attack from another site's page.
func sameSite(r *http.Request, publicURL string) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return u.Host == r.Host || (publicURL != "" && o == publicURL)
}
