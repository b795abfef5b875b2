package stripefake_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/caddy-paywall/paywall/internal/stripefake"
)

// search runs a customer search through stripe-go and returns the ids found.
func search(t *testing.T, sc *client.API, query string, limit int64) ([]string, error) {
	t.Helper()
	p := &stripe.CustomerSearchParams{SearchParams: stripe.SearchParams{Query: query}}
	if limit > 0 {
		p.Limit = stripe.Int64(limit)
	}
	it := sc.Customers.Search(p)
	var ids []string
	for it.Next() {
		ids = append(ids, it.Customer().ID)
	}
	return ids, it.Err()
}

func mustSearch(t *testing.T, sc *client.API, query string) []string {
	t.Helper()
	ids, err := search(t, sc, query, 0)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return ids
}

func newCustomer(t *testing.T, sc *client.API, email string, md map[string]string) string {
	t.Helper()
	p := &stripe.CustomerParams{Email: stripe.String(email)}
	for k, v := range md {
		p.AddMetadata(k, v)
	}
	c, err := sc.Customers.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestCustomerSearchWithSDK(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	ada := newCustomer(t, sc, "Ada@Example.com", map[string]string{"user": "u1", "plan": "premium"})
	bob := newCustomer(t, sc, "bob@example.com", map[string]string{"user": "u2", "plan": "premium"})
	quote := newCustomer(t, sc, "q@example.com", map[string]string{"it's": `a "b" \ c`})

	cases := []struct {
		query string
		want  []string
	}{
		{"metadata['user']:'u1'", []string{ada}},
		{`metadata["plan"]:"premium"`, []string{bob, ada}}, // newest first
		{"email:'ada@example.com'", []string{ada}},         // any case
		{"email:'ada@example'", nil},                       // whole address only
		{"metadata['plan']:'Premium'", nil},                // metadata is exact
		{"metadata['plan']:'premium' and email:'BOB@example.com'", []string{bob}},
		{"  metadata['plan']:'premium'  AND  metadata['user']:'u1'  ", []string{ada}},
		{"metadata['user']:'u1' AND metadata['user']:'u2'", nil},
		{`metadata['it\'s']:'a "b" \\ c'`, []string{quote}},
		{`metadata["it's"]:"a \"b\" \\ c"`, []string{quote}},
		{"metadata['missing']:''", nil},
	}
	for _, c := range cases {
		got := mustSearch(t, sc, c.query)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: got %v, want %v", c.query, got, c.want)
		}
	}
	if n := s.Calls("GET /v1/customers/search"); n != len(cases) {
		t.Fatalf("search calls: %d, want %d", n, len(cases))
	}
}

func TestCustomerSearchPages(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	var ids []string // oldest first
	for i := 0; i < 5; i++ {
		ids = append(ids, newCustomer(t, sc, "same@example.com", nil))
	}
	newCustomer(t, sc, "other@example.com", nil)

	got, err := search(t, sc, "email:'same@example.com'", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("found %v", got)
	}
	for i, id := range got {
		if id != ids[4-i] {
			t.Fatalf("position %d: %s, want %s (newest first)", i, id, ids[4-i])
		}
	}
	if n := s.Calls("GET /v1/customers/search"); n != 3 {
		t.Fatalf("pages fetched: %d", n)
	}

	// The raw shape, with total_count expanded.
	status, res := rawSearch(t, s.URL(), url.Values{"query": {"email:'same@example.com'"}, "limit": {"10"}, "expand[]": {"total_count"}})
	if status != 200 || res["object"] != "search_result" || res["url"] != "/v1/customers/search" ||
		res["has_more"] != false || res["next_page"] != nil || res["total_count"] != float64(5) {
		t.Fatalf("search result: %d %v", status, res)
	}
	if data, _ := res["data"].([]any); len(data) != 5 || data[0].(map[string]any)["object"] != "customer" {
		t.Fatalf("data: %v", res["data"])
	}
	status, res = rawSearch(t, s.URL(), url.Values{"query": {"email:'same@example.com'"}, "limit": {"3"}})
	next, _ := res["next_page"].(string)
	if status != 200 || res["has_more"] != true || next == "" {
		t.Fatalf("first page: %d %v", status, res)
	}
	status, res = rawSearch(t, s.URL(), url.Values{"query": {"email:'same@example.com'"}, "limit": {"3"}, "page": {next}})
	if data, _ := res["data"].([]any); status != 200 || len(data) != 2 || res["has_more"] != false || res["next_page"] != nil {
		t.Fatalf("second page: %d %v", status, res)
	}
}

// rawSearch calls the search endpoint without stripe-go and decodes the JSON.
func rawSearch(t *testing.T, base string, q url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v1/customers/search?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer sk_test_x")
	res, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, out
}

func TestCustomerSearchRejectsBadQueries(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	for _, q := range []string{
		"",
		"   ",
		"name:'Ada'",
		"email~'ada'",
		"email:ada@example.com",
		"email:'ada@example.com",
		"metadata[user]:'u1'",
		"metadata['user']='u1'",
		"metadata['']:'x'",
		`email:'a\b'`,
		"email:'a' OR email:'b'",
		"email:'a' AND",
		"email:'a'AND email:'b'",
		"email:'a' email:'b'",
		"-email:'a'",
		strings.Repeat("email:'a' AND ", 10) + "email:'a'",
	} {
		_, err := search(t, sc, q, 0)
		if err == nil {
			t.Errorf("%q: accepted", q)
			continue
		}
		se := stripeError(t, err)
		if se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest || se.Param != "query" {
			t.Errorf("%q: %+v", q, se)
		}
	}
	for _, c := range []struct{ param, value string }{{"limit", "0"}, {"limit", "101"}, {"limit", "x"}, {"page", "nope"}} {
		status, res := rawSearch(t, s.URL(), url.Values{"query": {"email:'a'"}, c.param: {c.value}})
		e, _ := res["error"].(map[string]any)
		if status != 400 || e["param"] != c.param || e["type"] != "invalid_request_error" {
			t.Errorf("%s=%s: %d %v", c.param, c.value, status, res)
		}
	}
}

func TestCustomerSearchLagsWrites(t *testing.T) {
	clk := newClock()
	s := start(t, stripefake.Options{Now: clk.Now})
	sc := sdk(t, s.URL(), "sk_test_x")
	s.SetSearchLag(time.Minute)
	id := newCustomer(t, sc, "old@example.com", map[string]string{"user": "u1"})
	if got := mustSearch(t, sc, "metadata['user']:'u1'"); len(got) != 0 {
		t.Fatalf("new customer found at once: %v", got)
	}
	clk.Advance(59 * time.Second)
	if got := mustSearch(t, sc, "metadata['user']:'u1'"); len(got) != 0 {
		t.Fatalf("found after 59s: %v", got)
	}
	clk.Advance(time.Second)
	if got := mustSearch(t, sc, "metadata['user']:'u1'"); len(got) != 1 || got[0] != id {
		t.Fatalf("not found after the lag: %v", got)
	}

	if err := s.UpdateCustomer(id, "new@example.com", map[string]string{"user": "u2"}); err != nil {
		t.Fatal(err)
	}
	// Until the lag has passed, search matches the old email and metadata
	// but shows the customer as it is now.
	p := &stripe.CustomerSearchParams{SearchParams: stripe.SearchParams{Query: "email:'old@example.com' AND metadata['user']:'u1'"}}
	it := sc.Customers.Search(p)
	if !it.Next() || it.Customer().ID != id || it.Customer().Email != "new@example.com" || it.Customer().Metadata["user"] != "u2" {
		t.Fatalf("old version: %v %+v", it.Err(), it.Current())
	}
	if got := mustSearch(t, sc, "email:'new@example.com'"); len(got) != 0 {
		t.Fatalf("new email found at once: %v", got)
	}
	clk.Advance(time.Minute)
	if got := mustSearch(t, sc, "email:'new@example.com' AND metadata['user']:'u2'"); len(got) != 1 {
		t.Fatalf("new version not found after the lag: %v", got)
	}
	if got := mustSearch(t, sc, "email:'old@example.com'"); len(got) != 0 {
		t.Fatalf("old email still found: %v", got)
	}

	s.SetSearchLag(0)
	if err := s.UpdateCustomer(id, "", map[string]string{"user": "u3"}); err != nil {
		t.Fatal(err)
	}
	if got := mustSearch(t, sc, "metadata['user']:'u3'"); len(got) != 1 {
		t.Fatalf("lag 0: %v", got)
	}
	if n := s.Calls("GET /v1/customers/search"); n != 8 {
		t.Fatalf("search calls: %d", n)
	}
}

func TestUpdateCustomer(t *testing.T) {
	s := start(t, stripefake.Options{})
	sc := sdk(t, s.URL(), "sk_test_x")
	id := newCustomer(t, sc, "a@example.com", map[string]string{"keep": "1", "drop": "2"})

	if err := s.UpdateCustomer(id, "", map[string]string{"drop": "", "add": "3"}); err != nil {
		t.Fatal(err)
	}
	c, _ := s.Customer(id)
	if c.Email != "a@example.com" || len(c.Metadata) != 2 || c.Metadata["keep"] != "1" || c.Metadata["add"] != "3" {
		t.Fatalf("after UpdateCustomer: %+v", c)
	}
	ev := lastEvent(t, s)
	if ev.Type != "customer.updated" {
		t.Fatalf("event %s", ev.Type)
	}
	var payload struct {
		Data struct {
			Object   stripe.Customer `json:"object"`
			Previous struct {
				Metadata map[string]string `json:"metadata"`
			} `json:"previous_attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(ev.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.Data.Object.Metadata["add"] != "3" || payload.Data.Previous.Metadata["drop"] != "2" {
		t.Fatalf("payload: %s", ev.Payload)
	}

	up := &stripe.CustomerParams{Email: stripe.String("b@example.com")}
	up.AddMetadata("keep", "4")
	got, err := sc.Customers.Update(id, up)
	if err != nil {
		t.Fatal(err)
	}
	if got.Email != "b@example.com" || got.Metadata["keep"] != "4" || got.Metadata["add"] != "3" {
		t.Fatalf("API update: %+v", got)
	}
	if ev := lastEvent(t, s); ev.Type != "customer.updated" || !strings.Contains(string(ev.Payload), `"previous_attributes":{"email":"a@example.com"`) {
		t.Fatalf("API update event: %s", ev.Payload)
	}

	// Nothing changed: no event, as with Stripe.
	n := len(s.Events())
	if err := s.UpdateCustomer(id, "b@example.com", map[string]string{"keep": "4"}); err != nil {
		t.Fatal(err)
	}
	if len(s.Events()) != n {
		t.Fatal("event for an update that changed nothing")
	}

	if err := s.UpdateCustomer("cus_nope", "x@example.com", nil); !errors.Is(err, stripefake.ErrNotFound) {
		t.Fatalf("unknown customer: %v", err)
	}
	_, err = sc.Customers.Update("cus_nope", up)
	if se := stripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing {
		t.Fatalf("API unknown customer: %+v", se)
	}
	if s.Calls("POST /v1/customers/{id}") != 2 {
		t.Fatalf("calls: %v", s.CallCounts())
	}
}

func lastEvent(t *testing.T, s *stripefake.Server) stripefake.Event {
	t.Helper()
	ev := s.Events()
	if len(ev) == 0 {
		t.Fatal("no events")
	}
	return ev[len(ev)-1]
}
