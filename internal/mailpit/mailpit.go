// Package mailpit runs a real Mailpit, an SMTP server that keeps what it
// receives and shows it through an HTTP API, on loopback for the tests of
// the paywall's mail.
//
// Start finds the mailpit binary (scripts/tools.sh go installs it), runs
// it with an empty database of its own on two ports the system picks, and
// stops it when the test ends. The SMTP server accepts any username and
// password, over plain TCP too, and mail sent without logging in.
package mailpit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/child"
)

// version is the Mailpit that scripts/tools.sh installs.
const version = "v1.33.1"

// startTimeout bounds how long Start and Restart wait for Mailpit to answer.
const startTimeout = 30 * time.Second

// Server is a running Mailpit. Its methods that take a testing.TB fail the
// test when Mailpit does not answer as expected, so call them from the
// test's goroutine.
type Server struct {
	bin      string
	dir      string // working directory, holding the database
	db       string
	smtpAddr string
	apiURL   string
	client   *http.Client
	output   child.Output // what every run of Mailpit wrote, for failures

	mu   sync.Mutex
	proc *child.Process // nil while stopped
}

// Address is a name and an email address as Mailpit reports them.
type Address struct {
	Name    string
	Address string
}

// Summary describes a message in Mailpit's list. The addresses come from
// the message's header; envelope recipients missing from To and Cc are
// listed in Bcc.
type Summary struct {
	ID        string // Mailpit's ID, for Message
	MessageID string // the Message-ID header, without angle brackets
	From      Address
	To        []Address
	Cc        []Address
	Bcc       []Address
	Subject   string // decoded
	Created   time.Time
	Username  string // the SMTP login, empty when the client did not log in
	Snippet   string // the start of the text
}

// Message is one message in full.
type Message struct {
	ID         string
	MessageID  string
	From       Address
	To         []Address
	Cc         []Address
	Bcc        []Address
	ReplyTo    []Address
	ReturnPath string // the envelope sender
	Subject    string // decoded
	Date       time.Time
	Username   string
	Text       string // the text/plain body, decoded
	HTML       string // the text/html body, decoded
	// Header holds the header fields as sent: encoded words such as
	// =?utf-8?q?…?= are left as they are. Mailpit adds Received and
	// Return-Path.
	Header mail.Header
}

// Start runs Mailpit for the test and stops it when the test ends. Without
// the binary it skips the test, or fails it when the CI environment
// variable is set.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	// First, so that it is removed after the cleanup below stops Mailpit.
	dir := t.TempDir()
	s := &Server{
		bin: bin,
		dir: dir,
		db:  filepath.Join(dir, "mailpit.db"),
		client: &http.Client{
			// Loopback only: no proxy from the environment.
			Transport: &http.Transport{Proxy: nil, DisableCompression: true},
			Timeout:   10 * time.Second,
		},
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("mailpit output:\n%s", s.output.String())
		}
	})

	// Another process may take a port between the moment the system picks
	// it and the moment Mailpit listens on it; then Mailpit exits and we
	// try again with other ports.
	began := time.Now()
	for attempt := 1; ; attempt++ {
		smtpAddr, httpAddr, err := freeAddrs()
		if err != nil {
			t.Fatalf("mailpit: pick ports: %v", err)
		}
		s.smtpAddr, s.apiURL = smtpAddr, "http://"+httpAddr
		err = s.launch()
		if err == nil {
			t.Logf("mailpit: SMTP on %s, API on %s, ready in %v", s.smtpAddr, s.apiURL, time.Since(began).Round(time.Millisecond))
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == 5 {
			t.Fatalf("mailpit: %v", err)
		}
	}
}

// errAddrInUse reports that Mailpit exited because a port was taken.
var errAddrInUse = errors.New("a port was taken")

// launch runs the binary and waits until it answers on both ports. On
// failure the process is stopped.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	cmd.Env = environ()
	mark := s.output.Len()
	p, err := child.Start(cmd, &s.output)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	err = p.WaitReady(time.Now().Add(startTimeout), s.ready)
	if err == nil {
		return nil
	}
	s.stop()
	if strings.Contains(s.output.String()[mark:], "address already in use") {
		return errAddrInUse
	}
	// The cleanup in Start shows the output.
	return fmt.Errorf("%s with SMTP on %s and the API on %s: %v", s.bin, s.smtpAddr, s.apiURL, err)
}

// args are Mailpit's flags.
func (s *Server) args() []string {
	return []string{
		"--listen", strings.TrimPrefix(s.apiURL, "http://"),
		"--smtp", s.smtpAddr,
		// An empty store of its own, kept across Restart.
		"--database", s.db,
		// Keep every message: by default Mailpit prunes beyond 500.
		"--max", "0",
		// Any login, or none, over plain TCP, so that tests can use a
		// username and a password without certificates.
		"--smtp-auth-accept-any",
		"--smtp-auth-allow-insecure",
		// Nothing beyond loopback: no check for a newer release, no reverse
		// DNS lookup of the client.
		"--disable-version-check",
		"--smtp-disable-rdns",
	}
}

// environ is the test's environment without Mailpit's MP_ settings, which
// would change how it runs.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MP_") {
			env = append(env, kv)
		}
	}
	return env
}

// ready reports whether this Mailpit answers on both ports. The API must
// name our database, so that another Mailpit that took the port does not
// pass for ours.
func (s *Server) ready() bool {
	res, err := s.client.Get(s.apiURL + "/api/v1/info")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var info struct{ Database string }
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&info) != nil || info.Database != s.db {
		return false
	}
	c, err := net.DialTimeout("tcp", s.smtpAddr, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 ") {
		return false
	}
	_, _ = io.WriteString(c, "QUIT\r\n")
	return true
}

// freeAddrs returns two loopback addresses on ports that were free a
// moment ago, and differ.
func freeAddrs() (string, string, error) {
	ports, err := child.FreePorts(2)
	if err != nil {
		return "", "", err
	}
	return "127.0.0.1:" + strconv.Itoa(ports[0]), "127.0.0.1:" + strconv.Itoa(ports[1]), nil
}

// SMTPAddr is the SMTP server's host:port.
func (s *Server) SMTPAddr() string { return s.smtpAddr }

// APIURL is the base URL of the HTTP API, without a trailing slash.
func (s *Server) APIURL() string { return s.apiURL }

// Stop kills Mailpit and waits for it to exit, so that tests can show what
// happens when the SMTP server is down. Stopping it again does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stop()
}

func (s *Server) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.Kill()
	s.client.CloseIdleConnections()
}

// Restart stops Mailpit if it runs and starts it again on the same ports
// with the same database, so the messages it kept are still there. It
// fails the test if a port has been taken meanwhile.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.launch(); err != nil {
		t.Fatalf("mailpit: restart: %v", err)
	}
}

// Messages lists the messages Mailpit holds, oldest first.
func (s *Server) Messages(t testing.TB) []Summary {
	t.Helper()
	list, err := s.messages()
	if err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	return list
}

func (s *Server) messages() ([]Summary, error) {
	const limit = 250
	var all []Summary
	for {
		var page struct {
			Total    int
			Messages []Summary
		}
		q := url.Values{"start": {strconv.Itoa(len(all))}, "limit": {strconv.Itoa(limit)}}
		if err := s.get("/api/v1/messages?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if len(page.Messages) == 0 || len(all) >= page.Total {
			break
		}
	}
	// Mailpit lists the newest first.
	slices.Reverse(all)
	return all, nil
}

// WaitMessages waits until Mailpit holds at least n messages and returns
// them, oldest first. It fails the test when they are not there in time.
func (s *Server) WaitMessages(t testing.TB, n int, timeout time.Duration) []Summary {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		t.Fatalf("mailpit: waiting for %d messages while Mailpit is stopped", n)
	}
	var (
		list    []Summary
		lastErr error
	)
	err := p.WaitReady(time.Now().Add(timeout), func() bool {
		list, lastErr = s.messages()
		return lastErr == nil && len(list) >= n
	})
	if err != nil {
		if lastErr != nil {
			t.Fatalf("mailpit: waiting for %d messages: %v", n, lastErr)
		}
		var got strings.Builder
		for _, m := range list {
			fmt.Fprintf(&got, "\n  %s to %v: %q", m.From.Address, addresses(m.To), m.Subject)
		}
		t.Fatalf("mailpit: %d messages after %v (%v), want at least %d:%s", len(list), timeout, err, n, got.String())
	}
	return list
}

func addresses(list []Address) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

// Message returns the message with Mailpit's ID id.
func (s *Server) Message(t testing.TB, id string) Message {
	t.Helper()
	var m Message
	if err := s.get("/api/v1/message/"+url.PathEscape(id), &m); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	if err := s.get("/api/v1/message/"+url.PathEscape(id)+"/headers", &m.Header); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	return m
}

// Raw returns the message with Mailpit's ID id as it was received, with
// the Received and Return-Path fields Mailpit adds.
func (s *Server) Raw(t testing.TB, id string) []byte {
	t.Helper()
	body, err := s.do(http.MethodGet, "/api/v1/message/"+url.PathEscape(id)+"/raw")
	if err != nil {
		t.Fatalf("mailpit: %v", err)
	}
	return body
}

// DeleteAll deletes every message.
func (s *Server) DeleteAll(t testing.TB) {
	t.Helper()
	if _, err := s.do(http.MethodDelete, "/api/v1/messages"); err != nil {
		t.Fatalf("mailpit: %v", err)
	}
}

// get decodes the JSON answer to GET path into v.
func (s *Server) get(path string, v any) error {
	body, err := s.do(http.MethodGet, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	return nil
}

// do sends a request to the API and returns the body of a 200 answer.
func (s *Server) do(method, path string) ([]byte, error) {
	req, err := http.NewRequest(method, s.apiURL+path, nil)
	if err != nil {
		return nil, err
	}
	res, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", method, path, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, res.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// links matches http and https URLs up to a space, a quote, an angle
// bracket or a parenthesis.
var links = regexp.MustCompile(`https?://[^\s"'<>()]+`)

// Links returns the http and https URLs in a message body, each once, in
// the order they first appear. Punctuation that ends a sentence is not
// part of a URL. The URLs are returned as written: in an HTML body, decode
// entities such as &amp; with html.UnescapeString.
func Links(text string) []string {
	var out []string
	for _, l := range links.FindAllString(text, -1) {
		l = strings.TrimRight(l, ".,;:!?")
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// binary finds mailpit: $MAILPIT_BIN, the Go bin directory, or PATH.
// Without it the test fails in CI and is skipped elsewhere.
func binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("MAILPIT_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("MAILPIT_BIN=%s: %v", bin, err)
		}
		return bin
	}
	for _, dir := range goBinDirs() {
		bin := filepath.Join(dir, "mailpit")
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() {
			return bin
		}
	}
	if bin, err := exec.LookPath("mailpit"); err == nil {
		return bin
	}
	msg := "mailpit not found; install it with scripts/tools.sh go, or: go install github.com/axllent/mailpit@" + version
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// goBinDirs are where go install puts binaries: GOBIN if set, else the
// bin directory of each GOPATH entry. It asks the go command once.
var goBinDirs = sync.OnceValue(func() []string {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return nil
	}
	lines := strings.Split(string(out), "\n")
	if gobin := strings.TrimSpace(lines[0]); gobin != "" {
		return []string{gobin}
	}
	var dirs []string
	if len(lines) > 1 {
		for _, p := range filepath.SplitList(strings.TrimSpace(lines[1])) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return dirs
})
