package paywall

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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
