package paywall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	portalsession "github.com/stripe/stripe-go/v76/billingportal/session"
	checkoutsession "github.com/stripe/stripe-go/v76/checkout/session"
	"github.com/stripe/stripe-go/v76/customer"
	"github.com/stripe/stripe-go/v76/invoice"
	"github.com/stripe/stripe-go/v76/price"
	"github.com/stripe/stripe-go/v76/product"
	"github.com/stripe/stripe-go/v76/subscription"
)

// stripeAPI is everything the paywall asks of Stripe. The tests fake it at
// the HTTP level, so this interface exists for clarity rather than mocking.
type stripeAPI interface {
	// subscriptions lists every subscription of a customer, canceled ones
	// included, and with withKeys the customer's API keys (apikeys.go).
	// A customer Stripe does not know has none of either.
	subscriptions(ctx context.Context, customer string, withKeys bool) (facts, error)
	// updateMetadata sets (an empty value deletes) entries of a customer's
	// metadata and returns the metadata as Stripe then holds it.
	updateMetadata(ctx context.Context, customer string, changes map[string]string) (map[string]string, error)
	createCheckout(ctx context.Context, req checkoutRequest) (checkoutSession, error)
	checkoutSession(ctx context.Context, id string) (checkoutSession, error)
	// expireCheckout closes an open Checkout Session, so that it can no
	// longer be paid.
	expireCheckout(ctx context.Context, id string) error
	createPortal(ctx context.Context, customer, returnURL string) (string, error)
	defaultPrice(ctx context.Context, product string) (string, error)
	// offer reads what the page sells: a price and its product, or a
	// product and its default price.
	offer(ctx context.Context, id string) (offer, error)
	// customersByEmail lists the customers whose email is exactly email,
	// newest first, at most limit. The list is consistent with writes.
	customersByEmail(ctx context.Context, email string, limit int) ([]string, error)
	// customersByMetadata finds the customers whose metadata[key] is
	// value, newest first, at most limit, with Stripe's search, which
	// lags writes by up to about a minute.
	customersByMetadata(ctx context.Context, key, value string, limit int) ([]string, error)
	// createCustomer makes a customer with one metadata entry; the same
	// idempotencyKey within Stripe's 24 hours gives the same customer.
	createCustomer(ctx context.Context, key, value, idempotencyKey string) (string, error)
	// close lets go of the connections kept idle for the next call; the
	// client still works after it. Cleanup calls it.
	close()
}

// subscriptionState is what the paywall needs of one Stripe subscription:
// only fields that are stable across Stripe API versions.
type subscriptionState struct {
	Status            string
	CancelAtPeriodEnd bool
	PeriodStart       int64 // current_period_start: the failed renewal when past_due
	TrialEnd          int64
	EndedAt           int64
	Items             []priceRef

	// FirstPaymentProcessing: the subscription is incomplete because the
	// PaymentIntent of its first invoice is processing (a bank debit or
	// transfer that takes days), not because that payment failed or
	// waits for the customer (requires_payment_method, requires_action).
	FirstPaymentProcessing bool
}

// priceRef names the price of a subscription item and its product.
type priceRef struct {
	Price, Product string
}

type checkoutRequest struct {
	Price               string
	Customer            string // reuse a known customer; empty for a new one
	CustomerEmail       string // with no Customer: the email Checkout fills in
	SuccessURL          string
	CancelURL           string
	ClientReferenceID   string
	TrialDays           int
	AllowPromotionCodes bool
	ExpiresAt           time.Time
}

type checkoutSession struct {
	ID                string
	URL               string
	Status            string
	Mode              string
	PaymentStatus     string
	ClientReferenceID string
	Customer          string
	CustomerEmail     string // what the payer gave at checkout
	PrefilledEmail    string // customer_email, as the session was made
	ExpiresAt         int64
}

// errStripeUnavailable marks failures that are not the visitor's doing:
// the network, timeouts, rate limits, Stripe's own errors, a revoked key.
var errStripeUnavailable = errors.New("stripe unavailable")

// errStripeRateLimited marks a 429: Stripe is up, but this account asked too
// much. It is also errStripeUnavailable.
var errStripeRateLimited = fmt.Errorf("stripe rate limit: %w", errStripeUnavailable)

// errStripeForbidden marks a 403: the key may not make this call (a
// restricted key without the permission). It is also errStripeUnavailable,
// as for any call that has no answer of its own for it.
var errStripeForbidden = fmt.Errorf("stripe permission missing: %w", errStripeUnavailable)

// errKeysForbidden comes with facts read without the API keys because the
// Stripe key may not read customers: the facts hold for browsers, and keys
// cannot be checked until the key has the permission.
var errKeysForbidden = errors.New("stripe permission missing: the key may not read customers, so API keys cannot be checked (give it Customers: write)")

// errStripeNotFound marks a missing object (an unknown session or customer).
var errStripeNotFound = errors.New("not found at stripe")

type stripeClient struct {
	subs      subscription.Client
	checkout  checkoutsession.Client
	portal    portalsession.Client
	products  product.Client
	prices    price.Client
	customers customer.Client
	invoices  invoice.Client
	timeout   time.Duration
	transport *http.Transport
}

// newStripeClient makes a handler's client, with a transport of its own
// that the handler's Cleanup closes (see close). Each config reload makes
// one. Sharing one client per account across reloads, in the accounts pool,
// would keep the connections warm, but would need a pool key of everything
// it depends on (key, api_url, stripe_timeout): closing the idle
// connections of the handler that goes is simpler, and a reload costs at
// most one new connection. The client logs nothing: its errors say what
// failed (stripeError), and the caller logs them where it handles them.
func newStripeClient(key, apiURL string, timeout time.Duration) *stripeClient {
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: timeout,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	cfg := &stripe.BackendConfig{
		HTTPClient: &http.Client{Timeout: timeout, Transport: transport},
		// One retry: POSTs carry an idempotency key, so a retried checkout
		// creation never makes a second session. The context deadline below
		// bounds the whole call, retries included.
		MaxNetworkRetries: stripe.Int64(1),
		// The SDK's own log lines may quote error messages from Stripe;
		// we log what we need ourselves, without secrets.
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if apiURL != "" {
		cfg.URL = stripe.String(apiURL)
	}
	b := stripe.GetBackendWithConfig(stripe.APIBackend, cfg)
	return &stripeClient{
		subs:      subscription.Client{B: b, Key: key},
		checkout:  checkoutsession.Client{B: b, Key: key},
		portal:    portalsession.Client{B: b, Key: key},
		products:  product.Client{B: b, Key: key},
		prices:    price.Client{B: b, Key: key},
		customers: customer.Client{B: b, Key: key},
		invoices:  invoice.Client{B: b, Key: key},
		timeout:   timeout,
		transport: transport,
	}
}

// close closes the connections idle in the client's transport. A call
// still running (a read that outlives its request, past Cleanup) finishes
// on its own connection, and a call made after close dials a new one: the
// transport stays usable, and what it opens after close is closed by
// IdleConnTimeout.
func (c *stripeClient) close() {
	c.transport.CloseIdleConnections()
}

func (c *stripeClient) subscriptions(ctx context.Context, customer string, withKeys bool) (facts, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.SubscriptionListParams{
		Customer: stripe.String(customer),
		Status:   stripe.String("all"),
	}
	params.Context = ctx
	params.Limit = stripe.Int64(100)
	if withKeys {
		// The keys live in the customer's metadata: the same call
		// brings them, with each subscription's customer.
		params.AddExpand("data.customer")
	}
	var out []subscriptionState
	var keys *keyRing
	it := c.subs.List(params)
	for it.Next() {
		s := it.Subscription()
		if withKeys && keys == nil && s.Customer != nil && s.Customer.ID == customer {
			keys = keysFromMetadata(s.Customer.Metadata)
		}
		st := subscriptionState{
			Status:            string(s.Status),
			CancelAtPeriodEnd: s.CancelAtPeriodEnd,
			PeriodStart:       s.CurrentPeriodStart,
			TrialEnd:          s.TrialEnd,
			EndedAt:           s.EndedAt,
		}
		if s.Status == stripe.SubscriptionStatusIncomplete && s.LatestInvoice != nil && s.LatestInvoice.ID != "" {
			st.FirstPaymentProcessing = c.firstPaymentProcessing(ctx, s.LatestInvoice.ID)
		}
		if s.Items != nil {
			for _, item := range s.Items.Data {
				if item.Price == nil {
					continue
				}
				ref := priceRef{Price: item.Price.ID}
				if item.Price.Product != nil {
					ref.Product = item.Price.Product.ID
				}
				st.Items = append(st.Items, ref)
			}
		}
		out = append(out, st)
	}
	if err := it.Err(); err != nil {
		err = c.classify("list subscriptions", err)
		if errors.Is(err, errStripeNotFound) {
			return facts{keys: emptyKeyRing(withKeys)}, nil
		}
		if withKeys && errors.Is(err, errStripeForbidden) {
			// A restricted key that may list subscriptions but
			// not read customers: the subscriptions still decide
			// for browsers; the keys stay unread (nil), which the
			// caller reports (errKeysForbidden).
			f, err := c.subscriptions(ctx, customer, false)
			if err == nil {
				err = errKeysForbidden
			}
			return f, err
		}
		return facts{}, err
	}
	if withKeys && keys == nil {
		// No subscription brought the customer: one who never
		// subscribed, who cannot have made a key (making one takes a
		// subscription that pays, and Stripe keeps ended ones), so no
		// second read for them.
		keys = emptyKeyRing(true)
	}
	return facts{subs: out, keys: keys}, nil
}

func (c *stripeClient) updateMetadata(ctx context.Context, customer string, changes map[string]string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CustomerParams{}
	params.Context = ctx
	for k, v := range changes {
		params.AddMetadata(k, v)
	}
	cus, err := c.customers.Update(customer, params)
	if err != nil {
		return nil, c.classify("update customer metadata", err)
	}
	return cus.Metadata, nil
}

// firstPaymentProcessing reports whether an incomplete subscription's first
// invoice is being paid by a payment still under way (a bank debit): its
// PaymentIntent is processing. Only incomplete subscriptions, which are
// rare, cost this read, so that every other read needs nothing but the
// Subscriptions permission of a restricted key; when the read fails (no
// Invoices or PaymentIntents permission, Stripe down), the answer is no,
// and the subscription counts as a failed payment, as it did before.
// Invoice.payment_intent exists at the API version stripe-go v76 pins
// (2023-10-16, sent with every request); from 2025-03-31.basil on it is
// gone (see TestInvoicePaymentIntentPinnedToAnAPIVersion).
func (c *stripeClient) firstPaymentProcessing(ctx context.Context, invoiceID string) bool {
	params := &stripe.InvoiceParams{}
	params.Context = ctx
	params.AddExpand("payment_intent")
	inv, err := c.invoices.Get(invoiceID, params)
	if err != nil {
		return false
	}
	return inv.PaymentIntent != nil && inv.PaymentIntent.Status == stripe.PaymentIntentStatusProcessing
}

func (c *stripeClient) createCheckout(ctx context.Context, req checkoutRequest) (checkoutSession, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CheckoutSessionParams{
		Mode: stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{
			Price:    stripe.String(req.Price),
			Quantity: stripe.Int64(1),
		}},
		SuccessURL:        stripe.String(req.SuccessURL),
		CancelURL:         stripe.String(req.CancelURL),
		ClientReferenceID: stripe.String(req.ClientReferenceID),
	}
	params.Context = ctx
	if req.Customer != "" {
		params.Customer = stripe.String(req.Customer)
	} else if req.CustomerEmail != "" {
		params.CustomerEmail = stripe.String(req.CustomerEmail)
	}
	if req.TrialDays > 0 {
		params.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{
			TrialPeriodDays: stripe.Int64(int64(req.TrialDays)),
		}
	}
	if req.AllowPromotionCodes {
		params.AllowPromotionCodes = stripe.Bool(true)
	}
	if !req.ExpiresAt.IsZero() {
		params.ExpiresAt = stripe.Int64(req.ExpiresAt.Unix())
	}
	s, err := c.checkout.New(params)
	if err != nil {
		return checkoutSession{}, c.classify("create checkout session", err)
	}
	return sessionFrom(s), nil
}

func (c *stripeClient) checkoutSession(ctx context.Context, id string) (checkoutSession, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CheckoutSessionParams{}
	params.Context = ctx
	s, err := c.checkout.Get(id, params)
	if err != nil {
		return checkoutSession{}, c.classify("retrieve checkout session", err)
	}
	return sessionFrom(s), nil
}

func (c *stripeClient) expireCheckout(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CheckoutSessionExpireParams{}
	params.Context = ctx
	if _, err := c.checkout.Expire(id, params); err != nil {
		return c.classify("expire checkout session", err)
	}
	return nil
}

func (c *stripeClient) createPortal(ctx context.Context, customer, returnURL string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.BillingPortalSessionParams{
		Customer:  stripe.String(customer),
		ReturnURL: stripe.String(returnURL),
	}
	params.Context = ctx
	s, err := c.portal.New(params)
	if err != nil {
		return "", c.classify("create billing portal session", err)
	}
	return s.URL, nil
}

func (c *stripeClient) defaultPrice(ctx context.Context, prod string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.ProductParams{}
	params.Context = ctx
	p, err := c.products.Get(prod, params)
	if err != nil {
		return "", c.classify("retrieve product", err)
	}
	if p.DefaultPrice == nil || p.DefaultPrice.ID == "" {
		return "", fmt.Errorf("product has no default price: %w", errStripeNotFound)
	}
	return p.DefaultPrice.ID, nil
}

// offer reads what the 402 page sells, in one call: a price with its
// product, or a product with its default price.
func (c *stripeClient) offer(ctx context.Context, id string) (offer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var p *stripe.Price
	if strings.HasPrefix(id, "prod_") {
		params := &stripe.ProductParams{}
		params.Context = ctx
		params.AddExpand("default_price")
		prod, err := c.products.Get(id, params)
		if err != nil {
			return offer{}, c.classify("retrieve product", err)
		}
		if prod.DefaultPrice == nil || prod.DefaultPrice.ID == "" {
			return offer{}, fmt.Errorf("product has no default price: %w", errStripeNotFound)
		}
		p = prod.DefaultPrice
		p.Product = prod
	} else {
		params := &stripe.PriceParams{}
		params.Context = ctx
		params.AddExpand("product")
		var err error
		if p, err = c.prices.Get(id, params); err != nil {
			return offer{}, c.classify("retrieve price", err)
		}
	}
	o := offer{price: p.ID, currency: string(p.Currency)}
	if p.Product != nil {
		o.product, o.name = p.Product.ID, p.Product.Name
	}
	// A tiered price, or one the customer chooses, has no single amount.
	if p.BillingScheme != stripe.PriceBillingSchemeTiered && p.CustomUnitAmount == nil {
		o.amount = p.UnitAmount
	}
	if p.Recurring != nil {
		o.interval, o.intervalCount = string(p.Recurring.Interval), p.Recurring.IntervalCount
	}
	return o, nil
}

func (c *stripeClient) customersByEmail(ctx context.Context, email string, limit int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CustomerListParams{Email: stripe.String(email)}
	params.Context = ctx
	params.Limit = stripe.Int64(int64(limit))
	params.Single = true // one page: the newest limit customers
	var out []string
	it := c.customers.List(params)
	for it.Next() && len(out) < limit {
		out = append(out, it.Customer().ID)
	}
	if err := it.Err(); err != nil {
		return nil, c.classify("list customers by email", err)
	}
	return out, nil
}

func (c *stripeClient) customersByMetadata(ctx context.Context, key, value string, limit int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CustomerSearchParams{}
	params.Query = "metadata['" + searchQuote(key) + "']:'" + searchQuote(value) + "'"
	params.Context = ctx
	params.Limit = stripe.Int64(int64(limit))
	params.Single = true
	var out []string
	it := c.customers.Search(params)
	for it.Next() && len(out) < limit {
		out = append(out, it.Customer().ID)
	}
	if err := it.Err(); err != nil {
		return nil, c.classify("search customers by metadata", err)
	}
	return out, nil
}

// searchQuote escapes a string for a single-quoted value of Stripe's search
// query language, in which a backslash escapes a quote or a backslash.
func searchQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

func (c *stripeClient) createCustomer(ctx context.Context, key, value, idempotencyKey string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := &stripe.CustomerParams{}
	params.Context = ctx
	params.AddMetadata(key, value)
	params.SetIdempotencyKey(idempotencyKey)
	cus, err := c.customers.New(params)
	if err != nil {
		return "", c.classify("create customer", err)
	}
	return cus.ID, nil
}

// stripeError is a failed Stripe call as the paywall reports it: the
// operation and what Stripe said of it, never Stripe's message text, which
// can quote part of the key. It is logged once, where it is handled: by the
// read that serves visitors (once a minute at most), by an endpoint's answer,
// or by Caddy for the 502 of a refused request.
type stripeError struct {
	op        string
	status    int    // Stripe's HTTP status; 0 when Stripe was not reached
	typ, code string // Stripe's error type and code
	param     string // the parameter Stripe found at fault, with 400
	requestID string // Stripe's request ID, for Stripe's support
	kind      error  // errStripeNotFound, errStripeRateLimited, errStripeUnavailable, or nil: refused
	network   error  // the network's error, without the URL
}

func (e *stripeError) Error() string {
	var b strings.Builder
	b.WriteString(e.op)
	switch {
	case e.status != 0:
		fmt.Fprintf(&b, ": stripe answered %d (%s, %s, request %s)", e.status, e.typ, e.code, e.requestID)
	case e.network != nil:
		b.WriteString(": " + e.network.Error())
	}
	if e.kind != nil {
		b.WriteString(": " + e.kind.Error())
	} else {
		b.WriteString(": stripe refused the request")
	}
	return b.String()
}

func (e *stripeError) Unwrap() error { return e.kind }

// classify turns an SDK error into a stripeError of the kind the paywall
// acts on.
func (c *stripeClient) classify(op string, err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return &stripeError{op: op, kind: errStripeUnavailable, network: redactURLError(err)}
	}
	e := &stripeError{op: op, status: se.HTTPStatusCode, typ: string(se.Type), code: string(se.Code), param: se.Param, requestID: se.RequestID}
	switch {
	case se.HTTPStatusCode == http.StatusNotFound || se.Code == stripe.ErrorCodeResourceMissing:
		e.kind = errStripeNotFound
	case se.HTTPStatusCode == http.StatusBadRequest:
		// refused: the request itself is wrong (a bug, or a setting)
	case se.HTTPStatusCode == http.StatusTooManyRequests:
		e.kind = errStripeRateLimited
	case se.HTTPStatusCode == http.StatusForbidden:
		e.kind = errStripeForbidden
	default:
		e.kind = errStripeUnavailable // 401/403 (a revoked key), 5xx
	}
	return e
}

// redactURLError keeps the kind of a network error and drops the URL, which
// can carry a customer ID in its query.
func redactURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func sessionFrom(s *stripe.CheckoutSession) checkoutSession {
	out := checkoutSession{
		ID:                s.ID,
		URL:               s.URL,
		Status:            string(s.Status),
		Mode:              string(s.Mode),
		PaymentStatus:     string(s.PaymentStatus),
		ClientReferenceID: s.ClientReferenceID,
		ExpiresAt:         s.ExpiresAt,
	}
	if s.Customer != nil {
		out.Customer = s.Customer.ID
	}
	if s.CustomerDetails != nil {
		out.CustomerEmail = s.CustomerDetails.Email
	}
	out.PrefilledEmail = s.CustomerEmail
	return out
}
