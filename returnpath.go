package paywall

// safeReturn accepts a same-site path to send the visitor back to and
// returns "/" for anything else: absolute URLs (https://…), scheme-relative
// ones (//host), the backslash forms browsers read as slashes (/\host),
// scheme-only forms (http:host), and control characters or spaces, which
// browsers strip before they parse.
func safeReturn(s string) string {
	if len(s) == 0 || len(s) > 2048 || s[0] != '/' {
		return "/"
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	// The value goes back as given, never decoded, so percent-encoded
	// slashes stay part of a path on this site.
	return s
}
