package paywall_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// examples/handle_errors runs as written: the paywall hands its refusals to
// the site's handle_errors, which answers with its own template, keeping
// the status, the placeholders' facts and the paywall's headers.
func TestEndToEndRefusalsThroughHandleErrors(t *testing.T) {
	t.Parallel()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "examples", "handle_errors")
	body, err := os.ReadFile(filepath.Join(dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	const address = "http://localhost:{$EXAMPLE_PORT:8081} {"
	if !strings.Contains(string(body), address) {
		t.Fatalf("examples/handle_errors/Caddyfile no longer has the site address %s", address)
	}
	config := strings.Replace(string(body), address, "http://localhost:{{.HTTPPort}} {", 1)
	for strings.HasPrefix(config, "#") || strings.HasPrefix(config, "\n") {
		_, config, _ = strings.Cut(config, "\n")
	}
	fake := e2eFake(t)
	inst := caddyrun.Start(t, config, map[string]string{
		"STRIPE_SECRET_KEY": "sk_test_e2e" + e2eRandomHex(t),
		"PAYWALL_PRICE":     stripefake.DefaultPrice.ID,
		"STRIPE_API_URL":    fake.URL(),
		"EXAMPLE_ROOT":      dir,
	})
	site := strings.Replace(inst.URL(), "127.0.0.1", "localhost", 1)

	// What the page sells reaches the site's page, escaped there: the
	// product's name is the Stripe account's to choose. The first refusal
	// reads it, waiting half a second at most, so a slow read shows it on
	// the next.
	if err := fake.UpdateProduct(stripefake.DefaultPrice.Product, "Premium <b>", ""); err != nil {
		t.Fatal(err)
	}
	res, page := e2eGet(t, e2eBrowser(t), site+"/premium/article.html", "text/html")
	for i := 0; i < 10 && !strings.Contains(page, `id="offer"`); i++ {
		res, page = e2eGet(t, e2eBrowser(t), site+"/premium/article.html", "text/html")
	}
	if !strings.Contains(page, `<p id="offer"><strong>Premium &lt;b&gt;</strong>: $5.00 / month</p>`) {
		t.Errorf("the site's page does not show the offer, escaped:\n%s", page)
	}
	if res.StatusCode != http.StatusPaymentRequired || !strings.Contains(page, `data-reason="no_subscription"`) ||
		!strings.Contains(page, `href="/paywall/checkout?return=%2Fpremium%2Farticle.html"`) {
		t.Fatalf("402 through handle_errors: %d\n%s", res.StatusCode, page)
	}
	if res.Header.Get("Link") != `</paywall/checkout?return=%2Fpremium%2Farticle.html>; rel="payment"` || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("the refusal's headers: Link %q Cache-Control %q", res.Header.Get("Link"), res.Header.Get("Cache-Control"))
	}
	if strings.Contains(page, `id="paywall"`) {
		t.Error("the built-in page answered, not the site's")
	}

	// A payer gets the article; the site's page is only for refusals.
	c := e2eBrowser(t)
	e2eSubscribe(t, fake, c, site)
	if res, page := e2eGet(t, c, site+"/premium/article.html", "text/html"); res.StatusCode != http.StatusOK || !strings.Contains(page, "premium-content") {
		t.Fatalf("the payer: %d\n%s", res.StatusCode, page)
	}

	// While Stripe cannot be reached, a payer whose facts are not cached
	// yet (just back from checkout) gets 503, Retry-After, and the site's
	// words: wait, do not pay again.
	late := e2eBrowser(t)
	e2eSubscribe(t, fake, late, site)
	fake.SetOutage(stripefake.OutageErrors)
	res, page = e2eGet(t, late, site+"/premium/article.html", "text/html")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
		!strings.Contains(page, `data-reason="stripe_unavailable"`) || !strings.Contains(page, "do not pay again") {
		t.Errorf("503 through handle_errors: %d Retry-After %q\n%s", res.StatusCode, res.Header.Get("Retry-After"), page)
	}
	fake.SetOutage(stripefake.OutageNone)

	// The endpoints' 405 goes through Caddy's error handling too, with
	// its Allow header.
	req, _ := http.NewRequest(http.MethodDelete, site+"/paywall/checkout", nil)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("DELETE /paywall/checkout: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
}
