package paywall

import (
	"slices"
	"strconv"
	"strings"
)

// Content negotiation: which form (a problem document or the page) and which
// language a refusal is answered in.

// wantsProblemJSON reports whether the Accept header asks for JSON (a
// problem document or plain JSON) at least as much as for HTML. Only a
// client that names a JSON type gets JSON on a tie, so "*/*" gets the page.
func wantsProblemJSON(accept []string) bool {
	ranges := parseAccept(accept)
	if len(ranges) == 0 {
		return false
	}
	html := mediaQ(ranges, "text", "html")
	js := max(mediaQ(ranges, "application", "problem+json"), mediaQ(ranges, "application", "json"))
	if js <= 0 {
		return false
	}
	if js > html {
		return true
	}
	if js < html {
		return false
	}
	for _, m := range ranges {
		if m.typ == "application" && (m.sub == "json" || m.sub == "problem+json") && m.q > 0 {
			return true
		}
	}
	return false
}

// namesHTML reports whether the Accept header names text/html itself (a
// browser's does); "*/*" alone does not.
func namesHTML(accept []string) bool {
	for _, m := range parseAccept(accept) {
		if m.typ == "text" && m.sub == "html" && m.q > 0 {
			return true
		}
	}
	return false
}

type mediaRange struct {
	typ, sub string
	q        float64
}

// parseAccept reads Accept headers into media ranges, skipping malformed
// ones.
func parseAccept(values []string) []mediaRange {
	var out []mediaRange
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			typ, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(mt)), "/")
			if !ok || typ == "" || sub == "" || (typ == "*" && sub != "*") {
				continue
			}
			q, ok := qValue(params)
			if !ok {
				continue
			}
			out = append(out, mediaRange{typ: strings.TrimSpace(typ), sub: strings.TrimSpace(sub), q: q})
		}
	}
	return out
}

// mediaQ is the quality the most specific matching range gives typ/sub,
// 0 when none matches.
func mediaQ(ranges []mediaRange, typ, sub string) float64 {
	best, q := 0, 0.0
	for _, m := range ranges {
		spec := 0
		switch {
		case m.typ == typ && m.sub == sub:
			spec = 3
		case m.typ == typ && m.sub == "*":
			spec = 2
		case m.typ == "*" && m.sub == "*":
			spec = 1
		}
		if spec > best || (spec == best && spec > 0 && m.q > q) {
			best, q = spec, m.q
		}
	}
	return q
}

// qValue finds q= among ";"-separated parameters: 1 when absent, and not
// ok when it is not a number from 0 to 1.
func qValue(params string) (float64, bool) {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0, false
		}
		return q, true
	}
	return 1, true
}

// defaultLanguage is the page's language for a visitor who accepts none of
// pageLanguages.
const defaultLanguage = "en"

// pageLanguages are the languages the page speaks: the default first, then
// the others in alphabetical order. Each strings_<lang>.go adds its own.
var pageLanguages []string

// pageStrings are the page's words, by language and key: English's in
// strings_en.go, each other language's in strings_<lang>.go, which has
// every key English has and no other (TestPageStringsComplete names the
// file to edit). {seconds} stands for Retry-After, {wait} for a wait said in
// seconds or minutes, {minutes} for how long a sign-in link lasts.
var pageStrings = map[string]map[string]string{}

// addLanguage makes the page speak lang, with its words by key. A
// strings_<lang>.go calls it from its init, so adding a language is adding
// one file.
func addLanguage(lang string, strs map[string]string) {
	if _, dup := pageStrings[lang]; dup {
		panic("paywall: page language " + lang + " added twice")
	}
	pageStrings[lang] = strs
	pageLanguages = append(pageLanguages, lang)
	slices.SortFunc(pageLanguages, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == defaultLanguage:
			return -1
		case b == defaultLanguage:
			return 1
		}
		return strings.Compare(a, b)
	})
}

// negotiateLanguage picks the built-in language the visitor prefers most
// by Accept-Language quality, the earlier one on a tie, and English when
// none is acceptable. "id-ID" matches "id"; "in" is Indonesian's old code.
func negotiateLanguage(values []string) string {
	best, bestQ := defaultLanguage, 0.0
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			tag, params, _ := strings.Cut(part, ";")
			primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
			q, ok := qValue(params)
			if !ok || q <= bestQ {
				continue
			}
			switch primary {
			case "*":
				primary = defaultLanguage
			case "in":
				primary = "id"
			}
			if _, known := pageStrings[primary]; known {
				best, bestQ = primary, q
			}
		}
	}
	return best
}
