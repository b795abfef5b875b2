package paywall

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

const (
	// checkoutLifetime is how long a started Checkout Session stays open:
	// its expires_at.
	checkoutLifetime = time.Hour

	// checkoutCookieLifetime is how long a browser remembers the checkout it
	// started: longer than the session stays open, so that a payer whose
	// success page never arrived can come back later and be let in rather
	// than sold a second subscription. A completed session lets its
	// browser in for this long after it expired, and no longer.
	checkoutCookieLifetime = 24 * time.Hour

	// resumeMargin is the least time an open session must have left for a
	// browser to be sent back to it rather than to a new one.
	resumeMargin = 10 * time.Minute
)

// The checkout cookie binds a Checkout Session to the browser that started
// it: a random nonce, which Stripe keeps as the session's
// client_reference_id, the ID of the session started last, and what that
// session sells (its price and trial days, so that a browser is not sent
// back to a session whose price the page no longer shows):
//
//	<nonce>[.<checkout session ID>[.<price ID>.<trial days>]]
//
// It needs no signature: the session ID is only ever used together with
// Stripe's record of the session, which must carry this browser's nonce.
// What it must not be is planted by someone else (a sibling subdomain, a
// plain-HTTP page), who would then know a session the visitor pays for: on
// HTTPS its name starts with __Host-, which browsers accept only from this
// host, over HTTPS, for the whole site.

// checkoutCookieName is the name of the checkout cookie for this request.
func (h *Handler) checkoutCookieName(r *http.Request) string {
	if h.cookies.secure(r) {
		return h.cookies.hostNonce
	}
	return h.cookies.nonce
}

// checkoutCookie reads this browser's checkout: its nonce, and the session
// it started last and what it sells, when the cookie names one. On HTTPS a
// cookie under the plain name (set before the __Host- name was used) still
// gives its nonce, never a session.
func (h *Handler) checkoutCookie(r *http.Request) (nonce, session, sells string) {
	v, ok := cookieValue(r.Header, h.checkoutCookieName(r))
	if !ok && h.cookies.secure(r) {
		if v, ok = cookieValue(r.Header, h.cookies.nonce); ok {
			v, _, _ = strings.Cut(v, ".")
		}
	}
	if !ok {
		return "", "", ""
	}
	nonce, rest, _ := strings.Cut(v, ".")
	session, sells, _ = strings.Cut(rest, ".")
	if !validNonce(nonce) {
		return "", "", ""
	}
	if !validSessionID(session) {
		return nonce, "", ""
	}
	return nonce, session, sells
}

// sells is what a checkout sells, as the checkout cookie keeps it.
func sells(price string, trialDays int) string { return price + "." + strconv.Itoa(trialDays) }

// startedCheckout reports whether this browser holds a checkout cookie,
// under either name.
func (h *Handler) startedCheckout(r *http.Request) bool {
	if _, ok := cookieValue(r.Header, h.cookies.nonce); ok {
		return true
	}
	_, ok := cookieValue(r.Header, h.cookies.hostNonce)
	return ok
}

// serveCheckout sends the visitor to Stripe Checkout. A visitor who already
// pays goes back where they came from, and one whose payment failed goes to
// the billing portal; a browser that started a checkout before is sent back
// to it while it is open, and let in when it was paid: nobody is sold a
// second subscription by reloading, going back or losing a page.
func (h *Handler) serveCheckout(w http.ResponseWriter, r *http.Request) error {
	ret := returnPath(r)
	w.Header().Set("Cache-Control", "no-store")
	t := now()
	id, err := h.who(r, replacerOf(r), t)
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if h.login != nil && (id.login == "" || h.login.kind == loginCustomer && id.customer == "") {
		// Sold to nobody: the site's login must say who pays, and with
		// kind customer, name a customer the subscription can land on.
		if id.login != "" {
			h.logger.Warn("identity: the site's login is not a Stripe customer ID (cus_…), so no checkout can be made for it")
		}
		return h.notice(w, r, http.StatusForbidden, reasonIdentityMissing, ret, 0)
	}
	customer := id.customer
	trialDays := h.TrialDays
	if customer != "" {
		done, hadTrial, err := h.sellingTo(w, r, customer, t, ret)
		if done {
			return err
		}
		if hadTrial {
			trialDays = 0 // one free trial per customer
		}
	}
	if refused, err := h.refuseStripeCall(w, r, t, ret); refused {
		return err
	}

	// One stripe_timeout for the whole visit, retries included: a Stripe
	// that hangs holds a visitor this long once, then the outage back-off
	// answers the next ones at once.
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.StripeTimeout))
	defer cancel()

	if h.login != nil && customer == "" {
		// The cache's "no customer" may be older than a payment in
		// another tab or on another instance: before selling, ask Stripe
		// again, and sell to the customer it names (or, with metadata,
		// the one made for the user), with its facts read afresh.
		if customer, err = h.loginCustomerNow(ctx, id.login); err != nil {
			return h.stripeFailed(w, r, ret, err)
		}
		if customer != "" {
			h.invalidate(customer)
			done, hadTrial, err := h.sellingTo(w, r, customer, t, ret)
			if done {
				return err
			}
			if hadTrial {
				trialDays = 0
			}
		}
	}
	var email string // with kind email and no customer yet: Checkout's prefill
	if h.login != nil && h.login.kind == loginEmail && customer == "" {
		email = id.login
	}

	base, ok := h.origin(r)
	if !ok {
		return h.notice(w, r, http.StatusInternalServerError, reasonOriginUnknown, ret, 0)
	}
	price, err := h.priceToSell(ctx, t)
	if err != nil {
		return h.stripeFailed(w, r, ret, err)
	}
	nonce, started, sold := h.checkoutCookie(r)
	if started != "" {
		// A cookie of before the price was kept in it sells what it did.
		same := sold == "" || sold == sells(price, trialDays)
		if done, err := h.resumeCheckout(ctx, w, r, t, nonce, started, customer, email, ret, same); done {
			return err
		}
		if err := h.spend(t); err != nil { // the visit's call went to the resume
			return h.stripeFailed(w, r, ret, err)
		}
	}
	// A checkout already under way in this browser (another tab) keeps its
	// nonce, so that paying in either tab is accepted.
	if nonce == "" {
		nonce = newNonce()
	}
	// Stripe replaces {CHECKOUT_SESSION_ID} only when it stands unescaped.
	success := base + h.prefix + "/success?return=" + url.QueryEscape(ret) + "&session_id={CHECKOUT_SESSION_ID}"
	req := checkoutRequest{
		Price:               price,
		Customer:            customer,
		CustomerEmail:       email,
		SuccessURL:          success,
		CancelURL:           base + ret,
		ClientReferenceID:   nonce,
		TrialDays:           trialDays,
		AllowPromotionCodes: h.AllowPromotionCodes,
		ExpiresAt:           t.Add(checkoutLifetime),
	}
	sess, err := h.stripe.createCheckout(ctx, req)
	if errors.Is(err, errStripeNotFound) && customer != "" && (h.login == nil || h.login.kind == loginEmail) {
		// The customer was deleted in Stripe (or the cookie comes from
		// test mode): subscribe as a new customer, with the login's
		// email. A customer ID or metadata login names its customer, and
		// is never sold to another.
		if err = h.spend(t); err == nil {
			req.Customer, req.CustomerEmail = "", id.login
			sess, err = h.stripe.createCheckout(ctx, req)
		}
	}
	if err != nil {
		return h.stripeFailed(w, r, ret, err)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     h.checkoutCookieName(r),
		Value:    nonce + "." + sess.ID + "." + sells(price, trialDays),
		Path:     "/",
		MaxAge:   int(checkoutCookieLifetime / time.Second),
		HttpOnly: true,
		Secure:   h.cookies.secure(r),
		SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, sess.URL, http.StatusSeeOther)
	return nil
}

// sellingTo decides a checkout for a known customer: done (and answered)
// when they pay already (back where they came from) or their payment
// failed (to the billing portal, not a second subscription); otherwise
// whether they had a trial of what this handler sells.
func (h *Handler) sellingTo(w http.ResponseWriter, r *http.Request, customer string, t time.Time, ret string) (done, hadTrial bool, err error) {
	f, err := h.customerState(customer, t.UnixNano())
	if err != nil {
		return true, false, h.unavailable(w, r, ret)
	}
	subs := f.subs
	ok, reason := h.entitlement(subs, t)
	if ok {
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return true, false, nil
	}
	if reason == reasonPaymentFailed {
		http.Redirect(w, r, h.prefix+"/portal?return="+url.QueryEscape(ret), http.StatusSeeOther)
		return true, false, nil
	}
	if reason == reasonPaymentProcessing {
		// Their first payment is on its way (a bank debit): back to the
		// page, which says so, never a second subscription.
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return true, false, nil
	}
	return false, h.hadTrial(subs), nil
}

// resumeCheckout looks up the checkout this browser started last and, when
// it can, answers with it (done): back to it while it is open with
// resumeMargin to run and sells what is sold now (same), or in when it was
// completed. A session too close to its end, of another price, or for
// another customer, is expired first, so that a tab still
// showing it cannot be paid as well as the one that replaces it. Not done:
// a new checkout is to be made.
//
// A session is this visitor's when it is for their customer and, for a
// site's user whose checkout makes the customer (email), prefilled with
// their email: on a shared browser, another user's open checkout is not.
func (h *Handler) resumeCheckout(ctx context.Context, w http.ResponseWriter, r *http.Request, t time.Time, nonce, id, customer, email, ret string, same bool) (bool, error) {
	sess, err := h.stripe.checkoutSession(ctx, id)
	switch {
	case errors.Is(err, errStripeNotFound):
		return false, nil
	case err != nil:
		return true, h.stripeFailed(w, r, ret, err)
	case subtle.ConstantTimeCompare([]byte(sess.ClientReferenceID), []byte(nonce)) != 1:
		return false, nil
	case checkoutCompleted(sess, t):
		return true, h.finishCheckout(w, r, sess, ret) // the success page never arrived
	case sess.Status != "open":
		return false, nil
	case same && sess.URL != "" && sess.Customer == customer && (email == "" || strings.EqualFold(sess.PrefilledEmail, email)) &&
		time.Unix(sess.ExpiresAt, 0).Sub(t) >= resumeMargin:
		// Left in a closed tab, by the back button, after a declined card.
		http.Redirect(w, r, sess.URL, http.StatusSeeOther)
		return true, nil
	}
	if err := h.spend(t); err != nil {
		return true, h.stripeFailed(w, r, ret, err)
	}
	if err := h.stripe.expireCheckout(ctx, sess.ID); err != nil {
		// Paid in the meantime, or Stripe failing: read it again rather
		// than sell a second one.
		if again, rerr := h.stripe.checkoutSession(ctx, sess.ID); rerr == nil && checkoutCompleted(again, t) {
			return true, h.finishCheckout(w, r, again, ret)
		}
		return true, h.stripeFailed(w, r, ret, err)
	}
	return false, nil
}

// errCheckoutBusy: the account's checkout budget is spent.
var errCheckoutBusy = errors.New("checkout budget spent")

// spend takes one Stripe call from the account's checkout budget.
func (h *Handler) spend(t time.Time) error {
	if !h.budget(h.account.checkoutBudget, "checkout").take(t.UnixNano()) {
		return errCheckoutBusy
	}
	return nil
}

// refuseStripeCall answers, and reports true, when an endpoint visit may not
// ask Stripe now: Stripe is down, the client address has used its
// checkout_limit, or the account's checkout budget is spent. Otherwise it
// counts the visit against the address and takes one call from the budget.
func (h *Handler) refuseStripeCall(w http.ResponseWriter, r *http.Request, t time.Time, ret string) (bool, error) {
	if h.account.down(t.UnixNano()) {
		return true, h.unavailable(w, r, ret)
	}
	key := h.limitKey(r)
	if limited, wait := h.limited(r, key, t.UnixNano()); limited {
		if h.handleErrors {
			d := denial{Status: http.StatusTooManyRequests, Reason: reasonCheckoutLimited, RetryAfter: waitSeconds(wait)}
			repl := replacerOf(r)
			repl.Set("http.paywall.reason", reasonCheckoutLimited)
			handleErrorsPlaceholders(repl, d, offerWords{})
			return true, h.refusalForCaddy(w, d)
		}
		return true, h.notice(w, r, http.StatusTooManyRequests, reasonCheckoutLimited, ret, waitSeconds(wait))
	}
	if err := h.spend(t); err != nil {
		return true, h.stripeFailed(w, r, ret, err)
	}
	h.countVisit(key, t.UnixNano())
	return false, nil
}

// limitKey is what checkout_limit (and free_views_per_ip) count a request
// by: the client address, an IPv4-mapped one as its IPv4 address, an IPv6
// one by its /64, which one host holds whole.
func (h *Handler) limitKey(r *http.Request) string {
	ip := clientIP(r)
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap(); a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

// limited reports whether key has used its checkout_limit, and how long
// until it has not; a refusal is logged, once a minute at most.
func (h *Handler) limited(r *http.Request, key string, t int64) (bool, time.Duration) {
	if h.limiter == nil {
		return false, 0
	}
	ok, wait := h.limiter.wouldAllow(key, t)
	if !ok {
		if log, left := h.account.limitTrips.allow(t); log {
			h.logger.Warn("checkout_limit reached: this address started too many checkouts; "+
				"if every visitor arrives through one proxy or load balancer, they all share its address: "+
				"list it in Caddy's trusted_proxies server option so that visitors' own addresses are counted",
				zap.String("client_ip", clientIP(r)), zap.Int("limit", h.checkoutLimit.n), zap.Duration("per", h.checkoutLimit.window),
				zap.Int("refused_since_last_line", left))
		}
	}
	return !ok, wait
}

// countVisit counts one endpoint visit that asks Stripe against key.
func (h *Handler) countVisit(key string, t int64) {
	if h.limiter != nil {
		h.limiter.allow(key, t)
	}
}

// waitSeconds rounds a wait up to whole seconds, at least one.
func waitSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// checkoutCompleted reports whether a Checkout Session made a subscription
// for a customer, recently enough to let its browser in at t. Its payment
// may still be under way (a bank debit): the cookie only says who the
// visitor is, and their subscription's status decides access, so a payer
// whose money is on its way is known, and never sold a second subscription.
func checkoutCompleted(sess checkoutSession, t time.Time) bool {
	return sess.Status == "complete" && sess.Mode == "subscription" && sess.Customer != "" &&
		(sess.ExpiresAt == 0 || t.Before(time.Unix(sess.ExpiresAt, 0).Add(checkoutCookieLifetime)))
}

// serveSuccess lets in the browser that started a completed checkout, and
// no other. It may do so again (a reload after a lost response) until the
// browser's checkout cookie is cleared, which this answer does.
func (h *Handler) serveSuccess(w http.ResponseWriter, r *http.Request) error {
	ret := returnPath(r)
	w.Header().Set("Cache-Control", "no-store")
	sid := r.URL.Query().Get("session_id")
	if !validSessionID(sid) {
		return h.successRefused(w, r, http.StatusBadRequest, reasonCheckoutLinkInvalid, ret)
	}
	nonce, _, _ := h.checkoutCookie(r)
	if nonce == "" {
		return h.successRefused(w, r, http.StatusForbidden, reasonCheckoutOtherBrowser, ret)
	}
	// A payer coming back from Stripe is never held to the checkout
	// budget, nor to the checkouts their address started: the address has
	// an allowance of its own here, spent only by links that turn out not
	// to be its own (made up, or another browser's).
	t := now()
	key := "success " + h.limitKey(r)
	if h.account.down(t.UnixNano()) {
		return h.unavailable(w, r, r.URL.RequestURI())
	}
	if limited, wait := h.limited(r, key, t.UnixNano()); limited {
		return h.notice(w, r, http.StatusTooManyRequests, reasonSuccessLimited, r.URL.RequestURI(), waitSeconds(wait))
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.StripeTimeout))
	defer cancel()
	sess, err := h.stripe.checkoutSession(ctx, sid)
	if errors.Is(err, errStripeNotFound) {
		h.countVisit(key, t.UnixNano())
		return h.successRefused(w, r, http.StatusBadRequest, reasonCheckoutLinkInvalid, ret)
	}
	if err != nil {
		return h.stripeFailed(w, r, r.URL.RequestURI(), err)
	}
	if subtle.ConstantTimeCompare([]byte(sess.ClientReferenceID), []byte(nonce)) != 1 {
		h.countVisit(key, t.UnixNano())
		return h.successRefused(w, r, http.StatusForbidden, reasonCheckoutOtherBrowser, ret)
	}
	if !checkoutCompleted(sess, t) {
		// Not completed (yet): back to the page, which explains.
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return nil
	}
	return h.finishCheckout(w, r, sess, ret)
}

// successRefused answers a return from Stripe that cannot be completed in
// this browser: a page that says why and, where email sign-in is offered,
// the way in for a payer on another device or whose link broke, beside the
// way back to the page.
func (h *Handler) successRefused(w http.ResponseWriter, r *http.Request, status int, reason, ret string) error {
	d := denial{Status: status, Reason: reason, ReturnPath: ret, notice: true}
	if h.signin != nil { // never beside the site's own login
		d.SigninURL, d.signinTTL = h.prefix+"/signin", h.signin.ttl
	}
	return h.writeDenial(w, r, d)
}

// finishCheckout remembers the payer of a paid checkout in this browser and
// sends them back. Nothing slow stands between a valid session and the
// cookie: the customer is only marked stale here, and the page they return
// to reads Stripe.
func (h *Handler) finishCheckout(w http.ResponseWriter, r *http.Request, sess checkoutSession, ret string) error {
	if h.login == nil {
		cookie, err := h.cookies.issue(r, sess.Customer)
		if err != nil {
			return h.unavailable(w, r, ret)
		}
		http.SetCookie(w, cookie)
	} else {
		// The site's login, not a cookie, says who this is: remember
		// the customer the checkout made for it.
		h.learnLogin(h.login.value(r, replacerOf(r), h.logger), sess)
	}
	http.SetCookie(w, h.cookies.clear(r, h.checkoutCookieName(r)))
	if h.cookies.secure(r) {
		http.SetCookie(w, h.cookies.clear(r, h.cookies.nonce)) // set before __Host- was used
	}
	h.invalidate(sess.Customer)
	h.logger.Info("checkout completed")
	h.logger.Debug("checkout completed for customer", zap.String("customer", sess.Customer))
	http.Redirect(w, r, ret, http.StatusSeeOther)
	return nil
}

// stripeFailed answers a failed Stripe call of an endpoint: 503 and a page
// that says to retry when Stripe fails or the checkout budget is spent, 502
// when Stripe refused the request.
// A Stripe that fails or hangs starts the outage back-off, so that the next
// visitors do not wait for it too; a rate limit does not (it concerns this
// account's checkouts, not the reads that payers need), nor does a visitor
// who went away.
func (h *Handler) stripeFailed(w http.ResponseWriter, r *http.Request, ret string, err error) error {
	if r.Context().Err() != nil {
		return caddyhttp.Error(499, r.Context().Err()) // the client went away
	}
	if errors.Is(err, errCheckoutBusy) {
		return h.notice(w, r, http.StatusServiceUnavailable, reasonCheckoutBusy, ret, 2)
	}
	if errors.Is(err, errStripeUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		if !errors.Is(err, errStripeRateLimited) {
			h.account.downUntil.Store(now().UnixNano() + int64(outageBackoff))
		}
		h.logStripeFailure(err)
		return h.unavailable(w, r, ret)
	}
	// Stripe refused the request: a bug or a setting (an archived price),
	// which fails every checkout until it is fixed. Logged here, once a
	// minute, with what Stripe said and its request ID: Caddy logs a
	// handler's error only at debug level when the site has handle_errors.
	h.logStripeFailure(err)
	return caddyhttp.Error(http.StatusBadGateway, err)
}

func (h *Handler) priceToSell(ctx context.Context, t time.Time) (string, error) {
	if len(h.prices) > 0 {
		return h.prices[0], nil
	}
	if p := h.soldPrice.Load(); p != nil {
		return *p, nil
	}
	if err := h.spend(t); err != nil {
		return "", err
	}
	gen := h.account.soldGeneration()
	price, err := h.stripe.defaultPrice(ctx, h.products[0])
	if err == nil {
		// Kept until a product.updated or a later read: unless one came
		// during this read, which may have found the default of before.
		h.account.sellDefault(h.products[0], price, gen, h)
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
