package paywall_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// These tests run the real Caddy binary with the site's own login in front
// of the paywall (basic_auth, forward_auth) and the identity modes that map
// that login to a Stripe customer, against the Stripe fake on loopback.

// identStart runs Caddy with caddyfile against a fake that the test has
// already filled (e2eFake), the secrets in the environment. With webhooks,
// the fake delivers its events to the site's /paywall/webhook, and every
// delivery has arrived before Caddy stops.
func identStart(t *testing.T, fake *stripefake.Server, caddyfile string, env map[string]string, webhooks bool) *caddyrun.Instance {
	t.Helper()
	secret := stripefake.NewWebhookSecret()
	all := map[string]string{"E2E_STRIPE_WEBHOOK_SECRET": secret}
	for k, v := range env {
		all[k] = v
	}
	inst := e2eCaddy(t, fake, caddyfile, all)
	if webhooks {
		fake.AddWebhookEndpoint(inst.URL()+"/paywall/webhook", secret)
		// Cleanups run last-in first-out: deliveries finish while Caddy runs.
		t.Cleanup(fake.WaitDeliveries)
	}
	return inst
}

// identAnnPaysOnce takes ann, a login of email kind with no customer yet,
// through checkout (her email filled in, no customer) and payment, and
// checks that from then on the paywall knows her customer from the
// checkout and has only to read her subscriptions: 21 requests within
// cache_ttl make exactly one GET /v1/subscriptions and no other call. It
// returns her customer.
func identAnnPaysOnce(t *testing.T, fake *stripefake.Server, browser *http.Client, site string, ann func(*http.Request)) string {
	t.Helper()
	sess := identCheckout(t, fake, browser, site, ann)
	if sess.CustomerEmail != "ann@example.com" || sess.Customer != "" {
		t.Fatalf("session customer_email %q, customer %q; want ann@example.com and no customer", sess.CustomerEmail, sess.Customer)
	}
	identPay(t, fake, browser, site, sess, ann)
	paid, _ := fake.Session(sess.ID)
	if c, ok := fake.Customer(paid.Customer); !ok || c.Email != "ann@example.com" {
		t.Fatalf("the checkout's customer %q is not ann's: %+v", paid.Customer, c)
	}
	fake.ResetCalls()
	for i := 0; i < 21; i++ {
		identLetIn(t, site, "ann after paying", ann)
	}
	if got := fake.CallCounts(); fake.Calls("GET /v1/subscriptions") != 1 || fake.Calls("") != 1 {
		t.Errorf("21 requests of a payer the checkout made known: Stripe calls %v, want exactly one GET /v1/subscriptions", got)
	}
	return paid.Customer
}

// identHash is a bcrypt hash of password for basic_auth, made by the Caddy
// under test, at the lowest cost so that each request checks it quickly.
func identHash(t *testing.T, password string) string {
	t.Helper()
	out, err := exec.Command(caddyrun.Binary(t), "hash-password", "--algorithm", "bcrypt", "--bcrypt-cost", "4",
		"--plaintext", password).Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// identNoJar is a client that keeps no cookies and follows no redirects: a
// request from it carries only what the test puts on it.
func identNoJar() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// identBasic signs a request in with HTTP basic authentication.
func identBasic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

// identHeader sets a request header, as a client can.
func identHeader(name, value string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

// identDo sends one request through c, changed by each of with, and
// returns the answer and its body.
func identDo(t *testing.T, c *http.Client, method, u, accept string, with ...func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	for _, f := range with {
		f(req)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return res, string(body)
}

// identRefused checks a JSON refusal: its status and reason.
func identRefused(t *testing.T, what string, res *http.Response, body string, status int, reason string) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("%s: %d, want %d\n%s", what, res.StatusCode, status, body)
	}
	if p := e2eProblem(t, body); p.Reason != reason {
		t.Fatalf("%s: reason %q, want %q\n%s", what, p.Reason, reason, body)
	}
}

// identCheckout starts a checkout in browser c (which keeps the checkout
// cookie) and returns the fake's session it leads to.
func identCheckout(t *testing.T, fake *stripefake.Server, c *http.Client, site string, with ...func(*http.Request)) stripefake.CheckoutSession {
	t.Helper()
	res, body := identDo(t, c, http.MethodGet, site+"/paywall/checkout?return=/premium/x", "text/html", with...)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, fake.URL()+"/") {
		t.Fatalf("checkout: %d to %q, want 303 to the fake's hosted page\n%s", res.StatusCode, loc, body)
	}
	sess, ok := fake.Session(loc[strings.LastIndex(loc, "/")+1:])
	if !ok || sess.URL != loc {
		t.Fatalf("checkout redirects to %s, which is no session of the fake", loc)
	}
	return sess
}

// identPay pays a session as the hosted page does, waits for the fake's
// webhooks to arrive, then follows Stripe's redirect to the success URL in
// browser c, which must send the payer back to /premium/x without a
// paywall cookie.
func identPay(t *testing.T, fake *stripefake.Server, c *http.Client, site string, sess stripefake.CheckoutSession, with ...func(*http.Request)) {
	t.Helper()
	if err := fake.CompleteCheckout(sess.ID, stripefake.CardSuccess); err != nil {
		t.Fatal(err)
	}
	fake.WaitDeliveries()
	for _, d := range fake.Deliveries() {
		if !d.OK {
			t.Errorf("webhook delivery of %s failed: status %d %s", d.Type, d.StatusCode, d.Err)
		}
	}
	success := strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", sess.ID)
	if !strings.HasPrefix(success, site+"/paywall/success?") {
		t.Fatalf("success URL %q is not this site's", success)
	}
	res, body := identDo(t, c, http.MethodGet, success, "text/html", with...)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/premium/x" {
		t.Fatalf("success URL: %d to %q, want 303 to /premium/x\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "paywall" {
			t.Errorf("the success URL set a paywall cookie (%+v) although the site's login says who pays", ck)
		}
	}
	if v := e2eCookie(c, site, "paywall"); v != "" {
		t.Errorf("the browser holds a paywall cookie after paying: %q", v)
	}
}

// identLetIn checks that a request from a client without cookies, signed in
// by with, reaches the content.
func identLetIn(t *testing.T, site, what string, with ...func(*http.Request)) {
	t.Helper()
	res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "text/html", with...)
	if res.StatusCode != http.StatusOK || body != "premium content" {
		t.Fatalf("%s: GET /premium/x without cookies = %d %q, want 200 \"premium content\"", what, res.StatusCode, body)
	}
}

// identNoSignOut checks what the login modes must not offer: the paywall's
// sign-out (the site's login is the site's to end) and email sign-in.
func identNoSignOut(t *testing.T, site string, with ...func(*http.Request)) {
	t.Helper()
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		res, body := identDo(t, identNoJar(), m, site+"/paywall/logout?return=/premium/x", "text/html", with...)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s /paywall/logout = %d, want 404\n%s", m, res.StatusCode, body)
		}
		for _, ck := range res.Cookies() {
			if strings.HasPrefix(ck.Name, "paywall") {
				t.Errorf("%s /paywall/logout set cookie %s", m, ck.Name)
			}
		}
	}
	res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "text/html", with...)
	if res.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("the page of a signed-in user without subscription: %d, want 402\n%s", res.StatusCode, body)
	}
	if !strings.Contains(body, `id="subscribe"`) {
		t.Errorf("the 402 page offers no subscribe button:\n%s", body)
	}
	for _, bad := range []string{`/paywall/logout`, `id="signout"`, `id="signin"`, `/paywall/signin`, `type="email"`} {
		if strings.Contains(body, bad) {
			t.Errorf("the 402 page holds %s: no sign-out or email sign-in with the site's own login\n%s", bad, body)
		}
	}
}

// identBasicAuthSite is a site behind basic_auth everywhere but the
// webhook, whose users are USERS, with the paywall on /premium/*.
func identBasicAuthSite(users map[string]string, identity string, extra string) string {
	var b strings.Builder
	b.WriteString("http://127.0.0.1:{{.HTTPPort}} {\n\t@members not path /paywall/webhook\n\tbasic_auth @members {\n")
	for u, hash := range users {
		b.WriteString("\t\t" + u + " " + hash + "\n")
	}
	b.WriteString("\t}\n\tpaywall /premium/* {" + e2ePaywallBlock + extra + "\t\tidentity " + identity + "\n\t}\n\trespond \"premium content\"\n}\n")
	return b.String()
}

// With basic_auth whose usernames are emails: a user without a customer is
// refused, pays through a Checkout prefilled with their email, and is then
// let in without any paywall cookie, from the cache while cache_ttl runs.
func TestEndToEndIdentityBasicAuthEmail(t *testing.T) {
	t.Parallel()
	fake := e2eFake(t)
	const pw = "correct horse"
	hash := identHash(t, pw)
	// Cy paid before, elsewhere: a customer with his email and an active
	// subscription.
	cy := fake.CreateCustomer("cy@example.com")
	fake.CreateSubscription(cy, stripefake.DefaultPrice.ID, "active")
	site := identStart(t, fake, identBasicAuthSite(
		map[string]string{"ann@example.com": hash, "bob@example.com": hash, "cy@example.com": hash},
		"{http.auth.user.id} email",
		"\t\twebhook_secret {env.E2E_STRIPE_WEBHOOK_SECRET}\n\t\tcache_ttl 10m\n"), nil, true).URL()
	ann, bob, cyAuth := identBasic("ann@example.com", pw), identBasic("bob@example.com", pw), identBasic("cy@example.com", pw)

	res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json")
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /premium/x without basic auth = %d, want basic_auth's 401\n%s", res.StatusCode, body)
	}

	res, body = identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", ann)
	identRefused(t, "ann before paying", res, body, http.StatusPaymentRequired, "no_subscription")
	identNoSignOut(t, site, ann)

	browser := e2eBrowser(t)
	identAnnPaysOnce(t, fake, browser, site, ann)

	// Cy was never seen: 21 requests within cache_ttl make exactly one
	// GET /v1/customers (the email lookup) and one GET /v1/subscriptions.
	fake.ResetCalls()
	for i := 0; i < 21; i++ {
		identLetIn(t, site, "cy, who paid before", cyAuth)
	}
	if got := fake.CallCounts(); fake.Calls("GET /v1/customers") != 1 || fake.Calls("GET /v1/subscriptions") != 1 || fake.Calls("") != 2 {
		t.Errorf("21 requests of an unseen payer: Stripe calls %v, want exactly one GET /v1/customers and one GET /v1/subscriptions", got)
	}

	// Another user is not let in by ann's payment.
	res, body = identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", bob)
	identRefused(t, "bob", res, body, http.StatusPaymentRequired, "no_subscription")
	bobSess := identCheckout(t, fake, e2eBrowser(t), site, bob)
	if bobSess.CustomerEmail != "bob@example.com" || bobSess.Customer != "" {
		t.Errorf("bob's session: customer_email %q, customer %q", bobSess.CustomerEmail, bobSess.Customer)
	}

	// A checkout by ann now sends her back: she pays already.
	res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/checkout?return=/premium/x", "text/html", ann)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/premium/x" {
		t.Errorf("checkout by a payer: %d to %q, want 303 to /premium/x\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
}

// identAuthService is the site's login service for forward_auth: it answers
// 200 with X-Auth-Email for a request that carries a known session (a
// session cookie or a bearer token), and 401 otherwise. A guest session is
// let through without any X-Auth-Email.
type identAuthService struct {
	mu       sync.Mutex
	sessions map[string]string // token to email; "" for a guest
}

func (a *identAuthService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ck, err := r.Cookie("session"); err == nil {
		token = ck.Value
	}
	a.mu.Lock()
	email, ok := a.sessions[token]
	a.mu.Unlock()
	if !ok || token == "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if email != "" {
		w.Header().Set("X-Auth-Email", email)
	}
	w.WriteHeader(http.StatusOK)
}

func identAuthStart(t *testing.T, sessions map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(&identAuthService{sessions: sessions})
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func identBearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// With forward_auth, whose auth service names the user in X-Auth-Email:
// the same journey as with basic_auth, and a client's own X-Auth-Email
// header names nobody.
func TestEndToEndIdentityForwardAuth(t *testing.T) {
	t.Parallel()
	auth := identAuthStart(t, map[string]string{
		"ann-token":   "ann@example.com",
		"bob-token":   "bob@example.com",
		"guest-token": "",
	})
	ann, bob, guest := identBearer("ann-token"), identBearer("bob-token"), identBearer("guest-token")
	spoofAnn := identHeader("X-Auth-Email", "ann@example.com")
	const paywallEnd = `
		identity {http.request.header.X-Auth-Email} email
	}
	respond "premium content"
}
`

	t.Run("covered: the login covers the pages and the endpoints", func(t *testing.T) {
		fake := e2eFake(t)
		site := identStart(t, fake, `http://127.0.0.1:{{.HTTPPort}} {
	@members not path /paywall/webhook
	forward_auth @members {$E2E_AUTH} {
		uri /auth
		copy_headers X-Auth-Email
	}
	paywall /premium/* {`+e2ePaywallBlock+`		webhook_secret {env.E2E_STRIPE_WEBHOOK_SECRET}`+paywallEnd,
			map[string]string{"E2E_AUTH": auth}, true).URL()

		res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json")
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /premium/x without a session = %d, want the auth service's 401\n%s", res.StatusCode, body)
		}
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", ann)
		identRefused(t, "ann before paying", res, body, http.StatusPaymentRequired, "no_subscription")
		identNoSignOut(t, site, ann)

		browser := e2eBrowser(t)
		annCustomer := identAnnPaysOnce(t, fake, browser, site, ann)

		// Bob's session with ann's name in a header of his own: the auth
		// service's answer replaces it, and bob is who he is.
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", bob, spoofAnn)
		identRefused(t, "bob claiming to be ann", res, body, http.StatusPaymentRequired, "no_subscription")
		bobSess := identCheckout(t, fake, e2eBrowser(t), site, bob, spoofAnn)
		if bobSess.CustomerEmail != "bob@example.com" || bobSess.Customer != "" {
			t.Errorf("checkout by bob claiming to be ann: customer_email %q, customer %q; want bob's email", bobSess.CustomerEmail, bobSess.Customer)
		}

		// A guest session that the auth service lets through without a
		// user: ann's name in the client's header names nobody.
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", guest, spoofAnn)
		identRefused(t, "a guest claiming to be ann", res, body, http.StatusPaymentRequired, "no_subscription")
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/checkout?return=/premium/x", "application/json", guest, spoofAnn)
		identRefused(t, "checkout by a guest claiming to be ann", res, body, http.StatusForbidden, "identity_missing")
		fake.ResetCalls()
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/portal?return=/premium/x", "text/html", guest, spoofAnn)
		if strings.HasPrefix(res.Header.Get("Location"), fake.URL()) || fake.Calls("POST /v1/billing_portal/sessions") != 0 {
			t.Errorf("portal by a guest claiming to be ann: %d to %q, Stripe calls %v\n%s", res.StatusCode, res.Header.Get("Location"), fake.CallCounts(), body)
		}

		// Ann herself gets her billing portal.
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/portal?return=/premium/x", "text/html", ann)
		loc := res.Header.Get("Location")
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, fake.URL()+"/p/session/") {
			t.Fatalf("portal for ann: %d to %q\n%s", res.StatusCode, loc, body)
		}
		if ps, ok := fake.PortalSession(loc[strings.LastIndex(loc, "/")+1:]); !ok || ps.Customer != annCustomer {
			t.Errorf("ann's portal session %+v, want one for %s", ps, annCustomer)
		}
	})

	t.Run("uncovered: forward_auth guards only /premium/*", func(t *testing.T) {
		fake := e2eFake(t)
		// Ann pays already, so there is something to steal.
		cus := fake.CreateCustomer("ann@example.com")
		fake.CreateSubscription(cus, stripefake.DefaultPrice.ID, "active")
		inst := identStart(t, fake, `http://127.0.0.1:{{.HTTPPort}} {
	forward_auth /premium/* {$E2E_AUTH} {
		uri /auth
		copy_headers X-Auth-Email
	}
	paywall /premium/* {`+e2ePaywallBlock+paywallEnd,
			map[string]string{"E2E_AUTH": auth}, false)
		site := inst.URL()

		identLetIn(t, site, "ann, signed in, on the covered path", ann)
		res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", spoofAnn)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /premium/x with only ann's name in a header = %d, want the auth service's 401\n%s", res.StatusCode, body)
		}

		fake.ResetCalls()
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/portal?return=/premium/x", "text/html", spoofAnn)
		if loc := res.Header.Get("Location"); strings.HasPrefix(loc, fake.URL()) || strings.Contains(loc, "/p/session/") {
			t.Errorf("portal with only ann's name in a header redirects to %q (status %d)\n%s", loc, res.StatusCode, body)
		}
		if n := fake.Calls("POST /v1/billing_portal/sessions"); n != 0 {
			t.Errorf("portal with only ann's name in a header made %d billing portal sessions", n)
		}

		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/checkout?return=/premium/x", "application/json", spoofAnn)
		identRefused(t, "checkout with only ann's name in a header", res, body, http.StatusForbidden, "identity_missing")
		// Even ann's own session does not count where forward_auth did not
		// answer: the paywall cannot tell it from a client's header.
		res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/checkout?return=/premium/x", "application/json", ann, spoofAnn)
		identRefused(t, "checkout outside forward_auth", res, body, http.StatusForbidden, "identity_missing")
		if n := fake.Calls("POST /v1/checkout/sessions"); n != 0 {
			t.Errorf("%d Checkout Sessions made for a header nobody vouched for", n)
		}
		if !inst.WaitLogs("identity header ignored", 5*time.Second) {
			t.Error("Caddy's log does not say that the unvouched identity header was ignored")
		}
	})
}

// With basic_auth whose usernames are Stripe customer IDs: the customer
// with a subscription is let in without any lookup, and the one without
// subscribes as themselves.
func TestEndToEndIdentityCustomerID(t *testing.T) {
	t.Parallel()
	fake := e2eFake(t)
	const pw = "correct horse"
	hash := identHash(t, pw)
	paying := fake.CreateCustomer("paying@example.com")
	fake.CreateSubscription(paying, stripefake.DefaultPrice.ID, "active")
	lapsed := fake.CreateCustomer("lapsed@example.com")
	site := identStart(t, fake, identBasicAuthSite(
		map[string]string{paying: hash, lapsed: hash},
		"{http.auth.user.id} customer", ""), nil, false).URL()
	payingAuth, lapsedAuth := identBasic(paying, pw), identBasic(lapsed, pw)

	fake.ResetCalls()
	identLetIn(t, site, "the paying customer", payingAuth)
	if got := fake.CallCounts(); fake.Calls("GET /v1/subscriptions") != 1 || fake.Calls("") != 1 {
		t.Errorf("a customer ID login: Stripe calls %v, want exactly one GET /v1/subscriptions and no lookup", got)
	}

	res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", lapsedAuth)
	identRefused(t, "the customer without subscription", res, body, http.StatusPaymentRequired, "no_subscription")
	identNoSignOut(t, site, lapsedAuth)

	customers := fake.Calls("POST /v1/customers")
	browser := e2eBrowser(t)
	sess := identCheckout(t, fake, browser, site, lapsedAuth)
	if sess.Customer != lapsed || sess.CustomerEmail != "" {
		t.Fatalf("session customer %q, customer_email %q; want customer %s", sess.Customer, sess.CustomerEmail, lapsed)
	}
	identPay(t, fake, browser, site, sess, lapsedAuth)
	if n := fake.Calls("POST /v1/customers"); n != customers {
		t.Errorf("a customer ID login made %d customers", n-customers)
	}
	if subs := fake.Subscriptions(lapsed); len(subs) != 1 || subs[0].Status != "active" {
		t.Fatalf("subscriptions of %s after paying: %+v, want one active", lapsed, subs)
	}
	identLetIn(t, site, "the customer after paying", lapsedAuth)
}

// A customer ID login that names no customer at Stripe (a value that is no
// customer ID, or the ID of a customer Stripe does not have) must not be
// sold a subscription: Checkout would give it to a new customer, which is
// never this login's, so the payer would be charged and still refused.
func TestEndToEndIdentityCustomerIDThatIsNone(t *testing.T) {
	t.Parallel()
	fake := e2eFake(t)
	const pw = "correct horse"
	hash := identHash(t, pw)
	const gone = "cus_NoSuchCustomer0000"
	site := identStart(t, fake, identBasicAuthSite(
		map[string]string{"alice": hash, gone: hash},
		"{http.auth.user.id} customer", ""), nil, false).URL()

	for _, user := range []string{"alice", gone} {
		t.Run(user, func(t *testing.T) {
			auth := identBasic(user, pw)
			res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", auth)
			if res.StatusCode != http.StatusPaymentRequired {
				t.Fatalf("GET /premium/x as %s = %d, want 402\n%s", user, res.StatusCode, body)
			}
			before := len(fake.Sessions())
			browser := e2eBrowser(t)
			res, body = identDo(t, browser, http.MethodGet, site+"/paywall/checkout?return=/premium/x", "application/json", auth)
			loc := res.Header.Get("Location")
			if !strings.HasPrefix(loc, fake.URL()) && len(fake.Sessions()) == before {
				return // refused, as it must be
			}
			t.Errorf("checkout for customer ID login %q, which names no customer: %d to %q; want no Checkout Session\n%s",
				user, res.StatusCode, loc, body)
			// What follows when it is paid.
			sess := fake.Sessions()[0]
			identPay(t, fake, browser, site, sess, auth)
			paid, _ := fake.Session(sess.ID)
			res, body = identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", auth)
			if res.StatusCode != http.StatusOK {
				p := e2eProblem(t, body)
				t.Errorf("after paying, %q is still refused (%d %s): the subscription went to new customer %s "+
					"(customer %q, customer_email %q in the session)", user, res.StatusCode, p.Reason, paid.Customer, sess.Customer, sess.CustomerEmail)
			}
		})
	}
}

// metadataJourney is the identity metadata journey: mia, who has no
// customer, subscribes through a customer the paywall makes for her, and is
// let in at once although Stripe's search lags a minute; olaf, whose
// customer the operator made, is found through search.
func metadataJourney(t *testing.T, webhooks bool) {
	fake := e2eFake(t)
	const pw = "correct horse"
	hash := identHash(t, pw)
	extra := ""
	if webhooks {
		extra = "\t\twebhook_secret {env.E2E_STRIPE_WEBHOOK_SECRET}\n"
	}
	site := identStart(t, fake, identBasicAuthSite(
		map[string]string{"mia": hash, "olaf": hash},
		"{http.auth.user.id} metadata user_id", extra), nil, webhooks).URL()
	mia, olaf := identBasic("mia", pw), identBasic("olaf", pw)
	// Stripe's search index lags its writes by up to about a minute.
	fake.SetSearchLag(time.Minute)

	res, body := identDo(t, identNoJar(), http.MethodGet, site+"/premium/x", "application/json", mia)
	identRefused(t, "mia before paying", res, body, http.StatusPaymentRequired, "no_subscription")
	identNoSignOut(t, site, mia)

	browser := e2eBrowser(t)
	sess := identCheckout(t, fake, browser, site, mia)
	if n := fake.Calls("POST /v1/customers"); n != 1 {
		t.Errorf("checkout made %d customers, want 1", n)
	}
	cus, ok := fake.Customer(sess.Customer)
	if !ok || cus.Metadata["user_id"] != "mia" {
		t.Fatalf("session customer %q (%+v), want a customer with metadata user_id=mia", sess.Customer, cus)
	}
	if sess.CustomerEmail != "" {
		t.Errorf("session customer_email %q with a customer", sess.CustomerEmail)
	}
	fake.WaitDeliveries() // customer.created has arrived, when webhooks are on
	identPay(t, fake, browser, site, sess, mia)

	// Search does not see mia's customer yet; the paywall remembers it.
	identLetIn(t, site, "mia after paying, search lagging", mia)
	// Nor is she sold a second subscription by coming back to checkout.
	res, body = identDo(t, identNoJar(), http.MethodGet, site+"/paywall/checkout?return=/premium/x", "text/html", mia)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/premium/x" {
		t.Errorf("checkout by mia after paying: %d to %q, want 303 to /premium/x\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	if n := len(fake.Sessions()); n != 1 {
		t.Errorf("%d Checkout Sessions, want mia's one", n)
	}

	// Olaf's customer was made by the operator, with his user_id.
	olafCus := fake.CreateCustomer("")
	if err := fake.UpdateCustomer(olafCus, "", map[string]string{"user_id": "olaf"}); err != nil {
		t.Fatal(err)
	}
	fake.CreateSubscription(olafCus, stripefake.DefaultPrice.ID, "active")
	fake.WaitDeliveries()
	fake.SetSearchLag(0)
	fake.ResetCalls()
	identLetIn(t, site, "olaf, found through search", olaf)
	if fake.Calls("GET /v1/customers/search") != 1 {
		t.Errorf("olaf was let in with Stripe calls %v, want one search", fake.CallCounts())
	}
}

func TestEndToEndIdentityMetadata(t *testing.T) {
	t.Parallel()
	metadataJourney(t, false)
}

// The same with webhooks on, as operators are told to run the paywall:
// the customer.created event of the customer the paywall made must not make
// it forget that customer while search cannot find it yet.
func TestEndToEndIdentityMetadataWithWebhooks(t *testing.T) {
	t.Parallel()
	metadataJourney(t, true)
}
