package paywall

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// sentMail is a mail the recording mailer was asked to send.
type sentMail struct {
	to  string
	msg message
}

// mailbox records mails instead of sending them, or fails to send them.
type mailbox struct {
	mu   sync.Mutex
	sent []sentMail
	fail error
}

func (m *mailbox) send(_ context.Context, to string, msg message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.sent = append(m.sent, sentMail{to, msg})
	return nil
}

func (m *mailbox) mails() []sentMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]sentMail(nil), m.sent...)
}

// withEmail configures email sign-in; the world's mailbox stands in for
// the SMTP server (the end-to-end tests use a real one).
func withEmail(h *Handler) {
	h.Email = &EmailConfig{SMTP: "127.0.0.1:1", From: "Example News <news@example.com>", TLS: "off"}
}

// signinWorld is a world with email sign-in and a mailbox.
func signinWorld(t *testing.T, opts ...option) (*world, *mailbox) {
	w := newWorld(t, append([]option{withEmail}, opts...)...)
	box := &mailbox{}
	w.h.signin.mailer = box
	return w, box
}

// askLink posts an address to the sign-in form, as the 402 page does, and
// waits for the work after the answer.
func (w *world) askLink(c *http.Client, email string, header ...string) *http.Response {
	w.t.Helper()
	resp := w.post(c, "/paywall/signin", url.Values{"email": {email}, "return": {"/premium/a"}}, header...)
	w.h.account.reads.Wait()
	return resp
}

// post sends a form, as a page of this site does.
func (w *world) post(c *http.Client, path string, form url.Values, header ...string) *http.Response {
	w.t.Helper()
	h := append([]string{"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin"}, header...)
	return w.doBody(c, http.MethodPost, path, form.Encode(), h...)
}

func (w *world) doBody(c *http.Client, method, path, body string, header ...string) *http.Response {
	w.t.Helper()
	req, err := http.NewRequest(method, w.site.URL+path, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+`)

// linkIn returns the sign-in link of a mail's plain text, as a path.
func (w *world) linkIn(m sentMail) string {
	w.t.Helper()
	link := linkPattern.FindString(m.msg.Text)
	if !strings.HasPrefix(link, w.site.URL+"/paywall/signin?token=") {
		w.t.Fatalf("mail has no sign-in link of %s:\n%s", w.site.URL, m.msg.Text)
	}
	if !strings.Contains(m.msg.HTML, html.EscapeString(link)) {
		w.t.Errorf("the HTML part lacks the link %s", link)
	}
	return strings.TrimPrefix(link, w.site.URL)
}

func tokenOf(t *testing.T, link string) string {
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

func TestSigninMailsASubscriberALinkThatWorksOnceInAnyBrowser(t *testing.T) {
	w, box := signinWorld(t)
	cus, _, _ := w.subscriber("active")

	asker := w.browser()
	resp := w.askLink(asker, "reader@example.com", "Accept-Language", "id")
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(bodyOf(resp), "Periksa kotak masuk") {
		t.Fatalf("ask: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
	mails := box.mails()
	if len(mails) != 1 || mails[0].to != "reader@example.com" {
		t.Fatalf("mails %+v, want one to reader@example.com", mails)
	}
	m := mails[0]
	if m.msg.Lang != "id" || !strings.Contains(m.msg.Subject, "127.0.0.1") || !strings.Contains(m.msg.Text, "15 menit") || !strings.Contains(m.msg.Text, "abaikan") {
		t.Errorf("mail in Indonesian with the site, lifetime and what to do if not asked for:\n%s\n%s", m.msg.Subject, m.msg.Text)
	}
	link := w.linkIn(m)
	if !strings.Contains(link, "&return=%2Fpremium%2Fa") {
		t.Errorf("link %s does not carry the return path", link)
	}
	if strings.Contains(link, cus) {
		t.Errorf("link %s shows the customer ID", link)
	}

	// A mail scanner, a link preview, and the reader on a new device
	// all GET it: none of that uses it up.
	phone := w.browser()
	for i := 0; i < 2; i++ {
		resp := w.get(w.browser(), link)
		if resp.StatusCode != http.StatusOK || !strings.Contains(bodyOf(resp), `id="signin-confirm"`) || len(resp.Cookies()) != 0 {
			t.Fatalf("GET %d of the link: %d cookies %v\n%s", i, resp.StatusCode, resp.Cookies(), bodyOf(resp))
		}
		if !strings.Contains(bodyOf(resp), "r•••@example.com") || strings.Contains(bodyOf(resp), "reader@example.com") {
			t.Errorf("the confirm page should name whose account, masked:\n%s", bodyOf(resp))
		}
	}
	if resp := w.get(phone, link, "Accept", "application/json"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET of the link as JSON: %d", resp.StatusCode)
	}
	resp = w.post(phone, "/paywall/signin", url.Values{"token": {tokenOf(t, link)}, "return": {"/premium/a"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" || cookieNamed(resp, "paywall") == nil {
		t.Fatalf("POST of the link: %d Location %q cookies %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	if resp := w.get(phone, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("article after sign-in: %d", resp.StatusCode)
	}

	// Used: a second POST, anywhere, and a GET, get the page that offers
	// a new link.
	for _, resp := range []*http.Response{
		w.post(w.browser(), "/paywall/signin", url.Values{"token": {tokenOf(t, link)}}),
		w.get(w.browser(), link),
	} {
		if resp.StatusCode != http.StatusGone || !strings.Contains(bodyOf(resp), `data-reason="signin_link_used"`) || !strings.Contains(bodyOf(resp), `id="signin-email"`) {
			t.Errorf("used link: %d\n%s", resp.StatusCode, bodyOf(resp))
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("a used link set cookies %v", resp.Cookies())
		}
	}
}

func TestSigninAnswersAlikeForEveryAddressAndMailsOnlySubscribers(t *testing.T) {
	w, box := signinWorld(t)
	w.fake.CreateCustomer("never@example.com") // a customer who never subscribed
	other := w.fake.CreateCustomer("other@example.com")
	w.fake.AddPrice(stripefake.Price{ID: "price_other", Product: "prod_other", UnitAmount: 500})
	w.fake.CreateSubscription(other, "price_other", "active") // subscribes to something else
	w.subscriber("active")

	var first string
	for _, email := range []string{"reader@example.com", "never@example.com", "other@example.com", "nobody@example.com"} {
		resp := w.askLink(w.browser(), email)
		body := bodyOf(resp)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: %d", email, resp.StatusCode)
		}
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("the answer for %s differs from a subscriber's", email)
		}
	}
	mails := box.mails()
	if len(mails) != 1 || mails[0].to != "reader@example.com" {
		t.Fatalf("mails %+v, want only the subscriber's", mails)
	}
	// API clients get the same facts as JSON.
	resp := w.post(w.browser(), "/paywall/signin", url.Values{"email": {"nobody@example.com"}}, "Accept", "application/json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(bodyOf(resp)), &doc); err != nil || resp.StatusCode != http.StatusAccepted ||
		resp.Header.Get("Content-Type") != "application/json" || doc["reason"] != "signin_sent" {
		t.Fatalf("JSON: %d %s %v %s", resp.StatusCode, resp.Header.Get("Content-Type"), err, bodyOf(resp))
	}
	w.h.account.reads.Wait()
}

func TestSigninPicksTheEntitledCustomerOfAnAddress(t *testing.T) {
	w, box := signinWorld(t)
	paid := w.fake.CreateCustomer("twice@example.com")
	w.fake.CreateSubscription(paid, testPrice, "active")
	lapsed := w.fake.CreateCustomer("twice@example.com") // newer, subscription ended
	w.fake.CreateSubscription(lapsed, testPrice, "canceled")
	w.fake.CreateCustomer("twice@example.com") // newest, never subscribed

	w.askLink(w.browser(), "twice@example.com")
	mails := box.mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails", len(mails))
	}
	c := w.browser()
	w.post(c, "/paywall/signin", url.Values{"token": {tokenOf(t, w.linkIn(mails[0]))}})
	if resp := w.get(c, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in as the entitled customer: want 200, got %d", resp.StatusCode)
	}
	if got := w.placeholder("http.paywall.customer"); got != paid {
		t.Errorf("signed in as %v, want %s", got, paid)
	}
}

func TestSigninLinkExpires(t *testing.T) {
	w, box := signinWorld(t, func(h *Handler) { h.SigninLinkTTL = caddy.Duration(10 * time.Minute) })
	w.subscriber("active")
	w.askLink(w.browser(), "reader@example.com")
	link := w.linkIn(box.mails()[0])
	if !strings.Contains(box.mails()[0].msg.Text, "10 minutes") {
		t.Errorf("the mail does not say how long the link lasts:\n%s", box.mails()[0].msg.Text)
	}
	w.clock.Advance(10*time.Minute + time.Second)
	for _, resp := range []*http.Response{w.get(w.browser(), link), w.post(w.browser(), "/paywall/signin", url.Values{"token": {tokenOf(t, link)}})} {
		if resp.StatusCode != http.StatusGone || !strings.Contains(bodyOf(resp), `data-reason="signin_link_expired"`) || len(resp.Cookies()) != 0 {
			t.Errorf("expired link: %d %v\n%s", resp.StatusCode, resp.Cookies(), bodyOf(resp))
		}
	}
}

func TestSigninRefusesMadeUpAndAlteredLinks(t *testing.T) {
	w, box := signinWorld(t)
	w.subscriber("active")
	w.askLink(w.browser(), "reader@example.com")
	token := tokenOf(t, w.linkIn(box.mails()[0]))
	altered := []byte(token)
	altered[len(altered)/2] ^= 1
	for _, tok := range []string{"x", string(altered), token + "A", token[:len(token)-2], strings.Repeat("A", 600)} {
		resp := w.post(w.browser(), "/paywall/signin", url.Values{"token": {tok}})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(bodyOf(resp), `data-reason="signin_link_invalid"`) || len(resp.Cookies()) != 0 {
			t.Errorf("token %.20q…: %d %v", tok, resp.StatusCode, resp.Cookies())
		}
	}
}

func TestSigninLinkFromAnotherSiteIsOnlyShown(t *testing.T) {
	// Another site posting a link it holds would sign the victim's
	// browser in as the other site's customer.
	w, box := signinWorld(t)
	w.subscriber("active")
	w.askLink(w.browser(), "reader@example.com")
	token := tokenOf(t, w.linkIn(box.mails()[0]))
	resp := w.post(w.browser(), "/paywall/signin", url.Values{"token": {token}}, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 || !strings.Contains(bodyOf(resp), `id="signin-confirm"`) {
		t.Fatalf("cross-site POST of a link: %d %v", resp.StatusCode, resp.Cookies())
	}
	// Nor may another site's page make us mail anyone.
	w.askLink(w.browser(), "reader@example.com", "Sec-Fetch-Site", "cross-site")
	if n := len(box.mails()); n != 1 {
		t.Errorf("a cross-site form made %d mails, want none more", n-1)
	}
}

func TestSigninLimitsPerAddressAndPerClient(t *testing.T) {
	w, box := signinWorld(t)
	w.subscriber("active")
	lookups := w.fake.Calls("GET /v1/customers")
	for i := 0; i < 5; i++ {
		if resp := w.askLink(w.browser(), "reader@example.com"); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("ask %d: %d", i, resp.StatusCode)
		}
	}
	if n := len(box.mails()); n != defaultSigninLimit {
		t.Errorf("%d mails to one address, want the limit %d", n, defaultSigninLimit)
	}
	if n := w.fake.Calls("GET /v1/customers") - lookups; n != defaultSigninLimit {
		t.Errorf("%d Stripe lookups, want one per request within the limit (%d): a limited one costs nothing", n, defaultSigninLimit)
	}
	// One client asking for many addresses is held to its own limit, which
	// every request from it counts against: the five above, and five more.
	for i := 0; i < 15; i++ {
		w.askLink(w.browser(), "someone"+string(rune('a'+i))+"@example.com")
	}
	if n := w.fake.Calls("GET /v1/customers") - lookups; n != defaultSigninLimit+defaultSigninIPLimit-5 {
		t.Errorf("%d lookups from one client, want %d: its limit of %d requests, two of which the address's limit refused",
			n, defaultSigninLimit+defaultSigninIPLimit-5, defaultSigninIPLimit)
	}
	// The limits come back with time.
	w.clock.Advance(defaultSigninLimitPer)
	w.askLink(w.browser(), "reader@example.com")
	if n := len(box.mails()); n != defaultSigninLimit+1 {
		t.Errorf("after the window: %d mails, want %d", n, defaultSigninLimit+1)
	}
}

func TestSigninNeverMailsALinkToAHostTheClientChose(t *testing.T) {
	w, box := signinWorld(t)
	w.subscriber("active")
	resp := w.askLink(w.browser(), "reader@example.com", "Host", "attacker.example")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ask with a forged Host: %d", resp.StatusCode)
	}
	if n := len(box.mails()); n != 0 {
		t.Fatalf("%d mails with a forged Host; links must never carry a client-chosen host", n)
	}
	// With public_url, the link is on it, whatever the Host says.
	w2, box2 := signinWorld(t, func(h *Handler) { h.PublicURL = "https://news.example.com" })
	w2.subscriber("active")
	w2.askLink(w2.browser(), "reader@example.com", "Host", "attacker.example")
	if m := box2.mails(); len(m) != 1 || !strings.Contains(m[0].msg.Text, "https://news.example.com/paywall/signin?token=") {
		t.Fatalf("with public_url: %+v", m)
	}
}

func TestSigninMailFailureNeverReachesTheVisitor(t *testing.T) {
	w, box := signinWorld(t)
	w.subscriber("active")
	box.fail = errors.New("dial tcp 127.0.0.1:1: connection refused")
	before := testutil.ToFloat64(signinEvents.WithLabelValues("mail_failed"))
	resp := w.askLink(w.browser(), "reader@example.com")
	if resp.StatusCode != http.StatusAccepted || strings.Contains(bodyOf(resp), "refused") {
		t.Fatalf("ask with the SMTP server down: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
	if got := testutil.ToFloat64(signinEvents.WithLabelValues("mail_failed")) - before; got != 1 {
		t.Errorf("mail_failed counted %v, want 1", got)
	}
	if resp := w.get(w.browser(), "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("402 page with the SMTP server down: %d", resp.StatusCode)
	}
}

func TestSigninFormIsOfferedOnlyToVisitorsNotKnown(t *testing.T) {
	w, _ := signinWorld(t)
	resp := w.get(w.browser(), "/premium/a")
	body := bodyOf(resp)
	if !strings.Contains(body, `action="/paywall/signin"`) || !strings.Contains(body, `name="return" value="/premium/a"`) || strings.Contains(body, "<details") {
		t.Errorf("no_subscription page lacks the sign-in form:\n%s", body)
	}
	_, p := w.problem(w.browser(), "/premium/a")
	if p["signin_url"] != w.site.URL+"/paywall/signin" {
		t.Errorf("problem document signin_url %v", p["signin_url"])
	}
	// A known visitor whose subscription ended is to subscribe again.
	_, _, lapsed := w.subscriber("canceled")
	if body := bodyOf(w.get(lapsed, "/premium/a")); strings.Contains(body, "/paywall/signin") {
		t.Errorf("the page of a lapsed subscriber offers sign-in:\n%s", body)
	}
	// Without an email block there is neither the form nor the endpoint.
	plain := newWorld(t)
	if body := bodyOf(plain.get(plain.browser(), "/premium/a")); strings.Contains(body, "/paywall/signin") {
		t.Errorf("sign-in offered without an email block")
	}
	if resp := plain.get(plain.browser(), "/paywall/signin"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/paywall/signin without an email block: %d", resp.StatusCode)
	}
}

func TestSigninFormPageAndBadAddresses(t *testing.T) {
	w, box := signinWorld(t)
	resp := w.get(w.browser(), "/paywall/signin?return=/premium/a")
	if resp.StatusCode != http.StatusOK || !strings.Contains(bodyOf(resp), `id="signin-email"`) {
		t.Fatalf("sign-in page: %d", resp.StatusCode)
	}
	if resp := w.do(w.browser(), http.MethodHead, "/paywall/signin?token=x"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
	for _, bad := range []string{"", "not an address", "a@b", "<a@example.com>", "Ann <a@example.com>", strings.Repeat("a", 250) + "@example.com"} {
		resp := w.askLink(w.browser(), bad)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(bodyOf(resp), `data-reason="signin_email_invalid"`) {
			t.Errorf("address %q: %d", bad, resp.StatusCode)
		}
	}
	if n := len(box.mails()); n != 0 {
		t.Errorf("%d mails for bad addresses", n)
	}
}

func TestSigninTokenRoundTrip(t *testing.T) {
	w, _ := signinWorld(t)
	exp := now().Add(time.Minute).Truncate(time.Second)
	tok, err := w.h.signinToken("cus_123", "ann@example.com", exp)
	if err != nil {
		t.Fatal(err)
	}
	link, ok := w.h.openSigninToken(tok)
	if !ok || link.customer != "cus_123" || link.email != "ann@example.com" || !link.expires.Equal(exp) || len(link.id) != signinNonceSize {
		t.Fatalf("open: %v %+v", ok, link)
	}
	tok2, _ := w.h.signinToken("cus_123", "ann@example.com", exp)
	if tok2 == tok {
		t.Error("two tokens for one customer are the same")
	}
	if strings.Contains(tok, "ann") {
		t.Error("the token shows the address")
	}
	for in, want := range map[string]string{"ann@example.com": "a•••@example.com", "Ünal@example.com": "Ü•••@example.com", "x": "", "@example.com": ""} {
		if got := maskEmail(in); got != want {
			t.Errorf("maskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUsedLinksAreNeverForgottenBeforeTheyExpire(t *testing.T) {
	var u usedLinks
	const t0, exp = int64(1000), int64(2000)
	for i := 0; i < maxUsedSignins; i++ {
		if !u.use(strconv.Itoa(i), t0, exp) {
			t.Fatalf("link %d refused before the set was full", i)
		}
	}
	if u.use("0", t0, exp) {
		t.Fatal("a used link was accepted again")
	}
	if u.use("new", t0, exp) {
		t.Fatal("a full set of unexpired links made room by forgetting one")
	}
	if !u.used("1", t0) {
		t.Fatal("a used link was forgotten")
	}
	if !u.use("new", exp, exp+1000) {
		t.Fatal("once the links expired, a new one was refused")
	}
}

func TestSigninLinksNeedPublicURLOffLoopback(t *testing.T) {
	// On HTTPS without public_url, whoever asks chooses the server name
	// of their connection: a link must not be built from it.
	w, _ := signinWorld(t)
	core, logs := observer.New(zap.WarnLevel)
	w.h.logger = zap.New(core)
	// A checkout refused first for want of an address: its line does
	// not silence the one that says why links are not mailed.
	if _, ok := w.h.origin(httptest.NewRequest(http.MethodGet, "http://news.example.com/paywall/checkout", nil)); ok {
		t.Fatal("a plain-HTTP host trusted")
	}
	r := httptest.NewRequest(http.MethodPost, "https://news.example.com/paywall/signin", nil)
	r.TLS = &tls.ConnectionState{ServerName: "news.example.com"}
	if base, ok := w.h.origin(r); !ok || base != "https://news.example.com" {
		t.Fatalf("origin for Stripe's return URLs: %q %v", base, ok)
	}
	for range 2 {
		if base, ok := w.h.signinOrigin(r); ok {
			t.Errorf("a sign-in link would point to %q, a name the client chose", base)
		}
	}
	if n, m := logs.FilterMessageSnippet("checkout and the billing portal").Len(), logs.FilterMessageSnippet("sign-in links are mailed only").Len(); n != 1 || m != 1 {
		t.Errorf("%d checkout lines and %d sign-in lines, want one each: %v", n, m, logs.All())
	}
	r = httptest.NewRequest(http.MethodPost, "http://localhost:8080/paywall/signin", nil)
	if base, ok := w.h.signinOrigin(r); !ok || base != "http://localhost:8080" {
		t.Errorf("loopback: %q %v", base, ok)
	}
	// Behind a proxy, localhost is every payer's own machine.
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	if base, ok := w.h.signinOrigin(r); ok {
		t.Errorf("a forwarded loopback request: a link to %q", base)
	}
}

func TestSigninMailFailureLogsNoAddress(t *testing.T) {
	w, box := signinWorld(t)
	w.subscriber("active")
	core, logs := observer.New(zap.DebugLevel)
	w.h.logger = zap.New(core)
	box.fail = errors.New("failed to send mail. affected recipient(s): reader@example.com, error: 550 no such user")
	w.askLink(w.browser(), "reader@example.com")
	for _, e := range logs.All() {
		if e.Level > zap.DebugLevel && strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "reader@example.com") {
			t.Errorf("an address at level %s: %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
	if logs.FilterMessage("could not send a sign-in mail").Len() != 1 {
		t.Errorf("the failure was not logged: %v", logs.All())
	}
}

func TestSigninLookupsSpendNoCheckoutBudget(t *testing.T) {
	w, box := signinWorld(t)
	w.subscriber("active")
	w.h.account.signinBudget = newTokenBucket(1, 1)
	before := w.h.account.checkoutBudget.tokens
	w.askLink(w.browser(), "reader@example.com")
	w.askLink(w.browser(), "reader@example.com") // over the sign-in budget
	if n := len(box.mails()); n != 1 {
		t.Errorf("%d mails, want 1 within the sign-in budget", n)
	}
	if after := w.h.account.checkoutBudget.tokens; after != before {
		t.Errorf("sign-in spent the checkout budget: %v tokens, was %v", after, before)
	}
}
