package paywall

import (
	"html/template"
	"net/http"
	"strconv"
)

// writeDenial is a placeholder until the page lands.
func (h *Handler) writeDenial(w http.ResponseWriter, r *http.Request, d denial) error {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Link", "<"+d.CheckoutURL+`>; rel="payment"`)
	if d.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfter))
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write([]byte(d.Reason))
	return nil
}

func loadPageTemplate(path string) (*template.Template, error) {
	return template.ParseFiles(path)
}
