package paywall

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The collectors are created once and registered on every Provision, so that
// a config reload neither fails nor resets them. No label carries a customer.
var (
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "decisions_total",
		Help:      "Gated requests by outcome and reason.",
	}, []string{"status", "reason"})

	// the hot path's counter, resolved once
	decisionsEntitled = decisions.WithLabelValues(statusEntitled, "any")

	cacheEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "stripe_events_total",
		Help:      "Stripe reads of customer state, Stripe errors, and stale state served during outages.",
	}, []string{"event"})

	webhookEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "webhooks_total",
		Help:      "Stripe webhook events by outcome.",
	}, []string{"outcome"})

	signinEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "signin_total",
		Help:      "Email sign-in: links requested, limited, not sent (no subscriber, or no trusted address), sent, mail failures, links used and refused.",
	}, []string{"event"})
)

var (
	redisErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "redis_errors_total",
		Help:      "Redis operations that failed or timed out; each instance then falls back to its own state.",
	})

	invalidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "invalidations_total",
		Help:      "Customer invalidations shared through Redis: published, received from other instances, lost (too many kept during an outage).",
	}, []string{"direction"})

	// cachedCustomers is read when scraped: it adds up the accounts'
	// caches, so that the gate keeps no gauge up to date.
	cachedCustomers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy",
		Subsystem: "paywall",
		Name:      "cached_customers",
		Help:      "Customers whose Stripe facts this instance holds in memory.",
	}, func() float64 {
		n := 0
		accounts.Range(func(_, v any) bool {
			n += v.(*account).len()
			return true
		})
		return float64(n)
	})
)

func registerMetrics(ctx caddy.Context) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{decisions, cacheEvents, webhookEvents, signinEvents, redisErrors, invalidations, cachedCustomers} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				ctx.Logger().Warn("registering metrics", zap.Error(err))
			}
		}
	}
}
