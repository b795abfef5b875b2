package redisrun

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// do sends one inline command to Redis and returns the first line of its
// answer, without the CRLF.
func do(t *testing.T, addr, command string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, command+"\r\n"); err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if got := do(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING: %q, want +PONG", got)
	}
	if got := do(t, s.Addr(), "SET k v"); got != "+OK" {
		t.Fatalf("SET: %q, want +OK", got)
	}

	s.Kill()
	// Kill waited for the exit, so nothing listens on the port any more.
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s after Kill: connected", s.Addr())
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s after Kill: %v, want connection refused", s.Addr(), err)
	}
	s.Kill() // again: nothing to do

	addr := s.Addr()
	s.Restart(t)
	if s.Addr() != addr {
		t.Errorf("Addr() = %q after Restart, want %q", s.Addr(), addr)
	}
	if got := do(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING after Restart: %q, want +PONG", got)
	}
	// Nothing is saved, so Redis comes back empty.
	if got := do(t, s.Addr(), "EXISTS k"); got != ":0" {
		t.Errorf("EXISTS k after Restart: %q, want :0", got)
	}

	s.Stop()
	if c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s after Stop: connected", s.Addr())
	}
	s.Stop() // again: nothing to do
}
