package paywall

import (
	"net"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// certificateHolder is what origin asks of Caddy's TLS app: whether this
// Caddy holds a certificate for a name.
type certificateHolder interface {
	HasCertificateForSubject(subject string) bool
}

// origin is the scheme and host of every absolute URL the paywall writes
// (Stripe's return URLs, problem documents), taken from what the client
// cannot choose, so that a forged Host header can never send a payer's
// checkout to another site:
//
//   - public_url, when set;
//   - on HTTPS, the Host when it names the server the TLS handshake was for,
//     or another name this Caddy holds a certificate for (a browser may
//     send requests for several of a certificate's names over one
//     connection);
//   - on plain HTTP, only a loopback host (local trials and the demo), and
//     not when a proxy forwarded the request: a link to localhost that
//     someone forwards reaches nobody else, but behind a proxy it would
//     send every payer to their own machine.
//
// A port is taken from the Host only when it is a number. ok is false
// otherwise: the caller refuses what needs an absolute URL, or writes a path
// instead, and the first such request is logged with the fix.
func (h *Handler) origin(r *http.Request) (base string, ok bool) {
	if base, ok := h.trustedOrigin(r); ok {
		return base, true
	}
	if h.originWarned.CompareAndSwap(false, true) {
		h.logger.Warn("public_url is needed: this site's address cannot be trusted from the request, so checkout and the billing portal are refused "+
			"(set public_url to the scheme and host visitors use, such as https://example.com)",
			zap.String("host", r.Host), zap.Bool("tls", r.TLS != nil), zap.Bool("forwarded", forwarded(r)))
	}
	return "", false
}

// trustedOrigin is origin without its warning, for what can do without an
// address (a Bearer challenge's realm).
func (h *Handler) trustedOrigin(r *http.Request) (base string, ok bool) {
	if h.publicURL != "" {
		return h.publicURL, true
	}
	host := strings.ToLower(r.Host)
	name, portOK := splitHost(host)
	switch {
	case !portOK || name == "":
	case r.TLS != nil:
		sni := strings.ToLower(strings.TrimSuffix(r.TLS.ServerName, "."))
		if (sni != "" && name == sni) || (h.certs != nil && h.certs.HasCertificateForSubject(name)) || (sni == "" && isLoopback(name)) {
			return "https://" + host, true
		}
	case isLoopback(name) && !forwarded(r):
		return "http://" + host, true
	}
	return "", false
}

// splitHost returns the host name of a Host header value, without port or
// brackets, and whether its port, if any, is a number from 1 to 65535.
func splitHost(hostport string) (string, bool) {
	if !strings.ContainsAny(hostport, ":[]") {
		return strings.TrimSuffix(hostport, "."), true // no port; and no error to allocate
	}
	name, port, err := net.SplitHostPort(hostport)
	if err != nil { // a bracketed IPv6 address without a port, or nonsense
		inner, ok := strings.CutPrefix(hostport, "[")
		inner, closed := strings.CutSuffix(inner, "]")
		return inner, ok && closed
	}
	if len(port) == 0 || len(port) > 5 {
		return name, false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return name, false
		}
		n = n*10 + int(port[i]-'0')
	}
	return strings.TrimSuffix(name, "."), n >= 1 && n <= 65535
}

// forwarded reports whether a proxy says it forwarded the request.
func forwarded(r *http.Request) bool {
	for _, k := range [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Via"} {
		if r.Header[k] != nil {
			return true
		}
	}
	return false
}

// isLoopback reports whether a host name can only mean this machine:
// localhost, a name under .localhost (RFC 6761), or a loopback address.
func isLoopback(name string) bool {
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	if name == "" || !(name[0] >= '0' && name[0] <= '9' || strings.Contains(name, ":")) {
		return false // a name, not an address: nothing to parse
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback()
}
