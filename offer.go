package paywall

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// What the 402 page sells: the product's name and the price, with its
// interval and currency, and the free trial when one is offered. They are
// read from Stripe when a page first needs them, never in Provision (which
// also runs for caddy validate and caddy adapt), and kept with the account
// (one read serves every handler that sells the same price):
//
//   - fresh for offerRefresh; after that the page keeps showing what it
//     has while one read runs in the background;
//   - read again by the next page after a price.updated or product.updated
//     webhook about it, here and, with Redis, on every instance;
//   - after a failed read, the page shows no price and nothing asks Stripe
//     for offerRetry. The very first read, and the one after a webhook,
//     are waited for offerWait at most: a page never waits on Stripe for
//     longer, and never fails for it.
const (
	offerRefresh = time.Hour
	offerRetry   = time.Minute
	offerWait    = 500 * time.Millisecond
)

// offer is a price and its product, as Stripe gave them.
type offer struct {
	price         string // price_…: the price a checkout sells
	product       string // prod_…
	name          string // the product's name
	amount        int64  // in the currency's minor unit; 0 when the price has no single amount
	currency      string // lower case ISO 4217
	interval      string // day, week, month or year; "" for a one-off price
	intervalCount int64
}

// offerCell is the account's copy of one offer, by the configured ID (a
// price, or a product whose default price is sold).
type offerCell struct {
	mu      sync.Mutex
	cur     *offer
	readAt  int64         // unix nanos of the read cur came from
	retryAt int64         // unix nanos: no read before this, after a failure
	stale   bool          // a webhook said it changed
	changes uint64        // how many times; a read that began before the last one leaves stale set
	flight  chan struct{} // closed when the read running now ends
}

// offerFor returns the offer of the ID, nil when none is known. It reads
// Stripe when the copy is missing, old or said to have changed, unless the
// last read failed in the past offerRetry or Stripe is down; only the first
// read, and one after a change, is waited for, and for offerWait at most.
func (h *Handler) offerFor(id string) *offer {
	a := h.account
	a.offersMu.Lock()
	c := a.offers[id]
	if c == nil {
		c = &offerCell{}
		a.offers[id] = c
	}
	a.offersMu.Unlock()

	t := now().UnixNano()
	c.mu.Lock()
	cur, stale := c.cur, c.stale
	due := cur == nil || stale || t-c.readAt >= int64(offerRefresh)
	if due && c.flight == nil && t >= c.retryAt && !a.down(t) {
		c.flight = make(chan struct{})
		a.reads.Add(1)
		go h.readOffer(id, c, c.flight, c.changes, a.soldGeneration())
	}
	wait := c.flight
	c.mu.Unlock()
	// A copy a webhook said changed is waited for as a first read is, so
	// that the page shows the price checkout now sells.
	if cur != nil && !stale || wait == nil {
		return cur
	}
	timer := time.NewTimer(offerWait)
	defer timer.Stop()
	select {
	case <-wait:
	case <-timer.C:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// readOffer reads the offer of id from Stripe into c and closes done. A
// change announced while it ran (changes moved on) leaves the copy stale,
// so that the next page reads it again. A product's default price is what
// its handlers' checkouts sell from now on, unless the product changed
// since gen (sellDefault).
func (h *Handler) readOffer(id string, c *offerCell, done chan struct{}, changes, gen uint64) {
	defer h.account.reads.Done()
	o, err := h.stripe.offer(context.Background(), id)
	t := now().UnixNano()
	c.mu.Lock()
	if err == nil {
		c.cur, c.readAt = &o, t
		c.stale = c.changes != changes
	} else {
		c.retryAt = t + int64(offerRetry)
	}
	c.flight = nil
	c.mu.Unlock()
	if err == nil && strings.HasPrefix(id, "prod_") {
		h.account.sellDefault(id, o.price, gen, nil)
	}
	close(done)
	if err != nil {
		msg := "stripe: could not read the price the page shows; the page shows none, and asks again in a minute"
		if errors.Is(err, errStripeForbidden) {
			msg = "stripe: the key may not read the price the page shows; give a restricted key Prices: read and Products: read"
		}
		if log, n := h.account.offerFailures.allow(t); log {
			h.logger.Warn(msg, zap.String("id", id), zap.Error(err), zap.Int("failures_since_last_line", n))
		}
	}
}

// offerChanged marks the offers a price.updated or product.updated names
// for a read on their next page, and forgets the default price of a product
// whose default may have changed.
func (a *account) offerChanged(id string) {
	a.offersMu.Lock()
	for key, c := range a.offers {
		c.mu.Lock()
		// A first read under way may be of what changed: its product
		// is not known yet, so it is read again too.
		unknown := c.cur == nil && c.flight != nil
		if key == id || unknown || c.cur != nil && (c.cur.price == id || c.cur.product == id) {
			c.stale = true
			c.changes++
		}
		c.mu.Unlock()
	}
	a.offersMu.Unlock()
	if !strings.HasPrefix(id, "prod_") {
		return
	}
	a.soldMu.Lock()
	defer a.soldMu.Unlock()
	a.soldGen++
	a.storeSold(id, nil)
}

// soldGeneration is the account's count of product changes, to give
// sellDefault.
func (a *account) soldGeneration() uint64 {
	a.soldMu.Lock()
	defer a.soldMu.Unlock()
	return a.soldGen
}

// sellDefault makes price what the handlers selling product (and reader,
// when given) sell, when no product.updated came since gen was taken,
// before the read that found it.
func (a *account) sellDefault(product, price string, gen uint64, reader *Handler) {
	a.soldMu.Lock()
	defer a.soldMu.Unlock()
	if a.soldGen != gen {
		return
	}
	if reader != nil {
		reader.soldPrice.Store(&price)
	}
	a.storeSold(product, &price)
}

// storeSold makes price what every handler selling product's default price
// sells (nil: read it again at the next checkout). Called with soldMu held.
func (a *account) storeSold(product string, price *string) {
	for _, h := range a.handlersSnapshot() {
		if len(h.prices) == 0 && len(h.products) > 0 && h.products[0] == product {
			h.soldPrice.Store(price)
		}
	}
}

// pageOffer is the offer a page shows: of the price a checkout sells, or of
// the product whose default price it sells.
func (h *Handler) pageOffer() *offer {
	if h.account == nil || h.stripe == nil {
		return nil // not provisioned
	}
	if len(h.prices) > 0 {
		return h.offerFor(h.prices[0])
	}
	if len(h.products) > 0 {
		return h.offerFor(h.products[0])
	}
	return nil
}

// offerWords are the page's words about the offer, in the strings of a
// language: the product, the price per interval, and the trial.
type offerWords struct {
	product string
	price   string // "$5.00 / month"; "" when the price has no single amount
	trial   string // "7 days free, then $5.00 / month"; "" without a trial
}

func (o *offer) words(strs map[string]string, lang string, trialDays int) offerWords {
	w := offerWords{product: o.name}
	if o.amount <= 0 || o.currency == "" {
		return w
	}
	w.price = money(o.amount, o.currency, lang)
	if o.interval != "" {
		w.price += " / " + intervalWords(strs, o.interval, o.intervalCount)
	}
	if trialDays > 0 {
		key := "trial_offer"
		if trialDays == 1 {
			key = "trial_offer_one"
		}
		w.trial = strings.NewReplacer("{n}", strconv.Itoa(trialDays), "{price}", w.price).Replace(strs[key])
	}
	return w
}

// together keeps a price and its interval on one line of the page:
// "$5.00 / month" wraps before or after it, never at its slash.
func together(s string) string { return strings.ReplaceAll(s, " / ", "\u00a0/\u00a0") }

// intervalWords names an interval in a language: "month", "3 months".
func intervalWords(strs map[string]string, interval string, count int64) string {
	if count <= 1 {
		if s, ok := strs["per_"+interval]; ok {
			return s
		}
		return interval
	}
	s, ok := strs["per_"+interval+"s"]
	if !ok {
		s = "{n} " + interval + "s"
	}
	return strings.ReplaceAll(s, "{n}", strconv.FormatInt(count, 10))
}

// Minor units. Stripe's amounts are in the currency's smallest unit: cents
// for most, none for the zero-decimal currencies, thousandths for the
// three-decimal ones (Stripe's list, "Supported currencies").
var (
	zeroDecimal  = set("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf")
	threeDecimal = set("bhd", "jod", "kwd", "omr", "tnd")
	// wholeDisplay are two-decimal at Stripe but shown in whole units,
	// as their prices are written ("Rp 50.000"), when the fraction is 0.
	wholeDisplay = set("idr", "huf", "twd", "cop", "isk", "pkr", "lkr", "mnt")
)

// currencySymbols by language; a currency not listed is written with its
// code ("CHF 5.00").
var currencySymbols = map[string]map[string]string{
	"en": {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "idr": "Rp", "aud": "A$", "cad": "CA$",
		"nzd": "NZ$", "hkd": "HK$", "sgd": "S$", "cny": "CN¥", "krw": "₩", "brl": "R$", "mxn": "MX$", "myr": "RM", "php": "₱"},
	"id": {"idr": "Rp", "usd": "US$", "eur": "€", "gbp": "£", "jpy": "JP¥", "aud": "AU$", "sgd": "SGD", "myr": "RM",
		"inr": "Rs", "cny": "CN¥", "krw": "₩", "hkd": "HK$"},
}

// separators by language: thousands, then decimal.
var separators = map[string][2]string{
	"en": {",", "."},
	"id": {".", ","},
}

// money writes an amount in a currency's minor unit as a person of the
// language reads it: "$5.00" in English, "Rp 50.000" and "US$5,00" in
// Indonesian. A symbol that ends in a letter is followed by a space.
func money(amount int64, currency, lang string) string {
	currency = strings.ToLower(currency)
	sep, ok := separators[lang]
	if !ok {
		lang, sep = "en", separators["en"]
	}
	digits := 2
	switch {
	case zeroDecimal[currency]:
		digits = 0
	case threeDecimal[currency]:
		digits = 3
	}
	unit := int64(1)
	for range digits {
		unit *= 10
	}
	neg := amount < 0
	if neg {
		amount = -amount
	}
	whole, frac := amount/unit, amount%unit
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	sym, ok := currencySymbols[lang][currency]
	if !ok {
		sym = strings.ToUpper(currency)
	}
	b.WriteString(sym)
	if last := sym[len(sym)-1]; last >= 'A' && last <= 'Z' || last >= 'a' && last <= 'z' {
		b.WriteString("\u00a0")
	}
	w := strconv.FormatInt(whole, 10)
	for i, d := range w {
		if i > 0 && (len(w)-i)%3 == 0 {
			b.WriteString(sep[0])
		}
		b.WriteRune(d)
	}
	if digits > 0 && !(frac == 0 && wholeDisplay[currency]) {
		f := strconv.FormatInt(frac, 10)
		b.WriteString(sep[1])
		b.WriteString(strings.Repeat("0", digits-len(f)))
		b.WriteString(f)
	}
	return b.String()
}

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// pageSite is who sells: the site's name, its logo and what a subscription
// gives (site_name, logo, benefits).
type pageSite struct {
	name     string
	named    bool // site_name was given: public_url's host needs no check
	logo     string
	benefits []string
	csp      string // the built-in page's policy: with a logo, images from this site too
	pageCSP  string // an operator's page's: with a logo on public_url, images from there too
}

// Bounds of the site's words: a name that fits a page's top line, and a
// short list of short lines.
const (
	maxSiteName    = 80
	maxBenefits    = 8
	maxBenefitLine = 120
)

func newPageSite(name, logo string, benefits []string, publicURL string) *pageSite {
	s := &pageSite{name: name, named: name != "", logo: logo, csp: builtinPageCSP, pageCSP: customPageCSP}
	if name == "" && publicURL != "" {
		s.name = siteName(publicURL)
	}
	for _, b := range benefits {
		s.benefits = append(s.benefits, strings.TrimSpace(b))
	}
	if logo != "" {
		s.csp = builtinPageCSPImages
		if !strings.HasPrefix(logo, "/") && publicURL != "" {
			// A logo at public_url's address, for visitors who
			// reach the site by another name too.
			s.csp = strings.Replace(builtinPageCSPImages, "img-src 'self'", "img-src 'self' "+publicURL, 1)
			s.pageCSP = strings.Replace(customPageCSP, "img-src 'self'", "img-src 'self' "+publicURL, 1)
		}
	}
	return s
}

// validate names the option that is wrong.
func (s *pageSite) validate(publicURL string) error {
	if s == nil {
		return nil // not provisioned
	}
	if s.named && !printable(s.name) {
		return errors.New("site_name must be one line of text, without control characters")
	}
	if n := utf8.RuneCountInString(s.name); s.named && n > maxSiteName {
		return fmt.Errorf("site_name must be at most %d characters (got %d)", maxSiteName, n)
	}
	if len(s.benefits) > maxBenefits {
		return fmt.Errorf("benefits: at most %d lines (got %d); a short list reads best", maxBenefits, len(s.benefits))
	}
	for i, b := range s.benefits {
		if b == "" || utf8.RuneCountInString(b) > maxBenefitLine || !printable(b) {
			return fmt.Errorf("benefits: line %d must have 1 to %d characters", i+1, maxBenefitLine)
		}
	}
	if s.logo == "" {
		return nil
	}
	if !printable(s.logo) || strings.ContainsAny(s.logo, "\\ ") {
		return fmt.Errorf("logo %q must be a path on this site, such as /logo.svg", s.logo)
	}
	if strings.HasPrefix(s.logo, "/") && !strings.HasPrefix(s.logo, "//") {
		return nil
	}
	u, err := url.Parse(s.logo)
	if err != nil || u.Host == "" || publicURL == "" || strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host) != publicURL {
		return fmt.Errorf("logo %q must be a path on this site, such as /logo.svg, or a URL on public_url: "+
			"the page's Content-Security-Policy loads images from this site only", s.logo)
	}
	return nil
}

// printable: one line of text, without control characters.
func printable(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}
