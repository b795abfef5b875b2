package stripefake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// fakeMail is a message as Mailpit's API shows it.
type fakeMail struct {
	ID, To, Subject string
	Created         time.Time
	Text, HTML      string
}

// fakeMailpit imitates GET /api/v1/messages and GET /api/v1/message/{ID}.
// It lists messages in the order given, oldest first, to check that the
// sandbox sorts them.
func fakeMailpit(t *testing.T, msgs []fakeMail) *httptest.Server {
	t.Helper()
	addr := func(a string) []map[string]string { return []map[string]string{{"Name": "", "Address": a}} }
	from := map[string]string{"Name": "Paywall", "Address": "paywall@example.com"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/messages", func(w http.ResponseWriter, r *http.Request) {
		list := []map[string]any{}
		for _, m := range msgs {
			list = append(list, map[string]any{"ID": m.ID, "From": from, "To": addr(m.To), "Subject": m.Subject,
				"Created": m.Created, "Read": false, "Snippet": "…"})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"total": len(msgs), "count": len(msgs), "start": 0, "messages": list})
	})
	mux.HandleFunc("GET /api/v1/message/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, m := range msgs {
			if m.ID == r.PathValue("id") {
				_ = json.NewEncoder(w).Encode(map[string]any{"ID": m.ID, "From": from, "To": addr(m.To),
					"Subject": m.Subject, "Date": m.Created, "Text": m.Text, "HTML": m.HTML})
				return
			}
		}
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestIndexListsMailWithLinks(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	mp := fakeMailpit(t, []fakeMail{
		{ID: "m1", To: "old@example.com", Subject: "Welcome", Created: t0, Text: "No links here."},
		{ID: "m2", To: "ada@example.com", Subject: "Sign in", Created: t0.Add(time.Minute),
			Text: "Hello,\r\nclick http://localhost:8080/paywall/signin?token=abc&x=1.\r\n<script>alert(1)</script>\r\n" +
				"javascript:alert(1) ftp://example.com/f (https://example.com/p)\r\n"},
		{ID: "m3", To: "h@example.com", Subject: "HTML only", Created: t0.Add(-time.Minute),
			HTML: `<p><a href="https://example.com/a?b=1&amp;c=2">go</a> <a href="javascript:x">no</a></p>`},
	})
	s := start(t, stripefake.Options{MailpitURL: mp.URL + "/"})

	st, page := get(t, s.URL()+"/")
	if st != 200 || !strings.Contains(page, `id="mail"`) || !strings.Contains(page, "price_demo_monthly") {
		t.Fatalf("index %d:\n%s", st, page)
	}
	signin := `<a href="http://localhost:8080/paywall/signin?token=abc&amp;x=1">http://localhost:8080/paywall/signin?token=abc&amp;x=1</a>.`
	for _, want := range []string{
		signin,
		`<details id="mail-m2" open>`,
		`<summary>2 Jan 2026, 10:01:00 UTC · ada@example.com · <strong>Sign in</strong></summary>`,
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`(<a href="https://example.com/p">https://example.com/p</a>)`,
		`<a href="https://example.com/a?b=1&amp;c=2">`,
		`<a href="/mail/m1">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("index lacks %s", want)
		}
	}
	for _, bad := range []string{"<script>", `href="javascript`, `href="ftp`, `<details id="mail-m1" open`} {
		if strings.Contains(page, bad) {
			t.Errorf("index has %s", bad)
		}
	}
	if i, j, k := strings.Index(page, "Sign in"), strings.Index(page, "Welcome"), strings.Index(page, "HTML only"); i < 0 || i > j || j > k {
		t.Errorf("not newest first: %d %d %d", i, j, k)
	}

	st, msg := get(t, s.URL()+"/mail/m2")
	if st != 200 || !strings.Contains(msg, signin) || !strings.Contains(msg, "To ada@example.com") || strings.Contains(msg, "<script>") {
		t.Fatalf("message page %d:\n%s", st, msg)
	}
	if st, _ := get(t, s.URL()+"/mail/nope"); st != 404 {
		t.Fatalf("unknown message: %d", st)
	}
}

func TestIndexShowsTwentyNewestMails(t *testing.T) {
	var msgs []fakeMail
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 25; i++ {
		msgs = append(msgs, fakeMail{ID: fmt.Sprintf("m%02d", i), To: "a@example.com", Subject: fmt.Sprintf("n%02d", i),
			Created: t0.Add(time.Duration(i) * time.Second), Text: "t"})
	}
	s := start(t, stripefake.Options{MailpitURL: fakeMailpit(t, msgs).URL})
	_, page := get(t, s.URL()+"/")
	if n := strings.Count(page, "<details"); n != 20 {
		t.Fatalf("%d messages shown", n)
	}
	if !strings.Contains(page, "n24") || !strings.Contains(page, "n05") || strings.Contains(page, "n04") {
		t.Fatal("not the newest twenty")
	}
}

func TestIndexWithoutMailpit(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	s := start(t, stripefake.Options{MailpitURL: downURL})
	st, page := get(t, s.URL()+"/")
	if st != 200 || !strings.Contains(page, `id="mail-error"`) || !strings.Contains(page, "could not be read") ||
		!strings.Contains(page, "price_demo_monthly") {
		t.Fatalf("index with Mailpit down %d:\n%s", st, page)
	}
	if st, _ := get(t, s.URL()+"/mail/x"); st != http.StatusBadGateway {
		t.Fatalf("message with Mailpit down: %d", st)
	}

	plain := start(t, stripefake.Options{})
	if _, page := get(t, plain.URL()+"/"); strings.Contains(page, `id="mail"`) {
		t.Fatal("Mail section without a Mailpit URL")
	}
	if st, _ := get(t, plain.URL()+"/mail/x"); st != 404 {
		t.Fatalf("message without Mailpit: %d", st)
	}
}

// TestRealMailpit sends a mail to a real Mailpit (from $MAILPIT_BIN or PATH)
// over SMTP on loopback and finds its link on the index page.
func TestRealMailpit(t *testing.T) {
	bin := os.Getenv("MAILPIT_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("mailpit"); err != nil {
			t.Skip("mailpit not found: set MAILPIT_BIN or put it on PATH")
		}
	}
	httpAddr, smtpAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--listen", httpAddr, "--smtp", smtpAddr,
		"--database", t.TempDir()+"/mailpit.db", "--disable-version-check", "--smtp-disable-rdns", "--quiet")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mailpit output:\n%s", logs.String())
		}
	})
	waitReady(t, "http://"+httpAddr+"/readyz")

	msg := "From: Paywall <paywall@example.com>\r\nTo: ada@example.com\r\nSubject: Sign in\r\n\r\n" +
		"Sign in: http://localhost:8080/paywall/signin?token=t0k3n\r\n"
	if err := smtp.SendMail(smtpAddr, nil, "paywall@example.com", []string{"ada@example.com"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	s := start(t, stripefake.Options{MailpitURL: "http://" + httpAddr})
	_, page := get(t, s.URL()+"/")
	if !strings.Contains(page, `<a href="http://localhost:8080/paywall/signin?token=t0k3n">`) || !strings.Contains(page, "Sign in") {
		t.Fatalf("index:\n%s", page)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitReady polls a readiness URL: a child process gives no other signal
// that it has started listening.
func waitReady(t *testing.T, u string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if res, err := browser.Get(u); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s not ready", u)
		}
	}
}
