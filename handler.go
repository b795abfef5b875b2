package paywall

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// checkoutLifetime is how long a started checkout stays valid: the Checkout
// Session's expires_at and the nonce cookie's lifetime.
const checkoutLifetime = time.Hour

// denial is a refusal and what the visitor can do about it.
type denial struct {
	Status      int    // 402, or 503 when Stripe cannot be reached
	Reason      string // one of the reason constants
	CheckoutURL string // a path on this site that starts a checkout and comes back here
	PortalURL   string // a path on this site to the billing portal; set when payment failed
	LogoutURL   string // a path on this site to forget the visitor; set when one is known
	ReturnPath  string // where the visitor was going
	RetryAfter  int    // seconds; set with 503
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
	t := now()
	id, known, err := h.cookies.identify(r, t.Unix())
	if err != nil {
		return h.refuse(w, r, next, repl, identity{}, http.StatusServiceUnavailable, reasonUnavailable)
	}
	if !known {
		reason := reasonNoSubscription
		if _, started := cookieValue(r.Header, h.cookies.nonce); started {
			reason = reasonCheckoutNotDone
		}
		return h.refuse(w, r, next, repl, identity{}, http.StatusPaymentRequired, reason)
	}
	h.cookies.renew(w, r, id, t.Unix())
	subs, err := h.customerState(id.customer, t.UnixNano())
	if err != nil {
		return h.refuse(w, r, next, repl, id, http.StatusServiceUnavailable, reasonUnavailable)
	}
	ok, reason := h.entitlement(subs, t)
	if !ok {
		return h.refuse(w, r, next, repl, id, http.StatusPaymentRequired, reason)
	}
	repl.Map(id.placeholders[entitledIndex(reason)])
	decisionsEntitled.Inc()
	// What a subscriber is shown must not be kept by a shared cache and
	// served to others, nor shown again by the browser from its cache after
	// the subscription ends. A Cache-Control from upstream is added to this
	// one, and "private" keeps ruling shared caches out.
	if h.cacheControl != "" {
		if hdr := w.Header(); hdr["Cache-Control"] == nil {
			hdr["Cache-Control"] = []string{h.cacheControl}
		}
	}
	return next.ServeHTTP(w, r)
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
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer, id identity, status int, reason string) error {
	ret := r.URL.RequestURI()
	d := denial{
		Status:      status,
		Reason:      reason,
		CheckoutURL: h.prefix + "/checkout?return=" + url.QueryEscape(ret),
		ReturnPath:  ret,
	}
	if reason == reasonPaymentFailed {
		d.PortalURL = h.prefix + "/portal?return=" + url.QueryEscape(ret)
	}
	if id.customer != "" {
		d.LogoutURL = h.prefix + "/logout?return=" + url.QueryEscape(ret)
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
	repl.Set("http.paywall.checkout_url", d.CheckoutURL)
	decisions.WithLabelValues(statusValue, reason).Inc()

	if h.DryRun {
		h.logger.Info("dry run: would refuse", zap.Int("status", status), zap.String("reason", reason), zap.String("uri", ret))
		return next.ServeHTTP(w, r)
	}
	if ce := h.logger.Check(zap.DebugLevel, "refused"); ce != nil {
		ce.Write(zap.Int("status", status), zap.String("reason", reason), zap.String("customer", id.customer), zap.String("uri", ret))
	}
	return h.writeDenial(w, r, d)
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
		if !allow(w, r, http.MethodGet, http.MethodPost) {
			return nil
		}
		return h.serveCheckout(w, r)
	case "/success":
		if !allow(w, r, http.MethodGet) {
			return nil
		}
		return h.serveSuccess(w, r)
	case "/portal":
		if !allow(w, r, http.MethodGet, http.MethodPost) {
			return nil
		}
		return h.servePortal(w, r)
	case "/logout":
		if !allow(w, r, http.MethodPost) {
			return nil
		}
		return h.serveLogout(w, r)
	case "/webhook":
		if h.webhookSecret == "" {
			return caddyhttp.Error(http.StatusNotFound, errors.New("paywall: no webhook_secret configured"))
		}
		if !allow(w, r, http.MethodPost) {
			return nil
		}
		return h.serveWebhook(w, r)
	}
	return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("paywall: no endpoint %q", name))
}

// allow answers 405 with an Allow header unless the method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
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

// origin is this site's scheme and host, for the URLs Stripe sends the
// visitor back to: public_url when set, else what the request shows.
func (h *Handler) origin(r *http.Request) string {
	if h.publicURL != "" {
		return h.publicURL
	}
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
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

// serveCheckout starts a Stripe Checkout for this browser. A visitor who
// already pays goes back where they came from, and one whose payment failed
// goes to the billing portal: neither may end up paying twice.
func (h *Handler) serveCheckout(w http.ResponseWriter, r *http.Request) error {
	ret := returnPath(r)
	var customer string
	trialDays := h.TrialDays
	id, known, err := h.cookies.identify(r, now().Unix())
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if known {
		subs, err := h.customerState(id.customer, now().UnixNano())
		if err != nil {
			return h.unavailable(w, r, ret)
		}
		ok, reason := h.entitlement(subs, now())
		if ok {
			http.Redirect(w, r, ret, http.StatusSeeOther)
			return nil
		}
		if reason == reasonPaymentFailed {
			http.Redirect(w, r, h.prefix+"/portal?return="+url.QueryEscape(ret), http.StatusSeeOther)
			return nil
		}
		customer = id.customer // a lapsed customer subscribes again as themselves
		if h.hadTrial(subs) {
			trialDays = 0 // one free trial per customer
		}
	}
	if h.account.down(now().UnixNano()) {
		return h.unavailable(w, r, ret)
	}

	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Duration(h.StripeTimeout))
	defer cancel()
	price, err := h.priceToSell(ctx)
	if err != nil {
		return h.stripeFailed(w, r, ret, err)
	}
	// A checkout already under way in this browser (another tab) keeps its
	// nonce, so that paying in either tab is accepted.
	nonce, ok := cookieValue(r.Header, h.cookies.nonce)
	if !ok || !validNonce(nonce) {
		nonce = newNonce()
	}
	base := h.origin(r)
	// Stripe replaces {CHECKOUT_SESSION_ID} only when it stands unescaped.
	success := base + h.prefix + "/success?return=" + url.QueryEscape(ret) + "&session_id={CHECKOUT_SESSION_ID}"
	req := checkoutRequest{
		Price:               price,
		Customer:            customer,
		SuccessURL:          success,
		CancelURL:           base + ret,
		ClientReferenceID:   nonce,
		TrialDays:           trialDays,
		AllowPromotionCodes: h.AllowPromotionCodes,
		ExpiresAt:           now().Add(checkoutLifetime),
	}
	sess, err := h.stripe.createCheckout(ctx, req)
	if errors.Is(err, errStripeNotFound) && customer != "" {
		// The customer was deleted in Stripe (or the cookie comes from
		// test mode): subscribe as a new customer.
		req.Customer = ""
		sess, err = h.stripe.createCheckout(ctx, req)
	}
	if err != nil {
		return h.stripeFailed(w, r, ret, err)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     h.cookies.nonce,
		Value:    nonce,
		Path:     "/",
		MaxAge:   int(checkoutLifetime / time.Second),
		HttpOnly: true,
		Secure:   h.cookies.secure(r),
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, sess.URL, http.StatusSeeOther)
	return nil
}

// stripeFailed answers a failed Stripe call: 503 and a page that says to
// retry when Stripe is unavailable, 502 otherwise. It does not mark Stripe
// down for everyone: one visitor's failed call may be their own doing (a
// closed connection) or a rate limit of checkouts, not of reads.
func (h *Handler) stripeFailed(w http.ResponseWriter, r *http.Request, ret string, err error) error {
	if r.Context().Err() != nil {
		return caddyhttp.Error(499, r.Context().Err()) // the client went away
	}
	if errors.Is(err, errStripeUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return h.unavailable(w, r, ret)
	}
	h.logger.Error("stripe call failed", zap.Error(err))
	return caddyhttp.Error(http.StatusBadGateway, err)
}

func (h *Handler) priceToSell(ctx context.Context) (string, error) {
	if len(h.prices) > 0 {
		return h.prices[0], nil
	}
	if p := h.soldPrice.Load(); p != nil {
		return *p, nil
	}
	price, err := h.stripe.defaultPrice(ctx, h.products[0])
	if err == nil {
		h.soldPrice.Store(&price) // until the next config load
	}
	return price, err
}

// hadTrial reports whether the customer ever had a trial of what this
// handler sells.
func (h *Handler) hadTrial(subs []subscriptionState) bool {
	for i := range subs {
		if subs[i].TrialEnd > 0 && h.covers(&subs[i]) {
			return true
		}
	}
	return false
}

// serveSuccess accepts a completed checkout once, in the browser that
// started it, and remembers the customer in a signed cookie.
func (h *Handler) serveSuccess(w http.ResponseWriter, r *http.Request) error {
	ret := returnPath(r)
	w.Header().Set("Cache-Control", "no-store")
	sid := r.URL.Query().Get("session_id")
	if !validSessionID(sid) {
		return caddyhttp.Error(http.StatusBadRequest, errors.New("paywall: missing or malformed session_id"))
	}
	nonce, ok := cookieValue(r.Header, h.cookies.nonce)
	if !ok || nonce == "" {
		return caddyhttp.Error(http.StatusForbidden, errors.New("paywall: checkout was not started in this browser"))
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Duration(h.StripeTimeout))
	defer cancel()
	sess, err := h.stripe.checkoutSession(ctx, sid)
	if errors.Is(err, errStripeNotFound) {
		return caddyhttp.Error(http.StatusBadRequest, errors.New("paywall: unknown checkout session"))
	}
	if err != nil {
		return h.stripeFailed(w, r, r.URL.RequestURI(), err)
	}
	if subtle.ConstantTimeCompare([]byte(sess.ClientReferenceID), []byte(nonce)) != 1 {
		return caddyhttp.Error(http.StatusForbidden, errors.New("paywall: checkout session belongs to another browser"))
	}
	if sess.Status != "complete" || sess.Mode != "subscription" || sess.Customer == "" ||
		(sess.PaymentStatus != "paid" && sess.PaymentStatus != "no_payment_required") {
		// Not paid (yet): back to the page, which explains.
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return nil
	}
	cookie, err := h.cookies.issue(r, sess.Customer)
	if err != nil {
		// Before redeeming, so that the same URL works once this is fixed.
		return h.unavailable(w, r, ret)
	}
	if !h.account.redeem(sess.ID, now().UnixNano()) {
		return caddyhttp.Error(http.StatusForbidden, errors.New("paywall: checkout session already used"))
	}
	http.SetCookie(w, cookie)
	http.SetCookie(w, h.cookies.clear(r, h.cookies.nonce))
	if _, err := h.refreshCustomer(sess.Customer, false); err != nil {
		h.logger.Warn("could not read the new subscriber's state; it will be read on the next request", zap.Error(err))
	}
	h.logger.Info("checkout completed")
	h.logger.Debug("checkout completed for customer", zap.String("customer", sess.Customer))
	http.Redirect(w, r, ret, http.StatusSeeOther)
	return nil
}

// validSessionID accepts Checkout Session IDs: cs_ and then letters,
// digits and underscores.
func validSessionID(s string) bool {
	if len(s) < 4 || len(s) > 255 || !strings.HasPrefix(s, "cs_") {
		return false
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// servePortal sends a known visitor to a new Stripe billing portal session.
func (h *Handler) servePortal(w http.ResponseWriter, r *http.Request) error {
	ret := returnPath(r)
	w.Header().Set("Cache-Control", "no-store")
	id, known, err := h.cookies.identify(r, now().Unix())
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if !known {
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return nil
	}
	if h.account.down(now().UnixNano()) {
		return h.unavailable(w, r, ret)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Duration(h.StripeTimeout))
	defer cancel()
	portal, err := h.stripe.createPortal(ctx, id.customer, h.origin(r)+ret)
	if err != nil {
		return h.stripeFailed(w, r, ret, err)
	}
	http.Redirect(w, r, portal, http.StatusSeeOther)
	return nil
}

// serveLogout forgets the visitor in this browser, when the browser says the
// request comes from this site: another site must not sign a payer out.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if !sameSite(r, h.publicURL) {
		return caddyhttp.Error(http.StatusForbidden, errors.New("paywall: sign-out from another site"))
	}
	ret := returnPath(r)
	http.SetCookie(w, h.cookies.clear(r, h.cookies.name))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, ret, http.StatusSeeOther)
	return nil
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
