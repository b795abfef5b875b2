package paywall_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/redisrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// examples/cluster runs as the README's "Several instances" recipe runs it:
// two instances of the file as written, with the environment the recipe
// sets, one Redis and a Stripe stand-in that tells the first one only.
func TestEndToEndClusterExampleRunsAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("runs caddy and redis-server")
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join(root, "examples", "cluster", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	const address = "http://localhost:{$PORT:8081} {"
	if !strings.Contains(string(body), address) {
		t.Fatalf("examples/cluster/Caddyfile no longer has the site address %s", address)
	}
	config := strings.Replace(string(body), address, "http://localhost:{{.HTTPPort}} {", 1)
	for strings.HasPrefix(config, "#") || strings.HasPrefix(config, "\n") {
		_, config, _ = strings.Cut(config, "\n")
	}

	rs := redisrun.Start(t)
	fake := e2eFake(t)
	webhookSecret := stripefake.NewWebhookSecret()
	env := map[string]string{
		"STRIPE_SECRET_KEY":     "sk_test_e2e" + e2eRandomHex(t),
		"STRIPE_WEBHOOK_SECRET": webhookSecret,
		"STRIPE_API_URL":        fake.URL(),
		"PAYWALL_PRICE":         stripefake.DefaultPrice.ID,
		"PAYWALL_COOKIE_SECRET": e2eRandomHex(t) + e2eRandomHex(t),
		"PAYWALL_REDIS_URL":     rs.URL(),
	}
	var sites []string
	for range 2 {
		inst := caddyrun.Start(t, config, env)
		sites = append(sites, strings.Replace(inst.URL(), "127.0.0.1", "localhost", 1))
	}
	fake.AddWebhookEndpoint(sites[0]+"/paywall/webhook", webhookSecret)
	t.Cleanup(fake.WaitDeliveries)

	c := e2eBrowser(t)
	e2eSubscribe(t, fake, c, sites[0])
	fake.WaitDeliveries()
	if res, page := e2eGet(t, c, sites[0]+"/premium/article", "text/html"); res.StatusCode != http.StatusOK || !strings.Contains(page, "Members only") {
		t.Fatalf("the first instance, after paying: %d %q", res.StatusCode, page)
	}
	reads := fake.Calls("GET /v1/subscriptions")
	if res, page := e2eGet(t, c, sites[1]+"/premium/article", "text/html"); res.StatusCode != http.StatusOK || !strings.Contains(page, "Members only") {
		t.Fatalf("the second instance, with the first's cookie: %d %q", res.StatusCode, page)
	}
	if n := fake.Calls("GET /v1/subscriptions") - reads; n != 0 {
		t.Errorf("the second instance read Stripe %d times, want none: the first's read is in Redis", n)
	}

	// The subscription ends; the webhook reaches the first instance only.
	var customer string
	for _, s := range fake.Sessions() {
		customer = s.Customer
	}
	subs := fake.Subscriptions(customer)
	if len(subs) == 0 {
		t.Fatal("the fake holds no subscription for the payer")
	}
	if err := fake.CancelSubscription(subs[0].ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		res, _ := e2eGet(t, c, sites[1]+"/premium/article", "application/json")
		if res.StatusCode == http.StatusPaymentRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second instance still answers %d 1 s after the cancellation", res.StatusCode)
		}
		time.Sleep(10 * time.Millisecond) // the poll's interval
	}
}
