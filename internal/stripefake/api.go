package stripefake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// sdkAPIVersion is the API version whose response shapes the fake renders.
const sdkAPIVersion = "2023-10-16"

// apiFunc handles one API route. It returns the HTTP status and a JSON body
// (a map[string]any for objects, so expand[] can rewrite it).
type apiFunc func(r *http.Request) (int, any)

func (s *Server) routes() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/subscriptions", s.api(s.listSubscriptions))
	api.HandleFunc("GET /v1/subscriptions/{id}", s.api(s.getSubscription))
	api.HandleFunc("POST /v1/subscriptions/{id}", s.api(s.updateSubscription))
	api.HandleFunc("DELETE /v1/subscriptions/{id}", s.api(s.deleteSubscription))
	api.HandleFunc("GET /v1/customers", s.api(s.listCustomers))
	api.HandleFunc("POST /v1/customers", s.api(s.postCustomer))
	api.HandleFunc("GET /v1/customers/search", s.api(s.searchCustomers))
	api.HandleFunc("GET /v1/customers/{id}", s.api(s.getCustomer))
	api.HandleFunc("POST /v1/customers/{id}", s.api(s.updateCustomer))
	api.HandleFunc("GET /v1/prices", s.api(s.listPrices))
	api.HandleFunc("GET /v1/prices/{id}", s.api(s.getByID("price")))
	api.HandleFunc("GET /v1/products/{id}", s.api(s.getByID("product")))
	api.HandleFunc("GET /v1/invoices/{id}", s.api(s.getByID("invoice")))
	api.HandleFunc("POST /v1/checkout/sessions", s.api(s.postCheckoutSession))
	api.HandleFunc("GET /v1/checkout/sessions/{id}", s.api(s.getCheckoutSession))
	api.HandleFunc("POST /v1/checkout/sessions/{id}/expire", s.api(s.expireCheckoutSession))
	api.HandleFunc("POST /v1/billing_portal/sessions", s.api(s.postPortalSession))
	api.HandleFunc("/v1/", s.api(func(r *http.Request) (int, any) {
		return stripeErr(http.StatusNotFound, "invalid_request_error", "", "",
			fmt.Sprintf("Unrecognized request URL (%s: %s). stripefake implements only what the paywall uses.", r.Method, r.URL.Path))
	}))

	mux := http.NewServeMux()
	mux.Handle("/v1/", s.apiGate(api))
	mux.HandleFunc("GET /c/pay/{id}", s.checkoutPage)
	mux.HandleFunc("POST /c/pay/{id}", s.checkoutSubmit)
	mux.HandleFunc("GET /p/session/{id}", s.portalPage)
	mux.HandleFunc("POST /p/session/{id}", s.portalSubmit)
	mux.HandleFunc("GET /mail/{id}", s.mailPage)
	mux.HandleFunc("GET /{$}", s.indexPage)
	return mux
}

// stripeErr builds a Stripe error response.
func stripeErr(status int, typ, code, param, msg string) (int, any) {
	e := map[string]any{"type": typ, "message": msg}
	if code != "" {
		e["code"] = code
	}
	if param != "" {
		e["param"] = param
	}
	return status, map[string]any{"error": e}
}

func missing(kind, id, param string, status int) (int, any) {
	return stripeErr(status, "invalid_request_error", "resource_missing", param,
		fmt.Sprintf("No such %s: '%s'", kind, id))
}

func badParam(param, msg string) (int, any) {
	return stripeErr(http.StatusBadRequest, "invalid_request_error", "parameter_invalid", param, msg)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("stripefake: marshal: %v", err))
	}
	return b
}

var idPrefixes = []string{"cus_", "sub_", "cs_", "bps_", "price_", "prod_", "in_", "si_", "evt_", "we_",
	"pi_", "ch_", "pm_", "seti_", "ii_", "txn_", "re_", "card_", "src_", "promo_", "tok_"}

var genericID = regexp.MustCompile(`^[a-z]+_(test_|live_)?[A-Za-z0-9]{8,}$`)

// normalisePath replaces object ids in an API path with {id}.
func normalisePath(p string) string {
	parts := strings.Split(p, "/")
	for i, seg := range parts {
		if isObjectID(seg) {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

func isObjectID(seg string) bool {
	for _, pre := range idPrefixes {
		if strings.HasPrefix(seg, pre) && len(seg) > len(pre) {
			return true
		}
	}
	return genericID.MatchString(seg) && strings.ContainsAny(seg, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

var keyPrefixes = []string{"sk_test_", "sk_live_", "rk_test_", "rk_live_"}

func validKey(k string) bool {
	for _, pre := range keyPrefixes {
		if strings.HasPrefix(k, pre) && len(k) > len(pre) {
			return true
		}
	}
	return false
}

// maskKey shows a valid key the way Stripe's messages do: its prefix, then
// stars, then the last four characters, so a log never holds the key. A key
// too short to keep four characters hidden shows none of them.
func maskKey(k string) string {
	pre := ""
	for _, p := range keyPrefixes {
		if strings.HasPrefix(k, p) {
			pre = p
		}
	}
	rest := k[len(pre):]
	if len(rest) <= 4 {
		return pre + strings.Repeat("*", len(rest))
	}
	return pre + strings.Repeat("*", len(rest)-4) + rest[len(rest)-4:]
}

// accountID is the account named in messages that name one.
const accountID = "acct_stripefake"

func apiKey(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	}
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	return ""
}

// apiGate counts the call and applies latency, outage and authentication
// before routing.
func (s *Server) apiGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + normalisePath(r.URL.Path)
		s.mu.Lock()
		s.calls[key]++
		latency := s.latency
		s.mu.Unlock()
		w.Header().Set("Request-Id", newID("req_", 14))
		w.Header().Set("Stripe-Version", sdkAPIVersion)

		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.closed:
				t.Stop()
				s.writeErr(w, http.StatusServiceUnavailable, "api_error", "stripefake: server closed")
				return
			}
		}
		s.mu.Lock()
		outage := s.outage
		if o, ok := s.outageFor[key]; ok {
			outage = o
		}
		permission := s.forbidden[key]
		s.mu.Unlock()
		switch outage {
		case OutageHang:
			select {
			case <-r.Context().Done():
			case <-s.closed:
			}
			s.writeErr(w, http.StatusServiceUnavailable, "api_error", "stripefake: simulated hang ended")
			return
		case OutageErrors:
			s.writeErr(w, http.StatusInternalServerError, "api_error", "stripefake: simulated outage")
			return
		case OutageRateLimit:
			status, body := stripeErr(http.StatusTooManyRequests, "invalid_request_error", "rate_limit", "",
				"Request rate limit exceeded. (stripefake: simulated)")
			writeJSON(w, status, mustJSON(body))
			return
		}
		k := apiKey(r)
		if k == "" {
			s.writeErr(w, http.StatusUnauthorized, "invalid_request_error",
				"You did not provide an API key. Provide it in the Authorization header, using Bearer auth.")
			return
		}
		if !validKey(k) {
			masked := k
			if len(masked) > 4 {
				masked = strings.Repeat("*", len(k)-4) + k[len(k)-4:]
			}
			s.writeErr(w, http.StatusUnauthorized, "invalid_request_error", "Invalid API Key provided: "+masked)
			return
		}
		// Stripe authenticates first, then checks a restricted key's
		// permissions; the message names the permission and masks the key.
		if permission != "" {
			s.writeErr(w, http.StatusForbidden, "invalid_request_error", fmt.Sprintf(
				"The provided key '%s' does not have the required permissions for this endpoint on account '%s'. "+
					"Having the '%s' permission would allow this request to continue.", maskKey(k), accountID, permission))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) writeErr(w http.ResponseWriter, status int, typ, msg string) {
	_, body := stripeErr(status, typ, "", "", msg)
	writeJSON(w, status, mustJSON(body))
}

// api adapts an apiFunc: it parses the form, applies Idempotency-Key replay
// on POST, applies expand[] and writes the JSON.
func (s *Server) api(fn apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			status, body := badParam("", "Invalid request body: "+err.Error())
			writeJSON(w, status, mustJSON(body))
			return
		}
		var idemKey, fingerprint string
		if r.Method == http.MethodPost {
			if k := r.Header.Get("Idempotency-Key"); k != "" {
				idemKey = apiKey(r) + "|" + r.URL.Path + "|" + k
				sum := sha256.Sum256([]byte(r.Form.Encode()))
				fingerprint = hex.EncodeToString(sum[:])
				s.mu.Lock()
				prev, ok := s.idem[idemKey]
				s.mu.Unlock()
				if ok {
					if prev.fingerprint != fingerprint {
						status, body := stripeErr(http.StatusBadRequest, "idempotency_error", "", "",
							"Keys for idempotent requests can only be used with the same parameters they were first used with.")
						writeJSON(w, status, mustJSON(body))
						return
					}
					w.Header().Set("Idempotent-Replayed", "true")
					writeJSON(w, prev.status, prev.body)
					return
				}
			}
		}
		status, body := fn(r)
		if obj, ok := body.(map[string]any); ok && status < 300 {
			if paths := expandParams(r.Form); len(paths) > 0 {
				s.mu.Lock()
				for _, p := range paths {
					s.expandLocked(obj, strings.Split(p, "."))
				}
				s.mu.Unlock()
			}
		}
		raw := mustJSON(body)
		if idemKey != "" && status < 500 {
			s.mu.Lock()
			s.idem[idemKey] = idemEntry{fingerprint: fingerprint, status: status, body: raw}
			s.mu.Unlock()
		}
		writeJSON(w, status, raw)
	}
}

var expandKey = regexp.MustCompile(`^expand(\[\d*\])?$`)

func expandParams(f url.Values) []string {
	var out []string
	for k, vs := range f {
		if expandKey.MatchString(k) {
			out = append(out, vs...)
		}
	}
	sort.Strings(out)
	return out
}

// expandLocked replaces the id at path inside v with the full object, and
// every id on the way there, as Stripe does: data.latest_invoice.payment_intent
// expands each subscription's latest invoice and that invoice's PaymentIntent.
func (s *Server) expandLocked(v any, path []string) {
	if len(path) == 0 {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		child, ok := t[path[0]]
		if !ok {
			return
		}
		if id, ok := child.(string); ok {
			o := s.objectLocked(id)
			if o == nil {
				return
			}
			t[path[0]] = o
			child = o
		}
		s.expandLocked(child, path[1:])
	case []any:
		for _, e := range t {
			s.expandLocked(e, path)
		}
	}
}

// Object returns the JSON the API would answer for an object id (cus_,
// sub_, cs_, bps_, price_, prod_, in_, pi_), for use with SendEvent.
func (s *Server) Object(id string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objectLocked(id)
	if o == nil {
		return nil, false
	}
	return mustJSON(o), true
}

func (s *Server) objectLocked(id string) map[string]any {
	switch {
	case strings.HasPrefix(id, "cus_"):
		if c, ok := s.customers[id]; ok {
			return s.customerJSONLocked(c)
		}
	case strings.HasPrefix(id, "sub_"):
		if sub, ok := s.subs[id]; ok {
			return s.subJSONLocked(sub)
		}
	case strings.HasPrefix(id, "cs_"):
		if cs, ok := s.sessions[id]; ok {
			return s.sessionJSONLocked(cs)
		}
	case strings.HasPrefix(id, "bps_"):
		if ps, ok := s.portals[id]; ok {
			return portalJSON(ps)
		}
	case strings.HasPrefix(id, "price_"):
		if p, ok := s.prices[id]; ok {
			return priceJSON(p)
		}
	case strings.HasPrefix(id, "prod_"):
		if p, ok := s.prices[s.defaults[id]]; ok {
			return productJSON(p)
		}
		for _, pid := range s.priceIDs {
			if p := s.prices[pid]; p.Product == id {
				return productJSON(p)
			}
		}
	case strings.HasPrefix(id, "in_"):
		if inv, ok := s.invoices[id]; ok {
			return s.invoiceJSONLocked(inv)
		}
	case strings.HasPrefix(id, "pi_"):
		if pi, ok := s.intents[id]; ok {
			return paymentIntentJSON(pi)
		}
	}
	return nil
}

// ---------------------------------------------------------------- rendering

func unixOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

func strOrNil(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func metaJSON(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func priceJSON(p *Price) map[string]any {
	return map[string]any{
		"id":             p.ID,
		"object":         "price",
		"active":         true,
		"billing_scheme": "per_unit",
		"created":        0,
		"currency":       p.Currency,
		"livemode":       false,
		"lookup_key":     nil,
		"metadata":       map[string]any{},
		"nickname":       nil,
		"product":        p.Product,
		"recurring": map[string]any{
			"interval":       p.Interval,
			"interval_count": 1,
			"usage_type":     "licensed",
		},
		"type":                "recurring",
		"unit_amount":         p.UnitAmount,
		"unit_amount_decimal": strconv.FormatInt(p.UnitAmount, 10),
	}
}

func productJSON(p *Price) map[string]any {
	return map[string]any{
		"id":            p.Product,
		"object":        "product",
		"active":        true,
		"name":          p.ProductName,
		"livemode":      false,
		"metadata":      map[string]any{},
		"default_price": p.ID,
	}
}

func (s *Server) customerJSONLocked(c *Customer) map[string]any {
	return map[string]any{
		"id":          c.ID,
		"object":      "customer",
		"created":     c.Created.Unix(),
		"email":       strOrNil(c.Email),
		"name":        strOrNil(c.Name),
		"description": nil,
		"delinquent":  false,
		"livemode":    false,
		"metadata":    metaJSON(c.Metadata),
	}
}

func (s *Server) subJSONLocked(sub *Subscription) map[string]any {
	var price map[string]any
	currency := "usd"
	if p, ok := s.prices[sub.Price]; ok {
		price = priceJSON(p)
		currency = p.Currency
	} else {
		price = map[string]any{"id": sub.Price, "object": "price"}
	}
	var cancelAt any
	if sub.CancelAtPeriodEnd {
		cancelAt = sub.CurrentPeriodEnd.Unix()
	}
	return map[string]any{
		"id":                   sub.ID,
		"object":               "subscription",
		"billing_cycle_anchor": sub.CurrentPeriodStart.Unix(),
		"cancel_at":            cancelAt,
		"cancel_at_period_end": sub.CancelAtPeriodEnd,
		"canceled_at":          unixOrNil(sub.CanceledAt),
		"collection_method":    "charge_automatically",
		"created":              sub.Created.Unix(),
		"currency":             currency,
		"current_period_end":   sub.CurrentPeriodEnd.Unix(),
		"current_period_start": sub.CurrentPeriodStart.Unix(),
		"customer":             sub.Customer,
		"ended_at":             unixOrNil(sub.EndedAt),
		"items": map[string]any{
			"object": "list",
			"data": []any{map[string]any{
				"id":           sub.ItemID,
				"object":       "subscription_item",
				"created":      sub.Created.Unix(),
				"metadata":     map[string]any{},
				"price":        price,
				"quantity":     sub.Quantity,
				"subscription": sub.ID,
			}},
			"has_more":    false,
			"total_count": 1,
			"url":         "/v1/subscription_items?subscription=" + sub.ID,
		},
		"latest_invoice": strOrNil(sub.LatestInvoice),
		"livemode":       false,
		"metadata":       metaJSON(sub.Metadata),
		"quantity":       sub.Quantity,
		"start_date":     sub.Created.Unix(),
		"status":         sub.Status,
		"trial_end":      unixOrNil(sub.TrialEnd),
		"trial_start":    unixOrNil(sub.TrialStart),
	}
}

func (s *Server) sessionJSONLocked(cs *CheckoutSession) map[string]any {
	var amount int64
	currency := "usd"
	if p, ok := s.prices[cs.Price]; ok {
		amount, currency = p.UnitAmount*cs.Quantity, p.Currency
	}
	if cs.TrialPeriodDays > 0 {
		amount = 0
	}
	var details any
	if c, ok := s.customers[cs.Customer]; ok && cs.Status == "complete" {
		details = map[string]any{"email": strOrNil(c.Email), "name": strOrNil(c.Name)}
	}
	var u any
	if cs.Status == "open" {
		u = cs.URL
	}
	return map[string]any{
		"id":                    cs.ID,
		"object":                "checkout.session",
		"allow_promotion_codes": cs.AllowPromotionCodes,
		"amount_subtotal":       amount,
		"amount_total":          amount,
		"cancel_url":            strOrNil(cs.CancelURL),
		"client_reference_id":   strOrNil(cs.ClientReferenceID),
		"created":               cs.Created.Unix(),
		"currency":              currency,
		"customer":              strOrNil(cs.Customer),
		"customer_details":      details,
		"customer_email":        strOrNil(cs.CustomerEmail),
		"expires_at":            cs.ExpiresAt.Unix(),
		"invoice":               nil,
		"livemode":              false,
		"metadata":              metaJSON(cs.Metadata),
		"mode":                  cs.Mode,
		"payment_method_types":  []any{"card"},
		"payment_status":        cs.PaymentStatus,
		"status":                cs.Status,
		"subscription":          strOrNil(cs.Subscription),
		"success_url":           cs.SuccessURL,
		"ui_mode":               "hosted",
		"url":                   u,
	}
}

func portalJSON(ps *PortalSession) map[string]any {
	return map[string]any{
		"id":            ps.ID,
		"object":        "billing_portal.session",
		"created":       ps.Created.Unix(),
		"customer":      ps.Customer,
		"livemode":      false,
		"locale":        nil,
		"on_behalf_of":  nil,
		"configuration": "bpc_stripefake",
		"return_url":    strOrNil(ps.ReturnURL),
		"url":           ps.URL,
	}
}

func (s *Server) invoiceJSONLocked(inv *invoice) map[string]any {
	paid := inv.Status == "paid"
	amountPaid := int64(0)
	if paid {
		amountPaid = inv.Amount
	}
	return map[string]any{
		"id":               inv.ID,
		"object":           "invoice",
		"amount_due":       inv.Amount,
		"amount_paid":      amountPaid,
		"amount_remaining": inv.Amount - amountPaid,
		"attempt_count":    1,
		"attempted":        true,
		"billing_reason":   inv.Reason,
		"created":          inv.Created.Unix(),
		"currency":         inv.Currency,
		"customer":         inv.Customer,
		"livemode":         false,
		"metadata":         map[string]any{},
		"paid":             paid,
		"payment_intent":   strOrNil(inv.PaymentIntent),
		"status":           inv.Status,
		"subscription":     inv.Subscription,
	}
}

func paymentIntentJSON(pi *paymentIntent) map[string]any {
	return map[string]any{
		"id":       pi.ID,
		"object":   "payment_intent",
		"amount":   pi.Amount,
		"created":  pi.Created.Unix(),
		"currency": pi.Currency,
		"customer": pi.Customer,
		"invoice":  pi.Invoice,
		"livemode": false,
		"metadata": map[string]any{},
		"status":   pi.Status,
	}
}

// ---------------------------------------------------------------- lists

// paginate renders a Stripe list of items (already newest first).
func paginate[T any](r *http.Request, listURL, kind string, items []T, id func(T) string, render func(T) map[string]any) (int, any) {
	limit := 10
	if v := r.Form.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return badParam("limit", "Invalid limit: must be an integer between 1 and 100.")
		}
		limit = n
	}
	indexOf := func(want string) int {
		for i, it := range items {
			if id(it) == want {
				return i
			}
		}
		return -1
	}
	lo, hi := 0, len(items)
	hasMore := false
	if after := r.Form.Get("starting_after"); after != "" {
		i := indexOf(after)
		if i < 0 {
			return missing(kind, after, "starting_after", http.StatusNotFound)
		}
		lo = i + 1
		if hi-lo > limit {
			hi, hasMore = lo+limit, true
		}
	} else if before := r.Form.Get("ending_before"); before != "" {
		i := indexOf(before)
		if i < 0 {
			return missing(kind, before, "ending_before", http.StatusNotFound)
		}
		hi = i
		if hi-lo > limit {
			lo, hasMore = hi-limit, true
		}
	} else if hi > limit {
		hi, hasMore = limit, true
	}
	data := make([]any, 0, hi-lo)
	for _, it := range items[lo:hi] {
		data = append(data, render(it))
	}
	return http.StatusOK, map[string]any{"object": "list", "url": listURL, "has_more": hasMore, "data": data}
}

// ---------------------------------------------------------------- handlers

func (s *Server) listSubscriptions(r *http.Request) (int, any) {
	f := r.Form
	s.mu.Lock()
	defer s.mu.Unlock()
	customer := f.Get("customer")
	if customer != "" {
		if _, ok := s.customers[customer]; !ok {
			return missing("customer", customer, "customer", http.StatusNotFound)
		}
	}
	status := f.Get("status")
	if status != "" && status != "all" && status != "ended" && !validStatuses[status] {
		return badParam("status", fmt.Sprintf("Invalid status: must be one of active, past_due, unpaid, canceled, incomplete, incomplete_expired, trialing, paused, all, or ended (got %q).", status))
	}
	price := f.Get("price")
	var items []*Subscription
	for _, sub := range s.sortedSubsLocked() {
		if customer != "" && sub.Customer != customer {
			continue
		}
		if price != "" && sub.Price != price {
			continue
		}
		switch status {
		case "":
			if sub.Status == "canceled" {
				continue
			}
		case "all":
		case "ended":
			if !ended(sub.Status) {
				continue
			}
		default:
			if sub.Status != status {
				continue
			}
		}
		items = append(items, sub)
	}
	return paginate(r, "/v1/subscriptions", "subscription", items,
		func(x *Subscription) string { return x.ID }, s.subJSONLocked)
}

func (s *Server) getSubscription(r *http.Request) (int, any) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return missing("subscription", id, "id", http.StatusNotFound)
	}
	return http.StatusOK, s.subJSONLocked(sub)
}

func (s *Server) updateSubscription(r *http.Request) (int, any) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return missing("subscription", id, "id", http.StatusNotFound)
	}
	if ended(sub.Status) {
		return badParam("", "A canceled subscription can only update its cancellation_details and metadata.")
	}
	// Every parameter is checked before anything changes, as a request
	// Stripe refuses changes nothing.
	md, msg := checkMetadata("subscription", sub.Metadata, metadataParams(r.Form))
	if msg != "" {
		return badParam("metadata", msg)
	}
	cancel, setCancel := false, false
	if v := r.Form.Get("cancel_at_period_end"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badParam("cancel_at_period_end", "Invalid boolean: "+v)
		}
		cancel, setCancel = b, true
	}
	sub.Metadata = md
	if setCancel {
		_ = s.setCancelAtPeriodEndLocked(id, cancel) // emits customer.subscription.updated
	} else {
		s.emitLocked("customer.subscription.updated", s.subJSONLocked(sub))
	}
	return http.StatusOK, s.subJSONLocked(sub)
}

func (s *Server) deleteSubscription(r *http.Request) (int, any) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return missing("subscription", id, "id", http.StatusNotFound)
	}
	if err := s.cancelLocked(id); err != nil {
		return badParam("", "This subscription has already ended.")
	}
	return http.StatusOK, s.subJSONLocked(sub)
}

func (s *Server) sortedCustomersLocked() []*Customer {
	out := make([]*Customer, 0, len(s.customers))
	for _, c := range s.customers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq > out[j].seq })
	return out
}

func (s *Server) listCustomers(r *http.Request) (int, any) {
	email := r.Form.Get("email")
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*Customer
	for _, c := range s.sortedCustomersLocked() {
		if email == "" || c.Email == email {
			items = append(items, c)
		}
	}
	return paginate(r, "/v1/customers", "customer", items,
		func(c *Customer) string { return c.ID }, s.customerJSONLocked)
}

func metadataParams(f url.Values) map[string]string {
	md := map[string]string{}
	for k, vs := range f {
		if strings.HasPrefix(k, "metadata[") && strings.HasSuffix(k, "]") && len(vs) > 0 {
			md[k[len("metadata["):len(k)-1]] = vs[0]
		}
	}
	return md
}

// Stripe's limits on the metadata of one object.
const (
	maxMetadataKeys     = 50
	maxMetadataKeyLen   = 40
	maxMetadataValueLen = 500
)

// checkMetadata merges the metadata[…] a request sends into an object's
// (kind names it in the message) and applies Stripe's limits: the keys and
// values sent, and the number of keys the object would hold after the merge,
// so deleting a key makes room for another in the same request. It returns
// the merged metadata, or the message of the 400 Stripe answers.
func checkMetadata(kind string, old, changes map[string]string) (map[string]string, string) {
	for k := range changes {
		if utf8.RuneCountInString(k) > maxMetadataKeyLen {
			return nil, fmt.Sprintf("Invalid metadata: keys can be up to %d characters long.", maxMetadataKeyLen)
		}
	}
	for _, v := range changes {
		if utf8.RuneCountInString(v) > maxMetadataValueLen {
			return nil, fmt.Sprintf("Invalid metadata: values can be up to %d characters long.", maxMetadataValueLen)
		}
	}
	md := mergeMetadata(old, changes)
	if len(md) > maxMetadataKeys {
		return nil, fmt.Sprintf("Invalid metadata: metadata can have up to %d keys, but the %s would have %d keys.",
			maxMetadataKeys, kind, len(md))
	}
	return md, ""
}

func (s *Server) postCustomer(r *http.Request) (int, any) {
	md, msg := checkMetadata("customer", nil, metadataParams(r.Form))
	if msg != "" {
		return badParam("metadata", msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.createCustomerLocked(r.Form.Get("email"), r.Form.Get("name"), md)
	s.emitLocked("customer.created", s.customerJSONLocked(c))
	return http.StatusOK, s.customerJSONLocked(c)
}

func (s *Server) getCustomer(r *http.Request) (int, any) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.customers[id]
	if !ok {
		return missing("customer", id, "id", http.StatusNotFound)
	}
	return http.StatusOK, s.customerJSONLocked(c)
}

// updateCustomer changes email, name and metadata[…]; other parameters are
// ignored. An email or name sent empty clears it.
func (s *Server) updateCustomer(r *http.Request) (int, any) {
	id := r.PathValue("id")
	ch := customerChange{metadata: metadataParams(r.Form)}
	if _, ok := r.Form["email"]; ok {
		email := r.Form.Get("email")
		ch.email = &email
	}
	if _, ok := r.Form["name"]; ok {
		name := r.Form.Get("name")
		ch.name = &name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.customers[id]
	if !ok {
		return missing("customer", id, "id", http.StatusNotFound)
	}
	if _, msg := checkMetadata("customer", c.Metadata, ch.metadata); msg != "" {
		return badParam("metadata", msg)
	}
	s.updateCustomerLocked(c, ch)
	return http.StatusOK, s.customerJSONLocked(c)
}

func (s *Server) listPrices(r *http.Request) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := make([]*Price, 0, len(s.priceIDs))
	for i := len(s.priceIDs) - 1; i >= 0; i-- {
		items = append(items, s.prices[s.priceIDs[i]])
	}
	return paginate(r, "/v1/prices", "price", items, func(p *Price) string { return p.ID }, priceJSON)
}

func (s *Server) getByID(kind string) apiFunc {
	return func(r *http.Request) (int, any) {
		id := r.PathValue("id")
		s.mu.Lock()
		defer s.mu.Unlock()
		o := s.objectLocked(id)
		if o == nil || o["object"] != kind {
			return missing(kind, id, "id", http.StatusNotFound)
		}
		return http.StatusOK, o
	}
}

func validRedirectURL(raw string) bool {
	u, err := url.Parse(strings.ReplaceAll(raw, "{CHECKOUT_SESSION_ID}", "x"))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func (s *Server) postCheckoutSession(r *http.Request) (int, any) {
	f := r.Form
	mode := f.Get("mode")
	switch mode {
	case "":
		return badParam("mode", "Missing required param: mode.")
	case "subscription":
	default:
		return badParam("mode", fmt.Sprintf("stripefake supports only mode=subscription (got %q).", mode))
	}
	for k := range f {
		if strings.HasPrefix(k, "line_items[") && !strings.HasPrefix(k, "line_items[0]") {
			return badParam(k, "stripefake supports exactly one line item.")
		}
		if strings.HasPrefix(k, "line_items[0][price_data]") {
			return badParam(k, "stripefake does not support price_data; use a price id.")
		}
	}
	priceID := f.Get("line_items[0][price]")
	if priceID == "" {
		return badParam("line_items[0][price]", "Missing required param: line_items[0][price].")
	}
	qty := int64(1)
	if v := f.Get("line_items[0][quantity]"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return badParam("line_items[0][quantity]", "Invalid integer: "+v)
		}
		qty = n
	}
	successURL, cancelURL := f.Get("success_url"), f.Get("cancel_url")
	if successURL == "" {
		return badParam("success_url", "Missing required param: success_url.")
	}
	if !validRedirectURL(successURL) {
		return badParam("success_url", "Not a valid URL")
	}
	if cancelURL == "" {
		return badParam("cancel_url", "Missing required param: cancel_url.")
	}
	if !validRedirectURL(cancelURL) {
		return badParam("cancel_url", "Not a valid URL")
	}
	customer, email := f.Get("customer"), f.Get("customer_email")
	if customer != "" && email != "" {
		return badParam("customer", "You may only specify one of these parameters: customer, customer_email.")
	}
	ref := f.Get("client_reference_id")
	if len(ref) > 200 {
		return badParam("client_reference_id", "client_reference_id must be at most 200 characters.")
	}
	md, msg := checkMetadata("checkout session", nil, metadataParams(f))
	if msg != "" {
		return badParam("metadata", msg)
	}
	var trialDays int64
	if v := f.Get("subscription_data[trial_period_days]"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 730 {
			return badParam("subscription_data[trial_period_days]", "trial_period_days must be an integer between 1 and 730.")
		}
		trialDays = n
	}
	var promo bool
	if v := f.Get("allow_promotion_codes"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badParam("allow_promotion_codes", "Invalid boolean: "+v)
		}
		promo = b
	}
	now := s.now()
	expires := now.Add(s.opts.CheckoutTTL)
	if v := f.Get("expires_at"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return badParam("expires_at", "Invalid integer: "+v)
		}
		t := time.Unix(n, 0)
		if t.Before(now.Add(30*time.Minute)) || t.After(now.Add(24*time.Hour)) {
			return badParam("expires_at", "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.")
		}
		expires = t
	}
	base := s.baseURL(r)

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.prices[priceID]; !ok {
		return missing("price", priceID, "line_items[0][price]", http.StatusBadRequest)
	}
	if customer != "" {
		if _, ok := s.customers[customer]; !ok {
			return missing("customer", customer, "customer", http.StatusBadRequest)
		}
	}
	cs := &CheckoutSession{
		ID:                  newID("cs_test_", 56),
		Mode:                mode,
		Status:              "open",
		PaymentStatus:       "unpaid",
		Price:               priceID,
		Quantity:            qty,
		SuccessURL:          successURL,
		CancelURL:           cancelURL,
		ClientReferenceID:   ref,
		Customer:            customer,
		CustomerEmail:       email,
		TrialPeriodDays:     trialDays,
		AllowPromotionCodes: promo,
		Metadata:            md,
		Created:             now,
		ExpiresAt:           expires,
		seq:                 s.nextSeq(),
	}
	cs.URL = base + "/c/pay/" + cs.ID
	s.sessions[cs.ID] = cs
	return http.StatusOK, s.sessionJSONLocked(cs)
}

func (s *Server) getCheckoutSession(r *http.Request) (int, any) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[id]
	if !ok {
		return missing("checkout.session", id, "session", http.StatusNotFound)
	}
	s.expireIfDueLocked(cs)
	return http.StatusOK, s.sessionJSONLocked(cs)
}

func (s *Server) expireCheckoutSession(r *http.Request) (int, any) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[id]
	if !ok {
		return missing("checkout.session", id, "session", http.StatusNotFound)
	}
	s.expireIfDueLocked(cs)
	if cs.Status != "open" {
		return badParam("", fmt.Sprintf("Only Checkout Sessions with a status in [\"open\"] can be expired. This session has status %q.", cs.Status))
	}
	s.expireLocked(cs)
	return http.StatusOK, s.sessionJSONLocked(cs)
}

func (s *Server) postPortalSession(r *http.Request) (int, any) {
	customer := r.Form.Get("customer")
	if customer == "" {
		return badParam("customer", "Missing required param: customer.")
	}
	returnURL := r.Form.Get("return_url")
	if returnURL != "" && !validRedirectURL(returnURL) {
		return badParam("return_url", "Not a valid URL")
	}
	base := s.baseURL(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.customers[customer]; !ok {
		return missing("customer", customer, "customer", http.StatusNotFound)
	}
	ps := &PortalSession{ID: newID("bps_", 24), Customer: customer, ReturnURL: returnURL, Created: s.now()}
	ps.URL = base + "/p/session/" + ps.ID
	s.portals[ps.ID] = ps
	return http.StatusOK, portalJSON(ps)
}
