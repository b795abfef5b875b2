package paywall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Verified search engine crawlers (`crawlers google bing`): a request whose
// User-Agent claims to be one of them reads gated pages when its address is
// the crawler's, as the engines document the check: the reverse lookup of
// the client address names a host in the engine's crawler domains, and the
// forward lookup of that name gives the address back. A User-Agent alone
// is anyone's to send; the DNS of the engine's domains is not. Only requests
// that claim a configured crawler cost a lookup, and verdicts are kept.

// crawlerSpec is what identifies one engine's crawlers.
type crawlerSpec struct {
	agents []string   // User-Agent tokens that claim the crawler
	hosts  []hostRule // the reverse name must match one
}

// hostRule is a crawler's host names: in domain, and starting with prefix
// when it is set.
type hostRule struct {
	domain, prefix string
}

// crawlerSpecs are the engines `crawlers` knows, as each documents them.
// Google: its crawlers resolve in googlebot.com, and its special-case
// crawlers to rate-limited-proxy-….google.com. Not the rest of google.com
// (google-proxy-…, its user-triggered fetchers, which fetch what a user
// asks, with the headers the user sets) nor googleusercontent.com, which
// every Google Cloud VM can have. Not Google-InspectionTool either: the
// Rich Results Test, which anyone can point at any page and read the
// HTML it fetched. Bing: search.msn.com.
var crawlerSpecs = map[string]crawlerSpec{
	"google": {
		agents: []string{"Googlebot", "GoogleOther", "Storebot-Google"},
		hosts:  []hostRule{{domain: "googlebot.com"}, {domain: "google.com", prefix: "rate-limited-proxy-"}},
	},
	"bing": {
		agents: []string{"bingbot", "BingPreview", "msnbot", "adidxbot"},
		hosts:  []hostRule{{domain: "search.msn.com"}},
	},
}

// How long verdicts are kept: a day for a crawler, an hour for an address
// that is not one, a minute for a lookup that failed (a slow or broken
// resolver costs a claiming client the lookup timeout once a minute, not
// once per request). crawlerLookupTimeout bounds both lookups together.
var (
	crawlerYesFor        = 24 * time.Hour
	crawlerNoFor         = time.Hour
	crawlerErrorFor      = time.Minute
	crawlerLookupTimeout = 2 * time.Second
	crawlerResolver      = net.DefaultResolver // tests send it to a DNS server of their own
)

// maxCrawlerVerdicts bounds the verdicts kept.
const maxCrawlerVerdicts = 10_000

type crawlerVerifier struct {
	engines []string // configured, in crawlerSpecs

	mu       sync.RWMutex
	verdicts map[string]*crawlerVerdict // by engine and address
	flights  singleflight.Group
}

type crawlerVerdict struct {
	ok    bool
	until int64 // unix nanos
	useMark
}

func newCrawlerVerifier(engines []string) (*crawlerVerifier, error) {
	for _, e := range engines {
		if _, ok := crawlerSpecs[e]; !ok {
			return nil, fmt.Errorf("crawlers: unknown search engine %q (known: google, bing)", e)
		}
	}
	return &crawlerVerifier{engines: engines, verdicts: make(map[string]*crawlerVerdict)}, nil
}

// claimed returns the configured engine whose crawler the User-Agent
// claims to be, or "".
func (c *crawlerVerifier) claimed(ua string) string {
	if ua == "" {
		return ""
	}
	for _, e := range c.engines {
		for _, a := range crawlerSpecs[e].agents {
			if strings.Contains(ua, a) {
				return e
			}
		}
	}
	return ""
}

// verified reports whether the request comes from a crawler it claims to
// be, and which engine's.
func (c *crawlerVerifier) verified(r *http.Request) (string, bool) {
	engine := c.claimed(r.Header.Get("User-Agent"))
	if engine == "" {
		return "", false
	}
	addr, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return engine, false
	}
	addr = addr.Unmap()
	key := engine + " " + addr.String()
	// A no is also kept for an IPv6 address's /64, which one host holds
	// whole: a client cannot make each of its addresses cost a lookup.
	net64 := ""
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			net64 = engine + " " + p.String()
		}
	}
	t := now().UnixNano()
	c.mu.RLock()
	v := c.verdicts[key]
	if v == nil && net64 != "" {
		v = c.verdicts[net64]
	}
	c.mu.RUnlock()
	if v != nil && t < v.until {
		v.touch()
		return engine, v.ok
	}
	res, _, _ := c.flights.Do(key, func() (any, error) {
		ok, err := lookupCrawler(crawlerSpecs[engine], addr)
		keep := crawlerNoFor
		switch {
		case ok:
			keep = crawlerYesFor
		case err != nil:
			keep = crawlerErrorFor
		}
		c.remember(key, &crawlerVerdict{ok: ok, until: now().UnixNano() + int64(keep)})
		if !ok && net64 != "" {
			c.remember(net64, &crawlerVerdict{until: now().UnixNano() + int64(keep)})
		}
		return ok, nil
	})
	return engine, res.(bool)
}

func (c *crawlerVerifier) remember(key string, v *crawlerVerdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.verdicts[key]; !ok && len(c.verdicts) >= maxCrawlerVerdicts {
		evictUnused(c.verdicts, maxCrawlerVerdicts/100, func(k string) { delete(c.verdicts, k) })
	}
	c.verdicts[key] = v
}

// lookupCrawler checks an address against an engine's domains: reverse,
// then forward. A nil error with false is a definite no.
func lookupCrawler(spec crawlerSpec, addr netip.Addr) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), crawlerLookupTimeout)
	defer cancel()
	names, err := crawlerResolver.LookupAddr(ctx, addr.String())
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	for _, name := range names {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		if !crawlerHost(name, spec.hosts) {
			continue
		}
		ips, err := crawlerResolver.LookupNetIP(ctx, "ip", name+".") // absolute: no search domains
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return false, err
		}
		for _, ip := range ips {
			if ip.Unmap() == addr {
				return true, nil
			}
		}
	}
	return false, nil
}

func crawlerHost(name string, hosts []hostRule) bool {
	for _, h := range hosts {
		if strings.HasSuffix(name, "."+h.domain) && strings.HasPrefix(name, h.prefix) {
			return true
		}
	}
	return false
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
