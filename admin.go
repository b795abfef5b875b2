package paywall

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is the admin API module `admin.api.paywall`: an operator's view
// of the paywall, on Caddy's admin endpoint only (never on a site). Caddy
// loads every admin.api module by itself; there is nothing to configure.
//
// Endpoint | What it answers
// ---------|----------------
// `GET /paywall/customers/<cus_id>` | what this instance holds in memory about a customer, per Stripe account: the subscriptions, how old the facts are, where they came from, whether a webhook said they changed, and for each paywall of the account whether the customer is entitled and why. It reads nothing from Stripe, unless `?refresh=1` is given (then as the POST below). 404 when no account on this instance holds the customer.
// `POST /paywall/customers/<cus_id>/refresh` | reads the customer from Stripe now, for every account, marks the facts changed on every instance (through Redis when configured), then answers as the GET. 503 when Stripe cannot be reached (or is in the back-off after a failure), 502 when it refuses; the error names the account by the last four characters of its key.
// `GET /paywall/stats` | per account: customers cached, Stripe reads and failed reads, whether Stripe is in the back-off after a failure, and its Redis links: URL (without password), prefix, state (`up`, `down`, `not used yet`), whether it listens for invalidations, and invalidations waiting to be published. No customer IDs.
//
// An account is named `…` and the last four characters of its Stripe key;
// no answer holds a key, a secret or a password. Customer IDs appear only
// in the customer endpoints' answers, which the operator asked for by ID.
// Caddy itself logs the URI of every admin request at info level (logger
// `admin.api`), the customer ID of these endpoints with it.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.paywall",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

const (
	adminCustomersPath = "/paywall/customers/"
	adminStatsPath     = "/paywall/stats"
)

// Routes returns the routes of the paywall's admin endpoints.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: adminStatsPath, Handler: caddy.AdminHandlerFunc(handleAdminStats)},
		{Pattern: adminCustomersPath, Handler: caddy.AdminHandlerFunc(handleAdminCustomer)},
	}
}

// adminCustomer is the answer of the customer endpoints.
type adminCustomer struct {
	Customer string                 `json:"customer"`
	Accounts []adminCustomerAccount `json:"accounts"`
}

// adminCustomerAccount is what one account of this instance holds about
// the customer.
type adminCustomerAccount struct {
	Account string `json:"account"`           // "…4242"
	APIURL  string `json:"api_url,omitempty"` // api_url, when not Stripe's own
	HeldIn  string `json:"held_in"`           // "memory": this instance's cache
	Source  string `json:"source"`            // "stripe" or "redis": where this instance got the facts
	// ReadAt is when Stripe was read, by this instance or another;
	// AgeSeconds is how long ago, by this instance's clock.
	ReadAt        string              `json:"read_at,omitempty"`
	AgeSeconds    int64               `json:"age_seconds"`
	Stale         bool                `json:"stale"` // a webhook or another instance said the customer changed
	Subscriptions []adminSubscription `json:"subscriptions"`
	Gates         []adminGate         `json:"gates"`
}

type adminSubscription struct {
	Status                 string   `json:"status"`
	Prices                 []string `json:"prices"`
	Products               []string `json:"products"`
	PeriodStart            string   `json:"period_start,omitempty"`
	TrialEnd               string   `json:"trial_end,omitempty"`
	EndedAt                string   `json:"ended_at,omitempty"`
	CancelAtPeriodEnd      bool     `json:"cancel_at_period_end"`
	FirstPaymentProcessing bool     `json:"first_payment_processing,omitempty"`
}

// adminGate is one paywall (handler) of the account and its decision for
// the customer now, from the facts held.
type adminGate struct {
	EndpointPrefix string   `json:"endpoint_prefix"`
	Prices         []string `json:"prices"`
	Products       []string `json:"products"`
	Entitled       bool     `json:"entitled"`
	Reason         string   `json:"reason"`
}

// adminStats is the answer of /paywall/stats.
type adminStats struct {
	Accounts []adminAccountStats `json:"accounts"`
}

type adminAccountStats struct {
	Account         string            `json:"account"`
	APIURL          string            `json:"api_url,omitempty"`
	CustomersCached int               `json:"customers_cached"`
	StripeReads     uint64            `json:"stripe_reads"`
	StripeErrors    uint64            `json:"stripe_errors"`
	StripeBackoff   bool              `json:"stripe_backoff"` // Stripe failed within the outage back-off: it is not asked
	Redis           []adminRedisStats `json:"redis"`
}

type adminRedisStats struct {
	URL                  string `json:"url"` // without its password
	Prefix               string `json:"prefix"`
	State                string `json:"state"` // "up", "down" or "not used yet"
	Listening            bool   `json:"listening"`
	PendingInvalidations int    `json:"pending_invalidations"`
}

// adminAccount is an account of the pool with what names it.
type adminAccount struct {
	*account
	name     string // "…" and the key's last four characters
	apiURL   string // api_url without user information; "" for Stripe's own
	handlers []*Handler
}

// adminAccounts lists the accounts of this instance, in the order of their
// names. The pool is locked while it is walked: nothing here calls out.
func adminAccounts() []adminAccount {
	var out []adminAccount
	accounts.Range(func(_, val any) bool {
		a, ok := val.(*account)
		if !ok {
			return true
		}
		v := adminAccount{account: a, name: "…" + a.keyHint, handlers: a.handlersSnapshot()}
		slices.SortFunc(v.handlers, func(x, y *Handler) int {
			return cmp.Or(strings.Compare(x.prefix, y.prefix),
				slices.Compare(x.prices, y.prices), slices.Compare(x.products, y.products))
		})
		if len(v.handlers) > 0 {
			v.apiURL = redactedURL(v.handlers[0].apiURL)
		}
		out = append(out, v)
		return true
	})
	slices.SortFunc(out, func(x, y adminAccount) int {
		return cmp.Or(strings.Compare(x.name, y.name), strings.Compare(x.apiURL, y.apiURL))
	})
	return out
}

func handleAdminStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, http.MethodGet)
	}
	t := now().UnixNano()
	stats := adminStats{Accounts: []adminAccountStats{}}
	for _, a := range adminAccounts() {
		s := adminAccountStats{
			Account:         a.name,
			APIURL:          a.apiURL,
			CustomersCached: a.len(),
			StripeReads:     a.stripeReads.Load(),
			StripeErrors:    a.stripeErrors.Load(),
			StripeBackoff:   a.down(t),
			Redis:           []adminRedisStats{},
		}
		for _, l := range a.linksSnapshot() {
			s.Redis = append(s.Redis, adminRedisStats{
				URL:                  l.where,
				Prefix:               l.prefix,
				State:                redisState(l),
				Listening:            l.listening.Load(),
				PendingInvalidations: l.pendingCount(),
			})
		}
		slices.SortFunc(s.Redis, func(x, y adminRedisStats) int {
			return cmp.Or(strings.Compare(x.URL, y.URL), strings.Compare(x.Prefix, y.Prefix))
		})
		stats.Accounts = append(stats.Accounts, s)
	}
	return writeAdminJSON(w, stats)
}

// redisState says how a Redis link fares: "down" in an outage; "up" once
// it has subscribed to invalidations, or after an outage ended; "not used
// yet" before its first use (a link that never subscribed nor failed). A
// link used with success whose listener has not subscribed yet shows as
// not used, for the moment that takes.
func redisState(l *redisLink) string {
	switch {
	case l.out.Load():
		return "down"
	case l.listening.Load() || l.subscribed.Load() > 0 || l.downUntil.Load() != 0:
		return "up"
	default:
		return "not used yet"
	}
}

// redisRank orders Redis links for a refresh: up, then not used yet, then
// down, then none.
func redisRank(l *redisLink) int {
	if l == nil {
		return 0
	}
	switch redisState(l) {
	case "up":
		return 3
	case "not used yet":
		return 2
	}
	return 1
}

func handleAdminCustomer(w http.ResponseWriter, r *http.Request) error {
	id, action, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, adminCustomersPath), "/")
	var refresh bool
	switch action {
	case "":
		if strings.HasSuffix(r.URL.Path, "/") && id != "" {
			return adminNotFound() // …/<id>/
		}
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, http.MethodGet)
		}
		switch r.URL.Query().Get("refresh") {
		case "", "0", "false":
		case "1", "true":
			refresh = true
		default:
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("refresh must be 1 (read Stripe now) or left out")}
		}
	case "refresh":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, http.MethodPost)
		}
		refresh = true
	default:
		return adminNotFound()
	}
	// The error names no customer: Caddy logs it at error level.
	if !validCustomerID(id) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("not a Stripe customer ID (cus_ followed by letters, digits and underscores)")}
	}
	if refresh {
		if err := refreshAdminCustomer(w, id); err != nil {
			return err
		}
	}
	answer := adminCustomer{Customer: id, Accounts: []adminCustomerAccount{}}
	t := now()
	for _, a := range adminAccounts() {
		if e := a.peek(id); e != nil {
			answer.Accounts = append(answer.Accounts, a.customerView(e, t))
		}
	}
	if len(answer.Accounts) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no account on this instance holds this customer in memory; " +
			"POST " + adminCustomersPath + "<id>/refresh reads it from Stripe")}
	}
	return writeAdminJSON(w, answer)
}

// customerView is what the account holds about a customer, and what each
// of its paywalls decides from it at t.
func (a adminAccount) customerView(e *customerEntry, t time.Time) adminCustomerAccount {
	v := adminCustomerAccount{
		Account:       a.name,
		APIURL:        a.apiURL,
		HeldIn:        "memory",
		Source:        "stripe",
		Stale:         e.stale,
		Subscriptions: []adminSubscription{},
		Gates:         []adminGate{},
	}
	if e.source == fromRedis {
		v.Source = "redis"
	}
	if e.fetched > 0 {
		v.ReadAt = time.Unix(0, e.fetched).UTC().Format(time.RFC3339)
		v.AgeSeconds = max(0, (t.UnixNano()-e.fetched)/int64(time.Second))
	}
	for _, s := range e.subs {
		sub := adminSubscription{
			Status:                 s.Status,
			Prices:                 []string{},
			Products:               []string{},
			PeriodStart:            unixTime(s.PeriodStart),
			TrialEnd:               unixTime(s.TrialEnd),
			EndedAt:                unixTime(s.EndedAt),
			CancelAtPeriodEnd:      s.CancelAtPeriodEnd,
			FirstPaymentProcessing: s.FirstPaymentProcessing,
		}
		for _, it := range s.Items {
			if it.Price != "" && !slices.Contains(sub.Prices, it.Price) {
				sub.Prices = append(sub.Prices, it.Price)
			}
			if it.Product != "" && !slices.Contains(sub.Products, it.Product) {
				sub.Products = append(sub.Products, it.Product)
			}
		}
		v.Subscriptions = append(v.Subscriptions, sub)
	}
	for _, h := range a.handlers {
		entitled, reason := h.entitlement(e.subs, t)
		g := adminGate{
			EndpointPrefix: h.prefix,
			Prices:         append([]string{}, h.prices...),
			Products:       append([]string{}, h.products...),
			Entitled:       entitled,
			Reason:         reason,
		}
		// The same paywall in several routes or sites is one line.
		if !slices.ContainsFunc(v.Gates, func(o adminGate) bool {
			return o.EndpointPrefix == g.EndpointPrefix && o.Entitled == g.Entitled && o.Reason == g.Reason &&
				slices.Equal(o.Prices, g.Prices) && slices.Equal(o.Products, g.Products)
		}) {
			v.Gates = append(v.Gates, g)
		}
	}
	return v
}

// unixTime is a Stripe timestamp in RFC 3339; "" for none.
func unixTime(s int64) string {
	if s <= 0 {
		return ""
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

// refreshAdminCustomer reads the customer from Stripe now for every
// account, through one of its handlers, and marks the facts changed on
// every instance: through each Redis the account's handlers name. It tries
// every account before it reports the failures.
func refreshAdminCustomer(w http.ResponseWriter, customer string) error {
	var failed []string
	status := http.StatusBadGateway
	var retryAfter time.Duration
	for _, a := range adminAccounts() {
		if len(a.handlers) == 0 {
			continue
		}
		// The handler that reads is one whose Redis fares best, when
		// there is one, so that the read is shared; the other Redis
		// links only publish the invalidation.
		h := a.handlers[0]
		for _, o := range a.handlers {
			if redisRank(o.redis) > redisRank(h.redis) {
				h = o
			}
		}
		published := []*redisLink{h.redis}
		for _, o := range a.handlers {
			if o.redis != nil && !slices.Contains(published, o.redis) {
				published = append(published, o.redis)
				o.redis.invalidate(customer)
			}
		}
		_, err := h.refreshCustomer(customer, false)
		if err == nil {
			continue
		}
		if errors.Is(err, errStripeUnavailable) {
			status = http.StatusServiceUnavailable
			if d := time.Duration(a.downUntil.Load() - now().UnixNano()); d > retryAfter {
				retryAfter = d
			}
		}
		// stripeError's text holds no key and no customer ID; the key is
		// taken out all the same, should an error ever quote it.
		msg := err.Error()
		if h.secretKey != "" {
			msg = strings.ReplaceAll(msg, h.secretKey, "…"+a.keyHint)
		}
		failed = append(failed, "account "+a.name+": "+msg)
	}
	if len(failed) == 0 {
		return nil
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((retryAfter+time.Second-1)/time.Second))))
	}
	return caddy.APIError{
		HTTPStatus: status,
		Err:        fmt.Errorf("reading the customer from Stripe failed for %s", strings.Join(failed, "; ")),
	}
}

func adminNotFound() error {
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("not a paywall admin endpoint; see " +
		adminStatsPath + ", " + adminCustomersPath + "<id> and " + adminCustomersPath + "<id>/refresh")}
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed; use " + allow)}
}

// writeAdminJSON answers v, encoded before the status is sent, so that a
// failure can still answer 500.
func writeAdminJSON(w http.ResponseWriter, v any) error {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n')) // a client that left needs no error answer
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
