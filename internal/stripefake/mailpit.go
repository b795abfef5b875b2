package stripefake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The index page can list the mail a Mailpit instance caught (Options
// MailpitURL), so a demo user can click the sign-in links the paywall sends.
// Only two endpoints of Mailpit's HTTP API are read: GET /api/v1/messages
// and GET /api/v1/message/{ID}.

// mailListSize is how many messages the index page shows.
const mailListSize = 20

// mailpitTimeout bounds each request to Mailpit.
const mailpitTimeout = 3 * time.Second

var errMailNotFound = errors.New("no such message")

type mailAddress struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

func (a mailAddress) String() string {
	if a.Name == "" {
		return a.Address
	}
	return a.Name + " <" + a.Address + ">"
}

func joinAddresses(as []mailAddress) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, ", ")
}

// mailSummary is one entry of GET /api/v1/messages.
type mailSummary struct {
	ID      string        `json:"ID"`
	From    mailAddress   `json:"From"`
	To      []mailAddress `json:"To"`
	Subject string        `json:"Subject"`
	Created time.Time     `json:"Created"`
}

// mailMessage is the answer of GET /api/v1/message/{ID}.
type mailMessage struct {
	ID      string        `json:"ID"`
	From    mailAddress   `json:"From"`
	To      []mailAddress `json:"To"`
	Subject string        `json:"Subject"`
	Date    time.Time     `json:"Date"`
	Text    string        `json:"Text"`
	HTML    string        `json:"HTML"`
}

// mailpitClient reads Mailpit's HTTP API.
type mailpitClient struct {
	base   string // without a trailing slash
	client *http.Client
}

func newMailpitClient(base string) *mailpitClient {
	return &mailpitClient{base: strings.TrimSuffix(base, "/"), client: &http.Client{Timeout: mailpitTimeout}}
}

// getJSON fetches base+path into v; a 404 is errMailNotFound.
func (m *mailpitClient) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	res, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return errMailNotFound
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, res.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	return nil
}

// list returns up to limit messages, newest first.
func (m *mailpitClient) list(ctx context.Context, limit int) ([]mailSummary, error) {
	var res struct {
		Messages []mailSummary `json:"messages"`
	}
	if err := m.getJSON(ctx, "/api/v1/messages?limit="+strconv.Itoa(limit), &res); err != nil {
		return nil, err
	}
	msgs := res.Messages
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].Created.After(msgs[j].Created) })
	if len(msgs) > limit {
		msgs = msgs[:limit]
	}
	return msgs, nil
}

// message returns one message with its bodies.
func (m *mailpitClient) message(ctx context.Context, id string) (mailMessage, error) {
	var msg mailMessage
	err := m.getJSON(ctx, "/api/v1/message/"+url.PathEscape(id), &msg)
	return msg, err
}

// ---------------------------------------------------------------- links

// textPart is a run of text, or a link when URL is set.
type textPart struct {
	Text string
	URL  string
}

var (
	bareURL   = regexp.MustCompile(`(?i)\bhttps?://[^\s<>"'` + "`" + `]+`)
	hrefURL   = regexp.MustCompile(`(?i)href\s*=\s*["'](https?://[^"']+)["']`)
	urlTrails = ".,;:!?)]}"
)

// linkify splits text into plain runs and http(s) links. Punctuation that
// ends a sentence is not taken as part of a link.
func linkify(text string) []textPart {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	var parts []textPart
	last := 0
	for _, loc := range bareURL.FindAllStringIndex(text, -1) {
		raw := strings.TrimRight(text[loc[0]:loc[1]], urlTrails)
		if !isWebURL(raw) {
			continue
		}
		if loc[0] > last {
			parts = append(parts, textPart{Text: text[last:loc[0]]})
		}
		parts = append(parts, textPart{Text: raw, URL: raw})
		last = loc[0] + len(raw)
	}
	if last < len(text) {
		parts = append(parts, textPart{Text: text[last:]})
	}
	return parts
}

// isWebURL reports whether raw is an absolute http or https URL with a host.
func isWebURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme == "http" || scheme == "https"
}

// htmlLinks lists the http(s) links of an HTML body, one a line, for
// messages without a text part.
func htmlLinks(body string) []textPart {
	parts := []textPart{{Text: "This message has no text part. Links in its HTML part:\n"}}
	for _, m := range hrefURL.FindAllStringSubmatch(body, -1) {
		if u := html.UnescapeString(m[1]); isWebURL(u) {
			parts = append(parts, textPart{Text: u, URL: u}, textPart{Text: "\n"})
		}
	}
	return parts
}

// mailBody is the text of msg with its links, or the links of its HTML part
// when it has no text.
func mailBody(msg mailMessage) []textPart {
	if strings.TrimSpace(msg.Text) == "" && msg.HTML != "" {
		return htmlLinks(msg.HTML)
	}
	return linkify(msg.Text)
}

// ---------------------------------------------------------------- pages

func mailTime(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04:05 UTC") }

// mailRow is one message on the index page.
type mailRow struct {
	ID, Time, From, To, Subject string
	Body                        []textPart
	Err                         string // why Body is missing
	Open                        bool
}

// mailSection is the index page's Mail card; nil when Mailpit is not set.
type mailSection struct {
	URL  string
	Err  string // Mailpit could not be read
	Rows []mailRow
}

// mailSection reads the newest messages and their bodies.
func (s *Server) mailSection(ctx context.Context) *mailSection {
	if s.mailpit == nil {
		return nil
	}
	sec := &mailSection{URL: s.mailpit.base}
	msgs, err := s.mailpit.list(ctx, mailListSize)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the request URL would repeat the base
		}
		sec.Err = fmt.Sprintf("Mailpit at %s could not be read: %v.", s.mailpit.base, err)
		return sec
	}
	sec.Rows = make([]mailRow, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		sec.Rows[i] = mailRow{ID: m.ID, Time: mailTime(m.Created), From: m.From.String(), To: joinAddresses(m.To), Subject: m.Subject, Open: i == 0}
		wg.Add(1)
		go func(row *mailRow) {
			defer wg.Done()
			s.fillMailBody(ctx, row)
		}(&sec.Rows[i])
	}
	wg.Wait()
	return sec
}

func (s *Server) fillMailBody(ctx context.Context, row *mailRow) {
	msg, err := s.mailpit.message(ctx, row.ID)
	if err != nil {
		row.Err = "Could not read this message: " + err.Error()
		return
	}
	row.Body = mailBody(msg)
}

// mailPage shows one message with its links.
func (s *Server) mailPage(w http.ResponseWriter, r *http.Request) {
	if s.mailpit == nil {
		renderMessage(w, http.StatusNotFound, "No mail", "The sandbox was started without a Mailpit URL.")
		return
	}
	msg, err := s.mailpit.message(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, errMailNotFound):
		renderMessage(w, http.StatusNotFound, "Message not found", "Mailpit has no message with this id.")
		return
	case err != nil:
		renderMessage(w, http.StatusBadGateway, "Mailpit not reachable", err.Error())
		return
	}
	render(w, http.StatusOK, "mail", mailRow{
		ID: msg.ID, Time: mailTime(msg.Date), From: msg.From.String(), To: joinAddresses(msg.To),
		Subject: msg.Subject, Body: mailBody(msg),
	})
}
