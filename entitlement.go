package paywall

import (
	"slices"
	"time"
)

// Reasons, as set in {http.paywall.reason} and the problem document.
const (
	reasonActive            = "active"
	reasonTrialing          = "trialing"
	reasonPastDueGrace      = "past_due_grace"
	reasonNoSubscription    = "no_subscription"
	reasonEnded             = "subscription_ended"
	reasonPaymentFailed     = "payment_failed"
	reasonPaymentProcessing = "payment_processing"
	reasonTrialEnded        = "trial_ended"
	reasonCheckoutNotDone   = "checkout_not_completed"
	reasonUnavailable       = "stripe_unavailable"
	reasonInvalidKey        = "invalid_key"      // 401: an API key that is not live (apikeys.go)
	reasonVerifiedCrawler   = "verified_crawler" // passes: a search engine's crawler, checked by DNS
	reasonFreeView          = "free_view"        // passes: one of free_views (meter.go)
	reasonFreeViewsUsed     = "free_views_used"  // 402: the free views of the window are read
)

// Reasons the paywall's own endpoints give when they refuse, on the
// built-in page or in a problem document.
const (
	reasonCheckoutLinkInvalid  = "checkout_link_invalid"  // 400: /success without a session of this site
	reasonCheckoutOtherBrowser = "checkout_other_browser" // 403: /success in a browser that did not start it
	reasonCheckoutLimited      = "checkout_limited"       // 429: checkout_limit reached for the address
	reasonSuccessLimited       = "success_limited"        // 429: the same, on the success page of a payer
	reasonCheckoutBusy         = "checkout_busy"          // 503: the account's checkout budget is spent
	reasonOriginUnknown        = "origin_unknown"         // 500: no trusted address for Stripe's return URLs
	reasonIdentityMissing      = "identity_missing"       // 403: a checkout with identity <placeholder> and nobody signed in
)

// The pages of email sign-in (signin.go).
const (
	reasonSignin             = "signin"               // 200: the form that asks for a link
	reasonSigninSent         = "signin_sent"          // 202: asked; check the inbox
	reasonSigninConfirm      = "signin_confirm"       // 200: the button that uses a link
	reasonSigninEmailInvalid = "signin_email_invalid" // 400: not an email address
	reasonSigninLinkInvalid  = "signin_link_invalid"  // 400: not a link of this site
	reasonSigninLinkExpired  = "signin_link_expired"  // 410
	reasonSigninLinkUsed     = "signin_link_used"     // 410
)

// The pages of API key management (keys.go).
const (
	reasonKeysSignin     = "keys_signin"     // 401: nobody signed in
	reasonKeysByKey      = "keys_by_key"     // 403: a request with a key; keys are managed in a browser
	reasonKeysMax        = "keys_max"        // 409: the customer holds max keys
	reasonKeysFull       = "keys_full"       // 409: the customer's metadata has no room
	reasonKeyNotFound    = "key_not_found"   // 404: revoking a key the customer does not hold
	reasonKeysPermission = "keys_permission" // 500: the Stripe key may not write customers
)

// Values of {http.paywall.status}.
const (
	statusEntitled        = "entitled"
	statusPaymentRequired = "payment_required"
	statusUnavailable     = "unavailable"
	statusInvalidKey      = "unauthorized"
	statusCrawler         = "crawler" // a verified search engine crawler (crawlers.go)
	statusFreeView        = "free_view"
)

// entitlement decides from a customer's subscriptions whether they pay for
// this handler's prices or products, and says why in either case.
func (h *Handler) entitlement(subs []subscriptionState, t time.Time) (bool, string) {
	denial := reasonNoSubscription
	rank := 0
	for i := range subs {
		s := &subs[i]
		if !h.covers(s) {
			continue
		}
		switch s.Status {
		case "active":
			// cancel_at_period_end keeps access until Stripe ends it.
			return true, reasonActive
		case "trialing":
			return true, reasonTrialing
		case "past_due":
			if h.GracePeriod > 0 && t.Before(time.Unix(s.PeriodStart, 0).Add(time.Duration(h.GracePeriod))) {
				return true, reasonPastDueGrace
			}
			denial, rank = worse(denial, rank, reasonPaymentFailed, 4)
		case "incomplete":
			if s.FirstPaymentProcessing {
				// A bank debit or transfer on its way: identity is not
				// entitlement, but the visitor has nothing to do but wait.
				denial, rank = worse(denial, rank, reasonPaymentProcessing, 3)
			} else {
				denial, rank = worse(denial, rank, reasonPaymentFailed, 4)
			}
		case "unpaid":
			denial, rank = worse(denial, rank, reasonPaymentFailed, 4)
		case "paused":
			// Stripe pauses a subscription whose trial ended without a
			// payment method.
			denial, rank = worse(denial, rank, reasonTrialEnded, 2)
		case "canceled":
			if s.TrialEnd > 0 && s.EndedAt > 0 && s.EndedAt <= s.TrialEnd+60 {
				denial, rank = worse(denial, rank, reasonTrialEnded, 2)
			} else {
				denial, rank = worse(denial, rank, reasonEnded, 1)
			}
		default: // incomplete_expired and statuses Stripe may add
			denial, rank = worse(denial, rank, reasonEnded, 1)
		}
	}
	return false, denial
}

// worse keeps the reason the visitor can act on first: a failed payment
// they can fix beats a first payment still on its way (nothing to do but
// wait, and nothing to pay again), which beats an ended trial, which beats
// an ended subscription.
func worse(cur string, curRank int, next string, nextRank int) (string, int) {
	if nextRank > curRank {
		return next, nextRank
	}
	return cur, curRank
}

// covers reports whether a subscription includes one of this handler's
// prices or products.
func (h *Handler) covers(s *subscriptionState) bool {
	for _, it := range s.Items {
		if slices.Contains(h.prices, it.Price) || (it.Product != "" && slices.Contains(h.products, it.Product)) {
			return true
		}
	}
	return false
}
