package paywall

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Metered free views (`free_views <n> per <duration>`): a visitor who does
// not pay may read n distinct gated pages per window. The count lives in
// the browser, in a signed cookie (no server state, the same on every
// instance):
//
//	<cookie_name>_meter = v1.<window start>.<last view>.<pages>.<signature>
//
// with times in unix seconds, pages the first four bytes of SHA-256 of each
// page's path (base64url; at most 50 of them, so the cookie stays well
// under 4 KB), and an HMAC-SHA256 over the rest with a key derived from the
// cookie signing key. A cookie that does not verify counts as none: a
// client that drops or forges it starts afresh, so every new view also
// counts against its client address, at most free_views_per_ip per window
// (in memory, or in Redis with `redis`): a client without cookies cannot
// read without limit.

const (
	maxFreeViews = 50
	// meterSubresources is how long after a free view the page's images,
	// styles and scripts under the gated path load without counting.
	meterSubresources = 5 * time.Minute
)

// meter is a handler's free views.
type meter struct {
	n      int
	window time.Duration
	perIP  *limiter // new views per client address and window
	name   string   // the cookie's
	jar    *cookieJar
	spec   limitSpec
}

// subresources are the Sec-Fetch-Dest values of what a page loads.
var subresources = map[string]bool{"image": true, "style": true, "script": true, "font": true,
	"audio": true, "video": true, "track": true, "manifest": true}

// subresourceWriter serves a free page's subresource, unless the answer
// is a page: a client that calls an article an image gets a 402 without
// it.
type subresourceWriter struct {
	caddyhttp.ResponseWriterWrapper
	wrote, refused bool
}

func (w *subresourceWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	if code >= 200 {
		w.wrote = true
	}
	if ct := strings.ToLower(w.Header().Get("Content-Type")); strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "application/xhtml") {
		w.refused = true
		hdr := w.Header()
		hdr.Del("Content-Length")
		hdr.Del("Content-Type")
		w.ResponseWriter.WriteHeader(http.StatusPaymentRequired)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *subresourceWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.refused {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom goes through Write (file_server copies with it), so that the
// answer is looked at first.
func (w *subresourceWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{w}, r)
}

type writerOnly struct{ io.Writer }

// meterState is what a meter cookie holds.
type meterState struct {
	start, last int64 // unix seconds
	pages       []uint32
}

func pageID(path string) uint32 {
	sum := sha256.Sum256([]byte(path))
	return binary.BigEndian.Uint32(sum[:4])
}

func (m *meter) key() ([]byte, error) {
	k, err := m.jar.signingKey()
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte("caddy-paywall meter v1"))
	return mac.Sum(nil), nil
}

func (m *meter) encode(s meterState) (string, error) {
	key, err := m.key()
	if err != nil {
		return "", err
	}
	buf := make([]byte, 4*len(s.pages))
	for i, p := range s.pages {
		binary.BigEndian.PutUint32(buf[4*i:], p)
	}
	body := "v1." + strconv.FormatInt(s.start, 10) + "." + strconv.FormatInt(s.last, 10) + "." + base64.RawURLEncoding.EncodeToString(buf)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// read returns the meter of the request's cookie, when it verifies and its
// window has not ended at t (unix seconds).
func (m *meter) read(r *http.Request, t int64) (meterState, bool) {
	v, ok := cookieValue(r.Header, m.name)
	if !ok || len(v) > 1024 {
		return meterState{}, false
	}
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return meterState{}, false
	}
	body, sig := v[:i], v[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	key, kerr := m.key()
	if err != nil || kerr != nil {
		return meterState{}, false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return meterState{}, false
	}
	parts := strings.Split(body, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return meterState{}, false
	}
	start, err1 := strconv.ParseInt(parts[1], 10, 64)
	last, err2 := strconv.ParseInt(parts[2], 10, 64)
	raw, err3 := base64.RawURLEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || err3 != nil || len(raw)%4 != 0 || len(raw)/4 > maxFreeViews {
		return meterState{}, false
	}
	if t >= start+int64(m.window/time.Second) || start > t {
		return meterState{}, false // the window is over: views are back
	}
	s := meterState{start: start, last: last, pages: make([]uint32, len(raw)/4)}
	for i := range s.pages {
		s.pages[i] = binary.BigEndian.Uint32(raw[4*i:])
	}
	return s, true
}

// views reports whether a request asks for a page a person reads (a view
// the meter counts), or for something a page loads.
func isView(r *http.Request) bool {
	if d := r.Header.Get("Sec-Fetch-Dest"); d != "" {
		return d == "document" || d == "iframe"
	}
	accept := r.Header.Values("Accept")
	return !wantsProblemJSON(accept) && namesHTML(accept)
}

// freeView lets a visitor who does not pay read a free page, and reports
// whether it did; when it did not, reason is free_views_used if the
// visitor's views are spent (otherwise the refusal keeps its own reason),
// and comeBack when they return.
func (h *Handler) freeView(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer) (served bool, used bool, comeBack int64, err error) {
	m := h.meter
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false, false, 0, nil
	}
	t := now().Unix()
	s, ok := m.read(r, t)
	if !isView(r) {
		// What a free page loads (its images and styles) comes with
		// it, for a little while after it, and never a page: an
		// answer in HTML is refused (subresourceWriter). An API
		// client's JSON never gets a view.
		if ok && t-s.last < int64(meterSubresources/time.Second) && subresources[r.Header.Get("Sec-Fetch-Dest")] &&
			!wantsProblemJSON(r.Header.Values("Accept")) {
			sw := &subresourceWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
			return true, false, 0, h.passFree(sw, r, next, repl, m.n-len(s.pages))
		}
		return false, false, 0, nil
	}
	if !ok {
		s = meterState{start: t}
	}
	page := pageID(r.URL.Path)
	seen := false
	for _, p := range s.pages {
		if p == page {
			seen = true
			break
		}
	}
	comeBack = s.start + int64(m.window/time.Second)
	if !seen && len(s.pages) >= m.n {
		return false, true, comeBack, nil
	}
	if !seen {
		addr := h.limitKey(r)
		take := m.perIP.allow
		if h.DryRun || r.Method == http.MethodHead {
			// dry_run sets no cookie and HEAD uses no view: they
			// count nothing, but answer what GET would.
			take = m.perIP.wouldAllow
		}
		if ok, wait := take(addr, now().UnixNano()); !ok {
			comeBack = min(comeBack, t+int64(waitSeconds(wait)))
			if log, left := h.account.limitTrips.allow(now().UnixNano()); log {
				h.logger.Warn("free_views_per_ip reached: this address read its free pages for the window; behind a proxy, list it in trusted_proxies",
					zap.String("client_ip", clientIP(r)), zap.Int("free_views_per_ip", m.spec.n), zap.Int("refused_since_last_line", left))
			}
			return false, true, comeBack, nil
		}
		if r.Method != http.MethodHead {
			s.pages = append(s.pages, page)
		}
	}
	if r.Method == http.MethodHead {
		return true, false, 0, h.passFree(w, r, next, repl, m.n-len(s.pages))
	}
	s.last = t
	if h.DryRun {
		h.logger.Info("dry run: a free view", zap.Int("free_views_left", m.n-len(s.pages)), zap.String("uri", r.URL.RequestURI()))
		return false, false, 0, nil
	}
	v, err := m.encode(s)
	if err != nil {
		return false, false, 0, nil // no key: the usual refusal
	}
	http.SetCookie(w, &http.Cookie{
		Name:     m.name,
		Value:    v,
		Path:     "/",
		Expires:  time.Unix(comeBack, 0),
		MaxAge:   int(comeBack - t),
		HttpOnly: true,
		Secure:   h.cookies.secure(r),
		SameSite: http.SameSiteLaxMode,
	})
	return true, false, 0, h.passFree(w, r, next, repl, m.n-len(s.pages))
}

// meterViews is free_views n, or 0 without free_views.
func (h *Handler) meterViews() int {
	if h.meter == nil {
		return 0
	}
	return h.meter.n
}

// freeBackWords says when free views come back, from t (unix seconds), in
// the page's language: in whole days, hours or minutes, rounded up.
func freeBackWords(strs map[string]string, back, t int64) string {
	secs := max(back-t, 1)
	key, n := "free_back_minutes", (secs+59)/60
	switch {
	case secs >= 2*86400:
		key, n = "free_back_days", (secs+86399)/86400
	case secs >= 2*3600:
		key, n = "free_back_hours", (secs+3599)/3600
	}
	return strings.ReplaceAll(strs[key], "{n}", strconv.FormatInt(n, 10))
}

// passFree serves a free view: placeholders say so, and no cache keeps it
// (it is this visitor's, counted).
func (h *Handler) passFree(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer, left int) error {
	repl.Set("http.paywall.status", statusFreeView)
	repl.Set("http.paywall.reason", reasonFreeView)
	repl.Set("http.paywall.free_views_left", left)
	decisions.WithLabelValues(statusFreeView, reasonFreeView).Inc()
	w.Header().Set("Cache-Control", "private, no-store")
	pw := paidWriters.Get().(*paidWriter)
	pw.ResponseWriter, pw.ours, pw.checked = w, "private, no-store", false
	err := next.ServeHTTP(pw, r)
	pw.ResponseWriter = nil
	paidWriters.Put(pw)
	return err
}
