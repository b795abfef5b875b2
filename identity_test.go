package paywall

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// loginWorld is a site whose login puts the user in {http.auth.user.id},
// as basic_auth does, from the request's X-Test-User header (which stands
// for credentials the login checked).
func loginWorld(t *testing.T, kind, metaKey string, opts ...option) *world {
	t.Helper()
	opts = append([]option{func(h *Handler) {
		h.Identity = &Identity{Source: "{http.auth.user.id}", Kind: kind, MetadataKey: metaKey}
	}}, opts...)
	w := newWorld(t, opts...)
	w.auth = func(r *http.Request, repl *caddy.Replacer) {
		if u := r.Header.Get("X-Test-User"); u != "" {
			repl.Set("http.auth.user.id", u)
		}
	}
	return w
}

// as is a browser-less client for a signed-in user: no cookie jar.
func (w *world) as(user, method, path string, header ...string) *http.Response {
	w.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return w.do(c, method, path, append([]string{"X-Test-User", user}, header...)...)
}

func TestEmailLoginPaysOnceAndIsLetInWithoutACookie(t *testing.T) {
	w := loginWorld(t, loginEmail, "")
	user := "ann@example.com"

	resp := w.as(user, http.MethodGet, "/premium/a")
	body := bodyOf(resp)
	if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, "your account does not have a subscription") {
		t.Fatalf("402 for a user without customer: %d\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, "/paywall/logout") || strings.Contains(body, "other-device") {
		t.Errorf("the page offers sign-out or another device to a site's user:\n%s", body)
	}

	// Checkout for the user: Checkout prefills their email, a browser
	// (nonce) cookie binds the session; no paywall cookie.
	c := w.browser()
	resp = w.do(c, http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", user)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
	sess := w.sessionOf(resp.Header.Get("Location"))
	if sess.CustomerEmail != user || sess.Customer != "" {
		t.Fatalf("session customer %q email %q, want a new customer with the user's email", sess.Customer, sess.CustomerEmail)
	}
	if err := w.fake.CompleteCheckout(sess.ID, stripefake.CardSuccess); err != nil {
		t.Fatal(err)
	}
	sess, _ = w.fake.Session(sess.ID)
	u := strings.TrimPrefix(strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", sess.ID), w.site.URL)
	resp = w.do(c, http.MethodGet, u, "X-Test-User", user)
	if resp.StatusCode != http.StatusSeeOther || cookieNamed(resp, "paywall") != nil {
		t.Fatalf("success: %d cookies %v", resp.StatusCode, resp.Cookies())
	}
	w.fake.WaitDeliveries()

	// Let in without any cookie, at once: the checkout taught the paywall
	// the user's customer.
	w.fake.ResetCalls()
	for i := 0; i < 20; i++ {
		if resp := w.as(user, http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after paying: %d", i, resp.StatusCode)
		}
	}
	if n := w.fake.Calls("GET /v1/customers"); n != 0 {
		t.Errorf("%d customer lookups after the checkout said who the customer is", n)
	}
	if n := w.fake.Calls("GET /v1/subscriptions"); n != 1 {
		t.Errorf("%d subscription reads for 20 requests, want 1", n)
	}
	if got := w.placeholder("http.paywall.customer"); got != sess.Customer {
		t.Errorf("customer placeholder %v, want %s", got, sess.Customer)
	}
	// Another user is not.
	if resp := w.as("bob@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("another user: %d", resp.StatusCode)
	}
}

func TestEmailLoginLookupsAreCachedPerTTL(t *testing.T) {
	w := loginWorld(t, loginEmail, "")
	cus := w.fake.CreateCustomer("cat@example.com")
	w.fake.CreateSubscription(cus, testPrice, "active")
	w.fake.ResetCalls()
	for i := 0; i < 50; i++ {
		if resp := w.as("cat@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if l, s := w.fake.Calls("GET /v1/customers"), w.fake.Calls("GET /v1/subscriptions"); l != 1 || s != 1 {
		t.Errorf("50 requests made %d lookups and %d subscription reads, want 1 and 1", l, s)
	}
	w.clock.Advance(defaultCacheTTL + time.Second)
	w.as("cat@example.com", http.MethodGet, "/premium/a")
	if l, s := w.fake.Calls("GET /v1/customers"), w.fake.Calls("GET /v1/subscriptions"); l != 2 || s != 2 {
		t.Errorf("after cache_ttl: %d lookups and %d reads, want 2 and 2", l, s)
	}
	// Case: the login says Cat@Example.com, Stripe holds it in lower case.
	if resp := w.as("Cat@Example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Errorf("mixed-case login of a lower-case customer email: %d", resp.StatusCode)
	}
}

func TestLoginWithoutCustomerIsForgottenWhenAWebhookBringsOne(t *testing.T) {
	w := loginWorld(t, loginEmail, "")
	if resp := w.as("dan@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	// Subscribed elsewhere (Stripe's dashboard, another site): the
	// customer.created webhook carries the email.
	cus := w.fake.CreateCustomer("dan@example.com")
	w.fake.CreateSubscription(cus, testPrice, "active")
	obj, _ := w.fake.Object(cus)
	if _, err := w.fake.SendEvent("customer.created", obj); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	if resp := w.as("dan@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after customer.created: %d, want 200 within cache_ttl", resp.StatusCode)
	}
}

func TestLoginSurvivesAStripeOutage(t *testing.T) {
	w := loginWorld(t, loginEmail, "")
	cus := w.fake.CreateCustomer("eve@example.com")
	w.fake.CreateSubscription(cus, testPrice, "active")
	w.as("eve@example.com", http.MethodGet, "/premium/a")
	w.fake.SetOutage(stripefake.OutageErrors)
	w.clock.Advance(defaultCacheTTL + time.Minute)
	if resp := w.as("eve@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Errorf("a known paying user during an outage: %d", resp.StatusCode)
	}
	if resp := w.as("new@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("an unknown user during an outage: %d, want 503 (wait, not pay)", resp.StatusCode)
	}
}

func TestCustomerLoginNeedsNoLookup(t *testing.T) {
	w := loginWorld(t, loginCustomer, "")
	paid := w.fake.CreateCustomer("f@example.com")
	w.fake.CreateSubscription(paid, testPrice, "active")
	unpaid := w.fake.CreateCustomer("g@example.com")
	w.fake.ResetCalls()
	if resp := w.as(paid, http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("paying customer: %d", resp.StatusCode)
	}
	if n := w.fake.Calls("GET /v1/customers"); n != 0 {
		t.Errorf("%d lookups for a login that is the customer ID", n)
	}
	c := w.browser()
	resp := w.do(c, http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", unpaid)
	if sess := w.sessionOf(resp.Header.Get("Location")); sess.Customer != unpaid {
		t.Errorf("checkout for customer %q, want %s", sess.Customer, unpaid)
	}
	if resp := w.as("not-a-customer-id", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("a login that is no customer ID: %d", resp.StatusCode)
	}
}

func TestMetadataLoginCreatesItsCustomerOnceAndRemembersIt(t *testing.T) {
	w := loginWorld(t, loginMetadata, "user_id")
	w.fake.SetSearchLag(time.Minute) // Stripe's search does not see new customers at once
	c := w.browser()
	resp := w.do(c, http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", "u_42")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
	sess := w.sessionOf(resp.Header.Get("Location"))
	cus, ok := w.fake.Customer(sess.Customer)
	if !ok || cus.Metadata["user_id"] != "u_42" {
		t.Fatalf("checkout for customer %q (%+v), want a new one with metadata user_id=u_42", sess.Customer, cus)
	}
	// A second checkout (another tab, another instance) makes no second customer.
	w.do(w.browser(), http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", "u_42")
	if n := w.fake.Calls("POST /v1/customers"); n != 1 {
		t.Errorf("%d customers created for one user", n)
	}
	if err := w.fake.CompleteCheckout(sess.ID, stripefake.CardSuccess); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	if resp := w.as("u_42", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after paying, with search lagging: %d", resp.StatusCode)
	}
	// A customer made elsewhere is found through search once indexed.
	other := w.fake.CreateCustomer("h@example.com")
	if err := w.fake.UpdateCustomer(other, "", map[string]string{"user_id": "u_7"}); err != nil {
		t.Fatal(err)
	}
	w.fake.CreateSubscription(other, testPrice, "active")
	w.fake.SetSearchLag(0)
	if resp := w.as("u_7", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a customer found by metadata: %d", resp.StatusCode)
	}
}

func TestLoginModesRefuseCheckoutForNobodyAndOfferNoSignOut(t *testing.T) {
	w := loginWorld(t, loginEmail, "")
	resp := w.get(w.browser(), "/paywall/checkout?return=/premium/a")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(bodyOf(resp), `data-reason="identity_missing"`) {
		t.Errorf("checkout without a user: %d\n%s", resp.StatusCode, bodyOf(resp))
	}
	if n := len(w.fake.Sessions()); n != 0 {
		t.Errorf("%d sessions made for nobody", n)
	}
	if resp := w.as("ann@example.com", http.MethodPost, "/paywall/logout"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("logout in a login mode: %d", resp.StatusCode)
	}
}

// headerWorld is a site behind forward_auth that copies X-Auth-Email from
// its auth service's answer: the auth service vouches for X-Test-User, when
// forward_auth covers the path.
func headerWorld(t *testing.T, covered func(path string) bool) *world {
	t.Helper()
	w := newWorld(t, func(h *Handler) {
		h.Identity = &Identity{Source: "{http.request.header.X-Auth-Email}", Kind: loginEmail}
	})
	w.auth = func(r *http.Request, repl *caddy.Replacer) {
		if !covered(r.URL.Path) {
			return // forward_auth does not run: the client's header stays
		}
		// What forward_auth does: delete the client's copy, and set the
		// auth service's answer, which stays in the replacer.
		r.Header.Del("X-Auth-Email")
		if u := r.Header.Get("X-Test-User"); u != "" {
			repl.Set("http.reverse_proxy.header.X-Auth-Email", u)
			r.Header.Set("X-Auth-Email", u)
		}
	}
	return w
}

func TestASpoofedIdentityHeaderGainsNothing(t *testing.T) {
	w := headerWorld(t, func(p string) bool { return strings.HasPrefix(p, "/premium/") })
	cus := w.fake.CreateCustomer("payer@example.com")
	w.fake.CreateSubscription(cus, testPrice, "past_due") // the portal would be offered to them

	// Where forward_auth runs, the header counts.
	if resp := w.as("payer@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired ||
		!strings.Contains(bodyOf(resp), "payment_failed") {
		t.Fatalf("the payer through forward_auth: %d", resp.StatusCode)
	}
	// A client naming the payer on a path forward_auth does not cover.
	spoof := []string{"X-Auth-Email", "payer@example.com"}
	if resp := w.do(w.browser(), http.MethodGet, "/paywall/portal?return=/", spoof...); resp.StatusCode != http.StatusSeeOther ||
		strings.Contains(resp.Header.Get("Location"), "billing") || resp.Header.Get("Location") != "/" {
		t.Errorf("portal with a spoofed header: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := w.fake.Calls("POST /v1/billing_portal/sessions"); n != 0 {
		t.Errorf("%d portal sessions made for a spoofed header", n)
	}
	if resp := w.do(w.browser(), http.MethodGet, "/paywall/checkout?return=/", spoof...); resp.StatusCode != http.StatusForbidden {
		t.Errorf("checkout with a spoofed header: %d, want 403", resp.StatusCode)
	}
	// On a covered path, forward_auth's answer wins over the client's.
	resp := w.do(w.browser(), http.MethodGet, "/premium/a", "X-Auth-Email", "payer@example.com", "X-Test-User", "someone@example.com")
	if resp.StatusCode != http.StatusPaymentRequired || strings.Contains(bodyOf(resp), "payment_failed") {
		t.Errorf("spoofed header under forward_auth answered as the payer: %d", resp.StatusCode)
	}
}

func TestIdentityValidation(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{Identity{Source: "{http.request.cookie.user}", Kind: loginEmail}, "could name anyone"},
		{Identity{Source: "{http.request.uri.query.u}", Kind: loginEmail}, "could name anyone"},
		{Identity{Source: "{http.regexp.user.1}", Kind: loginEmail}, "could name anyone"},
		{Identity{Source: "{env.USER}", Kind: loginEmail}, "not set by a login"},
		{Identity{Source: "http.auth.user.id", Kind: loginEmail}, "one placeholder"},
		{Identity{Source: "{a}{b}", Kind: loginEmail}, "one placeholder"},
		{Identity{Source: "{http.auth.user.id}", Kind: "name"}, "kind"},
		{Identity{Source: "{http.auth.user.id}", Kind: loginMetadata}, "metadata needs a key"},
		{Identity{Source: "{http.auth.user.id}", Kind: loginMetadata, MetadataKey: "a'b"}, "metadata needs a key"},
		{Identity{Source: "{http.auth.user.id}", Kind: loginEmail, MetadataKey: "k"}, "only with kind metadata"},
	} {
		_, err := newLoginSource(&tc.id)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "identity: ") {
			t.Errorf("%+v: %v, want an error naming identity and %q", tc.id, err, tc.want)
		}
	}
	h := &Handler{SecretKey: "{env.PAYWALL_TEST_SECRET_KEY}", Prices: []string{testPrice},
		Identity: &Identity{Source: "{http.auth.user.id}", Kind: loginEmail}}
	withEmail(h)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	err := h.Provision(ctx)
	_ = h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "email: sign-in by email is for the cookie identity") {
		t.Errorf("email block with a login identity: %v", err)
	}
}

func TestASharedBrowserNeverResumesAnotherUsersCheckout(t *testing.T) {
	w := loginWorld(t, loginEmail, "")
	c := w.browser() // one browser, two users of the site, one after the other
	resp := w.do(c, http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", "ann@example.com")
	ann := w.sessionOf(resp.Header.Get("Location"))
	resp = w.do(c, http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", "bob@example.com")
	bob := w.sessionOf(resp.Header.Get("Location"))
	if bob.ID == ann.ID || bob.CustomerEmail != "bob@example.com" {
		t.Fatalf("bob was sent to session %s prefilled %q; ann's is %s", bob.ID, bob.CustomerEmail, ann.ID)
	}
	// Ann, back, resumes hers... which Bob's checkout closed, so that it
	// cannot be paid too: she gets a new one, prefilled for her.
	resp = w.do(c, http.MethodGet, "/paywall/checkout?return=/premium/a", "X-Test-User", "ann@example.com")
	if again := w.sessionOf(resp.Header.Get("Location")); again.CustomerEmail != "ann@example.com" {
		t.Errorf("ann's checkout is prefilled %q", again.CustomerEmail)
	}
}

func TestALoginWhoPaidElsewhereIsNotSoldAgain(t *testing.T) {
	// Another instance (or tab) took the payment, and no webhook reached
	// this one: its cache still says "no customer".
	w := loginWorld(t, loginEmail, "")
	if resp := w.as("fay@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	cus := w.fake.CreateCustomer("fay@example.com")
	w.fake.CreateSubscription(cus, testPrice, "active")
	resp := w.as("fay@example.com", http.MethodGet, "/paywall/checkout?return=/premium/a")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/premium/a" {
		t.Fatalf("checkout for a user who pays: %d to %q, want back to the page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := len(w.fake.Sessions()); n != 0 {
		t.Errorf("%d checkout sessions made for a paying user", n)
	}
	if resp := w.as("fay@example.com", http.MethodGet, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Errorf("after: %d", resp.StatusCode)
	}
}

func TestLoginCachesAreKeptPerThingSold(t *testing.T) {
	// Which of several customers with one email a user is matched to
	// depends on what the handler sells.
	w := loginWorld(t, loginEmail, "")
	other := provisionTestHandler(t, w.h.APIURL, func(h *Handler) {
		h.Prices = []string{"price_other"}
		h.Identity = &Identity{Source: "{http.auth.user.id}", Kind: loginEmail}
	})
	same := provisionTestHandler(t, w.h.APIURL, func(h *Handler) {
		h.Identity = &Identity{Source: "{http.auth.user.id}", Kind: loginEmail}
	})
	if other.account != w.h.account {
		t.Fatal("the handlers do not share the account")
	}
	if other.login.logins == w.h.login.logins {
		t.Error("handlers selling different prices share a login cache")
	}
	if same.login.logins != w.h.login.logins {
		t.Error("handlers selling the same price do not share a login cache")
	}
}
