package paywall

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// webhookTolerance is how far an event's signed timestamp may be from now,
// in either direction.
const webhookTolerance = 300 * time.Second

// maxWebhookBody bounds an event's size; Stripe's are a few kilobytes.
const maxWebhookBody = 1 << 20

// webhookEvent holds the parts of a Stripe event that are the same in every
// API version.
type webhookEvent struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	APIVersion string `json:"api_version"`
	Data       struct {
		Object struct {
			ID              string          `json:"id"`
			Object          string          `json:"object"`
			Customer        json.RawMessage `json:"customer"`
			Email           string          `json:"email"`          // a customer's
			CustomerEmail   string          `json:"customer_email"` // a Checkout Session's
			CustomerDetails struct {
				Email string `json:"email"`
			} `json:"customer_details"`
			Metadata map[string]string `json:"metadata"` // a customer's
		} `json:"object"`
		// What a customer.updated changed, as it was before: the
		// API keys it removed are the paywall_key_* entries here that
		// the object no longer holds.
		PreviousAttributes struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"previous_attributes"`
	} `json:"data"`
}

// revokedKeys lists the ids of the API keys a customer.updated removed.
// Ids are never used twice, so an event that comes late removes only keys
// that are gone.
func revokedKeys(ev *webhookEvent) []string {
	if ev.Type != "customer.updated" {
		return nil
	}
	var ids []string
	for name := range ev.Data.PreviousAttributes.Metadata {
		id, ok := strings.CutPrefix(name, keyMetaPrefix)
		if ok && validKeyID(id) && ev.Data.Object.Metadata[name] == "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// serveWebhook verifies a Stripe event and, when it concerns a customer,
// reads that customer again from Stripe. The event body is a hint, not the
// truth: events come late, twice and out of order.
func (h *Handler) serveWebhook(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, errors.New("paywall: webhook body too large"))
	}
	t := now()
	if err := verifySignature(body, r.Header.Get("Stripe-Signature"), h.webhookSecret, t); err != nil {
		webhookEvents.WithLabelValues("rejected").Inc()
		if ok, left := h.account.rejectedHooks.allow(t.UnixNano()); ok {
			h.logger.Warn("webhook rejected",
				zap.Error(err), zap.String("client_ip", clientIP(r)), zap.Int("rejected_since_last_line", left))
		}
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	var ev webhookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" {
		webhookEvents.WithLabelValues("unreadable").Inc()
		return caddyhttp.Error(http.StatusBadRequest, errors.New("paywall: webhook body is not a Stripe event"))
	}
	if ev.ID != "" && !h.account.seenEvents.first(ev.ID, t.UnixNano()) {
		// A replay of a request already applied and answered 200:
		// Stripe retries only the deliveries it got no 2xx for.
		webhookEvents.WithLabelValues("duplicate").Inc()
		h.logger.Debug("webhook event already applied", zap.String("type", ev.Type), zap.String("event", ev.ID))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if id := eventOffer(&ev); id != "" {
		// What the 402 pages sell changed: read on the next page,
		// here and on every instance.
		h.account.offerChanged(id)
		if h.redis != nil {
			h.redis.offerChanged(id)
		}
		webhookEvents.WithLabelValues("offer").Inc()
		h.logger.Info("webhook event applied", zap.String("type", ev.Type), zap.String("event", ev.ID), zap.String("id", id))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	customer := eventCustomer(&ev)
	h.forgetLogins(&ev, customer)
	if revoked := revokedKeys(&ev); len(revoked) > 0 && customer != "" {
		// Out of the facts held at once, here and on every instance,
		// so that they cannot let a key in while Stripe cannot be
		// read for fresh ones (the read below may fail).
		h.keysRevoked(customer, revoked)
	}
	if customer == "" {
		webhookEvents.WithLabelValues("ignored").Inc()
		h.logger.Debug("webhook event ignored", zap.String("type", ev.Type), zap.String("event", ev.ID))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// A customer this node does not know is read when they next visit;
	// reading every customer of the account on renewal day would spend
	// Stripe's rate limit on nobody.
	read, err := h.refreshCustomer(customer, true)
	if read {
		webhookEvents.WithLabelValues("refreshed").Inc()
	} else {
		webhookEvents.WithLabelValues("invalidated").Inc()
	}
	if err != nil {
		// The customer stays marked stale: the next request reads
		// Stripe again, and until Stripe answers, known state serves.
		h.logger.Warn("webhook: could not read the customer again", zap.String("type", ev.Type), zap.String("event", ev.ID), zap.Error(err))
	}
	h.logger.Info("webhook event applied", zap.String("type", ev.Type), zap.String("event", ev.ID), zap.String("api_version", ev.APIVersion))
	w.WriteHeader(http.StatusOK)
	return nil
}

// forgetLogins drops what the login caches say about the email, metadata
// or customer of an event that may change who a site's user is at Stripe: a
// new or changed customer, or a completed checkout.
func (h *Handler) forgetLogins(ev *webhookEvent, customer string) {
	obj := &ev.Data.Object
	switch ev.Type {
	case "customer.created":
		h.forgetLoginsEverywhere(obj.Email, obj.Metadata, "")
	case "customer.updated", "customer.deleted":
		if obj.Object == "customer" {
			h.forgetLoginsEverywhere(obj.Email, obj.Metadata, customer)
		}
	case "checkout.session.completed":
		email := obj.CustomerDetails.Email
		if email == "" {
			email = obj.CustomerEmail
		}
		h.forgetLoginsEverywhere(email, nil, "")
	}
}

// forgetLoginsEverywhere makes this instance's login caches forget, and,
// with Redis, every instance's that has any: the email and the metadata
// values the account's caches look logins up by. The customer travels with
// the invalidation that serveWebhook publishes next, and every instance
// forgets its logins when it hears that.
func (h *Handler) forgetLoginsEverywhere(email string, metadata map[string]string, customer string) {
	h.account.forgetLogins(email, metadata, customer)
	if h.redis == nil || !h.account.hasLogins() {
		return
	}
	if metadata = h.account.loginMetadata(metadata); email != "" || metadata != nil {
		h.redis.forgetLogins(email, metadata)
	}
}

// eventCustomer returns the customer an event is about, for the event types
// that can change access; "" for the rest.
func eventCustomer(ev *webhookEvent) string {
	obj := &ev.Data.Object
	switch {
	case strings.HasPrefix(ev.Type, "customer.subscription."),
		strings.HasPrefix(ev.Type, "checkout.session."),
		strings.HasPrefix(ev.Type, "invoice."):
		return customerField(obj.Customer)
	case strings.HasPrefix(ev.Type, "customer.") && obj.Object == "customer":
		if validCustomerID(obj.ID) {
			return obj.ID
		}
	}
	return ""
}

// eventOffer returns the price or product a price.* or product.* event is
// about, "" for other events.
func eventOffer(ev *webhookEvent) string {
	obj := &ev.Data.Object
	switch {
	case strings.HasPrefix(ev.Type, "price.") && obj.Object == "price",
		strings.HasPrefix(ev.Type, "product.") && obj.Object == "product":
		if validOfferID(obj.ID) {
			return obj.ID
		}
	}
	return ""
}

// validOfferID: a price (or legacy plan) or product ID as Stripe writes them.
func validOfferID(id string) bool {
	return validStripeID(id, "price_") || validStripeID(id, "prod_") || validStripeID(id, "plan_")
}

// customerField reads a customer that is either an ID or an expanded object.
func customerField(raw json.RawMessage) string {
	var id string
	if json.Unmarshal(raw, &id) != nil {
		var obj struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		id = obj.ID
	}
	if !validCustomerID(id) {
		return ""
	}
	return id
}

// verifySignature checks a Stripe-Signature header (t=<unix>,v1=<hex>,…)
// over the raw body: any v1 may match, which is how Stripe signs while an
// endpoint secret is being rolled.
func verifySignature(body []byte, header, secret string, t time.Time) error {
	if header == "" {
		return errors.New("paywall: webhook without Stripe-Signature")
	}
	var ts int64 = -1
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return errors.New("paywall: webhook signature has a bad timestamp")
			}
			ts = n
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, sig)
			}
		}
	}
	if ts < 0 || len(sigs) == 0 {
		return errors.New("paywall: webhook signature header is malformed")
	}
	if d := t.Sub(time.Unix(ts, 0)); d > webhookTolerance || d < -webhookTolerance {
		return fmt.Errorf("paywall: webhook timestamp is %s away from now, beyond the %s tolerance", d.Round(time.Second), webhookTolerance)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	want := m.Sum(nil)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return errors.New("paywall: webhook signature does not match")
}

// seenEventsCap bounds the events remembered as applied.
const seenEventsCap = 10_000

// seenEventsFor is how long an applied event is remembered: a replay of its
// signed request is refused by the timestamp check after webhookTolerance.
const seenEventsFor = 2 * webhookTolerance

// eventSet remembers the IDs of recently applied events, so that one signed
// request replayed many times within the tolerance costs one Stripe read.
// It forgets the oldest first: they are the nearest to being refused by the
// timestamp check anyway, and applying an event twice is harmless (it only
// reads the customer again), so a full set costs reads, never access.
type eventSet struct {
	mu    sync.Mutex
	until map[string]int64 // event ID → unix nanos after which it is forgotten
	order []string         // ring of IDs, oldest at head
	head  int
}

// first reports whether id was not seen within seenEventsFor of t, and
// remembers it.
func (s *eventSet) first(id string, t int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = make(map[string]int64)
	}
	if exp, ok := s.until[id]; ok && t < exp {
		return false
	}
	if len(s.order) < seenEventsCap {
		s.order = append(s.order, id)
	} else {
		if old := s.order[s.head]; old != id {
			delete(s.until, old)
		}
		s.order[s.head] = id
		s.head = (s.head + 1) % seenEventsCap
	}
	s.until[id] = t + int64(seenEventsFor)
	return true
}
