package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/mailpit"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one step of a journey: a click and the page it leads to.
const stepTimeout = 20 * time.Second

// TestBrowser walks a visitor through the demo site (examples/demo) in
// headless Chromium: the real Caddy binary runs examples/demo/Caddyfile on a
// free loopback port, and the Stripe stand-in runs in this process, with
// its hosted checkout and portal pages and its webhooks pointed at Caddy.
// Every step leaves a screenshot (see screenshotDir).
//
// The demo gives each reader two free articles (free_views 2 per 30d), so a
// journey that starts at the paywall's 402 first reads two other members'
// pages (readFree): its 402 then says free_views_used. Every browser comes
// from 127.0.0.1, whose new free views free_views_per_ip bounds (20 per 30
// days in the demo): the journeys below read 14 of them.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy and a browser")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no browser: %v (install Debian's chromium and chromium-driver)", err)
		}
		t.Skipf("no browser: %v (apt-get install chromium chromium-driver)", err)
	}
	d := startDemo(t)
	shots := screenshotDir(t)
	t.Logf("screenshots in %s", shots)

	t.Run("Journey", func(t *testing.T) {
		b := newBrowser(t, d, shots)
		article := d.site + "/premium/http-402.html"

		b.readFree(d.othersThan(article)...)
		b.do("open the home page", chromedp.Navigate(d.site+"/"), chromedp.WaitVisible(chromedp.CSS("#article-402 a")))
		b.shot("home")

		b.do("follow the link to a members' article",
			chromedp.Click(chromedp.CSS("#article-402 a")),
			waitReason("free_views_used"))
		b.wantLocation(article)
		b.shot("paywall")
		// The page sells: the site, its logo (under the page's CSP), the
		// product and its price as Stripe has them, the benefits.
		b.wantText("#site", "The Reserved Code")
		b.wantImage("#site img")
		b.wantText("#product", stripefake.DefaultPrice.ProductName)
		b.wantText("#price", "$5.00 / month")
		b.wantText("#benefits li", "Every members' article, and the archive")
		b.wantOnlyFrom(d.site)

		b.do("subscribe", chromedp.Click(chromedp.CSS("#subscribe")), chromedp.WaitVisible(chromedp.CSS("#pay")))
		b.wantHost(d.sandbox)
		b.shot("checkout")

		b.do("pay with a card that succeeds",
			append(pay("reader@example.com", "4242 4242 4242 4242"), chromedp.WaitVisible(chromedp.CSS("#premium-content")))...)
		b.wantLocation(article) // the session ID is gone from the address
		b.shot("article")

		b.do("manage billing",
			chromedp.Click(chromedp.CSS("#manage-billing")),
			chromedp.WaitVisible(chromedp.CSS("#cancel")))
		b.wantHost(d.sandbox)
		b.shot("portal")

		b.do("cancel the subscription in the portal",
			chromedp.Click(chromedp.CSS("#cancel")),
			chromedp.WaitVisible(chromedp.CSS(".status-canceled")))
		b.shot("portal-canceled")
		// The portal page shows the cancellation once the fake has queued
		// customer.subscription.deleted; wait until Caddy has taken it.
		d.fake.WaitDeliveries()
		d.wantDelivered(t, "customer.subscription.deleted")

		b.do("return to the site",
			chromedp.Click(chromedp.CSS("#return")),
			waitReason("subscription_ended"))
		b.wantLocation(article)
		b.shot("ended")

		b.do("subscribe again", chromedp.Click(chromedp.CSS("#subscribe")), chromedp.WaitVisible(chromedp.CSS("#pay")))
		if email, err := run(b, chromedp.Value(chromedp.CSS("#email"))); err != nil || email != "reader@example.com" {
			t.Errorf("checkout for a returning customer shows email %q (%v), want reader@example.com", email, err)
		}
		b.shot("checkout-again")

		b.do("pay again",
			chromedp.Click(chromedp.CSS("#pay")),
			chromedp.WaitVisible(chromedp.CSS("#premium-content")))
		b.wantLocation(article)
		b.shot("article-again")
	})

	// A reader reads the two free articles, with their pictures, meets the
	// 402 that says so, subscribes, and reads on.
	t.Run("FreeArticles", func(t *testing.T) {
		b := newBrowser(t, d, shots)
		article := d.site + "/premium/http-402.html"
		other := d.site + "/premium/fail-open.html"
		members := d.site + "/premium/"

		b.do("open the home page", chromedp.Navigate(d.site+"/"), chromedp.WaitVisible(chromedp.CSS("#article-402 a")))
		b.do("follow the link to a members' article: the first free one",
			chromedp.Click(chromedp.CSS("#article-402 a")),
			chromedp.WaitVisible(chromedp.CSS("#premium-content")))
		b.wantLocation(article)
		// Its picture lives under /premium/ and loads with the free page.
		b.wantImage("#figure-402 img")
		b.shot("free-article")

		b.readFree(other)
		b.shot("free-article-2")
		// Reading the first again uses no view.
		b.readFree(article)
		b.wantImage("#figure-402 img")

		res, err := run(b, chromedp.NavigateResponse(members))
		if err != nil {
			t.Fatalf("open a third members' page: %v", err)
		}
		if res.Status != 402 {
			t.Errorf("a third members' page answers %d, want 402", res.Status)
		}
		b.do("wait for the paywall's page", waitReason("free_views_used"))
		b.shot("free-views-used")
		if h1, err := run(b, chromedp.Text(chromedp.CSS("main#paywall h1"))); err != nil || h1 != "You have read your 2 free articles" {
			t.Errorf("the 402 page's heading is %q (%v), want \"You have read your 2 free articles\"", h1, err)
		}
		const detail = "Subscribe to keep reading everything. Your free articles come back in 30 days."
		if p, err := run(b, chromedp.Text(chromedp.CSS("#reason"))); err != nil || p != detail {
			t.Errorf("the 402 page says %q (%v), want %q", p, err, detail)
		}
		if title, err := run(b, chromedp.Title()); err != nil || !strings.Contains(title, "You have read your 2 free articles") {
			t.Errorf("the 402 page's title is %q (%v), want it to say the free articles are read", title, err)
		}

		b.do("subscribe", chromedp.Click(chromedp.CSS("#subscribe")), chromedp.WaitVisible(chromedp.CSS("#pay")))
		b.wantHost(d.sandbox)
		b.do("pay with a card that succeeds",
			append(pay("free@example.com", "4242 4242 4242 4242"), chromedp.WaitVisible(chromedp.CSS("#premium-content")))...)
		b.wantLocation(members)
		b.shot("subscribed")

		// A subscriber reads on, past the free articles.
		for _, u := range []string{other, members, article} {
			res, err := run(b, chromedp.NavigateResponse(u))
			if err != nil {
				t.Fatalf("open %s as a subscriber: %v", u, err)
			}
			if res.Status != 200 {
				t.Errorf("%s answers a subscriber %d, want 200", u, res.Status)
			}
			b.do("read "+u+" as a subscriber", chromedp.WaitVisible(chromedp.CSS("#premium-content")))
		}
		b.wantImage("#figure-402 img")
		b.shot("reading-on")
	})

	// A subscriber on a new device, or whose cookies are gone: one email
	// brings them back, with no second subscription.
	t.Run("SigninByEmail", func(t *testing.T) {
		b := newBrowser(t, d, shots)
		article := d.site + "/premium/http-402.html"
		b.readFree(d.othersThan(article)...)
		b.do("open a members' article", chromedp.Navigate(article), waitReason("free_views_used"))
		b.do("subscribe", chromedp.Click(chromedp.CSS("#subscribe")), chromedp.WaitVisible(chromedp.CSS("#pay")))
		b.do("pay", append(pay("signin@example.com", "4242 4242 4242 4242"), chromedp.WaitVisible(chromedp.CSS("#premium-content")))...)

		clearCookies := chromedp.Action[chromedp.Void](func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{})
			return chromedp.Void{}, err
		})
		// The meter went with the cookies: on a new device the free
		// articles open again, and the third offers to sign in.
		b.do("clear all cookies", clearCookies)
		b.readFree(d.othersThan(article)...)
		b.do("open the article again", chromedp.Navigate(article), waitReason("free_views_used"))
		b.shot("signin-offered")
		before := len(d.mail.Messages(t))
		b.do("ask for a sign-in link",
			chromedp.SetValue(chromedp.CSS("#signin-email"), "signin@example.com"),
			chromedp.Click(chromedp.CSS("#signin-submit")),
			waitReason("signin_sent"))
		b.shot("signin-sent")
		msgs := d.mail.WaitMessages(t, before+1, 10*time.Second)
		id := msgs[len(msgs)-1].ID

		b.do("open the mail on the sandbox's page", chromedp.Navigate(d.sandbox+"/mail/"+id),
			chromedp.WaitVisible(chromedp.CSS(`#mail-body a[href*="/paywall/signin?token="]`)))
		b.shot("signin-mail")
		b.do("click the link in the mail",
			chromedp.Click(chromedp.CSS(`#mail-body a[href*="/paywall/signin?token="]`)),
			waitReason("signin_confirm"))
		b.shot("signin-confirm")
		b.do("confirm", chromedp.Click(chromedp.CSS("#signin-confirm")), chromedp.WaitVisible(chromedp.CSS("#premium-content")))
		b.wantLocation(article)
		b.shot("signin-article")

		// One customer paid with that address, once: signing in sold
		// nothing more.
		customers := map[string]bool{}
		for _, s := range d.fake.Sessions() {
			if c, ok := d.fake.Customer(s.Customer); ok && c.Email == "signin@example.com" {
				customers[c.ID] = true
			}
		}
		if len(customers) != 1 {
			t.Fatalf("%d customers paid as signin@example.com, want 1", len(customers))
		}
		for id := range customers {
			if n := len(d.fake.Subscriptions(id)); n != 1 {
				t.Errorf("the subscriber who signed in by email has %d subscriptions, want 1", n)
			}
		}
	})

	t.Run("DeclinedCard", func(t *testing.T) {
		b := newBrowser(t, d, shots)
		article := d.site + "/premium/fail-open.html"

		b.readFree(d.othersThan(article)...)
		b.do("open a members' article", chromedp.Navigate(article), waitReason("free_views_used"))
		b.do("subscribe", chromedp.Click(chromedp.CSS("#subscribe")), chromedp.WaitVisible(chromedp.CSS("#pay")))
		checkout, err := run(b, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		b.do("pay with a card that is declined",
			append(pay("declined@example.com", "4000 0000 0000 0002"), chromedp.WaitVisible(chromedp.CSS("#error")))...)
		b.shot("declined")

		b.do("go back to the site",
			chromedp.Click(chromedp.CSS("#back")),
			waitReason("checkout_not_completed"))
		b.wantLocation(article)
		b.shot("not-completed")

		// Continue checkout: the same session, not a second one, and
		// another card pays it.
		b.do("continue the checkout", chromedp.Click(chromedp.CSS("#subscribe")), chromedp.WaitVisible(chromedp.CSS("#pay")))
		b.wantLocation(checkout)
		b.do("pay with another card",
			append(pay("declined@example.com", "4242 4242 4242 4242"), chromedp.WaitVisible(chromedp.CSS("#premium-content")))...)
		b.wantLocation(article)
		sessions := 0
		for _, s := range d.fake.Sessions() {
			if strings.Contains(s.SuccessURL, "fail-open") {
				sessions++
			}
		}
		if sessions != 1 {
			t.Errorf("the declined visitor's checkouts: %d sessions, want 1", sessions)
		}
	})

	t.Run("SuccessLinkInAnotherBrowser", func(t *testing.T) {
		var success string
		for _, s := range d.fake.Sessions() {
			if s.Status == "complete" {
				success = strings.ReplaceAll(s.SuccessURL, "{CHECKOUT_SESSION_ID}", s.ID)
				break
			}
		}
		if success == "" {
			t.Skip("no completed checkout to take the link of")
		}
		b := newBrowser(t, d, shots)
		res, err := run(b, chromedp.NavigateResponse(success))
		if err != nil {
			t.Fatalf("open another browser's success link: %v", err)
		}
		if res.Status != 403 {
			t.Errorf("another browser's success link answers %d, want 403", res.Status)
		}
		b.do("wait for the page", waitReason("checkout_other_browser"))
		styled, err := run(b, chromedp.Evaluate[bool](`getComputedStyle(document.querySelector("#back")).display !== "inline"`))
		if err != nil || !styled {
			t.Errorf("the page's stylesheet did not apply (%v)", err)
		}
		b.wantOnlyFrom(d.site)
		b.shot("other-browser")
	})

	t.Run("BahasaIndonesia", func(t *testing.T) {
		b := newBrowser(t, d, shots, chromedp.Flag("lang", "id"), chromedp.Flag("accept-lang", "id-ID,id"))
		article := d.site + "/premium/http-402.html"

		b.readFree(d.othersThan(article)...)
		res, err := run(b, chromedp.NavigateResponse(article))
		if err != nil {
			t.Fatalf("open a members' article: %v", err)
		}
		if res.Status != 402 {
			t.Errorf("a members' article answers %d, want 402", res.Status)
		}
		b.do("wait for the paywall's page", waitReason("free_views_used"))
		b.shot("paywall-id")
		b.wantText("#price", "US$5,00 / bulan")
		if h1, err := run(b, chromedp.Text(chromedp.CSS("main#paywall h1"))); err != nil || h1 != "Anda sudah membaca 2 artikel gratis" {
			t.Errorf("the 402 page's heading is %q (%v), want \"Anda sudah membaca 2 artikel gratis\"", h1, err)
		}
		lang, err := run(b, chromedp.Evaluate[string](`document.documentElement.lang`))
		if err != nil || lang != "id" {
			t.Errorf(`<html lang=%q> (%v), want "id"`, lang, err)
		}
	})

	t.Run("NarrowScreen", func(t *testing.T) {
		b := newBrowser(t, d, shots)
		b.do("emulate a phone", chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile, chromedp.EmulateScale(2)))

		b.do("open the home page", chromedp.Navigate(d.site+"/"), chromedp.WaitVisible(chromedp.CSS("#article-402 a")))
		b.wantFits("the home page")
		b.shot("home-375")

		article := d.site + "/premium/http-402.html"
		b.readFree(d.othersThan(article)...)
		b.wantFits("a free article")
		b.do("open a members' article", chromedp.Navigate(article), waitReason("free_views_used"))
		b.wantFits("the 402 page")
		visible, err := run(b, chromedp.Evaluate[bool](`(() => {
			const r = document.querySelector("#subscribe").getBoundingClientRect();
			return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 &&
				r.right <= window.innerWidth && r.bottom <= window.innerHeight;
		})()`))
		if err != nil || !visible {
			t.Errorf("the subscribe button is not inside the 375×812 viewport (%v)", err)
		}
		b.shot("paywall-375")
	})
}

// pay fills in the sandbox's checkout form and submits it.
func pay(email, card string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		chromedp.SetValue(chromedp.CSS("#email"), email),
		chromedp.SetValue(chromedp.CSS("#card"), card),
		chromedp.Click(chromedp.CSS("#pay")),
	}
}

// members are the demo's members' pages, behind the paywall.
var members = []string{"/premium/", "/premium/http-402.html", "/premium/fail-open.html"}

// othersThan returns the demo's members' pages other than article, as
// URLs: two of them, as many as free_views gives a reader.
func (d *demo) othersThan(article string) []string {
	var others []string
	for _, p := range members {
		if d.site+p != article {
			others = append(others, d.site+p)
		}
	}
	return others
}

// readFree opens each page as one of the reader's free articles: it answers
// 200 and shows the article.
func (b *browser) readFree(pages ...string) {
	b.t.Helper()
	for _, u := range pages {
		res, err := run(b, chromedp.NavigateResponse(u))
		if err != nil {
			b.t.Fatalf("open %s: %v", u, err)
		}
		if res.Status != 200 {
			b.shot("failed")
			b.t.Fatalf("%s answers %d, want 200: one of the free articles (free_views 2 per 30d; free_views_per_ip bounds the whole test's)", u, res.Status)
		}
		b.do("read "+u+" free", chromedp.WaitVisible(chromedp.CSS("#premium-content")))
	}
}

// wantText fails unless the first element sel names reads want (a no-break
// space read as a space).
func (b *browser) wantText(sel, want string) {
	b.t.Helper()
	got, err := run(b, chromedp.Text(chromedp.CSS(sel)))
	if got = strings.TrimSpace(strings.ReplaceAll(got, "\u00a0", " ")); err != nil || got != want {
		b.shot("failed")
		b.t.Errorf("%s reads %q (%v), want %q", sel, got, err, want)
	}
}

// wantImage fails unless the image that sel names has loaded.
func (b *browser) wantImage(sel string) {
	b.t.Helper()
	w, err := run(b, chromedp.Evaluate[int](`new Promise(resolve => {
		const img = document.querySelector(`+strconv.Quote(sel)+`);
		if (!img) { resolve(-1); return; }
		if (img.complete) { resolve(img.naturalWidth); return; }
		img.addEventListener("load", () => resolve(img.naturalWidth));
		img.addEventListener("error", () => resolve(0));
	})`, chromedp.EvalAwaitPromise))
	if err != nil || w <= 0 {
		b.shot("failed")
		b.t.Errorf("the image %s did not load: naturalWidth %d (%v)", sel, w, err)
	}
}

// waitReason waits for the paywall's page with the given reason.
func waitReason(reason string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(`main#paywall[data-reason="` + reason + `"]`))
}

// demo is the demo site, running: Caddy with examples/demo/Caddyfile, the
// Stripe stand-in, and the Mailpit that Caddy sends its sign-in mail to.
type demo struct {
	site    string // http://localhost:<port>
	sandbox string // http://127.0.0.1:<port>
	fake    *stripefake.Server
	mail    *mailpit.Server
}

// wantDelivered fails unless Caddy accepted an event of the given type.
func (d *demo) wantDelivered(t *testing.T, eventType string) {
	t.Helper()
	var got []string
	for _, del := range d.fake.Deliveries() {
		if del.Type == eventType && del.OK {
			return
		}
		got = append(got, fmt.Sprintf("%s→%d%s", del.Type, del.StatusCode, del.Err))
	}
	t.Fatalf("no %s delivered to Caddy; deliveries: %v", eventType, got)
}

// startDemo starts Mailpit, the Stripe stand-in in this process and Caddy
// on examples/demo/Caddyfile, all on free loopback ports, the way
// scripts/demo.sh does on fixed ones. Without the mailpit binary the test
// is skipped (failed in CI), as it is without the browser.
func startDemo(t *testing.T) *demo {
	t.Helper()
	// go test runs this in e2e/; the demo is in the repository's root.
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	caddyfile, err := os.ReadFile(filepath.Join(root, "examples", "demo", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	// The same file, on the harness's port.
	const address = "http://localhost:{$DEMO_PORT:8080} {"
	if !bytes.Contains(caddyfile, []byte(address)) {
		t.Fatalf("examples/demo/Caddyfile no longer has the site address %s", address)
	}
	config := strings.Replace(string(caddyfile), address, "http://localhost:{{.HTTPPort}} {", 1)

	// Started first, so that it stops last: the paywall may still be
	// sending a mail when the test ends.
	mail := mailpit.Start(t)

	// The sandbox's page lists the mail, as with make demo.
	fake := stripefake.New(stripefake.Options{MailpitURL: mail.APIURL()})
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)

	const webhookSecret = "whsec_browser_test_not_secret"
	inst := caddyrun.Start(t, withoutLeadingComments(config), map[string]string{
		"STRIPE_SECRET_KEY":     "sk_test_browser",
		"STRIPE_WEBHOOK_SECRET": webhookSecret,
		"STRIPE_API_URL":        fake.URL(),
		"PAYWALL_PRICE":         stripefake.DefaultPrice.ID,
		"DEMO_SITE":             filepath.Join(root, "examples", "demo", "site"),
		"DEMO_SMTP":             mail.SMTPAddr(),
	})
	site := "http://localhost:" + strconv.Itoa(inst.HTTPPort)
	fake.AddWebhookEndpoint(site+"/paywall/webhook", webhookSecret)
	// Let the last webhooks land while Caddy still runs (cleanups run in
	// reverse order).
	t.Cleanup(fake.WaitDeliveries)
	return &demo{site: site, sandbox: fake.URL(), fake: fake, mail: mail}
}

// withoutLeadingComments drops the comment lines before the global options
// block: caddyrun adds its own options to that block only when the file
// opens with it.
func withoutLeadingComments(caddyfile string) string {
	for strings.HasPrefix(caddyfile, "#") || strings.HasPrefix(caddyfile, "\n") {
		_, caddyfile, _ = strings.Cut(caddyfile, "\n")
	}
	return caddyfile
}

// screenshotDir is $ARTIFACTS_DIR, or artifacts/browser under the
// repository's root.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "artifacts", "browser")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one visitor: a fresh Chromium profile, so fresh cookies.
type browser struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	name  string
	shots int

	mu       sync.Mutex
	requests []string // every URL the page asked for
}

func newBrowser(t *testing.T, d *demo, shotsDir string, flags ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	)
	opts = append(opts, flags...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, dir: shotsDir, name: strings.ToLower(t.Name()[strings.LastIndex(t.Name(), "/")+1:])}

	// The first run starts the browser and ties its life to the context it
	// gets, so it gets ctx itself and not a context with a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Request != nil {
			b.mu.Lock()
			b.requests = append(b.requests, e.Request.URL)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Nothing may come from outside the site and the payment pages.
	t.Cleanup(func() { b.wantOnlyFrom(d.site, d.sandbox) })
	return b
}

// do runs the actions of one step, and fails the test with a screenshot when
// they do not finish in time.
func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed")
		loc, _ := run(b, chromedp.Location())
		b.t.Fatalf("%s: %v (the page is %s)", step, err, loc)
	}
}

// run runs one action that returns a value, within stepTimeout.
func run[T any](b *browser, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// wantLocation fails unless the page's address is want.
func (b *browser) wantLocation(want string) {
	b.t.Helper()
	if loc, err := run(b, chromedp.Location()); err != nil || loc != want {
		b.t.Errorf("the page is %s (%v), want %s", loc, err, want)
	}
}

// wantHost fails unless the page is on the given origin.
func (b *browser) wantHost(origin string) {
	b.t.Helper()
	loc, err := run(b, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, origin+"/") {
		b.t.Errorf("the page is %s (%v), want one on %s", loc, err, origin)
	}
}

// wantFits fails when the page is wider than the viewport: a reader would
// have to scroll sideways.
func (b *browser) wantFits(what string) {
	b.t.Helper()
	got, err := run(b, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
	if err != nil || len(got) != 2 {
		b.t.Errorf("%s: measure the width: %v", what, err)
		return
	}
	if got[1] != 375 || got[0] > got[1] {
		b.t.Errorf("%s is %d px wide in a %d px viewport, want it to fit 375 px", what, got[0], got[1])
	}
}

// wantOnlyFrom fails when the page asked for anything but the given
// origins: no fonts, scripts, images or beacons from elsewhere.
func (b *browser) wantOnlyFrom(origins ...string) {
	b.t.Helper()
	hosts := map[string]bool{}
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil {
			b.t.Fatal(err)
		}
		hosts[u.Host] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) == 0 {
		b.t.Error("saw no requests: the network listener is not working")
	}
	for _, raw := range b.requests {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			b.t.Errorf("request to an unreadable URL %q", raw)
		case u.Scheme == "data" || u.Scheme == "blob":
			// inline, not loaded from anywhere
		case (u.Scheme != "http" && u.Scheme != "https") || !hosts[u.Host]:
			b.t.Errorf("the page loaded %s, which is outside the site (%v)", raw, origins)
		}
	}
}

// shot saves a full-page PNG of what the visitor sees.
func (b *browser) shot(what string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", what, err)
		return
	}
	b.shots++
	name := fmt.Sprintf("browser-%s-%02d-%s.png", b.name, b.shots, what)
	if err := os.WriteFile(filepath.Join(b.dir, name), png, 0o644); err != nil {
		b.t.Error(err)
	}
}
