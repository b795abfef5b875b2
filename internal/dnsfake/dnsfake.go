// Package dnsfake is a real DNS server on loopback for tests: the plugin's
// crawler check (a reverse lookup of the client's address, then a forward
// lookup of the name it gives) is tested over a socket, with Go's own
// resolver, rather than with a swapped-out lookup function.
//
// Records are set with PTR and Host. A name with no records answers
// NXDOMAIN; a name with records of other types only answers NOERROR with
// no answers, as an authoritative server does. Hang makes queries go
// unanswered, for timeouts. Every method is safe for concurrent use.
package dnsfake

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// ttl is what every answer carries. Go's resolver does not cache, so it
// only has to be a sane value.
const ttl = 60

// Server answers the records given to it on 127.0.0.1, on one port for UDP
// and TCP alike, since Go's resolver retries a truncated answer over TCP.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu      sync.Mutex
	records map[string]map[uint16][]dns.RR // fully qualified lower-case name → type → answers
	hung    map[string]bool                // fully qualified lower-case names; "" is every name
	queries int

	closeOnce sync.Once
}

// Start listens on 127.0.0.1:0 over UDP and TCP (same port) and serves until
// Close. It returns once both listeners are serving, so that a test needs
// no wait before its first query.
func Start() (*Server, error) {
	pc, ln, err := listen()
	if err != nil {
		return nil, err
	}
	s := &Server{
		addr:    pc.LocalAddr().String(),
		records: map[string]map[uint16][]dns.RR{},
		hung:    map[string]bool{},
	}
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve)}

	// Each server reports once: nil when it is serving, or the error
	// that stopped it before it started.
	type report struct {
		srv *dns.Server
		err error
	}
	reports := make(chan report, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := false
		srv.NotifyStartedFunc = func() {
			started = true
			reports <- report{srv, nil}
		}
		go func() {
			err := srv.ActivateAndServe()
			// NotifyStartedFunc runs on this goroutine, inside
			// ActivateAndServe, so started is settled here.
			if !started {
				reports <- report{srv, err}
			}
		}()
	}
	var firstErr error
	var serving []*dns.Server
	for range 2 {
		r := <-reports
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		serving = append(serving, r.srv)
	}
	if firstErr != nil {
		for _, srv := range serving {
			srv.Shutdown()
		}
		pc.Close()
		ln.Close()
		return nil, fmt.Errorf("dnsfake: serve: %w", firstErr)
	}
	return s, nil
}

// listen takes a UDP port on loopback and the same TCP port. Something
// else may hold the TCP side of the port the kernel gave for UDP, so a few
// ports are tried.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dnsfake: listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("dnsfake: listen tcp on the udp port: %w", lastErr)
}

// Addr is "127.0.0.1:port", the same for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners and waits for queries in flight. It may be
// called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
}

// PTR answers the reverse lookup of ip (IPv4 or IPv6) with names, fully
// qualified or not (the trailing dot is added). Names add to those already
// given for ip. It panics on an ip that does not parse: that is a mistake
// in the test, not a case to handle.
func (s *Server) PTR(ip string, names ...string) {
	rev := reverse(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		s.add(&dns.PTR{
			Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl},
			Ptr: dns.Fqdn(name),
		})
	}
}

// Host answers A and AAAA lookups of name with ips: the IPv4 ones as A,
// the others as AAAA. Ips add to those already given for name. It panics
// on an ip that does not parse.
func (s *Server) Host(name string, ips ...string) {
	fqdn := canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ip := range ips {
		a := net.ParseIP(ip)
		if a == nil {
			panic(fmt.Sprintf("dnsfake: Host(%q): %q is not an IP address", name, ip))
		}
		if v4 := a.To4(); v4 != nil {
			s.add(&dns.A{
				Hdr: dns.RR_Header{Name: fqdn, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
				A:   v4,
			})
			continue
		}
		s.add(&dns.AAAA{
			Hdr:  dns.RR_Header{Name: fqdn, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
			AAAA: a,
		})
	}
}

// add records rr under its owner name; s.mu is held.
func (s *Server) add(rr dns.RR) {
	h := rr.Header()
	h.Name = canonical(h.Name)
	byType := s.records[h.Name]
	if byType == nil {
		byType = map[uint16][]dns.RR{}
		s.records[h.Name] = byType
	}
	byType[h.Rrtype] = append(byType[h.Rrtype], rr)
}

// Hang makes the server never answer queries for the given reverse ip or
// name: the query is counted and dropped, so the asker times out as it
// would against a dead resolver. Hang("") hangs everything.
func (s *Server) Hang(ipOrName string) {
	key := ""
	if ipOrName != "" {
		if net.ParseIP(ipOrName) != nil {
			key = reverse(ipOrName)
		} else {
			key = canonical(ipOrName)
		}
	}
	s.mu.Lock()
	s.hung[key] = true
	s.mu.Unlock()
}

// Queries counts the queries received, all kinds (PTR, A, AAAA, hung or
// answered), since Start or the last Reset: how a test tells that a cache
// saved a lookup.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// Reset zeroes the count only; records and hangs stay.
func (s *Server) Reset() {
	s.mu.Lock()
	s.queries = 0
	s.mu.Unlock()
}

// Resolver returns a *net.Resolver that sends every query to this server:
// Go's own resolver (PreferGo), dialling Addr whatever nameserver the
// system names. The system's hosts file and search list still apply, so
// tests should use names and addresses that are not in /etc/hosts, and
// fully qualified names when they count queries.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}
}

// serve answers one query from the records, or drops it if it hangs.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.mu.Lock()
	s.queries++
	if len(req.Question) != 1 {
		s.mu.Unlock()
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)
	if s.hung[""] || s.hung[name] {
		s.mu.Unlock()
		return
	}
	byType, known := s.records[name]
	var answers []dns.RR
	for _, rr := range byType[q.Qtype] {
		answers = append(answers, dns.Copy(rr))
	}
	s.mu.Unlock()

	m := new(dns.Msg)
	m.SetReply(req)
	// Authoritative, and recursion available: Go's resolver takes a
	// NOERROR with no answers and neither bit for a lame referral.
	m.Authoritative = true
	m.RecursionAvailable = true
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	for _, rr := range answers {
		// Answer with the name as asked, case and all.
		rr.Header().Name = q.Name
		m.Answer = append(m.Answer, rr)
	}
	w.WriteMsg(m)
}

// reverse is ip's name under in-addr.arpa or ip6.arpa.
func reverse(ip string) string {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(fmt.Sprintf("dnsfake: %q is not an IP address", ip))
	}
	return canonical(rev)
}

// canonical is name fully qualified and lower-case, as records are kept:
// DNS names match regardless of case.
func canonical(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}
