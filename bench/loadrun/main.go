// Command loadrun is the load run of `make bench`: one real Caddy built with
// the paywall, three sites on loopback, and wrk against each in turn.
//
//	(a) respond "hello" 200, ungated
//	(b) the same behind paywall, with an entitled visitor's cookie
//	(c) the same behind forward_auth to bench/authsvc, a minimal external
//	    service that only checks the same cookie's HMAC
//
// The fake Stripe runs in this process, on loopback. The visitor's cookie is
// minted the way a visitor gets one: the paywall's checkout on site (b), the
// fake's checkout completed with a test card, then the paywall's success
// endpoint. Every wrk run sends that cookie, to all three sites alike.
//
// Rounds alternate the three sites (a b c, b c a, c a b, …); the report gives
// medians over rounds, the ratios b/a and b/c of the median throughputs and
// the medians of the per-round ratios. With two or more CPUs and taskset,
// Caddy and authsvc share CPU 0 and wrk runs on CPU 1.
//
//	go run ./bench/loadrun -caddy bin/caddy -authsvc /tmp/authsvc
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-paywall/paywall/internal/child"
	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// cookieSecret signs the visitor cookie; paywall and authsvc both know it.
// A benchmark value, never a real secret.
const cookieSecret = "loadrun-cookie-secret-0123456789abcdef"

// paywallExtra is a line added to site (b)'s paywall block.
var paywallExtra string

type options struct {
	caddy, authsvc     string
	rounds             int
	duration, warmup   time.Duration
	conns, threads     int
	pin                bool
	markdown, jsonPath string
	pprof              string
}

type variant struct {
	key, name string
	port      int
}

type result struct {
	Variant  string  `json:"variant"`
	Round    int     `json:"round"`
	RPS      float64 `json:"requests_per_second"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Requests int64   `json:"requests"`
	Non2xx   int64   `json:"non_2xx"`
	// CPU time the server side (Caddy, and authsvc for c) spent per
	// request, and its share of the run's wall time.
	CPUPerReq float64 `json:"server_cpu_us_per_request"`
	CPUShare  float64 `json:"server_cpu_share"`
}

func main() {
	var o options
	flag.StringVar(&o.caddy, "caddy", "bin/caddy", "Caddy binary built with the paywall")
	flag.StringVar(&o.authsvc, "authsvc", "", "bench/authsvc binary (default: go build it)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs wrk once against every site")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one wrk run")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up wrk run per site before the rounds")
	flag.IntVar(&o.conns, "c", 64, "wrk connections")
	flag.IntVar(&o.threads, "t", 0, "wrk threads (default: 1 when pinned to one CPU, else 2)")
	flag.BoolVar(&o.pin, "pin", true, "pin Caddy and authsvc to CPU 0 and wrk to CPU 1 with taskset, when possible")
	flag.StringVar(&o.markdown, "markdown", "", "also write the report here, as Markdown")
	flag.StringVar(&o.jsonPath, "json", "", "also write every run here, as JSON")
	flag.StringVar(&paywallExtra, "paywall-extra", "", "one more line for site (b)'s paywall block, e.g. \"cache_control off\"")
	flag.StringVar(&o.pprof, "pprof", "", "after the rounds, profile Caddy's CPU during one more run of each site and write the profiles into this folder")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("loadrun: ")
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New("wrk is not installed (scripts/tools.sh bench installs it)")
	}
	taskset, _ := exec.LookPath("taskset")
	pinned := o.pin && taskset != "" && runtime.NumCPU() >= 2
	if o.threads == 0 {
		o.threads = 2
		if pinned {
			o.threads = 1
		}
	}
	dir, err := os.MkdirTemp("", "paywall-loadrun-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	if o.authsvc == "" {
		o.authsvc = filepath.Join(dir, "authsvc")
		if out, err := exec.Command("go", "build", "-o", o.authsvc, "./bench/authsvc").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./bench/authsvc: %v\n%s", err, out)
		}
	}

	// The fake Stripe, in this process, on loopback.
	fake := stripefake.New(stripefake.Options{})
	if err := fake.Start(); err != nil {
		return err
	}
	defer fake.Close()

	ports, err := child.FreePorts(5)
	if err != nil {
		return err
	}
	sites := []variant{
		{"a", "respond (ungated)", ports[0]},
		{"b", "paywall", ports[1]},
		{"c", "forward_auth", ports[2]},
	}
	svcAddr := fmt.Sprintf("127.0.0.1:%d", ports[3])

	pin := func(cpu string, argv ...string) []string {
		if !pinned {
			return argv
		}
		return append([]string{taskset, "-c", cpu}, argv...)
	}
	svc, err := start(dir, "authsvc", pin("0", o.authsvc, "-addr", svcAddr), "AUTHSVC_COOKIE_SECRET="+cookieSecret)
	if err != nil {
		return err
	}
	defer svc.stop()

	caddyfile := filepath.Join(dir, "Caddyfile")
	admin := "off"
	if o.pprof != "" {
		admin = fmt.Sprintf("127.0.0.1:%d", ports[4])
	}
	if err := os.WriteFile(caddyfile, []byte(caddyConfig(dir, admin, sites, svcAddr, fake.URL())), 0o600); err != nil {
		return err
	}
	caddy, err := start(dir, "caddy", pin("0", o.caddy, "run", "--config", caddyfile, "--adapter", "caddyfile"))
	if err != nil {
		return err
	}
	defer caddy.stop()
	for _, s := range append(sites, variant{port: ports[3]}) {
		if err := waitListening(s.port, 30*time.Second, caddy, svc); err != nil {
			return err
		}
	}

	cookie, err := subscribe(fake, sites[1].port)
	if err != nil {
		return fmt.Errorf("minting the visitor cookie through checkout: %v", err)
	}
	if err := check(sites, cookie); err != nil {
		return err
	}
	version, _ := exec.Command(o.caddy, "version").Output()
	readsBefore := fake.Calls("GET /v1/subscriptions")
	loadBefore := loadavg()

	wrkRun := func(s variant, d time.Duration) (result, error) {
		argv := pin("1", wrk, "-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.conns),
			"-d", fmt.Sprintf("%ds", int(math.Max(1, d.Seconds()))), "--latency",
			"-H", "Cookie: "+cookie, fmt.Sprintf("http://127.0.0.1:%d/", s.port))
		server := []*process{caddy}
		if s.key == "c" {
			server = append(server, svc)
		}
		cpu0 := cpuTime(server...)
		t0 := time.Now()
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
		}
		cpu, wall := cpuTime(server...)-cpu0, time.Since(t0)
		r, err := parseWrk(string(out))
		if err != nil {
			return result{}, fmt.Errorf("%v in wrk's output:\n%s", err, out)
		}
		r.Variant = s.key
		if r.Requests > 0 {
			r.CPUPerReq = float64(cpu.Microseconds()) / float64(r.Requests)
		}
		r.CPUShare = cpu.Seconds() / wall.Seconds()
		if r.Non2xx > 0 {
			return r, fmt.Errorf("site %s (%s): %d responses were not 2xx", s.key, s.name, r.Non2xx)
		}
		return r, nil
	}

	fmt.Printf("Caddy %s", version)
	fmt.Printf("pinning: %s; wrk -t%d -c%d -d%s --latency; %d rounds\n", pinning(pinned), o.threads, o.conns, o.duration, o.rounds)
	for _, s := range sites {
		if _, err := wrkRun(s, o.warmup); err != nil {
			return err
		}
	}
	var all []result
	for round := 1; round <= o.rounds; round++ {
		line := fmt.Sprintf("round %d:", round)
		for i := range sites {
			s := sites[(i+round-1)%len(sites)]
			r, err := wrkRun(s, o.duration)
			if err != nil {
				return err
			}
			r.Round = round
			all = append(all, r)
			line += fmt.Sprintf("  %s %6.0f req/s p99 %6.2fms %5.1fµs cpu/req", s.key, r.RPS, r.P99, r.CPUPerReq)
		}
		fmt.Println(line)
	}
	reads := fake.Calls("GET /v1/subscriptions") - readsBefore
	rss := caddy.rss()

	if o.pprof != "" {
		if err := os.MkdirAll(o.pprof, 0o755); err != nil {
			return err
		}
		for _, s := range sites {
			got := make(chan error, 1)
			file := filepath.Join(o.pprof, "caddy-"+s.key+".pprof")
			secs := int(o.duration.Seconds()) - 2
			go func() {
				got <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs), file)
			}()
			if _, err := wrkRun(s, o.duration); err != nil {
				return err
			}
			if err := <-got; err != nil {
				return fmt.Errorf("profile of site %s: %v", s.key, err)
			}
			fmt.Printf("CPU profile of Caddy serving site %s: %s\n", s.key, file)
		}
	}

	rep := report(all, sites, o, pinned, strings.TrimSpace(string(version)), reads, rss, loadBefore, loadavg())
	fmt.Print(rep)
	if o.markdown != "" {
		if err := os.WriteFile(o.markdown, []byte(rep), 0o644); err != nil {
			return err
		}
	}
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func caddyConfig(dir, admin string, sites []variant, svcAddr, stripeURL string) string {
	return fmt.Sprintf(`{
	admin %[9]s
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	storage file_system %[1]s/storage
	log {
		level WARN
	}
}

http://127.0.0.1:%[2]d {
	respond "hello" 200
}

http://127.0.0.1:%[3]d {
	paywall {
		secret_key sk_test_loadrun_0123456789
		price %[6]s
		cookie_secret %[7]s
		api_url %[5]s
		cache_ttl 1h
		%[10]s
	}
	respond "hello" 200
}

http://127.0.0.1:%[4]d {
	forward_auth %[8]s {
		uri /check
	}
	respond "hello" 200
}
`, dir, sites[0].port, sites[1].port, sites[2].port, stripeURL, stripefake.DefaultPrice.ID, cookieSecret, svcAddr, admin, paywallExtra)
}

// subscribe goes through the paywall's checkout on the site at port and
// returns the Cookie header value of the new subscriber.
func subscribe(fake *stripefake.Server, port int) (string, error) {
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(base + "/paywall/checkout?return=%2F")
	if err != nil {
		return "", err
	}
	drain(resp)
	if resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("checkout answered %d, want 303", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	if err := fake.CompleteCheckout(id, stripefake.CardSuccess); err != nil {
		return "", fmt.Errorf("completing checkout %q: %v", id, err)
	}
	sess, ok := fake.Session(id)
	if !ok {
		return "", fmt.Errorf("no checkout session %q", id)
	}
	success := strings.ReplaceAll(sess.SuccessURL, "{CHECKOUT_SESSION_ID}", sess.ID)
	resp, err = c.Get(success)
	if err != nil {
		return "", err
	}
	drain(resp)
	if resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("success answered %d, want 303", resp.StatusCode)
	}
	u, _ := url.Parse(base)
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "paywall" {
			return ck.Name + "=" + ck.Value, nil
		}
	}
	return "", errors.New("success set no paywall cookie")
}

// check makes sure each site answers what it should with and without the
// cookie, so that the load run measures what it claims to.
func check(sites []variant, cookie string) error {
	want := map[string][2]int{"a": {200, 200}, "b": {200, 402}, "c": {200, 401}}
	for _, s := range sites {
		for i, ck := range []string{cookie, ""} {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", s.port), nil)
			if ck != "" {
				req.Header.Set("Cookie", ck)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want[s.key][i] || (resp.StatusCode == 200 && string(body) != "hello") {
				return fmt.Errorf("site %s (%s), cookie %v: status %d body %.60q, want %d", s.key, s.name, ck != "", resp.StatusCode, body, want[s.key][i])
			}
		}
	}
	return nil
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	reTotal   = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: (.*)`)
)

func parseWrk(out string) (result, error) {
	var r result
	m := reRPS.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no Requests/sec")
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		switch m[1] {
		case "50":
			r.P50 = v
		case "90":
			r.P90 = v
		case "99":
			r.P99 = v
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, errors.New("no latency distribution")
	}
	if m := reTotal.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		log.Printf("wrk socket errors: %s", m[1])
	}
	return r, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func report(all []result, sites []variant, o options, pinned bool, version string, reads int, rss string, loadBefore, loadAfter string) string {
	var b bytes.Buffer
	by := func(key string, f func(result) float64) []float64 {
		var xs []float64
		for _, r := range all {
			if r.Variant == key {
				xs = append(xs, f(r))
			}
		}
		return xs
	}
	rps := func(r result) float64 { return r.RPS }
	fmt.Fprintf(&b, "\n### Load run: %d rounds, medians\n\n", o.rounds)
	fmt.Fprintf(&b, "Caddy %s on loopback; wrk -t%d -c%d -d%s --latency, rounds alternating a/b/c; %s.\n\n",
		version, o.threads, o.conns, o.duration, pinning(pinned))
	fmt.Fprintf(&b, "| site | req/s (median) | min – max req/s | p50 ms | p90 ms | p99 ms | server CPU µs/request | server CPU share |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|\n")
	med := map[string]float64{}
	cpu := map[string]float64{}
	for _, s := range sites {
		xs := by(s.key, rps)
		med[s.key] = median(xs)
		cpu[s.key] = median(by(s.key, func(r result) float64 { return r.CPUPerReq }))
		fmt.Fprintf(&b, "| (%s) %s | %.0f | %.0f – %.0f | %.3f | %.3f | %.3f | %.1f | %.2f |\n", s.key, s.name, med[s.key],
			slices.Min(xs), slices.Max(xs),
			median(by(s.key, func(r result) float64 { return r.P50 })),
			median(by(s.key, func(r result) float64 { return r.P90 })),
			median(by(s.key, func(r result) float64 { return r.P99 })),
			cpu[s.key],
			median(by(s.key, func(r result) float64 { return r.CPUShare })))
	}
	// Per-round ratios: the three runs of a round are seconds apart, so a
	// round's ratio is less exposed to the machine's other load.
	var ba, bc, cba, cbc []float64
	for round := 1; round <= o.rounds; round++ {
		v := map[string]result{}
		for _, r := range all {
			if r.Round == round {
				v[r.Variant] = r
			}
		}
		ba = append(ba, v["b"].RPS/v["a"].RPS)
		bc = append(bc, v["b"].RPS/v["c"].RPS)
		cba = append(cba, v["a"].CPUPerReq/v["b"].CPUPerReq)
		cbc = append(cbc, v["c"].CPUPerReq/v["b"].CPUPerReq)
	}
	fmt.Fprintf(&b, "\nThroughput ratios, from wrk's req/s:\n\n")
	fmt.Fprintf(&b, "| ratio | of the medians | median of per-round ratios | per round | target |\n|---|---:|---:|---|---|\n")
	fmt.Fprintf(&b, "| b/a (paywall ÷ ungated) | %.3f | %.3f | %s | ≥ 0.97 |\n", med["b"]/med["a"], median(ba), fmtList(ba))
	fmt.Fprintf(&b, "| b/c (paywall ÷ forward_auth) | %.2f | %.2f | %s | ≥ 2 |\n", med["b"]/med["c"], median(bc), fmtList(bc))
	fmt.Fprintf(&b, "\nCapacity ratios, from the server's CPU time per request (requests one server CPU serves, b relative to a and c;\nless exposed than req/s to other processes on the machine):\n\n")
	fmt.Fprintf(&b, "| ratio | of the medians | median of per-round ratios | per round | target |\n|---|---:|---:|---|---|\n")
	fmt.Fprintf(&b, "| b/a = cpu(a)/cpu(b) | %.3f | %.3f | %s | ≥ 0.97 |\n", cpu["a"]/cpu["b"], median(cba), fmtList(cba))
	fmt.Fprintf(&b, "| b/c = cpu(c)/cpu(b) | %.2f | %.2f | %s | ≥ 2 |\n", cpu["c"]/cpu["b"], median(cbc), fmtList(cbc))
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(&b, "\nTargets, on the medians of per-round ratios: b/a ≥ 0.97 %s (req/s %.3f, CPU %.3f); b/c ≥ 2 %s (req/s %.2f, CPU %.2f).\n",
		verdict(median(ba) >= 0.97 && median(cba) >= 0.97), median(ba), median(cba),
		verdict(median(bc) >= 2 && median(cbc) >= 2), median(bc), median(cbc))
	fmt.Fprintf(&b, "\nStripe reads during the load run: %d. Caddy's resident memory at the end: %s.\n", reads, rss)
	fmt.Fprintf(&b, "Load average before: %s; after: %s (1, 5, 15 min).\n", loadBefore, loadAfter)
	return b.String()
}

func fmtList(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.3f", x))
	}
	return strings.Join(parts, ", ")
}

func pinning(pinned bool) string {
	if pinned {
		return "Caddy and authsvc pinned to CPU 0, wrk to CPU 1 (taskset)"
	}
	return "not pinned"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// fetch saves what a GET of u answers into file.
func fetch(u, file string) error {
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// process is a child process whose output goes to a log file.
type process struct {
	name   string
	cmd    *exec.Cmd
	logf   string
	exited chan struct{}
}

func start(dir, name string, argv []string, env ...string) (*process, error) {
	logf := filepath.Join(dir, name+".log")
	f, err := os.Create(logf)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logf: logf, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *process) logs() string {
	b, _ := os.ReadFile(p.logf)
	return string(b)
}

// rss is the resident memory of the process, as /proc reports it.
func (p *process) rss() string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// cpuTime is the user and system time the processes have used so far, all
// their threads included, from /proc/<pid>/stat (in USER_HZ ticks of 10 ms).
func cpuTime(procs ...*process) time.Duration {
	var total time.Duration
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which ends with the last ')':
		// state is the first, utime the 12th, stime the 13th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total
}

func waitListening(port int, timeout time.Duration, procs ...*process) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		for _, p := range procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited:\n%s", p.name, p.logs())
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var logs string
	for _, p := range procs {
		logs += p.name + ":\n" + p.logs()
	}
	return fmt.Errorf("nothing listens on 127.0.0.1:%d after %s\n%s", port, timeout, logs)
}
