package paywall

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestKeepPrivate(t *testing.T) {
	const ours = "private, no-cache"
	for _, tc := range []struct {
		in       []string
		want     string
		wantVary bool
	}{
		{[]string{ours}, ours, false},
		{[]string{"public, max-age=600"}, "private, max-age=600", true},
		{[]string{ours, "public, max-age=600, s-maxage=3600"}, "private, no-cache, max-age=600", true},
		{[]string{"max-age=60, S-MaxAge=120, PUBLIC"}, "private, max-age=60", true},
		{[]string{"no-store, public"}, "no-store", false},
		// A qualified private lets a shared cache keep all but the named
		// fields: a plain private is added.
		{[]string{`private="Set-Cookie, X-A", public`}, `private, private="Set-Cookie, X-A"`, true},
		{[]string{`no-cache="x, public, s-maxage=600`}, "private, no-store", false},
		{nil, "private", true},
	} {
		h := http.Header{}
		if tc.in != nil {
			h["Cache-Control"] = tc.in
		}
		h.Set("CDN-Cache-Control", "max-age=86400")
		h.Set("Surrogate-Control", "max-age=86400")
		keepPrivate(h, ours)
		if got := strings.Join(h["Cache-Control"], " | "); got != tc.want {
			t.Errorf("%q: Cache-Control %q, want %q", tc.in, got, tc.want)
		}
		if h.Get("CDN-Cache-Control") != "" || h.Get("Surrogate-Control") != "" {
			t.Errorf("%q: CDN headers left: %v", tc.in, h)
		}
		if got := h.Get("Vary") == "Cookie"; got != tc.wantVary {
			t.Errorf("%q: Vary %q", tc.in, h.Get("Vary"))
		}
	}
}

func TestAPaidPageNeverLeavesPublic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		option  string
		content http.HandlerFunc
		want    string
	}{
		{"the application says public", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600")
			w.Header().Set("CDN-Cache-Control", "max-age=600")
			_, _ = io.WriteString(w, "premium content")
		}, "private, max-age=600"},
		{"the application adds public to the paywall's value", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Cache-Control", "public, s-maxage=600")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "premium content")
		}, "private, no-cache"},
		{"the application streams", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public")
			_ = http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "premium content")
		}, "private"},
		{"the application copies a file", "", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=60")
			// A reader without WriteTo, so that io.Copy takes the
			// writer's ReadFrom, as file_server's sendfile does.
			_, _ = io.Copy(w, io.LimitReader(strings.NewReader("premium content"), 1<<20))
		}, "private, max-age=60"},
		{"cache_control off leaves caching to the application", "off", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600")
			_, _ = io.WriteString(w, "premium content")
		}, "public, max-age=600"},
	} {
		w := newWorld(t, func(h *Handler) { h.CacheControl = tc.option })
		w.content = tc.content
		_, _, c := w.subscriber("active")
		resp := w.get(c, "/premium/a")
		if resp.StatusCode != 200 || bodyOf(resp) != "premium content" {
			t.Fatalf("%s: %d %q", tc.name, resp.StatusCode, bodyOf(resp))
		}
		if got := strings.Join(resp.Header.Values("Cache-Control"), " | "); got != tc.want {
			t.Errorf("%s: Cache-Control %q, want %q", tc.name, got, tc.want)
		}
		if tc.option == "" && resp.Header.Get("CDN-Cache-Control") != "" {
			t.Errorf("%s: CDN-Cache-Control left on a paid page", tc.name)
		}
	}
}
