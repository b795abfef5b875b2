package paywall

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// EmailConfig is how the paywall sends sign-in links: an SMTP server that
// accepts mail from this site.
type EmailConfig struct {
	// The SMTP server, host:port. Required.
	SMTP string `json:"smtp,omitempty"`

	// The SMTP login, when the server wants one. Placeholders such as
	// `{env.SMTP_USER}` are resolved when the handler is provisioned.
	Username string `json:"username,omitempty"`

	// The SMTP password. Name it with a placeholder, such as
	// `{env.SMTP_PASSWORD}`: it is never logged nor shown in errors, but
	// Caddy's admin API shows the config as written.
	Password string `json:"password,omitempty"`

	// The sender, such as `Example News <news@example.com>`. Required.
	From string `json:"from,omitempty"`

	// How the connection is encrypted: `starttls` (the default; required,
	// never skipped), `implicit` (TLS from the first byte; the default on
	// port 465), or `off`, only for a relay on this machine.
	TLS string `json:"tls,omitempty"`
}

// mailTimeout bounds one delivery to the SMTP server.
const mailTimeout = 20 * time.Second

// mailer delivers one message.
type mailer interface {
	send(ctx context.Context, to string, m message) error
}

// message is a mail in plain text and HTML.
type message struct {
	Subject, Text, HTML, Lang string
}

// smtpMailer sends through an SMTP server with go-mail.
type smtpMailer struct {
	host     string
	port     int
	tls      string
	username string
	password string
	from     string
}

// newSMTPMailer checks an email block whose placeholders are resolved; its
// errors name the option and never the password.
func newSMTPMailer(c EmailConfig) (*smtpMailer, error) {
	host, portStr, err := net.SplitHostPort(c.SMTP)
	port, perr := strconv.Atoi(portStr)
	if c.SMTP == "" {
		return nil, errors.New("email: smtp <host:port> is required")
	}
	if err != nil || host == "" || perr != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("email: smtp %q must be host:port, such as smtp.example.com:587", c.SMTP)
	}
	if c.From == "" {
		return nil, errors.New(`email: from is required, such as "Example News <news@example.com>"`)
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("email: from %q is not an address, such as \"Example News <news@example.com>\"", c.From)
	}
	m := &smtpMailer{host: host, port: port, tls: c.TLS, username: c.Username, password: c.Password, from: from.String()}
	switch c.TLS {
	case "":
		m.tls = "starttls"
		if port == 465 {
			m.tls = "implicit"
		}
	case "starttls", "implicit", "off":
	default:
		return nil, fmt.Errorf("email: tls %q must be starttls, implicit or off", c.TLS)
	}
	if c.Password != "" && c.Username == "" {
		return nil, errors.New("email: password is set but username is not")
	}
	return m, nil
}

func (m *smtpMailer) send(ctx context.Context, to string, msg message) error {
	opts := []gomail.Option{gomail.WithPort(m.port), gomail.WithTimeout(mailTimeout)}
	switch m.tls {
	case "implicit":
		opts = append(opts, gomail.WithSSL())
	case "off":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if m.username != "" {
		auth := gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover) // the strongest the server offers
		if m.tls == "off" {
			// Autodiscovery never sends a password in the clear; tls off
			// is for a relay on this machine, where PLAIN and LOGIN are
			// what relays offer.
			auth = gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthCramMD5,
				gomail.SMTPAuthPlainNoEnc, gomail.SMTPAuthLoginNoEnc)
		}
		opts = append(opts, auth, gomail.WithUsername(m.username), gomail.WithPassword(m.password))
	}
	c, err := gomail.NewClient(m.host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	ms := gomail.NewMsg()
	if err := ms.From(m.from); err != nil {
		return err
	}
	if err := ms.To(to); err != nil {
		return err
	}
	ms.Subject(msg.Subject)
	ms.SetGenHeader(gomail.HeaderContentLang, msg.Lang)
	ms.SetGenHeader("Auto-Submitted", "auto-generated")
	ms.SetMessageID()
	ms.SetDate()
	ms.SetBodyString(gomail.TypeTextPlain, msg.Text)
	ms.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	if err := c.DialAndSendWithContext(ctx, ms); err != nil {
		return fmt.Errorf("smtp %s: %w", net.JoinHostPort(m.host, strconv.Itoa(m.port)), err)
	}
	return nil
}

// signinMailHTML is the HTML part of the sign-in mail.
var signinMailHTML = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="{{.Lang}}"><body style="font-family:sans-serif;line-height:1.5;max-width:36em">
<p>{{.Intro}}</p>
<p><a href="{{.Link}}" style="display:inline-block;padding:.6em 1.2em;background:#1a56db;color:#fff;border-radius:6px;text-decoration:none">{{.Button}}</a></p>
<p>{{.Lifetime}}</p>
<p style="color:#555">{{.Ignore}}</p>
<p style="color:#555;font-size:.9em">{{.Plain}}<br>{{.Link}}</p>
</body></html>
`))

// signinMail composes the sign-in mail in lang: the site's name, the link,
// how long it lasts, and what to do if it was not asked for.
func signinMail(lang, site, link string, ttl time.Duration) (message, error) {
	strs := mailStrings[lang]
	if strs == nil {
		lang, strs = defaultLanguage, mailStrings[defaultLanguage]
	}
	minutes := strconv.Itoa(max(1, int(ttl/time.Minute)))
	r := strings.NewReplacer("{site}", site, "{minutes}", minutes)
	t := func(k string) string { return r.Replace(strs[k]) }
	m := message{Lang: lang, Subject: t("subject")}
	m.Text = t("intro") + "\n\n" + link + "\n\n" + t("lifetime") + "\n\n" + t("ignore") + "\n"
	var b strings.Builder
	err := signinMailHTML.Execute(&b, map[string]string{
		"Lang": lang, "Intro": t("intro"), "Link": link, "Button": t("button"),
		"Lifetime": t("lifetime"), "Ignore": t("ignore"), "Plain": t("plain"),
	})
	m.HTML = b.String()
	return m, err
}

// mailStrings are the sign-in mail's words, by language: each
// strings_<lang>.go adds its own with addMailLanguage, beside the page's.
var mailStrings = map[string]map[string]string{}

// addMailLanguage registers the sign-in mail's words in one language.
func addMailLanguage(lang string, strs map[string]string) {
	if _, dup := mailStrings[lang]; dup {
		panic("paywall: mail language " + lang + " added twice")
	}
	mailStrings[lang] = strs
}
