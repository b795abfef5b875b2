package paywall_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The operator's view of a subscriber on the real Caddy: the admin
// endpoint answers it; the site's listener, at the same paths, does not.
func TestEndToEndAdminShowsACustomerOnlyOnTheAdminEndpoint(t *testing.T) {
	t.Parallel()
	key := "sk_test_e2eadmin" + e2eRandomHex(t)
	hint := "…" + key[len(key)-4:]
	inst, fake := e2eStart(t, `http://127.0.0.1:{{.HTTPPort}} {
	paywall /premium/* {`+e2ePaywallBlock+`	}
	respond "premium content"
}
`, map[string]string{"E2E_STRIPE_SECRET_KEY": key})
	c := e2eBrowser(t)
	e2eSubscribe(t, fake, c, inst.URL())
	if res, body := e2eGet(t, c, inst.URL()+"/premium/x", "text/html"); res.StatusCode != http.StatusOK {
		t.Fatalf("the subscriber: %d\n%s", res.StatusCode, body)
	}
	sessions := fake.Sessions()
	if len(sessions) != 1 || sessions[0].Customer == "" {
		t.Fatalf("checkout sessions at the fake: %+v, want one with its customer", sessions)
	}
	cus := sessions[0].Customer

	call := func(method, u string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, secret := range []string{key, key[:len(key)-4], "sk_test"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s %s: the answer holds the key or a part of it (%q):\n%s", method, u, secret, b)
			}
		}
		return res.StatusCode, string(b)
	}

	status, body := call(http.MethodGet, inst.AdminURL()+"/paywall/customers/"+cus)
	var customer struct {
		Customer string `json:"customer"`
		Accounts []struct {
			Account       string `json:"account"`
			Source        string `json:"source"`
			HeldIn        string `json:"held_in"`
			Subscriptions []struct {
				Status string `json:"status"`
			} `json:"subscriptions"`
			Gates []struct {
				EndpointPrefix string `json:"endpoint_prefix"`
				Entitled       bool   `json:"entitled"`
				Reason         string `json:"reason"`
			} `json:"gates"`
		} `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(body), &customer); err != nil || status != http.StatusOK {
		t.Fatalf("admin GET /paywall/customers/<cus>: %d (%v)\n%s", status, err, body)
	}
	if customer.Customer != cus || len(customer.Accounts) != 1 {
		t.Fatalf("admin answer: %s", body)
	}
	a := customer.Accounts[0]
	if a.Account != hint || a.Source != "stripe" || a.HeldIn != "memory" || len(a.Subscriptions) != 1 || a.Subscriptions[0].Status != "active" {
		t.Errorf("admin answer: %s\nwant account %s, from stripe, in memory, one active subscription", body, hint)
	}
	if len(a.Gates) != 1 || a.Gates[0].EndpointPrefix != "/paywall" || !a.Gates[0].Entitled || a.Gates[0].Reason != "active" {
		t.Errorf("admin answer's gates: %+v, want /paywall entitled (active)", a.Gates)
	}

	// One this instance does not hold: 404, which Caddy logs at error
	// level, the customer left out.
	unknown := "cus_NotHeld" + e2eRandomHex(t)
	if status, body := call(http.MethodGet, inst.AdminURL()+"/paywall/customers/"+unknown); status != http.StatusNotFound || !strings.Contains(body, `"error"`) {
		t.Errorf("admin GET of a customer not held: %d\n%s", status, body)
	}

	status, body = call(http.MethodGet, inst.AdminURL()+"/paywall/stats")
	var stats struct {
		Accounts []struct {
			Account         string `json:"account"`
			CustomersCached int    `json:"customers_cached"`
			StripeReads     int    `json:"stripe_reads"`
			StripeErrors    int    `json:"stripe_errors"`
		} `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(body), &stats); err != nil || status != http.StatusOK {
		t.Fatalf("admin GET /paywall/stats: %d (%v)\n%s", status, err, body)
	}
	if len(stats.Accounts) != 1 || stats.Accounts[0].Account != hint || stats.Accounts[0].CustomersCached != 1 ||
		stats.Accounts[0].StripeReads < 1 || stats.Accounts[0].StripeErrors != 0 {
		t.Errorf("admin stats: %s\nwant account %s with 1 customer cached, read without error", body, hint)
	}
	if strings.Contains(body, cus) {
		t.Errorf("admin stats name the customer:\n%s", body)
	}

	// The site's listener, asked the same by the subscriber's own
	// browser, answers none of it.
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/paywall/stats"},
		{http.MethodGet, "/paywall/customers/" + cus},
		{http.MethodGet, "/paywall/customers/" + cus + "?refresh=1"},
		{http.MethodPost, "/paywall/customers/" + cus + "/refresh"},
	} {
		status, body := call(r.method, inst.URL()+r.path)
		if status == http.StatusOK || strings.Contains(body, cus) || strings.Contains(body, `"accounts"`) || strings.Contains(body, hint) {
			t.Errorf("the site's %s %s answered %d with the admin's data:\n%s", r.method, r.path, status, body)
		}
	}

	// Caddy logs the URI of each admin request at info level, the
	// customer's ID with it (the operator asked by it); nothing else
	// above debug level names a customer, the 404's error line included.
	for _, line := range strings.Split(inst.Logs(), "\n") {
		if !strings.Contains(line, cus) && !strings.Contains(line, unknown) {
			continue
		}
		var entry struct {
			Level  string `json:"level"`
			Logger string `json:"logger"`
			Msg    string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil {
			t.Errorf("a log line that is not JSON names the customer: %s", line)
			continue
		}
		if entry.Level != "debug" && !(entry.Logger == "admin.api" && entry.Msg == "received request") {
			t.Errorf("a %s log line names the customer: %s", entry.Level, line)
		}
	}
}
