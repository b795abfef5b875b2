package paywall

import (
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// cdnCacheHeaders are the headers by which a site tells CDNs, rather than
// browsers, how long to keep a response (RFC 9213 and the older Surrogate-
// Control); a CDN obeys them over Cache-Control, so a paid page must not
// leave with them.
var cdnCacheHeaders = [...]string{"Cdn-Cache-Control", "Surrogate-Control", "Cloudflare-Cdn-Cache-Control"}

// paidWriter keeps a paid page out of shared caches whoever set its caching
// headers: a handler before the paywall (`header`), or the application
// behind it (`reverse_proxy`), whose headers arrive only when it answers.
// It rewrites them once, as the status is written. Writers are pooled: the
// request path of a subscriber allocates nothing for it.
type paidWriter struct {
	caddyhttp.ResponseWriterWrapper
	ours    string // the Cache-Control the paywall set; left alone when still there
	checked bool
}

var paidWriters = sync.Pool{New: func() any { return new(paidWriter) }}

func (w *paidWriter) check() {
	if !w.checked {
		w.checked = true
		keepPrivate(w.Header(), w.ours)
	}
}

// WriteHeader rewrites the caching headers before the final status goes out.
// 1xx responses (103 Early Hints) are not cached, and come before.
func (w *paidWriter) WriteHeader(code int) {
	if code >= 200 {
		w.check()
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

func (w *paidWriter) Write(b []byte) (int, error) {
	w.check()
	return w.ResponseWriterWrapper.Write(b)
}

// ReadFrom keeps sendfile for file_server, after the check.
func (w *paidWriter) ReadFrom(r io.Reader) (int64, error) {
	w.check()
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError is what http.ResponseController calls: a flush sends the
// headers, so they are checked first.
func (w *paidWriter) FlushError() error {
	w.check()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush serves handlers that look for http.Flusher.
func (w *paidWriter) Flush() { _ = w.FlushError() }

// keepPrivate rewrites a paid response's caching headers so that no shared
// cache keeps it: `public` and `s-maxage` are dropped from Cache-Control and
// `private` is added, and the CDN-only headers are removed. What browsers may
// keep (max-age, no-cache, …) is left to whoever set it; when that lets a
// browser store the page, Vary: Cookie keeps another visitor's page in the
// same browser from answering for this one. ours, the value the paywall
// set (private already), passes untouched.
func keepPrivate(h http.Header, ours string) {
	for _, k := range cdnCacheHeaders {
		if h[k] != nil {
			delete(h, k)
		}
	}
	cc := h["Cache-Control"]
	if len(cc) == 1 && cc[0] == ours {
		return
	}
	v, storable := privateCacheControl(strings.Join(cc, ","))
	h["Cache-Control"] = []string{v}
	if storable && !hasToken(h["Vary"], "Cookie") {
		h.Add("Vary", "Cookie")
	}
}

// privateCacheControl returns a Cache-Control value that no shared cache
// may use: v without `public` and `s-maxage`, with a plain `private` unless
// it says `no-store`. (`private="Set-Cookie"` names fields a shared cache
// must drop, and still lets it keep the rest.) A value that cannot be read
// becomes `private, no-store`. storable reports whether a browser may keep
// the response.
func privateCacheControl(v string) (out string, storable bool) {
	ds, ok := splitDirectives(v)
	if !ok {
		return "private, no-store", false
	}
	kept := make([]string, 0, len(ds)+1)
	private, noStore := false, false
	for _, d := range ds {
		name, qualified := directiveName(d)
		switch name {
		case "public", "s-maxage":
			continue
		case "private":
			private = private || !qualified
		case "no-store":
			noStore = true
		}
		kept = append(kept, d)
	}
	if !private && !noStore {
		kept = append([]string{"private"}, kept...)
	}
	return strings.Join(kept, ", "), !noStore
}

// directiveName is a Cache-Control directive's name in lower case, and
// whether it has a value (`private="Set-Cookie"`, `max-age=60`).
func directiveName(d string) (string, bool) {
	name, _, hasValue := strings.Cut(d, "=")
	return strings.ToLower(strings.TrimSpace(name)), hasValue
}

// splitDirectives splits a Cache-Control value at the commas that are not
// inside a quoted string (`private="Set-Cookie, X"`), trimming each part and
// dropping empty ones. ok is false when a quoted string does not end.
func splitDirectives(v string) (out []string, ok bool) {
	inQuote, start := false, 0
	for i := 0; i <= len(v); i++ {
		if i < len(v) {
			switch v[i] {
			case '"':
				inQuote = !inQuote
				continue
			case '\\':
				if inQuote {
					if i+1 >= len(v) {
						return nil, false
					}
					i++
				}
				continue
			case ',':
				if inQuote {
					continue
				}
			default:
				continue
			}
		}
		if d := strings.TrimSpace(v[start:i]); d != "" {
			out = append(out, d)
		}
		start = i + 1
	}
	return out, !inQuote
}

// hasToken reports whether a comma-separated header lists token, or "*".
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.EqualFold(t, token) {
				return true
			}
		}
	}
	return false
}
