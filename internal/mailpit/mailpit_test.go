package mailpit

import (
	"bytes"
	"fmt"
	"html"
	"net"
	"net/smtp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// send hands one message to the SMTP server, logging in when auth is set.
func send(t *testing.T, s *Server, auth smtp.Auth, from string, to []string, msg string) {
	t.Helper()
	if err := smtp.SendMail(s.SMTPAddr(), auth, from, to, []byte(strings.ReplaceAll(msg, "\n", "\r\n"))); err != nil {
		t.Fatalf("send to %s: %v", s.SMTPAddr(), err)
	}
}

func TestReceive(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if host, _, err := net.SplitHostPort(s.SMTPAddr()); err != nil || host != "127.0.0.1" {
		t.Errorf("SMTPAddr() = %q, want a loopback host:port", s.SMTPAddr())
	}
	if !strings.HasPrefix(s.APIURL(), "http://127.0.0.1:") {
		t.Errorf("APIURL() = %q, want http://127.0.0.1:port", s.APIURL())
	}
	if got := s.Messages(t); len(got) != 0 {
		t.Fatalf("a new Mailpit holds %d messages", len(got))
	}

	before := time.Now().Add(-time.Second)
	send(t, s, nil, "shop@example.test", []string{"reader@example.test", "hidden@example.test"}, `From: Shop <shop@example.test>
To: Reader <reader@example.test>
Subject: =?utf-8?q?Your_login_link_=E2=80=94_Shop?=
Message-ID: <plain-1@example.test>
Content-Type: text/plain; charset=utf-8

Sign in: https://shop.example.test/login?token=abc&next=%2F.
Again (https://shop.example.test/login?token=abc&next=%2F) or http://127.0.0.1:8080/help
`)
	got := s.WaitMessages(t, 1, 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("got %d messages, want 1", len(got))
	}
	sum := got[0]
	if sum.From != (Address{"Shop", "shop@example.test"}) {
		t.Errorf("From = %+v", sum.From)
	}
	if !slices.Equal(sum.To, []Address{{"Reader", "reader@example.test"}}) {
		t.Errorf("To = %+v", sum.To)
	}
	// The envelope recipient missing from the header.
	if !slices.Equal(sum.Bcc, []Address{{"", "hidden@example.test"}}) {
		t.Errorf("Bcc = %+v", sum.Bcc)
	}
	if sum.Subject != "Your login link — Shop" {
		t.Errorf("Subject = %q", sum.Subject)
	}
	if sum.MessageID != "plain-1@example.test" {
		t.Errorf("MessageID = %q", sum.MessageID)
	}
	if sum.Username != "" {
		t.Errorf("Username = %q without a login", sum.Username)
	}
	if sum.Created.Before(before) || sum.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, not about now", sum.Created)
	}

	m := s.Message(t, sum.ID)
	if m.ID != sum.ID || m.Subject != sum.Subject || m.From != sum.From {
		t.Errorf("Message = %+v, not the summary %+v", m, sum)
	}
	if m.ReturnPath != "shop@example.test" {
		t.Errorf("ReturnPath = %q", m.ReturnPath)
	}
	if !strings.Contains(m.Text, "Sign in: https://") || m.HTML != "" {
		t.Errorf("Text = %q, HTML = %q", m.Text, m.HTML)
	}
	if got := m.Header.Get("Subject"); got != "=?utf-8?q?Your_login_link_=E2=80=94_Shop?=" {
		t.Errorf("Subject header = %q, want it as sent", got)
	}
	if got := m.Header.Get("Message-ID"); got != "<plain-1@example.test>" {
		t.Errorf("Message-ID header = %q", got)
	}
	if to, err := m.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "reader@example.test" {
		t.Errorf("To header = %v, %v", to, err)
	}
	if m.Header.Get("Received") == "" {
		t.Errorf("no Received header from Mailpit: %v", m.Header)
	}
	want := []string{"https://shop.example.test/login?token=abc&next=%2F", "http://127.0.0.1:8080/help"}
	if got := Links(m.Text); !slices.Equal(got, want) {
		t.Errorf("Links = %q, want %q", got, want)
	}
	if raw := s.Raw(t, sum.ID); !bytes.Contains(raw, []byte("\r\nMessage-ID: <plain-1@example.test>\r\n")) {
		t.Errorf("Raw lacks the Message-ID field:\n%s", raw)
	}
}

func TestAuthAndHTML(t *testing.T) {
	t.Parallel()
	s := Start(t)
	// net/smtp sends a password over plain TCP only to a server on
	// loopback, named as in the address.
	host, _, _ := net.SplitHostPort(s.SMTPAddr())
	auth := smtp.PlainAuth("", "paywall", "secret", host)
	send(t, s, auth, "shop@example.test", []string{"reader@example.test"}, `From: shop@example.test
To: reader@example.test
Subject: Receipt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Manage your subscription: https://shop.example.test/account?a=3D1&b=3D2
--b
Content-Type: text/html; charset=utf-8

<p><a href="https://shop.example.test/account?a=1&amp;b=2">Manage</a></p>
--b--
`)
	got := s.WaitMessages(t, 1, 10*time.Second)
	if got[0].Username != "paywall" {
		t.Errorf("Username = %q, want the login paywall", got[0].Username)
	}
	m := s.Message(t, got[0].ID)
	link := "https://shop.example.test/account?a=1&b=2"
	if l := Links(m.Text); !slices.Equal(l, []string{link}) {
		t.Errorf("Links(Text) = %q, want %q", l, link)
	}
	l := Links(m.HTML)
	if len(l) != 1 || html.UnescapeString(l[0]) != link {
		t.Errorf("Links(HTML) = %q, want %q once entities are decoded", l, link)
	}
}

func TestDeleteAllAndOrder(t *testing.T) {
	t.Parallel()
	s := Start(t)
	for i := range 3 {
		send(t, s, nil, "shop@example.test", []string{"reader@example.test"},
			fmt.Sprintf("Subject: number %d\n\nbody %d\n", i, i))
		// Mailpit orders by reception time, in milliseconds: wait for
		// each message so that the order is certain.
		s.WaitMessages(t, i+1, 10*time.Second)
	}
	got := s.Messages(t)
	var subjects []string
	for _, m := range got {
		subjects = append(subjects, m.Subject)
	}
	if want := []string{"number 0", "number 1", "number 2"}; !slices.Equal(subjects, want) {
		t.Errorf("subjects = %q, want %q, oldest first", subjects, want)
	}
	s.DeleteAll(t)
	if got := s.Messages(t); len(got) != 0 {
		t.Errorf("%d messages after DeleteAll", len(got))
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	send(t, s, nil, "shop@example.test", []string{"reader@example.test"}, "Subject: before\n\nx\n")
	s.WaitMessages(t, 1, 10*time.Second)

	s.Stop(t)
	s.Stop(t) // a second Stop does nothing
	if c, err := net.DialTimeout("tcp", s.SMTPAddr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the SMTP port still answers after Stop")
	}
	err := smtp.SendMail(s.SMTPAddr(), nil, "shop@example.test", []string{"reader@example.test"}, []byte("Subject: lost\r\n\r\nx\r\n"))
	if err == nil {
		t.Fatal("sending to a stopped Mailpit succeeded")
	}

	s.Restart(t)
	send(t, s, nil, "shop@example.test", []string{"reader@example.test"}, "Subject: after\n\nx\n")
	got := s.WaitMessages(t, 2, 10*time.Second)
	if len(got) != 2 || got[0].Subject != "before" || got[1].Subject != "after" {
		t.Errorf("after Restart: %+v, want the messages before and after", got)
	}
}

// fatalTB records the first Fatal instead of failing the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestWaitMessagesTimeout(t *testing.T) {
	t.Parallel()
	s := Start(t)
	send(t, s, nil, "shop@example.test", []string{"reader@example.test"}, "Subject: only one\n\nx\n")

	f := &fatalTB{TB: t}
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		s.WaitMessages(f, 2, 300*time.Millisecond)
	}()
	<-done
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Errorf("WaitMessages gave up after %v, before its timeout", took)
	}
	if !strings.Contains(f.msg, "1 messages after 300ms") || !strings.Contains(f.msg, `"only one"`) {
		t.Errorf("WaitMessages failed with %q, want the count and what arrived", f.msg)
	}

	s.Stop(t)
	f = &fatalTB{TB: t}
	done = make(chan struct{})
	go func() {
		defer close(done)
		s.WaitMessages(f, 1, time.Minute)
	}()
	<-done
	if !strings.Contains(f.msg, "stopped") {
		t.Errorf("WaitMessages on a stopped Mailpit failed with %q", f.msg)
	}
}

func TestLinks(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"no links here, not even ftp://example.test", nil},
		{"Go to https://a.example.test/x.", []string{"https://a.example.test/x"}},
		{"https://a.example.test/?q=1&r=2, then http://b.example.test:8080/p!", []string{"https://a.example.test/?q=1&r=2", "http://b.example.test:8080/p"}},
		{"(see https://a.example.test/x) and <https://b.example.test/y>", []string{"https://a.example.test/x", "https://b.example.test/y"}},
		{`<a href="https://a.example.test/x">https://a.example.test/x</a>`, []string{"https://a.example.test/x"}},
		{"http://[::1]:8025/api\nhttp://127.0.0.1/\thttps://c.example.test/a;b", []string{"http://[::1]:8025/api", "http://127.0.0.1/", "https://c.example.test/a;b"}},
	} {
		if got := Links(c.in); !slices.Equal(got, c.want) {
			t.Errorf("Links(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
