package paywall

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	acceptBrowser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	acceptProblem = "application/problem+json"
)

func pageHandler() *Handler {
	return &Handler{
		prefix:       "/paywall",
		supportURL:   "https://help.example.com/contact",
		publicURL:    "http://example.com",
		logger:       zap.NewNop(),
		originWarned: new(atomic.Bool),
		signinWarned: new(atomic.Bool),
	}
}

// denialFor builds the denial the handler would build for reason on /premium/a.
func denialFor(reason string) denial {
	ret := "/premium/a?x=1"
	d := denial{
		Status:      http.StatusPaymentRequired,
		Reason:      reason,
		CheckoutURL: "/paywall/checkout?return=" + url.QueryEscape(ret),
		LogoutURL:   "/paywall/logout?return=" + url.QueryEscape(ret),
		ReturnPath:  ret,
	}
	switch reason {
	case reasonNoSubscription, reasonCheckoutNotDone:
		d.LogoutURL = ""
	case reasonPaymentFailed:
		d.PortalURL = "/paywall/portal?return=" + url.QueryEscape(ret)
	case reasonPaymentProcessing:
		d.CheckoutURL = ""
	case reasonUnavailable:
		d.Status = http.StatusServiceUnavailable
		d.RetryAfter = 30
	}
	return d
}

func deny(t *testing.T, h *Handler, method, accept, lang string, d denial) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://example.com/premium/a?x=1", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	if lang != "" {
		r.Header.Set("Accept-Language", lang)
	}
	w := httptest.NewRecorder()
	if err := h.writeDenial(w, r, d); err != nil {
		t.Fatalf("writeDenial: %v", err)
	}
	return w
}

// element returns the start tag of the element with the given id, or "".
func element(body, id string) string {
	re := regexp.MustCompile(`<[a-z]+\b[^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*>`)
	return re.FindString(body)
}

// attr returns the (still escaped) value of attribute name in a start tag.
func attr(tag, name string) string {
	m := regexp.MustCompile(`\b` + name + `="([^"]*)"`).FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	return m[1]
}

func decodeProblem(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem document is not JSON: %v\n%s", err, w.Body)
	}
	return p
}

func TestDenialEveryReason(t *testing.T) {
	h := pageHandler()
	for _, reason := range pageReasons {
		for _, lang := range pageLanguages {
			d := denialFor(reason)
			t.Run(reason+"/"+lang+"/html", func(t *testing.T) {
				w := deny(t, h, http.MethodGet, acceptBrowser, lang, d)
				if w.Code != d.Status {
					t.Fatalf("status = %d, want %d", w.Code, d.Status)
				}
				if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
					t.Errorf("Content-Type = %q", ct)
				}
				body := w.Body.String()
				main := element(body, "paywall")
				if attr(main, "data-reason") != reason {
					t.Errorf("main = %q, want data-reason %q", main, reason)
				}
				if !strings.Contains(body, `<html lang="`+lang+`">`) {
					t.Errorf("no <html lang=%q>", lang)
				}
				if got := w.Header().Get("Content-Language"); got != lang {
					t.Errorf("Content-Language = %q, want %q", got, lang)
				}
				title := template.HTMLEscapeString(pageStrings[lang]["title_"+reason])
				// The status is for those who look: in the title, not
				// the headline.
				status := fmt.Sprintf(" (%d %s)", w.Code, pageStrings[lang][statusKey(w.Code)])
				if !strings.Contains(body, "<h1>"+title+"</h1>") || !strings.Contains(body, "<title>"+title+template.HTMLEscapeString(status)+"</title>") {
					t.Errorf("page lacks the title %q%s", title, status)
				}
				if strings.Contains(body, `class="status"`) {
					t.Error("the status is the page's headline again")
				}
				if element(body, "reason") == "" || element(body, "support") == "" {
					t.Errorf("page lacks #reason or #support")
				}
				if strings.Contains(body, "<no value>") || strings.Contains(body, "ZgotmplZ") || strings.Contains(body, "{seconds}") {
					t.Errorf("page has an unfilled value:\n%s", body)
				}
				if strings.Contains(strings.ToLower(body), "<script") {
					t.Errorf("page has a script")
				}
				if !strings.Contains(body, `name="viewport"`) {
					t.Errorf("page lacks a viewport meta")
				}
			})
			t.Run(reason+"/"+lang+"/json", func(t *testing.T) {
				w := deny(t, h, http.MethodGet, acceptProblem, lang, d)
				if w.Code != d.Status {
					t.Fatalf("status = %d, want %d", w.Code, d.Status)
				}
				if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q", ct)
				}
				p := decodeProblem(t, w)
				if p["reason"] != reason || p["status"] != float64(d.Status) {
					t.Errorf("reason/status = %v/%v", p["reason"], p["status"])
				}
				if p["type"] != problemTypeBase+reason {
					t.Errorf("type = %v", p["type"])
				}
				if p["title"] != pageStrings[lang]["title_"+reason] {
					t.Errorf("title = %v", p["title"])
				}
				if detail, _ := p["detail"].(string); detail == "" || strings.Contains(detail, "{seconds}") {
					t.Errorf("detail = %q", detail)
				}
			})
		}
	}
}

func TestDenialHeaders402(t *testing.T) {
	h := pageHandler()
	for _, accept := range []string{acceptBrowser, acceptProblem} {
		w := deny(t, h, http.MethodGet, accept, "", denialFor(reasonNoSubscription))
		hdr := w.Header()
		if w.Code != http.StatusPaymentRequired {
			t.Errorf("%s: status = %d", accept, w.Code)
		}
		want := map[string]string{
			"Cache-Control":          "no-store",
			"Link":                   `</paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1>; rel="payment"`,
			"Vary":                   "Accept, Accept-Language",
			"X-Content-Type-Options": "nosniff",
			"Content-Language":       "en",
		}
		for k, v := range want {
			if got := hdr.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", accept, k, got, v)
			}
		}
		if hdr.Get("Retry-After") != "" {
			t.Errorf("%s: Retry-After on a 402", accept)
		}
		if hdr.Get("Content-Length") != fmt.Sprint(w.Body.Len()) {
			t.Errorf("%s: Content-Length = %q, body is %d bytes", accept, hdr.Get("Content-Length"), w.Body.Len())
		}
	}
}

func TestDenialVaryKeepsEarlierValues(t *testing.T) {
	h := pageHandler()
	r := httptest.NewRequest(http.MethodGet, "http://example.com/premium/a", nil)
	w := httptest.NewRecorder()
	w.Header().Set("Vary", "Accept-Encoding")
	if err := h.writeDenial(w, r, denialFor(reasonNoSubscription)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(w.Header().Values("Vary"), ", "); got != "Accept-Encoding, Accept, Accept-Language" {
		t.Errorf("Vary = %q", got)
	}
}

func TestDenialCSP(t *testing.T) {
	h := pageHandler()
	w := deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonNoSubscription))
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "img-src data:", "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q allows more than the page needs", csp)
	}
	// The hash in the policy must be that of the style the page carries, or
	// browsers drop the styling.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(w.Body.String(), -1)
	if len(m) != 1 {
		t.Fatalf("want one <style>, found %d", len(m))
	}
	if !strings.Contains(csp, "style-src '"+cssHash(m[0][1])+"'") {
		t.Errorf("CSP %q does not allow the page's style (%s)", csp, cssHash(m[0][1]))
	}
	if strings.Contains(w.Body.String(), `style="`) {
		t.Errorf("inline style attributes are blocked by the hash-based CSP")
	}

	j := deny(t, h, http.MethodGet, acceptProblem, "", denialFor(reasonNoSubscription))
	if j.Header().Get("Content-Security-Policy") != "" {
		t.Errorf("CSP on a JSON response")
	}
}

func TestDenialUnavailable(t *testing.T) {
	h := pageHandler()
	d := denialFor(reasonUnavailable)
	w := deny(t, h, http.MethodGet, acceptBrowser, "", d)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d", w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After = %q", got)
	}
	if got := w.Header().Get("Link"); got != "" {
		t.Errorf("Link on a 503: %q", got)
	}
	body := w.Body.String()
	for _, id := range []string{"subscribe", "update-payment"} {
		if element(body, id) != "" {
			t.Errorf("#%s on the outage page", id)
		}
	}
	if strings.Contains(body, "/paywall/checkout") || strings.Contains(body, "/paywall/portal") {
		t.Errorf("outage page links to payment")
	}
	retry := element(body, "retry")
	if got := attr(retry, "href"); got != "/premium/a?x=1" {
		t.Errorf("#retry href = %q", got)
	}
	for _, want := range []string{"about 30 seconds", "do not pay again", "Nothing was charged"} {
		if !strings.Contains(body, want) {
			t.Errorf("outage page does not say %q", want)
		}
	}

	// A 503 without a stated wait still says when to retry.
	d.RetryAfter = 0
	w = deny(t, h, http.MethodGet, acceptBrowser, "", d)
	if got := w.Header().Get("Retry-After"); got != fmt.Sprint(defaultRetryAfter) {
		t.Errorf("Retry-After = %q", got)
	}
}

func TestDenialHEAD(t *testing.T) {
	h := pageHandler()
	for _, accept := range []string{acceptBrowser, acceptProblem} {
		for _, reason := range []string{reasonNoSubscription, reasonUnavailable} {
			w := deny(t, h, http.MethodHead, accept, "", denialFor(reason))
			if w.Body.Len() != 0 {
				t.Errorf("%s %s: HEAD has a body", accept, reason)
			}
			if w.Code != denialFor(reason).Status || w.Header().Get("Cache-Control") != "no-store" ||
				w.Header().Get("Content-Type") == "" || w.Header().Get("Vary") == "" {
				t.Errorf("%s %s: HEAD headers: %d %v", accept, reason, w.Code, w.Header())
			}
			if (reason == reasonUnavailable) != (w.Header().Get("Retry-After") != "") {
				t.Errorf("%s %s: Retry-After = %q", accept, reason, w.Header().Get("Retry-After"))
			}
			if (reason == reasonUnavailable) == (w.Header().Get("Link") != "") {
				t.Errorf("%s %s: Link = %q", accept, reason, w.Header().Get("Link"))
			}
		}
	}
}

func TestProblemDocument(t *testing.T) {
	h := pageHandler()
	w := deny(t, h, http.MethodGet, "application/json", "", denialFor(reasonPaymentFailed))
	p := decodeProblem(t, w)
	want := map[string]any{
		"type":         "https://github.com/caddy-paywall/paywall/blob/main/README.md#payment_failed",
		"title":        "Your last payment failed",
		"status":       float64(402),
		"reason":       "payment_failed",
		"checkout_url": "http://example.com/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1",
		"portal_url":   "http://example.com/paywall/portal?return=%2Fpremium%2Fa%3Fx%3D1",
		"support_url":  "https://help.example.com/contact",
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %#v, want %#v", k, p[k], v)
		}
	}
	if _, ok := p["retry_after"]; ok {
		t.Errorf("retry_after on a 402")
	}
	for _, k := range []string{"type", "checkout_url", "portal_url"} {
		u, err := url.Parse(p[k].(string))
		if err != nil || !u.IsAbs() || u.Host == "" {
			t.Errorf("%s = %q is not an absolute URL", k, p[k])
		}
	}

	// Without public_url, over TLS the URLs are https on the Host when it
	// is the name the handshake was for (or one Caddy holds a certificate
	// for, see TestOriginTrustsNamesCaddyHoldsCertificatesFor); otherwise,
	// and over plain HTTP, they stay paths: a Host the client chose cannot
	// be trusted.
	noPublic := pageHandler()
	noPublic.publicURL = ""
	for _, c := range []struct {
		host, sni, want string
	}{
		{"example.com", "example.com", "https://example.com/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1"},
		{"example.com:8443", "example.com", "https://example.com:8443/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1"},
		{"evil.example", "example.com", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1"},
		{"example.com:80x", "example.com", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1"},
		{"evil.example", "", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1"},
	} {
		scheme := "http"
		if c.sni != "" {
			scheme = "https"
		}
		r := httptest.NewRequest(http.MethodGet, scheme+"://placeholder/premium/a", nil)
		r.Host = c.host
		if c.sni != "" {
			r.TLS = &tls.ConnectionState{ServerName: c.sni}
		}
		r.Header.Set("Accept", acceptProblem)
		rec := httptest.NewRecorder()
		if err := noPublic.writeDenial(rec, r, denialFor(reasonNoSubscription)); err != nil {
			t.Fatal(err)
		}
		if got := decodeProblem(t, rec)["checkout_url"]; got != c.want {
			t.Errorf("Host %s, TLS server name %q: checkout_url = %v, want %s", c.host, c.sni, got, c.want)
		}
	}
	w = deny(t, h, http.MethodGet, acceptProblem, "", denialFor(reasonUnavailable))
	p = decodeProblem(t, w)
	if p["retry_after"] != float64(30) || p["status"] != float64(503) {
		t.Errorf("503: retry_after = %v, status = %v", p["retry_after"], p["status"])
	}
	if _, ok := p["checkout_url"]; ok {
		t.Errorf("503 offers checkout_url %v", p["checkout_url"])
	}
	if d := p["detail"].(string); !strings.Contains(d, "30 seconds") || !strings.Contains(d, "do not pay again") {
		t.Errorf("503 detail = %q", d)
	}

	// Without a support URL, no support_url; a path becomes absolute.
	h.supportURL = ""
	if _, ok := decodeProblem(t, deny(t, h, http.MethodGet, acceptProblem, "", denialFor(reasonNoSubscription)))["support_url"]; ok {
		t.Errorf("support_url without a support URL")
	}
	h.supportURL = "/help"
	if got := decodeProblem(t, deny(t, h, http.MethodGet, acceptProblem, "", denialFor(reasonNoSubscription)))["support_url"]; got != "http://example.com/help" {
		t.Errorf("support_url = %v", got)
	}
}

func TestProblemAcceptNegotiation(t *testing.T) {
	for accept, wantJSON := range map[string]bool{
		"*/*":                                   false,
		acceptBrowser:                           false,
		"text/html":                             false,
		"application/json":                      true,
		"application/problem+json":              true,
		"Application/JSON":                      true,
		"application/json, text/html":           true,
		"text/html, application/json":           true,
		"text/html;q=0.9, application/json":     true,
		"application/json;q=0.5, text/html":     false,
		"application/json;q=0.5, text/*":        false,
		"application/json, */*;q=0.1":           true,
		"application/json;q=0":                  false,
		"application/json;q=0, */*":             false,
		"application/*":                         true,
		"application/json;q=oops":               false,
		"image/png":                             false,
		"text/html;q=0, application/json;q=0.1": true,
	} {
		if got := wantsProblemJSON([]string{accept}); got != wantJSON {
			t.Errorf("Accept %q: JSON = %v, want %v", accept, got, wantJSON)
		}
	}
	if wantsProblemJSON(nil) || wantsProblemJSON([]string{""}) {
		t.Errorf("no Accept: JSON, want the page")
	}
}

func TestLangNegotiation(t *testing.T) {
	for header, want := range map[string]string{
		"":                              "en",
		"id-ID,id;q=0.9,en;q=0.8":       "id",
		"fr":                            "en",
		"fr-FR, fr;q=0.9":               "en",
		"en-US,en;q=0.9,id;q=0.8":       "en",
		"fr, id;q=0.5":                  "id",
		"ID":                            "id",
		"in":                            "id",
		"id;q=0.2, en;q=0.2":            "id",
		"en;q=0.5, id;q=0.6":            "id",
		"id;q=0, en;q=0.1":              "en",
		"id;q=0":                        "en",
		"*":                             "en",
		"fr, *;q=0.5, id;q=0.4":         "en",
		"id;q=bogus, en;q=0.1":          "en",
		"  id-ID ;  q=0.9 , en ; q=0.1": "id",
	} {
		if got := negotiateLanguage([]string{header}); got != want {
			t.Errorf("Accept-Language %q = %q, want %q", header, got, want)
		}
	}
}

func TestLangIndonesianPage(t *testing.T) {
	h := pageHandler()
	w := deny(t, h, http.MethodGet, acceptBrowser, "id-ID,id;q=0.9,en;q=0.8", denialFor(reasonCheckoutNotDone))
	body := w.Body.String()
	if w.Header().Get("Content-Language") != "id" || !strings.Contains(body, `<html lang="id">`) {
		t.Fatalf("not Indonesian: %q", w.Header().Get("Content-Language"))
	}
	for _, want := range []string{"Pembayaran Anda belum selesai", "kartu atau metode pembayaran lain", ">Lanjutkan pembayaran</a>", "Hubungi tim dukungan"} {
		if !strings.Contains(body, want) {
			t.Errorf("Indonesian page lacks %q", want)
		}
	}
	p := decodeProblem(t, deny(t, h, http.MethodGet, acceptProblem, "id", denialFor(reasonUnavailable)))
	if p["title"] != "Sistem pembayaran sedang tidak tersedia" || p["reason"] != reasonUnavailable ||
		!strings.Contains(p["detail"].(string), "30 detik") {
		t.Errorf("Indonesian problem: %v", p)
	}
}

func TestLangFrenchFallsBackToEnglish(t *testing.T) {
	w := deny(t, pageHandler(), http.MethodGet, acceptBrowser, "fr-FR,fr;q=0.9", denialFor(reasonNoSubscription))
	if w.Header().Get("Content-Language") != "en" || !strings.Contains(w.Body.String(), `<html lang="en">`) ||
		!strings.Contains(w.Body.String(), ">Subscribe</a>") {
		t.Errorf("French visitor did not get the English page")
	}
}

func TestPageStringsComplete(t *testing.T) {
	en := pageStrings["en"]
	// A reason without words would be shown no_subscription's.
	for _, reason := range append(slices.Clone(pageReasons), noticeReasons...) {
		if en["title_"+reason] == "" || en["detail_"+reason] == "" {
			t.Errorf("no title or detail for %s", reason)
		}
	}
	for _, status := range []int{400, 402, 403, 429, 500, 503} {
		if en[fmt.Sprintf("status_%d", status)] == "" {
			t.Errorf("no words for status %d", status)
		}
	}
	if len(pageStrings) != len(pageLanguages) {
		t.Errorf("pageStrings has %d languages, pageLanguages %d", len(pageStrings), len(pageLanguages))
	}
	if len(pageLanguages) == 0 || pageLanguages[0] != defaultLanguage {
		t.Errorf("pageLanguages = %v, want %s first", pageLanguages, defaultLanguage)
	}
	for _, lang := range pageLanguages {
		strs := pageStrings[lang]
		file := "strings_" + lang + ".go"
		for k := range en {
			if strings.TrimSpace(strs[k]) == "" {
				t.Errorf("%s lacks %q: add it to %s", lang, k, file)
			}
			for _, ph := range []string{"{seconds}", "{wait}", "{minutes}"} {
				if strings.Contains(en[k], ph) != strings.Contains(strs[k], ph) {
					t.Errorf("%s %q: %s in one language only: see strings_en.go and %s", lang, k, ph, file)
				}
			}
		}
		for k := range strs {
			if _, ok := en[k]; !ok {
				t.Errorf("%s has %q, English does not: add it to strings_en.go, or remove it from %s", lang, k, file)
			}
		}
	}
	// Every page language mails in its own words too, with every key
	// and the same placeholders as English.
	for _, lang := range pageLanguages {
		file := "strings_" + lang + ".go"
		mail := mailStrings[lang]
		if mail == nil {
			t.Errorf("%s has no sign-in mail words: add addMailLanguage to %s", lang, file)
			continue
		}
		for k, v := range mailStrings[defaultLanguage] {
			if strings.TrimSpace(mail[k]) == "" {
				t.Errorf("%s's mail lacks %q: add it to %s", lang, k, file)
			}
			for _, ph := range []string{"{site}", "{minutes}"} {
				if strings.Contains(v, ph) != strings.Contains(mail[k], ph) {
					t.Errorf("%s's mail %q: %s in one language only: see strings_en.go and %s", lang, k, ph, file)
				}
			}
		}
	}
	// Every key the page uses exists (the built-in page runs with
	// missingkey=error, so rendering proves it).
	for _, lang := range pageLanguages {
		for _, reason := range pageReasons {
			d := denialFor(reason)
			d.LogoutURL = "/paywall/logout"
			d.offer, d.trialDays = &offer{name: "Premium", amount: 500, currency: "usd", interval: "month"}, 7
			site := &pageSite{name: "example.com", logo: "/logo.svg", benefits: []string{"Every article"}}
			if err := builtinPage.Execute(new(strings.Builder), newPageData(d, lang, "mailto:a@example.com", site)); err != nil {
				t.Errorf("%s %s: %v", lang, reason, err)
			}
		}
	}
}

func TestPageActionsPerReason(t *testing.T) {
	h := pageHandler()
	for reason, want := range map[string]struct{ id, href, label string }{
		reasonNoSubscription:  {"subscribe", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1", "Subscribe"},
		reasonEnded:           {"subscribe", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1", "Subscribe again"},
		reasonTrialEnded:      {"subscribe", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1", "Subscribe"},
		reasonCheckoutNotDone: {"subscribe", "/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1", "Continue checkout"},
		reasonPaymentFailed:   {"update-payment", "/paywall/portal?return=%2Fpremium%2Fa%3Fx%3D1", "Update payment method"},
		reasonUnavailable:     {"retry", "/premium/a?x=1", "Try again"},
	} {
		body := deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reason)).Body.String()
		tag := element(body, want.id)
		if tag == "" {
			t.Errorf("%s: no #%s", reason, want.id)
			continue
		}
		if got := strings.ReplaceAll(attr(tag, "href"), "&amp;", "&"); got != want.href {
			t.Errorf("%s: #%s href = %q, want %q", reason, want.id, got, want.href)
		}
		if !strings.Contains(body, tag+want.label+"</a>") {
			t.Errorf("%s: #%s does not say %q", reason, want.id, want.label)
		}
		// One primary action only: nobody whose payment failed is asked to
		// subscribe twice, and nobody pays during an outage.
		for _, other := range []string{"subscribe", "update-payment", "retry"} {
			if other != want.id && element(body, other) != "" {
				t.Errorf("%s: #%s besides #%s", reason, other, want.id)
			}
		}
		if strings.Count(body, `class="button"`) != 1 {
			t.Errorf("%s: %d buttons", reason, strings.Count(body, `class="button"`))
		}
	}
}

// TestPaymentProcessingOffersNothingToPay: a visitor whose first payment
// is on its way is told to wait, in every form, and offered no way to pay
// again: no button, no Link header, no checkout_url, no sign-in.
func TestPaymentProcessingOffersNothingToPay(t *testing.T) {
	h := pageHandler()
	d := denialFor(reasonPaymentProcessing)
	d.SigninURL = "/paywall/signin" // the handler does not offer it to a known customer; the page would not either
	for _, lang := range pageLanguages {
		w := deny(t, h, http.MethodGet, acceptBrowser, lang, d)
		body := w.Body.String()
		if w.Code != http.StatusPaymentRequired || w.Header().Get("Link") != "" || w.Header().Get("Retry-After") != "" {
			t.Errorf("%s: status %d, Link %q, Retry-After %q", lang, w.Code, w.Header().Get("Link"), w.Header().Get("Retry-After"))
		}
		strs := pageStrings[lang]
		for _, k := range []string{"title_payment_processing", "detail_payment_processing", "processing_note"} {
			if !strings.Contains(body, template.HTMLEscapeString(strs[k])) {
				t.Errorf("%s: the page lacks %s %q", lang, k, strs[k])
			}
		}
		for _, id := range []string{"subscribe", "update-payment", "retry", "signin", "other-device"} {
			if element(body, id) != "" {
				t.Errorf("%s: #%s on the page of a payment on its way", lang, id)
			}
		}
		if strings.Contains(body, "/paywall/checkout") || strings.Contains(body, `class="button"`) {
			t.Errorf("%s: the page offers to pay:\n%s", lang, body)
		}
		if element(body, "support") == "" || element(body, "signout") == "" {
			t.Errorf("%s: the page lacks #support or #signout", lang)
		}

		w = deny(t, h, http.MethodGet, acceptProblem, lang, d)
		p := decodeProblem(t, w)
		if p["reason"] != reasonPaymentProcessing || p["title"] != strs["title_payment_processing"] || p["detail"] != strs["detail_payment_processing"] {
			t.Errorf("%s: problem %v", lang, p)
		}
		for _, k := range []string{"checkout_url", "portal_url", "retry_after"} {
			if _, ok := p[k]; ok {
				t.Errorf("%s: the problem document has %s", lang, k)
			}
		}
		if w.Header().Get("Link") != "" {
			t.Errorf("%s: Link %q on the problem document", lang, w.Header().Get("Link"))
		}
	}
	if en := pageStrings["en"]; en["title_payment_processing"] != "Your payment is on its way" ||
		!strings.HasSuffix(en["detail_payment_processing"], "Do not pay again.") {
		t.Errorf("English words: %q, %q", en["title_payment_processing"], en["detail_payment_processing"])
	}
}

func TestPagePaymentFailedShowsPortal(t *testing.T) {
	body := deny(t, pageHandler(), http.MethodGet, acceptBrowser, "", denialFor(reasonPaymentFailed)).Body.String()
	if !strings.Contains(attr(element(body, "update-payment"), "href"), "/paywall/portal") {
		t.Errorf("#update-payment does not go to the portal")
	}
	if !strings.Contains(body, "You do not need to subscribe again") {
		t.Errorf("payment_failed page does not say not to subscribe again")
	}
}

func TestPageOtherDeviceHelpAndSupport(t *testing.T) {
	h := pageHandler()
	body := deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonNoSubscription)).Body.String()
	for _, want := range []string{"Already subscribed on another device?", "remembered in the browser you paid with", "contact support"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if got := attr(element(body, "support"), "href"); got != "https://help.example.com/contact" {
		t.Errorf("#support href = %q", got)
	}

	h.supportURL = "mailto:help@example.com?subject=Access"
	body = deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonNoSubscription)).Body.String()
	if got := attr(element(body, "support"), "href"); got != "mailto:help@example.com?subject=Access" {
		t.Errorf("mailto support href = %q", got)
	}

	h.supportURL = ""
	body = deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonNoSubscription)).Body.String()
	if element(body, "support") != "" || strings.Contains(body, "contact support") {
		t.Errorf("support offered without a support URL")
	}
	if !strings.Contains(body, "Already subscribed on another device?") {
		t.Errorf("other-device help missing without a support URL")
	}
}

func TestPageSignOut(t *testing.T) {
	h := pageHandler()
	body := deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonEnded)).Body.String()
	if element(body, "signout") == "" {
		t.Fatal("no #signout with a known customer")
	}
	form := regexp.MustCompile(`<form method="post" action="([^"]*)">Not you\? <button id="signout"`).FindStringSubmatch(body)
	if form == nil || strings.ReplaceAll(form[1], "&amp;", "&") != "/paywall/logout?return=%2Fpremium%2Fa%3Fx%3D1" {
		t.Errorf("sign-out form: %v", form)
	}
	body = deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonNoSubscription)).Body.String()
	if element(body, "signout") != "" {
		t.Errorf("#signout without a known customer")
	}
}

func TestPageLoadsNothingExternal(t *testing.T) {
	h := pageHandler()
	for _, reason := range pageReasons {
		d := denialFor(reason)
		d.LogoutURL = "/paywall/logout"
		body := deny(t, h, http.MethodGet, acceptBrowser, "", d).Body.String()
		lower := strings.ToLower(body)
		for _, bad := range []string{"<script", "<link", "<img", "<iframe", "src=", "@import", "url(", "@font-face"} {
			if strings.Contains(lower, bad) {
				t.Errorf("%s: page has %q", reason, bad)
			}
		}
		rest := strings.ReplaceAll(body, `href="https://help.example.com/contact"`, "")
		if strings.Contains(rest, "http://") || strings.Contains(rest, "https://") || strings.Contains(rest, `="//`) {
			t.Errorf("%s: page refers to another site besides the support link", reason)
		}
	}
}

func TestPageEscapesPaths(t *testing.T) {
	h := pageHandler()
	evil := `/a"><script>alert(1)</script>`
	for _, reason := range []string{reasonNoSubscription, reasonUnavailable} {
		d := denial{
			Status:      denialFor(reason).Status,
			Reason:      reason,
			CheckoutURL: `/paywall/checkout?return=` + evil, // as if a caller forgot to escape
			LogoutURL:   `/paywall/logout?return=` + evil,
			ReturnPath:  evil,
			RetryAfter:  denialFor(reason).RetryAfter,
		}
		w := deny(t, h, http.MethodGet, acceptBrowser, "", d)
		body := w.Body.String()
		if strings.Contains(body, "<script") || strings.Contains(body, `"><script`) {
			t.Errorf("%s: path not escaped:\n%s", reason, body)
		}
		if reason == reasonUnavailable && !strings.HasPrefix(attr(element(body, "retry"), "href"), "/a%22%3e%3cscript%3e") {
			t.Errorf("#retry href = %q", attr(element(body, "retry"), "href"))
		}
		if strings.Contains(w.Header().Get("Link"), "<script") {
			t.Errorf("Link header carries markup: %q", w.Header().Get("Link"))
		}
	}
}

func writeTemplate(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPageCustomTemplate(t *testing.T) {
	path := writeTemplate(t, `<!doctype html><html lang="{{.Lang}}"><title>{{.Title}}</title>`+
		`<main id="paywall" data-reason="{{.Reason}}" data-status="{{.Status}}"><h1>My site: {{.Title}}</h1><p>{{.Detail}}</p>`+
		`{{if .PortalURL}}<a id="update-payment" href="{{.PortalURL}}">{{.T.update_payment}}</a>`+
		`{{else if .CheckoutURL}}<a id="subscribe" href="{{.CheckoutURL}}">{{.T.subscribe}}</a>`+
		`{{else}}<a id="retry" href="{{.ReturnPath}}">{{.T.retry}}</a> in {{.RetryAfter}}s{{end}}`+
		`{{with .SupportURL}}<a id="support" href="{{.}}">{{$.T.support}}</a>{{end}}`+
		`{{with .LogoutURL}}<form method="post" action="{{.}}"><button id="signout">x</button></form>{{end}}</main>`)
	page, err := loadPageTemplate(path)
	if err != nil {
		t.Fatal(err)
	}
	h := pageHandler()
	h.page = page

	w := deny(t, h, http.MethodGet, acceptBrowser, "id", denialFor(reasonNoSubscription))
	body := w.Body.String()
	if !strings.Contains(body, "<h1>My site: Perlu berlangganan</h1>") || !strings.Contains(body, `<html lang="id">`) ||
		!strings.Contains(body, `id="subscribe" href="/paywall/checkout?return=%2Fpremium%2Fa%3Fx%3D1">Berlangganan</a>`) {
		t.Errorf("custom page:\n%s", body)
	}
	if got := w.Header().Get("Content-Security-Policy"); got != customPageCSP {
		t.Errorf("custom page CSP = %q", got)
	}
	if w.Header().Get("Link") == "" || w.Code != http.StatusPaymentRequired {
		t.Errorf("custom page lost the headers")
	}

	body = deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonUnavailable)).Body.String()
	if !strings.Contains(body, `<a id="retry" href="/premium/a?x=1">Try again</a> in 30s`) || strings.Contains(body, "checkout") {
		t.Errorf("custom outage page:\n%s", body)
	}

	// JSON clients are not affected by the operator's page.
	if p := decodeProblem(t, deny(t, h, http.MethodGet, acceptProblem, "", denialFor(reasonNoSubscription))); p["reason"] != reasonNoSubscription {
		t.Errorf("problem with a custom page: %v", p)
	}
}

func TestPageCustomTemplateLoadErrors(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"parse":   {`<p>{{.Title</p>`, "page.html:1"},
		"field":   {`<p>{{.Nope}}</p>`, "can't evaluate field Nope"},
		"reason":  {`{{if eq .Status 503}}{{.Retry}}{{end}}`, "can't evaluate field Retry"},
		"empty":   {" \n", "empty"},
		"missing": {"", "no such file"},
	} {
		path := writeTemplate(t, tc.text)
		if name == "missing" {
			path = filepath.Join(t.TempDir(), "page.html")
		}
		_, err := loadPageTemplate(path)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name %s and say %q", name, err, path, tc.want)
		}
	}
}

func TestPageCustomTemplateFailureFallsBack(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	h := pageHandler()
	h.logger = zap.New(core)
	h.Page = "/etc/caddy/page.html"
	// Fails halfway, for one reason only: what it wrote must never be sent.
	h.page = template.Must(template.New("page.html").Parse(
		`<p>half written</p>{{if eq .Reason "trial_ended"}}{{index .T.subscribe 99}}{{end}}<p>done</p>`))

	w := deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonTrialEnded))
	body := w.Body.String()
	if w.Code != http.StatusPaymentRequired || strings.Contains(body, "half written") ||
		!strings.Contains(body, `data-reason="trial_ended"`) {
		t.Fatalf("no clean fallback: %d\n%s", w.Code, body)
	}
	if got := w.Header().Get("Content-Security-Policy"); got != builtinPageCSP {
		t.Errorf("fallback CSP = %q", got)
	}
	if got := w.Header().Get("Content-Length"); got != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length = %s, body %d", got, len(body))
	}
	entries := logs.All()
	if len(entries) != 1 || entries[0].ContextMap()["page"] != "/etc/caddy/page.html" {
		t.Errorf("logs: %v", entries)
	}

	// Other reasons still get the operator's page.
	body = deny(t, h, http.MethodGet, acceptBrowser, "", denialFor(reasonEnded)).Body.String()
	if body != "<p>half written</p><p>done</p>" {
		t.Errorf("custom page = %q", body)
	}
}

func TestPageConcurrentRenders(t *testing.T) {
	h := pageHandler()
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reason := pageReasons[i%len(pageReasons)]
			lang := []string{"en", "id"}[i%2]
			r := httptest.NewRequest(http.MethodGet, "http://example.com/premium/a?x=1", nil)
			r.Header.Set("Accept-Language", lang)
			w := httptest.NewRecorder()
			if err := h.writeDenial(w, r, denialFor(reason)); err != nil {
				t.Error(err)
				return
			}
			if !strings.Contains(w.Body.String(), `data-reason="`+reason+`"`) ||
				!strings.Contains(w.Body.String(), pageStrings[lang]["title_"+reason]) {
				t.Errorf("%s/%s: wrong page", reason, lang)
			}
		}()
	}
	wg.Wait()
}

func TestPageReasonsCoverHandlerReasons(t *testing.T) {
	for _, r := range []string{reasonNoSubscription, reasonEnded, reasonPaymentFailed, reasonTrialEnded, reasonCheckoutNotDone, reasonUnavailable} {
		if !slices.Contains(pageReasons, r) {
			t.Errorf("page does not explain %s", r)
		}
	}
}

// TestEveryProblemTypeIsDocumented: the type of each problem document is
// an anchor in the README's "Problem types".
func TestEveryProblemTypeIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range append(slices.Clone(pageReasons), noticeReasons...) {
		if reason == reasonSignin || reason == reasonSigninConfirm {
			continue // pages, not problems
		}
		if !strings.Contains(string(readme), `<a id="`+reason+`"></a>`) {
			t.Errorf("README.md's Problem types lacks <a id=%q></a>", reason)
		}
	}
}
