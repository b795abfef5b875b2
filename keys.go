package paywall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// The endpoint <endpoint_prefix>/keys, where a subscriber manages the API
// keys of apikeys.go: GET lists them, POST creates one and shows it once,
// POST /keys/<id>/revoke ends one. Only a browser identity (the cookie, or
// the site's login) manages keys: a request with a key cannot, so that a
// leaked key cannot make others. Listing and revoking stay open to a
// customer who stopped paying, who must be able to end a leaked key before
// paying again; creating is for those who pay.

// keysPage is the page of the list, in the look of the built-in page, with
// its stylesheet and Content-Security-Policy.
var keysPage = template.Must(template.New("keys.html").
	Option("missingkey=error").
	Funcs(pageFuncs).
	ParseFS(templateFS, "templates/keys.html", "templates/page.html")) // page.html's "head"

// keysPageData is what templates/keys.html is executed with.
type keysPageData struct {
	Lang        string
	Title       string
	Detail      string
	Keys        []keyView
	NewKey      string // the key just made, shown this once
	KeysURL     string
	ReturnPath  string
	Entitled    bool
	AtMax       bool
	Max         int
	CheckoutURL string
	SupportURL  string
	Status      int    // 200 or 201: page.html's head names only refusals
	StatusText  string // in the title
	SiteName    string
	Logo        string
	T           map[string]string
}

// keyView is a key as the list shows it, and as its JSON gives it.
type keyView struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Created int64  `json:"created"`
	Last4   string `json:"last4"`
	Date    string `json:"-"` // Created, as a date
}

func (h *Handler) serveKeys(w http.ResponseWriter, r *http.Request, rest string) error {
	if h.apiKeys == nil {
		return caddyhttp.Error(http.StatusNotFound, errors.New("paywall: api_keys is not configured"))
	}
	revoke := ""
	if rest != "" {
		id, ok := strings.CutSuffix(strings.TrimPrefix(rest, "/"), "/revoke")
		if !ok || !validKeyID(id) {
			return caddyhttp.Error(http.StatusNotFound, errors.New("paywall: no such keys endpoint"))
		}
		revoke = id
		if ok, err := allow(w, r, http.MethodPost); !ok {
			return err
		}
	} else if ok, err := allow(w, r, http.MethodGet, http.MethodHead, http.MethodPost); !ok {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	ret := h.apiKeys.url
	if _, ok := bearerKey(r.Header); ok {
		return h.writeDenial(w, r, denial{Status: http.StatusForbidden, Reason: reasonKeysByKey, ReturnPath: "/", notice: true, program: true})
	}
	if r.Method == http.MethodPost && !sameSite(r, h.publicURL) {
		return caddyhttp.Error(http.StatusForbidden, errors.New("paywall: a key change from another site"))
	}
	t := now()
	v, err := h.who(r, replacerOf(r), t)
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if v.customer == "" {
		if v.login != "" {
			// Signed in to the site, but never a customer: nothing to
			// list, and nothing to create before subscribing.
			return h.keysNotEntitled(w, r, reasonNoSubscription)
		}
		d := denial{Status: http.StatusUnauthorized, Reason: reasonKeysSignin, ReturnPath: ret, notice: true, account: h.login != nil}
		if h.signin != nil {
			d.SigninURL, d.signinTTL = h.prefix+"/signin", h.signin.ttl
		}
		return h.writeDenial(w, r, d)
	}
	f, err := h.customerState(v.customer, t.UnixNano())
	if err == nil && f.keys == nil {
		f, err = h.readKeys(v.customer)
	}
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if f.keys == nil {
		return h.notice(w, r, http.StatusInternalServerError, reasonKeysPermission, ret, 0)
	}
	switch {
	case revoke != "":
		return h.revokeKey(w, r, v.customer, f, revoke)
	case r.Method == http.MethodPost:
		return h.createKey(w, r, v.customer, f, t)
	}
	entitled, _ := h.entitlement(f.subs, t)
	return h.writeKeys(w, r, http.StatusOK, f.keys, entitled, "", keyRecord{})
}

// createKey makes a key for a paying customer and shows it once.
func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, customer string, f facts, t time.Time) error {
	ret := h.apiKeys.url
	if ok, reason := h.entitlement(f.subs, t); !ok {
		return h.keysNotEntitled(w, r, reason)
	}
	if f.keys.len() >= h.apiKeys.max {
		return h.writeDenial(w, r, denial{Status: http.StatusConflict, Reason: reasonKeysMax, ReturnPath: ret, notice: true, maxKeys: h.apiKeys.max})
	}
	if f.keys.meta >= stripeMetadataMax {
		return h.notice(w, r, http.StatusConflict, reasonKeysFull, ret, 0)
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	name := cleanKeyName(r.PostFormValue("name"))
	if refused, err := h.refuseStripeCall(w, r, t, ret); refused {
		return err
	}
	key, rec, err := h.apiKeys.newKey(customer, f.keys)
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	rec.Name = name
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.StripeTimeout))
	defer cancel()
	md, err := h.stripe.updateMetadata(ctx, customer, map[string]string{keyMetaPrefix + rec.ID: keyValue(rec)})
	if err != nil {
		return h.keyWriteFailed(w, r, err)
	}
	h.keysChanged(customer, "")
	ring := keysFromMetadata(md)
	if ring.len() > h.apiKeys.max {
		// Another request made a key at the same time (here or on
		// another instance): this one goes again, so that the bound
		// holds whatever the order.
		if _, err := h.stripe.updateMetadata(ctx, customer, map[string]string{keyMetaPrefix + rec.ID: ""}); err != nil {
			h.logger.Warn("api_keys: a key made beyond the customer's max could not be removed again; it works until revoked",
				zap.Error(err))
		}
		h.keysChanged(customer, rec.ID)
		return h.writeDenial(w, r, denial{Status: http.StatusConflict, Reason: reasonKeysMax, ReturnPath: ret, notice: true, maxKeys: h.apiKeys.max})
	}
	if ce := h.logger.Check(zap.DebugLevel, "api key created"); ce != nil {
		ce.Write(zap.String("customer", customer), zap.String("key_id", rec.ID))
	}
	return h.writeKeys(w, r, http.StatusCreated, ring, true, key, rec)
}

// revokeKey ends one of the customer's keys.
func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request, customer string, f facts, id string) error {
	ret := h.apiKeys.url
	if f.keys.find(id) == nil {
		// Perhaps made on another instance since these facts were
		// read: ask Stripe before saying there is no such key.
		h.account.invalidate(customer)
		fresh, err := h.readKeys(customer)
		if err != nil {
			return h.unavailable(w, r, ret)
		}
		if fresh.keys == nil {
			return h.notice(w, r, http.StatusInternalServerError, reasonKeysPermission, ret, 0)
		}
		if fresh.keys.find(id) == nil {
			return h.notice(w, r, http.StatusNotFound, reasonKeyNotFound, ret, 0)
		}
	}
	t := now()
	if refused, err := h.refuseStripeCall(w, r, t, ret); refused {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.StripeTimeout))
	defer cancel()
	if _, err := h.stripe.updateMetadata(ctx, customer, map[string]string{keyMetaPrefix + id: ""}); err != nil {
		return h.keyWriteFailed(w, r, err)
	}
	h.keysChanged(customer, id)
	if ce := h.logger.Check(zap.DebugLevel, "api key revoked"); ce != nil {
		ce.Write(zap.String("customer", customer), zap.String("key_id", id))
	}
	if wantsProblemJSON(r.Header.Values("Accept")) {
		return writeJSONBody(w, http.StatusOK, map[string]any{"id": id, "revoked": true})
	}
	http.Redirect(w, r, ret, http.StatusSeeOther)
	return nil
}

// keysChanged makes this instance, and the others through Redis when it is
// configured, read the customer's facts again; a revoked key also leaves
// the facts held at once, so that they cannot let it in while Stripe
// cannot be reached for fresh ones.
func (h *Handler) keysChanged(customer, revoked string) {
	if revoked == "" {
		h.invalidate(customer)
		return
	}
	h.keysRevoked(customer, []string{revoked})
}

// keysRevoked marks a customer's facts stale and drops revoked keys from
// them, here and, with Redis, on every instance.
func (h *Handler) keysRevoked(customer string, ids []string) {
	h.account.invalidate(customer)
	for _, id := range ids {
		h.account.forgetKey(customer, id)
	}
	if h.redis != nil {
		h.redis.invalidateKeys(customer, ids)
	}
}

// keysNotEntitled refuses to make a key for a visitor who does not pay:
// the usual 402, coming back to the keys page after checkout.
func (h *Handler) keysNotEntitled(w http.ResponseWriter, r *http.Request, reason string) error {
	ret := h.apiKeys.url
	d := denial{
		Status:      http.StatusPaymentRequired,
		Reason:      reason,
		ReturnPath:  ret,
		CheckoutURL: h.prefix + "/checkout?return=" + url.QueryEscape(ret),
		KeysURL:     ret,
		account:     h.login != nil,
	}
	if reason == reasonPaymentFailed {
		d.PortalURL = h.prefix + "/portal?return=" + url.QueryEscape(ret)
	}
	return h.writeDenial(w, r, d)
}

// keyWriteFailed answers a metadata write Stripe did not make.
func (h *Handler) keyWriteFailed(w http.ResponseWriter, r *http.Request, err error) error {
	ret := h.apiKeys.url
	var se *stripeError
	switch {
	case errors.Is(err, errStripeForbidden):
		h.logger.Error("api_keys: Stripe refused to write the customer's metadata; give the restricted key the permission Customers: write "+
			"(Dashboard → Developers → API keys → edit the key)", zap.Error(err))
		return h.notice(w, r, http.StatusInternalServerError, reasonKeysPermission, ret, 0)
	case errors.As(err, &se) && se.status == http.StatusBadRequest && strings.HasPrefix(se.param, "metadata"):
		h.logger.Warn("api_keys: Stripe refused a key for the customer's metadata (50 entries at most, the operator's own included)", zap.Error(err))
		return h.notice(w, r, http.StatusConflict, reasonKeysFull, ret, 0)
	}
	return h.stripeFailed(w, r, ret, err)
}

// writeKeys answers the list of keys, and a key just made, as a page or as
// JSON.
func (h *Handler) writeKeys(w http.ResponseWriter, r *http.Request, status int, ring *keyRing, entitled bool, newKey string, rec keyRecord) error {
	lang := negotiateLanguage(r.Header.Values("Accept-Language"))
	views := make([]keyView, 0, ring.len())
	if ring != nil {
		for _, k := range ring.list {
			views = append(views, keyView{ID: k.ID, Name: k.Name, Created: k.Created, Last4: k.Last4,
				Date: time.Unix(k.Created, 0).UTC().Format("2006-01-02")})
		}
	}
	hdr := w.Header()
	hdr.Add("Vary", "Accept, Accept-Language")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if wantsProblemJSON(r.Header.Values("Accept")) {
		if newKey != "" {
			return writeJSONBody(w, status, map[string]any{"id": rec.ID, "key": newKey, "name": rec.Name, "created": rec.Created})
		}
		return writeJSONBody(w, status, map[string]any{"keys": views, "max": h.apiKeys.max, "entitled": entitled})
	}
	strs := pageStrings[lang]
	data := keysPageData{
		Lang:        lang,
		Title:       strs["title_keys"],
		Detail:      strs["detail_keys"],
		Keys:        views,
		NewKey:      newKey,
		KeysURL:     h.apiKeys.url,
		ReturnPath:  "/",
		Entitled:    entitled,
		AtMax:       len(views) >= h.apiKeys.max,
		Max:         h.apiKeys.max,
		CheckoutURL: h.prefix + "/checkout?return=" + url.QueryEscape(h.apiKeys.url),
		SupportURL:  h.supportURL,
		Status:      status,
		SiteName:    h.site.name,
		Logo:        h.site.logo,
		T:           filled(strs, "{max}", strconv.Itoa(h.apiKeys.max)),
	}
	if newKey != "" {
		data.Title, data.Detail = strs["title_key_created"], strs["detail_key_created"]
	}
	var buf bytes.Buffer
	if err := keysPage.Execute(&buf, data); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Language", lang)
	hdr.Set("Content-Security-Policy", h.builtinCSP())
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

func writeJSONBody(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	b = append(b, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}

// forgetKey drops a revoked key from a customer's facts held here.
func (a *account) forgetKey(customer, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.customers[customer]
	if old == nil || old.keys.find(id) == nil {
		return
	}
	ring := &keyRing{list: slices.DeleteFunc(slices.Clone(old.keys.list), func(k keyRecord) bool { return k.ID == id })}
	e := &customerEntry{subs: old.subs, keys: ring, fetched: old.fetched, stale: old.stale, invalidated: old.invalidated, readEpoch: old.readEpoch, source: old.source}
	e.used.Store(old.used.Load())
	a.customers[customer] = e
}
