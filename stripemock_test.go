package paywall

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// stripeMockVersion is the stripe-mock the Makefile installs.
const stripeMockVersion = "v0.203.0"

// stripeMockKey is shaped like a test-mode secret key, as stripe-mock wants.
const stripeMockKey = "sk_test_stripemock0123456789abcdef"

// TestStripeClientAgainstStripeMock runs every method of stripeClient
// against stripe-mock, which checks each request against Stripe's OpenAPI
// spec and answers 400 to one it would refuse. Its spec is newer than the
// API version stripe-go v76 pins, so only the fields both share are checked.
func TestStripeClientAgainstStripeMock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts stripe-mock")
	}
	base := startStripeMock(t)
	c := newStripeClient(stripeMockKey, base, 10*time.Second)
	ctx := context.Background()

	t.Run("subscriptions", func(t *testing.T) {
		f, err := c.subscriptions(ctx, "cus_stripemock", true)
		subs := f.subs
		if err != nil {
			t.Fatalf("subscriptions: %v", err)
		}
		if len(subs) == 0 {
			t.Fatal("stripe-mock's list fixture holds a subscription; got none")
		}
		for _, s := range subs {
			if s.Status == "" {
				t.Errorf("subscription without a status: %+v", s)
			}
			for _, it := range s.Items {
				if !strings.HasPrefix(it.Price, "price_") && !strings.HasPrefix(it.Price, "plan_") {
					t.Errorf("item price %q is not a price ID", it.Price)
				}
			}
		}
	})

	checkout := func(t *testing.T, req checkoutRequest) {
		t.Helper()
		sess, err := c.createCheckout(ctx, req)
		if err != nil {
			t.Fatalf("createCheckout(%+v): %v", req, err)
		}
		if !strings.HasPrefix(sess.ID, "cs_") {
			t.Errorf("session ID %q does not start with cs_", sess.ID)
		}
	}
	full := checkoutRequest{
		Price:               "price_stripemock",
		Customer:            "cus_stripemock",
		SuccessURL:          "http://127.0.0.1:8080/paywall/success?return=%2Fpremium%2Fx&session_id={CHECKOUT_SESSION_ID}",
		CancelURL:           "http://127.0.0.1:8080/premium/x",
		ClientReferenceID:   newNonce(),
		TrialDays:           14,
		AllowPromotionCodes: true,
		ExpiresAt:           time.Now().Add(checkoutLifetime),
	}
	t.Run("createCheckout/every option", func(t *testing.T) { checkout(t, full) })
	t.Run("createCheckout/new customer", func(t *testing.T) {
		req := full
		req.Customer = ""
		req.TrialDays = 0
		req.AllowPromotionCodes = false
		req.ExpiresAt = time.Time{}
		checkout(t, req)
	})

	// api_keys: the subscriptions' customer expanded, and the metadata
	// written and deleted, as keys.go does.
	t.Run("subscriptions/without keys", func(t *testing.T) {
		f, err := c.subscriptions(ctx, "cus_stripemock", false)
		if err != nil || f.keys != nil {
			t.Fatalf("subscriptions: %+v %v", f, err)
		}
	})
	t.Run("subscriptions/with keys", func(t *testing.T) {
		f, err := c.subscriptions(ctx, "cus_stripemock", true)
		if err != nil || f.keys == nil {
			t.Fatalf("subscriptions with keys: %+v %v", f, err)
		}
	})
	t.Run("updateMetadata", func(t *testing.T) {
		rec := keyRecord{ID: "AbCdEfGh", Created: time.Now().Unix(), Last4: "wxyz", Name: "ci: runner"}
		if _, err := c.updateMetadata(ctx, "cus_stripemock", map[string]string{keyMetaPrefix + rec.ID: keyValue(rec)}); err != nil {
			t.Fatalf("create a key: %v", err)
		}
		if _, err := c.updateMetadata(ctx, "cus_stripemock", map[string]string{keyMetaPrefix + rec.ID: ""}); err != nil {
			t.Fatalf("revoke a key: %v", err)
		}
	})

	t.Run("checkoutSession", func(t *testing.T) {
		sess, err := c.checkoutSession(ctx, "cs_test_stripemock")
		if err != nil {
			t.Fatalf("checkoutSession: %v", err)
		}
		if sess.ID == "" || sess.Mode == "" || sess.Status == "" {
			t.Errorf("session lacks id, mode or status: %+v", sess)
		}
	})

	t.Run("expireCheckout", func(t *testing.T) {
		if err := c.expireCheckout(ctx, "cs_test_stripemock"); err != nil {
			t.Fatalf("expireCheckout: %v", err)
		}
	})

	t.Run("createPortal", func(t *testing.T) {
		u, err := c.createPortal(ctx, "cus_stripemock", "http://127.0.0.1:8080/premium/x")
		if err != nil {
			t.Fatalf("createPortal: %v", err)
		}
		if pu, err := url.Parse(u); err != nil || pu.Scheme == "" || pu.Host == "" {
			t.Errorf("portal URL %q is not an absolute URL", u)
		}
	})

	t.Run("defaultPrice", func(t *testing.T) {
		p, err := c.defaultPrice(ctx, "prod_stripemock")
		if err != nil {
			t.Fatalf("defaultPrice: %v", err)
		}
		if !strings.HasPrefix(p, "price_") {
			t.Errorf("default price %q is not a price ID", p)
		}
	})

	// What the page sells, in one call each: stripe-mock accepts the
	// expansions and answers with the objects expanded.
	for _, id := range []string{"price_stripemock", "prod_stripemock"} {
		t.Run("offer of "+id, func(t *testing.T) {
			o, err := c.offer(ctx, id)
			if err != nil {
				t.Fatalf("offer: %v", err)
			}
			if !strings.HasPrefix(o.price, "price_") || !strings.HasPrefix(o.product, "prod_") || o.name == "" || o.currency == "" {
				t.Errorf("offer of %s: %+v", id, o)
			}
		})
	}

	t.Run("stripe-mock refuses a malformed request", func(t *testing.T) {
		// Without this, the passes above would prove nothing.
		form := url.Values{
			"mode":                    {"subscription"},
			"line_items[0][price]":    {"price_stripemock"},
			"line_items[0][quantity]": {"1"},
			"success_url":             {full.SuccessURL},
			"not_a_stripe_parameter":  {"1"},
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/checkout/sessions", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+stripeMockKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("stripe-mock answered %s to an unknown parameter, want 400", res.Status)
		}
	})
}

// TestCheckoutSendsLiteralSessionPlaceholder checks the form the handler
// sends to create a Checkout Session: Stripe substitutes
// {CHECKOUT_SESSION_ID} only when the braces reach it unescaped in the
// success_url value.
func TestCheckoutSendsLiteralSessionPlaceholder(t *testing.T) {
	var mu sync.Mutex
	var forms []url.Values
	var paths []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(body))
		if err != nil {
			t.Errorf("request body is not a form: %v", err)
		}
		mu.Lock()
		forms = append(forms, form)
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1/checkout/sessions" {
			http.Error(w, `{"error":{"type":"invalid_request_error","message":"unexpected"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id":     "cs_test_recorded",
			"object": "checkout.session",
			"mode":   "subscription",
			"status": "open",
			"url":    "https://checkout.stripe.test/c/pay/cs_test_recorded",
		})
	}))
	defer api.Close()

	h := &Handler{
		StripeTimeout: caddy.Duration(5 * time.Second),
		TrialDays:     7,
		prefix:        "/paywall",
		prices:        []string{"price_recorded"},
		logger:        zap.NewNop(),
		account:       newAccount(10),
		publicURL:     "http://site.example",
		originWarned:  new(atomic.Bool),
		signinWarned:  new(atomic.Bool),
	}
	h.stripe = newStripeClient(stripeMockKey, api.URL, 5*time.Second)
	h.cookies = newCookieJar("paywall", time.Hour, strings.Repeat("k", 32), nil, zap.NewNop())

	const ret = "/premium/a%20b?x=1&y=%C3%A9"
	req := httptest.NewRequest(http.MethodGet, "http://site.example/paywall/checkout?return="+url.QueryEscape(ret), nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	rec := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("an endpoint request reached the next handler")
		return nil
	})
	if err := h.ServeHTTP(rec, req, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	res := rec.Result()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("status %d, want 303; body %q", res.StatusCode, rec.Body.String())
	}
	if loc := res.Header.Get("Location"); loc != "https://checkout.stripe.test/c/pay/cs_test_recorded" {
		t.Errorf("Location %q, want the session's URL", loc)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(forms) != 1 || paths[0] != "POST /v1/checkout/sessions" {
		t.Fatalf("requests to Stripe: %v, want one POST /v1/checkout/sessions", paths)
	}
	form := forms[0]

	success := form.Get("success_url")
	if !strings.HasSuffix(success, "&session_id={CHECKOUT_SESSION_ID}") {
		t.Errorf("success_url %q does not end in the literal &session_id={CHECKOUT_SESSION_ID}", success)
	}
	if strings.Contains(success, "%7B") || strings.Contains(success, "%7b") {
		t.Errorf("success_url %q holds an escaped brace", success)
	}
	// What Stripe does, then what the success endpoint reads.
	substituted := strings.ReplaceAll(success, "{CHECKOUT_SESSION_ID}", "cs_test_recorded")
	su, err := url.Parse(substituted)
	if err != nil {
		t.Fatalf("success URL after substitution %q: %v", substituted, err)
	}
	if su.Scheme != "http" || su.Host != "site.example" || su.Path != "/paywall/success" {
		t.Errorf("success URL %q is not this site's /paywall/success", substituted)
	}
	if got := su.Query().Get("session_id"); got != "cs_test_recorded" {
		t.Errorf("session_id after substitution = %q", got)
	}
	if got := su.Query().Get("return"); got != ret {
		t.Errorf("return after substitution = %q, want %q", got, ret)
	}

	if got := form.Get("cancel_url"); got != "http://site.example"+ret {
		t.Errorf("cancel_url = %q", got)
	}
	if form.Get("mode") != "subscription" || form.Get("line_items[0][price]") != "price_recorded" ||
		form.Get("line_items[0][quantity]") != "1" || form.Get("subscription_data[trial_period_days]") != "7" {
		t.Errorf("checkout form lacks mode, line item or trial: %v", form)
	}
	if form.Get("expires_at") == "" {
		t.Error("checkout form lacks expires_at")
	}
	var nonce, session string
	for _, c := range res.Cookies() {
		if c.Name == "paywall_checkout" {
			nonce, session, _ = strings.Cut(c.Value, ".")
			session, _, _ = strings.Cut(session, ".")
		}
	}
	if nonce == "" || form.Get("client_reference_id") != nonce || session != "cs_test_recorded" {
		t.Errorf("client_reference_id %q and session cs_test_recorded are not the checkout cookie's %q and %q",
			form.Get("client_reference_id"), nonce, session)
	}
}

// startStripeMock runs stripe-mock on a loopback port the system picks,
// with HTTPS on a Unix socket so that nothing listens on another
// interface, and returns its base URL. It stops when the test ends.
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin := stripeMockBinary(t)
	// A short directory: a Unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:", "-https-unix", filepath.Join(dir, "https.sock"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var output strings.Builder
	var outputMu sync.Mutex
	addr := make(chan string, 1)
	listening := regexp.MustCompile(`Listening for (HTTPS?) (?:at address: (\S+)|on Unix socket: (\S+))`)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			outputMu.Lock()
			output.WriteString(line + "\n")
			outputMu.Unlock()
			m := listening.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if m[2] != "" {
				host, _, err := net.SplitHostPort(m[2])
				if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
					t.Errorf("stripe-mock listens on %s, not loopback only", m[2])
				}
				if m[1] == "HTTP" {
					addr <- m[2]
				}
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	logs := func() string {
		outputMu.Lock()
		defer outputMu.Unlock()
		return output.String()
	}

	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	var hostport string
	select {
	case hostport = <-addr:
	case <-exited:
		t.Fatalf("stripe-mock exited before it listened:\n%s", logs())
	case <-timeout.C:
		t.Fatalf("stripe-mock did not listen within 30s:\n%s", logs())
	}
	base := "http://" + hostport
	// Ready when it answers an API request (401 without a key is an answer).
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := client.Get(base + "/v1/customers")
		if err == nil {
			res.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock at %s does not answer: %v\n%s", base, err, logs())
		}
		select {
		case <-exited:
			t.Fatalf("stripe-mock exited:\n%s", logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stripeMockBinary finds stripe-mock: $STRIPE_MOCK_BIN, the Go bin
// directory, or PATH. Without it the test fails in CI and is skipped
// elsewhere.
func stripeMockBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("STRIPE_MOCK_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("STRIPE_MOCK_BIN=%s: %v", bin, err)
		}
		return bin
	}
	var candidates []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
			candidates = append(candidates, filepath.Join(strings.TrimSpace(lines[0]), "stripe-mock"))
		}
		if len(lines) > 1 {
			for _, p := range filepath.SplitList(strings.TrimSpace(lines[1])) {
				candidates = append(candidates, filepath.Join(p, "bin", "stripe-mock"))
			}
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	msg := "stripe-mock not found; install it with: go install github.com/stripe/stripe-mock@" + stripeMockVersion
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
