package paywall

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The browser test of the built-in page lives in the root package, beside
// writeDenial, and drives Debian's Chromium over the DevTools protocol on a
// pipe (--remote-debugging-pipe: JSON messages ended by a NUL byte on file
// descriptors 3 and 4). chromedp is a dependency of the e2e module only; the
// few commands this test needs take less code than a second copy of it in
// this module's go.mod.

// pageChromium is where Debian's chromium package puts the browser.
const pageChromium = "/usr/bin/chromium"

// pageStep bounds one step: a navigation, a measurement or a screenshot.
const pageStep = 20 * time.Second

// pageCase is one page: a reason, for a visitor who is known (a customer
// whose subscription lapsed) or not, with email sign-in offered or not.
type pageCase struct {
	reason string
	known  bool
	signin bool
}

func (c pageCase) name() string {
	if c.signin {
		return c.reason + "-signin"
	}
	return c.reason
}

// checkoutReasons are the reasons whose page sells: product, price, benefits.
var checkoutReasons = map[string]bool{
	reasonNoSubscription:  true,
	reasonFreeViewsUsed:   true,
	reasonEnded:           true,
	reasonTrialEnded:      true,
	reasonCheckoutNotDone: true,
}

// anonymousReasons are the reasons of a visitor this browser does not know.
var anonymousReasons = map[string]bool{
	reasonNoSubscription:  true,
	reasonFreeViewsUsed:   true,
	reasonCheckoutNotDone: true,
}

// TestPageInEveryReasonLanguageAndWidth renders the built-in 402 page of
// every reason in English and Indonesian, 375 px wide (a phone, emulated)
// and 1280 px wide, in headless Chromium; it saves a full-page screenshot of
// each (see pageShotDir) and checks in the page what a reader would see:
// nothing wider than the phone, a heading that is words and not a status
// code, the price in the reader's language, the subscribe button within
// reach, no "Already subscribed?" beside "Subscribe again", and a stylesheet
// the page's Content-Security-Policy let apply.
func TestPageInEveryReasonLanguageAndWidth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	if _, err := os.Stat(pageChromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no browser: %v (install Debian's chromium)", err)
		}
		t.Skipf("no browser: %v (apt-get install chromium)", err)
	}

	w := newWorld(t, func(h *Handler) {
		h.TrialDays = 7
		h.SiteName = "The Reserved Code"
		h.Benefits = []string{"Every article and the archive", "A new essay each week"}
		h.SupportURL = "mailto:help@example.com"
	})

	// The price is read from Stripe when a page first needs it; the first
	// read is waited for half a second at most, so wait for it here.
	w.h.pageOffer()
	w.h.account.reads.Wait()
	if o := w.h.pageOffer(); o == nil {
		t.Fatal("pageOffer: no offer read from the fake Stripe")
	}

	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/page" {
			http.NotFound(rw, r)
			return
		}
		q := r.URL.Query()
		d := denialFor(q.Get("reason"))
		if q.Get("known") == "1" {
			d.known = true
			d.LogoutURL = "/paywall/logout?return=" + url.QueryEscape(d.ReturnPath)
		} else {
			d.known, d.LogoutURL = false, ""
			d.trialDays = 7
			if q.Get("signin") == "1" {
				d.SigninURL = "/paywall/signin"
				d.signinTTL = 15 * time.Minute
			}
		}
		if d.Reason == reasonFreeViewsUsed {
			d.freeViews = 2
			d.freeBack = now().Add(30 * 24 * time.Hour).Unix()
		}
		// The reader's language, as a browser set to it would send it.
		r.Header["Accept-Language"] = []string{q.Get("lang")}
		if err := w.h.writeDenial(rw, r, d); err != nil {
			http.Error(rw, "writeDenial: "+err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)

	var cases []pageCase
	for _, reason := range pageReasons {
		cases = append(cases, pageCase{reason: reason, known: !anonymousReasons[reason]})
		if anonymousReasons[reason] {
			cases = append(cases, pageCase{reason: reason, signin: true})
		}
	}

	dir := pageShotDir(t)
	t.Logf("screenshots in %s", dir)
	b := startPageBrowser(t)
	start := time.Now()
	pages := 0
	for _, width := range []int{375, 1280} {
		b.viewport(t, width, 900, width < 480)
		for _, c := range cases {
			for _, lang := range []string{"en", "id"} {
				ok := t.Run(fmt.Sprintf("%d/%s/%s", width, c.name(), lang), func(t *testing.T) {
					checkPage(t, b, srv.URL, dir, c, lang, width)
				})
				pages++
				if !ok && b.closed() {
					t.Fatalf("the browser is gone: %v", b.err())
				}
			}
		}
	}
	t.Logf("%d pages rendered, measured and saved in %v", pages, time.Since(start).Round(time.Millisecond))
}

// pageFacts is what the page shows, measured in the page.
type pageFacts struct {
	URL           string    `json:"url"`
	Lang          string    `json:"lang"`
	Title         string    `json:"title"`
	Status        string    `json:"status"`
	Reason        string    `json:"reason"`
	ScrollWidth   int       `json:"scrollWidth"`
	InnerWidth    int       `json:"innerWidth"`
	Wide          []string  `json:"wide"`
	H1            *string   `json:"h1"`
	H1Visible     bool      `json:"h1Visible"`
	Text          string    `json:"text"`
	Subscribe     *pageRect `json:"subscribe"`
	SubscribeText string    `json:"subscribeText"`
	Price         *string   `json:"price"`
	Site          *string   `json:"site"`
	Benefits      int       `json:"benefits"`
	OtherDevice   bool      `json:"otherDevice"`
	Signin        bool      `json:"signin"`
	Signout       bool      `json:"signout"`
	SmallButtons  []string  `json:"smallButtons"`
	Sheets        int       `json:"sheets"`
	Rules         int       `json:"rules"`
	BodyDisplay   string    `json:"bodyDisplay"`
	MainMaxWidth  string    `json:"mainMaxWidth"`
	Violations    *[]string `json:"violations"`
}

type pageRect struct {
	Left, Right, Top, Bottom, Width, Height float64
}

// pageMeasure runs in the page, with %d the viewport's width, and returns
// pageFacts as JSON.
const pageMeasure = `(() => {
	const q = s => document.querySelector(s);
	const rect = e => {
		if (!e) return null;
		const r = e.getBoundingClientRect();
		return {Left: r.left, Right: r.right, Top: r.top, Bottom: r.bottom, Width: r.width, Height: r.height};
	};
	const visible = e => {
		if (!e) return false;
		const r = e.getBoundingClientRect(), s = getComputedStyle(e);
		return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none" && Number(s.opacity) > 0;
	};
	const text = e => e ? e.innerText : null;
	const name = e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\s+/).join(".") : "");
	const main = q("main#paywall");
	const vw = %d; // the viewport's width: innerWidth grows when a phone zooms out to fit a wide page
	const wide = [];
	for (const e of document.querySelectorAll("body *")) {
		const r = e.getBoundingClientRect();
		if (r.width > 0 && (r.left < -0.5 || r.right > vw + 0.5)) wide.push(name(e) + " " + Math.round(r.left) + ".." + Math.round(r.right));
	}
	const small = [];
	for (const e of document.querySelectorAll(".button")) {
		if (visible(e) && e.getBoundingClientRect().height < 44) small.push(name(e) + " " + Math.round(e.getBoundingClientRect().height) + "px");
	}
	let rules = -1;
	try { rules = document.styleSheets[0] ? document.styleSheets[0].cssRules.length : 0; } catch (e) {}
	const sub = q("#subscribe");
	return JSON.stringify({
		url: location.href,
		lang: document.documentElement.lang,
		title: document.title,
		status: main ? main.dataset.status : "",
		reason: main ? main.dataset.reason : "",
		scrollWidth: document.documentElement.scrollWidth,
		innerWidth: innerWidth,
		wide: wide.slice(0, 8),
		h1: text(q("main#paywall h1")),
		h1Visible: visible(q("main#paywall h1")),
		text: document.body ? document.body.innerText : "",
		subscribe: rect(sub),
		subscribeText: sub ? sub.innerText : "",
		price: text(q("#price")),
		site: text(q("#site")),
		benefits: document.querySelectorAll("#benefits li").length,
		otherDevice: !!q("#other-device"),
		signin: !!q("#signin"),
		signout: !!q("#signout"),
		smallButtons: small,
		sheets: document.styleSheets.length,
		rules: rules,
		bodyDisplay: document.body ? getComputedStyle(document.body).display : "",
		mainMaxWidth: main ? getComputedStyle(main).maxWidth : "",
		violations: Array.isArray(window.__paywallViolations) ? window.__paywallViolations : null,
	});
})()`

// pageProbe runs before the page's own content in every document: it keeps
// what the Content-Security-Policy refused. The DevTools protocol adds it,
// so the page's policy (no script at all) does not apply to it.
const pageProbe = `window.__paywallViolations = [];
document.addEventListener("securitypolicyviolation", e => window.__paywallViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline")));`

func checkPage(t *testing.T, b *pageBrowser, base, dir string, c pageCase, lang string, width int) {
	q := url.Values{"reason": {c.reason}, "lang": {lang}}
	if c.known {
		q.Set("known", "1")
	}
	if c.signin {
		q.Set("signin", "1")
	}
	target := base + "/page?" + q.Encode()
	shot := fmt.Sprintf("page-%s-%s-%d.png", c.name(), lang, width)

	b.clearLog()
	f, err := b.open(target, width)
	if err != nil {
		b.screenshot(t, filepath.Join(dir, shot), width)
		t.Fatalf("open %s: %v (screenshot %s)", target, err, shot)
	}
	b.screenshot(t, filepath.Join(dir, shot), width)
	// Say which screenshot shows what failed.
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s %s %d px (%s): "+format, append([]any{c.name(), lang, width, shot}, args...)...)
	}

	wantStatus := "402"
	if c.reason == reasonUnavailable {
		wantStatus = "503"
	}
	if f.Status != wantStatus || f.Reason != c.reason {
		errorf("the page is status %q reason %q, want %s %s", f.Status, f.Reason, wantStatus, c.reason)
	}
	if f.Lang != lang {
		errorf(`<html lang=%q>, want %q: the language was not negotiated from Accept-Language`, f.Lang, lang)
	}
	if !strings.Contains(f.Title, wantStatus) {
		errorf("the title %q does not say %s", f.Title, wantStatus)
	}
	if !strings.Contains(f.Title, "The Reserved Code") {
		errorf("the title %q does not name the site", f.Title)
	}

	// The heading is words, visible, and not the status code.
	switch {
	case f.H1 == nil:
		errorf("no h1")
	case strings.TrimSpace(*f.H1) == "":
		errorf("the h1 is empty")
	case !f.H1Visible:
		errorf("the h1 %q is not visible", *f.H1)
	case strings.Contains(*f.H1, "402") || strings.Contains(*f.H1, "503"):
		errorf("the h1 %q shows the status code", *f.H1)
	}
	if i := strings.IndexAny(f.Text, "{}"); i >= 0 {
		errorf("the page shows a placeholder that was not filled in: %q", excerpt(f.Text, i))
	}

	// Nothing wider than the phone: no sideways scrolling.
	if width == 375 {
		// A phone zooms out to fit a page wider than itself: then
		// innerWidth grows with the page rather than the page scrolling.
		if f.ScrollWidth > width || f.InnerWidth != width {
			errorf("the document is %d px wide, window.innerWidth %d, in a %d px viewport; elements past its edges: %v",
				f.ScrollWidth, f.InnerWidth, width, f.Wide)
		}
		if f.Subscribe != nil && (f.Subscribe.Left < 0 || f.Subscribe.Right > float64(width) || f.Subscribe.Width <= 0) {
			errorf("#subscribe spans %.1f..%.1f px, outside the %d px viewport", f.Subscribe.Left, f.Subscribe.Right, width)
		}
		if len(f.SmallButtons) > 0 {
			errorf("buttons lower than 44 px, hard to tap: %v", f.SmallButtons)
		}
	}

	// The stylesheet applied: a policy that refused the inline <style>
	// would leave the page unstyled.
	if f.Sheets < 1 || f.Rules <= 0 {
		errorf("the page's stylesheet did not apply: %d stylesheets, %d rules", f.Sheets, f.Rules)
	}
	if f.BodyDisplay != "flex" || f.MainMaxWidth == "none" {
		errorf("the page's stylesheet did not apply: body display %q, main max-width %q", f.BodyDisplay, f.MainMaxWidth)
	}
	switch {
	case f.Violations == nil:
		errorf("the probe for Content-Security-Policy violations did not run")
	case len(*f.Violations) > 0:
		errorf("the Content-Security-Policy refused: %v", *f.Violations)
	}
	var logs []string
	for _, l := range b.takeLog() {
		// The page's own status is no error: a 402 (or 503) is its point.
		if l.Source == "network" && l.URL == target && strings.Contains(l.Text, "status of "+wantStatus) {
			continue
		}
		logs = append(logs, l.String())
	}
	if len(logs) > 0 {
		errorf("the browser reported: %v", logs)
	}

	if f.Site == nil || *f.Site != "The Reserved Code" {
		errorf("#site is %s, want %q", quoteOrNil(f.Site), "The Reserved Code")
	}

	// What the page sells, in the reader's language.
	if checkoutReasons[c.reason] {
		want := map[string]string{"en": "$5.00 / month", "id": "US$5,00 / bulan"}[lang]
		if !c.known {
			want = map[string]string{"en": "7 days free, then $5.00 / month", "id": "Gratis 7 hari, lalu US$5,00 / bulan"}[lang]
		}
		if f.Price == nil {
			errorf("no #price, want %q", want)
		} else if got := strings.ReplaceAll(*f.Price, "\u00a0", " "); got != want {
			errorf("#price is %q, want %q", got, want)
		}
		if f.Benefits != 2 {
			errorf("#benefits has %d items, want 2", f.Benefits)
		}
		if f.Subscribe == nil {
			errorf("no #subscribe on a page that sells")
		}
	} else {
		if f.Price != nil {
			errorf("#price %q on a page that sells nothing", *f.Price)
		}
		if f.Subscribe != nil {
			errorf("#subscribe (%q) on a page that sells nothing", f.SubscribeText)
		}
	}

	// Help for a subscriber on another device is for those this browser
	// does not know; a customer whose subscription lapsed is to subscribe
	// again, and is never asked "Already subscribed?" beside it.
	again := pageStrings[lang]["subscribe_again"]
	if c.known && (c.reason == reasonEnded || c.reason == reasonTrialEnded) && (f.OtherDevice || f.Signin) {
		errorf("a known customer's page offers help to sign in (#other-device %v, #signin %v) beside %q", f.OtherDevice, f.Signin, f.SubscribeText)
	}
	if f.SubscribeText == again && (f.OtherDevice || f.Signin) {
		errorf("%q beside help to sign in (#other-device %v, #signin %v)", again, f.OtherDevice, f.Signin)
	}
	if c.reason == reasonEnded && c.known && f.SubscribeText != again {
		errorf("#subscribe says %q, want %q", f.SubscribeText, again)
	}
	switch {
	case c.signin && !f.Signin:
		errorf("sign-in is configured but the page has no #signin form")
	case c.signin && f.OtherDevice:
		errorf("the page offers both the sign-in form and the other-device help")
	case !c.known && !c.signin && !f.OtherDevice: // on checkout_not_completed, folded
		errorf("an unknown visitor's page has no #other-device help")
	}
	if c.known != f.Signout {
		errorf("#signout present %v, want %v for a known customer %v", f.Signout, c.known, c.known)
	}
}

func quoteOrNil(s *string) string {
	if s == nil {
		return "missing"
	}
	return fmt.Sprintf("%q", *s)
}

// excerpt is the text around byte i.
func excerpt(s string, i int) string {
	lo, hi := max(i-40, 0), min(i+40, len(s))
	return s[lo:hi]
}

// pageShotDir is $ARTIFACTS_DIR/pages, or artifacts/browser/pages under the
// repository's root (where go test runs this package), emptied of the
// screenshots of an earlier run.
func pageShotDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("artifacts", "browser", "pages")
	if a := os.Getenv("ARTIFACTS_DIR"); a != "" {
		dir = filepath.Join(a, "pages")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "page-*.png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return dir
}

// pageBrowser is one headless Chromium with one tab, driven over a pipe.
type pageBrowser struct {
	cmd     *exec.Cmd
	in      *os.File // the browser reads commands from it (its fd 3)
	session string   // the tab's

	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMessage
	done    chan struct{} // closed when the browser's output ends
	readErr error
	logs    []pageLog
	stderr  *bytes.Buffer
}

type cdpMessage struct {
	ID     int64           `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

// lockedBuffer collects the browser's stderr for when it fails to start.
type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func startPageBrowser(t *testing.T) *pageBrowser {
	t.Helper()
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{b: new(bytes.Buffer)}
	cmd := exec.Command(pageChromium,
		"--headless",
		"--no-sandbox",
		"--disable-gpu",
		"--disable-background-networking",
		"--disable-component-update",
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-dev-shm-usage",
		"--disable-extensions",
		"--disable-sync",
		"--disable-features=Translate",
		"--hide-scrollbars",
		"--force-color-profile=srgb",
		"--user-data-dir="+t.TempDir(),
		"--remote-debugging-pipe",
		"about:blank",
	)
	cmd.ExtraFiles = []*os.File{cmdR, outW} // fd 3: commands in; fd 4: answers out
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", pageChromium, err)
	}
	cmdR.Close()
	outW.Close()
	b := &pageBrowser{cmd: cmd, in: cmdW, pending: map[int64]chan cdpMessage{}, done: make(chan struct{}), stderr: stderr.b}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	go b.read(outR)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.callBrowser(ctx, "Browser.close", nil, nil)
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // the browser this test started, by its pid
			<-exited
		}
		cmdW.Close()
		outR.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), pageStep)
	defer cancel()
	var created struct {
		TargetID string `json:"targetId"`
	}
	if err := b.callBrowser(ctx, "Target.createTarget", map[string]any{"url": "about:blank"}, &created); err != nil {
		stderr.mu.Lock()
		defer stderr.mu.Unlock()
		t.Fatalf("open a tab in %s: %v\n%s", pageChromium, err, stderr.b)
	}
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.callBrowser(ctx, "Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached); err != nil {
		t.Fatalf("attach to the tab: %v", err)
	}
	b.session = attached.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		if err := b.call(ctx, m, nil, nil); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	if err := b.call(ctx, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": pageProbe}, nil); err != nil {
		t.Fatalf("add the CSP probe: %v", err)
	}
	return b
}

// read delivers the browser's answers to their calls and keeps its log.
func (b *pageBrowser) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	var err error
	for {
		var raw []byte
		raw, err = br.ReadBytes(0)
		if err != nil {
			break
		}
		var m cdpMessage
		if err = json.Unmarshal(raw[:len(raw)-1], &m); err != nil {
			break
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		b.event(m)
	}
	b.mu.Lock()
	b.readErr = err
	b.mu.Unlock()
	close(b.done)
}

// pageLog is an error or a warning the browser reported.
type pageLog struct {
	Source, Level, Text, URL string
}

func (l pageLog) String() string {
	return fmt.Sprintf("%s %s: %s %s", l.Source, l.Level, l.Text, l.URL)
}

// event keeps what the browser reports as an error or a warning: a refused
// resource, a policy violation, an exception.
func (b *pageBrowser) event(m cdpMessage) {
	var l pageLog
	switch m.Method {
	case "Log.entryAdded":
		var p struct{ Entry pageLog }
		if json.Unmarshal(m.Params, &p) == nil && (p.Entry.Level == "error" || p.Entry.Level == "warning") {
			l = p.Entry
		}
	case "Runtime.exceptionThrown":
		l = pageLog{Source: "javascript", Level: "exception", Text: string(m.Params)}
	case "Runtime.consoleAPICalled":
		var p struct{ Type string }
		if json.Unmarshal(m.Params, &p) == nil && (p.Type == "error" || p.Type == "warning") {
			l = pageLog{Source: "console", Level: p.Type, Text: string(m.Params)}
		}
	}
	if l.Level != "" {
		b.mu.Lock()
		b.logs = append(b.logs, l)
		b.mu.Unlock()
	}
}

func (b *pageBrowser) clearLog() {
	b.mu.Lock()
	b.logs = nil
	b.mu.Unlock()
}

func (b *pageBrowser) takeLog() []pageLog {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.logs
	b.logs = nil
	return l
}

func (b *pageBrowser) closed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *pageBrowser) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readErr
}

// call sends a command to the tab and decodes its result into result.
func (b *pageBrowser) call(ctx context.Context, method string, params, result any) error {
	return b.send(ctx, b.session, method, params, result)
}

// callBrowser sends a command to the browser itself.
func (b *pageBrowser) callBrowser(ctx context.Context, method string, params, result any) error {
	return b.send(ctx, "", method, params, result)
}

func (b *pageBrowser) send(ctx context.Context, session, method string, params, result any) error {
	if b.closed() {
		return fmt.Errorf("%s: the browser is gone (%v)", method, b.err())
	}
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	b.writeMu.Lock()
	_, err = b.in.Write(append(raw, 0))
	b.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.done:
		return fmt.Errorf("%s: the browser is gone (%v)", method, b.err())
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// viewport sizes the tab as chromedp.EmulateViewport does, and as a phone
// with chromedp.EmulateMobile: a mobile viewport that honours the page's
// <meta name="viewport">, and touch.
func (b *pageBrowser) viewport(t *testing.T, width, height int, mobile bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pageStep)
	defer cancel()
	orientation := map[string]any{"type": "landscapePrimary", "angle": 90}
	if mobile {
		orientation = map[string]any{"type": "portraitPrimary", "angle": 0}
	}
	if err := b.call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile, "screenOrientation": orientation,
	}, nil); err != nil {
		t.Fatalf("viewport %d×%d: %v", width, height, err)
	}
	if err := b.call(ctx, "Emulation.setTouchEmulationEnabled", map[string]any{"enabled": mobile}, nil); err != nil {
		t.Fatalf("touch emulation: %v", err)
	}
}

// open navigates the tab to target, waits until main#paywall is visible in
// the loaded page, and measures it in a viewport width px wide.
func (b *pageBrowser) open(target string, width int) (pageFacts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pageStep)
	defer cancel()
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": target}, &nav); err != nil {
		return pageFacts{}, err
	}
	if nav.ErrorText != "" {
		return pageFacts{}, errors.New(nav.ErrorText)
	}
	const ready = `location.href === %q && document.readyState === "complete" && (() => {
		const m = document.querySelector("main#paywall");
		if (!m) return false;
		const r = m.getBoundingClientRect();
		return r.width > 0 && r.height > 0 && getComputedStyle(m).visibility !== "hidden";
	})()`
	for {
		var ok bool
		if err := b.eval(ctx, fmt.Sprintf(ready, target), &ok); err != nil {
			// The document may be replaced while it is asked.
			if ctx.Err() != nil {
				return pageFacts{}, fmt.Errorf("wait for main#paywall: %w", err)
			}
		} else if ok {
			break
		}
		select {
		case <-ctx.Done():
			var body string
			_ = b.eval(context.Background(), `document.body ? document.body.innerText.slice(0, 300) : ""`, &body)
			return pageFacts{}, fmt.Errorf("main#paywall did not show in %v; the page says %q", pageStep, body)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var raw string
	if err := b.eval(ctx, fmt.Sprintf(pageMeasure, width), &raw); err != nil {
		return pageFacts{}, fmt.Errorf("measure the page: %w", err)
	}
	var f pageFacts
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return pageFacts{}, fmt.Errorf("measure the page: %w", err)
	}
	return f, nil
}

// eval evaluates expr in the page and decodes its value into v.
func (b *pageBrowser) eval(ctx context.Context, expr string, v any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if e := res.ExceptionDetails; e != nil {
		if e.Exception != nil {
			return errors.New(e.Exception.Description)
		}
		return errors.New(e.Text)
	}
	return json.Unmarshal(res.Result.Value, v)
}

// screenshot saves a full-page PNG, as chromedp.FullScreenshot does, and
// fails unless it is as wide as the viewport.
func (b *pageBrowser) screenshot(t *testing.T, path string, width int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pageStep)
	defer cancel()
	var m struct {
		CSSContentSize struct {
			Width, Height float64
		} `json:"cssContentSize"`
	}
	if err := b.call(ctx, "Page.getLayoutMetrics", nil, &m); err != nil {
		t.Errorf("screenshot %s: %v", filepath.Base(path), err)
		return
	}
	var shot struct {
		Data string `json:"data"`
	}
	if err := b.call(ctx, "Page.captureScreenshot", map[string]any{
		"format":                "png",
		"captureBeyondViewport": true,
		"fromSurface":           true,
		"clip": map[string]any{
			"x": 0, "y": 0, "width": m.CSSContentSize.Width, "height": m.CSSContentSize.Height, "scale": 1,
		},
	}, &shot); err != nil {
		t.Errorf("screenshot %s: %v", filepath.Base(path), err)
		return
	}
	img, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Errorf("screenshot %s: %v", filepath.Base(path), err)
		return
	}
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Error(err)
		return
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Errorf("screenshot %s is not a PNG: %v", filepath.Base(path), err)
		return
	}
	if cfg.Width != width || cfg.Height < 100 {
		t.Errorf("screenshot %s is %d×%d px, want %d px wide: the page is wider than the viewport", filepath.Base(path), cfg.Width, cfg.Height, width)
	}
}
