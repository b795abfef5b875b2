// Package stripefake is a small, stateful, offline stand-in for the parts of
// the Stripe API that the paywall uses: subscriptions, checkout sessions,
// billing-portal sessions and customers, plus the hosted checkout and portal
// pages a visitor clicks through, plus signed webhook deliveries.
//
// The same code serves Go tests (point stripe-go at it through
// stripe.BackendConfig.URL and drive it with the control methods on *Server)
// and the offline demo sandbox in cmd/stripe-sandbox.
//
// API requests are form encoded the way stripe-go v76 sends them; responses
// are shaped like Stripe's 2023-10-16 API. Every method on *Server is safe for
// concurrent use. All timestamps come from Options.Now.
//
// Control methods that set state directly (CreateCustomer, CreateSubscription,
// SetSubscription, AddPrice) send no webhooks. Methods that simulate what a
// visitor or Stripe's billing engine does (CompleteCheckout, CancelSubscription,
// FailRenewal, UpdatePaymentMethod, Renew, SetCancelAtPeriodEnd, ExpireCheckout,
// SettleFirstPayment) send the webhooks Stripe would send. UpdateCustomer sends customer.updated,
// as the API call does.
//
// Customer search lags writes the way Stripe's does when SetSearchLag is
// given a duration (see search.go).
package stripefake

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAPIVersion is the api_version stamped on webhook events when
// Options.APIVersion is empty. Real endpoints often run a newer version than
// the one stripe-go v76 pins (2023-10-16).
const DefaultAPIVersion = "2024-06-20"

// DefaultAddr is where cmd/stripe-sandbox listens by default.
const DefaultAddr = "127.0.0.1:12112"

// DefaultPrice is the demo price every Server starts with when Options.Prices
// is empty.
var DefaultPrice = Price{
	ID:          "price_demo_monthly",
	Product:     "prod_demo",
	ProductName: "Premium",
	UnitAmount:  500,
	Currency:    "usd",
	Interval:    "month",
}

// Test card numbers understood by the hosted checkout page and CompleteCheckout.
const (
	CardSuccess  = "4242424242424242"
	CardDeclined = "4000000000000002"
	// CardInsufficientFunds is declined with an insufficient-funds message.
	CardInsufficientFunds = "4000000000009995"
)

// Errors returned by the control API.
var (
	ErrCardDeclined = errors.New("stripefake: your card was declined")
	ErrNotFound     = errors.New("stripefake: no such object")
	ErrNotOpen      = errors.New("stripefake: checkout session is not open")
	ErrInvalidState = errors.New("stripefake: not allowed in the subscription's current status")
)

// Outage selects how API calls (paths under /v1/) misbehave. Hosted pages
// keep working in every mode.
type Outage string

const (
	// OutageNone: normal service ("" means the same).
	OutageNone Outage = "none"
	// OutageErrors: every API call answers 500 with an api_error body.
	OutageErrors Outage = "errors"
	// OutageHang: API calls block until the client's request context ends or
	// the Server is closed.
	OutageHang Outage = "hang"
	// OutageRateLimit: every API call answers 429 rate_limit (the SDK does not
	// retry these).
	OutageRateLimit Outage = "rate_limit"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Now is the clock for every timestamp. Default time.Now. It is called
	// with the Server's lock held, so it must not call the Server.
	Now func() time.Time
	// SignatureNow is the clock for the t= of Stripe-Signature headers.
	// Default Now. stripe-go's webhook package rejects signatures older than
	// 300 s by the real clock, so tests that move Now far into the past
	// may want time.Now here.
	SignatureNow func() time.Time
	// APIVersion is stamped on webhook events. Default DefaultAPIVersion.
	APIVersion string
	// Prices replaces the default price list (DefaultPrice).
	Prices []Price
	// Addr is the listen address used by Start. Default "127.0.0.1:0".
	Addr string
	// BaseURL is the public base URL written into checkout and portal
	// session URLs. Default: the URL Start listens on, or else the scheme
	// and Host of the API request that created the session.
	BaseURL string
	// CheckoutTTL is how long a checkout session stays open when the
	// request does not give expires_at. Default 24h.
	CheckoutTTL time.Duration
	// DefaultTrialDays is the trial length CreateSubscription uses for
	// status "trialing". Default 14.
	DefaultTrialDays int
	// WebhookAttempts is how many times a delivery is tried. Default 3.
	WebhookAttempts int
	// WebhookBackoff is the wait before the first retry; it doubles after
	// each failure. Default 50ms.
	WebhookBackoff time.Duration
	// WebhookTimeout is the client timeout of one delivery attempt.
	// Default 5s.
	WebhookTimeout time.Duration
	// Logf, when set, receives a line for each failed webhook attempt.
	Logf func(format string, args ...any)
	// OnDelivery, when set, is called after each delivery attempt, from the
	// delivering goroutine.
	OnDelivery func(Delivery)
	// MailpitURL, when set, is the base URL of a Mailpit instance (such as
	// http://127.0.0.1:8025). The index page then lists the newest mail it
	// caught, and /mail/{id} shows one message, with clickable links.
	MailpitURL string
}

// Price is a recurring price and its product.
type Price struct {
	ID          string // price_…
	Product     string // prod_…
	ProductName string
	UnitAmount  int64  // in the currency's minor unit (cents)
	Currency    string // lower case ISO code, default "usd"
	Interval    string // day, week, month (default) or year
}

// Customer is a stored customer.
type Customer struct {
	ID       string
	Email    string
	Name     string
	Created  time.Time
	Metadata map[string]string
	seq      int64
	// versions records email and metadata after each change, oldest
	// first, for search with a lag.
	versions []customerVersion
}

// Subscription is a stored subscription with one item. Zero times are
// rendered as JSON null.
type Subscription struct {
	ID                 string
	Customer           string
	Price              string
	ItemID             string // si_…
	Quantity           int64
	Status             string
	Created            time.Time
	CurrentPeriodStart time.Time
	CurrentPeriodEnd   time.Time
	CancelAtPeriodEnd  bool
	CanceledAt         time.Time
	EndedAt            time.Time
	TrialStart         time.Time
	TrialEnd           time.Time
	LatestInvoice      string // in_… or ""
	Metadata           map[string]string
	seq                int64
}

// CheckoutSession is a stored checkout session.
type CheckoutSession struct {
	ID                  string
	URL                 string // hosted page, <base>/c/pay/<id>
	Mode                string
	Status              string // open, complete, expired
	PaymentStatus       string // unpaid, paid, no_payment_required
	Price               string
	Quantity            int64
	SuccessURL          string
	CancelURL           string
	ClientReferenceID   string
	Customer            string
	CustomerEmail       string
	Subscription        string
	TrialPeriodDays     int64
	AllowPromotionCodes bool
	Metadata            map[string]string
	Created             time.Time
	ExpiresAt           time.Time
	seq                 int64
}

// PortalSession is a stored billing-portal session.
type PortalSession struct {
	ID        string
	URL       string // hosted page, <base>/p/session/<id>
	Customer  string
	ReturnURL string
	Created   time.Time
}

type invoice struct {
	ID            string
	Customer      string
	Subscription  string
	Status        string // paid, open
	Amount        int64
	Currency      string
	Reason        string
	Created       time.Time
	PaymentIntent string // pi_…, or "" for an invoice of nothing to pay
}

// paymentIntent is the payment of an invoice.
type paymentIntent struct {
	ID       string
	Customer string
	Invoice  string
	Status   string // succeeded, requires_payment_method, processing
	Amount   int64
	Currency string
	Created  time.Time
}

type idemEntry struct {
	fingerprint string
	status      int
	body        []byte
}

// Server is the fake. It is an http.Handler; Start serves it on loopback.
type Server struct {
	opts Options

	mu        sync.Mutex
	prices    map[string]*Price
	priceIDs  []string
	defaults  map[string]string // product → its default price, when set by UpdateProduct
	customers map[string]*Customer
	subs      map[string]*Subscription
	sessions  map[string]*CheckoutSession
	portals   map[string]*PortalSession
	invoices  map[string]*invoice
	intents   map[string]*paymentIntent
	seq       int64
	calls     map[string]int
	outage    Outage
	outageFor map[string]Outage // by call key; wins over outage
	forbidden map[string]string // by call key: the permission the key lacks
	latency   time.Duration
	searchLag time.Duration
	idem      map[string]idemEntry

	endpoints  []*endpoint
	events     []Event
	deliveries []Delivery
	pending    int
	idle       chan struct{} // closed while pending == 0
	isClosed   bool

	closed    chan struct{}
	closeOnce sync.Once
	ctx       context.Context // delivery context, cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // delivery workers and the listener goroutine
	client    *http.Client
	handler   http.Handler
	mailpit   *mailpitClient // nil without Options.MailpitURL

	httpSrv *http.Server
	url     string
	conns   atomic.Int64 // connections open to the listener of Start
}

// New returns a Server with the given options. It does not listen: call
// Start, or mount it in an httptest.Server (then call s.Close before the
// httptest.Server's Close, so hanging requests end).
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SignatureNow == nil {
		opts.SignatureNow = opts.Now
	}
	if opts.APIVersion == "" {
		opts.APIVersion = DefaultAPIVersion
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.CheckoutTTL <= 0 {
		opts.CheckoutTTL = 24 * time.Hour
	}
	if opts.DefaultTrialDays <= 0 {
		opts.DefaultTrialDays = 14
	}
	if opts.WebhookAttempts <= 0 {
		opts.WebhookAttempts = 3
	}
	if opts.WebhookBackoff <= 0 {
		opts.WebhookBackoff = 50 * time.Millisecond
	}
	if opts.WebhookTimeout <= 0 {
		opts.WebhookTimeout = 5 * time.Second
	}
	opts.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	s := &Server{
		opts:      opts,
		prices:    map[string]*Price{},
		customers: map[string]*Customer{},
		subs:      map[string]*Subscription{},
		sessions:  map[string]*CheckoutSession{},
		portals:   map[string]*PortalSession{},
		invoices:  map[string]*invoice{},
		intents:   map[string]*paymentIntent{},
		calls:     map[string]int{},
		outage:    OutageNone,
		idem:      map[string]idemEntry{},
		idle:      idle,
		closed:    make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
		client: &http.Client{
			Timeout: opts.WebhookTimeout,
			// Stripe treats redirects as failed deliveries.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	prices := opts.Prices
	if len(prices) == 0 {
		prices = []Price{DefaultPrice}
	}
	for _, p := range prices {
		s.AddPrice(p)
	}
	if opts.MailpitURL != "" {
		s.mailpit = newMailpitClient(opts.MailpitURL)
	}
	s.handler = s.routes()
	return s
}

// Start listens on Options.Addr (default 127.0.0.1:0) and serves in the
// background until Close.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ConnState: s.countConn}
	s.mu.Lock()
	if s.isClosed || s.httpSrv != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("stripefake: server closed or already started")
	}
	s.httpSrv = srv
	s.url = "http://" + ln.Addr().String()
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln)
	}()
	return nil
}

// countConn counts the connections open to the listener of Start.
func (s *Server) countConn(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.conns.Add(-1)
	}
}

// OpenConns returns how many connections are open to the listener of Start
// (none when the Server is mounted elsewhere). A client's close reaches the
// server a moment later: poll for a count to drop.
func (s *Server) OpenConns() int {
	return int(s.conns.Load())
}

// URL is the base URL: Options.BaseURL if set, else the address Start
// listens on, else "". Give it to stripe.BackendConfig.URL.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.BaseURL != "" {
		return s.opts.BaseURL
	}
	return s.url
}

// Close stops the listener (if started), ends hanging API calls, abandons
// pending webhook deliveries and waits for background goroutines.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		close(s.closed)
		srv := s.httpSrv
		s.mu.Unlock()
		s.cancel()
		if srv != nil {
			_ = srv.Close()
		}
		s.wg.Wait()
		s.client.CloseIdleConnections()
	})
}

// ServeHTTP serves the API (/v1/…), the hosted pages and an index page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) nextSeq() int64 {
	s.seq++
	return s.seq
}

// baseURL returns the public base for session URLs created by r.
func (s *Server) baseURL(r *http.Request) string {
	s.mu.Lock()
	base, started := s.opts.BaseURL, s.url
	s.mu.Unlock()
	if base != "" {
		return base
	}
	if started != "" {
		return started
	}
	if r == nil {
		return ""
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b)
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c Customer) clone() Customer {
	c.Metadata = cloneMap(c.Metadata)
	c.versions = nil // only search reads them, under the lock
	return c
}

func (sub Subscription) clone() Subscription {
	sub.Metadata = cloneMap(sub.Metadata)
	return sub
}

func (cs CheckoutSession) clone() CheckoutSession {
	cs.Metadata = cloneMap(cs.Metadata)
	return cs
}

func addInterval(t time.Time, interval string) time.Time {
	switch interval {
	case "day":
		return t.AddDate(0, 0, 1)
	case "week":
		return t.AddDate(0, 0, 7)
	case "year":
		return t.AddDate(1, 0, 0)
	default:
		return t.AddDate(0, 1, 0)
	}
}

var validStatuses = map[string]bool{
	"active": true, "trialing": true, "past_due": true, "unpaid": true, "canceled": true,
	"incomplete": true, "incomplete_expired": true, "paused": true,
}

func ended(status string) bool { return status == "canceled" || status == "incomplete_expired" }

// ---------------------------------------------------------------- control API

// AddPrice adds or replaces a price. Empty fields get defaults: Currency
// "usd", Interval "month", Product "prod_<price id>", ProductName "Product".
func (s *Server) AddPrice(p Price) {
	if p.ID == "" {
		p.ID = newID("price_", 14)
	}
	if p.Currency == "" {
		p.Currency = "usd"
	}
	p.Currency = strings.ToLower(p.Currency)
	if p.Interval == "" {
		p.Interval = "month"
	}
	if p.Product == "" {
		p.Product = "prod_" + strings.TrimPrefix(p.ID, "price_")
	}
	if p.ProductName == "" {
		p.ProductName = "Product"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.prices[p.ID]; !ok {
		s.priceIDs = append(s.priceIDs, p.ID)
	}
	s.prices[p.ID] = &p
}

// UpdateProduct renames a product (when name is not "") and makes one of
// its prices its default (when defaultPrice is not ""), as the Dashboard
// does, and sends product.updated. A product's default is otherwise its
// first price.
func (s *Server) UpdateProduct(product, name, defaultPrice string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var def *Price
	for _, id := range s.priceIDs {
		if p := s.prices[id]; p.Product == product {
			if name != "" {
				p.ProductName = name
			}
			if def == nil || id == defaultPrice {
				def = p
			}
		}
	}
	if def == nil || defaultPrice != "" && def.ID != defaultPrice {
		return ErrNotFound
	}
	if defaultPrice != "" {
		if s.defaults == nil {
			s.defaults = map[string]string{}
		}
		s.defaults[product] = defaultPrice
	}
	s.emitLocked("product.updated", s.objectLocked(product))
	return nil
}

// Prices lists the prices in the order they were added.
func (s *Server) Prices() []Price {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Price, 0, len(s.priceIDs))
	for _, id := range s.priceIDs {
		out = append(out, *s.prices[id])
	}
	return out
}

// CreateCustomer stores a customer and returns its id (cus_…). No webhook.
func (s *Server) CreateCustomer(email string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createCustomerLocked(email, "", nil).ID
}

func (s *Server) createCustomerLocked(email, name string, md map[string]string) *Customer {
	c := &Customer{ID: newID("cus_", 14), Email: email, Name: name, Created: s.now(), Metadata: cloneMap(md), seq: s.nextSeq()}
	s.customers[c.ID] = c
	s.recordVersionLocked(c)
	return c
}

// UpdateCustomer changes a stored customer the way POST /v1/customers/{id}
// does: a non-empty email replaces the old one, metadata is merged into the
// old metadata (an empty value deletes its key). When anything changed it
// sends customer.updated with previous_attributes. It returns ErrNotFound for
// an unknown id.
func (s *Server) UpdateCustomer(id string, email string, metadata map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.customers[id]
	if !ok {
		return ErrNotFound
	}
	ch := customerChange{metadata: metadata}
	if email != "" {
		ch.email = &email
	}
	s.updateCustomerLocked(c, ch)
	return nil
}

// customerChange is an update to a customer; nil fields are left alone.
type customerChange struct {
	email, name *string
	metadata    map[string]string // merged; "" deletes a key
}

// updateCustomerLocked applies ch and, if anything changed, records a search
// version and sends customer.updated.
func (s *Server) updateCustomerLocked(c *Customer, ch customerChange) {
	prev := map[string]any{}
	if ch.email != nil && *ch.email != c.Email {
		prev["email"] = strOrNil(c.Email)
		c.Email = *ch.email
	}
	if ch.name != nil && *ch.name != c.Name {
		prev["name"] = strOrNil(c.Name)
		c.Name = *ch.name
	}
	if md := mergeMetadata(c.Metadata, ch.metadata); !maps.Equal(md, c.Metadata) {
		prev["metadata"] = metaJSON(c.Metadata)
		c.Metadata = md
	}
	if len(prev) == 0 {
		return
	}
	s.recordVersionLocked(c)
	s.emitUpdateLocked("customer.updated", s.customerJSONLocked(c), prev)
}

// mergeMetadata returns old with changes applied; an empty value deletes.
func mergeMetadata(old, changes map[string]string) map[string]string {
	out := cloneMap(old)
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// Customer returns a copy of a stored customer.
func (s *Server) Customer(id string) (Customer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.customers[id]
	if !ok {
		return Customer{}, false
	}
	return c.clone(), true
}

// CreateSubscription stores a subscription for an existing customer and
// price, with quantity 1, and returns its id (sub_…). The period starts now
// and lasts one price interval; "trialing" gets a trial of
// Options.DefaultTrialDays ending at the period end; "canceled" and
// "incomplete_expired" get canceled_at/ended_at now. No webhook. It panics on
// an unknown customer, price or status (a bug in the calling test).
func (s *Server) CreateSubscription(customer, price, status string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.customers[customer]; !ok {
		panic(fmt.Sprintf("stripefake: CreateSubscription: no such customer %q", customer))
	}
	p, ok := s.prices[price]
	if !ok {
		panic(fmt.Sprintf("stripefake: CreateSubscription: no such price %q", price))
	}
	if !validStatuses[status] {
		panic(fmt.Sprintf("stripefake: CreateSubscription: invalid status %q", status))
	}
	now := s.now()
	trialDays := 0
	if status == "trialing" {
		trialDays = s.opts.DefaultTrialDays
	}
	sub := s.newSubscriptionLocked(customer, p, 1, trialDays, now)
	sub.Status = status
	if ended(status) {
		sub.CanceledAt, sub.EndedAt = now, now
	}
	return sub.ID
}

func (s *Server) newSubscriptionLocked(customer string, p *Price, qty int64, trialDays int, now time.Time) *Subscription {
	sub := &Subscription{
		ID:                 newID("sub_", 14),
		Customer:           customer,
		Price:              p.ID,
		ItemID:             newID("si_", 14),
		Quantity:           qty,
		Status:             "active",
		Created:            now,
		CurrentPeriodStart: now,
		CurrentPeriodEnd:   addInterval(now, p.Interval),
		Metadata:           map[string]string{},
		seq:                s.nextSeq(),
	}
	if trialDays > 0 {
		sub.Status = "trialing"
		sub.TrialStart = now
		sub.TrialEnd = now.AddDate(0, 0, trialDays)
		// Like Stripe: during a trial the current period is the trial.
		sub.CurrentPeriodEnd = sub.TrialEnd
	}
	s.subs[sub.ID] = sub
	return sub
}

// Subscription returns a copy of a stored subscription.
func (s *Server) Subscription(id string) (Subscription, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return Subscription{}, false
	}
	return sub.clone(), true
}

// Subscriptions returns copies of a customer's subscriptions (all statuses),
// newest first. An empty customer lists every subscription.
func (s *Server) Subscriptions(customer string) []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Subscription
	for _, sub := range s.sortedSubsLocked() {
		if customer == "" || sub.Customer == customer {
			out = append(out, sub.clone())
		}
	}
	return out
}

func (s *Server) sortedSubsLocked() []*Subscription {
	out := make([]*Subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		out = append(out, sub)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].seq > out[j].seq
	})
	return out
}

// SetSubscription edits a stored subscription in place; fn gets a copy whose
// ID, Customer and ItemID changes are ignored. No webhook is sent: follow
// with SendSubscriptionEvent if the test wants one.
func (s *Server) SetSubscription(id string, fn func(*Subscription)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	c := sub.clone()
	fn(&c)
	c.ID, c.Customer, c.ItemID, c.seq = sub.ID, sub.Customer, sub.ItemID, sub.seq
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	*sub = c
	return nil
}

// SetStatus sets a subscription's status without a webhook.
func (s *Server) SetStatus(id, status string) error {
	if !validStatuses[status] {
		return fmt.Errorf("stripefake: invalid status %q", status)
	}
	return s.SetSubscription(id, func(sub *Subscription) { sub.Status = status })
}

// CancelSubscription cancels immediately (status canceled, canceled_at and
// ended_at now) and sends customer.subscription.deleted.
func (s *Server) CancelSubscription(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelLocked(id)
}

func (s *Server) cancelLocked(id string) error {
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	if ended(sub.Status) {
		return ErrInvalidState
	}
	now := s.now()
	sub.Status = "canceled"
	sub.CanceledAt, sub.EndedAt = now, now
	sub.CancelAtPeriodEnd = false
	s.emitLocked("customer.subscription.deleted", s.subJSONLocked(sub))
	return nil
}

// FailRenewal simulates a failed renewal of an active or trialing
// subscription: status past_due, the period advances (start now, end one
// interval later), an open invoice is created. Sends invoice.payment_failed
// and customer.subscription.updated.
func (s *Server) FailRenewal(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failRenewalLocked(id)
}

func (s *Server) failRenewalLocked(id string) error {
	return s.renewalLocked(id, false)
}

// Renew simulates a successful renewal of an active or trialing
// subscription: status active (a trial ends now), the period advances (start
// now, end one interval later), a paid invoice is created. Sends invoice.paid
// and customer.subscription.updated.
func (s *Server) Renew(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewLocked(id)
}

func (s *Server) renewLocked(id string) error {
	return s.renewalLocked(id, true)
}

// renewalLocked advances an active or trialing subscription to its next
// period, paid or not, with the invoice and events Stripe sends for each.
func (s *Server) renewalLocked(id string, paid bool) error {
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	if sub.Status != "active" && sub.Status != "trialing" {
		return ErrInvalidState
	}
	s.advancePeriodLocked(sub)
	status, invoiceStatus, event := "past_due", "open", "invoice.payment_failed"
	if paid {
		status, invoiceStatus, event = "active", "paid", "invoice.paid"
	}
	sub.Status = status
	inv := s.newInvoiceLocked(sub, invoiceStatus, "subscription_cycle")
	s.emitLocked(event, s.invoiceJSONLocked(inv))
	s.emitLocked("customer.subscription.updated", s.subJSONLocked(sub))
	return nil
}

func (s *Server) advancePeriodLocked(sub *Subscription) {
	now := s.now()
	interval := "month"
	if p, ok := s.prices[sub.Price]; ok {
		interval = p.Interval
	}
	if sub.Status == "trialing" && sub.TrialEnd.After(now) {
		sub.TrialEnd = now
	}
	sub.CurrentPeriodStart = now
	sub.CurrentPeriodEnd = addInterval(now, interval)
}

// UpdatePaymentMethod simulates the customer fixing their card on a past_due
// or unpaid subscription: the open invoice is paid, status active. Sends
// invoice.paid and customer.subscription.updated.
func (s *Server) UpdatePaymentMethod(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updatePaymentLocked(id)
}

func (s *Server) updatePaymentLocked(id string) error {
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	if sub.Status != "past_due" && sub.Status != "unpaid" {
		return ErrInvalidState
	}
	inv, ok := s.invoices[sub.LatestInvoice]
	if !ok || inv.Status == "paid" {
		inv = s.newInvoiceLocked(sub, "paid", "subscription_cycle")
	}
	s.setInvoiceStatusLocked(inv, "paid")
	sub.Status = "active"
	s.emitLocked("invoice.paid", s.invoiceJSONLocked(inv))
	s.emitLocked("customer.subscription.updated", s.subJSONLocked(sub))
	return nil
}

// SetCancelAtPeriodEnd sets or clears cancel_at_period_end on a subscription
// that has not ended and sends customer.subscription.updated.
func (s *Server) SetCancelAtPeriodEnd(id string, cancel bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setCancelAtPeriodEndLocked(id, cancel)
}

func (s *Server) setCancelAtPeriodEndLocked(id string, cancel bool) error {
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	if ended(sub.Status) {
		return ErrInvalidState
	}
	sub.CancelAtPeriodEnd = cancel
	if cancel {
		sub.CanceledAt = s.now()
	} else {
		sub.CanceledAt = time.Time{}
	}
	s.emitLocked("customer.subscription.updated", s.subJSONLocked(sub))
	return nil
}

func (s *Server) newInvoiceLocked(sub *Subscription, status, reason string) *invoice {
	amount, currency := int64(0), "usd"
	if p, ok := s.prices[sub.Price]; ok {
		amount, currency = p.UnitAmount*sub.Quantity, p.Currency
	}
	inv := &invoice{
		ID: newID("in_", 14), Customer: sub.Customer, Subscription: sub.ID,
		Status: status, Amount: amount, Currency: currency, Reason: reason, Created: s.now(),
	}
	if amount > 0 {
		pi := &paymentIntent{
			ID: newID("pi_", 24), Customer: sub.Customer, Invoice: inv.ID,
			Amount: amount, Currency: currency, Created: inv.Created,
		}
		s.intents[pi.ID] = pi
		inv.PaymentIntent = pi.ID
	}
	s.invoices[inv.ID] = inv
	s.setInvoiceStatusLocked(inv, status)
	sub.LatestInvoice = inv.ID
	return inv
}

// setInvoiceStatusLocked sets an invoice's status and its PaymentIntent's:
// succeeded when paid, requires_payment_method while open (the charge
// failed and waits for another payment method).
func (s *Server) setInvoiceStatusLocked(inv *invoice, status string) {
	inv.Status = status
	if pi, ok := s.intents[inv.PaymentIntent]; ok {
		pi.Status = "requires_payment_method"
		if status == "paid" {
			pi.Status = "succeeded"
		}
	}
}

// SetFirstPaymentProcessing makes a subscription what Stripe makes one whose
// first payment is a bank debit (SEPA, ACH) or transfer that takes days:
// status incomplete, its latest invoice (billing_reason
// subscription_create) open, and that invoice's PaymentIntent processing.
// No webhook. SettleFirstPayment ends it.
func (s *Server) SetFirstPaymentProcessing(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	if ended(sub.Status) {
		return ErrInvalidState
	}
	inv := s.newInvoiceLocked(sub, "open", "subscription_create")
	pi, ok := s.intents[inv.PaymentIntent]
	if !ok {
		return fmt.Errorf("stripefake: price %q charges nothing, so there is no payment to process", sub.Price)
	}
	pi.Status = "processing"
	sub.Status = "incomplete"
	return nil
}

// SettleFirstPayment ends the processing of a subscription's first payment
// (see SetFirstPaymentProcessing). When the money arrives (paid), the
// PaymentIntent succeeds, the invoice is paid and the subscription is
// active: it sends invoice.paid and customer.subscription.updated. When the
// bank refuses, the PaymentIntent requires a payment method and the
// subscription stays incomplete: it sends invoice.payment_failed. It
// returns ErrInvalidState when no first payment is processing.
func (s *Server) SettleFirstPayment(id string, paid bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[id]
	if !ok {
		return ErrNotFound
	}
	inv, ok := s.invoices[sub.LatestInvoice]
	if !ok || sub.Status != "incomplete" {
		return ErrInvalidState
	}
	if pi, ok := s.intents[inv.PaymentIntent]; !ok || pi.Status != "processing" {
		return ErrInvalidState
	}
	if !paid {
		s.setInvoiceStatusLocked(inv, "open")
		s.emitLocked("invoice.payment_failed", s.invoiceJSONLocked(inv))
		return nil
	}
	s.setInvoiceStatusLocked(inv, "paid")
	sub.Status = "active"
	s.emitLocked("invoice.paid", s.invoiceJSONLocked(inv))
	s.emitLocked("customer.subscription.updated", s.subJSONLocked(sub))
	return nil
}

// Session returns a copy of a checkout session (expiring it first if its
// expires_at has passed).
func (s *Server) Session(id string) (CheckoutSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[id]
	if !ok {
		return CheckoutSession{}, false
	}
	s.expireIfDueLocked(cs)
	return cs.clone(), true
}

// Sessions returns copies of every checkout session, newest first.
func (s *Server) Sessions() []CheckoutSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CheckoutSession, 0, len(s.sessions))
	for _, cs := range s.sessions {
		s.expireIfDueLocked(cs)
		out = append(out, cs.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq > out[j].seq })
	return out
}

// PortalSession returns a copy of a billing-portal session.
func (s *Server) PortalSession(id string) (PortalSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.portals[id]
	if !ok {
		return PortalSession{}, false
	}
	return *ps, true
}

func (s *Server) expireIfDueLocked(cs *CheckoutSession) {
	if cs.Status == "open" && !s.now().Before(cs.ExpiresAt) {
		s.expireLocked(cs)
	}
}

func (s *Server) expireLocked(cs *CheckoutSession) {
	cs.Status = "expired"
	s.emitLocked("checkout.session.expired", s.sessionJSONLocked(cs))
}

// ExpireCheckout expires an open checkout session and sends
// checkout.session.expired.
func (s *Server) ExpireCheckout(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[id]
	if !ok {
		return ErrNotFound
	}
	s.expireIfDueLocked(cs)
	if cs.Status != "open" {
		return ErrNotOpen
	}
	s.expireLocked(cs)
	return nil
}

// CompleteCheckout does what the hosted pay form does: with a succeeding
// card ("" means CardSuccess) it creates the customer if the session has
// none (email: the session's customer_email, else "customer@example.com"),
// creates the subscription (trialing when the session asked for trial days),
// completes the session and sends customer.created (if new),
// checkout.session.completed, customer.subscription.created and invoice.paid
// (not for trials). A declined card returns ErrCardDeclined and leaves the
// session open.
func (s *Server) CompleteCheckout(sessionID, card string) error {
	_, err := s.completeCheckout(sessionID, "", card)
	return err
}

// cardError is returned for a declined or invalid card; it matches
// ErrCardDeclined with errors.Is when the card was declined.
type cardError struct {
	msg      string
	declined bool
}

func (e *cardError) Error() string        { return "stripefake: " + e.msg }
func (e *cardError) Is(target error) bool { return e.declined && target == ErrCardDeclined }

// cardOutcome validates a card number; an empty msg means success.
func cardOutcome(card string) (msg string, declined bool) {
	digits := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, card)
	if digits == "" {
		digits = CardSuccess
	}
	if len(digits) < 12 || len(digits) > 19 || !luhn(digits) {
		return "Your card number is invalid.", false
	}
	switch digits {
	case CardDeclined:
		return "Your card was declined. Try another card.", true
	case CardInsufficientFunds:
		return "Your card has insufficient funds. Try another card.", true
	}
	return "", false
}

func luhn(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// completeCheckout returns the redirect URL on success.
func (s *Server) completeCheckout(sessionID, email, card string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[sessionID]
	if !ok {
		return "", ErrNotFound
	}
	s.expireIfDueLocked(cs)
	if cs.Status != "open" {
		return "", ErrNotOpen
	}
	if msg, declined := cardOutcome(card); msg != "" {
		return "", &cardError{msg: msg, declined: declined}
	}
	p, ok := s.prices[cs.Price]
	if !ok {
		return "", fmt.Errorf("stripefake: price %q no longer exists", cs.Price)
	}
	cus, ok := s.customers[cs.Customer]
	if !ok {
		if cs.CustomerEmail != "" {
			email = cs.CustomerEmail
		}
		if email == "" {
			email = "customer@example.com"
		}
		cus = s.createCustomerLocked(email, "", nil)
		cs.Customer = cus.ID
		s.emitLocked("customer.created", s.customerJSONLocked(cus))
	}
	sub := s.newSubscriptionLocked(cus.ID, p, cs.Quantity, int(cs.TrialPeriodDays), s.now())
	sub.Metadata = map[string]string{}
	cs.Status = "complete"
	cs.Subscription = sub.ID
	var inv *invoice
	if cs.TrialPeriodDays > 0 {
		cs.PaymentStatus = "no_payment_required"
	} else {
		cs.PaymentStatus = "paid"
		inv = s.newInvoiceLocked(sub, "paid", "subscription_create")
	}
	s.emitLocked("checkout.session.completed", s.sessionJSONLocked(cs))
	s.emitLocked("customer.subscription.created", s.subJSONLocked(sub))
	if inv != nil {
		s.emitLocked("invoice.paid", s.invoiceJSONLocked(inv))
	}
	return strings.ReplaceAll(cs.SuccessURL, "{CHECKOUT_SESSION_ID}", cs.ID), nil
}

// SetSessionPaymentStatus sets a checkout session's payment_status, as
// Stripe leaves a session that completed with a bank debit "unpaid" until
// the money arrives.
func (s *Server) SetSessionPaymentStatus(id, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, ok := s.sessions[id]
	if !ok {
		return ErrNotFound
	}
	cs.PaymentStatus = status
	return nil
}

// SetOutage switches the API's failure mode ("" or OutageNone restores it).
func (s *Server) SetOutage(mode Outage) {
	if mode == "" {
		mode = OutageNone
	}
	s.mu.Lock()
	s.outage = mode
	s.mu.Unlock()
}

// SetOutageFor switches the failure mode of the API calls that match key
// (the keys of Calls, such as "POST /v1/checkout/sessions") and leaves the
// others as they are; "" restores the calls of key to the general mode.
func (s *Server) SetOutageFor(key string, mode Outage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outageFor == nil {
		s.outageFor = map[string]Outage{}
	}
	if mode == "" {
		delete(s.outageFor, key)
		return
	}
	s.outageFor[key] = mode
}

// SetPermissionDenied makes the API calls that match callKey (the keys of
// Calls, such as "POST /v1/customers/{id}") answer 403 as Stripe answers a
// restricted key that lacks a permission, such as "rak_customer_write",
// after counting them; the message names the permission and the key, masked.
// It applies to every key, so tests need not switch to an rk_ key. An empty
// permission removes the rule.
func (s *Server) SetPermissionDenied(callKey, permission string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forbidden == nil {
		s.forbidden = map[string]string{}
	}
	if permission == "" {
		delete(s.forbidden, callKey)
		return
	}
	s.forbidden[callKey] = permission
}

// SetLatency delays every API call by d (0 disables). The wait ends early
// when the client gives up or the Server closes.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// Calls returns how many API requests matched key, "METHOD /path" with ids
// replaced by {id}: "GET /v1/subscriptions", "POST /v1/checkout/sessions",
// "GET /v1/checkout/sessions/{id}", "POST /v1/billing_portal/sessions",
// "GET /v1/customers/search", "POST /v1/customers/{id}".
// Every request under /v1/ counts, whatever its outcome. Key "" is the total.
func (s *Server) Calls(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" {
		n := 0
		for _, v := range s.calls {
			n += v
		}
		return n
	}
	return s.calls[key]
}

// CallCounts returns a copy of every counter.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneCounts(s.calls)
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = map[string]int{}
	s.mu.Unlock()
}
