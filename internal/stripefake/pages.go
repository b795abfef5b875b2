package stripefake

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// Banner is shown at the top of every hosted page.
const Banner = "Stripe sandbox — test mode, no real money"

var currencySymbols = map[string]string{"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$", "jpy": "¥"}

var zeroDecimal = map[string]bool{"jpy": true, "krw": true, "vnd": true, "clp": true}

// money formats an amount in minor units: 500 usd → "$5.00".
func money(amount int64, currency string) string {
	var n string
	if zeroDecimal[currency] {
		n = fmt.Sprintf("%d", amount)
	} else {
		n = fmt.Sprintf("%d.%02d", amount/100, amount%100)
	}
	if sym, ok := currencySymbols[currency]; ok {
		return sym + n
	}
	return n + " " + strings.ToUpper(currency)
}

// Label describes the price for people: "Premium — $5.00 / month".
func (p Price) Label() string { return priceLabel(&p, 1) }

// priceLabel: "Premium — $5.00 / month", with "× n" for quantities over 1.
func priceLabel(p *Price, qty int64) string {
	name := p.ProductName
	if qty > 1 {
		name = fmt.Sprintf("%s × %d", name, qty)
	}
	return fmt.Sprintf("%s — %s / %s", name, money(p.UnitAmount*qty, p.Currency), p.Interval)
}

func day(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

const pageCSS = `*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;background:#f6f9fc;color:#1a1f36}
.banner{background:#ffd54f;color:#3d2e00;text-align:center;font-size:14px;font-weight:600;padding:6px 12px}
main{max-width:30rem;margin:0 auto;padding:12px 16px 32px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:20px;margin:14px 0;overflow-wrap:anywhere}
h1{font-size:20px;margin:0 0 6px}
h2{font-size:17px;margin:0 0 6px}
label{display:block;font-size:14px;color:#4f566b;margin:14px 0 4px}
input{width:100%;font:inherit;padding:10px 12px;border:1px solid #cfd7df;border-radius:6px;background:#fff}
input[readonly]{background:#f3f5f8;color:#4f566b}
button,.button{display:block;width:100%;font:inherit;font-weight:600;text-align:center;text-decoration:none;padding:12px;margin-top:12px;border:0;border-radius:6px;background:#635bff;color:#fff;cursor:pointer}
button.secondary,.button.secondary{background:#fff;color:#1a1f36;border:1px solid #cfd7df}
button.danger{background:#df1b41}
.error{background:#fde8ec;color:#a4112e;border-radius:6px;padding:10px 12px;margin-top:14px}
.note{background:#eef6ff;color:#0a4a8f;border-radius:6px;padding:10px 12px;margin:10px 0}
.muted{color:#697386;font-size:14px}
.status{display:inline-block;font-size:13px;font-weight:600;border-radius:4px;padding:1px 8px;background:#e3e8ee}
.status-active,.status-trialing{background:#d7f7c2;color:#05690d}
.status-past_due,.status-unpaid,.status-incomplete{background:#fde8ec;color:#a4112e}
a{color:#635bff}
code{font-size:14px;background:#f3f5f8;border-radius:4px;padding:1px 4px;white-space:nowrap}
ul{padding-left:20px;margin:6px 0}
table{width:100%;border-collapse:collapse;font-size:14px}
td,th{text-align:left;padding:4px 6px 4px 0;border-bottom:1px solid #e3e8ee;vertical-align:top;overflow-wrap:normal}
td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
details{border-bottom:1px solid #e3e8ee;padding:6px 0;font-size:14px}
summary{cursor:pointer}
pre.mail{white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.45 ui-monospace,Menlo,Consolas,monospace;background:#f3f5f8;border-radius:6px;padding:10px;margin:8px 0}`

var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.}} · Stripe sandbox</title>
<style>` + pageCSS + `</style></head>
<body><div class="banner" id="sandbox-banner">` + Banner + `</div><main>{{end}}

{{define "foot"}}</main></body></html>{{end}}

{{define "checkout"}}{{template "head" "Checkout"}}
{{if .CancelURL}}<a id="back" href="{{.CancelURL}}">← Back</a>{{end}}
<div class="card">
{{if eq .Status "open"}}
<div class="muted">Subscribe to {{.Product}}</div>
<h1 id="product">{{.PriceLabel}}</h1>
{{if .TrialDays}}<div class="note" id="trial">{{.TrialDays}}-day free trial. Nothing is charged today; then {{.Amount}} / {{.Interval}}.</div>{{end}}
<form method="post" action="/c/pay/{{.ID}}" novalidate>
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="email" value="{{.Email}}"{{if .EmailLocked}} readonly{{end}}>
<label for="card">Card number</label>
<input id="card" name="card" inputmode="numeric" autocomplete="cc-number" value="{{.Card}}">
{{if .Error}}<div id="error" class="error" role="alert">{{.Error}}</div>{{end}}
<button id="pay" type="submit">{{if .TrialDays}}Start trial{{else}}Pay {{.Amount}}{{end}}</button>
</form>
{{else if eq .Status "complete"}}
<h1 id="complete">This checkout is complete</h1>
<p>{{.PriceLabel}} is paid for.</p>
<a class="button" id="continue" href="{{.SuccessURL}}">Continue</a>
{{else}}
<h1 id="expired">This checkout session has expired</h1>
<p>Go back and start again.</p>
{{end}}
</div>
<div class="card muted" id="test-cards">Test cards: <code>4242 4242 4242 4242</code> succeeds; <code>4000 0000 0000 0002</code> is declined. Any email works.</div>
{{template "foot"}}{{end}}

{{define "portal"}}{{template "head" "Billing"}}
<div class="card">
<h1>Billing</h1>
<div class="muted" id="customer">{{if .Email}}{{.Email}} · {{end}}{{.CustomerID}}</div>
{{if .Error}}<div id="error" class="error" role="alert">{{.Error}}</div>{{end}}
</div>
{{range .Subs}}
<div class="card" id="sub-{{.ID}}">
<h2>{{.Label}}</h2>
<div>Status: <span class="status status-{{.Status}}" id="status{{.Suffix}}">{{.Status}}</span></div>
<div class="muted" id="period{{.Suffix}}">{{.Period}}</div>
{{if .Actions}}<form method="post" action="/p/session/{{$.ID}}">
<input type="hidden" name="subscription" value="{{.ID}}">
{{if .CanUpdate}}<button id="update-payment{{.Suffix}}" name="action" value="update_payment">Update payment method</button>{{end}}
{{if .CanFail}}<button id="fail-renewal{{.Suffix}}" name="action" value="fail_renewal" class="secondary">Simulate failed renewal</button>{{end}}
{{if .CanRenew}}<button id="renew{{.Suffix}}" name="action" value="renew" class="secondary">Simulate successful renewal</button>{{end}}
{{if .CanResume}}<button id="resume{{.Suffix}}" name="action" value="resume" class="secondary">Don't cancel</button>{{end}}
{{if .CanCancelAtEnd}}<button id="cancel-at-period-end{{.Suffix}}" name="action" value="cancel_at_period_end" class="secondary">Cancel at period end</button>{{end}}
<button id="cancel{{.Suffix}}" name="action" value="cancel" class="danger">Cancel subscription</button>
</form>{{end}}
</div>
{{else}}
<div class="card" id="no-subscriptions">No subscriptions.</div>
{{end}}
{{if .ReturnURL}}<a class="button secondary" id="return" href="{{.ReturnURL}}">Return to site</a>{{end}}
{{template "foot"}}{{end}}

{{define "message"}}{{template "head" .Title}}
<div class="card"><h1>{{.Title}}</h1><p>{{.Text}}</p></div>
{{template "foot"}}{{end}}

{{define "body"}}{{range .}}{{if .URL}}<a href="{{.URL}}">{{.Text}}</a>{{else}}{{.Text}}{{end}}{{end}}{{end}}

{{define "mail"}}{{template "head" .Subject}}
<a id="back" href="/">← Sandbox</a>
<div class="card"><h1 id="subject">{{.Subject}}</h1>
<div class="muted">From {{.From}}<br>To {{.To}}<br>{{.Time}}</div>
<pre class="mail" id="mail-body">{{template "body" .Body}}</pre></div>
{{template "foot"}}{{end}}

{{define "mailcard"}}<div class="card" id="mail"><h2>Mail</h2>
{{if .Err}}<p class="muted" id="mail-error">{{.Err}}</p>
{{else if .Rows}}{{range .Rows}}<details id="mail-{{.ID}}"{{if .Open}} open{{end}}><summary>{{.Time}} · {{.To}} · <strong>{{.Subject}}</strong></summary>
{{if .Err}}<p class="error">{{.Err}}</p>{{else}}<pre class="mail">{{template "body" .Body}}</pre>{{end}}
<a href="/mail/{{.ID}}">Open this message</a></details>{{end}}
{{else}}<p class="muted">No mail yet.</p>{{end}}
{{if not .Err}}<p class="muted">Read from Mailpit at <code>{{.URL}}</code>, newest first.</p>{{end}}</div>{{end}}

{{define "index"}}{{template "head" "Home"}}
<div class="card"><h1>Stripe sandbox</h1>
<p>An offline stand-in for the Stripe API, Checkout, the billing portal and webhooks. Any <code>sk_test_…</code> key is accepted.</p>
<p class="muted">API base URL: <code>{{.URL}}</code></p></div>
{{with .Mail}}{{template "mailcard" .}}{{end}}
<div class="card"><h2>Prices</h2><ul>{{range .Prices}}<li><code>{{.ID}}</code> {{.Label}}</li>{{end}}</ul></div>
<div class="card"><h2>Webhook endpoints</h2>{{if .Endpoints}}<ul>{{range .Endpoints}}<li>{{.}}</li>{{end}}</ul>{{else}}<p class="muted">None: events are generated but not delivered.</p>{{end}}</div>
<div class="card"><h2>Checkout sessions</h2>{{if .Sessions}}<table>{{range .Sessions}}<tr><td class="id">{{if eq .Status "open"}}<a href="/c/pay/{{.ID}}">{{.Short}}</a>{{else}}{{.Short}}{{end}}</td><td>{{.Status}}</td><td class="id">{{.Customer}}</td></tr>{{end}}</table>{{else}}<p class="muted">None yet.</p>{{end}}</div>
<div class="card"><h2>Subscriptions</h2>{{if .Subs}}<table>{{range .Subs}}<tr><td class="id">{{.ID}}</td><td>{{.Status}}</td><td class="id">{{.Customer}}</td></tr>{{end}}</table>{{else}}<p class="muted">None yet.</p>{{end}}</div>
<div class="card"><h2>Recent webhook deliveries</h2>{{if .Deliveries}}<table>{{range .Deliveries}}<tr><td class="id">{{.Type}}</td><td>{{if .StatusCode}}{{.StatusCode}}{{else}}<span title="{{.Err}}">no response</span>{{end}}</td><td>try {{.Attempt}}</td></tr>{{end}}</table>{{else}}<p class="muted">None yet.</p>{{end}}</div>
{{template "foot"}}{{end}}
`))

func render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action *; base-uri 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func renderMessage(w http.ResponseWriter, status int, title, text string) {
	render(w, status, "message", struct{ Title, Text string }{title, text})
}

// ---------------------------------------------------------------- checkout

type checkoutView struct {
	ID, Status            string
	Product, PriceLabel   string
	Amount, Interval      string
	TrialDays             int64
	Email                 string
	EmailLocked           bool
	Card, Error           string
	CancelURL, SuccessURL string
}

// checkoutView builds the page data; ok is false for an unknown session.
func (s *Server) checkoutView(id string) (checkoutView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[id]
	if !ok {
		return checkoutView{}, false
	}
	s.expireIfDueLocked(cs)
	v := checkoutView{
		ID: cs.ID, Status: cs.Status, TrialDays: cs.TrialPeriodDays,
		CancelURL:  cs.CancelURL,
		SuccessURL: strings.ReplaceAll(cs.SuccessURL, "{CHECKOUT_SESSION_ID}", cs.ID),
		Card:       "4242 4242 4242 4242",
	}
	if p, ok := s.prices[cs.Price]; ok {
		v.Product, v.PriceLabel = p.ProductName, priceLabel(p, cs.Quantity)
		v.Amount, v.Interval = money(p.UnitAmount*cs.Quantity, p.Currency), p.Interval
	}
	if c, ok := s.customers[cs.Customer]; ok {
		v.Email, v.EmailLocked = c.Email, true
	} else if cs.CustomerEmail != "" {
		v.Email, v.EmailLocked = cs.CustomerEmail, true
	}
	return v, true
}

func (s *Server) checkoutPage(w http.ResponseWriter, r *http.Request) {
	v, ok := s.checkoutView(r.PathValue("id"))
	if !ok {
		renderMessage(w, http.StatusNotFound, "Checkout not found", "This checkout link is not valid.")
		return
	}
	render(w, http.StatusOK, "checkout", v)
}

func (s *Server) checkoutSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, ok := s.checkoutView(id)
	if !ok {
		renderMessage(w, http.StatusNotFound, "Checkout not found", "This checkout link is not valid.")
		return
	}
	if err := r.ParseForm(); err != nil {
		renderMessage(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	if v.Status != "open" {
		http.Redirect(w, r, "/c/pay/"+id, http.StatusSeeOther)
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	card := r.PostForm.Get("card")
	if !v.EmailLocked {
		v.Email = email
	}
	v.Card = card
	if !v.EmailLocked && (!strings.Contains(email, "@") || strings.ContainsAny(email, " \t\r\n")) {
		v.Error = "Enter a valid email address."
		render(w, http.StatusBadRequest, "checkout", v)
		return
	}
	target, err := s.completeCheckout(id, email, card)
	var ce *cardError
	switch {
	case err == nil:
		http.Redirect(w, r, target, http.StatusSeeOther)
	case errors.As(err, &ce):
		v.Error = ce.msg
		status := http.StatusBadRequest
		if ce.declined {
			status = http.StatusPaymentRequired
		}
		render(w, status, "checkout", v)
	case errors.Is(err, ErrNotOpen):
		http.Redirect(w, r, "/c/pay/"+id, http.StatusSeeOther)
	default:
		v.Error = err.Error()
		render(w, http.StatusInternalServerError, "checkout", v)
	}
}

// ---------------------------------------------------------------- portal

type portalSubView struct {
	ID, Label, Status, Period string
	Suffix                    string // "" for the customer's newest live subscription
	Actions                   bool
	CanUpdate, CanFail        bool
	CanRenew, CanResume       bool
	CanCancelAtEnd            bool
}

type portalView struct {
	ID, CustomerID, Email string
	ReturnURL, Error      string
	Subs                  []portalSubView
}

func (s *Server) portalView(id string) (portalView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.portals[id]
	if !ok {
		return portalView{}, false
	}
	v := portalView{ID: ps.ID, CustomerID: ps.Customer, ReturnURL: ps.ReturnURL}
	if c, ok := s.customers[ps.Customer]; ok {
		v.Email = c.Email
	}
	primary := true
	for _, sub := range s.sortedSubsLocked() {
		if sub.Customer != ps.Customer {
			continue
		}
		sv := portalSubView{ID: sub.ID, Status: sub.Status, Label: sub.Price}
		if p, ok := s.prices[sub.Price]; ok {
			sv.Label = priceLabel(p, sub.Quantity)
		}
		live := !ended(sub.Status)
		if live && primary {
			primary = false
		} else {
			sv.Suffix = "-" + sub.ID
		}
		switch {
		case !live:
			sv.Period = "Ended on " + day(sub.EndedAt)
		case sub.CancelAtPeriodEnd:
			sv.Period = "Cancels on " + day(sub.CurrentPeriodEnd)
		case sub.Status == "trialing":
			sv.Period = "Trial ends on " + day(sub.TrialEnd)
		case sub.Status == "past_due":
			sv.Period = "Renewal payment failed on " + day(sub.CurrentPeriodStart) + ". Current period ends " + day(sub.CurrentPeriodEnd) + "."
		case sub.Status == "active":
			sv.Period = "Renews on " + day(sub.CurrentPeriodEnd)
		default:
			sv.Period = "Current period ends " + day(sub.CurrentPeriodEnd)
		}
		sv.Actions = live
		sv.CanUpdate = sub.Status == "past_due" || sub.Status == "unpaid"
		sv.CanFail = sub.Status == "active" || sub.Status == "trialing"
		sv.CanRenew = sv.CanFail
		sv.CanResume = live && sub.CancelAtPeriodEnd
		sv.CanCancelAtEnd = live && !sub.CancelAtPeriodEnd
		v.Subs = append(v.Subs, sv)
	}
	return v, true
}

func (s *Server) portalPage(w http.ResponseWriter, r *http.Request) {
	v, ok := s.portalView(r.PathValue("id"))
	if !ok {
		renderMessage(w, http.StatusNotFound, "Session not found", "This billing link is not valid. Go back to the site and open billing again.")
		return
	}
	render(w, http.StatusOK, "portal", v)
}

func (s *Server) portalSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil {
		renderMessage(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	if _, ok := s.PortalSession(id); !ok {
		renderMessage(w, http.StatusNotFound, "Session not found", "This billing link is not valid.")
		return
	}
	if err := s.portalAction(id, r.PostForm.Get("subscription"), r.PostForm.Get("action")); err != nil {
		v, _ := s.portalView(id)
		switch {
		case errors.Is(err, ErrInvalidState):
			v.Error = "That action is not available for this subscription in its current status."
		default:
			v.Error = err.Error()
		}
		render(w, http.StatusConflict, "portal", v)
		return
	}
	http.Redirect(w, r, "/p/session/"+id, http.StatusSeeOther)
}

func (s *Server) portalAction(portalID, subID, action string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.portals[portalID]
	if !ok {
		return ErrNotFound
	}
	sub, ok := s.subs[subID]
	if !ok || sub.Customer != ps.Customer {
		return fmt.Errorf("%w: subscription %q", ErrNotFound, subID)
	}
	switch action {
	case "cancel":
		return s.cancelLocked(subID)
	case "fail_renewal":
		return s.failRenewalLocked(subID)
	case "update_payment":
		return s.updatePaymentLocked(subID)
	case "renew":
		return s.renewLocked(subID)
	case "cancel_at_period_end":
		return s.setCancelAtPeriodEndLocked(subID, true)
	case "resume":
		return s.setCancelAtPeriodEndLocked(subID, false)
	}
	return fmt.Errorf("stripefake: unknown action %q", action)
}

// ---------------------------------------------------------------- index

func (s *Server) indexPage(w http.ResponseWriter, r *http.Request) {
	type priceRow struct{ ID, Label string }
	type sessRow struct{ ID, Short, Status, Customer string }
	type subRow struct{ ID, Status, Customer string }
	data := struct {
		URL        string
		Prices     []priceRow
		Endpoints  []string
		Sessions   []sessRow
		Subs       []subRow
		Deliveries []Delivery
		Mail       *mailSection
	}{URL: s.baseURL(r), Mail: s.mailSection(r.Context())}
	s.mu.Lock()
	for _, id := range s.priceIDs {
		p := s.prices[id]
		data.Prices = append(data.Prices, priceRow{p.ID, priceLabel(p, 1)})
	}
	for _, ep := range s.endpoints {
		data.Endpoints = append(data.Endpoints, ep.url)
	}
	s.mu.Unlock()
	for i, cs := range s.Sessions() {
		if i == 20 {
			break
		}
		short := cs.ID
		if len(short) > 18 {
			short = short[:18] + "…"
		}
		data.Sessions = append(data.Sessions, sessRow{cs.ID, short, cs.Status, cs.Customer})
	}
	for i, sub := range s.Subscriptions("") {
		if i == 20 {
			break
		}
		data.Subs = append(data.Subs, subRow{sub.ID, sub.Status, sub.Customer})
	}
	ds := s.Deliveries()
	for i := len(ds) - 1; i >= 0 && len(data.Deliveries) < 20; i-- {
		data.Deliveries = append(data.Deliveries, ds[i])
	}
	render(w, http.StatusOK, "index", data)
}
