package paywall

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// PageData is what the 402 page template is executed with, the built-in
// one and an operator's own (`page <file>`) alike. The URLs are paths on
// this site; html/template escapes every field for where it is used.
//
//	Lang         "en" or "id": the language chosen from Accept-Language
//	Status       402, or 503 while Stripe cannot be reached (and 400, 403,
//	             429 or 500 on the paywall's own endpoints)
//	StatusText   the status's name in Lang
//	Reason       no_subscription, subscription_ended, payment_failed,
//	             payment_processing, trial_ended, checkout_not_completed or
//	             stripe_unavailable
//	Title        a short heading for the reason, in Lang
//	Detail       one plain paragraph saying why and what to do, in Lang
//	CheckoutURL  starts a Stripe Checkout and comes back (GET or POST);
//	             empty with 503 (offer no payment while Stripe is down) and
//	             with payment_processing (a payment is on its way already)
//	PortalURL    the billing portal, to update the payment method;
//	             set when the last payment failed
//	LogoutURL    forgets this browser (POST only); set when a customer is known
//	SupportURL   the handler's support_url, when set (http, https or mailto)
//	ReturnPath   the page the visitor asked for
//	RetryAfter   seconds to wait before trying again; set with 503
//	SigninURL    where the form that mails a sign-in link posts (fields
//	             email and return); set when email sign-in is configured
//	             and this browser's visitor is not known
//	Token        on the page that confirms a sign-in link: the link's
//	             token, which its button posts to SigninURL
//	SigninEmail  and the address the link was mailed to, masked
//	             (a•••@example.com): whose account the link opens
//	KeysURL      the visitor's API keys (`api_keys`); set when a customer
//	             is known
//	Account      true when the site's own login says who the visitor is
//	             (identity <placeholder>): the words speak of an account,
//	             not of this browser
//	Notice       true on the pages of the paywall's own endpoints, which
//	             always use the built-in page
//	Known        true when the visitor is a known customer whose
//	             subscription lapsed or whose payment failed: the page
//	             offers to subscribe again, not to sign in
//	SiteName     site_name, or the host of public_url (or, on HTTPS, of
//	             the address the visitor's browser verified; on plain
//	             HTTP, of a loopback address)
//	Logo         logo: a path or URL on this site; "" without one
//	Benefits     benefits, one line each
//	Product      the product sold, by its name at Stripe; "" until read
//	Price        its price per interval in Lang ("$5.00 / month",
//	             "Rp 50.000 / bulan"); "" until read, for a price without
//	             a single amount, and where the page offers no checkout
//	Trial        "7 days free, then $5.00 / month" when trial_days offers
//	             this visitor a trial (one per customer), else ""
//	T            every built-in string in Lang, by key (see pageStrings),
//	             with {seconds}, {wait} and {minutes} already replaced:
//	             {{.T.subscribe}}
//
// An operator's page is served with the Content-Security-Policy
// customPageCSP: inline CSS and images from this site are allowed, nothing
// from other sites, no scripts. Link to CheckoutURL and PortalURL rather
// than posting a form to them: Chrome applies form-action to the redirect
// to Stripe that follows a form post, and blocks it.
type PageData struct {
	Lang        string
	Status      int
	StatusText  string
	Reason      string
	Title       string
	Detail      string
	CheckoutURL string
	PortalURL   string
	LogoutURL   string
	SupportURL  string
	ReturnPath  string
	RetryAfter  int
	SigninURL   string
	Token       string
	SigninEmail string
	KeysURL     string
	Account     bool
	Notice      bool
	Known       bool
	SiteName    string
	Logo        string
	Benefits    []string
	Product     string
	Price       string
	Trial       string
	T           map[string]string
}

// problemTypeBase is where each reason's problem type is documented; the
// reason is the anchor.
const problemTypeBase = "https://github.com/caddy-paywall/paywall/blob/main/README.md#"

// defaultRetryAfter is what a 503 says when the caller did not say.
const defaultRetryAfter = 5

// customPageCSP is the Content-Security-Policy of an operator's page.
const customPageCSP = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

//go:embed templates/page.html templates/page.css templates/keys.html
var templateFS embed.FS

var (
	// pageCSS is the built-in page's stylesheet, inlined into its <style>.
	pageCSS = mustRead("templates/page.css")

	// pageFuncs are the built-in pages' functions: their stylesheet, and
	// a price kept on one line.
	pageFuncs = template.FuncMap{"css": func() template.CSS { return template.CSS(pageCSS) }, "together": together}

	// builtinPage is the built-in 402 page, parsed once.
	builtinPage = template.Must(template.New("page.html").
			Option("missingkey=error").
			Funcs(pageFuncs).
			ParseFS(templateFS, "templates/page.html"))

	// builtinPageCSP allows the built-in page exactly its own inline
	// stylesheet, by hash, and nothing else: no script, no fetch, no
	// resource from anywhere. Its only form (sign out) posts to this site.
	builtinPageCSP = "default-src 'none'; style-src '" + cssHash(pageCSS) + "'; img-src data:; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

	// builtinPageCSPImages is the built-in page's policy with a logo:
	// images from this site too.
	builtinPageCSPImages = strings.Replace(builtinPageCSP, "img-src data:", "img-src 'self' data:", 1)
)

func mustRead(name string) string {
	b, err := templateFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func cssHash(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// pageBuffers hold pages while they render, so that a template that fails
// halfway never sends half a page.
var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps one huge page from pinning its buffer forever.
const maxPooledBuffer = 64 << 10

// loadPageTemplate parses an operator's page template, and executes it once
// for every reason so that a mistake such as a misspelt field fails when
// the configuration loads rather than in front of a visitor.
func loadPageTemplate(path string) (*template.Template, error) {
	example := &pageSite{name: "example.com", logo: "/logo.svg", benefits: []string{"Every article"}}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(src)) == "" {
		return nil, fmt.Errorf("%s: the template is empty", path)
	}
	tmpl, err := template.New(path).Parse(string(src))
	if err != nil {
		return nil, err // "template: <path>:<line>: …"
	}
	for _, reason := range pageReasons {
		d := denial{
			Status:      http.StatusPaymentRequired,
			Reason:      reason,
			CheckoutURL: "/paywall/checkout?return=%2F",
			LogoutURL:   "/paywall/logout?return=%2F",
			ReturnPath:  "/",
		}
		switch reason {
		case reasonNoSubscription, reasonCheckoutNotDone:
			d.SigninURL = "/paywall/signin"
		case reasonPaymentFailed:
			d.PortalURL = "/paywall/portal?return=%2F"
		case reasonUnavailable:
			d.Status, d.RetryAfter = http.StatusServiceUnavailable, defaultRetryAfter
		}
		d.offer, d.trialDays = &offer{name: "Premium", amount: 500, currency: "usd", interval: "month", intervalCount: 1}, 7
		if err := tmpl.Execute(io.Discard, newPageData(d, "en", "mailto:support@example.com", example)); err != nil {
			return nil, err // "template: <path>:<line>:<col>: executing …"
		}
	}
	return tmpl, nil
}

// noticeReasons are the reasons an endpoint's notice can give.
var noticeReasons = []string{
	reasonCheckoutLinkInvalid,
	reasonCheckoutOtherBrowser,
	reasonCheckoutLimited,
	reasonSuccessLimited,
	reasonCheckoutBusy,
	reasonOriginUnknown,
	reasonIdentityMissing,
	reasonSignin,
	reasonSigninSent,
	reasonSigninConfirm,
	reasonSigninEmailInvalid,
	reasonSigninLinkInvalid,
	reasonSigninLinkExpired,
	reasonSigninLinkUsed,
	reasonInvalidKey,
	reasonKeysSignin,
	reasonKeysByKey,
	reasonKeysMax,
	reasonKeysFull,
	reasonKeyNotFound,
	reasonKeysPermission,
}

// pageReasons are the reasons a page can be asked to explain.
var pageReasons = []string{
	reasonNoSubscription,
	reasonFreeViewsUsed,
	reasonEnded,
	reasonPaymentFailed,
	reasonPaymentProcessing,
	reasonTrialEnded,
	reasonCheckoutNotDone,
	reasonUnavailable,
}

// writeDenial answers a refusal in the form the client asked for: a problem
// document (RFC 9457) for API clients, an HTML page for everyone else, in
// the visitor's language. A 402 points to its CheckoutURL, when it has one
// (not with payment_processing: see refuse), in a Link header; a 503 says
// when to retry and offers no payment at all.
func (h *Handler) writeDenial(w http.ResponseWriter, r *http.Request, d denial) error {
	if d.Status == 0 {
		d.Status = http.StatusPaymentRequired
	}
	if d.Status == http.StatusServiceUnavailable && d.RetryAfter <= 0 {
		d.RetryAfter = defaultRetryAfter
	}
	lang := negotiateLanguage(r.Header.Values("Accept-Language"))
	asJSON := wantsProblemJSON(r.Header.Values("Accept"))
	if d.program && !asJSON {
		// A request with an API key is a program's: it gets the
		// problem document unless it asks for HTML by name (curl's
		// */* does not).
		asJSON = !namesHTML(r.Header.Values("Accept"))
	}

	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Add("Vary", "Accept, Accept-Language")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Content-Language", lang)
	hdr.Del("Last-Modified")
	hdr.Del("ETag")
	if d.RetryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(d.RetryAfter))
	} else if d.CheckoutURL != "" && !strings.ContainsAny(d.CheckoutURL, "<>\r\n") {
		hdr.Set("Link", "<"+d.CheckoutURL+`>; rel="payment"`)
	}
	if asJSON && d.Status >= 400 {
		hdr.Set("Content-Type", "application/problem+json")
	} else if asJSON {
		hdr.Set("Content-Type", "application/json")
	} else {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
	}

	if r.Method == http.MethodHead {
		if !asJSON {
			hdr.Set("Content-Security-Policy", h.pageCSP(d.notice))
		}
		w.WriteHeader(d.Status)
		return nil
	}

	buf := pageBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			pageBuffers.Put(buf)
		}
	}()

	// What the page sells: read from Stripe when first needed, only
	// where the page offers a checkout.
	if d.sells() {
		d.offer = h.pageOffer()
	}
	site := h.site
	if site != nil && site.name == "" {
		if base, ok := h.trustedOrigin(r); ok {
			named := *site
			named.name = siteName(base)
			site = &named
		}
	}
	data := newPageData(d, lang, h.supportURL, site)
	if asJSON {
		// Without an address to trust, the URLs stay paths on this site,
		// which RFC 9457 lets a client resolve against the request's URL.
		base, _ := h.origin(r)
		if err := json.NewEncoder(buf).Encode(newProblem(base, data, d.offer, d.trialDays)); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
	} else {
		csp, err := h.renderPage(buf, data, d.notice)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		hdr.Set("Content-Security-Policy", csp)
	}
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(d.Status)
	// A client gone away is nothing to report: the status is written.
	_, _ = w.Write(buf.Bytes())
	return nil
}

// notice answers a refusal of one of the paywall's own endpoints with the
// built-in page in the visitor's language, or a problem document: what
// happened and what to do, never an empty body.
func (h *Handler) notice(w http.ResponseWriter, r *http.Request, status int, reason, ret string, retryAfter int) error {
	return h.writeDenial(w, r, denial{Status: status, Reason: reason, ReturnPath: ret, RetryAfter: retryAfter, notice: true})
}

// pageCSP is the Content-Security-Policy of the page this handler serves.
func (h *Handler) pageCSP(notice bool) string {
	if h.page != nil && !notice {
		return h.customCSP()
	}
	return h.builtinCSP()
}

// customCSP is the policy of the operator's page: with a logo on
// public_url, images from there are allowed too.
func (h *Handler) customCSP() string {
	if h.site != nil {
		return h.site.pageCSP
	}
	return customPageCSP
}

// builtinCSP is the built-in page's policy: with a logo, images from this
// site are allowed too.
func (h *Handler) builtinCSP() string {
	if h.site != nil {
		return h.site.csp
	}
	return builtinPageCSP
}

// renderPage renders the operator's page, or the built-in one for a notice,
// when there is none or when it fails, into buf, and returns the policy that
// fits what it rendered.
func (h *Handler) renderPage(buf *bytes.Buffer, data PageData, notice bool) (string, error) {
	if h.page != nil && !notice {
		err := h.page.Execute(buf, data)
		if err == nil {
			return h.customCSP(), nil
		}
		buf.Reset()
		if h.logger != nil {
			h.logger.Error("page template failed; serving the built-in page instead",
				zap.String("page", h.Page), zap.Error(err))
		}
	}
	if err := builtinPage.Execute(buf, data); err != nil {
		return "", fmt.Errorf("paywall: built-in page: %w", err)
	}
	return h.builtinCSP(), nil
}

func newPageData(d denial, lang, supportURL string, site *pageSite) PageData {
	strs := pageStrings[lang]
	var fill []string // {name}, value, … for the words of this refusal
	if d.RetryAfter > 0 || d.signinTTL > 0 {
		fill = append(fill, waitWords(strs, d.RetryAfter, d.signinTTL)...)
	}
	if d.maxKeys > 0 {
		fill = append(fill, "{max}", strconv.Itoa(d.maxKeys))
	}
	if d.freeViews > 0 {
		fill = append(fill, "{free}", strconv.Itoa(d.freeViews), "{when}", freeBackWords(strs, d.freeBack, now().Unix()))
	}
	strs = filled(strs, fill...)
	reason := d.Reason
	if _, ok := strs["title_"+reason]; !ok {
		reason = reasonNoSubscription // words for a reason this page does not know
	}
	detail := strs["detail_"+reason]
	if d.account {
		if s, ok := strs["detail_"+reason+"_account"]; ok {
			detail = s
		}
	}
	data := PageData{
		Lang:        lang,
		Status:      d.Status,
		StatusText:  strs[statusKey(d.Status)],
		Reason:      d.Reason,
		Title:       strs["title_"+reason],
		Detail:      detail,
		SigninURL:   d.SigninURL,
		Token:       d.Token,
		SigninEmail: d.signinEmail,
		Account:     d.account,
		CheckoutURL: d.CheckoutURL,
		PortalURL:   d.PortalURL,
		LogoutURL:   d.LogoutURL,
		KeysURL:     d.KeysURL,
		SupportURL:  supportURL,
		ReturnPath:  safeReturn(d.ReturnPath),
		RetryAfter:  d.RetryAfter,
		Notice:      d.notice,
		Known:       d.known,
		T:           strs,
	}
	if site != nil {
		data.SiteName, data.Logo = site.name, site.logo
		if !d.notice {
			data.Benefits = site.benefits
		}
	}
	if d.offer != nil {
		w := d.offer.words(strs, lang, d.trialDays)
		data.Product, data.Price, data.Trial = w.product, w.price, w.trial
	}
	if d.Status == http.StatusServiceUnavailable {
		data.CheckoutURL = ""
	}
	return data
}

// statusKey is the pageStrings key of a status's name.
func statusKey(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "status_400"
	case http.StatusUnauthorized:
		return "status_401"
	case http.StatusForbidden:
		return "status_403"
	case http.StatusNotFound:
		return "status_404"
	case http.StatusConflict:
		return "status_409"
	case http.StatusGone:
		return "status_410"
	case http.StatusTooManyRequests:
		return "status_429"
	case http.StatusInternalServerError:
		return "status_500"
	case http.StatusServiceUnavailable:
		return "status_503"
	}
	return "status_402"
}

// waitWords are the replacements of {seconds} (n), {wait} (n said in
// seconds or, from two minutes on, in whole minutes) and {minutes} (how
// long a sign-in link lasts), for filled.
func waitWords(strs map[string]string, n int, link time.Duration) []string {
	secs := strconv.Itoa(n)
	wait := strings.ReplaceAll(strs["wait_seconds"], "{n}", secs)
	if n >= 120 {
		wait = strings.ReplaceAll(strs["wait_minutes"], "{n}", strconv.Itoa((n+59)/60))
	}
	return []string{"{seconds}", secs, "{wait}", wait, "{minutes}", strconv.Itoa(max(1, int(link/time.Minute)))}
}

// filled returns a copy of strs with each {name} of pairs replaced by the
// value after it, in one pass; strs itself when there is nothing to fill.
func filled(strs map[string]string, pairs ...string) map[string]string {
	if len(pairs) == 0 {
		return strs
	}
	r := strings.NewReplacer(pairs...)
	out := make(map[string]string, len(strs))
	for k, v := range strs {
		out[k] = r.Replace(v)
	}
	return out
}

// problem is an RFC 9457 problem document with this handler's extensions.
type problem struct {
	Type        string        `json:"type"`
	Title       string        `json:"title"`
	Status      int           `json:"status"`
	Detail      string        `json:"detail"`
	Reason      string        `json:"reason"`
	CheckoutURL string        `json:"checkout_url,omitempty"`
	PortalURL   string        `json:"portal_url,omitempty"`
	SigninURL   string        `json:"signin_url,omitempty"`
	KeysURL     string        `json:"keys_url,omitempty"`
	SupportURL  string        `json:"support_url,omitempty"`
	RetryAfter  int           `json:"retry_after,omitempty"`
	Offer       *problemOffer `json:"offer,omitempty"`
}

// problemOffer is what a checkout_url sells, for programs: the amount in
// the currency's minor unit, as Stripe gives it, and the words a page shows.
type problemOffer struct {
	Site          string `json:"site,omitempty"`
	Product       string `json:"product,omitempty"`
	Amount        int64  `json:"amount,omitempty"`
	Currency      string `json:"currency,omitempty"`
	Interval      string `json:"interval,omitempty"`
	IntervalCount int64  `json:"interval_count,omitempty"`
	TrialDays     int    `json:"trial_days,omitempty"`
	Price         string `json:"price,omitempty"`
	Trial         string `json:"trial,omitempty"`
}

func newProblem(base string, data PageData, o *offer, trialDays int) problem {
	p := problem{
		Type:        problemTypeBase + data.Reason,
		Title:       data.Title,
		Status:      data.Status,
		Detail:      data.Detail,
		Reason:      data.Reason,
		CheckoutURL: absoluteURL(base, data.CheckoutURL),
		PortalURL:   absoluteURL(base, data.PortalURL),
		SigninURL:   absoluteURL(base, data.SigninURL),
		KeysURL:     absoluteURL(base, data.KeysURL),
		SupportURL:  absoluteURL(base, data.SupportURL),
	}
	p.RetryAfter = data.RetryAfter
	if o != nil && data.CheckoutURL != "" {
		p.Offer = &problemOffer{Site: data.SiteName, Product: o.name, Price: data.Price, Trial: data.Trial}
		if data.Price != "" {
			p.Offer.Amount, p.Offer.Currency = o.amount, o.currency
			p.Offer.Interval, p.Offer.IntervalCount = o.interval, max(o.intervalCount, 1)
			if o.interval == "" {
				p.Offer.IntervalCount = 0
			}
			if data.Trial != "" {
				p.Offer.TrialDays = trialDays
			}
		}
	}
	return p
}

// absoluteURL makes a path on this site absolute and leaves anything else,
// such as an https: or mailto: URL, as it is.
func absoluteURL(base, u string) string {
	if strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") {
		return base + u
	}
	return u
}
