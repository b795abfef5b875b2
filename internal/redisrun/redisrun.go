// Package redisrun runs a real redis-server on loopback for the tests of
// what the paywall keeps in Redis, so that they meet Redis's own answers,
// and its absence when a test kills it.
//
// Start finds redis-server (scripts/tools.sh redis installs it), runs it
// on a port the system picks, with nothing saved to disk, and stops it
// when the test ends.
package redisrun

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/child"
)

// startTimeout bounds how long Start and Restart wait for Redis to answer.
const startTimeout = 30 * time.Second

// stopTimeout bounds how long Stop waits for Redis to shut down on SIGTERM
// before it kills it.
const stopTimeout = 10 * time.Second

// Server is a running redis-server. Kill and Stop may be called from any
// goroutine, so that a test can kill Redis while its load runs; Start and
// Restart fail the test, so call them from the test's goroutine.
type Server struct {
	bin    string
	dir    string // working directory; nothing is written there but Redis wants one
	port   int
	addr   string
	output child.Output // what every run of Redis wrote, for failures

	mu   sync.Mutex
	proc *child.Process // nil while stopped
}

// Start runs redis-server for the test and stops it when the test ends.
// Without the binary it fails the test: CI must run these tests, not skip
// them.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	// First, so that it is removed after the cleanup below stops Redis.
	dir := t.TempDir()
	s := &Server{bin: bin, dir: dir}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", s.output.String())
		}
	})

	// Another process may take the port between the moment the system
	// picks it and the moment Redis listens on it; then Redis exits and we
	// try again with another port.
	began := time.Now()
	for attempt := 1; ; attempt++ {
		ports, err := child.FreePorts(1)
		if err != nil {
			t.Fatalf("redis: pick a port: %v", err)
		}
		s.port = ports[0]
		s.addr = "127.0.0.1:" + strconv.Itoa(s.port)
		err = s.launch()
		if err == nil {
			t.Logf("redis: %s on %s, ready in %v", s.bin, s.addr, time.Since(began).Round(time.Millisecond))
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == 5 {
			t.Fatalf("redis: %v", err)
		}
	}
}

// errAddrInUse reports that Redis exited because its port was taken.
var errAddrInUse = errors.New("the port was taken")

// launch runs the binary and waits until it answers PING. On failure the
// process is stopped.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	mark := s.output.Len()
	p, err := child.Start(cmd, &s.output)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	err = p.WaitReady(time.Now().Add(startTimeout), func() bool { return s.ready(cmd.Process.Pid) })
	if err == nil {
		return nil
	}
	s.halt(syscall.SIGKILL)
	if strings.Contains(strings.ToLower(s.output.String()[mark:]), "address already in use") {
		return errAddrInUse
	}
	// The cleanup in Start shows the output.
	return fmt.Errorf("%s on %s: %v", s.bin, s.addr, err)
}

// args are redis-server's options; with no configuration file, the rest
// are Redis's defaults.
func (s *Server) args() []string {
	return []string{
		"--port", strconv.Itoa(s.port),
		// Loopback only. Protected mode, on by default, refuses only
		// clients from elsewhere, so it stays on.
		"--bind", "127.0.0.1",
		// Nothing on disk: every run starts empty, and a killed Redis
		// comes back empty, as one without persistence would.
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		// In the foreground, logging to stdout, so that the output shows
		// on failure and the process is the one we wait for.
		"--daemonize", "no",
		"--logfile", "",
	}
}

// ready reports whether this Redis answers PING. INFO must name our
// process, so that another Redis that took the port does not pass for
// ours.
func (s *Server) ready(pid int) bool {
	c, err := net.DialTimeout("tcp", s.addr, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "PING\r\nINFO server\r\n"); err != nil {
		return false
	}
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		return false
	}
	info, err := readBulk(r)
	return err == nil && strings.Contains(info, "\r\nprocess_id:"+strconv.Itoa(pid)+"\r\n")
}

// readBulk reads a RESP bulk string.
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "$") {
		return "", fmt.Errorf("want a bulk string, got %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(line[1:], "\r\n"))
	if err != nil || n < 0 {
		return "", fmt.Errorf("bad bulk string length %q", line)
	}
	buf := make([]byte, n+2) // and its CRLF
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the server's address as a Redis URL, database 0.
func (s *Server) URL() string { return "redis://" + s.addr + "/0" }

// Kill kills Redis with SIGKILL, as a crash would, and waits for it to
// exit. The port stays the server's, for Restart; until then connections
// to it are refused. Killing it again does nothing.
func (s *Server) Kill() { s.halt(syscall.SIGKILL) }

// Stop shuts Redis down with SIGTERM, and kills it if it has not exited
// within stopTimeout. Stopping it again does nothing; Restart starts it
// again.
func (s *Server) Stop() { s.halt(syscall.SIGTERM) }

// halt sends sig to the running process, if any, and waits for it to exit.
func (s *Server) halt(sig os.Signal) {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	if sig != syscall.SIGKILL && p.Cmd.Process.Signal(sig) == nil {
		select {
		case <-p.Exited():
			return
		case <-time.After(stopTimeout):
		}
	}
	p.Kill()
}

// Restart kills Redis if it runs and starts it again on the same port,
// empty, and waits until it answers PING. It fails the test if the port
// has been taken meanwhile.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		t.Fatalf("redis: restart: %v", err)
	}
}

// binary finds redis-server: in PATH, else where Debian's package puts
// it. Without it the test fails.
func binary(t testing.TB) string {
	t.Helper()
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return bin
	}
	for _, bin := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() {
			return bin
		}
	}
	t.Fatal("redis-server not found; scripts/tools.sh redis installs it")
	return ""
}
