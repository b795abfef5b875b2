package paywall

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// moduleTestContext is a Caddy context without a config, as Caddy's own tests
// make them; it is canceled when the test ends.
func moduleTestContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// provisionForModuleTest provisions h and releases it when the test ends.
func provisionForModuleTest(t *testing.T, h *Handler) {
	t.Helper()
	if err := h.Provision(moduleTestContext(t)); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
}

// moduleTestKey is a syntactically valid secret key unique to the test, so that
// tests do not share an account in the pool.
func moduleTestKey(t *testing.T) string {
	return "sk_test_" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

// unsetenvForTest removes name from the environment for the test's duration.
func unsetenvForTest(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value afterwards
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func TestModuleInfo(t *testing.T) {
	info := Handler{}.CaddyModule()
	if info.ID != "http.handlers.paywall" {
		t.Errorf("module ID = %q", info.ID)
	}
	if _, ok := info.New().(*Handler); !ok {
		t.Errorf("New returns %T, want *Handler", info.New())
	}
	if _, err := caddy.GetModule("http.handlers.paywall"); err != nil {
		t.Errorf("module not registered: %v", err)
	}
}

func TestProvisionResolvesEnvPlaceholders(t *testing.T) {
	t.Setenv("PAYWALL_TEST_SK", " "+leakSecretKey+"\n")
	t.Setenv("PAYWALL_TEST_WHSEC", leakWebhookSecret)
	t.Setenv("PAYWALL_TEST_COOKIE", leakCookieSecret)
	t.Setenv("PAYWALL_TEST_PRICES", "price_a price_b")
	t.Setenv("PAYWALL_TEST_PRODUCT", "prod_x")
	t.Setenv("PAYWALL_TEST_API", "http://localhost:12111/")

	h := &Handler{
		SecretKey:     "{env.PAYWALL_TEST_SK}",
		WebhookSecret: "{env.PAYWALL_TEST_WHSEC}",
		CookieSecret:  "{env.PAYWALL_TEST_COOKIE}",
		Prices:        []string{"{env.PAYWALL_TEST_PRICES}", "price_c"},
		Products:      []string{"{env.PAYWALL_TEST_PRODUCT}"},
		APIURL:        "{env.PAYWALL_TEST_API}",
	}
	provisionForModuleTest(t, h)
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	if h.secretKey != leakSecretKey {
		t.Errorf("secret key not resolved and trimmed")
	}
	if h.webhookSecret != leakWebhookSecret {
		t.Errorf("webhook secret not resolved")
	}
	if h.cookieSecret != leakCookieSecret {
		t.Errorf("cookie secret not resolved")
	}
	if got := strings.Join(h.prices, " "); got != "price_a price_b price_c" {
		t.Errorf("prices = %q", got)
	}
	if got := strings.Join(h.products, " "); got != "prod_x" {
		t.Errorf("products = %q", got)
	}
	if h.apiURL != "http://localhost:12111" {
		t.Errorf("api_url = %q", h.apiURL)
	}
	// The configuration itself keeps the placeholders.
	if h.SecretKey != "{env.PAYWALL_TEST_SK}" || h.WebhookSecret != "{env.PAYWALL_TEST_WHSEC}" || h.CookieSecret != "{env.PAYWALL_TEST_COOKIE}" {
		t.Errorf("Provision rewrote the configured placeholders: %q %q %q", h.SecretKey, h.WebhookSecret, h.CookieSecret)
	}
}

func TestProvisionDefaults(t *testing.T) {
	h := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}}
	provisionForModuleTest(t, h)
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if h.prefix != "/paywall" {
		t.Errorf("prefix = %q, want /paywall", h.prefix)
	}
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"cache_ttl", time.Duration(h.CacheTTL), 5 * time.Minute},
		{"stale_if_error", time.Duration(h.StaleIfError), 24 * time.Hour},
		{"grace_period", time.Duration(h.GracePeriod), 0},
		{"stripe_timeout", time.Duration(h.StripeTimeout), 5 * time.Second},
		{"cookie_max_age", time.Duration(h.CookieMaxAge), 30 * 24 * time.Hour},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if h.CacheSize != 100_000 {
		t.Errorf("cache_size = %d, want 100000", h.CacheSize)
	}
	if h.CookieName != "paywall" {
		t.Errorf("cookie_name = %q, want paywall", h.CookieName)
	}
	if h.stripe == nil || h.account == nil || h.cookies == nil {
		t.Errorf("Provision left the Stripe client, account or cookie jar unset")
	}
}

func TestProvisionKeepsGivenValues(t *testing.T) {
	h := &Handler{
		SecretKey:      moduleTestKey(t),
		Prices:         []string{"price_1"},
		EndpointPrefix: "/billing/",
		CacheTTL:       caddy.Duration(90 * time.Second),
		StaleIfError:   caddy.Duration(time.Hour),
		CacheSize:      10,
		StripeTimeout:  caddy.Duration(time.Second),
		CookieMaxAge:   caddy.Duration(time.Hour),
		CookieName:     "pw",
	}
	provisionForModuleTest(t, h)
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if h.prefix != "/billing" {
		t.Errorf("prefix = %q, want /billing", h.prefix)
	}
	if h.CacheTTL != caddy.Duration(90*time.Second) || h.StaleIfError != caddy.Duration(time.Hour) ||
		h.CacheSize != 10 || h.StripeTimeout != caddy.Duration(time.Second) ||
		h.CookieMaxAge != caddy.Duration(time.Hour) || h.CookieName != "pw" {
		t.Errorf("Provision replaced given values: %+v", h)
	}
}

func TestValidateErrors(t *testing.T) {
	const shortCookie = "tooShort-7Hq2Lm"
	t.Setenv("PAYWALL_TEST_BAD_WHSEC", leakSecretKey)
	t.Setenv("PAYWALL_TEST_SHORT_COOKIE", shortCookie)
	unsetenvForTest(t, "PAYWALL_TEST_NO_PRICES")

	tests := []struct {
		name string
		h    *Handler
		want string
	}{
		{"no price or product", &Handler{}, "price or product"},
		{"price placeholder empty", &Handler{Prices: []string{"{env.PAYWALL_TEST_NO_PRICES}"}}, "price or product"},
		{"product ID as price", &Handler{Prices: []string{"prod_123"}}, "price"},
		{"price without prefix", &Handler{Prices: []string{"123"}}, "price"},
		{"price ID as product", &Handler{Products: []string{"price_123"}}, "product"},
		{"api_url not http", &Handler{Prices: []string{"price_1"}, APIURL: "ftp://localhost:12111"}, "api_url"},
		{"api_url without scheme", &Handler{Prices: []string{"price_1"}, APIURL: "localhost:12111"}, "api_url"},
		{"api_url without host", &Handler{Prices: []string{"price_1"}, APIURL: "http://"}, "api_url"},
		{"negative trial_days", &Handler{Prices: []string{"price_1"}, TrialDays: -1}, "trial_days"},
		{"too many trial_days", &Handler{Prices: []string{"price_1"}, TrialDays: 731}, "trial_days"},
		{"short cookie_secret", &Handler{Prices: []string{"price_1"}, CookieSecret: shortCookie}, "cookie_secret"},
		{"short cookie_secret from env", &Handler{Prices: []string{"price_1"}, CookieSecret: "{env.PAYWALL_TEST_SHORT_COOKIE}"}, "cookie_secret"},
		{"webhook_secret not whsec_", &Handler{Prices: []string{"price_1"}, WebhookSecret: "{env.PAYWALL_TEST_BAD_WHSEC}"}, "webhook_secret"},
		{"endpoint_prefix without slash", &Handler{Prices: []string{"price_1"}, EndpointPrefix: "paywall"}, "endpoint_prefix"},
		{"endpoint_prefix root", &Handler{Prices: []string{"price_1"}, EndpointPrefix: "/"}, "endpoint_prefix"},
		{"negative cache_size", &Handler{Prices: []string{"price_1"}, CacheSize: -1}, "cache_size"},
		{"public cache_control", &Handler{Prices: []string{"price_1"}, CacheControl: "public, max-age=60"}, "cache_control"},
		{"s-maxage in cache_control", &Handler{Prices: []string{"price_1"}, CacheControl: "private, S-MaxAge=60"}, "cache_control"},
		{"checkout_limit of nothing", &Handler{Prices: []string{"price_1"}, CheckoutLimit: &Limit{Per: caddy.Duration(time.Minute)}}, "checkout_limit"},
		{"free_views of none", &Handler{Prices: []string{"price_1"}, FreeViews: &Limit{Max: 0, Per: caddy.Duration(time.Hour)}}, "free_views"},
		{"free_views beyond a cookie", &Handler{Prices: []string{"price_1"}, FreeViews: &Limit{Max: 51, Per: caddy.Duration(time.Hour)}}, "free_views"},
		{"crawlers of an unknown engine", &Handler{Prices: []string{"price_1"}, Crawlers: []string{"duckduckgo"}}, "crawlers"},
		{"api_keys beyond Stripe's room", &Handler{Prices: []string{"price_1"}, APIKeys: &APIKeys{Max: 21}}, "api_keys max 21"},
		{"api_keys negative", &Handler{Prices: []string{"price_1"}, APIKeys: &APIKeys{Max: -1}}, "api_keys"},
	}
	for i := range tests {
		tc := tests[i]
		t.Run(tc.name, func(t *testing.T) {
			tc.h.SecretKey = moduleTestKey(t)
			provisionForModuleTest(t, tc.h)
			err := tc.h.Validate()
			if err == nil {
				t.Fatal("Validate accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			assertNoSecretInError(t, err)
			if strings.Contains(err.Error(), shortCookie) || strings.Contains(err.Error(), tc.h.SecretKey) {
				t.Errorf("error repeats a secret: %v", err)
			}
		})
	}
}

func TestValidateAcceptsFullConfig(t *testing.T) {
	h := &Handler{
		SecretKey:           "rk_live_Mn3Bc8Xz",
		Prices:              []string{"price_a", "plan_legacy"},
		Products:            []string{"prod_x"},
		WebhookSecret:       leakWebhookSecret,
		CookieSecret:        leakCookieSecret,
		EndpointPrefix:      "/billing",
		CacheTTL:            caddy.Duration(time.Minute),
		StaleIfError:        caddy.Duration(time.Hour),
		GracePeriod:         caddy.Duration(72 * time.Hour),
		TrialDays:           730,
		AllowPromotionCodes: true,
		SupportURL:          "https://example.com/help",
		DryRun:              true,
		APIURL:              "https://localhost:12111",
		CacheSize:           1,
		StripeTimeout:       caddy.Duration(time.Second),
		CookieMaxAge:        caddy.Duration(time.Hour),
		CookieName:          "pw",
	}
	provisionForModuleTest(t, h)
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestProvisionRejectsSecretKey(t *testing.T) {
	t.Setenv("PAYWALL_TEST_PK", "pk_live_Vt5Ue3")
	t.Setenv("PAYWALL_TEST_BLANK", "  \n")
	unsetenvForTest(t, "PAYWALL_TEST_UNSET_SK")

	tests := []struct {
		name, key, hidden string
		want              []string
	}{
		{"publishable key", "pk_test_123", "pk_test_123", []string{"secret_key", "publishable"}},
		{"publishable key from env", "{env.PAYWALL_TEST_PK}", "pk_live_Vt5Ue3", []string{"secret_key", "publishable"}},
		{"webhook secret", leakWebhookSecret, leakWebhookSecret, []string{"secret_key", "webhook_secret"}},
		{"cookie secret", leakCookieSecret, leakCookieSecret, []string{"secret_key"}},
		{"env var unset", "{env.PAYWALL_TEST_UNSET_SK}", "", []string{"secret_key", "required"}},
		{"env var blank", "{env.PAYWALL_TEST_BLANK}", "", []string{"secret_key", "required"}},
		{"empty", "", "", []string{"secret_key", "required"}},
	}
	for i := range tests {
		tc := tests[i]
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{SecretKey: tc.key, Prices: []string{"price_1"}}
			err := h.Provision(moduleTestContext(t))
			t.Cleanup(func() { _ = h.Cleanup() })
			if err == nil {
				t.Fatal("Provision accepted the key")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.hidden != "" && strings.Contains(err.Error(), tc.hidden) {
				t.Errorf("error repeats the key: %v", err)
			}
			assertNoSecretInError(t, err)
			if h.account != nil || h.poolKey != "" {
				t.Errorf("a refused key should take no account from the pool")
			}
		})
	}
}

// What the admin API's /config/ would show of a running handler: the
// placeholders, never what they resolved to.
func TestModuleJSONHidesResolvedSecrets(t *testing.T) {
	t.Setenv("PAYWALL_TEST_JSON_SK", leakSecretKey)
	t.Setenv("PAYWALL_TEST_JSON_WHSEC", leakWebhookSecret)
	t.Setenv("PAYWALL_TEST_JSON_COOKIE", leakCookieSecret)
	h := &Handler{
		SecretKey:     "{env.PAYWALL_TEST_JSON_SK}",
		WebhookSecret: "{env.PAYWALL_TEST_JSON_WHSEC}",
		CookieSecret:  "{env.PAYWALL_TEST_JSON_COOKIE}",
		Prices:        []string{"price_1"},
	}
	provisionForModuleTest(t, h)
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	plain, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []caddyconfig.Warning
	module := caddyconfig.JSONModuleObject(h, "handler", "paywall", &warnings)
	if len(warnings) > 0 {
		t.Fatalf("warnings: %v", warnings)
	}
	for _, out := range [][]byte{plain, module} {
		s := string(out)
		for _, ph := range []string{`"{env.PAYWALL_TEST_JSON_SK}"`, `"{env.PAYWALL_TEST_JSON_WHSEC}"`, `"{env.PAYWALL_TEST_JSON_COOKIE}"`} {
			if !strings.Contains(s, ph) {
				t.Errorf("JSON lacks the placeholder %s: %s", ph, s)
			}
		}
		for _, secret := range []string{leakSecretKey, leakWebhookSecret, leakCookieSecret} {
			if strings.Contains(s, secret) {
				t.Errorf("JSON shows a resolved secret: %s", s)
			}
		}
	}
}

// Handlers of one Stripe account share one *account, kept in the pool while
// any holds it, as across a config reload, and released by the last.
func TestModuleCleanupReleasesAccount(t *testing.T) {
	key := moduleTestKey(t)
	t.Setenv("PAYWALL_TEST_POOL_SK", key)

	oldCfg := &Handler{SecretKey: key, Prices: []string{"price_1"}}
	newCfg := &Handler{SecretKey: "{env.PAYWALL_TEST_POOL_SK}", Products: []string{"prod_1"}, CacheSize: 7}
	other := &Handler{SecretKey: key, Prices: []string{"price_1"}, APIURL: "http://localhost:12111"}
	for _, h := range []*Handler{oldCfg, newCfg, other} {
		if err := h.Provision(moduleTestContext(t)); err != nil {
			t.Fatalf("Provision: %v", err)
		}
	}

	if oldCfg.account == nil || oldCfg.account != newCfg.account {
		t.Fatalf("handlers of the same key should share one *account")
	}
	if other.account == oldCfg.account || other.poolKey == oldCfg.poolKey {
		t.Fatalf("another API URL should get its own *account")
	}
	if strings.Contains(oldCfg.poolKey, key) {
		t.Errorf("the pool key shows the secret key")
	}
	if n, ok := accounts.References(oldCfg.poolKey); !ok || n != 2 {
		t.Fatalf("References = %d, %v; want 2, true", n, ok)
	}

	if err := other.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, ok := accounts.References(other.poolKey); ok || n != 0 {
		t.Errorf("after Cleanup, other's account: References = %d, %v; want none", n, ok)
	}

	if err := oldCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, ok := accounts.References(newCfg.poolKey); !ok || n != 1 {
		t.Fatalf("after the old config's Cleanup: References = %d, %v; want 1, true", n, ok)
	}
	if err := newCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, ok := accounts.References(newCfg.poolKey); ok || n != 0 {
		t.Errorf("after both Cleanups: References = %d, %v; want none", n, ok)
	}
}

// Loaded the way Caddy loads a config, the handler is provisioned and
// validated, and canceling the context (a reload or stop) or failing to load
// gives its account back.
func TestModuleLoadedByCaddyReleasesAccount(t *testing.T) {
	key := moduleTestKey(t)
	t.Setenv("PAYWALL_TEST_LOAD_SK", key)
	raw := json.RawMessage(`{"secret_key":"{env.PAYWALL_TEST_LOAD_SK}","prices":["price_1"]}`)

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	var poolKey string
	for range 2 {
		mod, err := ctx.LoadModuleByID("http.handlers.paywall", raw)
		if err != nil {
			t.Fatalf("loading: %v", err)
		}
		poolKey = mod.(*Handler).poolKey
	}
	if n, ok := accounts.References(poolKey); !ok || n != 2 {
		t.Fatalf("References = %d, %v; want 2, true", n, ok)
	}
	cancel()
	if n, ok := accounts.References(poolKey); ok || n != 0 {
		t.Errorf("after the context ends: References = %d, %v; want none", n, ok)
	}

	// Validate fails after Provision took the account; Caddy cleans up.
	ctx2 := moduleTestContext(t)
	_, err := ctx2.LoadModuleByID("http.handlers.paywall",
		json.RawMessage(`{"secret_key":"{env.PAYWALL_TEST_LOAD_SK}","prices":["price_1"],"trial_days":-1}`))
	if err == nil || !strings.Contains(err.Error(), "trial_days") {
		t.Fatalf("want a trial_days error, got %v", err)
	}
	if n, ok := accounts.References(poolKey); ok || n != 0 {
		t.Errorf("after a failed Validate: References = %d, %v; want none", n, ok)
	}

	// Provision fails after taking the account.
	_, err = ctx2.LoadModuleByID("http.handlers.paywall",
		json.RawMessage(`{"secret_key":"{env.PAYWALL_TEST_LOAD_SK}","prices":["price_1"],"page":"testdata/no-such-page.html"}`))
	if err == nil || !strings.Contains(err.Error(), "page") {
		t.Fatalf("want a page error, got %v", err)
	}
	if n, ok := accounts.References(poolKey); ok || n != 0 {
		t.Errorf("after a failed Provision: References = %d, %v; want none", n, ok)
	}

	// A refused key never reaches the error text, through Caddy either.
	_, err = ctx2.LoadModuleByID("http.handlers.paywall",
		json.RawMessage(`{"secret_key":"pk_live_Vt5Ue3","prices":["price_1"]}`))
	if err == nil || !strings.Contains(err.Error(), "secret_key") {
		t.Fatalf("want a secret_key error, got %v", err)
	}
	assertNoSecretInError(t, err)
}

func TestProvisionRefusesSecretsThatResolveToNothing(t *testing.T) {
	unsetenvForTest(t, "PAYWALL_TEST_UNSET")
	for _, tc := range []struct {
		name   string
		set    func(*Handler)
		option string
	}{
		{"webhook_secret", func(h *Handler) { h.WebhookSecret = "{env.PAYWALL_TEST_UNSET}" }, "webhook_secret"},
		{"cookie_secret", func(h *Handler) { h.CookieSecret = "{env.PAYWALL_TEST_UNSET}" }, "cookie_secret"},
		{"redis", func(h *Handler) { h.Redis = "{env.PAYWALL_TEST_UNSET}" }, "redis"},
	} {
		h := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}}
		tc.set(h)
		err := h.Provision(moduleTestContext(t))
		_ = h.Cleanup()
		if err == nil || !strings.Contains(err.Error(), tc.option) {
			t.Errorf("%s from an unset variable: %v, want an error naming it", tc.name, err)
		}
	}
}

func TestValidateRefusesABadCookieName(t *testing.T) {
	h := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}, CookieName: "bad name;", CookieSecret: strings.Repeat("s", 32)}
	provisionForModuleTest(t, h)
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "cookie_name") {
		t.Fatalf("Validate: %v, want an error naming cookie_name", err)
	}
}

func TestValidateRefusesABadPublicURL(t *testing.T) {
	for _, u := range []string{"shop.example", "ftp://shop.example", "https://shop.example/shop", "https://"} {
		h := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}, PublicURL: u, CookieSecret: strings.Repeat("s", 32)}
		provisionForModuleTest(t, h)
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "public_url") {
			t.Errorf("public_url %q: %v, want an error naming public_url", u, err)
		}
	}
}

func TestLiteralSecretsAreWarnedAboutByName(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	h := &Handler{
		SecretKey:     "sk_test_literal_0123456789",
		WebhookSecret: "{env.STRIPE_WEBHOOK_SECRET}",
		CookieSecret:  strings.Repeat("c", 40),
		logger:        zap.New(core),
	}
	h.warnLiteralSecrets()
	var named []string
	for _, e := range logs.All() {
		named = append(named, e.ContextMap()["option"].(string))
		if strings.Contains(e.Message, "sk_test_") || strings.Contains(e.Message, "cccc") {
			t.Errorf("the warning shows the secret: %s", e.Message)
		}
		if !strings.Contains(e.Message, "/config/") || !strings.Contains(e.Message, "{env.") {
			t.Errorf("the warning does not say where it shows and what to do: %s", e.Message)
		}
	}
	if strings.Join(named, ",") != "secret_key,cookie_secret" {
		t.Errorf("warned about %v, want secret_key and cookie_secret", named)
	}
}

func TestStaleIfErrorOff(t *testing.T) {
	h, err := parseTestCaddyfile("paywall {\n secret_key {env.K}\n price price_1\n stale_if_error off\n}")
	if err != nil || h.StaleIfError != -1 {
		t.Fatalf("stale_if_error off: %v %v", h.StaleIfError, err)
	}
	w := newWorld(t, func(h *Handler) { h.StaleIfError = -1 })
	if w.h.staleIfError != 0 {
		t.Fatalf("staleIfError %v, want 0", w.h.staleIfError)
	}
	_, _, c := w.subscriber("active")
	if resp := w.get(c, "/premium/a"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the outage: %d", resp.StatusCode)
	}
	w.fake.SetOutage(stripefake.OutageErrors)
	w.clock.Advance(defaultCacheTTL + time.Second)
	if resp := w.get(c, "/premium/a"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stale_if_error off, outage, facts past cache_ttl: %d, want 503", resp.StatusCode)
	}
}

func TestValidateRefusesASupportURLThatIsNoLink(t *testing.T) {
	for _, u := range []string{"www.example.com", "example.com/help", "mailto:", "javascript:alert(1)", "ftp://example.com"} {
		h := &Handler{Prices: []string{"price_1"}, prices: []string{"price_1"}, SupportURL: u, supportURL: u, prefix: "/paywall", CookieName: "paywall"}
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "support_url") {
			t.Errorf("support_url %q: %v", u, err)
		}
	}
	for _, u := range []string{"https://example.com/help", "mailto:help@example.com", "http://localhost:8080/help"} {
		h := &Handler{Prices: []string{"price_1"}, prices: []string{"price_1"}, SupportURL: u, supportURL: u, prefix: "/paywall", CookieName: "paywall"}
		if err := h.Validate(); err != nil {
			t.Errorf("support_url %q: %v", u, err)
		}
	}
}

// A bad redis option fails provisioning (and so caddy validate) with a
// message that names it and never shows the URL's password; a good one
// makes no connection until the handler is used.
func TestProvisionRedisOptions(t *testing.T) {
	for _, tc := range []struct {
		name, url, prefix, want string
	}{
		{"not a URL", "redis://:hunter2-pw@127.0.0.1:port/0", "", "redis:"},
		{"unknown scheme", "http://:hunter2-pw@127.0.0.1:6379", "", "redis:"},
		{"prefix with a space", "redis://127.0.0.1:6379/0", "a b", "redis_prefix"},
	} {
		h := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}, Redis: tc.url, RedisPrefix: tc.prefix}
		err := h.Provision(moduleTestContext(t))
		_ = h.Cleanup()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want an error naming %q without the password", tc.name, err, tc.want)
		}
	}

	// Nothing listens on this port: provisioning must not try it.
	h := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}, Redis: "redis://127.0.0.1:1/0"}
	if err := h.Provision(moduleTestContext(t)); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	defer h.Cleanup()
	if h.RedisPrefix != defaultRedisPrefix || h.redis == nil || h.redis.listening.Load() || h.redis.out.Load() {
		t.Fatalf("prefix %q, link %+v: want the default prefix and a link not yet used", h.RedisPrefix, h.redis)
	}
	b, _ := json.Marshal(h)
	if !strings.Contains(string(b), `"redis":"redis://127.0.0.1:1/0"`) {
		t.Fatalf("the config as written is not kept: %s", b)
	}

	off := &Handler{SecretKey: moduleTestKey(t), Prices: []string{"price_1"}, Redis: "off"}
	if err := off.Provision(moduleTestContext(t)); err != nil || off.redis != nil {
		t.Fatalf("redis off: %v, link %v; want none", err, off.redis)
	}
	_ = off.Cleanup()
}
