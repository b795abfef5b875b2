package paywall

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

func withAPIKeys(max int) option {
	return func(h *Handler) { h.APIKeys = &APIKeys{Max: max} }
}

// createdKey is the JSON answer to a key's creation.
type createdKey struct {
	ID      string `json:"id"`
	Key     string `json:"key"`
	Name    string `json:"name"`
	Created int64  `json:"created"`
}

// createKey creates a key in browser c, as the keys page's form does.
func (w *world) createKey(c *http.Client, name string) createdKey {
	w.t.Helper()
	resp := w.post(c, "/paywall/keys", url.Values{"name": {name}}, "Accept", "application/json")
	if resp.StatusCode != http.StatusCreated {
		w.t.Fatalf("create key: %d %s", resp.StatusCode, bodyOf(resp))
	}
	var k createdKey
	if err := json.Unmarshal([]byte(bodyOf(resp)), &k); err != nil || !strings.HasPrefix(k.Key, keyPrefix) {
		w.t.Fatalf("create key: %v %q", err, bodyOf(resp))
	}
	return k
}

// withKey calls a gated path as a program with key.
func (w *world) withKey(key, path string, header ...string) *http.Response {
	w.t.Helper()
	return w.get(http.DefaultClient, path, append([]string{"Authorization", "Bearer " + key, "Accept", "application/json"}, header...)...)
}

func (w *world) revokeKey(c *http.Client, id string) *http.Response {
	w.t.Helper()
	return w.post(c, "/paywall/keys/"+id+"/revoke", nil, "Accept", "application/json")
}

func TestAPIKeyLetsAProgramInAsItsSubscriber(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	cus, _, c := w.subscriber("active")
	k := w.createKey(c, "ci runner")
	if !strings.HasPrefix(k.Key, keyPrefix+strings.TrimPrefix(cus, "cus_")+"_") || k.Name != "ci runner" {
		t.Fatalf("key %+v does not name its customer %s", k, cus)
	}
	// The metadata holds a hash of the key, never the key.
	got, _ := w.fake.Customer(cus)
	v := got.Metadata[keyMetaPrefix+k.ID]
	if v == "" || strings.Contains(v, k.Key) || strings.Contains(v, k.Key[len(k.Key)-keyTagLen-keySecretLen:]) {
		t.Fatalf("metadata %q", got.Metadata)
	}

	w.fake.WaitDeliveries() // customer.updated: the key's creation, read again
	w.h.account.reads.Wait()
	resp := w.withKey(k.Key, "/premium/a")
	if resp.StatusCode != 200 {
		t.Fatalf("key of a subscriber: %d %s", resp.StatusCode, bodyOf(resp))
	}
	for name, want := range map[string]any{"http.paywall.customer": cus, "http.paywall.key_id": k.ID,
		"http.paywall.status": statusEntitled, "http.paywall.keys_url": "/paywall/keys"} {
		if v := w.placeholder(name); v != want {
			t.Errorf("{%s} = %v, want %v", name, v, want)
		}
	}
	reads := w.fake.Calls("GET /v1/subscriptions")
	if resp := w.withKey(k.Key, "/premium/b"); resp.StatusCode != 200 {
		t.Fatalf("second call: %d", resp.StatusCode)
	}
	if n := w.fake.Calls("GET /v1/subscriptions") - reads; n != 0 {
		t.Errorf("a cached customer's key cost %d Stripe reads", n)
	}

	// Revoked: refused at once on this instance.
	if resp := w.revokeKey(c, k.ID); resp.StatusCode != 200 {
		t.Fatalf("revoke: %d %s", resp.StatusCode, bodyOf(resp))
	}
	resp = w.withKey(k.Key, "/premium/a")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d", resp.StatusCode)
	}
	if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="`) || !strings.Contains(h, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", h)
	}
	var p problem
	if err := json.Unmarshal([]byte(bodyOf(resp)), &p); err != nil || p.Type != problemTypeBase+reasonInvalidKey || p.Status != 401 {
		t.Errorf("problem %+v %v", p, err)
	}
	if _, ok := got.Metadata[keyMetaPrefix+k.ID]; !ok {
		t.Fatal("the copy read before revoking lost the key")
	}
	if got, _ := w.fake.Customer(cus); got.Metadata[keyMetaPrefix+k.ID] != "" {
		t.Errorf("revoked key still in metadata: %v", got.Metadata)
	}
}

func TestAKeyThatIsNotLiveNeverFallsBackToTheCookie(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	_, _, c := w.subscriber("active")
	k := w.createKey(c, "")
	if resp := w.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("live key: %d", resp.StatusCode)
	}
	other := w.fake.CreateCustomer("other@example.com")
	w.fake.CreateSubscription(other, testPrice, "active")
	swapped := keyPrefix + strings.TrimPrefix(other, "cus_") + k.Key[strings.LastIndexByte(k.Key, '_'):]
	flipped := []byte(k.Key)
	flipped[len(flipped)-keyTagLen-1] ^= 1 // one character of the secret
	w.fake.WaitDeliveries()
	w.h.account.reads.Wait()
	reads := w.fake.Calls("")
	for name, key := range map[string]string{
		"truncated":              k.Key[:len(k.Key)-1],
		"extended":               k.Key + "x",
		"another customer's":     swapped,
		"secret changed":         string(flipped),
		"made up":                keyPrefix + "NoSuchCustomer_" + strings.Repeat("a", keyBodyLen),
		"prefix alone":           keyPrefix,
		"not base62":             k.Key[:len(k.Key)-1] + "-",
		"customer ID with dots":  keyPrefix + "a.b_" + strings.Repeat("a", keyBodyLen),
		"forged id, same secret": k.Key[:strings.LastIndexByte(k.Key, '_')+1] + "ZZZZZZZZ" + k.Key[strings.LastIndexByte(k.Key, '_')+1+keyIDLen:],
	} {
		// The browser's cookie is a payer's: a bad key still gets 401.
		resp := w.get(c, "/premium/a", "Authorization", "Bearer "+key, "Accept", "application/json")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s key: %d %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := w.fake.Calls("") - reads; n != 0 {
		t.Errorf("keys this site did not make cost %d Stripe calls", n)
	}
	// A Bearer token that is not the paywall's is the site's business:
	// the cookie decides.
	if resp := w.get(c, "/premium/a", "Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"); resp.StatusCode != 200 {
		t.Errorf("the site's own token: %d", resp.StatusCode)
	}
}

func TestAKeyOfACustomerWhoStoppedPayingGets402(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	cus, sub, c := w.subscriber("active")
	k := w.createKey(c, "")
	if err := w.fake.CancelSubscription(sub); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	resp := w.withKey(k.Key, "/premium/a")
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("lapsed key: %d %s", resp.StatusCode, bodyOf(resp))
	}
	var p problem
	_ = json.Unmarshal([]byte(bodyOf(resp)), &p)
	if p.Reason != reasonEnded || !strings.HasSuffix(p.CheckoutURL, "/paywall/checkout?return=%2Fpremium%2Fa") || !strings.HasSuffix(p.KeysURL, "/paywall/keys") {
		t.Errorf("problem %+v", p)
	}
	if h := resp.Header.Get("WWW-Authenticate"); h != "" {
		t.Errorf("a 402 to a live key challenges it: %q", h)
	}
	calls := w.fake.Calls("")
	w.withKey(k.Key, "/premium/a")
	if n := w.fake.Calls("") - calls; n != 0 {
		t.Errorf("a refused request cost %d Stripe calls", n)
	}
	// Listing and revoking stay open; creating does not.
	if resp := w.get(c, "/paywall/keys", "Accept", "application/json"); resp.StatusCode != 200 || !strings.Contains(bodyOf(resp), k.ID) ||
		!strings.Contains(bodyOf(resp), `"entitled":false`) {
		t.Errorf("list of a lapsed customer: %d %s", resp.StatusCode, bodyOf(resp))
	}
	if resp := w.post(c, "/paywall/keys", nil, "Accept", "application/json"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("create by a lapsed customer: %d", resp.StatusCode)
	}
	if resp := w.revokeKey(c, k.ID); resp.StatusCode != 200 {
		t.Errorf("revoke by a lapsed customer: %d", resp.StatusCode)
	}
	if got, _ := w.fake.Customer(cus); len(got.Metadata) != 0 {
		t.Errorf("metadata left: %v", got.Metadata)
	}
}

func TestKeysAreManagedByABrowserIdentityOnly(t *testing.T) {
	w := newWorld(t, withAPIKeys(2))
	_, _, c := w.subscriber("active")
	k := w.createKey(c, "")

	cases := []struct {
		name   string
		client *http.Client
		method string
		path   string
		header []string
		want   int
	}{
		{"anonymous list", w.browser(), "GET", "/paywall/keys", nil, 401},
		{"anonymous create", w.browser(), "POST", "/paywall/keys", nil, 401},
		{"list with a key", http.DefaultClient, "GET", "/paywall/keys", []string{"Authorization", "Bearer " + k.Key}, 403},
		{"create with a key", http.DefaultClient, "POST", "/paywall/keys", []string{"Authorization", "Bearer " + k.Key}, 403},
		{"create with a key beside the cookie", c, "POST", "/paywall/keys", []string{"Authorization", "Bearer " + k.Key}, 403},
		{"revoke with a key", http.DefaultClient, "POST", "/paywall/keys/" + k.ID + "/revoke", []string{"Authorization", "Bearer " + k.Key}, 403},
		{"cross-site create", c, "POST", "/paywall/keys", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"cross-site revoke", c, "POST", "/paywall/keys/" + k.ID + "/revoke", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"revoke by GET", c, "GET", "/paywall/keys/" + k.ID + "/revoke", nil, 405},
		{"revoke an unknown key", c, "POST", "/paywall/keys/AAAAAAAA/revoke", nil, 404},
		{"a malformed id", c, "POST", "/paywall/keys/x/revoke", nil, 404},
	}
	for _, tc := range cases {
		h := append([]string{"Content-Type", "application/x-www-form-urlencoded", "Accept", "application/json"}, tc.header...)
		if tc.method == "POST" && !strings.Contains(strings.Join(tc.header, " "), "Sec-Fetch-Site") {
			h = append(h, "Sec-Fetch-Site", "same-origin")
		}
		resp := w.doBody(tc.client, tc.method, tc.path, "", h...)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d (%s)", tc.name, resp.StatusCode, tc.want, bodyOf(resp))
		}
	}
	if resp := w.get(w.browser(), "/paywall/keys", "Accept", "application/json"); !strings.Contains(bodyOf(resp), `"reason":"keys_signin"`) {
		t.Errorf("anonymous: %s", bodyOf(resp))
	}
	// The key still works: nothing above changed it.
	if resp := w.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("key after the refusals: %d", resp.StatusCode)
	}
	// max 2.
	w.createKey(c, "")
	resp := w.post(c, "/paywall/keys", nil, "Accept", "application/json")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(bodyOf(resp), "keys_max") || !strings.Contains(bodyOf(resp), "2 keys") {
		t.Errorf("a third key of two: %d %s", resp.StatusCode, bodyOf(resp))
	}
}

func TestKeysPageListsAndShowsANewKeyOnce(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	_, _, c := w.subscriber("active")
	resp := w.post(c, "/paywall/keys", url.Values{"name": {"<script>laptop</script>"}})
	body := bodyOf(resp)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(body, `<code id="key" class="key">pwk_`) ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Security-Policy") != builtinPageCSP {
		t.Fatalf("created: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if strings.Contains(body, "<script>") {
		t.Error("a key's name is not escaped")
	}
	key := body[strings.Index(body, "pwk_"):]
	key = key[:strings.IndexByte(key, '<')]
	resp = w.get(c, "/paywall/keys", "Accept-Language", "id")
	body = bodyOf(resp)
	if resp.StatusCode != 200 || strings.Contains(body, key) || !strings.Contains(body, "…"+key[len(key)-4:]) ||
		!strings.Contains(body, "Kunci API Anda") || !strings.Contains(body, `action="/paywall/keys/`) {
		t.Errorf("list: %d %s", resp.StatusCode, body)
	}
	// The 402 page points a known customer to the keys.
	_, _, lapsed := w.subscriber("canceled")
	if body := bodyOf(w.get(lapsed, "/premium/a")); !strings.Contains(body, `id="keys-link" href="/paywall/keys"`) {
		t.Errorf("402 page without the keys link: %s", body)
	}
}

func TestAnonymousJSON402ChallengesForAKey(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	resp := w.get(w.browser(), "/premium/a", "Accept", "application/json")
	if resp.StatusCode != 402 || resp.Header.Get("Link") == "" || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="`) {
		t.Errorf("anonymous JSON: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := w.get(w.browser(), "/premium/a"); resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("a browser's page is challenged: %v", resp.Header)
	}
	plain := newWorld(t)
	if resp := plain.get(plain.browser(), "/premium/a", "Accept", "application/json"); resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("without api_keys: %v", resp.Header)
	}
}

func TestARevokedKeyEndsOnAnotherInstanceWithTheWebhook(t *testing.T) {
	a := newWorld(t, withAPIKeys(0))
	b := a.sibling(withAPIKeys(0))
	a.fake.AddWebhookEndpoint(b.site.URL+"/paywall/webhook", hookSecret)
	_, _, c := a.subscriber("active")
	k := a.createKey(c, "")
	a.fake.WaitDeliveries()
	if resp := b.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("on b: %d", resp.StatusCode)
	}
	a.revokeKey(c, k.ID)
	a.fake.WaitDeliveries() // customer.updated
	b.h.account.reads.Wait()
	if resp := b.withKey(k.Key, "/premium/a"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("on b after the webhook: %d", resp.StatusCode)
	}
}

func TestKeysWithoutThePermissionOrRoomSaySo(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	cus, _, c := w.subscriber("active")
	w.fake.SetPermissionDenied("POST /v1/customers/{id}", "rak_customer_write")
	resp := w.post(c, "/paywall/keys", nil, "Accept", "application/json")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(bodyOf(resp), "keys_permission") ||
		!strings.Contains(bodyOf(resp), "Customers: write") {
		t.Errorf("without the permission: %d %s", resp.StatusCode, bodyOf(resp))
	}
	if w.h.account.down(now().UnixNano()) {
		t.Error("a missing permission took Stripe for down")
	}
	w.fake.SetPermissionDenied("POST /v1/customers/{id}", "")
	md := map[string]string{}
	for i := range stripeMetadataMax {
		md[fmt.Sprintf("operator_%d", i)] = "x"
	}
	if err := w.fake.UpdateCustomer(cus, "", md); err != nil {
		t.Fatal(err)
	}
	resp = w.post(c, "/paywall/keys", nil, "Accept", "application/json")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(bodyOf(resp), "keys_full") {
		t.Errorf("metadata full: %d %s", resp.StatusCode, bodyOf(resp))
	}
}

func TestAKeyIsNeverLogged(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	core, logs := observer.New(zapcore.DebugLevel)
	w.h.logger = zap.New(core)
	w.h.cookies.logger = w.h.logger
	_, sub, c := w.subscriber("active")
	k := w.createKey(c, "")
	w.withKey(k.Key, "/premium/a")
	w.withKey(k.Key+"x", "/premium/a")
	w.fake.CancelSubscription(sub)
	w.fake.WaitDeliveries()
	w.withKey(k.Key, "/premium/a")
	w.revokeKey(c, k.ID)
	w.withKey(k.Key, "/premium/a")
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the test sees nothing")
	}
	secret := k.Key[len(k.Key)-keyTagLen-keySecretLen:]
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, secret) {
			t.Errorf("logged: %s", line)
		}
	}
}

func TestKeyFormat(t *testing.T) {
	k := newAPIKeys(&APIKeys{}, "/paywall", newCookieJar("paywall", 0, strings.Repeat("s", 32), nil, zap.NewNop()))
	key, rec, err := k.newKey("cus_Ab_9", nil)
	if err != nil {
		t.Fatal(err)
	}
	cus, id, ok := parseKey(key)
	if !ok || cus != "cus_Ab_9" || id != rec.ID || rec.Last4 != key[len(key)-4:] || rec.Sum != keySum(key) {
		t.Fatalf("%q → %q %q %v, record %+v", key, cus, id, ok, rec)
	}
	vk, err := k.lookup(key)
	if err != nil || vk == nil || vk.customer != cus || vk.id != id {
		t.Fatalf("lookup: %+v %v", vk, err)
	}
	// Another site (another cookie key) does not take it.
	other := newAPIKeys(&APIKeys{}, "/paywall", newCookieJar("paywall", 0, strings.Repeat("t", 32), nil, zap.NewNop()))
	if vk, _ := other.lookup(key); vk != nil {
		t.Error("another site's key verified")
	}
	// The metadata value reads back as written.
	rec.Name = "a: name: with colons"
	ring := keysFromMetadata(map[string]string{keyMetaPrefix + rec.ID: keyValue(rec), "operator": "x", keyMetaPrefix + "bad": "v1:x"})
	if ring.len() != 1 || ring.list[0] != rec || !ring.has(rec.ID, &rec.Sum) {
		t.Fatalf("read back %+v, want %+v", ring.list, rec)
	}
	if n := len(keyValue(keyRecord{Name: strings.Repeat("é", maxKeyName)})); n > 500 {
		t.Errorf("a value of %d bytes", n)
	}
	if got := cleanKeyName("  a\x00b\nc" + strings.Repeat("é", 40)); len(got) > maxKeyName || strings.ContainsAny(got, "\x00\n") {
		t.Errorf("clean name %q", got)
	}
}

func TestFactsWithKeysTravelThroughRedisAndOldFactsStillRead(t *testing.T) {
	f := facts{subs: []subscriptionState{{Status: "active"}}, keys: &keyRing{list: []keyRecord{{ID: "AAAAAAAA", Created: 5, Last4: "abcd"}}}}
	b, _ := encodeFacts(f)
	got, ok := decodeFacts(string(b))
	if !ok || got.keys == nil || got.keys.list[0] != f.keys.list[0] || got.subs[0].Status != "active" {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	b, _ = encodeFacts(facts{subs: f.subs})
	if b[0] != '[' {
		t.Errorf("facts without keys are written as before api_keys: %s", b)
	}
	if got, ok := decodeFacts(string(b)); !ok || got.keys != nil {
		t.Errorf("old facts: %+v %v", got, ok)
	}
	if got, ok := decodeFacts(`{"s":[],"k":[]}`); !ok || got.keys == nil || got.keys.len() != 0 {
		t.Errorf("read, no keys: %+v %v", got, ok)
	}
	if got, ok := decodeFacts(`{"s":[]}`); !ok || got.keys != nil {
		t.Errorf("an object without keys is facts not read with them: %+v %v", got, ok)
	}
}

func TestKeysWithTheSitesLogin(t *testing.T) {
	w := loginWorld(t, loginEmail, "", withAPIKeys(0))
	user := "ann@example.com"
	cus := w.fake.CreateCustomer(user)
	w.fake.CreateSubscription(cus, testPrice, "active")
	w.fake.WaitDeliveries()
	if resp := w.as("bob@example.com", http.MethodGet, "/paywall/keys", "Accept", "application/json"); resp.StatusCode != http.StatusPaymentRequired {
		t.Errorf("a user who never subscribed: %d %s", resp.StatusCode, bodyOf(resp))
	}
	resp := w.as(user, http.MethodPost, "/paywall/keys", "Accept", "application/json", "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create as the site's user: %d %s", resp.StatusCode, bodyOf(resp))
	}
	var k createdKey
	_ = json.Unmarshal([]byte(bodyOf(resp)), &k)
	// The key alone, without the login, is the user's customer.
	if resp := w.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 || w.placeholder("http.paywall.customer") != cus {
		t.Errorf("key: %d %v", resp.StatusCode, w.placeholder("http.paywall.customer"))
	}
	// And {http.paywall.keys_url} answers the login's pages too.
	if resp := w.as(user, http.MethodGet, "/premium/a"); resp.StatusCode != 200 || w.placeholder("http.paywall.keys_url") != "/paywall/keys" {
		t.Errorf("login: %d keys_url %v", resp.StatusCode, w.placeholder("http.paywall.keys_url"))
	}
}

// The metadata's hash, not the tag alone, makes a key live: a key with a
// live key's customer and id, and the tag of this site (someone who holds
// the cookie key), but another secret, is refused.
func TestATaggedKeyWithAnotherSecretIsRefused(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	_, _, c := w.subscriber("active")
	k := w.createKey(c, "")
	tagKey, err := w.h.apiKeys.tagKeyBytes()
	if err != nil {
		t.Fatal(err)
	}
	head := k.Key[:len(k.Key)-keyTagLen-keySecretLen] + randomBase62(keySecretLen)
	forged := head + tag(tagKey, head)
	if vk, _ := w.h.apiKeys.lookup(forged); vk == nil || vk.id != k.ID {
		t.Fatal("the forged key does not carry a good tag: the test shows nothing")
	}
	if resp := w.withKey(forged, "/premium/a"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a key of another secret: %d", resp.StatusCode)
	}
}

func TestMaxKeysHoldsAcrossInstances(t *testing.T) {
	a := newWorld(t, withAPIKeys(2))
	b := a.sibling(withAPIKeys(2)) // hears no webhook: its facts lag
	cus, _, c := a.subscriber("active")
	cb := b.cookieFor(cus)
	kb := b.createKey(cb, "on b")
	if resp := b.withKey(kb.Key, "/premium/a"); resp.StatusCode != 200 { // b reads: one key
		t.Fatalf("b's key: %d", resp.StatusCode)
	}
	a.createKey(c, "on a")
	// b's facts hold one key: it writes a third, sees three, and takes
	// its own back.
	resp := b.post(cb, "/paywall/keys", nil, "Accept", "application/json")
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("a third key through b: %d %s", resp.StatusCode, bodyOf(resp))
	}
	if got, _ := a.fake.Customer(cus); len(got.Metadata) != 2 {
		t.Errorf("metadata %v, want the two keys", got.Metadata)
	}
	// a's facts know both: it does not even ask Stripe.
	writes := a.fake.Calls("POST /v1/customers/{id}")
	if resp := a.post(c, "/paywall/keys", nil, "Accept", "application/json"); resp.StatusCode != http.StatusConflict {
		t.Errorf("a third key through a: %d", resp.StatusCode)
	}
	if n := a.fake.Calls("POST /v1/customers/{id}") - writes; n != 0 {
		t.Errorf("a full customer's key cost %d writes", n)
	}
}

func TestARevokedKeyStaysOutWhileStripeIsDown(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	cus, _, c := w.subscriber("active")
	k := w.createKey(c, "")
	keep := w.createKey(c, "")
	for _, key := range []string{k.Key, keep.Key} {
		if resp := w.withKey(key, "/premium/a"); resp.StatusCode != 200 {
			t.Fatalf("live key: %d", resp.StatusCode)
		}
	}
	w.revokeKey(c, k.ID)
	w.fake.WaitDeliveries()
	w.h.account.reads.Wait()
	w.fake.SetOutage(stripefake.OutageErrors)
	w.h.account.invalidate(cus) // facts known, not fresh: served while Stripe is down
	if resp := w.withKey(k.Key, "/premium/a"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked key during the outage: %d", resp.StatusCode)
	}
	if resp := w.withKey(keep.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("live key during the outage: %d", resp.StatusCode)
	}
}

func TestProgramsGetJSONUnlessTheyAskForHTML(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	bad := keyPrefix + "x_" + strings.Repeat("a", keyBodyLen)
	for accept, wantJSON := range map[string]bool{"": true, "*/*": true, "text/html": false, "text/html,*/*;q=0.8": false, "application/json": true} {
		resp := w.get(http.DefaultClient, "/premium/a", "Authorization", "Bearer "+bad, "Accept", accept)
		if isJSON := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json"); isJSON != wantJSON || resp.StatusCode != 401 {
			t.Errorf("Accept %q: %d %s", accept, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// Facts another instance without api_keys wrote to Redis hold no keys: an
// instance with api_keys reads Stripe rather than take them for "none".
func TestKeysAreReadWhereAnotherInstanceSharedFactsWithoutThem(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()))
	b := a.sibling(withRedis(m.Addr()), withAPIKeys(0))
	cus, _, c := a.subscriber("active")
	k := b.createKey(b.cookieFor(cus), "")
	if resp := a.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("a: %d", resp.StatusCode)
	}
	if resp := b.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("b took a's facts for a customer without keys: %d", resp.StatusCode)
	}
}

// The README sends subscribers to checkout?return=/paywall/keys: they pay
// and land on their keys page, where they can make a key at once.
func TestCheckoutCanReturnToTheKeysPage(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	c := w.browser()
	w.subscribe(c, "/paywall/keys") // fails unless the success page sends the payer there
	resp := w.get(c, "/paywall/keys")
	if body := bodyOf(resp); resp.StatusCode != 200 || !strings.Contains(body, `id="create-key"`) {
		t.Errorf("keys page after paying: %d %s", resp.StatusCode, body)
	}
}

// A restricted key that may list subscriptions but not read customers:
// browsers are served as before, Stripe is not taken for down, and a
// program is told the keys cannot be checked.
func TestWithoutThePermissionToReadCustomersBrowsersStillPass(t *testing.T) {
	w := newWorld(t)
	deny := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/subscriptions" && strings.Contains(r.URL.RawQuery, "data.customer") {
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusForbidden)
			io.WriteString(rw, `{"error":{"type":"invalid_request_error","message":"The provided key 'rk_test_****abcd' does not have the required permissions for this endpoint. Having the 'rak_customer_read' permission would allow this request to continue."}}`)
			return
		}
		w.fake.ServeHTTP(rw, r)
	}))
	t.Cleanup(deny.Close)
	h := provisionTestHandler(t, deny.URL, withAPIKeys(0))
	t.Cleanup(func() { h.account.reads.Wait() })
	w.h = h
	cus, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("a paying browser: %d %s", resp.StatusCode, bodyOf(resp))
	}
	key, rec, _ := h.apiKeys.newKey(cus, nil)
	w.fake.UpdateCustomer(cus, "", map[string]string{keyMetaPrefix + rec.ID: keyValue(rec)})
	// Its customer.updated reads the customer again: let it land before
	// the reads are counted.
	w.fake.WaitDeliveries()
	h.account.invalidate(cus)
	resp := w.withKey(key, "/premium/a")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(bodyOf(resp), "keys_permission") {
		t.Errorf("a key: %d %s", resp.StatusCode, bodyOf(resp))
	}
	if h.account.down(now().UnixNano()) {
		t.Error("a missing permission took Stripe for down")
	}
	reads := w.fake.Calls("GET /v1/subscriptions")
	w.withKey(key, "/premium/a")
	if resp := w.get(c, "/premium/b"); resp.StatusCode != 200 {
		t.Errorf("a paying browser after the refusal: %d", resp.StatusCode)
	}
	if n := w.fake.Calls("GET /v1/subscriptions") - reads; n != 0 {
		t.Errorf("%d reads while the keys are known to be refused", n)
	}
}

// A key deleted in the Dashboard ends with the webhook, even when the read
// the webhook starts fails: the event says which keys it removed.
func TestADashboardRevocationEndsTheKeyWhileStripeCannotBeRead(t *testing.T) {
	w := newWorld(t, withAPIKeys(0))
	cus, _, c := w.subscriber("active")
	k := w.createKey(c, "")
	keep := w.createKey(c, "")
	w.fake.WaitDeliveries()
	w.h.account.reads.Wait()
	if resp := w.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("live key: %d", resp.StatusCode)
	}
	w.fake.SetOutageFor("GET /v1/subscriptions", stripefake.OutageErrors)
	if err := w.fake.UpdateCustomer(cus, "", map[string]string{keyMetaPrefix + k.ID: ""}); err != nil {
		t.Fatal(err)
	}
	w.fake.WaitDeliveries()
	if resp := w.withKey(k.Key, "/premium/a"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a key deleted in the Dashboard: %d", resp.StatusCode)
	}
	if resp := w.withKey(keep.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("another key of the customer: %d", resp.StatusCode)
	}
}

// With Redis, a key revoked on one instance leaves the facts every other
// instance holds, so that none lets it in while it cannot read Stripe; an
// instance that never read the customer takes no key from Redis's copy.
func TestARevokedKeyLeavesEveryInstanceThroughRedis(t *testing.T) {
	m := startRedis(t)
	a := newWorld(t, withRedis(m.Addr()), withAPIKeys(0))
	b := a.sibling(withRedis(m.Addr()), withAPIKeys(0))
	third := a.sibling(withRedis(m.Addr()), withAPIKeys(0))
	cus, _, c := a.subscriber("active")
	k := a.createKey(c, "")
	k2 := a.createKey(c, "")
	a.fake.WaitDeliveries()
	a.h.account.reads.Wait()
	b.listening()
	if resp := a.withKey(k2.Key, "/premium/a"); resp.StatusCode != 200 { // Redis holds the facts, both keys
		t.Fatalf("a: %d", resp.StatusCode)
	}
	if resp := b.withKey(k.Key, "/premium/a"); resp.StatusCode != 200 {
		t.Fatalf("b: %d", resp.StatusCode)
	}
	a.fake.SetOutageFor("GET /v1/subscriptions", stripefake.OutageErrors)
	if resp := a.revokeKey(c, k.ID); resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	eventually(t, 5*time.Second, "b drops the key", func() bool {
		e := b.h.account.peek(cus)
		return e != nil && e.keys.find(k.ID) == nil
	})
	if resp := b.withKey(k.Key, "/premium/a"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("b, Stripe unreadable: %d", resp.StatusCode)
	}
	if resp := third.withKey(k.Key, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("an instance that never read the customer, Stripe unreadable: %d", resp.StatusCode)
	}
	if resp := third.get(third.cookieFor(cus), "/premium/a"); resp.StatusCode != 200 {
		t.Errorf("the same customer's browser there: %d", resp.StatusCode)
	}
}
