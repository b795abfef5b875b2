// Package caddyrun runs a real Caddy binary, built with the paywall plugin,
// for end-to-end tests: on loopback ports chosen at run time, with its
// storage, config and home in the test's temporary directory, so a test
// never touches the machine's own Caddy state.
//
// A Caddyfile given to Start, Validate or Adapt may use these placeholders,
// replaced as plain text before Caddy reads the file:
//
//	{{.HTTPPort}}   a free loopback port for plain-HTTP sites (also Caddy's http_port)
//	{{.HTTPSPort}}  another free port, given to Caddy as https_port
//	{{.AdminPort}}  the admin API's port
//	{{.Dir}}        the instance's private directory
//
// The harness puts its own global options first: the admin API on
// 127.0.0.1:{{.AdminPort}}, default_bind 127.0.0.1, http_port, https_port,
// auto_https off, skip_install_trust, persist_config off and storage
// file_system under {{.Dir}}. A Caddyfile that opens with its own
// global options block gets them added to it, except the options it sets
// itself. Sites are then addressed as http://127.0.0.1:{{.HTTPPort}} (or
// :{{.HTTPPort}}, or any http:// address without a port); Start waits for
// that port, so a Caddyfile given to it must serve something there.
package caddyrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-paywall/paywall/internal/child"
)

// StartTimeout bounds how long Start waits for Caddy to answer.
var StartTimeout = 60 * time.Second

// StopTimeout bounds how long Stop waits after SIGINT before it kills.
var StopTimeout = 15 * time.Second

// Instance is a running Caddy process.
type Instance struct {
	// Ports chosen for this instance.
	HTTPPort, HTTPSPort, AdminPort int
	// Dir is the instance's private directory: HOME, XDG dirs, storage and
	// the Caddyfile live here.
	Dir string
	// ConfigFile is the Caddyfile as Caddy read it, placeholders replaced.
	ConfigFile string

	cmd      *exec.Cmd
	logs     *child.Output
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// URL is the base URL of plain-HTTP sites: http://127.0.0.1:<HTTPPort>.
func (i *Instance) URL() string { return "http://127.0.0.1:" + strconv.Itoa(i.HTTPPort) }

// AdminURL is the base URL of the admin API: http://127.0.0.1:<AdminPort>.
func (i *Instance) AdminURL() string { return "http://127.0.0.1:" + strconv.Itoa(i.AdminPort) }

// Logs returns everything Caddy wrote to stdout and stderr so far.
func (i *Instance) Logs() string { return i.logs.String() }

// WaitLogs reports whether Caddy's output contains s within timeout. The
// output reaches Logs through a pipe, a moment after Caddy wrote it: a test
// that checks for a line right after the request that logs it waits here.
func (i *Instance) WaitLogs(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(i.logs.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // another process's output, through a pipe
	}
	return true
}

// Exited is closed when the process has ended.
func (i *Instance) Exited() <-chan struct{} { return i.exited }

// Stop ends the process: SIGINT, then SIGKILL after StopTimeout. It is
// called by the test's cleanup; calling it earlier is allowed.
func (i *Instance) Stop() {
	i.stopOnce.Do(func() {
		select {
		case <-i.exited:
			return
		default:
		}
		_ = i.cmd.Process.Signal(os.Interrupt)
		t := time.NewTimer(StopTimeout)
		defer t.Stop()
		select {
		case <-i.exited:
		case <-t.C:
			_ = i.cmd.Process.Kill()
			<-i.exited
		}
	})
}

// Start writes caddyfile into a new private directory, runs
// `caddy run --config <file> --adapter caddyfile` with env added to the
// environment, and returns once the admin API answers and the HTTP port
// accepts connections. The process is stopped when the test ends; its
// output is logged if the test failed. A port taken between choosing and
// binding it is retried with new ports.
func Start(t testing.TB, caddyfile string, env map[string]string) *Instance {
	t.Helper()
	bin := Binary(t)
	const attempts = 3
	for attempt := 1; ; attempt++ {
		inst, err := start(t, bin, caddyfile, env)
		if err == nil {
			return inst
		}
		if errors.Is(err, errPortTaken) && attempt < attempts {
			t.Logf("caddyrun: %v; retrying with other ports", err)
			continue
		}
		t.Fatalf("caddyrun: %v", err)
	}
}

// installingTrust is what Caddy logs when it adds its local root to the
// machine's trust store, which a test must never do.
const installingTrust = "installing root certificate"

var errPortTaken = errors.New("a chosen port was taken before Caddy bound it")

func start(t testing.TB, bin, caddyfile string, env map[string]string) (*Instance, error) {
	dir := privateDir(t)
	ports, err := child.FreePorts(3)
	if err != nil {
		return nil, err
	}
	inst := &Instance{
		HTTPPort:  ports[0],
		HTTPSPort: ports[1],
		AdminPort: ports[2],
		Dir:       dir,
		logs:      &child.Output{},
		exited:    make(chan struct{}),
	}
	inst.ConfigFile, err = writeCaddyfile(dir, caddyfile, inst.HTTPPort, inst.HTTPSPort, inst.AdminPort)
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(bin, "run", "--config", inst.ConfigFile, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = environ(dir, env)
	cmd.Stdout = inst.logs
	cmd.Stderr = inst.logs
	// Its own process group, so a ^C in the terminal reaches the test
	// first and Caddy is stopped by the cleanup, in order; killed by the
	// kernel if the test binary dies without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	child.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", bin, err)
	}
	inst.cmd = cmd
	go func() {
		inst.waitErr = cmd.Wait()
		close(inst.exited)
	}()
	t.Cleanup(func() {
		inst.Stop()
		if strings.Contains(inst.Logs(), installingTrust) {
			t.Errorf("caddyrun: Caddy installed a root certificate into the system trust store; give the site `tls internal` and skip_install_trust, or no TLS")
		}
		if t.Failed() {
			t.Logf("caddy output (%s):\n%s", inst.ConfigFile, inst.Logs())
		}
	})

	if err := inst.waitReady(); err != nil {
		inst.Stop()
		logs := inst.Logs()
		if strings.Contains(logs, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, fmt.Errorf("%v\ncaddy output:\n%s", err, logs)
	}
	return inst, nil
}

// waitReady polls the admin API and the HTTP port until both answer, the
// process exits, or StartTimeout passes.
func (i *Instance) waitReady() error {
	deadline := time.Now().Add(StartTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	// Caddy logs each admin request: poll often at first, then less.
	wait := 10 * time.Millisecond
	for {
		err := i.ready(client)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy not ready after %s: %v", StartTimeout, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-i.exited:
			t.Stop()
			return fmt.Errorf("caddy exited before it was ready: %v", i.waitErr)
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

func (i *Instance) ready(client *http.Client) error {
	res, err := client.Get(i.AdminURL() + "/config/")
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API answered %s", res.Status)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(i.HTTPPort)), time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// Adapt runs `caddy adapt` on caddyfile (placeholders replaced, the
// harness's global options added) and returns the JSON it prints.
func Adapt(t testing.TB, caddyfile string) string {
	t.Helper()
	out, stderr, err := runCommand(t, "adapt", caddyfile, nil)
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s%s", err, out, stderr)
	}
	return out
}

// Validate runs `caddy validate` on caddyfile, with env added to the
// environment, and returns its combined output and whether it failed.
func Validate(t testing.TB, caddyfile string, env map[string]string) (string, error) {
	t.Helper()
	out, stderr, err := runCommand(t, "validate", caddyfile, env)
	return out + stderr, err
}

func runCommand(t testing.TB, verb, caddyfile string, env map[string]string) (stdout, stderr string, err error) {
	t.Helper()
	bin := Binary(t)
	dir := privateDir(t)
	ports, err := child.FreePorts(3)
	if err != nil {
		t.Fatalf("caddyrun: %v", err)
	}
	file, err := writeCaddyfile(dir, caddyfile, ports[0], ports[1], ports[2])
	if err != nil {
		t.Fatalf("caddyrun: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, verb, "--config", file, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = environ(dir, env)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// privateDir makes the directory an instance keeps all its state in.
func privateDir(t testing.TB) string {
	dir := t.TempDir()
	for _, sub := range []string{"home", "data", "config", "storage"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatalf("caddyrun: %v", err)
		}
	}
	return dir
}

// environ is the process environment without anything that would point
// Caddy at the machine's own state, plus the private dirs and env.
func environ(dir string, env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "CADDY"):
			continue
		}
		if _, ok := env[k]; ok {
			continue
		}
		out = append(out,
			kv)
	}
	out = append(out,
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// writeCaddyfile replaces the placeholders, adds the harness's global
// options and writes the result to dir/Caddyfile.
func writeCaddyfile(dir, caddyfile string, httpPort, httpsPort, adminPort int) (string, error) {
	text := expand(caddyfile, dir, httpPort, httpsPort, adminPort)
	text = withGlobals(text, dir, httpPort, httpsPort, adminPort)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return "", err
	}
	return file, nil
}

func expand(s, dir string, httpPort, httpsPort, adminPort int) string {
	return strings.NewReplacer(
		"{{.HTTPPort}}", strconv.Itoa(httpPort),
		"{{.HTTPSPort}}", strconv.Itoa(httpsPort),
		"{{.AdminPort}}", strconv.Itoa(adminPort),
		"{{.Dir}}", dir,
	).Replace(s)
}

// withGlobals puts the harness's global options into the Caddyfile's
// global options block, or adds such a block, leaving out any option the
// Caddyfile sets itself.
func withGlobals(text, dir string, httpPort, httpsPort, adminPort int) string {
	defaults := []struct{ name, line string }{
		{"admin", "admin 127.0.0.1:" + strconv.Itoa(adminPort)},
		{"default_bind", "default_bind 127.0.0.1"},
		{"http_port", "http_port " + strconv.Itoa(httpPort)},
		{"https_port", "https_port " + strconv.Itoa(httpsPort)},
		{"auto_https", "auto_https off"},
		// No local_certs: with auto_https off, Caddy 2.11 ignores
		// skip_install_trust for it and puts a root into the system trust
		// store. A site with `tls internal` is covered.
		{"skip_install_trust", "skip_install_trust"},
		{"persist_config", "persist_config off"},
		{"storage", "storage file_system " + quote(filepath.Join(dir, "storage"))},
	}
	trimmed := strings.TrimLeft(text, " \t\r\n")
	var own string
	var rest string
	if strings.HasPrefix(trimmed, "{") {
		end := globalBlockEnd(trimmed)
		if end > 0 {
			own = trimmed[1:end]
			rest = trimmed[end+1:]
		} else {
			rest = trimmed
		}
	} else {
		rest = text
	}
	var b strings.Builder
	b.WriteString("{\n")
	for _, d := range defaults {
		if !setsOption(own, d.name) {
			b.WriteString("\t" + d.line + "\n")
		}
	}
	if own != "" {
		b.WriteString(strings.Trim(own, "\n") + "\n")
	}
	b.WriteString("}\n")
	b.WriteString(rest)
	return b.String()
}

// globalBlockEnd returns the index of the brace that closes the block
// opening at text[0], or -1.
func globalBlockEnd(text string) int {
	depth := 0
	inQuote := false
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// setsOption reports whether a global options block sets name at its top
// level (a line that starts with the name).
func setsOption(block, name string) bool {
	for _, line := range strings.Split(block, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func quote(s string) string {
	if strings.ContainsAny(s, " \t\"{}") {
		return strconv.Quote(s)
	}
	return s
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Binary returns the Caddy binary to test: $CADDY_BIN when set, or else
// ./cmd/caddy of the plugin's module (see PluginRoot), built once per test
// process with `go build` into a temporary directory (the same directory
// for every process, so repeated runs do not pile up copies).
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("caddyrun: CADDY_BIN=%s: %v (run `make caddy`, or unset CADDY_BIN to build ./cmd/caddy)", bin, err)
		}
		return bin
	}
	buildOnce.Do(func() { builtBin, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("caddyrun: %v", buildErr)
	}
	return builtBin
}

func build() (string, error) {
	root, err := PluginRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "caddyrun-"+shortHash(root))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// A name of its own per process: another process may be running the
	// binary a previous one built.
	bin := filepath.Join(dir, "caddy-"+strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/caddy in %s: %v\n%s", root, err, out)
	}
	removeStale(dir, bin)
	return bin, nil
}

// removeStale deletes binaries left by earlier test processes that have
// ended.
func removeStale(dir, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		pid, err := strconv.Atoi(strings.TrimPrefix(name, "caddy-"))
		if path == keep || err != nil || !strings.HasPrefix(name, "caddy-") {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil && p.Signal(syscall.Signal(0)) == nil {
			continue // still running
		}
		_ = os.Remove(path)
	}
}

// goTool is the go command. go test puts its own GOROOT's bin first in
// the test's PATH, so this is the go that runs the tests.
func goTool() string {
	return "go"
}

// pluginModule is the module whose ./cmd/caddy Binary builds.
const pluginModule = "github.com/caddy-paywall/paywall"

// PluginRoot returns the directory of the plugin's module, the one that
// holds cmd/caddy, as the go command sees it from the current directory
// (go test runs a test in its package's directory): the main module
// itself, or, from a module that requires it (e2e/), its replacement.
// Failing that, it is the directory two levels above this file.
func PluginRoot() (string, error) {
	if out, err := exec.Command(goTool(), "list", "-m", "-f", "{{.Dir}}", pluginModule).Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" && fileExists(filepath.Join(dir, "cmd", "caddy")) {
			return dir, nil
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "cmd", "caddy")) {
			return dir, nil
		}
	}
	return "", errors.New("cannot find the plugin's module (" + pluginModule + ") and its cmd/caddy")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func shortHash(s string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return strconv.FormatUint(uint64(h), 36)
}
