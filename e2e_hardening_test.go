package paywall_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// e2eStart runs Caddy with caddyfile against a new fake Stripe, the
// secrets in the environment as operators are told to keep them.
func e2eStart(t *testing.T, caddyfile string, env map[string]string) (*caddyrun.Instance, *stripefake.Server) {
	t.Helper()
	fake := e2eFake(t)
	return e2eCaddy(t, fake, caddyfile, env), fake
}

// e2eFake starts a fake Stripe on loopback for one test, which it skips
// with -short.
func e2eFake(t *testing.T) *stripefake.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("runs caddy")
	}
	fake := stripefake.New(stripefake.Options{Logf: t.Logf})
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	return fake
}

// e2eCaddy runs Caddy with caddyfile against fake: E2E_STRIPE_SECRET_KEY
// and E2E_API_URL in its environment, with env's.
func e2eCaddy(t *testing.T, fake *stripefake.Server, caddyfile string, env map[string]string) *caddyrun.Instance {
	t.Helper()
	all := map[string]string{
		"E2E_STRIPE_SECRET_KEY": "sk_test_e2e" + e2eRandomHex(t),
		"E2E_API_URL":           fake.URL(),
	}
	for k, v := range env {
		all[k] = v
	}
	return caddyrun.Start(t, caddyfile, all)
}

// e2eSubscribe takes browser c through checkout and payment on site.
func e2eSubscribe(t *testing.T, fake *stripefake.Server, c *http.Client, site string) {
	t.Helper()
	res, body := e2eGet(t, c, site+"/paywall/checkout?return=/", "text/html")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout: %d\n%s", res.StatusCode, body)
	}
	loc := res.Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	if err := fake.CompleteCheckout(id, stripefake.CardSuccess); err != nil {
		t.Fatal(err)
	}
	sess, _ := fake.Session(id)
	if res, body := e2eGet(t, c, strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", id), "text/html"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("success: %d\n%s", res.StatusCode, body)
	}
}

const e2ePaywallBlock = `
		secret_key {env.E2E_STRIPE_SECRET_KEY}
		price price_demo_monthly
		api_url {env.E2E_API_URL}
`

// A site whose address has no host name, without public_url: Stripe's
// return URLs are never built from a Host the client chose.
func TestEndToEndAForgedHostGetsNoCheckout(t *testing.T) {
	t.Parallel()
	inst, fake := e2eStart(t, `:{{.HTTPPort}} {
	paywall /premium/* {`+e2ePaywallBlock+`	}
	respond "premium content"
}
`, nil)
	do := func(host, path, accept string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, inst.URL()+path, nil)
		req.Host = host
		req.Header.Set("Accept", accept)
		res, err := e2eBrowser(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	res, body := do("evil.example", "/paywall/checkout?return=/premium/x", "text/html")
	if res.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "Checkout is not available at this address") {
		t.Errorf("checkout with Host evil.example: %d\n%s", res.StatusCode, body)
	}
	if n := fake.Calls(""); n != 0 {
		t.Errorf("a forged Host made %d Stripe calls: %v", n, fake.CallCounts())
	}
	res, body = do("evil.example", "/premium/x", "application/json")
	if p := e2eProblem(t, body); res.StatusCode != http.StatusPaymentRequired || !strings.HasPrefix(p.CheckoutURL, "/paywall/checkout?") {
		t.Errorf("problem document for Host evil.example: %d, checkout_url %q, want a path", res.StatusCode, p.CheckoutURL)
	}
	if !inst.WaitLogs("public_url is needed", 5*time.Second) {
		t.Error("Caddy's log does not say that public_url is needed")
	}
	// The loopback address of a local trial works.
	res, body = do(strings.TrimPrefix(inst.URL(), "http://"), "/paywall/checkout?return=/premium/x", "text/html")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), fake.URL()) {
		t.Errorf("checkout on the loopback address: %d to %q\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
}

// A site on HTTPS without public_url: the Host counts only when it names
// the server the handshake was for, or another name Caddy holds a
// certificate for; a forged one gets no checkout.
func TestEndToEndOnHTTPSOnlyANameOfTheCertificateGetsACheckout(t *testing.T) {
	t.Parallel()
	certFile, keyFile := e2eCertificate(t, "news.localhost", "www.news.localhost")
	inst, fake := e2eStart(t, `https://:{{.HTTPSPort}} {
	tls `+certFile+` `+keyFile+`
	paywall /premium/* {`+e2ePaywallBlock+`	}
	respond "premium content"
}
http://127.0.0.1:{{.HTTPPort}} {
	respond "the harness waits for this port"
}
`, nil)
	addr := "127.0.0.1:" + strconv.Itoa(inst.HTTPSPort)
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "news.localhost", InsecureSkipVerify: true}, // a certificate of the test's own
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	checkout := func(host string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/paywall/checkout?return=/premium/x", nil)
		req.Host = host
		req.Header.Set("Accept", "text/html")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	port := ":" + strconv.Itoa(inst.HTTPSPort)
	res, body := checkout("evil.example" + port)
	if res.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "Checkout is not available at this address") {
		t.Errorf("checkout with Host evil.example over a handshake for news.localhost: %d\n%s", res.StatusCode, body)
	}
	if n := fake.Calls("POST /v1/checkout/sessions"); n != 0 {
		t.Errorf("a forged Host made %d Checkout Sessions", n)
	}
	for _, host := range []string{"news.localhost", "www.news.localhost"} { // the handshake's name, and the certificate's other
		res, body = checkout(host + port)
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), fake.URL()) {
			t.Fatalf("checkout with Host %s: %d to %q\n%s", host, res.StatusCode, res.Header.Get("Location"), body)
		}
		if sess := fake.Sessions()[0]; !strings.HasPrefix(sess.SuccessURL, "https://"+host+port+"/paywall/success?") {
			t.Errorf("Host %s: Stripe returns the payer to %q", host, sess.SuccessURL)
		}
	}
}

// e2eCertificate writes a self-signed certificate for names, and its key,
// into a directory of the test's.
func e2eCertificate(t *testing.T, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Caching headers set before the paywall (header) or by the application
// behind it (reverse_proxy) never let a shared cache keep a paid page.
func TestEndToEndAPaidPageIsNeverPublic(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, s-maxage=3600, max-age=60")
		w.Header().Set("CDN-Cache-Control", "max-age=86400")
		_, _ = io.WriteString(w, "from the application")
	}))
	t.Cleanup(upstream.Close)
	inst, fake := e2eStart(t, `http://127.0.0.1:{{.HTTPPort}} {
	header /premium/* Cache-Control "public, max-age=600"
	@gated path /premium/* /app/*
	paywall @gated {`+e2ePaywallBlock+`	}
	handle /app/* {
		reverse_proxy {$E2E_UPSTREAM}
	}
	respond "premium content"
}
`, map[string]string{"E2E_UPSTREAM": strings.TrimPrefix(upstream.URL, "http://")})
	c := e2eBrowser(t)
	e2eSubscribe(t, fake, c, inst.URL())
	for path, want := range map[string]string{
		"/premium/x": "private, max-age=600",
		// reverse_proxy adds the application's header to the one the
		// paywall set: no-cache stays, public and s-maxage go.
		"/app/x": "private, no-cache, max-age=60",
	} {
		res, body := e2eGet(t, c, inst.URL()+path, "text/html")
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, res.StatusCode, body)
		}
		if got := strings.Join(res.Header.Values("Cache-Control"), ", "); got != want {
			t.Errorf("%s: Cache-Control %q, want %q", path, got, want)
		}
		if res.Header.Get("CDN-Cache-Control") != "" || res.Header.Get("Vary") != "Cookie" {
			t.Errorf("%s: CDN-Cache-Control %q, Vary %q", path, res.Header.Get("CDN-Cache-Control"), res.Header.Get("Vary"))
		}
	}
}

// The README's matcher leaves CORS preflights to the site; without it the
// paywall refuses them, as a header a client chooses must not unlock content.
func TestEndToEndCORSPreflights(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start, end = "<!-- cors-example -->\n```caddyfile\n", "```"
	i := strings.Index(string(readme), start)
	if i < 0 {
		t.Fatal("README.md has no CORS example")
	}
	example := string(readme)[i+len(start):]
	example = example[:strings.Index(example, end)]
	example = strings.Replace(example, "api.example.com", "http://127.0.0.1:{{.HTTPPort}}", 1)
	example = strings.Replace(example, "secret_key {env.STRIPE_SECRET_KEY}", "secret_key {env.E2E_STRIPE_SECRET_KEY}\n\t\tapi_url {env.E2E_API_URL}", 1)
	example = strings.Replace(example, "price_monthly", "price_demo_monthly", 1)
	example = strings.Replace(example, "reverse_proxy localhost:8080", `respond "premium content"`, 1)
	inst, _ := e2eStart(t, example, nil)

	preflight := func(site string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, site+"/v1/things", nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight(inst.URL())
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("preflight with the README's matcher: %d %v", res.StatusCode, res.Header)
	}
	if res, body := e2eGet(t, e2eBrowser(t), inst.URL()+"/v1/things", "application/json"); res.StatusCode != http.StatusPaymentRequired {
		t.Errorf("GET without paying: %d %s", res.StatusCode, body)
	}

	plain, _ := e2eStart(t, `http://127.0.0.1:{{.HTTPPort}} {
	paywall /v1/* {`+e2ePaywallBlock+`	}
	respond "premium content"
}
`, nil)
	if res := preflight(plain.URL()); res.StatusCode != http.StatusPaymentRequired {
		t.Errorf("preflight without the matcher: %d, want 402", res.StatusCode)
	}
}

// The checkout limit is kept across a config reload: a reload must not
// hand every address a fresh allowance.
func TestEndToEndCheckoutLimitSurvivesAReload(t *testing.T) {
	t.Parallel()
	const site = `http://127.0.0.1:{{.HTTPPort}} {
	paywall /premium/* {` + e2ePaywallBlock + `		checkout_limit 2 per 1h
		support_url SUPPORT
	}
	respond "premium content"
}
`
	inst, fake := e2eStart(t, strings.Replace(site, "SUPPORT", "https://example.com/a", 1), nil)
	checkout := func() int {
		res, _ := e2eGet(t, e2eBrowser(t), inst.URL()+"/paywall/checkout?return=/", "text/html")
		return res.StatusCode
	}
	for i := 0; i < 2; i++ {
		if got := checkout(); got != http.StatusSeeOther {
			t.Fatalf("checkout %d: %d", i+1, got)
		}
	}
	cfg, err := os.ReadFile(inst.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := strings.Replace(string(cfg), "https://example.com/a", "https://example.com/b", 1)
	req, _ := http.NewRequest(http.MethodPost, inst.AdminURL()+"/load", strings.NewReader(reloaded))
	req.Header.Set("Content-Type", "text/caddyfile")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", res.StatusCode, b)
	}
	if got := checkout(); got != http.StatusTooManyRequests {
		t.Errorf("a third checkout after a reload: %d, want 429", got)
	}
	if n := fake.Calls("POST /v1/checkout/sessions"); n != 2 {
		t.Errorf("%d Checkout Sessions, want 2", n)
	}
}
