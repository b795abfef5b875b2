package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startRun runs the sandbox with args and returns its base URL, its banner
// and a function that stops it and checks that run returned nil.
func startRun(t *testing.T, args ...string) (base, banner string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var out []string
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "listening" {
			base = f[2]
		}
		if strings.HasPrefix(line, "Press Ctrl-C") {
			break
		}
	}
	stop = func() {
		t.Helper()
		cancel()
		go io.Copy(io.Discard, pr)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("run did not stop")
		}
	}
	return base, strings.Join(out, "\n"), stop
}

func getPage(t *testing.T, u string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestRunServesAndStops(t *testing.T) {
	base, text, stop := startRun(t, "-webhook-url", "http://127.0.0.1:1/hook")
	if base == "" || !strings.Contains(text, "test mode, no real money") || !strings.Contains(text, "signing secret whsec_") {
		stop()
		t.Fatalf("banner:\n%s", text)
	}
	st, page := getPage(t, base+"/")
	if st != 200 || strings.Contains(page, `id="mail"`) {
		t.Fatalf("index: %d", st)
	}
	stop()
}

func TestRunListsMailpitMail(t *testing.T) {
	mailpit := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/messages":
			io.WriteString(w, `{"total":1,"messages":[{"ID":"abc","From":{"Name":"","Address":"paywall@example.com"},`+
				`"To":[{"Name":"","Address":"ada@example.com"}],"Subject":"Sign in","Created":"2026-01-02T10:00:00Z"}]}`)
		case "/api/v1/message/abc":
			io.WriteString(w, `{"ID":"abc","Subject":"Sign in","Date":"2026-01-02T10:00:00Z",`+
				`"Text":"Sign in: http://localhost:8080/paywall/signin?token=t0k3n\r\n","HTML":""}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer mailpit.Close()
	base, text, stop := startRun(t, "-mailpit-url", mailpit.URL)
	defer stop()
	if !strings.Contains(text, "lists the mail caught by Mailpit at "+mailpit.URL) {
		t.Fatalf("banner:\n%s", text)
	}
	st, page := getPage(t, base+"/")
	if st != 200 || !strings.Contains(page, `<a href="http://localhost:8080/paywall/signin?token=t0k3n">`) {
		t.Fatalf("index %d:\n%s", st, page)
	}
	if st, page := getPage(t, base+"/mail/abc"); st != 200 || !strings.Contains(page, "token=t0k3n</a>") {
		t.Fatalf("message %d:\n%s", st, page)
	}
}

func TestRunRefusesNonLoopback(t *testing.T) {
	err := run(context.Background(), []string{"-addr", "0.0.0.0:12112"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v", err)
	}
}

func TestRunRefusesBadMailpitURL(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8025", "ftp://127.0.0.1:8025", "http://"} {
		err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-mailpit-url", u}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-mailpit-url") {
			t.Errorf("%s: got %v", u, err)
		}
	}
}
