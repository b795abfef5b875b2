package paywall_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// e2eAPIKeysCaddyfile is a site whose API under /v1/ is behind the paywall
// with api_keys, answering who the request is; Caddy logs at DEBUG with an
// access log, so that the test can check that no key reaches the logs.
// The braces of the JSON body are escaped: an unescaped { would open a
// placeholder that swallows the ones inside it.
const e2eAPIKeysCaddyfile = `{
	log {
		level DEBUG
	}
}

http://127.0.0.1:{{.HTTPPort}} {
	log
	paywall /v1/* {` + e2ePaywallBlock + `		webhook_secret {env.E2E_STRIPE_WEBHOOK_SECRET}
		api_keys max 3
	}
	respond /v1/* ` + "`" + `\{"customer":"{http.paywall.customer}","key":"{http.paywall.key_id}","keys_url":"{http.paywall.keys_url}"\}` + "`" + `
	respond "free"
}
`

// TestEndToEndAPIKeys runs the real Caddy binary against the Stripe fake
// through an API key's life: a subscriber makes a key in the browser, a
// program calls the API with it (the second call without any Stripe call),
// the key is revoked and refused; a truncated or forged key is refused, a
// program without credentials learns how to present one, a key outlives
// nobody's payment, and no key ever reaches Caddy's logs.
func TestEndToEndAPIKeys(t *testing.T) {
	t.Parallel()
	fake := e2eFake(t)
	inst := identStart(t, fake, e2eAPIKeysCaddyfile, nil, true)
	site := inst.URL()
	api := site + "/v1/x"

	browser := e2eBrowser(t)
	e2eSubscribe(t, fake, browser, site)
	if e2eCookie(browser, site, "paywall") == "" {
		t.Fatal("no paywall cookie after the checkout")
	}
	sessions := fake.Sessions()
	if len(sessions) != 1 || sessions[0].Customer == "" {
		t.Fatalf("fake sessions %+v, want one with a customer", sessions)
	}
	customer := sessions[0].Customer
	fake.WaitDeliveries()

	sameOrigin := identHeader("Sec-Fetch-Site", "same-origin")
	form := func(name string) func(*http.Request) {
		return func(r *http.Request) {
			body := url.Values{"name": {name}}.Encode()
			r.Body = io.NopCloser(strings.NewReader(body))
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	// createKey makes a key in the subscriber's browser, as the keys page's
	// form does, and returns it.
	createKey := func(name string) e2eNewKey {
		t.Helper()
		res, body := identDo(t, browser, http.MethodPost, site+"/paywall/keys", "application/json", form(name), sameOrigin)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("POST /paywall/keys: %d, want 201\n%s", res.StatusCode, body)
		}
		var k e2eNewKey
		if err := json.Unmarshal([]byte(body), &k); err != nil {
			t.Fatalf("POST /paywall/keys: not JSON: %v\n%s", err, body)
		}
		if !strings.HasPrefix(k.Key, "pwk_") || k.ID == "" || !strings.Contains(k.Key, k.ID) || k.Name != name || k.Created == 0 {
			t.Fatalf("POST /paywall/keys: %+v, want a pwk_ key holding its id, named %q", k, name)
		}
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("the answer holding a new key: Cache-Control %q, want no-store", cc)
		}
		return k
	}
	// callAPI calls the API as a program with the key, with no cookie.
	callAPI := func(key string) (*http.Response, string) {
		t.Helper()
		return identDo(t, identNoJar(), http.MethodGet, api, "application/json", identBearer(key))
	}
	wantInvalidKey := func(what string, res *http.Response, body string) {
		t.Helper()
		identRefused(t, what, res, body, http.StatusUnauthorized, "invalid_key")
		if wa := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, `Bearer realm="`) || !strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge with error=\"invalid_token\"", what, wa)
		}
		var p struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil || !strings.HasSuffix(p.Type, "#invalid_key") {
			t.Errorf("%s: problem type %q (%v), want one ending #invalid_key", what, p.Type, err)
		}
	}

	t.Run("only the subscriber's own browser makes keys", func(t *testing.T) {
		res, body := identDo(t, identNoJar(), http.MethodPost, site+"/paywall/keys", "application/json", form("x"), sameOrigin)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST /paywall/keys without a cookie: %d, want 401\n%s", res.StatusCode, body)
		}
		res, body = identDo(t, browser, http.MethodPost, site+"/paywall/keys", "application/json", form("x"),
			identHeader("Sec-Fetch-Site", "cross-site"))
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("POST /paywall/keys from another site: %d, want 403\n%s", res.StatusCode, body)
		}
		if c, _ := fake.Customer(customer); e2eKeyEntries(c.Metadata) != 0 {
			t.Errorf("refused requests wrote keys: metadata %v", c.Metadata)
		}
	})

	first := createKey("ci")
	var firstLast4 string
	t.Run("the list names the key, never the key itself", func(t *testing.T) {
		res, body := identDo(t, browser, http.MethodGet, site+"/paywall/keys", "application/json")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /paywall/keys: %d\n%s", res.StatusCode, body)
		}
		var list struct {
			Keys []struct {
				ID, Name, Last4 string
			} `json:"keys"`
			Max      int  `json:"max"`
			Entitled bool `json:"entitled"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("GET /paywall/keys: %v\n%s", err, body)
		}
		if len(list.Keys) != 1 || list.Keys[0].ID != first.ID || list.Keys[0].Name != "ci" || list.Max != 3 || !list.Entitled {
			t.Fatalf("GET /paywall/keys: %s, want the one key %s named ci, max 3, entitled", body, first.ID)
		}
		firstLast4 = list.Keys[0].Last4
		if !strings.HasSuffix(first.Key, firstLast4) || strings.Contains(body, first.Key) {
			t.Errorf("the list shows last4 %q of %q, or the key itself:\n%s", firstLast4, first.Key, body)
		}
		// Stripe keeps a hash, not the key.
		c, _ := fake.Customer(customer)
		v, ok := c.Metadata["paywall_key_"+first.ID]
		if !ok || strings.Contains(v, first.Key) {
			t.Errorf("the customer's metadata %v: want paywall_key_%s, without the key", c.Metadata, first.ID)
		}
	})

	// The key's metadata change reaches Caddy as customer.updated too.
	fake.WaitDeliveries()
	t.Run("a program with the key is the subscriber", func(t *testing.T) {
		res, body := callAPI(first.Key)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/x with the key: %d, want 200\n%s", res.StatusCode, body)
		}
		var got struct {
			Customer string `json:"customer"`
			Key      string `json:"key"`
			KeysURL  string `json:"keys_url"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("GET /v1/x: not the JSON of the respond directive: %v\n%s", err, body)
		}
		if got.Customer != customer || got.Key != first.ID {
			t.Errorf("GET /v1/x with the key: %s, want customer %s and key %s", body, customer, first.ID)
		}
		if got.KeysURL != "/paywall/keys" {
			t.Errorf("{http.paywall.keys_url} = %q, want /paywall/keys", got.KeysURL)
		}
		for _, ck := range res.Cookies() {
			if strings.HasPrefix(ck.Name, "paywall") {
				t.Errorf("a request with a key got cookie %s", ck.Name)
			}
		}

		// Within cache_ttl, the next call costs Stripe nothing.
		subs, all := fake.Calls("GET /v1/subscriptions"), fake.Calls("")
		res, body = callAPI(first.Key)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/x with the key, again: %d\n%s", res.StatusCode, body)
		}
		if fake.Calls("GET /v1/subscriptions") != subs || fake.Calls("") != all {
			t.Errorf("the second call with the key made Stripe calls: %d GET /v1/subscriptions before, %d after (all: %v)",
				subs, fake.Calls("GET /v1/subscriptions"), fake.CallCounts())
		}
	})

	t.Run("a revoked key is refused", func(t *testing.T) {
		res, body := identDo(t, browser, http.MethodPost, site+"/paywall/keys/"+first.ID+"/revoke", "application/json", sameOrigin)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %d, want 200\n%s", res.StatusCode, body)
		}
		var rev struct {
			ID      string `json:"id"`
			Revoked bool   `json:"revoked"`
		}
		if err := json.Unmarshal([]byte(body), &rev); err != nil || rev.ID != first.ID || !rev.Revoked {
			t.Fatalf("revoke: %s (%v), want {\"id\":%q,\"revoked\":true}", body, err, first.ID)
		}
		if c, _ := fake.Customer(customer); e2eKeyEntries(c.Metadata) != 0 {
			t.Errorf("the revoked key is still in the customer's metadata: %v", c.Metadata)
		}
		res, body = callAPI(first.Key)
		wantInvalidKey("GET /v1/x with the revoked key", res, body)
		fake.WaitDeliveries()
		res, body = callAPI(first.Key)
		wantInvalidKey("GET /v1/x with the revoked key, after the webhook", res, body)
	})

	second := createKey("")
	fake.WaitDeliveries()
	t.Run("a truncated or forged key is refused", func(t *testing.T) {
		if res, body := callAPI(second.Key); res.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/x with a second key: %d\n%s", res.StatusCode, body)
		}
		res, body := callAPI(second.Key[:len(second.Key)-1])
		wantInvalidKey("GET /v1/x with a truncated key", res, body)

		// The right shape, another tag: refused by the HMAC, without
		// asking Stripe.
		last := second.Key[len(second.Key)-1]
		other := byte('A')
		if last == 'A' {
			other = 'B'
		}
		forged := second.Key[:len(second.Key)-1] + string(other)
		all := fake.Calls("")
		res, body = callAPI(forged)
		wantInvalidKey("GET /v1/x with a forged key", res, body)
		if fake.Calls("") != all {
			t.Errorf("a forged key made Stripe calls: %v", fake.CallCounts())
		}
	})

	t.Run("a program without credentials learns how to present a key", func(t *testing.T) {
		res, body := identDo(t, identNoJar(), http.MethodGet, api, "application/json")
		identRefused(t, "GET /v1/x without credentials", res, body, http.StatusPaymentRequired, "no_subscription")
		if wa := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, `Bearer realm=`) {
			t.Errorf("GET /v1/x without credentials: WWW-Authenticate %q, want Bearer realm=…", wa)
		}
	})

	t.Run("the key of a customer who stopped paying gets 402", func(t *testing.T) {
		subs := fake.Subscriptions(customer)
		if len(subs) != 1 {
			t.Fatalf("subscriptions of %s: %+v, want one", customer, subs)
		}
		if err := fake.CancelSubscription(subs[0].ID); err != nil {
			t.Fatal(err)
		}
		fake.WaitDeliveries()
		res, body := callAPI(second.Key)
		identRefused(t, "GET /v1/x with the key after cancelling", res, body, http.StatusPaymentRequired, "subscription_ended")
		if res.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("the 402 of a live key asks for credentials: WWW-Authenticate %q", res.Header.Get("WWW-Authenticate"))
		}
	})

	t.Run("no key reaches the logs", func(t *testing.T) {
		// Every line is in once Caddy has exited; the webhooks have landed.
		fake.WaitDeliveries()
		inst.Stop()
		logs := inst.Logs()
		if !strings.Contains(logs, `"uri":"/v1/x"`) || !strings.Contains(logs, "http.log.access") {
			t.Fatalf("no access log line for /v1/x: the check below would prove nothing\n%s", logs)
		}
		if !strings.Contains(logs, `"Authorization":["REDACTED"]`) {
			t.Errorf("the access log does not show the Authorization header redacted")
		}
		if !strings.Contains(logs, "api key created") {
			t.Logf("no DEBUG line \"api key created\" (logging may have changed)")
		}
		for _, k := range []string{first.Key, second.Key} {
			if strings.Contains(logs, k) {
				t.Errorf("Caddy's output holds an API key")
			}
			// Nor its secret part alone.
			if strings.Contains(logs, k[len(k)-40:]) {
				t.Errorf("Caddy's output holds the secret part of an API key")
			}
		}
	})
}

// e2eNewKey is the JSON answer to POST /paywall/keys.
type e2eNewKey struct {
	ID      string `json:"id"`
	Key     string `json:"key"`
	Name    string `json:"name"`
	Created int64  `json:"created"`
}

// e2eKeyEntries counts the paywall's key entries in a customer's metadata.
func e2eKeyEntries(md map[string]string) int {
	n := 0
	for k := range md {
		if strings.HasPrefix(k, "paywall_key_") {
			n++
		}
	}
	return n
}
