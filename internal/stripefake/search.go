package stripefake

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Customer search (GET /v1/customers/search) understands a small part of
// Stripe's search query language: clauses email:'…' and metadata['key']:'…'
// joined by AND. Values may be in single or double quotes; a backslash
// escapes a quote or a backslash inside them. email matches whole addresses
// without regard to case; metadata values match exactly.
//
// Stripe's search index lags writes by up to a minute. With SetSearchLag(d),
// search sees each customer as it was at now − d by the Server's clock: a
// customer created later is not found, and one changed later is found by its
// earlier email and metadata. Results always show the customer as it is now.

// maxSearchClauses is Stripe's limit on clauses in one query.
const maxSearchClauses = 10

// SetSearchLag makes customer search see the data as it was d ago (0, the
// default, means search sees every write at once).
func (s *Server) SetSearchLag(d time.Duration) {
	s.mu.Lock()
	s.searchLag = d
	s.mu.Unlock()
}

// customerVersion is what search matches: a customer's email and metadata
// from the time at onwards.
type customerVersion struct {
	at       time.Time
	email    string
	metadata map[string]string
}

func (s *Server) recordVersionLocked(c *Customer) {
	c.versions = append(c.versions, customerVersion{at: s.now(), email: c.Email, metadata: cloneMap(c.Metadata)})
}

// versionAt returns the version search sees at cutoff; ok is false when the
// customer did not exist yet.
func (c *Customer) versionAt(cutoff time.Time) (v customerVersion, ok bool) {
	for i := len(c.versions) - 1; i >= 0; i-- {
		if !c.versions[i].at.After(cutoff) {
			return c.versions[i], true
		}
	}
	return customerVersion{}, false
}

// searchClause is one field:'value' clause of a query.
type searchClause struct {
	field string // "email" or "metadata"
	key   string // metadata key
	value string
}

func (v customerVersion) matches(clauses []searchClause) bool {
	for _, cl := range clauses {
		switch cl.field {
		case "email":
			if !strings.EqualFold(v.email, cl.value) {
				return false
			}
		case "metadata":
			if got, ok := v.metadata[cl.key]; !ok || got != cl.value {
				return false
			}
		}
	}
	return true
}

// queryScanner reads a search query from left to right.
type queryScanner struct {
	q string
	i int
}

func (sc *queryScanner) done() bool { return sc.i >= len(sc.q) }

// skipSpace skips blanks and reports whether there were any.
func (sc *queryScanner) skipSpace() bool {
	start := sc.i
	for !sc.done() && (sc.q[sc.i] == ' ' || sc.q[sc.i] == '\t') {
		sc.i++
	}
	return sc.i > start
}

// consume skips prefix if the query continues with it.
func (sc *queryScanner) consume(prefix string) bool {
	if strings.HasPrefix(sc.q[sc.i:], prefix) {
		sc.i += len(prefix)
		return true
	}
	return false
}

// consumeWord skips word if the query continues with it in any case.
func (sc *queryScanner) consumeWord(word string) bool {
	if len(sc.q)-sc.i >= len(word) && strings.EqualFold(sc.q[sc.i:sc.i+len(word)], word) {
		sc.i += len(word)
		return true
	}
	return false
}

// quoted reads a string in single or double quotes.
func (sc *queryScanner) quoted() (string, error) {
	if sc.done() || (sc.q[sc.i] != '\'' && sc.q[sc.i] != '"') {
		return "", fmt.Errorf("expected a quoted string at position %d", sc.i)
	}
	quote := sc.q[sc.i]
	sc.i++
	var b strings.Builder
	for !sc.done() {
		c := sc.q[sc.i]
		sc.i++
		switch {
		case c == quote:
			return b.String(), nil
		case c == '\\':
			if sc.done() || !strings.ContainsRune(`'"\`, rune(sc.q[sc.i])) {
				return "", fmt.Errorf("a backslash may only escape a quote or a backslash (position %d)", sc.i-1)
			}
			b.WriteByte(sc.q[sc.i])
			sc.i++
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unterminated quoted string")
}

// clause reads email:'…' or metadata['key']:'…'.
func (sc *queryScanner) clause() (searchClause, error) {
	switch {
	case sc.consume("email:"):
		v, err := sc.quoted()
		return searchClause{field: "email", value: v}, err
	case sc.consume("metadata["):
		key, err := sc.quoted()
		if err != nil {
			return searchClause{}, err
		}
		if key == "" {
			return searchClause{}, errors.New("empty metadata key")
		}
		if !sc.consume("]:") {
			return searchClause{}, fmt.Errorf("expected ]: after the metadata key at position %d", sc.i)
		}
		v, err := sc.quoted()
		return searchClause{field: "metadata", key: key, value: v}, err
	}
	field := sc.q[sc.i:]
	if n := strings.IndexAny(field, ": \t"); n >= 0 {
		field = field[:n]
	}
	return searchClause{}, fmt.Errorf("stripefake supports only the fields email and metadata['key'] with ':' (got %q)", field)
}

// parseSearchQuery parses clauses joined by AND.
func parseSearchQuery(q string) ([]searchClause, error) {
	sc := &queryScanner{q: q}
	var out []searchClause
	for {
		sc.skipSpace()
		cl, err := sc.clause()
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
		if len(out) > maxSearchClauses {
			return nil, fmt.Errorf("a query may have at most %d clauses", maxSearchClauses)
		}
		spaced := sc.skipSpace()
		if sc.done() {
			return out, nil
		}
		if sc.consumeWord("OR") {
			return nil, errors.New("stripefake supports only AND between clauses")
		}
		if !spaced || !sc.consumeWord("AND") || !sc.skipSpace() {
			return nil, fmt.Errorf("expected ' AND ' between clauses at position %d", sc.i)
		}
	}
}

// searchLimit parses limit: 1 to 100, default 10.
func searchLimit(v string) (int, bool) {
	if v == "" {
		return 10, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 1 && n <= 100
}

// The page token is opaque to clients; it holds the seq of the last
// customer on the previous page.
func pageToken(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatInt(seq, 10)))
}

// parsePageToken returns the seq to continue after; 0 means the first page.
func parsePageToken(tok string) (int64, bool) {
	if tok == "" {
		return 0, true
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(raw), "after:") {
		return 0, false
	}
	seq, err := strconv.ParseInt(strings.TrimPrefix(string(raw), "after:"), 10, 64)
	return seq, err == nil && seq > 0
}

// searchCustomers answers GET /v1/customers/search, newest first.
func (s *Server) searchCustomers(r *http.Request) (int, any) {
	q := r.Form.Get("query")
	if strings.TrimSpace(q) == "" {
		return badParam("query", "Missing required param: query.")
	}
	clauses, err := parseSearchQuery(q)
	if err != nil {
		return badParam("query", "Invalid query: "+err.Error()+".")
	}
	limit, ok := searchLimit(r.Form.Get("limit"))
	if !ok {
		return badParam("limit", "Invalid limit: must be an integer between 1 and 100.")
	}
	after, ok := parsePageToken(r.Form.Get("page"))
	if !ok {
		return badParam("page", "Invalid page: use the next_page of an earlier search.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hits := s.searchLocked(clauses)
	body := s.searchPageLocked(hits, after, limit)
	for _, p := range expandParams(r.Form) {
		if p == "total_count" {
			body["total_count"] = len(hits)
		}
	}
	return http.StatusOK, body
}

// searchLocked returns the customers whose searchable version matches,
// newest first.
func (s *Server) searchLocked(clauses []searchClause) []*Customer {
	cutoff := s.now().Add(-s.searchLag)
	var hits []*Customer
	for _, c := range s.sortedCustomersLocked() {
		if v, ok := c.versionAt(cutoff); ok && v.matches(clauses) {
			hits = append(hits, c)
		}
	}
	return hits
}

// searchPageLocked renders the page of hits that follows the customer with
// seq after (0: the first page).
func (s *Server) searchPageLocked(hits []*Customer, after int64, limit int) map[string]any {
	if after > 0 {
		i := 0
		for i < len(hits) && hits[i].seq >= after {
			i++
		}
		hits = hits[i:]
	}
	var next any
	hasMore := len(hits) > limit
	if hasMore {
		hits = hits[:limit]
		next = pageToken(hits[limit-1].seq)
	}
	data := make([]any, 0, len(hits))
	for _, c := range hits {
		data = append(data, s.customerJSONLocked(c))
	}
	return map[string]any{
		"object":    "search_result",
		"data":      data,
		"has_more":  hasMore,
		"next_page": next,
		"url":       "/v1/customers/search",
	}
}
