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
	agents  []string // User-Agent tokens that claim the crawler
	domains []string // the reverse name must end in one, with a dot before it
}

// crawlerSpecs are the engines `crawlers` knows, as each documents them.
// Google: its common crawlers resolve in googlebot.com or google.com; not
// googleusercontent.com, which its user-triggered fetchers use and every
// Google Cloud VM can have. Bing: search.msn.com.
var crawlerSpecs = map[string]crawlerSpec{
	"google": {
		agents:  []string{"Googlebot", "Google-InspectionTool", "GoogleOther", "Storebot-Google"},
		domains: []string{"googlebot.com", "google.com"},
	},
	"bing": {
		agents:  []string{"bingbot", "BingPreview", "msnbot", "adidxbot"},
		domains: []string{"search.msn.com"},
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
	t := now().UnixNano()
	c.mu.RLock()
	v := c.verdicts[key]
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
		if !inDomains(name, spec.domains) {
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

func inDomains(name string, domains []string) bool {
	for _, d := range domains {
		if strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
