package dnsfake

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The addresses and names are a crawler's, as the plugin will see them;
// none is in /etc/hosts, which Go's resolver reads before asking DNS.
const (
	crawlerV4   = "66.249.66.1"
	crawlerV6   = "2001:4860:4801:10::1"
	crawlerName = "crawl-66-249-66-1.googlebot.com."
)

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAddrSameForUDPAndTCP(t *testing.T) {
	s := start(t)
	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	// Both are served: the TCP side accepts and the UDP side answers.
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("tcp: %v", err)
	}
	c.Close()
	s.PTR(crawlerV4, crawlerName)
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr())
		}}
		names, err := r.LookupAddr(ctx(t), crawlerV4)
		if err != nil || !slices.Equal(names, []string{crawlerName}) {
			t.Errorf("%s: LookupAddr = %q, %v", network, names, err)
		}
	}
}

func TestPTR(t *testing.T) {
	s := start(t)
	s.PTR(crawlerV4, "crawl-66-249-66-1.googlebot.com") // no trailing dot: added
	s.PTR(crawlerV6, "crawl-2001-4860-4801-10--1.googlebot.com.")
	r := s.Resolver()

	names, err := r.LookupAddr(ctx(t), crawlerV4)
	if err != nil || !slices.Equal(names, []string{crawlerName}) {
		t.Errorf("LookupAddr(%s) = %q, %v", crawlerV4, names, err)
	}
	names, err = r.LookupAddr(ctx(t), crawlerV6)
	if err != nil || !slices.Equal(names, []string{"crawl-2001-4860-4801-10--1.googlebot.com."}) {
		t.Errorf("LookupAddr(%s) = %q, %v", crawlerV6, names, err)
	}
}

func TestPTRSeveralNames(t *testing.T) {
	s := start(t)
	s.PTR(crawlerV4, "a.example.com", "b.example.com.")
	names, err := s.Resolver().LookupAddr(ctx(t), crawlerV4)
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"a.example.com.", "b.example.com."}) {
		t.Errorf("LookupAddr = %q, %v", names, err)
	}
}

func TestHost(t *testing.T) {
	s := start(t)
	s.Host(crawlerName, crawlerV4, crawlerV6)
	r := s.Resolver()

	addrs, err := r.LookupIPAddr(ctx(t), crawlerName)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		got = append(got, a.IP.String())
	}
	slices.Sort(got)
	if want := []string{crawlerV6, crawlerV4}; !slices.Equal(got, want) {
		t.Errorf("LookupIPAddr = %q, want %q", got, want)
	}

	// One family at a time: A alone, AAAA alone.
	v4, err := r.LookupIP(ctx(t), "ip4", crawlerName)
	if err != nil || len(v4) != 1 || v4[0].String() != crawlerV4 {
		t.Errorf("LookupIP(ip4) = %v, %v", v4, err)
	}
	v6, err := r.LookupIP(ctx(t), "ip6", crawlerName)
	if err != nil || len(v6) != 1 || v6[0].String() != crawlerV6 {
		t.Errorf("LookupIP(ip6) = %v, %v", v6, err)
	}

	// Names match regardless of case, and unqualified.
	hosts, err := r.LookupHost(ctx(t), "CRAWL-66-249-66-1.GoogleBot.com")
	slices.Sort(hosts)
	if err != nil || !slices.Equal(hosts, []string{crawlerV6, crawlerV4}) {
		t.Errorf("LookupHost = %q, %v", hosts, err)
	}
}

func TestNoRecordOfTheType(t *testing.T) {
	s := start(t)
	s.Host("v4only.example.com.", "192.0.2.7")
	s.PTR(crawlerV4, crawlerName)
	// Go's resolver reports an empty answer and NXDOMAIN alike, so the
	// rcodes are read off the wire.
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
		n     int
	}{
		{"v4only.example.com.", dns.TypeA, dns.RcodeSuccess, 1},
		{"v4only.example.com.", dns.TypeAAAA, dns.RcodeSuccess, 0},
		{"v4only.example.com.", dns.TypePTR, dns.RcodeSuccess, 0},
		{"1.66.249.66.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1},
		{"1.66.249.66.in-addr.arpa.", dns.TypeA, dns.RcodeSuccess, 0},
		{"unknown.example.com.", dns.TypeA, dns.RcodeNameError, 0},
		{"2.66.249.66.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0},
	} {
		m := new(dns.Msg)
		m.SetQuestion(c.name, c.qtype)
		in, _, err := new(dns.Client).ExchangeContext(ctx(t), m, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if in.Rcode != c.rcode || len(in.Answer) != c.n || !in.Authoritative {
			t.Errorf("%s %s: rcode %s, %d answers, aa %v; want %s, %d, aa",
				c.name, dns.TypeToString[c.qtype], dns.RcodeToString[in.Rcode], len(in.Answer),
				in.Authoritative, dns.RcodeToString[c.rcode], c.n)
		}
	}
	// And Go's resolver takes the empty AAAA answer for what it is, not
	// for a lame referral.
	addrs, err := s.Resolver().LookupIPAddr(ctx(t), "v4only.example.com.")
	if err != nil || len(addrs) != 1 || addrs[0].IP.String() != "192.0.2.7" {
		t.Errorf("LookupIPAddr = %v, %v", addrs, err)
	}
}

func TestNXDOMAIN(t *testing.T) {
	s := start(t)
	s.Host(crawlerName, crawlerV4)
	r := s.Resolver()

	_, err := r.LookupAddr(ctx(t), "192.0.2.1")
	assertNotFound(t, "LookupAddr(unknown)", err)
	_, err = r.LookupIPAddr(ctx(t), "unknown.example.com.")
	assertNotFound(t, "LookupIPAddr(unknown)", err)
	_, err = r.LookupHost(ctx(t), "unknown.example.com.")
	assertNotFound(t, "LookupHost(unknown)", err)
}

func assertNotFound(t *testing.T, what string, err error) {
	t.Helper()
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound || dnsErr.IsTimeout {
		t.Errorf("%s err = %#v, want not found", what, err)
	}
}

func TestQueries(t *testing.T) {
	s := start(t)
	s.PTR(crawlerV4, crawlerName)
	s.Host(crawlerName, crawlerV4)
	r := s.Resolver()

	if n := s.Queries(); n != 0 {
		t.Fatalf("Queries() = %d at start", n)
	}
	if _, err := r.LookupAddr(ctx(t), crawlerV4); err != nil {
		t.Fatal(err)
	}
	if n := s.Queries(); n != 1 {
		t.Errorf("after LookupAddr Queries() = %d, want 1 (PTR)", n)
	}
	if _, err := r.LookupIPAddr(ctx(t), crawlerName); err != nil {
		t.Fatal(err)
	}
	if n := s.Queries(); n != 3 {
		t.Errorf("after LookupIPAddr Queries() = %d, want 3 (PTR, A, AAAA)", n)
	}
	r.LookupAddr(ctx(t), "192.0.2.1") // NXDOMAIN counts too
	if n := s.Queries(); n != 4 {
		t.Errorf("after an unknown LookupAddr Queries() = %d, want 4", n)
	}

	s.Reset()
	if n := s.Queries(); n != 0 {
		t.Errorf("after Reset Queries() = %d", n)
	}
	// Reset keeps the records.
	names, err := r.LookupAddr(ctx(t), crawlerV4)
	if err != nil || !slices.Equal(names, []string{crawlerName}) {
		t.Errorf("after Reset LookupAddr = %q, %v", names, err)
	}
	if n := s.Queries(); n != 1 {
		t.Errorf("after Reset and LookupAddr Queries() = %d, want 1", n)
	}
}

func TestHang(t *testing.T) {
	s := start(t)
	s.PTR(crawlerV4, crawlerName)
	s.PTR("66.249.66.2", "crawl-66-249-66-2.googlebot.com.")
	s.Host(crawlerName, crawlerV4)
	s.Host("other.example.com.", "192.0.2.9")
	s.Hang(crawlerV4)
	s.Hang(crawlerName)
	r := s.Resolver()

	assertTimeout(t, "LookupAddr(hung ip)", func(c context.Context) error {
		_, err := r.LookupAddr(c, crawlerV4)
		return err
	})
	assertTimeout(t, "LookupIPAddr(hung name)", func(c context.Context) error {
		_, err := r.LookupIPAddr(c, crawlerName)
		return err
	})
	if s.Queries() < 2 {
		t.Errorf("Queries() = %d, want the hung queries counted", s.Queries())
	}

	// Only what was named hangs.
	if _, err := r.LookupAddr(ctx(t), "66.249.66.2"); err != nil {
		t.Errorf("LookupAddr(not hung) = %v", err)
	}
	if _, err := r.LookupHost(ctx(t), "other.example.com."); err != nil {
		t.Errorf("LookupHost(not hung) = %v", err)
	}

	// Hang("") hangs everything, unknown names too.
	s.Hang("")
	assertTimeout(t, "LookupHost(after Hang(\"\"))", func(c context.Context) error {
		_, err := r.LookupHost(c, "other.example.com.")
		return err
	})
	assertTimeout(t, "LookupAddr(unknown, after Hang(\"\"))", func(c context.Context) error {
		_, err := r.LookupAddr(c, "192.0.2.1")
		return err
	})
}

// assertTimeout runs lookup with a 200 ms deadline and wants it back with
// a timeout error.
func assertTimeout(t *testing.T, what string, lookup func(context.Context) error) {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- lookup(c) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
	}
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout {
		t.Errorf("%s err = %#v, want a timeout", what, err)
	}
}

func TestClose(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	s.Hang("")
	// A TCP client left waiting on a hung query does not keep Close
	// from returning.
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Close()
	s.Close() // twice is fine
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		c.Close()
		t.Error("TCP still accepts after Close")
	}
}

func TestConcurrent(t *testing.T) {
	s := start(t)
	r := s.Resolver()
	done := make(chan error)
	for i := range 8 {
		go func() {
			ip := net.IPv4(192, 0, 2, byte(i+1)).String()
			name := "host" + string(rune('a'+i)) + ".example.com."
			s.PTR(ip, name)
			s.Host(name, ip)
			names, err := r.LookupAddr(ctx(t), ip)
			if err == nil && !slices.Equal(names, []string{name}) {
				err = errors.New("wrong PTR: " + names[0])
			}
			if err == nil {
				_, err = r.LookupHost(ctx(t), name)
			}
			s.Queries()
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if n := s.Queries(); n != 8*3 {
		t.Errorf("Queries() = %d, want %d", n, 8*3)
	}
}
