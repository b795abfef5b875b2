package paywall

import (
	"context"
	"net/http"
	"time"
)

// servePortal sends a known visitor to a new Stripe billing portal session.
func (h *Handler) servePortal(w http.ResponseWriter, r *http.Request) error {
	ret := returnPath(r)
	w.Header().Set("Cache-Control", "no-store")
	id, err := h.who(r, replacerOf(r), now())
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if id.customer == "" {
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return nil
	}
	base, ok := h.origin(r)
	if !ok {
		return h.notice(w, r, http.StatusInternalServerError, reasonOriginUnknown, ret, 0)
	}
	if refused, err := h.refuseStripeCall(w, r, now(), ret); refused {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.StripeTimeout))
	defer cancel()
	portal, err := h.stripe.createPortal(ctx, id.customer, base+ret)
	if err != nil {
		return h.stripeFailed(w, r, ret, err)
	}
	http.Redirect(w, r, portal, http.StatusSeeOther)
	return nil
}
