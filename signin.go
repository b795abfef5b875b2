package paywall

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Email sign-in: a subscriber who is not known in this browser asks for a
// link by email, and the link, opened in any browser, sets the paywall's
// cookie there. A link is mailed only to an address Stripe has a customer
// for who subscribes, or did, to what this paywall sells; the answer to the
// visitor is the same either way, and the work is done after answering.

const (
	defaultSigninLinkTTL    = 15 * time.Minute
	defaultSigninLimit      = 3 // links per address
	defaultSigninIPLimit    = 10
	defaultSigninLimitPer   = 15 * time.Minute
	maxSigninLinkTTL        = 24 * time.Hour
	maxEmailLength          = 254
	signinConcurrentLookups = 16

	// maxUsedSignins bounds the used links remembered. Forgetting one
	// that has not expired would let it work again, so a full set
	// refuses new sign-ins instead, until links expire: reaching it takes
	// more sign-ins within one link lifetime than the limits let a few
	// thousand addresses make.
	maxUsedSignins = 200_000
)

// Sign-in requests' Stripe lookups draw on a budget of their own, per
// Stripe account and instance, so that a flood of them from many addresses
// spends neither the checkouts' budget nor the reads payers need: 5 a
// second, bursts of 10, is 18,000 links an hour.
const (
	signinBudgetRate  = 5
	signinBudgetBurst = 10
)

// usedLinks remembers used sign-in links by ID until they expire, and never
// forgets one that has not.
type usedLinks struct {
	mu    sync.Mutex
	until map[string]int64 // link ID → unix nanos of its expiry
}

// use marks a link used at t, until it expires; false when it was already
// used, or when the set is full of links that have not expired.
func (u *usedLinks) use(id string, t, expires int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.until == nil {
		u.until = make(map[string]int64)
	}
	if exp, ok := u.until[id]; ok && t < exp {
		return false
	}
	if len(u.until) >= maxUsedSignins {
		for k, exp := range u.until {
			if exp <= t {
				delete(u.until, k)
			}
		}
		if len(u.until) >= maxUsedSignins {
			return false
		}
	}
	u.until[id] = expires
	return true
}

// used reports whether a link was used, at t.
func (u *usedLinks) used(id string, t int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.until[id]
	return ok && t < exp
}

// signin is a handler's email sign-in, when its email block is set.
type signin struct {
	mailer   mailer
	ttl      time.Duration
	perAddr  limitSpec
	perIP    limitSpec
	addrs    *limiter // nil when off
	ips      *limiter
	slots    chan struct{} // bounds the lookups and mails under way
	failures logThrottle
}

// serveSignin serves <prefix>/signin:
//
//	GET             a form to ask for a link
//	GET  ?token=…   a page whose button confirms the link: mail scanners and
//	                link previews fetch links, and must not use them up
//	POST email=…    asks for a link (202, the same answer for any address)
//	POST token=…    uses the link: the cookie, and 303 to the return path
func (h *Handler) serveSignin(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		_ = r.ParseForm()
	}
	ret := returnPath(r)
	token := r.FormValue("token")
	switch {
	case r.Method == http.MethodPost && token != "":
		return h.useSigninLink(w, r, token, ret)
	case r.Method == http.MethodPost:
		return h.askSigninLink(w, r, ret)
	case token != "":
		return h.confirmSigninLink(w, r, token, ret)
	}
	return h.signinPage(w, r, http.StatusOK, reasonSignin, ret)
}

// signinPage answers one of the sign-in pages.
func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request, status int, reason, ret string) error {
	return h.writeDenial(w, r, h.signinDenial(status, reason, ret))
}

// signinDenial is what every sign-in page shows: the form's address and how
// long a link lasts.
func (h *Handler) signinDenial(status int, reason, ret string) denial {
	return denial{
		Status:     status,
		Reason:     reason,
		ReturnPath: ret,
		SigninURL:  h.prefix + "/signin",
		signinTTL:  h.signin.ttl,
		notice:     true,
	}
}

// askSigninLink answers a request for a link at once, the same way for
// every address, and looks the address up and mails the link afterwards,
// unless a limit says not to.
func (h *Handler) askSigninLink(w http.ResponseWriter, r *http.Request, ret string) error {
	email, ok := parseEmail(r.PostFormValue("email"))
	if !ok {
		return h.signinPage(w, r, http.StatusBadRequest, reasonSigninEmailInvalid, ret)
	}
	signinEvents.WithLabelValues("requested").Inc()
	t := now().UnixNano()
	base, trusted := h.signinOrigin(r)
	switch {
	case !trusted:
		// The link's address would come from the request's Host, which
		// anyone can set to collect someone else's link.
		signinEvents.WithLabelValues("not_sent").Inc()
	case !sameSite(r, h.publicURL):
		// Another site's page posting addresses to mail.
		signinEvents.WithLabelValues("not_sent").Inc()
	case !h.signinAllowed(r, email, t):
		signinEvents.WithLabelValues("limited").Inc()
	default:
		lang := negotiateLanguage(r.Header.Values("Accept-Language"))
		h.account.reads.Add(1)
		go h.mailSigninLink(email, base, ret, lang)
	}
	return h.signinPage(w, r, http.StatusAccepted, reasonSigninSent, ret)
}

// signinOrigin is the address of the links mailed: public_url, or else a
// loopback address (local trials and the demo). Not the wider rule of
// Stripe's return URLs: on HTTPS without public_url, whoever asks chooses
// the server name of their connection, and a Caddy that serves several
// sites (on-demand TLS among them) would mail a subscriber a link to any of
// them, which might be someone else's.
func (h *Handler) signinOrigin(r *http.Request) (string, bool) {
	base, ok := h.trustedOrigin(r)
	if ok && h.publicURL != "" {
		return base, true
	}
	name, _ := splitHost(strings.ToLower(r.Host))
	if ok && isLoopback(name) {
		return base, true
	}
	// Logged once, apart from checkout's line: a site may trust the
	// address for one and not for the other.
	if h.signinWarned.CompareAndSwap(false, true) {
		h.logger.Warn("public_url is needed: sign-in links are mailed only with public_url set (or on a loopback address), " +
			"so that no request can choose the address a subscriber's link points to")
	}
	return "", false
}

// signinAllowed takes one request from the client's allowance and then the
// address's, each at once; a client over its limit spends nothing of the
// address's.
func (h *Handler) signinAllowed(r *http.Request, email string, t int64) bool {
	s := h.signin
	if s.ips != nil {
		if ok, _ := s.ips.allow(h.limitKey(r), t); !ok {
			return false
		}
	}
	if s.addrs != nil {
		if ok, _ := s.addrs.allow(strings.ToLower(email), t); !ok {
			return false
		}
	}
	return true
}

// mailSigninLink finds the subscriber of an address and mails them a link.
// It runs after the answer, so that how long it takes tells the visitor
// nothing about the address.
func (h *Handler) mailSigninLink(email, base, ret, lang string) {
	defer h.account.reads.Done()
	s := h.signin
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		signinEvents.WithLabelValues("not_sent").Inc()
		h.logSigninFailure("too many sign-in requests under way; this one was dropped", nil)
		return
	}
	t := now()
	if h.account.down(t.UnixNano()) || !h.budget(h.account.signinBudget, "signin").take(t.UnixNano()) {
		signinEvents.WithLabelValues("not_sent").Inc()
		h.logSigninFailure("Stripe is down or too many sign-in links are asked for at once; a sign-in link was not sent", nil)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Duration(h.StripeTimeout)+mailTimeout)
	defer cancel()
	customer, _, err := h.findCustomer(ctx, email, true)
	if err != nil {
		signinEvents.WithLabelValues("not_sent").Inc()
		h.logSigninFailure("could not look the address up at Stripe; no sign-in link was sent", err)
		return
	}
	if customer == "" {
		signinEvents.WithLabelValues("not_sent").Inc()
		h.logger.Debug("sign-in asked for an address with no subscriber", zap.String("email", email))
		return
	}
	token, err := h.signinToken(customer, email, t.Add(s.ttl))
	if err != nil {
		signinEvents.WithLabelValues("mail_failed").Inc()
		h.logSigninFailure("cannot make a sign-in link", err)
		return
	}
	link := base + h.prefix + "/signin?token=" + token
	if ret != "/" {
		link += "&return=" + url.QueryEscape(ret)
	}
	site := siteName(base)
	if h.site != nil && h.site.name != "" {
		site = h.site.name // site_name, or public_url's host
	}
	msg, err := signinMail(lang, site, link, s.ttl)
	if err == nil {
		err = s.mailer.send(ctx, email, msg)
	}
	if err != nil {
		signinEvents.WithLabelValues("mail_failed").Inc()
		// The SMTP library's errors name the recipient: an address is
		// personal data, logged at debug level only.
		h.logSigninFailure("could not send a sign-in mail", errors.New(strings.ReplaceAll(err.Error(), email, "[recipient]")))
		return
	}
	signinEvents.WithLabelValues("sent").Inc()
	h.logger.Info("sign-in link sent")
	h.logger.Debug("sign-in link sent to customer", zap.String("customer", customer), zap.String("email", email))
}

// logSigninFailure logs a sign-in failure, once a minute at most.
func (h *Handler) logSigninFailure(msg string, err error) {
	if ok, n := h.signin.failures.allow(now().UnixNano()); ok {
		h.logger.Error(msg, zap.Error(err), zap.Int("failures_since_last_line", n))
	}
}

// confirmSigninLink shows the page whose button uses a link.
func (h *Handler) confirmSigninLink(w http.ResponseWriter, r *http.Request, token, ret string) error {
	link, reason := h.checkSigninLink(token, now(), false)
	if reason != "" {
		return h.refuseSigninLink(w, r, reason, ret)
	}
	d := h.signinDenial(http.StatusOK, reasonSigninConfirm, ret)
	d.Token, d.signinEmail = token, maskEmail(link.email)
	return h.writeDenial(w, r, d)
}

// useSigninLink signs the browser in as the link's customer, once.
func (h *Handler) useSigninLink(w http.ResponseWriter, r *http.Request, token, ret string) error {
	if !sameSite(r, h.publicURL) {
		// Another site posting a link it holds would sign this browser
		// in as its customer: show the page whose button confirms.
		return h.confirmSigninLink(w, r, token, ret)
	}
	t := now()
	link, reason := h.checkSigninLink(token, t, false)
	if reason != "" {
		return h.refuseSigninLink(w, r, reason, ret)
	}
	customer := link.customer
	// The cookie first: a key that cannot be loaded must not use the
	// link up.
	cookie, err := h.cookies.issue(r, customer)
	if err != nil {
		return h.unavailable(w, r, ret)
	}
	if _, reason := h.checkSigninLink(token, t, true); reason != "" {
		return h.refuseSigninLink(w, r, reason, ret) // used meanwhile
	}
	http.SetCookie(w, cookie)
	signinEvents.WithLabelValues("used").Inc()
	h.logger.Info("signed in by email link")
	h.logger.Debug("signed in by email link", zap.String("customer", customer))
	http.Redirect(w, r, ret, http.StatusSeeOther)
	return nil
}

func (h *Handler) refuseSigninLink(w http.ResponseWriter, r *http.Request, reason, ret string) error {
	signinEvents.WithLabelValues("refused").Inc()
	status := http.StatusGone
	if reason == reasonSigninLinkInvalid {
		status = http.StatusBadRequest
	}
	return h.signinPage(w, r, status, reason, ret)
}

// checkSigninLink opens a link's token at t; with use, it also marks it
// used. reason is "" for a link that works.
func (h *Handler) checkSigninLink(token string, t time.Time, use bool) (link signinLink, reason string) {
	link, ok := h.openSigninToken(token)
	switch {
	case !ok:
		return signinLink{}, reasonSigninLinkInvalid
	case !t.Before(link.expires):
		return signinLink{}, reasonSigninLinkExpired
	case !use:
		if h.linkUsed(link.id, t.UnixNano()) {
			return signinLink{}, reasonSigninLinkUsed
		}
	case !h.useLink(link.id, t.UnixNano(), link.expires.UnixNano()):
		return signinLink{}, reasonSigninLinkUsed
	}
	return link, ""
}

// useLink marks a link used, on every instance when Redis is configured
// and answers; here always, so that a link used while Redis was down, or
// before it, stays used here.
func (h *Handler) useLink(id string, t, expires int64) bool {
	first := h.account.usedSignins.use(id, t, expires)
	if h.redis.usable() {
		if sfirst, err := h.redis.useLink(id, t, expires); err == nil {
			return first && sfirst
		}
	}
	return first
}

// linkUsed reports whether a link was used, here or on any instance.
func (h *Handler) linkUsed(id string, t int64) bool {
	if h.account.usedSignins.used(id, t) {
		return true
	}
	if h.redis.usable() {
		used, err := h.redis.linkUsed(id)
		return err == nil && used
	}
	return false
}

// A sign-in token is the customer, the address the link was mailed to and
// the link's expiry, sealed with
// AES-256-GCM under a key derived from the cookie key, so that the link
// neither shows the customer ID to whoever sees the URL (mail logs, access
// logs) nor can be made without the key:
//
//	base64url( nonce[12] | seal( expiry unix seconds [8] | customer | 0 | email ) )
//
// The page that confirms a link shows the address, masked, so that a
// visitor sent someone else's link sees whose account it opens.
//
// The random nonce is also the link's ID, by which a used link is
// remembered until it expires.
const signinNonceSize = 12

// signinAEAD is the cipher of sign-in tokens, made once from the cookie key.
func (j *cookieJar) signinAEAD() (cipher.AEAD, error) {
	key, err := j.signingKey()
	if err != nil {
		return nil, err
	}
	j.keyMu.Lock()
	defer j.keyMu.Unlock()
	if j.signinCipher == nil {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("caddy-paywall sign-in link v1"))
		block, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, err
		}
		if j.signinCipher, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	return j.signinCipher, nil
}

func (h *Handler) signinToken(customer, email string, expires time.Time) (string, error) {
	aead, err := h.cookies.signinAEAD()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, signinNonceSize, signinNonceSize+8+len(customer)+1+len(email)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	plain := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(customer)+1+len(email)), uint64(expires.Unix()))
	plain = append(plain, customer...)
	plain = append(plain, 0)
	plain = append(plain, email...)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte("signin"))), nil
}

// openSigninToken reads a token made by signinToken; ok is false for
// anything else.
func (h *Handler) openSigninToken(token string) (link signinLink, ok bool) {
	aead, err := h.cookies.signinAEAD()
	if err != nil {
		return signinLink{}, false
	}
	return openSigninToken(aead, token)
}

// signinLink is what a sign-in token holds.
type signinLink struct {
	customer, email string
	expires         time.Time
	id              string // the nonce: the link's ID for single use
}

func openSigninToken(aead cipher.AEAD, token string) (signinLink, bool) {
	if len(token) > 1024 {
		return signinLink{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	// The decoder skips \r and \n: one token has one spelling.
	if err != nil || len(raw) < signinNonceSize+aead.Overhead()+8 || base64.RawURLEncoding.EncodeToString(raw) != token {
		return signinLink{}, false
	}
	nonce := raw[:signinNonceSize]
	plain, err := aead.Open(nil, nonce, raw[signinNonceSize:], []byte("signin"))
	if err != nil || len(plain) < 8 {
		return signinLink{}, false
	}
	customer, email, found := strings.Cut(string(plain[8:]), "\x00")
	if !found || !validCustomerID(customer) {
		return signinLink{}, false
	}
	return signinLink{customer: customer, email: email, expires: time.Unix(int64(binary.BigEndian.Uint64(plain[:8])), 0), id: string(nonce)}, true
}

// maskEmail shows an address as its first character, dots and its domain:
// enough for its owner to recognise it, little for whoever looks on.
func maskEmail(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" {
		return ""
	}
	first, _ := utf8.DecodeRuneInString(local)
	return string(first) + "•••@" + domain
}

// parseEmail accepts one plain address, as a visitor types it, trimmed.
func parseEmail(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxEmailLength || strings.ContainsAny(s, " <>\"(),;:\\[]") {
		return "", false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") && !strings.HasSuffix(s, "@localhost") {
		return "", false
	}
	return s, true
}

// siteName is how mails name the site: the host of its address.
func siteName(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}
