package paywall

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	// the directives the adapt fixtures use besides paywall
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// Secrets the parser tests write into Caddyfiles. No error may repeat them,
// nor the distinctive part of them.
const (
	leakSecretKey     = "sk_test_51Hq4eC39HqLyjWDarjtT1zdp7dc"
	leakWebhookSecret = "whsec_Qx7vN2mKp9RtLs4WzYb8"
	leakCookieSecret  = "cookie-Zr8Lq2Wx6Nv4Tp0Ks3Hm9Jd7Fb5Gc1Ya"
	leakSMTPPassword  = "smtp-Pw7Gh3Lk9Qe2Xr5"
)

// secretLeakMarkers are substrings whose presence in an error means a
// secret was echoed, whole or in part.
var secretLeakMarkers = []string{
	leakSecretKey, "4eC39HqL",
	leakWebhookSecret, "Qx7vN2mK",
	leakCookieSecret, "Zr8Lq2Wx",
	leakSMTPPassword, "Pw7Gh3Lk",
	"pk_test_123", "pk_live_Vt5Ue3",
	"rk_live_Mn3Bc8Xz",
}

func assertNoSecretInError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, m := range secretLeakMarkers {
		if strings.Contains(err.Error(), m) {
			t.Errorf("error repeats a secret (%q): %v", m, err)
		}
	}
}

func parseTestCaddyfile(input string) (*Handler, error) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return &h, err
}

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  *Handler
	}{
		{
			name: "minimal with placeholder",
			input: `paywall {
				secret_key {env.STRIPE_SECRET_KEY}
				price price_123
			}`,
			want: &Handler{SecretKey: "{env.STRIPE_SECRET_KEY}", Prices: []string{"price_123"}},
		},
		{
			name: "restricted key and product only",
			input: `paywall {
				secret_key rk_live_Mn3Bc8Xz
				product prod_A
			}`,
			want: &Handler{SecretKey: "rk_live_Mn3Bc8Xz", Products: []string{"prod_A"}},
		},
		{
			name: "every option",
			input: `paywall {
				secret_key      ` + leakSecretKey + `
				price           price_a price_b
				price           price_c
				product         prod_x
				product         prod_y prod_z
				webhook_secret  ` + leakWebhookSecret + `
				cookie_secret   ` + leakCookieSecret + `
				endpoint_prefix /billing
				cache_ttl       90s
				stale_if_error  1d
				grace_period    3d12h
				trial_days      14
				allow_promotion_codes
				support_url     https://example.com/help
				page            /etc/caddy/paywall.html
				dry_run
				api_url         http://localhost:12111
				cache_size      5000
				stripe_timeout  2500ms
				cookie_max_age  7d
				cookie_name     pw
				checkout_limit  5 per 1h
			}`,
			want: &Handler{
				SecretKey:           leakSecretKey,
				Prices:              []string{"price_a", "price_b", "price_c"},
				Products:            []string{"prod_x", "prod_y", "prod_z"},
				WebhookSecret:       leakWebhookSecret,
				CookieSecret:        leakCookieSecret,
				EndpointPrefix:      "/billing",
				CacheTTL:            caddy.Duration(90 * time.Second),
				StaleIfError:        caddy.Duration(24 * time.Hour),
				GracePeriod:         caddy.Duration(84 * time.Hour),
				TrialDays:           14,
				AllowPromotionCodes: true,
				SupportURL:          "https://example.com/help",
				Page:                "/etc/caddy/paywall.html",
				DryRun:              true,
				APIURL:              "http://localhost:12111",
				CacheSize:           5000,
				StripeTimeout:       caddy.Duration(2500 * time.Millisecond),
				CookieMaxAge:        caddy.Duration(7 * 24 * time.Hour),
				CookieName:          "pw",
				CheckoutLimit:       &Limit{Max: 5, Per: caddy.Duration(time.Hour)},
			},
		},
		{
			name: "email sign-in",
			input: `paywall {
				secret_key {env.K}
				price price_1
				email {
					smtp     smtp.example.com:587
					username {env.SMTP_USER}
					password {env.SMTP_PASSWORD}
					from     "Example News <news@example.com>"
					tls      starttls
				}
				signin_link_ttl 10m
				signin_limit    2 per 1h
				signin_ip_limit off
			}`,
			want: &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"},
				Email: &EmailConfig{SMTP: "smtp.example.com:587", Username: "{env.SMTP_USER}", Password: "{env.SMTP_PASSWORD}",
					From: "Example News <news@example.com>", TLS: "starttls"},
				SigninLinkTTL: caddy.Duration(10 * time.Minute),
				SigninLimit:   &Limit{Max: 2, Per: caddy.Duration(time.Hour)},
				SigninIPLimit: &Limit{Off: true}},
		},
		{
			name:  "identity email",
			input: "paywall {\n secret_key {env.K}\n price price_1\n identity {http.auth.user.id} email\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, Identity: &Identity{Source: "{http.auth.user.id}", Kind: "email"}},
		},
		{
			name:  "identity metadata",
			input: "paywall {\n secret_key {env.K}\n price price_1\n identity {http.request.header.X-User} metadata user_id\n}",
			want: &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"},
				Identity: &Identity{Source: "{http.request.header.X-User}", Kind: "metadata", MetadataKey: "user_id"}},
		},
		{
			name:  "identity cookie",
			input: "paywall {\n secret_key {env.K}\n price price_1\n identity cookie\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}},
		},
		{
			name:  "redis",
			input: "paywall {\n secret_key {env.K}\n price price_1\n redis {env.PAYWALL_REDIS_URL}\n redis_prefix site1:\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, Redis: "{env.PAYWALL_REDIS_URL}", RedisPrefix: "site1:"},
		},
		{
			name:  "free_views",
			input: "paywall {\n secret_key {env.K}\n price price_1\n free_views 3 per 30d\n free_views_per_ip 20\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, FreeViews: &Limit{Max: 3, Per: caddy.Duration(30 * 24 * time.Hour)}, FreeViewsPerIP: 20},
		},
		{
			name:  "crawlers",
			input: "paywall {\n secret_key {env.K}\n price price_1\n crawlers google bing\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, Crawlers: []string{"google", "bing"}},
		},
		{
			name:  "api_keys",
			input: "paywall {\n secret_key {env.K}\n price price_1\n api_keys\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, APIKeys: &APIKeys{}},
		},
		{
			name:  "api_keys max",
			input: "paywall {\n secret_key {env.K}\n price price_1\n api_keys max 3\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, APIKeys: &APIKeys{Max: 3}},
		},
		{
			name:  "checkout_limit off",
			input: "paywall {\n secret_key {env.K}\n price price_1\n checkout_limit off\n}",
			want:  &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, CheckoutLimit: &Limit{Off: true}},
		},
		{
			name: "placeholders in secrets and prices",
			input: `paywall {
				secret_key     {env.STRIPE_SECRET_KEY}
				webhook_secret {env.STRIPE_WEBHOOK_SECRET}
				cookie_secret  {env.PAYWALL_COOKIE_SECRET}
				price          {env.STRIPE_PRICES} price_fixed
			}`,
			want: &Handler{
				SecretKey:     "{env.STRIPE_SECRET_KEY}",
				WebhookSecret: "{env.STRIPE_WEBHOOK_SECRET}",
				CookieSecret:  "{env.PAYWALL_COOKIE_SECRET}",
				Prices:        []string{"{env.STRIPE_PRICES}", "price_fixed"},
			},
		},
		{
			name: "zero durations and trailing slash on prefix",
			input: `paywall {
				secret_key {env.K}
				price price_1
				grace_period 0s
				endpoint_prefix /pay/
				trial_days 0
			}`,
			want: &Handler{SecretKey: "{env.K}", Prices: []string{"price_1"}, EndpointPrefix: "/pay/"},
		},
		{
			name: "matcher already removed by the helper, prices and products mixed",
			input: `paywall {
				secret_key {env.K}
				product prod_1
				price price_1
				product prod_2
				price price_2 price_3
			}`,
			want: &Handler{
				SecretKey: "{env.K}",
				Prices:    []string{"price_1", "price_2", "price_3"},
				Products:  []string{"prod_1", "prod_2"},
			},
		},
	}
	for i := range tests {
		tc := tests[i]
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTestCaddyfile(tc.input)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tc.want)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("parsed config differs\n got: %s\nwant: %s", gotJSON, wantJSON)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	// block wraps options in a directive that is otherwise valid, so that
	// each case fails for its own reason only.
	block := func(lines ...string) string {
		return "paywall {\n" + strings.Join(lines, "\n") + "\n}"
	}
	key := "secret_key " + leakSecretKey
	price := "price price_1"

	tests := []struct {
		name  string
		input string
		want  []string // substrings the error must contain
	}{
		{"missing secret_key", block(price), []string{"secret_key", "required"}},
		{"missing secret_key with other secrets", block(price, "webhook_secret "+leakWebhookSecret, "cookie_secret "+leakCookieSecret), []string{"secret_key"}},
		{"no price or product", block(key), []string{"price", "product"}},
		{"unknown option", block(key, price, "colour blue"), []string{"colour", "unrecognized"}},
		{"unknown option holding a secret", block(price, "stripe_key "+leakSecretKey), []string{"stripe_key"}},
		{"bad duration", block(key, price, "cache_ttl soon"), []string{"cache_ttl", "soon"}},
		{"email without block", block(key, price, "email smtp.example.com:587"), []string{"email", "block"}},
		{"email without smtp", block(key, price, "email {\nfrom news@example.com\n}"), []string{"email", "smtp", "required"}},
		{"email without from", block(key, price, "email {\nsmtp a:25\n}"), []string{"email", "from", "required"}},
		{"email bad tls", block(key, price, "email {\nsmtp a:25\nfrom a@b.c\ntls maybe\n}"), []string{"email", "tls", "maybe"}},
		{"email unknown option", block(key, price, "email {\nsmtp a:25\nfrom a@b.c\nport 25\n}"), []string{"email", "port"}},
		{"email unquoted from", block(key, price, "email {\nsmtp a:25\nfrom News <a@b.c>\n}"), []string{"email", "from", "quote"}},
		{"bad signin_limit", block(key, price, "signin_limit 3"), []string{"signin_limit"}},
		{"bad signin_ip_limit", block(key, price, "signin_ip_limit 0 per 1m"), []string{"signin_ip_limit"}},
		{"bad signin_link_ttl", block(key, price, "signin_link_ttl soon"), []string{"signin_link_ttl"}},
		{"identity of nothing", block(key, price, "identity"), []string{"identity"}},
		{"identity bad kind", block(key, price, "identity {http.auth.user.id} name"), []string{"identity"}},
		{"identity from the client", block(key, price, "identity {http.request.cookie.user} email"), []string{"identity", "client"}},
		{"identity metadata without key", block(key, price, "identity {http.auth.user.id} metadata"), []string{"identity"}},
		{"negative duration", block(key, price, "stale_if_error -5m"), []string{"stale_if_error", "negative"}},
		{"negative grace_period", block(key, price, "grace_period -1d"), []string{"grace_period"}},
		{"bad stripe_timeout", block(key, price, "stripe_timeout fast"), []string{"stripe_timeout"}},
		{"bad cookie_max_age", block(key, price, "cookie_max_age 30"), []string{"cookie_max_age"}},
		{"prefix without slash", block(key, price, "endpoint_prefix paywall"), []string{"endpoint_prefix"}},
		{"prefix root", block(key, price, "endpoint_prefix /"), []string{"endpoint_prefix"}},
		{"prefix slashes only", block(key, price, "endpoint_prefix //"), []string{"endpoint_prefix"}},
		{"publishable key", block("secret_key pk_test_123", price), []string{"secret_key", "publishable"}},
		{"publishable live key", block("secret_key pk_live_Vt5Ue3", price), []string{"secret_key", "publishable"}},
		{"webhook secret as secret_key", block("secret_key "+leakWebhookSecret, price), []string{"secret_key", "webhook_secret"}},
		{"cookie secret as secret_key", block("secret_key "+leakCookieSecret, price), []string{"secret_key"}},
		{"webhook_secret not whsec_", block(key, price, "webhook_secret "+leakSecretKey), []string{"webhook_secret", "whsec_"}},
		{"secret_key twice", block(key, key, price), []string{"secret_key", "more than once"}},
		{"webhook_secret twice", block(key, price, "webhook_secret "+leakWebhookSecret, "webhook_secret "+leakWebhookSecret), []string{"webhook_secret", "more than once"}},
		{"cookie_secret twice", block(key, price, "cookie_secret "+leakCookieSecret, "cookie_secret "+leakCookieSecret), []string{"cookie_secret", "more than once"}},
		{"cache_ttl twice", block(key, price, "cache_ttl 1m", "cache_ttl 2m"), []string{"cache_ttl", "more than once"}},
		{"dry_run twice", block(key, price, "dry_run", "dry_run"), []string{"dry_run", "more than once"}},
		{"too many args secret_key", block("secret_key "+leakSecretKey+" "+leakSecretKey, price), []string{"secret_key", "too many"}},
		{"too many args webhook_secret", block(key, price, "webhook_secret "+leakWebhookSecret+" extra"), []string{"webhook_secret", "too many"}},
		{"too many args cookie_secret", block(key, price, "cookie_secret "+leakCookieSecret+" "+leakCookieSecret), []string{"cookie_secret", "too many"}},
		{"too many args cache_ttl", block(key, price, "cache_ttl 1m 2m"), []string{"cache_ttl", "too many"}},
		{"too many args flag", block(key, price, "dry_run yes"), []string{"dry_run", "too many"}},
		{"too many args allow_promotion_codes", block(key, price, "allow_promotion_codes true"), []string{"allow_promotion_codes", "too many"}},
		{"missing arg secret_key", block("secret_key", price), []string{"secret_key"}},
		{"secret_key value on the next line", block("secret_key", leakSecretKey, price), []string{"secret_key"}},
		{"missing arg price", block(key, "price"), []string{"price"}},
		{"missing arg product", block(key, "product"), []string{"product"}},
		{"missing arg webhook_secret", block(key, price, "webhook_secret"), []string{"webhook_secret"}},
		{"missing arg cookie_secret", block(key, price, "cookie_secret"), []string{"cookie_secret"}},
		{"missing arg cache_ttl", block(key, price, "cache_ttl"), []string{"cache_ttl"}},
		{"missing arg endpoint_prefix", block(key, price, "endpoint_prefix"), []string{"endpoint_prefix"}},
		{"missing arg api_url", block(key, price, "api_url"), []string{"api_url"}},
		{"trial_days not a number", block(key, price, "trial_days abc"), []string{"trial_days", "abc"}},
		{"trial_days negative", block(key, price, "trial_days -3"), []string{"trial_days"}},
		{"cache_size not a number", block(key, price, "cache_size lots"), []string{"cache_size"}},
		{"checkout_limit without per", block(key, price, "checkout_limit 30"), []string{"checkout_limit", "per"}},
		{"checkout_limit zero", block(key, price, "checkout_limit 0 per 10m"), []string{"checkout_limit", "positive"}},
		{"checkout_limit bad window", block(key, price, "checkout_limit 30 per soon"), []string{"checkout_limit", "soon"}},
		{"missing arg redis", block(key, price, "redis"), []string{"redis"}},
		{"redis with two URLs", block(key, price, "redis redis://a:6379 redis://b:6379"), []string{"redis", "too many"}},
		{"free_views beyond a cookie", block(key, price, "free_views 51 per 30d"), []string{"free_views", "50", "51"}},
		{"free_views without per", block(key, price, "free_views 3"), []string{"free_views", "per"}},
		{"free_views_per_ip zero", block(key, price, "free_views_per_ip 0"), []string{"free_views_per_ip", "0"}},
		{"crawlers without an engine", block(key, price, "crawlers"), []string{"crawlers", "google, bing"}},
		{"crawlers of an unknown engine", block(key, price, "crawlers google yandex"), []string{"crawlers", "yandex"}},
		{"api_keys max too high", block(key, price, "api_keys max 30"), []string{"api_keys", "30", "20"}},
		{"api_keys max zero", block(key, price, "api_keys max 0"), []string{"api_keys", "1 to 20"}},
		{"api_keys max without n", block(key, price, "api_keys max"), []string{"api_keys", "max <n>"}},
		{"api_keys n without max", block(key, price, "api_keys 5"), []string{"api_keys", "max <n>"}},
		{"api_keys twice", block(key, price, "api_keys", "api_keys max 2"), []string{"api_keys", "more than once"}},
		{"checkout_limit twice", block(key, price, "checkout_limit off", "checkout_limit off"), []string{"checkout_limit", "more than once"}},
		{"argument on the directive line", "paywall " + leakSecretKey + " {\n" + price + "\n}", []string{"paywall", "secret_key"}},
	}
	for i := range tests {
		tc := tests[i]
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTestCaddyfile(tc.input)
			if err == nil {
				t.Fatalf("expected an error for:\n%s", tc.input)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoSecretInError(t, err)
		})
	}
}

// The secrets may sit anywhere in a Caddyfile with a mistake elsewhere;
// whatever the mistake, the message must not carry them.
func TestUnmarshalCaddyfileErrorsNeverEchoSecrets(t *testing.T) {
	secrets := []string{
		"secret_key " + leakSecretKey,
		"webhook_secret " + leakWebhookSecret,
		"cookie_secret " + leakCookieSecret,
		"email {\nsmtp a:25\npassword " + leakSMTPPassword + "\nbogus x\n}",
	}
	mistakes := []string{
		"price",
		"cache_ttl soon",
		"bogus",
		"trial_days x",
		"endpoint_prefix x",
		"dry_run 1",
		"secret_key pk_test_123",
		"secret_key",
		"webhook_secret",
		"cookie_secret",
		"}",
		"{",
	}
	for _, m := range mistakes {
		for rot := range secrets {
			lines := append([]string{}, secrets[rot:]...)
			lines = append(lines, m)
			lines = append(lines, secrets[:rot]...)
			input := "paywall {\n" + strings.Join(lines, "\n") + "\n}"
			_, err := parseTestCaddyfile(input)
			assertNoSecretInError(t, err)
		}
	}
	for _, s := range []string{leakSecretKey, leakWebhookSecret, leakCookieSecret, "pk_test_123"} {
		for _, input := range []string{
			"paywall " + s,
			"paywall " + s + " {\nprice price_1\n}",
			"paywall {\nsecret_key " + s + " " + s + "\n}",
			"paywall {\nsecret_key " + s + " {\n}\n}",
			"paywall {\nprice price_1\nsecret_key\n" + s + "\n}",
		} {
			_, err := parseTestCaddyfile(input)
			if err == nil {
				t.Errorf("no error for:\n%s", input)
			}
			assertNoSecretInError(t, err)
		}
	}
}

// updateGoldens rewrites the adapt goldens: go test -run Adapt -update.
// Registered only if no other test file of the package has taken the name.
func updateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata")
	}
}

func adaptCaddyfile(t *testing.T, body []byte) []byte {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("caddyfile adapter not registered")
	}
	out, warnings, err := adapter.Adapt(body, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w.String())
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatalf("indenting adapted JSON: %v", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

func TestAdaptGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/adapt/*.caddyfile")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := adaptCaddyfile(t, body)

			// Secrets stay placeholders in the config; Provision resolves them.
			for _, ph := range []string{"{env.STRIPE_SECRET_KEY}", "{env.STRIPE_WEBHOOK_SECRET}", "{env.PAYWALL_COOKIE_SECRET}"} {
				if bytes.Contains(body, []byte(ph)) && !bytes.Contains(got, []byte(`"`+ph+`"`)) {
					t.Errorf("adapted JSON lost the placeholder %s", ph)
				}
			}

			golden := strings.TrimSuffix(in, ".caddyfile") + ".json"
			if updateGoldens() {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run Adapt -update to create it)", err)
			}
			var wantBuf bytes.Buffer
			if err := json.Indent(&wantBuf, bytes.TrimSpace(want), "", "\t"); err != nil {
				t.Fatalf("golden %s: %v", golden, err)
			}
			wantBuf.WriteByte('\n')
			if !bytes.Equal(got, wantBuf.Bytes()) {
				t.Errorf("adapted %s differs from %s (go test -run Adapt -update rewrites it)\n got:\n%s", in, golden, got)
			}
		})
	}
}

// adaptedRoute is the part of an adapted config the structural checks read.
type adaptedRoute struct {
	Match  []map[string]json.RawMessage `json:"match"`
	Handle []adaptedHandler             `json:"handle"`
}

type adaptedHandler struct {
	Handler string
	Routes  []adaptedRoute // of a subroute
	Raw     json.RawMessage
}

func (h *adaptedHandler) UnmarshalJSON(b []byte) error {
	var v struct {
		Handler string         `json:"handler"`
		Routes  []adaptedRoute `json:"routes"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	h.Handler, h.Routes, h.Raw = v.Handler, v.Routes, append(json.RawMessage(nil), b...)
	return nil
}

// adaptedSiteRoutes returns the routes inside the single site's subroute.
func adaptedSiteRoutes(t *testing.T, adapted []byte) []adaptedRoute {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []adaptedRoute `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps.HTTP.Servers) != 1 {
		t.Fatalf("want one server, got %d", len(cfg.Apps.HTTP.Servers))
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		if len(srv.Routes) != 1 || len(srv.Routes[0].Handle) != 1 || srv.Routes[0].Handle[0].Handler != "subroute" {
			t.Fatalf("want one site route holding a subroute, got %+v", srv.Routes)
		}
		return srv.Routes[0].Handle[0].Routes
	}
	return nil
}

// adaptedHandlerNames lists the handler names of routes in order,
// flattened: Caddy merges adjacent routes without matchers into one.
func adaptedHandlerNames(routes []adaptedRoute) []string {
	var names []string
	for _, r := range routes {
		for _, h := range r.Handle {
			names = append(names, h.Handler)
		}
	}
	return names
}

func routeHasHandler(r adaptedRoute, name string) bool {
	for _, h := range r.Handle {
		if h.Handler == name {
			return true
		}
	}
	return false
}

// adaptedPaywallRoutes returns the routes that hold the paywall handler.
func adaptedPaywallRoutes(routes []adaptedRoute) []adaptedRoute {
	var pw []adaptedRoute
	for _, r := range routes {
		if routeHasHandler(r, "paywall") {
			pw = append(pw, r)
		}
	}
	return pw
}

func adaptedRoutePaths(t *testing.T, r adaptedRoute) []string {
	t.Helper()
	if len(r.Match) == 0 {
		return nil
	}
	var paths []string
	for _, set := range r.Match {
		if raw, ok := set["path"]; ok {
			var p []string
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p...)
		}
	}
	return paths
}

// The directive needs no order line: it lands after forward_auth and
// before file_server wherever it is written, as one route that matches the
// gated paths or the endpoints under /paywall/*.
func TestAdaptMinimalOrderAndRoutes(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "adapt", "minimal.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte("order")) {
		t.Fatal("the fixture must not need an order line")
	}
	routes := adaptedSiteRoutes(t, adaptCaddyfile(t, body))
	names := adaptedHandlerNames(routes)
	index := func(name string) int {
		for j, n := range names {
			if n == name {
				return j
			}
		}
		return -1
	}
	// forward_auth adapts to a reverse_proxy handler; the fixture has no other.
	if fa, pw, fs := index("reverse_proxy"), index("paywall"), index("file_server"); fa < 0 || pw < 0 || fs < 0 || !(fa < pw && pw < fs) {
		t.Fatalf("want forward_auth, then paywall, then file_server; handlers in order: %v", names)
	}
	pw := adaptedPaywallRoutes(routes)
	if len(pw) != 1 {
		t.Fatalf("want 1 paywall route, got %d", len(pw))
	}
	if len(pw[0].Match) != 2 {
		t.Fatalf("want two matcher sets (the gated paths, or the endpoints), got %d", len(pw[0].Match))
	}
	if got := adaptedRoutePaths(t, pw[0]); strings.Join(got, " ") != "/premium/* /paywall/*" {
		t.Errorf("paywall route matches %v, want [/premium/* /paywall/*]", got)
	}
}

// The paywall route keeps the user's matcher and adds the endpoint prefix as
// a second matcher set; with no matcher it needs none.
func TestAdaptRoutesPerMatcher(t *testing.T) {
	tests := []struct {
		name  string
		site  string
		paths []string // every path of every matcher set; nil: no matcher
	}{
		{"no matcher", "paywall {\n\t\tsecret_key {env.STRIPE_SECRET_KEY}\n\t\tprice price_1\n\t}", nil},
		{"wildcard matcher", "paywall * {\n\t\tsecret_key {env.STRIPE_SECRET_KEY}\n\t\tprice price_1\n\t}", nil},
		{"path matcher", "paywall /premium/* {\n\t\tsecret_key {env.STRIPE_SECRET_KEY}\n\t\tprice price_1\n\t}", []string{"/premium/*", "/paywall/*"}},
		{"custom prefix with slash", "paywall /premium/* {\n\t\tsecret_key {env.STRIPE_SECRET_KEY}\n\t\tprice price_1\n\t\tendpoint_prefix /billing/\n\t}", []string{"/premium/*", "/billing/*"}},
		{"named matcher", "@paid path /a/* /b/*\n\tpaywall @paid {\n\t\tsecret_key {env.STRIPE_SECRET_KEY}\n\t\tprice price_1\n\t}", []string{"/a/*", "/b/*", "/paywall/*"}},
	}
	for i := range tests {
		tc := tests[i]
		t.Run(tc.name, func(t *testing.T) {
			body := "example.com {\n\t" + tc.site + "\n\trespond ok\n}\n"
			routes := adaptedSiteRoutes(t, adaptCaddyfile(t, []byte(body)))
			if tc.paths == nil {
				// Caddy merges a route without matchers into its
				// neighbours; the handler must still come first.
				if names := adaptedHandlerNames(routes); len(names) < 2 || names[0] != "paywall" {
					t.Errorf("handlers in order: %v, want paywall first", names)
				}
				for _, r := range adaptedPaywallRoutes(routes) {
					if len(r.Match) != 0 {
						t.Errorf("a paywall without a matcher got matchers: %v", adaptedRoutePaths(t, r))
					}
				}
			} else {
				pw := adaptedPaywallRoutes(routes)
				if len(pw) != 1 {
					t.Fatalf("want 1 paywall route, got %d", len(pw))
				}
				if got := adaptedRoutePaths(t, pw[0]); strings.Join(got, " ") != strings.Join(tc.paths, " ") {
					t.Errorf("paywall route matches %v, want %v", got, tc.paths)
				}
			}
			if names := adaptedHandlerNames(routes); names[len(names)-1] != "static_response" {
				t.Errorf("respond should come last, handlers in order: %v", names)
			}
		})
	}
}

// A parse error from the directive reaches the adapter with the file and
// line, and without the secret.
func TestAdaptParseErrorHidesSecret(t *testing.T) {
	body := "example.com {\n\tpaywall {\n\t\tsecret_key pk_live_Vt5Ue3\n\t\tprice price_1\n\t}\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	if err == nil {
		t.Fatal("expected an error")
	}
	if !strings.Contains(err.Error(), "secret_key") || !strings.Contains(err.Error(), "Caddyfile:3") {
		t.Errorf("error should name secret_key and Caddyfile:3: %v", err)
	}
	assertNoSecretInError(t, err)
}

func TestAdaptTwoSitesEachWithAPaywall(t *testing.T) {
	site := func(host string) string {
		return host + " {\n\tpaywall /premium/* {\n\t\tsecret_key {env.K}\n\t\tprice price_a\n\t}\n\tfile_server\n}\n"
	}
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site("a.example.com")+site("b.example.com")), map[string]any{"filename": "Caddyfile"}); err != nil {
		t.Fatalf("two sites, each with the default endpoint_prefix: %v", err)
	}
}

func TestUnmarshalCacheControl(t *testing.T) {
	h, err := parseTestCaddyfile("paywall {\n\tsecret_key {env.K}\n\tprice price_1\n\tcache_control off\n}")
	if err != nil || h.CacheControl != "off" {
		t.Fatalf("cache_control off: %v, %q", err, h.CacheControl)
	}
	if _, err := parseTestCaddyfile("paywall {\n\tsecret_key {env.K}\n\tprice price_1\n\tcache_control\n}"); err == nil {
		t.Fatal("cache_control without a value was accepted")
	}
}
