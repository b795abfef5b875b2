package paywall

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The seeds below run in every `go test`; `make fuzz` explores further.

// fuzzCookieSecret is a cookie_secret for the fuzz targets' jar.
const fuzzCookieSecret = "fuzz-cookie-secret-0123456789abcdef"

// fuzzNow is the time the fuzz targets verify at.
var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fuzzJar(f testing.TB) (*cookieJar, []byte) {
	j := newCookieJar("paywall", time.Hour, fuzzCookieSecret, nil, zap.NewNop())
	key, err := j.signingKey()
	if err != nil {
		f.Fatal(err)
	}
	return j, key
}

// cookieSeeds are cookie values that are, or are near, what sign makes.
func cookieSeeds(j *cookieJar, key []byte) []string {
	exp := fuzzNow.Add(time.Hour).Unix()
	good := j.sign(key, "cus_Abc123", exp)
	customer, rest, _ := strings.Cut(good, ".")
	expStr, sig, _ := strings.Cut(rest, ".")
	otherKey := make([]byte, len(key))
	copy(otherKey, key)
	otherKey[0] ^= 1
	// A 32-byte signature is 43 characters: the last one carries two
	// padding bits, which a lenient decoder ignores.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	lastBitsFlipped := sig[:len(sig)-1] + string(alphabet[last^1])
	return []string{
		good,
		j.sign(key, "cus_x", fuzzNow.Add(-time.Second).Unix()), // expired
		j.sign(key, "cus_x", fuzzNow.Unix()),                   // expires right now
		j.sign(otherKey, "cus_Abc123", exp),                    // another key
		j.sign(key, "cus_bad-id", exp),                         // signed, but not a customer ID
		j.sign(key, "cus_"+strings.Repeat("a", 300), exp),      // too long
		"",
		".",
		"..",
		"cus_Abc123",
		"cus_Abc123.",
		"cus_Abc123." + expStr,
		"cus_Abc123." + expStr + ".",
		customer + ".+" + expStr + "." + sig, // the same number, spelled otherwise
		customer + ".0" + expStr + "." + sig, // leading zero
		customer + "." + expStr + "." + sig + "=",      // padded
		customer + "." + expStr + "." + sig + ".extra", // trailing field
		customer + "." + expStr + "." + sig + "AA",     // longer signature
		customer + "." + expStr + "." + sig[:len(sig)-1],
		customer + "." + expStr + "." + lastBitsFlipped,            // same bytes if only padding bits change
		customer + "." + expStr + "." + sig[:10] + "\n" + sig[10:], // decoders skip newlines
		customer + "." + expStr + "." + sig[:10] + "\r" + sig[10:],
		customer + "." + expStr + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sig), // standard alphabet
		"cus_Abc124." + expStr + "." + sig,                                                   // another customer, the same signature
		customer + "." + strconv.FormatInt(exp+1, 10) + "." + sig,
		customer + ".9223372036854775807." + sig,
		customer + ".-1." + sig,
		customer + ".99999999999999999999." + sig,
		"\x00\xff." + expStr + "." + sig,
		"cus_é." + expStr + "." + sig,
	}
}

// checkAccepted fails unless an accepted value is exactly what sign makes
// with the key for the identity it names, and the identity has not expired.
func checkAccepted(t *testing.T, j *cookieJar, key []byte, value string, id identity, at int64) {
	t.Helper()
	if want := j.sign(key, id.customer, id.expires); value != want {
		t.Fatalf("accepted %q, which sign did not make (sign gives %q)", value, want)
	}
	if !validCustomerID(id.customer) {
		t.Fatalf("accepted customer %q, not a customer ID", id.customer)
	}
	if id.expires <= at {
		t.Fatalf("accepted %q, expired at %d, at %d", value, id.expires, at)
	}
	if id.customerAny != any(id.customer) {
		t.Fatalf("identity's customerAny %v differs from customer %q", id.customerAny, id.customer)
	}
}

// FuzzCookieVerify: verify never panics and accepts only what sign made
// with the key, unexpired.
func FuzzCookieVerify(f *testing.F) {
	j, key := fuzzJar(f)
	for _, s := range cookieSeeds(j, key) {
		f.Add(s, int64(0))
		f.Add(s, int64(3600))
	}
	f.Fuzz(func(t *testing.T, value string, offset int64) {
		at := fuzzNow.Unix() + offset%(1<<40)
		id, ok, _ := j.verify(value, at)
		if !ok {
			if id.customer != "" || id.expires != 0 || id.customerAny != nil {
				t.Fatalf("refused %q but returned identity %+v", value, id)
			}
			return
		}
		checkAccepted(t, j, key, value, id, at)
	})
}

// FuzzCookieIdentify: a whole Cookie header through identify, twice (the
// second answer comes from the jar's memory of verified values).
func FuzzCookieIdentify(f *testing.F) {
	j, key := fuzzJar(f)
	for _, s := range cookieSeeds(j, key) {
		f.Add("paywall=" + s)
		f.Add("other=1; paywall=" + s + "; paywall_checkout=n")
		f.Add(`paywall="` + s + `"`)
		f.Add("paywall=" + s + "; paywall=cus_x.1.AAAA")
		f.Add(" paywall = " + s)
	}
	f.Add("paywall")
	f.Add("paywall=")
	f.Add(`paywall="`)
	f.Add(";;;paywall=;")
	f.Fuzz(func(t *testing.T, header string) {
		saved := now
		now = func() time.Time { return fuzzNow }
		defer func() { now = saved }()

		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		value, _ := cookieValue(r.Header, j.name)
		first, ok1, _ := j.identify(r, now().Unix())
		second, ok2, _ := j.identify(r, now().Unix())
		if ok1 != ok2 || first.customer != second.customer || first.expires != second.expires {
			t.Fatalf("identify(%q) changed its answer: %v %+v, then %v %+v", header, ok1, first, ok2, second)
		}
		if ok1 {
			checkAccepted(t, j, key, value, first, fuzzNow.Unix())
		}
	})
}

// FuzzSafeReturn: whatever comes in, what goes out is a path on this site.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{
		"", "/", "/premium/x", "/premium/x?y=1&z=2#frag", "/a%20b", "/%2F%2Fevil.example",
		"//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
		"https://evil.example/", "http:evil.example", "HTTPS://evil.example", "javascript:alert(1)",
		"/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", " /x", "/x y", "/\x00", "/\x7f",
		"/ok\\", "/.//evil.example", "/..//evil.example", "/?next=//evil.example", "/#//evil.example",
		"/\u2028", "/\uff0fevil.example", "/%zz", "/" + strings.Repeat("a", 2047), "/" + strings.Repeat("a", 2048),
		"evil.example", "?x", "#x", ".", "./x", "/@evil.example", "/:80",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := safeReturn(in)
		if out != "/" && out != in {
			t.Fatalf("safeReturn(%q) = %q: neither / nor the input", in, out)
		}
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") {
			t.Fatalf("safeReturn(%q) = %q: not a same-site path", in, out)
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("safeReturn(%q) = %q: holds %q", in, out, c)
			}
		}
		// Go's parser errs on some paths (a bad % escape); those it reads
		// must be relative references without a scheme or a host.
		if u, err := url.Parse(out); err == nil && (u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil) {
			t.Fatalf("safeReturn(%q) = %q, which parses as scheme %q host %q", in, out, u.Scheme, u.Host)
		}
		// What a browser does with a Location header: resolve it against
		// the page. It must stay on the page's origin.
		base := &url.URL{Scheme: "https", Host: "site.example", Path: "/paywall/success"}
		if ref, err := url.Parse(out); err == nil {
			if got := base.ResolveReference(ref); got.Scheme != "https" || got.Host != "site.example" {
				t.Fatalf("safeReturn(%q) = %q resolves to %s", in, out, got)
			}
		}
	})
}

// FuzzSigninToken: a sign-in token opens only as what signinToken sealed,
// its customer, address and expiry; nothing else opens, and nothing panics.
func FuzzSigninToken(f *testing.F) {
	j, _ := fuzzJar(f)
	aead, err := j.signinAEAD()
	if err != nil {
		f.Fatal(err)
	}
	h := &Handler{cookies: j}
	exp := fuzzNow.Add(15 * time.Minute)
	good, err := h.signinToken("cus_Abc123", "reader@example.com", exp)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, good[:len(good)-1], good + "A", strings.ToUpper(good), good[:20] + "\n" + good[20:], "", "A", strings.Repeat("A", 60), "cus_Abc123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		link, ok := openSigninToken(aead, token)
		if !ok {
			if link != (signinLink{}) {
				t.Fatalf("refused token %q gave %+v", token, link)
			}
			return
		}
		// Only tokens sealed for cus_Abc123 exist (each fuzz worker seals
		// its own, under the same key).
		if link.customer != "cus_Abc123" || link.email != "reader@example.com" || !link.expires.Equal(exp.Truncate(time.Second)) || len(link.id) != signinNonceSize {
			t.Fatalf("token opened as %+v", link)
		}
	})
}

// FuzzAPIKey: parseKey and lookup never panic; a key lookup accepts has the
// shape of one, names a valid customer and id, and carries the tag of this
// site's key (it is what newKey made); the Bearer parser finds only tokens
// with the paywall's prefix.
func FuzzAPIKey(f *testing.F) {
	k := newAPIKeys(&APIKeys{}, "/paywall", newCookieJar("paywall", 0, strings.Repeat("k", 32), nil, zap.NewNop()))
	made, _, err := k.newKey("cus_Fuzz_1", nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{made, made[:len(made)-1], made + "A", strings.Replace(made, "Fuzz", "Fuzy", 1),
		keyPrefix, keyPrefix + "_", keyPrefix + "a_" + strings.Repeat("0", keyBodyLen), "pwk_" + strings.Repeat("_", 60), "Bearer " + made} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		cus, id, ok := parseKey(key)
		if ok && (!validCustomerID(cus) || !validKeyID(id) || !strings.HasPrefix(key, keyPrefix+strings.TrimPrefix(cus, "cus_")+"_"+id)) {
			t.Fatalf("parseKey(%q) = %q %q", key, cus, id)
		}
		vk, err := k.lookup(key)
		if err != nil {
			t.Fatal(err)
		}
		if vk != nil {
			if !ok || vk.customer != cus || vk.id != id || vk.sum != keySum(key) {
				t.Fatalf("lookup(%q) = %+v", key, vk)
			}
			head := key[:len(key)-keyTagLen]
			tagKey, _ := k.tagKeyBytes()
			if tag(tagKey, head) != key[len(head):] {
				t.Fatalf("lookup accepted %q without its tag", key)
			}
		}
		tok, ours := bearerKey(http.Header{"Authorization": {key}})
		if ours && !strings.HasPrefix(tok, keyPrefix) {
			t.Fatalf("bearerKey(%q) = %q", key, tok)
		}
	})
}
