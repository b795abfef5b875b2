package paywall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// offerReads are the calls that read what the page sells: once an hour for
// the account, whoever asks.
func offerReads(f *stripefake.Server) int {
	return f.Calls("GET /v1/prices/{id}") + f.Calls("GET /v1/products/{id}")
}

// visitorCalls are the other calls: those a visitor's request made.
func visitorCalls(f *stripefake.Server) int { return f.Calls("") - offerReads(f) }

const nbsp = "\u00a0"

// pageOf is a page's body with its prices' slashes written as spaces: the
// page keeps "$5.00 / month" on one line with no-break spaces (together).
func pageOf(resp *http.Response) string {
	return strings.ReplaceAll(bodyOf(resp), nbsp+"/"+nbsp, " / ")
}

func TestMoneyInEachLanguage(t *testing.T) {
	for _, tc := range []struct {
		amount   int64
		currency string
		lang     string
		want     string
	}{
		{500, "usd", "en", "$5.00"},
		{500, "usd", "id", "US$5,00"},
		{5000000, "idr", "id", "Rp" + nbsp + "50.000"},
		{5000000, "IDR", "en", "Rp" + nbsp + "50,000"},
		{5000050, "idr", "id", "Rp" + nbsp + "50.000,50"},
		{123456789, "eur", "id", "€1.234.567,89"},
		{123456789, "eur", "en", "€1,234,567.89"},
		{1000, "jpy", "en", "¥1,000"},
		{1000, "jpy", "id", "JP¥1.000"},
		{12345, "bhd", "en", "BHD" + nbsp + "12.345"},
		{150000, "chf", "en", "CHF" + nbsp + "1,500.00"},
		{7, "usd", "en", "$0.07"},
		{99900, "gbp", "fr", "£999.00"}, // a language without separators of its own: English's
	} {
		if got := money(tc.amount, tc.currency, tc.lang); got != tc.want {
			t.Errorf("money(%d, %s, %s) = %q, want %q", tc.amount, tc.currency, tc.lang, got, tc.want)
		}
	}
}

func TestOfferWords(t *testing.T) {
	monthly := &offer{name: "Premium", amount: 500, currency: "usd", interval: "month", intervalCount: 1}
	quarterly := &offer{name: "Premium", amount: 5000000, currency: "idr", interval: "month", intervalCount: 3}
	tiered := &offer{name: "Metered", currency: "usd", interval: "month"}
	for _, tc := range []struct {
		o                    *offer
		lang                 string
		trial                int
		price, trialSentence string
	}{
		{monthly, "en", 0, "$5.00 / month", ""},
		{monthly, "en", 7, "$5.00 / month", "7 days free, then $5.00 / month"},
		{monthly, "en", 1, "$5.00 / month", "1 day free, then $5.00 / month"},
		{quarterly, "id", 0, "Rp" + nbsp + "50.000 / 3 bulan", ""},
		{quarterly, "id", 14, "Rp" + nbsp + "50.000 / 3 bulan", "Gratis 14 hari, lalu Rp" + nbsp + "50.000 / 3 bulan"},
		{&offer{amount: 5000000, currency: "idr", interval: "month"}, "id", 0, "Rp" + nbsp + "50.000 / bulan", ""},
		{&offer{amount: 6000, currency: "usd", interval: "year", intervalCount: 2}, "en", 0, "$60.00 / 2 years", ""},
		{tiered, "en", 7, "", ""}, // no single amount: no price, and no trial sentence without one
	} {
		w := tc.o.words(pageStrings[tc.lang], tc.lang, tc.trial)
		if w.price != tc.price || w.trial != tc.trialSentence || w.product != tc.o.name {
			t.Errorf("%+v in %s, trial %d: %+v, want %q and %q", *tc.o, tc.lang, tc.trial, w, tc.price, tc.trialSentence)
		}
	}
}

// The page names the site, the product and its price in the visitor's
// language, with the trial a new visitor would get; a program reads the
// same in the problem document. Provision asked Stripe nothing, and the
// price was read once for every page.
func TestThePageSellsTheProductAtItsPrice(t *testing.T) {
	w := newWorld(t, func(h *Handler) {
		h.TrialDays = 7
		h.PublicURL = ""
		h.SiteName = "The Reserved Code"
		h.Benefits = []string{"Every article, & the archive", "A new essay each week"}
	})
	if n := w.fake.Calls(""); n != 0 {
		t.Fatalf("Provision made %d Stripe calls, want none", n)
	}
	c := w.browser()
	resp := w.get(c, "/premium/a", "Accept", "text/html")
	if raw := bodyOf(resp); !strings.Contains(raw, "then $5.00"+nbsp+"/"+nbsp+"month</p>") {
		t.Errorf("the price can wrap at its slash:\n%s", raw)
	}
	body := pageOf(resp)
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{
		`<p id="site" class="site"><span>The Reserved Code</span></p>`,
		`<p id="product" class="product">Premium</p>`,
		`<p id="price" class="price">7 days free, then $5.00 / month</p>`,
		`<li>Every article, &amp; the archive</li>`,
		`<title>Subscription required (402 Payment required) · The Reserved Code</title>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `class="status"`) || strings.Contains(body, "<h1>402") {
		t.Error("the status is still the page's headline")
	}

	resp = w.get(c, "/premium/b", "Accept", "text/html", "Accept-Language", "id")
	if body := pageOf(resp); !strings.Contains(body, `<p id="price" class="price">Gratis 7 hari, lalu US$5,00 / bulan</p>`) {
		t.Errorf("the Indonesian page's price:\n%s", body)
	}

	_, p := w.problem(c, "/premium/c")
	o, _ := p["offer"].(map[string]any)
	want := map[string]any{"site": "The Reserved Code", "product": "Premium", "amount": 500.0, "currency": "usd",
		"interval": "month", "interval_count": 1.0, "trial_days": 7.0, "price": "$5.00 / month", "trial": "7 days free, then $5.00 / month"}
	if got, _ := json.Marshal(o); string(got) != string(mustMarshal(t, want)) {
		t.Errorf("problem offer %s, want %s", got, mustMarshal(t, want))
	}
	if n := offerReads(w.fake); n != 1 {
		t.Errorf("three pages read the price %d times, want once", n)
	}
	if n := w.fake.Calls("GET /v1/prices/{id}"); n != 1 {
		t.Errorf("the price was read with %d calls to /v1/prices, want 1 (with its product expanded)", n)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A product's default price is what its checkout sells and its page shows;
// when the product changes at Stripe (product.updated), both follow.
func TestAProductsDefaultPriceFollowsItsWebhook(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Prices = nil; h.Products = []string{"prod_demo"} })
	w.fake.AddPrice(stripefake.Price{ID: "price_yearly", Product: "prod_demo", ProductName: "Premium", UnitAmount: 5000, Interval: "year"})
	c := w.browser()
	if body := pageOf(w.get(c, "/premium/a", "Accept", "text/html")); !strings.Contains(body, "$5.00 / month") {
		t.Fatalf("the page before the change:\n%s", body)
	}
	// A checkout before the change sells the default of then.
	if got := w.startPaid(w.browser(), "/premium/a").Price; got != testPrice {
		t.Fatalf("the checkout before product.updated sells %s, want %s", got, testPrice)
	}
	if err := w.fake.UpdateProduct("prod_demo", "Premium Yearly", "price_yearly"); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	// The next page waits for the product's read, as for a first one, and
	// shows the price checkout now sells.
	reads := offerReads(w.fake)
	body := pageOf(w.get(c, "/premium/a", "Accept", "text/html"))
	w.h.account.reads.Wait()
	if n := offerReads(w.fake) - reads; n != 1 {
		t.Errorf("product.updated made %d reads of the product, want 1", n)
	}
	if !strings.Contains(body, "$50.00 / year") || !strings.Contains(body, ">Premium Yearly<") {
		t.Errorf("the first page after product.updated:\n%s", body)
	}
	// The checkout sells the new default.
	w.subscribe(c, "/premium/a")
	if got := w.fake.Sessions()[0].Price; got != "price_yearly" { // newest first
		t.Errorf("the checkout after product.updated sells %s, want price_yearly", got)
	}
}

// A price Stripe cannot give shows the page without it, never an error,
// and is not asked for again for a minute; a copy an hour old is read
// again while the page keeps showing it.
func TestThePriceIsReadHourlyAndAFailureCostsNothingForAMinute(t *testing.T) {
	w := newWorld(t)
	c := w.browser()
	page := func() string {
		t.Helper()
		resp := w.get(c, "/premium/a", "Accept", "text/html")
		if resp.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("status %d, want 402 whatever happened to the price", resp.StatusCode)
		}
		w.h.account.reads.Wait()
		return pageOf(resp)
	}
	w.fake.SetOutageFor("GET /v1/prices/{id}", stripefake.OutageErrors)
	if body := page(); strings.Contains(body, `id="price"`) || strings.Contains(body, `id="product"`) || !strings.Contains(body, `id="subscribe"`) {
		t.Errorf("the page while the price cannot be read:\n%s", body)
	}
	reads := offerReads(w.fake)
	w.clock.Advance(offerRetry - time.Second)
	page()
	if n := offerReads(w.fake) - reads; n != 0 {
		t.Errorf("%d reads of the price within a minute of a failure, want 0", n)
	}
	if w.h.account.down(now().UnixNano()) {
		t.Error("a failed read of the price took Stripe for down")
	}

	w.fake.SetOutageFor("GET /v1/prices/{id}", stripefake.OutageNone)
	w.clock.Advance(2 * time.Second)
	if body := page(); !strings.Contains(body, "$5.00 / month") {
		t.Errorf("the page a minute after the failure:\n%s", body)
	}
	reads = offerReads(w.fake)
	w.clock.Advance(offerRefresh - time.Second)
	page()
	if n := offerReads(w.fake) - reads; n != 0 {
		t.Errorf("%d reads of the price within the hour, want 0", n)
	}
	w.clock.Advance(2 * time.Second)
	page()
	if n := offerReads(w.fake) - reads; n != 1 {
		t.Errorf("%d reads of the price after the hour, want 1", n)
	}
	// A failed hourly read keeps what the page knew.
	w.clock.Advance(offerRefresh)
	w.fake.SetOutageFor("GET /v1/prices/{id}", stripefake.OutageErrors)
	page()
	if body := page(); !strings.Contains(body, "$5.00 / month") {
		t.Errorf("a failed hourly read lost the price the page knew:\n%s", body)
	}
}

// A Stripe that never answers the price holds no page: it is shown without
// the price while the read goes on.
func TestAHungPriceReadHoldsNoPage(t *testing.T) {
	w := newWorld(t)
	w.fake.SetOutageFor("GET /v1/prices/{id}", stripefake.OutageHang)
	resp := w.get(w.browser(), "/premium/a", "Accept", "text/html")
	if body := pageOf(resp); resp.StatusCode != http.StatusPaymentRequired || strings.Contains(body, `id="price"`) {
		t.Errorf("the page while the price read hangs: %d\n%s", resp.StatusCode, body)
	}
	// The read is still waiting (the fake holds it until the world ends).
	a := w.h.account
	a.offersMu.Lock()
	cell := a.offers[testPrice]
	a.offersMu.Unlock()
	cell.mu.Lock()
	flying := cell.flight != nil
	cell.mu.Unlock()
	if !flying {
		t.Error("the page waited for the hung read to end")
	}
	w.fake.SetOutageFor("GET /v1/prices/{id}", stripefake.OutageNone)
}

// One trial per customer: a known customer who had one is not offered
// another on the page (nor given one at checkout, see hadTrial); and
// "Already subscribed?" is for visitors this site does not know, never
// beside "Subscribe again".
func TestALapsedSubscriberIsOfferedToSubscribeAgainOnly(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.TrialDays = 7 })
	cus, sub, c := w.subscriber("trialing")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("a trialing subscriber: %d", resp.StatusCode)
	}
	if err := w.fake.CancelSubscription(sub); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	w.h.account.invalidate(cus)
	body := pageOf(w.get(c, "/premium/a", "Accept", "text/html"))
	if !strings.Contains(body, `data-reason="`) || strings.Contains(body, `data-reason="no_subscription"`) {
		t.Fatalf("the lapsed subscriber's page:\n%s", body)
	}
	if !strings.Contains(body, `<p id="price" class="price">$5.00 / month</p>`) || strings.Contains(body, "days free") {
		t.Errorf("a customer who had a trial is offered another:\n%s", body)
	}
	for _, help := range []string{`id="other-device"`, `id="signin"`} {
		if strings.Contains(body, help) {
			t.Errorf("the lapsed subscriber's page has %s beside subscribing again", help)
		}
	}

	anon := pageOf(w.get(w.browser(), "/premium/a", "Accept", "text/html"))
	if !strings.Contains(anon, "7 days free, then $5.00 / month") || !strings.Contains(anon, `id="other-device"`) {
		t.Errorf("a new visitor's page lacks the trial or the help for subscribers on another device:\n%s", anon)
	}
}

// site_name, logo and benefits reach the page, escaped; a logo opens the
// page's policy to images from this site, and only then.
func TestTheSiteLogoAndBenefits(t *testing.T) {
	t.Setenv("PAYWALL_TEST_BENEFIT", "Weekly essays")
	w := newWorld(t, func(h *Handler) {
		h.Logo = "/img/logo.svg"
		h.PublicURL = "https://news.example"
		h.Benefits = []string{`<script>alert(1)</script>`, "{env.PAYWALL_TEST_BENEFIT}", "Save 20% {launch week}"}
	})
	resp := w.get(w.browser(), "/premium/a", "Accept", "text/html")
	body := pageOf(resp)
	for _, want := range []string{
		`<p id="site" class="site"><img src="/img/logo.svg" alt="" height="28"><span>news.example</span></p>`,
		`<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>`,
		`<li>Weekly essays</li>`,          // placeholders in benefits are replaced
		`<li>Save 20% {launch week}</li>`, // and braces that are none kept
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s:\n%s", want, body)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' data:") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP with a logo: %s", csp)
	}
	plain := newWorld(t)
	if csp := plain.get(plain.browser(), "/premium/a").Header.Get("Content-Security-Policy"); csp != builtinPageCSP {
		t.Errorf("CSP without a logo: %s", csp)
	}
}

func TestSiteOptionsThatCannotBeShown(t *testing.T) {
	long := strings.Repeat("x", maxBenefitLine+1)
	for _, tc := range []struct {
		name string
		set  func(*Handler)
		want string
	}{
		{"logo on another site", func(h *Handler) { h.Logo = "https://cdn.example/logo.png" }, "logo"},
		{"logo protocol-relative", func(h *Handler) { h.Logo = "//cdn.example/logo.png" }, "logo"},
		{"logo URL without public_url", func(h *Handler) { h.Logo = "https://news.example/logo.png"; h.PublicURL = "" }, "logo"},
		{"logo javascript", func(h *Handler) { h.Logo = "javascript:alert(1)" }, "logo"},
		{"nine benefits", func(h *Handler) { h.Benefits = make([]string, 9) }, "benefits"},
		{"a long benefit", func(h *Handler) { h.Benefits = []string{long} }, "benefits: line 1"},
		{"an empty benefit", func(h *Handler) { h.Benefits = []string{"ok", " "} }, "benefits: line 2"},
		{"site_name on two lines", func(h *Handler) { h.SiteName = "News\nDaily" }, "site_name"},
		{"a long site_name", func(h *Handler) { h.SiteName = strings.Repeat("n", maxSiteName+1) }, "site_name"},
	} {
		h := &Handler{
			SecretKey: "{env.PAYWALL_TEST_SECRET_KEY}", Prices: []string{testPrice},
			CookieSecret: "{env.PAYWALL_TEST_COOKIE_SECRET}", PublicURL: "https://news.example",
		}
		tc.set(h)
		err := h.Provision(moduleTestContext(t))
		if err == nil {
			err = h.Validate()
			_ = h.Cleanup()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	h := &Handler{SecretKey: "{env.PAYWALL_TEST_SECRET_KEY}", Prices: []string{testPrice}, CookieSecret: "{env.PAYWALL_TEST_COOKIE_SECRET}",
		PublicURL: "https://News.Example", Logo: "https://news.example/logo.png"}
	if err := h.Provision(moduleTestContext(t)); err != nil {
		t.Fatal(err)
	}
	defer h.Cleanup()
	if err := h.Validate(); err != nil {
		t.Errorf("a logo on public_url: %v", err)
	}
	// Visitors who reach the site by another name still load it.
	if !strings.Contains(h.site.csp, "img-src 'self' https://news.example data:") {
		t.Errorf("CSP with a logo on public_url: %s", h.site.csp)
	}
	// An operator's page that shows .Logo loads it too.
	h.page = template.Must(template.New("operator's").Parse(`<img src="{{.Logo}}">`))
	var buf bytes.Buffer
	rendered, err := h.renderPage(&buf, PageData{Logo: h.site.logo}, false)
	for _, csp := range []string{h.pageCSP(false), rendered} { // HEAD's and GET's
		if err != nil || !strings.Contains(csp, "img-src 'self' https://news.example data:") || strings.Contains(csp, "script-src") {
			t.Errorf("an operator's page's CSP with a logo on public_url: %s (%v)", csp, err)
		}
	}
}

func TestBenefitsInTheCaddyfile(t *testing.T) {
	h, err := parseTestCaddyfile(`paywall {
		secret_key {env.STRIPE_SECRET_KEY}
		price price_123
		site_name "The Reserved Code"
		logo /logo.svg
		benefits "On the line" {
			Every article, and the archive
			"A new essay   each week"
			"Braces { } quoted"
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if h.SiteName != "The Reserved Code" || h.Logo != "/logo.svg" ||
		strings.Join(h.Benefits, "|") != "On the line|Every article, and the archive|A new essay   each week|Braces { } quoted" {
		t.Errorf("parsed %q %q %q", h.SiteName, h.Logo, h.Benefits)
	}
	for _, tc := range []struct{ input, want string }{
		{"benefits", "benefits: give one line"},
		{"benefits {\n}", "benefits: give one line"},
		{"benefits {\n a\n b\n c\n d\n e\n f\n g\n h\n i\n}", "benefits: at most 8"},
		{"benefits {\n a {\n b\n }\n}", "benefits: quote a line that holds { or }"},
		{"benefits {\n a }\n}\ndry_run", "benefits: quote a line that holds { or }"},
		{"benefits a }", "benefits: quote a line that holds { or }"},
		{"site_name", "site_name"},
		{"logo /a.svg /b.svg", "logo: too many arguments"},
	} {
		_, err := parseTestCaddyfile("paywall {\nsecret_key {env.K}\nprice price_1\n" + tc.input + "\n}")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.input, err, tc.want)
		}
	}
}

// price.updated and product.updated mark the offer for a read here and,
// through Redis, on the other instances; other events leave it alone.
func TestOfferWebhooksAndTheirNews(t *testing.T) {
	redis := startRedis(t)
	a := newWorld(t, withRedis(redis.Addr()))
	b := a.sibling(withRedis(redis.Addr()))
	c := a.browser()
	for _, w := range []*world{a, b} {
		if body := pageOf(w.get(c, "/premium/a", "Accept", "text/html")); !strings.Contains(body, "$5.00 / month") {
			t.Fatalf("no price on the page:\n%s", body)
		}
	}
	b.listening()
	stale := func(w *world) bool {
		w.h.account.offersMu.Lock()
		defer w.h.account.offersMu.Unlock()
		cell := w.h.account.offers[testPrice]
		cell.mu.Lock()
		defer cell.mu.Unlock()
		return cell.stale
	}
	for _, tc := range []struct {
		event, object, id string
		want              bool
	}{
		{"price.updated", "price", "price_other", false},
		{"product.updated", "product", "prod_other", false},
		{"customer.updated", "product", "prod_demo", false},
		{"product.updated", "product", "prod_demo", true},
	} {
		body := []byte(`{"id":"evt_` + strings.ReplaceAll(tc.id, "_", "") + strings.ReplaceAll(tc.event, ".", "") + `","type":"` + tc.event +
			`","data":{"object":{"id":"` + tc.id + `","object":"` + tc.object + `"}}}`)
		if status := a.postWebhook(body, a.signed(body, now(), hookSecret)); status != 200 {
			t.Fatalf("%s: %d", tc.event, status)
		}
		if got := stale(a); got != tc.want {
			t.Errorf("%s of %s: marked stale %v, want %v", tc.event, tc.id, got, tc.want)
		}
	}
	eventually(t, 10*time.Second, "the other instance hears of the product", func() bool { return stale(b) })
}

// With refusals handle_errors, the site's own error page reads what the
// built-in page would show, in the visitor's language.
func TestHandleErrorsPlaceholdersNameTheOffer(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Refusals = refusalsHandleErrors; h.TrialDays = 7 })
	repl, err := w.handOver("/premium/a", nil, "Accept-Language", "id")
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("refusal: %v", err)
	}
	for k, want := range map[string]string{
		"http.paywall.product": "Premium",
		"http.paywall.price":   "US$5,00 / bulan",
		"http.paywall.trial":   "Gratis 7 hari, lalu US$5,00 / bulan",
	} {
		if got, _ := repl.GetString(k); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
}

// A restricted key that may not read prices shows the page without the
// price, and the log says, once, which permissions to give it.
func TestARestrictedKeyWithoutPricesReadIsToldWhatToGive(t *testing.T) {
	w := newWorld(t)
	core, logs := observer.New(zapcore.WarnLevel)
	w.h.logger = zap.New(core)
	w.fake.SetPermissionDenied("GET /v1/prices/{id}", "rak_price_read")
	for range 3 {
		if body := pageOf(w.get(w.browser(), "/premium/a", "Accept", "text/html")); strings.Contains(body, `id="price"`) {
			t.Errorf("a price on the page that cannot read it:\n%s", body)
		}
	}
	w.h.account.reads.Wait()
	lines := logs.FilterMessageSnippet("Prices: read and Products: read").All()
	if len(lines) != 1 || logs.Len() != 1 {
		t.Errorf("log: %d lines naming the permissions, %d in all, want 1: %v", len(lines), logs.Len(), logs.All())
	}
	if w.h.account.down(now().UnixNano()) {
		t.Error("a missing permission took Stripe for down")
	}
}

// gatedStripe holds each read of an offer until the test releases it.
type gatedStripe struct {
	stripeAPI
	entered chan struct{}
	release chan struct{}
	reads   atomic.Int32
}

func (g *gatedStripe) offer(ctx context.Context, id string) (offer, error) {
	g.reads.Add(1)
	g.entered <- struct{}{}
	<-g.release
	return g.stripeAPI.offer(ctx, id)
}

// A price.updated or product.updated that lands while the offer is being
// read may describe what that read missed: the copy stays marked, and the
// next page reads it again.
func TestAChangeDuringAReadIsReadAgain(t *testing.T) {
	for _, sold := range []string{testPrice, "prod_demo"} {
		t.Run(sold, func(t *testing.T) {
			w := newWorld(t, func(h *Handler) {
				if strings.HasPrefix(sold, "prod_") {
					h.Prices, h.Products = nil, []string{sold}
				}
			})
			g := &gatedStripe{stripeAPI: w.h.stripe, entered: make(chan struct{}, 2), release: make(chan struct{}, 2)}
			w.h.stripe = g
			go w.h.pageOffer()
			<-g.entered
			w.h.account.offerChanged("prod_demo") // the product of what is being read
			g.release <- struct{}{}
			w.h.account.reads.Wait()
			if p := w.h.soldPrice.Load(); sold == "prod_demo" && p != nil {
				t.Errorf("checkout sells %s, read before the change", *p)
			}
			w.h.account.offersMu.Lock()
			c := w.h.account.offers[sold]
			w.h.account.offersMu.Unlock()
			c.mu.Lock()
			cur, stale := c.cur, c.stale
			c.mu.Unlock()
			if cur == nil || cur.name != "Premium" {
				t.Fatalf("offer after the read: %+v", cur)
			}
			if !stale {
				t.Fatal("the copy read before the change is taken for current: the change was lost")
			}
			go w.h.pageOffer() // the next page reads it again
			<-g.entered
			g.release <- struct{}{}
			w.h.account.reads.Wait()
			if n := g.reads.Load(); n != 2 {
				t.Errorf("%d reads, want 2", n)
			}
			if p := w.h.soldPrice.Load(); sold == "prod_demo" && (p == nil || *p != testPrice) {
				t.Errorf("after the second read checkout sells %v, want %s", p, testPrice)
			}
		})
	}
}

// gatedDefault holds each read of a product's default price until released.
type gatedDefault struct {
	stripeAPI
	entered, release chan struct{}
}

func (g *gatedDefault) defaultPrice(ctx context.Context, product string) (string, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.stripeAPI.defaultPrice(ctx, product)
}

// A product.updated that lands while checkout reads the product's default
// price leaves nothing kept: the read may have found the default of before.
func TestAProductChangeDuringCheckoutsReadKeepsNoPrice(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Prices = nil; h.Products = []string{"prod_demo"} })
	g := &gatedDefault{stripeAPI: w.h.stripe, entered: make(chan struct{}, 1), release: make(chan struct{}, 1)}
	w.h.stripe = g
	done := make(chan string, 1)
	go func() {
		p, _ := w.h.priceToSell(context.Background(), now())
		done <- p
	}()
	<-g.entered
	w.h.account.offerChanged("prod_demo")
	g.release <- struct{}{}
	if p := <-done; p != testPrice {
		t.Fatalf("the checkout sells %q", p)
	}
	if p := w.h.soldPrice.Load(); p != nil {
		t.Fatalf("kept %s, read before the change", *p)
	}
	// A read with no change beside it is kept.
	go func() {
		p, _ := w.h.priceToSell(context.Background(), now())
		done <- p
	}()
	<-g.entered
	g.release <- struct{}{}
	<-done
	if p := w.h.soldPrice.Load(); p == nil || *p != testPrice {
		t.Errorf("kept %v after a read with no change, want %s", p, testPrice)
	}
}

// Without the webhook, the hourly read of a product brings its new
// default price to checkout too, not only to the page; before the hour,
// nothing is read and checkout sells the default it knows.
func TestAProductsNewDefaultReachesCheckoutWithinTheHour(t *testing.T) {
	w := newWorld(t, func(h *Handler) { h.Prices = nil; h.Products = []string{"prod_demo"} })
	w.fake.AddPrice(stripefake.Price{ID: "price_yearly", Product: "prod_demo", ProductName: "Premium", UnitAmount: 5000, Interval: "year"})
	c := w.browser()
	w.get(c, "/premium/a", "Accept", "text/html")
	if got := w.startPaid(w.browser(), "/premium/a").Price; got != testPrice {
		t.Fatalf("checkout sells %s, want %s", got, testPrice)
	}
	w.fake.RemoveWebhookEndpoint(w.hook) // the webhook is not set up
	if err := w.fake.UpdateProduct("prod_demo", "", "price_yearly"); err != nil {
		t.Fatal(err)
	}
	reads := offerReads(w.fake)
	w.clock.Advance(offerRefresh - time.Second)
	w.get(c, "/premium/a", "Accept", "text/html")
	w.h.account.reads.Wait()
	if got := w.startPaid(w.browser(), "/premium/a").Price; got != testPrice || offerReads(w.fake) != reads {
		t.Fatalf("before the hour: checkout sells %s after %d reads, want %s and none", got, offerReads(w.fake)-reads, testPrice)
	}
	w.clock.Advance(2 * time.Second)
	w.get(c, "/premium/a", "Accept", "text/html")
	w.h.account.reads.Wait()
	if got := w.startPaid(w.browser(), "/premium/a").Price; got != "price_yearly" {
		t.Errorf("an hour after the change, checkout sells %s, want price_yearly", got)
	}
}

// With refusals handle_errors every refusal placeholder is set on every
// refusal handed to the site, so that an error page shared by several never
// shows one raw (Caddy leaves a placeholder nobody set as written); the
// offer's are empty where nothing is sold, and cost no read.
func TestHandleErrorsPlaceholdersAreEmptyWhereNothingIsSold(t *testing.T) {
	w := newWorld(t, withAPIKeys(5), func(h *Handler) {
		h.Refusals = refusalsHandleErrors
		h.CheckoutLimit = &Limit{Max: 1, Per: caddy.Duration(time.Hour)}
	})
	if _, err := w.handOver("/paywall/checkout?return=%2F", nil); err != nil {
		t.Fatalf("the address's one checkout: %v", err)
	}
	_, _, c := w.subscriber("active")
	reads := offerReads(w.fake)
	for _, tc := range []struct {
		name   string
		status int
		serve  func() (*caddy.Replacer, error)
	}{
		{"checkout_limit", http.StatusTooManyRequests, func() (*caddy.Replacer, error) { return w.handOver("/paywall/checkout?return=%2F", nil) }},
		{"invalid key", http.StatusUnauthorized, func() (*caddy.Replacer, error) {
			return w.handOver("/premium/a", nil, "Authorization", "Bearer pwk_"+strings.Repeat("a", 60))
		}},
		{"Stripe down", http.StatusServiceUnavailable, func() (*caddy.Replacer, error) {
			w.fake.SetOutage(stripefake.OutageErrors)
			return w.handOver("/premium/a", c)
		}},
	} {
		repl, err := tc.serve()
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode != tc.status {
			t.Fatalf("%s: %v, want a %d handed to handle_errors", tc.name, err, tc.status)
		}
		for _, k := range []string{"checkout_url", "portal_url", "signin_url", "retry_after", "product", "price", "trial"} {
			v, ok := repl.GetString("http.paywall." + k)
			if !ok {
				t.Errorf("%s: {http.paywall.%s} is not set", tc.name, k)
			}
			if (k == "product" || k == "price" || k == "trial") && v != "" {
				t.Errorf("%s: {http.paywall.%s} = %q, want empty", tc.name, k, v)
			}
		}
	}
	if n := offerReads(w.fake) - reads; n != 0 {
		t.Errorf("the refusals read the price %d times", n)
	}
}
