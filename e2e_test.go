package paywall_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// e2eCaddyfile is the site under test: premium content behind the paywall,
// secrets from the environment, Stripe being the fake at {env.E2E_API_URL}.
const e2eCaddyfile = `http://127.0.0.1:{{.HTTPPort}} {
	paywall /premium/* {
		secret_key {env.E2E_STRIPE_SECRET_KEY}
		price ` + "price_demo_monthly" + `
		webhook_secret {env.E2E_STRIPE_WEBHOOK_SECRET}
		api_url {env.E2E_API_URL}
	}
	respond "premium content"
}
`

// TestEndToEnd runs the real Caddy binary with the plugin (CADDY_BIN, or
// ./cmd/caddy built once) against the Stripe fake on loopback, through a
// visitor's whole life: refused, subscribes, is let in, cancels, is
// refused again.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy")
	}
	if stripefake.DefaultPrice.ID != "price_demo_monthly" {
		t.Fatalf("the fake's default price is %s; update e2eCaddyfile", stripefake.DefaultPrice.ID)
	}
	fake := stripefake.New(stripefake.Options{Logf: t.Logf})
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)

	secretKey := "sk_test_e2e" + e2eRandomHex(t)
	webhookSecret := stripefake.NewWebhookSecret()
	inst := caddyrun.Start(t, e2eCaddyfile, map[string]string{
		"E2E_STRIPE_SECRET_KEY":     secretKey,
		"E2E_STRIPE_WEBHOOK_SECRET": webhookSecret,
		"E2E_API_URL":               fake.URL(),
	})
	fake.AddWebhookEndpoint(inst.URL()+"/paywall/webhook", webhookSecret)
	// Cleanups run last-in first-out: deliveries finish while Caddy runs.
	t.Cleanup(fake.WaitDeliveries)
	site := inst.URL()
	premium := site + "/premium/x"

	browser := e2eBrowser(t)

	t.Run("anonymous visitor gets 402 without a call to Stripe", func(t *testing.T) {
		fake.ResetCalls()
		res, body := e2eGet(t, browser, premium, "text/html")
		if res.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("GET /premium/x = %d, want 402\n%s", res.StatusCode, body)
		}
		link := res.Header.Get("Link")
		if !regexp.MustCompile(`^<[^>]*/paywall/checkout\?[^>]*>; rel="payment"$`).MatchString(link) {
			t.Errorf("Link = %q, want <…/paywall/checkout…>; rel=\"payment\"", link)
		}
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}

		res, body = e2eGet(t, browser, premium, "application/json")
		if res.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("GET /premium/x (JSON) = %d, want 402", res.StatusCode)
		}
		if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, "json") {
			t.Errorf("Content-Type = %q, want a JSON problem document", ct)
		}
		p := e2eProblem(t, body)
		if p.Reason != "no_subscription" || p.Status != http.StatusPaymentRequired {
			t.Errorf("problem = %+v, want reason no_subscription, status 402", p)
		}
		// The page's price is read once, whoever asks.
		if n := visitorCalls(fake); n != 0 || offerReads(fake) > 1 {
			t.Errorf("the fake got %d API calls for anonymous visits, want 0 (and the price at most once): %v", n, fake.CallCounts())
		}
	})

	var successURL string
	t.Run("checkout, payment and success let the visitor in", func(t *testing.T) {
		res, body := e2eGet(t, browser, site+"/paywall/checkout?return=/premium/x", "text/html")
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("GET /paywall/checkout = %d, want 303\n%s", res.StatusCode, body)
		}
		loc := res.Header.Get("Location")
		if !strings.HasPrefix(loc, fake.URL()+"/") {
			t.Fatalf("checkout redirects to %q, not to the fake's hosted page", loc)
		}
		nonce := e2eCookie(browser, site, "paywall_checkout")
		if nonce == "" {
			t.Fatal("no checkout nonce cookie after GET /paywall/checkout")
		}
		sessions := fake.Sessions()
		if len(sessions) != 1 || sessions[0].URL != loc {
			t.Fatalf("fake sessions %+v, want one whose URL is %s", sessions, loc)
		}
		sess := sessions[0]
		if parts := strings.Split(nonce, "."); len(parts) != 4 || sess.ClientReferenceID != parts[0] || parts[1] != sess.ID || parts[2] != sess.Price {
			t.Errorf("client_reference_id %q and session %s are not the checkout cookie's %q", sess.ClientReferenceID, sess.ID, nonce)
		}
		if !strings.Contains(sess.SuccessURL, "session_id={CHECKOUT_SESSION_ID}") {
			t.Fatalf("success_url %q lacks the literal {CHECKOUT_SESSION_ID}", sess.SuccessURL)
		}

		// What the hosted pay form does, then where Stripe sends the
		// visitor.
		if err := fake.CompleteCheckout(sess.ID, stripefake.CardSuccess); err != nil {
			t.Fatalf("CompleteCheckout: %v", err)
		}
		successURL = strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", sess.ID)
		if !strings.HasPrefix(successURL, site+"/paywall/success?") {
			t.Fatalf("success URL %q is not this site's", successURL)
		}
		res, body = e2eGet(t, browser, successURL, "text/html")
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/premium/x" {
			t.Fatalf("GET success URL = %d to %q, want 303 to /premium/x\n%s", res.StatusCode, res.Header.Get("Location"), body)
		}
		if e2eCookie(browser, site, "paywall") == "" {
			t.Fatal("no identity cookie after the success URL")
		}
		if e2eCookie(browser, site, "paywall_checkout") != "" {
			t.Error("the checkout nonce cookie outlived the success URL")
		}

		res, body = e2eGet(t, browser, premium, "text/html")
		if res.StatusCode != http.StatusOK || body != "premium content" {
			t.Fatalf("GET /premium/x after paying = %d %q, want 200 \"premium content\"", res.StatusCode, body)
		}
	})
	if successURL == "" {
		t.Fatal("no success URL: the steps below depend on the checkout")
	}

	t.Run("the success URL in another browser grants nothing", func(t *testing.T) {
		other := e2eBrowser(t)
		res, _ := e2eGet(t, other, successURL, "text/html")
		for _, c := range res.Cookies() {
			if c.Name == "paywall" && c.Value != "" && c.MaxAge >= 0 {
				t.Errorf("another browser got an identity cookie from the success URL (status %d)", res.StatusCode)
			}
		}
		if res.StatusCode == http.StatusSeeOther && res.Header.Get("Location") == "/premium/x" && e2eCookie(other, site, "paywall") != "" {
			t.Error("another browser was let through the success URL")
		}
		res, body := e2eGet(t, other, premium, "application/json")
		if res.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("GET /premium/x in another browser = %d, want 402\n%s", res.StatusCode, body)
		}
	})

	t.Run("cancellation through a webhook ends access", func(t *testing.T) {
		// Webhooks of the checkout (customer.created, …) first.
		fake.WaitDeliveries()
		sessions := fake.Sessions()
		subs := fake.Subscriptions(sessions[0].Customer)
		if len(subs) != 1 || subs[0].Status != "active" {
			t.Fatalf("subscriptions of the new customer: %+v, want one active", subs)
		}
		before := len(fake.Deliveries())
		if err := fake.CancelSubscription(subs[0].ID); err != nil {
			t.Fatal(err)
		}
		fake.WaitDeliveries()
		var delivered bool
		for _, d := range fake.Deliveries()[before:] {
			if d.Type == "customer.subscription.deleted" {
				if !d.OK {
					t.Fatalf("delivery of %s to Caddy failed: status %d %s", d.Type, d.StatusCode, d.Err)
				}
				delivered = true
			}
		}
		if !delivered {
			t.Fatal("customer.subscription.deleted was not delivered")
		}
		for _, d := range fake.Deliveries() {
			if !d.OK {
				t.Errorf("a webhook delivery failed: %+v", d)
			}
		}

		res, body := e2eGet(t, browser, premium, "application/json")
		if res.StatusCode != http.StatusPaymentRequired {
			t.Fatalf("GET /premium/x after cancelling = %d, want 402\n%s", res.StatusCode, body)
		}
		if p := e2eProblem(t, body); p.Reason != "subscription_ended" {
			t.Errorf("reason = %q, want subscription_ended", p.Reason)
		}
	})

	t.Run("admin API config holds no secret", func(t *testing.T) {
		res, err := http.Get(inst.AdminURL() + "/config/")
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /config/ = %s", res.Status)
		}
		for name, secret := range map[string]string{"secret key": secretKey, "webhook secret": webhookSecret} {
			if strings.Contains(string(cfg), secret) {
				t.Errorf("the admin API's config shows the %s", name)
			}
		}
		if !strings.Contains(string(cfg), "{env.E2E_STRIPE_SECRET_KEY}") {
			t.Errorf("config does not keep the secret_key placeholder verbatim:\n%s", cfg)
		}
	})

	t.Run("logs hold no secret", func(t *testing.T) {
		logs := inst.Logs()
		if !strings.Contains(logs, "webhook event applied") {
			t.Logf("no webhook log line (logging may have changed):\n%s", logs)
		}
		if strings.Contains(logs, secretKey) || strings.Contains(logs, webhookSecret) {
			t.Error("Caddy's output holds a secret")
		}
	})
}

// TestEndToEndValidate runs `caddy validate` on bad configurations: the
// error names the option and never repeats a key.
func TestEndToEndValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy")
	}
	t.Parallel()
	site := func(block string) string {
		return "http://127.0.0.1:{{.HTTPPort}} {\n\tpaywall /premium/* {\n" + block + "\t}\n\trespond ok\n}\n"
	}
	const price = "\t\tprice price_demo_monthly\n"

	out, err := caddyrun.Validate(t, site("\t\tsecret_key pk_test_abc\n"+price), nil)
	if err == nil {
		t.Error("a publishable key as secret_key validated")
	}
	if !strings.Contains(out, "secret_key") || strings.Contains(out, "pk_test_abc") {
		t.Errorf("publishable key: output must name secret_key and not repeat the key:\n%s", out)
	}

	// The same mistake through the environment is caught in Provision.
	out, err = caddyrun.Validate(t, site("\t\tsecret_key {env.E2E_KEY}\n"+price), map[string]string{"E2E_KEY": "pk_test_fromenv"})
	if err == nil {
		t.Error("a publishable key from the environment validated")
	}
	if !strings.Contains(out, "secret_key") || strings.Contains(out, "pk_test_fromenv") {
		t.Errorf("publishable key from env: output must name secret_key and not repeat the key:\n%s", out)
	}

	out, err = caddyrun.Validate(t, site("\t\tsecret_key sk_test_abc\n"+price+"\t\tbogus_option 1\n"), nil)
	if err == nil || !strings.Contains(out, "bogus_option") {
		t.Errorf("unknown option: err %v, output must name bogus_option:\n%s", err, out)
	}

	out, err = caddyrun.Validate(t, site("\t\tsecret_key {env.E2E_KEY}\n"+price), map[string]string{"E2E_KEY": "sk_test_abc"})
	if err != nil {
		t.Errorf("a good configuration failed to validate: %v\n%s", err, out)
	}
}

// TestEndToEndAdapt: the directive becomes the paywall handler.
func TestEndToEndAdapt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy")
	}
	t.Parallel()
	js := caddyrun.Adapt(t, e2eCaddyfile)
	if !strings.Contains(js, `"handler":"paywall"`) {
		t.Errorf("adapted config lacks \"handler\":\"paywall\":\n%s", js)
	}
	if !strings.Contains(js, `{env.E2E_STRIPE_SECRET_KEY}`) {
		t.Errorf("adapted config does not keep the secret_key placeholder:\n%s", js)
	}
}

// e2eBrowser is an HTTP client with a cookie jar that does not follow
// redirects, so each step's answer can be checked.
func e2eBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func e2eGet(t *testing.T, c *http.Client, u, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return res, string(body)
}

// e2eCookie returns the value of the named cookie the client would send
// to site, or "".
func e2eCookie(c *http.Client, site, name string) string {
	u, _ := url.Parse(site + "/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

type e2eProblemDoc struct {
	Status      int    `json:"status"`
	Reason      string `json:"reason"`
	CheckoutURL string `json:"checkout_url"`
}

func e2eProblem(t *testing.T, body string) e2eProblemDoc {
	t.Helper()
	var p e2eProblemDoc
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a JSON problem document: %v\n%s", err, body)
	}
	return p
}

func e2eRandomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// offerReads are the fake's calls that read what the 402 page sells: once
// for every page, whoever asks; visitorCalls are the others.
func offerReads(f *stripefake.Server) int {
	return f.Calls("GET /v1/prices/{id}") + f.Calls("GET /v1/products/{id}")
}

func visitorCalls(f *stripefake.Server) int { return f.Calls("") - offerReads(f) }

// TestEndToEndLiteralSecretsAreWarnedAboutAtValidate: every secret written
// in the Caddyfile itself is named, without its value, by `caddy validate`
// (which provisions as `caddy run` does), and one named by a placeholder
// is not.
func TestEndToEndLiteralSecretsAreWarnedAboutAtValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy")
	}
	t.Parallel()
	const caddyfile = "http://127.0.0.1:{{.HTTPPort}} {\n\tpaywall /premium/* {\n" +
		"\t\tsecret_key sk_test_literal0123456789\n" +
		"\t\twebhook_secret {env.E2E_WHSEC}\n" +
		"\t\tcookie_secret literalcookiesecret0123456789abcdefgh\n" +
		"\t\tprice price_demo_monthly\n" +
		"\t\tredis redis://:literalredispw@127.0.0.1:1\n" +
		"\t\temail {\n\t\t\tsmtp 127.0.0.1:1\n\t\t\tusername news\n\t\t\tpassword literalsmtppw\n\t\t\tfrom news@example.com\n\t\t}\n" +
		"\t}\n\trespond ok\n}\n"
	out, err := caddyrun.Validate(t, caddyfile, map[string]string{"E2E_WHSEC": "whsec_fromenv"})
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, option := range []string{"secret_key", "cookie_secret", "email password", "redis password"} {
		if !strings.Contains(out, `"option":"`+option+`"`) {
			t.Errorf("no warning names %s:\n%s", option, out)
		}
	}
	for _, secret := range []string{"sk_test_literal", "literalcookiesecret", "literalredispw", "literalsmtppw", "whsec_fromenv", `"option":"webhook_secret"`} {
		if strings.Contains(out, secret) {
			t.Errorf("the output holds %s:\n%s", secret, out)
		}
	}
}
