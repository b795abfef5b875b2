package paywall_test

import (
	"bufio"
	"html"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/caddyrun"
	"github.com/caddy-paywall/paywall/internal/mailpit"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// The SMTP password the sign-in tests configure; no log may show it.
const e2eSMTPPassword = "smtp-e2e-Hk4Rt8Vw2Zq6"

// e2eSigninSite runs Caddy with email sign-in sending to a real SMTP server
// (Mailpit) on loopback, with a login, over plain TLS-less loopback.
func e2eSigninSite(t *testing.T, extra string) (*caddyrun.Instance, *stripefake.Server, *mailpit.Server) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs caddy and mailpit")
	}
	mail := mailpit.Start(t)
	inst, fake := e2eStart(t, `:{{.HTTPPort}} {
	paywall /premium/* {`+e2ePaywallBlock+`
		email {
			smtp {env.E2E_SMTP}
			username paywall
			password {env.E2E_SMTP_PASSWORD}
			from "E2E News <news@example.com>"
			tls off
		}
`+extra+`
	}
	respond "premium content"
}
`, map[string]string{"E2E_SMTP": mail.SMTPAddr(), "E2E_SMTP_PASSWORD": e2eSMTPPassword})
	return inst, fake, mail
}

// e2ePost posts a form from a page of the site itself.
func e2ePost(t *testing.T, c *http.Client, u string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body)
}

// signinCount reads caddy_paywall_signin_total{event=…} from Caddy's admin
// API.
func signinCount(t *testing.T, inst *caddyrun.Instance, event string) int {
	t.Helper()
	res, err := http.Get(inst.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	want := `caddy_paywall_signin_total{event="` + event + `"} `
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// waitCount waits until the counter reaches n: the work after the answer
// is done.
func waitCount(t *testing.T, inst *caddyrun.Instance, event string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for signinCount(t, inst, event) < n {
		if time.Now().After(deadline) {
			t.Fatalf("signin_total{event=%q} stayed at %d, want %d\n%s", event, signinCount(t, inst, event), n, inst.Logs())
		}
		time.Sleep(20 * time.Millisecond) // polling Caddy's metrics, another process
	}
}

// A subscriber who paid in one browser reads the article in a second,
// cookie-less one after one email.
func TestEndToEndSigninByEmailOnANewDevice(t *testing.T) {
	t.Parallel()
	inst, fake, mail := e2eSigninSite(t, "")
	site := inst.URL()

	laptop := e2eBrowser(t)
	e2eSubscribe(t, fake, laptop, site)
	customer, _ := fake.Customer(fake.Sessions()[0].Customer)
	email := customer.Email

	phone := e2eBrowser(t)
	res, body := e2eGet(t, phone, site+"/premium/x", "text/html")
	if res.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, `action="/paywall/signin"`) {
		t.Fatalf("402 page on the new device lacks the sign-in form: %d\n%s", res.StatusCode, body)
	}
	res, body = e2ePost(t, phone, site+"/paywall/signin", url.Values{"email": {email}, "return": {"/premium/x"}})
	if res.StatusCode != http.StatusAccepted || !strings.Contains(body, "Check your inbox") {
		t.Fatalf("ask for a link: %d\n%s", res.StatusCode, body)
	}
	msgs := mail.WaitMessages(t, 1, 10*time.Second)
	m := mail.Message(t, msgs[0].ID)
	if len(m.To) != 1 || m.To[0].Address != email || m.From.Address != "news@example.com" || m.Username != "paywall" {
		t.Errorf("mail to %+v from %+v (SMTP login %q)", m.To, m.From, m.Username)
	}
	if m.HTML == "" || !strings.Contains(m.Text, "15 minutes") || !strings.Contains(m.Text, "did not ask") {
		t.Errorf("mail lacks an HTML part, the lifetime or what to do if not asked for:\n%s", m.Text)
	}
	links := mailpit.Links(m.Text)
	if len(links) != 1 || !strings.HasPrefix(links[0], site+"/paywall/signin?token=") {
		t.Fatalf("links in the mail: %v", links)
	}
	link := html.UnescapeString(links[0])

	// Mail scanners GET the link first: the phone still uses it after.
	for i := 0; i < 2; i++ {
		if res, body := e2eGet(t, e2eBrowser(t), link, "text/html"); res.StatusCode != http.StatusOK || !strings.Contains(body, `id="signin-confirm"`) {
			t.Fatalf("GET %d of the link: %d\n%s", i, res.StatusCode, body)
		}
	}
	u, _ := url.Parse(link)
	form := url.Values{"token": {u.Query().Get("token")}, "return": {u.Query().Get("return")}}
	res, _ = e2ePost(t, phone, site+"/paywall/signin", form)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/premium/x" || e2eCookie(phone, site, "paywall") == "" {
		t.Fatalf("POST of the link: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res, body := e2eGet(t, phone, site+"/premium/x", "text/html"); res.StatusCode != http.StatusOK || body != "premium content" {
		t.Fatalf("the article on the new device: %d %q", res.StatusCode, body)
	}
	// Once only.
	if res, body := e2ePost(t, e2eBrowser(t), site+"/paywall/signin", form); res.StatusCode != http.StatusGone || !strings.Contains(body, "already used") {
		t.Errorf("second use: %d\n%s", res.StatusCode, body)
	}
	waitCount(t, inst, "used", 1)
	if strings.Contains(inst.Logs(), e2eSMTPPassword) || strings.Contains(inst.Logs(), u.Query().Get("token")) {
		t.Error("Caddy's log shows the SMTP password or a sign-in token")
	}
}

// Addresses with no subscriber, customers who never subscribed, a forged
// Host and the limit all get the same answer and no mail; the SMTP server
// being down never reaches the visitor.
func TestEndToEndSigninSendsNothingItShouldNot(t *testing.T) {
	t.Parallel()
	inst, fake, mail := e2eSigninSite(t, "\t\tsignin_limit 2 per 1h\n")
	site := inst.URL()
	fake.CreateCustomer("never@example.com")
	paid := fake.CreateCustomer("paid@example.com")
	fake.CreateSubscription(paid, stripefake.DefaultPrice.ID, "active")

	ask := func(email string, header ...string) {
		t.Helper()
		res, body := e2ePost(t, e2eBrowser(t), site+"/paywall/signin", url.Values{"email": {email}}, header...)
		if res.StatusCode != http.StatusAccepted || !strings.Contains(body, "Check your inbox") {
			t.Fatalf("ask for %s: %d\n%s", email, res.StatusCode, body)
		}
	}
	ask("nobody@example.com")
	ask("never@example.com")
	ask("paid@example.com", "Host", "attacker.example")
	waitCount(t, inst, "not_sent", 3)
	ask("paid@example.com")
	ask("paid@example.com")
	ask("paid@example.com") // over signin_limit
	waitCount(t, inst, "limited", 1)
	waitCount(t, inst, "sent", 2)
	if msgs := mail.Messages(t); len(msgs) != 2 {
		t.Fatalf("%d mails, want the two to paid@example.com within the limit", len(msgs))
	}
	for _, s := range mail.Messages(t) {
		if len(s.To) != 1 || s.To[0].Address != "paid@example.com" {
			t.Errorf("a mail to %+v", s.To)
		}
		if l := mailpit.Links(mail.Message(t, s.ID).Text); len(l) != 1 || !strings.HasPrefix(l[0], site+"/") {
			t.Errorf("a link not on the site's own address: %v", l)
		}
	}

	// The SMTP server goes away.
	mail.Stop(t)
	fake.CreateSubscription(fake.CreateCustomer("late@example.com"), stripefake.DefaultPrice.ID, "active")
	ask("late@example.com")
	waitCount(t, inst, "mail_failed", 1)
	if res, body := e2eGet(t, e2eBrowser(t), site+"/premium/x", "text/html"); res.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, `action="/paywall/signin"`) {
		t.Errorf("402 page with the SMTP server down: %d", res.StatusCode)
	}
	if !inst.WaitLogs("could not send a sign-in mail", 5*time.Second) || strings.Contains(inst.Logs(), e2eSMTPPassword) {
		t.Errorf("the log should say the mail failed, without the password:\n%s", inst.Logs())
	}
}
