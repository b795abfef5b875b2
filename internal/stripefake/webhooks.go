package stripefake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Event is a webhook event as generated (whether or not any endpoint got it).
type Event struct {
	ID      string
	Type    string
	Created time.Time
	// Payload is the exact JSON body sent to endpoints.
	Payload []byte
}

// Delivery is one attempt to deliver an event to an endpoint.
type Delivery struct {
	EventID    string
	Type       string
	URL        string
	Attempt    int       // 1 for the first try
	StatusCode int       // 0 when no response
	Err        string    // transport error, "" when a response came back
	OK         bool      // 2xx
	Final      bool      // no further attempt follows
	At         time.Time // by Options.Now
}

type endpoint struct {
	id      string
	url     string
	secret  string
	types   map[string]bool // nil: every type
	queue   []*Event
	running bool
}

// AddWebhookEndpoint registers an endpoint URL and its signing secret
// (whsec_…) and returns its id (we_…). With types given, only those event
// types are sent to it; otherwise all.
func (s *Server) AddWebhookEndpoint(url, secret string, types ...string) string {
	ep := &endpoint{id: newID("we_", 14), url: url, secret: secret}
	if len(types) > 0 {
		ep.types = map[string]bool{}
		for _, t := range types {
			ep.types[t] = true
		}
	}
	s.mu.Lock()
	s.endpoints = append(s.endpoints, ep)
	s.mu.Unlock()
	return ep.id
}

// RemoveWebhookEndpoint unregisters an endpoint; queued deliveries to it
// still run.
func (s *Server) RemoveWebhookEndpoint(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ep := range s.endpoints {
		if ep.id == id {
			s.endpoints = append(s.endpoints[:i:i], s.endpoints[i+1:]...)
			return
		}
	}
}

// NewWebhookSecret returns a random whsec_… secret.
func NewWebhookSecret() string { return newID("whsec_", 32) }

// SendEvent sends an event of the given type whose data.object is object
// marshalled as JSON (a map, a struct with json tags, or a json.RawMessage,
// for instance from Object). It returns the event id (evt_…).
func (s *Server) SendEvent(eventType string, object any) (string, error) {
	raw, err := json.Marshal(object)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emitLocked(eventType, json.RawMessage(raw)), nil
}

// SendSubscriptionEvent sends an event (for instance
// "customer.subscription.updated") carrying the subscription's current
// snapshot. Pair it with SetSubscription.
func (s *Server) SendSubscriptionEvent(eventType, subscriptionID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.subs[subscriptionID]
	if !ok {
		return "", ErrNotFound
	}
	return s.emitLocked(eventType, s.subJSONLocked(sub)), nil
}

// Events returns every event generated so far, oldest first.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Deliveries returns the log of delivery attempts, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// WaitDeliveries blocks until every queued delivery has succeeded or used up
// its attempts (bounded by WebhookAttempts × WebhookTimeout plus backoff).
func (s *Server) WaitDeliveries() {
	s.mu.Lock()
	ch := s.idle
	s.mu.Unlock()
	<-ch
}

// emitLocked sends an event whose data.object is object. s.mu must be held.
func (s *Server) emitLocked(eventType string, object any) string {
	return s.emitDataLocked(eventType, map[string]any{"object": object})
}

// emitUpdateLocked is emitLocked for *.updated events, whose data carries
// the old values of the changed fields in previous_attributes.
func (s *Server) emitUpdateLocked(eventType string, object any, previous map[string]any) string {
	return s.emitDataLocked(eventType, map[string]any{"object": object, "previous_attributes": previous})
}

// emitDataLocked builds an event with the given data, records it and queues
// it to every matching endpoint. s.mu must be held.
func (s *Server) emitDataLocked(eventType string, data map[string]any) string {
	now := s.now()
	ev := &Event{ID: newID("evt_", 24), Type: eventType, Created: now}
	var targets []*endpoint
	for _, ep := range s.endpoints {
		if ep.types == nil || ep.types[eventType] {
			targets = append(targets, ep)
		}
	}
	body := map[string]any{
		"id":               ev.ID,
		"object":           "event",
		"api_version":      s.opts.APIVersion,
		"created":          now.Unix(),
		"livemode":         false,
		"pending_webhooks": len(targets),
		"request":          map[string]any{"id": nil, "idempotency_key": nil},
		"type":             eventType,
		"data":             data,
	}
	payload, err := json.Marshal(body)
	if err != nil {
		// Objects are built from maps of plain values: this cannot happen.
		panic(fmt.Sprintf("stripefake: marshal event: %v", err))
	}
	ev.Payload = payload
	s.events = append(s.events, *ev)
	if s.isClosed {
		return ev.ID
	}
	for _, ep := range targets {
		ep.queue = append(ep.queue, ev)
		if s.pending == 0 {
			s.idle = make(chan struct{})
		}
		s.pending++
		if !ep.running {
			ep.running = true
			s.wg.Add(1)
			go s.runEndpoint(ep)
		}
	}
	return ev.ID
}

// runEndpoint delivers an endpoint's queue in order, one event at a time.
func (s *Server) runEndpoint(ep *endpoint) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(ep.queue) == 0 {
			ep.running = false
			s.mu.Unlock()
			return
		}
		ev := ep.queue[0]
		ep.queue = ep.queue[1:]
		s.mu.Unlock()

		s.deliver(ep, ev)

		s.mu.Lock()
		s.pending--
		if s.pending == 0 {
			close(s.idle)
		}
		s.mu.Unlock()
	}
}

// Sign returns a Stripe-Signature header value for payload signed with
// secret at time t.
func Sign(payload []byte, secret string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(payload)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func (s *Server) deliver(ep *endpoint, ev *Event) {
	backoff := s.opts.WebhookBackoff
	for attempt := 1; attempt <= s.opts.WebhookAttempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				s.record(Delivery{EventID: ev.ID, Type: ev.Type, URL: ep.url, Attempt: attempt, Err: "stripefake: server closed", Final: true})
				return
			}
			backoff *= 2
		}
		d := Delivery{EventID: ev.ID, Type: ev.Type, URL: ep.url, Attempt: attempt}
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, ep.url, bytes.NewReader(ev.Payload))
		if err != nil {
			d.Err, d.Final = err.Error(), true
			s.record(d)
			return
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("User-Agent", "Stripe/1.0 (stripefake)")
		req.Header.Set("Stripe-Signature", Sign(ev.Payload, ep.secret, s.opts.SignatureNow()))
		res, err := s.client.Do(req)
		if err != nil {
			d.Err = err.Error()
		} else {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
			d.StatusCode = res.StatusCode
			d.OK = res.StatusCode >= 200 && res.StatusCode < 300
		}
		d.Final = d.OK || attempt == s.opts.WebhookAttempts || s.ctx.Err() != nil
		s.record(d)
		if !d.OK && s.opts.Logf != nil {
			outcome := d.Err
			if outcome == "" {
				outcome = "status " + strconv.Itoa(d.StatusCode)
			}
			s.opts.Logf("webhook %s %s to %s failed (attempt %d of %d): %s", ev.Type, ev.ID, ep.url, attempt, s.opts.WebhookAttempts, outcome)
		}
		if d.Final {
			return
		}
	}
}

func (s *Server) record(d Delivery) {
	d.At = s.now()
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	if s.opts.OnDelivery != nil {
		s.opts.OnDelivery(d)
	}
}
