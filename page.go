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
//	             trial_ended, checkout_not_completed or stripe_unavailable
//	Title        a short heading for the reason, in Lang
//	Detail       one plain paragraph saying why and what to do, in Lang
//	CheckoutURL  starts a Stripe Checkout and comes back (GET or POST);
//	             empty with 503: offer no payment while Stripe is down
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
//	Account      true when the site's own login says who the visitor is
//	             (identity <placeholder>): the words speak of an account,
//	             not of this browser
//	Notice       true on the pages of the paywall's own endpoints, which
//	             always use the built-in page
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
	Account     bool
	Notice      bool
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

//go:embed templates/page.html templates/page.css
var templateFS embed.FS

var (
	// pageCSS is the built-in page's stylesheet, inlined into its <style>.
	pageCSS = mustRead("templates/page.css")

	// builtinPage is the built-in 402 page, parsed once.
	builtinPage = template.Must(template.New("page.html").
			Option("missingkey=error").
			Funcs(template.FuncMap{"css": func() template.CSS { return template.CSS(pageCSS) }}).
			ParseFS(templateFS, "templates/page.html"))

	// builtinPageCSP allows the built-in page exactly its own inline
	// stylesheet, by hash, and nothing else: no script, no fetch, no
	// resource from anywhere. Its only form (sign out) posts to this site.
	builtinPageCSP = "default-src 'none'; style-src '" + cssHash(pageCSS) + "'; img-src data:; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
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
		if err := tmpl.Execute(io.Discard, newPageData(d, "en", "mailto:support@example.com")); err != nil {
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
}

// pageReasons are the reasons a page can be asked to explain.
var pageReasons = []string{
	reasonNoSubscription,
	reasonEnded,
	reasonPaymentFailed,
	reasonTrialEnded,
	reasonCheckoutNotDone,
	reasonUnavailable,
}

// writeDenial answers a refusal in the form the client asked for: a problem
// document (RFC 9457) for API clients, an HTML page for everyone else, in
// English or Indonesian. A 402 points to checkout in a Link header; a 503
// says when to retry and offers no payment at all.
func (h *Handler) writeDenial(w http.ResponseWriter, r *http.Request, d denial) error {
	if d.Status == 0 {
		d.Status = http.StatusPaymentRequired
	}
	if d.Status == http.StatusServiceUnavailable && d.RetryAfter <= 0 {
		d.RetryAfter = defaultRetryAfter
	}
	lang := negotiateLanguage(r.Header.Values("Accept-Language"))
	asJSON := wantsProblemJSON(r.Header.Values("Accept"))

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

	data := newPageData(d, lang, h.supportURL)
	if asJSON {
		// Without an address to trust, the URLs stay paths on this site,
		// which RFC 9457 lets a client resolve against the request's URL.
		base, _ := h.origin(r)
		if err := json.NewEncoder(buf).Encode(newProblem(base, data)); err != nil {
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
		return customPageCSP
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
			return customPageCSP, nil
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
	return builtinPageCSP, nil
}

func newPageData(d denial, lang, supportURL string) PageData {
	strs := pageStrings[lang]
	if d.RetryAfter > 0 || d.signinTTL > 0 {
		strs = withWait(strs, d.RetryAfter, d.signinTTL)
	}
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
		Account:     d.account,
		CheckoutURL: d.CheckoutURL,
		PortalURL:   d.PortalURL,
		LogoutURL:   d.LogoutURL,
		SupportURL:  supportURL,
		ReturnPath:  safeReturn(d.ReturnPath),
		RetryAfter:  d.RetryAfter,
		Notice:      d.notice,
		T:           strs,
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
	case http.StatusForbidden:
		return "status_403"
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

// withWait returns a copy of strs with {seconds} replaced by n, {wait} by
// n said in seconds or, from two minutes on, in whole minutes, and
// {minutes} by how long a sign-in link lasts.
func withWait(strs map[string]string, n int, link time.Duration) map[string]string {
	out := make(map[string]string, len(strs))
	secs := strconv.Itoa(n)
	wait := strings.ReplaceAll(strs["wait_seconds"], "{n}", secs)
	if n >= 120 {
		wait = strings.ReplaceAll(strs["wait_minutes"], "{n}", strconv.Itoa((n+59)/60))
	}
	r := strings.NewReplacer("{seconds}", secs, "{wait}", wait, "{minutes}", strconv.Itoa(max(1, int(link/time.Minute))))
	for k, v := range strs {
		out[k] = r.Replace(v)
	}
	return out
}

// problem is an RFC 9457 problem document with this handler's extensions.
type problem struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Status      int    `json:"status"`
	Detail      string `json:"detail"`
	Reason      string `json:"reason"`
	CheckoutURL string `json:"checkout_url,omitempty"`
	PortalURL   string `json:"portal_url,omitempty"`
	SigninURL   string `json:"signin_url,omitempty"`
	SupportURL  string `json:"support_url,omitempty"`
	RetryAfter  int    `json:"retry_after,omitempty"`
}

func newProblem(base string, data PageData) problem {
	p := problem{
		Type:        problemTypeBase + data.Reason,
		Title:       data.Title,
		Status:      data.Status,
		Detail:      data.Detail,
		Reason:      data.Reason,
		CheckoutURL: absoluteURL(base, data.CheckoutURL),
		PortalURL:   absoluteURL(base, data.PortalURL),
		SigninURL:   absoluteURL(base, data.SigninURL),
		SupportURL:  absoluteURL(base, data.SupportURL),
	}
	p.RetryAfter = data.RetryAfter
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

// wantsProblemJSON reports whether the Accept header asks for JSON (a
// problem document or plain JSON) at least as much as for HTML. Only a
// client that names a JSON type gets JSON on a tie, so "*/*" gets the page.
func wantsProblemJSON(accept []string) bool {
	ranges := parseAccept(accept)
	if len(ranges) == 0 {
		return false
	}
	html := mediaQ(ranges, "text", "html")
	js := max(mediaQ(ranges, "application", "problem+json"), mediaQ(ranges, "application", "json"))
	if js <= 0 {
		return false
	}
	if js > html {
		return true
	}
	if js < html {
		return false
	}
	for _, m := range ranges {
		if m.typ == "application" && (m.sub == "json" || m.sub == "problem+json") && m.q > 0 {
			return true
		}
	}
	return false
}

type mediaRange struct {
	typ, sub string
	q        float64
}

// parseAccept reads Accept headers into media ranges, skipping malformed
// ones.
func parseAccept(values []string) []mediaRange {
	var out []mediaRange
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			typ, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(mt)), "/")
			if !ok || typ == "" || sub == "" || (typ == "*" && sub != "*") {
				continue
			}
			q, ok := qValue(params)
			if !ok {
				continue
			}
			out = append(out, mediaRange{typ: strings.TrimSpace(typ), sub: strings.TrimSpace(sub), q: q})
		}
	}
	return out
}

// mediaQ is the quality the most specific matching range gives typ/sub,
// 0 when none matches.
func mediaQ(ranges []mediaRange, typ, sub string) float64 {
	best, q := 0, 0.0
	for _, m := range ranges {
		spec := 0
		switch {
		case m.typ == typ && m.sub == sub:
			spec = 3
		case m.typ == typ && m.sub == "*":
			spec = 2
		case m.typ == "*" && m.sub == "*":
			spec = 1
		}
		if spec > best || (spec == best && spec > 0 && m.q > q) {
			best, q = spec, m.q
		}
	}
	return q
}

// qValue finds q= among ";"-separated parameters: 1 when absent, and not
// ok when it is not a number from 0 to 1.
func qValue(params string) (float64, bool) {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0, false
		}
		return q, true
	}
	return 1, true
}

// pageLanguages are the languages the page speaks; the first is the default.
var pageLanguages = []string{"en", "id"}

// negotiateLanguage picks the built-in language the visitor prefers most
// by Accept-Language quality, the earlier one on a tie, and English when
// none is acceptable. "id-ID" matches "id"; "in" is Indonesian's old code.
func negotiateLanguage(values []string) string {
	best, bestQ := pageLanguages[0], 0.0
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			tag, params, _ := strings.Cut(part, ";")
			primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
			q, ok := qValue(params)
			if !ok || q <= bestQ {
				continue
			}
			switch primary {
			case "*":
				primary = pageLanguages[0]
			case "in":
				primary = "id"
			}
			if _, known := pageStrings[primary]; known {
				best, bestQ = primary, q
			}
		}
	}
	return best
}

// pageStrings are the page's words, by language and key. Every language has
// every key (a test makes sure); {seconds} stands for Retry-After.
var pageStrings = map[string]map[string]string{
	"en": {
		"status_400":                            "Bad request",
		"status_402":                            "Payment required",
		"status_403":                            "Forbidden",
		"status_410":                            "Gone",
		"title_identity_missing":                "Sign in to subscribe",
		"detail_identity_missing":               "Subscriptions belong to your account on this site. Sign in first, then subscribe. Nothing was charged.",
		"detail_no_subscription_account":        "This page is for subscribers, and your account does not have a subscription yet.",
		"detail_checkout_not_completed_account": "You started a checkout, but it was not completed, for example because the card was declined. Continue it to try another card or payment method. If you have already paid, continuing lets you in without charging you again.",

		"title_signin":                "Sign in with your email",
		"detail_signin":               "Enter the email address you subscribed with. We will send you a link that signs you in on this device.",
		"title_signin_sent":           "Check your inbox",
		"detail_signin_sent":          "If that address belongs to a subscriber, a sign-in link is on its way. It works once, for {minutes} minutes. Nothing arrived? Check your spam folder, or ask for a new link in a few minutes.",
		"title_signin_confirm":        "Sign in on this device?",
		"detail_signin_confirm":       "Press the button to finish signing in. Your subscription will be known in this browser.",
		"title_signin_email_invalid":  "That is not an email address",
		"detail_signin_email_invalid": "Enter the email address you subscribed with, such as name@example.com.",
		"title_signin_link_invalid":   "This sign-in link does not work",
		"detail_signin_link_invalid":  "The link is incomplete or was not made by this site. Copy the whole link from the mail, or ask for a new one.",
		"title_signin_link_expired":   "This sign-in link has expired",
		"detail_signin_link_expired":  "Sign-in links work for a short time only. Ask for a new one below.",
		"title_signin_link_used":      "This sign-in link was already used",
		"detail_signin_link_used":     "Each sign-in link works once. If it was you, you are signed in where you used it. To sign in here as well, ask for a new link.",

		"signin_heading": "Already subscribed?",
		"signin_summary": "Already subscribed? Email me a sign-in link",
		"signin_label":   "Email address",
		"signin_button":  "Email me a sign-in link",
		"signin_note":    "We will send a link that signs you in on this device. It works once, for {minutes} minutes.",
		"signin_confirm": "Sign in",
		"status_429":     "Too many requests",
		"status_500":     "Server error",
		"status_503":     "Service unavailable",

		"title_no_subscription":         "Subscription required",
		"detail_no_subscription":        "This page is for subscribers, and this browser does not have a subscription yet.",
		"title_subscription_ended":      "Your subscription has ended",
		"detail_subscription_ended":     "Your subscription is no longer active. Subscribe again to get access back.",
		"title_payment_failed":          "Your last payment failed",
		"detail_payment_failed":         "We could not charge your payment method for your latest renewal, so access is paused. Update your payment method to restore it. You do not need to subscribe again.",
		"title_trial_ended":             "Your free trial has ended",
		"detail_trial_ended":            "Your free trial is over. Subscribe to keep your access.",
		"title_checkout_not_completed":  "Your checkout was not completed",
		"detail_checkout_not_completed": "You started a checkout in this browser, but it was not completed, for example because the card was declined. Continue it to try another card or payment method. If you have already paid, continuing lets you in without charging you again.",
		"title_stripe_unavailable":      "Payment system temporarily unavailable",
		"detail_stripe_unavailable":     "We cannot reach our payment system right now, so we cannot check your subscription. Nothing was charged by this page. Please wait about {seconds} seconds and try again, and do not pay again.",

		"title_checkout_link_invalid":   "This checkout link does not work",
		"detail_checkout_link_invalid":  "The link that brought you here does not name a checkout of this site. Nothing was charged by this page. If you have paid, your subscription is safe: go back to the page, and if it still asks you to subscribe, contact us rather than paying again.",
		"title_checkout_other_browser":  "This checkout belongs to another browser",
		"detail_checkout_other_browser": "To keep your payment safe, a checkout can only be finished in the browser where it was started. If you have paid, your subscription is safe: open this site in that browser, or contact us. Please do not pay again.",
		"title_checkout_limited":        "Too many checkouts from your network",
		"detail_checkout_limited":       "Checkouts started from your network have reached this site's limit. Nothing was charged. Please wait about {wait} and try again.",
		"title_success_limited":         "Too many checkout links from your network",
		"detail_success_limited":        "Your network has opened too many checkout links that were not its own, so this one has to wait. If you have paid, your subscription is safe and nothing will be charged again: wait about {wait}, then reload this page.",
		"title_checkout_busy":           "Too many checkouts right now",
		"detail_checkout_busy":          "Many people are starting a checkout at this moment. Nothing was charged. Please wait about {wait} and try again.",
		"title_origin_unknown":          "Checkout is not available at this address",
		"detail_origin_unknown":         "This site cannot send you to its payment page from the address you used. Nothing was charged. Open the site at its usual address, or contact us.",

		"subscribe":          "Subscribe",
		"subscribe_again":    "Subscribe again",
		"try_again":          "Continue checkout",
		"checkout_note":      "You will pay securely with Stripe and come back to this page.",
		"charged_note":       "If you were charged anyway, do not pay again: contact us and we will sort it out.",
		"update_payment":     "Update payment method",
		"portal_note":        "You will update it securely with Stripe and come back to this page.",
		"retry":              "Try again",
		"unavailable_notice": "If you already have a subscription, it is safe. There is nothing to pay on this page.",

		"other_device_heading": "Already subscribed on another device?",
		"other_device_text":    "Your subscription is remembered in the browser you paid with. Open this site there.",
		"other_device_support": "Please do not subscribe a second time here: contact support and we will help.",
		"support":              "Contact support",
		"not_you":              "Not you?",
		"sign_out":             "Sign out",
		"back":                 "Back to the page",
		"wait_seconds":         "{n} seconds",
		"wait_minutes":         "{n} minutes",
	},
	"id": {
		"status_400":                            "Permintaan tidak valid",
		"status_402":                            "Pembayaran diperlukan",
		"status_403":                            "Tidak diizinkan",
		"status_410":                            "Sudah tidak berlaku",
		"title_identity_missing":                "Masuk untuk berlangganan",
		"detail_identity_missing":               "Langganan terikat pada akun Anda di situs ini. Masuk terlebih dahulu, lalu berlangganan. Tidak ada yang ditagih.",
		"detail_no_subscription_account":        "Halaman ini khusus untuk pelanggan, dan akun Anda belum memiliki langganan.",
		"detail_checkout_not_completed_account": "Anda sudah memulai pembayaran, tetapi pembayarannya belum selesai, misalnya karena kartu ditolak. Lanjutkan untuk mencoba kartu atau metode pembayaran lain. Jika Anda sudah membayar, melanjutkan akan membuka akses tanpa menagih Anda lagi.",

		"title_signin":                "Masuk dengan email Anda",
		"detail_signin":               "Masukkan alamat email yang Anda gunakan untuk berlangganan. Kami akan mengirim tautan untuk masuk di perangkat ini.",
		"title_signin_sent":           "Periksa kotak masuk Anda",
		"detail_signin_sent":          "Jika alamat itu milik pelanggan, tautan masuk sedang dikirim. Tautan berlaku satu kali, selama {minutes} menit. Tidak ada yang masuk? Periksa folder spam, atau minta tautan baru beberapa menit lagi.",
		"title_signin_confirm":        "Masuk di perangkat ini?",
		"detail_signin_confirm":       "Tekan tombol untuk menyelesaikan proses masuk. Langganan Anda akan dikenali di browser ini.",
		"title_signin_email_invalid":  "Itu bukan alamat email",
		"detail_signin_email_invalid": "Masukkan alamat email yang Anda gunakan untuk berlangganan, misalnya nama@example.com.",
		"title_signin_link_invalid":   "Tautan masuk ini tidak berlaku",
		"detail_signin_link_invalid":  "Tautannya tidak lengkap atau tidak dibuat oleh situs ini. Salin seluruh tautan dari email, atau minta tautan baru.",
		"title_signin_link_expired":   "Tautan masuk ini sudah kedaluwarsa",
		"detail_signin_link_expired":  "Tautan masuk hanya berlaku sebentar. Minta tautan baru di bawah ini.",
		"title_signin_link_used":      "Tautan masuk ini sudah digunakan",
		"detail_signin_link_used":     "Setiap tautan masuk hanya berlaku satu kali. Jika itu Anda, Anda sudah masuk di tempat tautan itu digunakan. Untuk masuk juga di sini, minta tautan baru.",

		"signin_heading": "Sudah berlangganan?",
		"signin_summary": "Sudah berlangganan? Kirimi saya tautan masuk",
		"signin_label":   "Alamat email",
		"signin_button":  "Kirimi saya tautan masuk",
		"signin_note":    "Kami akan mengirim tautan untuk masuk di perangkat ini. Tautan berlaku satu kali, selama {minutes} menit.",
		"signin_confirm": "Masuk",
		"status_429":     "Terlalu banyak permintaan",
		"status_500":     "Kesalahan server",
		"status_503":     "Layanan tidak tersedia",

		"title_no_subscription":         "Perlu berlangganan",
		"detail_no_subscription":        "Halaman ini khusus untuk pelanggan, dan browser ini belum memiliki langganan.",
		"title_subscription_ended":      "Langganan Anda telah berakhir",
		"detail_subscription_ended":     "Langganan Anda sudah tidak aktif. Berlangganan lagi untuk mendapatkan akses kembali.",
		"title_payment_failed":          "Pembayaran terakhir Anda gagal",
		"detail_payment_failed":         "Kami tidak dapat menagih metode pembayaran Anda untuk perpanjangan terakhir, sehingga akses Anda dijeda. Perbarui metode pembayaran Anda untuk memulihkannya. Anda tidak perlu berlangganan lagi.",
		"title_trial_ended":             "Masa uji coba gratis Anda telah berakhir",
		"detail_trial_ended":            "Masa uji coba gratis Anda sudah selesai. Berlangganan untuk tetap mendapatkan akses.",
		"title_checkout_not_completed":  "Pembayaran Anda belum selesai",
		"detail_checkout_not_completed": "Anda sudah memulai pembayaran di browser ini, tetapi pembayarannya belum selesai, misalnya karena kartu ditolak. Lanjutkan untuk mencoba kartu atau metode pembayaran lain. Jika Anda sudah membayar, melanjutkan akan membuka akses tanpa menagih Anda lagi.",
		"title_stripe_unavailable":      "Sistem pembayaran sedang tidak tersedia",
		"detail_stripe_unavailable":     "Kami tidak dapat menghubungi sistem pembayaran saat ini, sehingga langganan Anda tidak dapat diperiksa. Halaman ini tidak menagih apa pun. Tunggu sekitar {seconds} detik lalu coba lagi, dan jangan membayar lagi.",

		"title_checkout_link_invalid":   "Tautan pembayaran ini tidak berlaku",
		"detail_checkout_link_invalid":  "Tautan yang membawa Anda ke sini tidak menunjuk ke pembayaran di situs ini. Halaman ini tidak menagih apa pun. Jika Anda sudah membayar, langganan Anda aman: kembali ke halaman tadi, dan jika masih diminta berlangganan, hubungi kami alih-alih membayar lagi.",
		"title_checkout_other_browser":  "Pembayaran ini milik browser lain",
		"detail_checkout_other_browser": "Demi keamanan pembayaran Anda, pembayaran hanya dapat diselesaikan di browser tempat pembayaran itu dimulai. Jika Anda sudah membayar, langganan Anda aman: buka situs ini di browser tersebut, atau hubungi kami. Mohon jangan membayar lagi.",
		"title_checkout_limited":        "Terlalu banyak pembayaran dari jaringan Anda",
		"detail_checkout_limited":       "Pembayaran yang dimulai dari jaringan Anda telah mencapai batas situs ini. Tidak ada yang ditagih. Tunggu sekitar {wait} lalu coba lagi.",
		"title_success_limited":         "Terlalu banyak tautan pembayaran dari jaringan Anda",
		"detail_success_limited":        "Jaringan Anda telah membuka terlalu banyak tautan pembayaran yang bukan miliknya, sehingga tautan ini harus menunggu. Jika Anda sudah membayar, langganan Anda aman dan tidak ada yang akan ditagih lagi: tunggu sekitar {wait}, lalu muat ulang halaman ini.",
		"title_checkout_busy":           "Terlalu banyak pembayaran saat ini",
		"detail_checkout_busy":          "Banyak orang sedang memulai pembayaran saat ini. Tidak ada yang ditagih. Tunggu sekitar {wait} lalu coba lagi.",
		"title_origin_unknown":          "Pembayaran tidak tersedia di alamat ini",
		"detail_origin_unknown":         "Situs ini tidak dapat mengarahkan Anda ke halaman pembayaran dari alamat yang Anda gunakan. Tidak ada yang ditagih. Buka situs ini di alamat biasanya, atau hubungi kami.",

		"subscribe":          "Berlangganan",
		"subscribe_again":    "Berlangganan lagi",
		"try_again":          "Lanjutkan pembayaran",
		"checkout_note":      "Anda akan membayar dengan aman melalui Stripe, lalu kembali ke halaman ini.",
		"charged_note":       "Jika Anda tetap ditagih, jangan membayar lagi: hubungi kami dan kami akan membereskannya.",
		"update_payment":     "Perbarui metode pembayaran",
		"portal_note":        "Anda akan memperbaruinya dengan aman melalui Stripe, lalu kembali ke halaman ini.",
		"retry":              "Coba lagi",
		"unavailable_notice": "Jika Anda sudah berlangganan, langganan Anda aman. Tidak ada yang perlu dibayar di halaman ini.",

		"other_device_heading": "Sudah berlangganan di perangkat lain?",
		"other_device_text":    "Langganan Anda diingat di browser yang Anda gunakan untuk membayar. Buka situs ini di sana.",
		"other_device_support": "Mohon jangan berlangganan untuk kedua kalinya di sini: hubungi dukungan dan kami akan membantu.",
		"support":              "Hubungi dukungan",
		"not_you":              "Bukan Anda?",
		"sign_out":             "Keluar",
		"back":                 "Kembali ke halaman",
		"wait_seconds":         "{n} detik",
		"wait_minutes":         "{n} menit",
	},
}
