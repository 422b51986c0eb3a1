package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"strings"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// Mail is a notification e-mail. Subject and bodies may carry alert text:
// the HTML body must already be escaped by its renderer; the subject is
// stripped of control characters here.
type Mail struct {
	Subject  string
	HTMLBody string // sent when non-empty
	TextBody string // sent when HTMLBody is empty
	To, CC   []string
	// InternetMessageID, when set, is the RFC 5322 Message-ID ("<id@host>"),
	// so that a redelivered notification can be recognised.
	InternetMessageID string
}

var (
	// mailboxRe accepts a UPN / SMTP address without characters that could
	// change the URL path (/ ? # % \).
	mailboxRe   = regexp.MustCompile(`^[A-Za-z0-9._+\-'!$&*=^{|}~]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}))+$`)
	guidRe      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	messageIDRe = regexp.MustCompile(`^<[A-Za-z0-9.!#$%&'*+/=?^_{|}~\-]{1,200}@[A-Za-z0-9.\-]{1,200}>$`)
)

// ValidateMailbox checks the {id | userPrincipalName} of /users/{mailbox}.
func ValidateMailbox(mailbox string) error {
	if len(mailbox) > 254 || (!mailboxRe.MatchString(mailbox) && !guidRe.MatchString(mailbox)) {
		return &mde.InvalidIDError{Kind: "mailbox", Value: mailbox}
	}
	return nil
}

type emailAddress struct {
	Address string `json:"address"`
}

type recipient struct {
	EmailAddress emailAddress `json:"emailAddress"`
}

type itemBody struct {
	ContentType string `json:"contentType"`
	Content     string `json:"content"`
}

type message struct {
	Subject           string      `json:"subject"`
	Body              itemBody    `json:"body"`
	ToRecipients      []recipient `json:"toRecipients"`
	CcRecipients      []recipient `json:"ccRecipients,omitempty"`
	InternetMessageID string      `json:"internetMessageId,omitempty"`
}

type sendMailBody struct {
	Message         message `json:"message"`
	SaveToSentItems bool    `json:"saveToSentItems"`
}

// SendMail sends msg from mailbox (POST /users/{mailbox}/sendMail, 202).
func (c *Client) SendMail(ctx context.Context, mailbox string, msg Mail, saveToSentItems bool) error {
	if err := ValidateMailbox(mailbox); err != nil {
		return fmt.Errorf("sending mail: %w", err)
	}
	body, err := buildMessage(msg)
	if err != nil {
		return fmt.Errorf("sending mail from %s: %w: %w", mailbox, mde.ErrInvalidArgument, err)
	}
	err = c.send(ctx, "SendMail", FamilyMail, http.MethodPost, c.endpoint(nil, "users", mailbox, "sendMail"),
		sendMailBody{Message: body, SaveToSentItems: saveToSentItems}, []int{http.StatusAccepted}, nil, nil)
	if err != nil {
		return fmt.Errorf("sending mail from %s: %w", mailbox, err)
	}
	return nil
}

func buildMessage(msg Mail) (message, error) {
	var errs []error
	m := message{Subject: cleanHeader(msg.Subject), InternetMessageID: msg.InternetMessageID}
	if m.Subject == "" {
		errs = append(errs, errors.New("empty subject"))
	}
	switch {
	case msg.HTMLBody != "":
		m.Body = itemBody{ContentType: "HTML", Content: msg.HTMLBody}
	case msg.TextBody != "":
		m.Body = itemBody{ContentType: "Text", Content: msg.TextBody}
	default:
		errs = append(errs, errors.New("empty body"))
	}
	if len(msg.To) == 0 {
		errs = append(errs, errors.New("no recipient"))
	}
	for _, list := range []struct {
		dst  *[]recipient
		addr []string
	}{{&m.ToRecipients, msg.To}, {&m.CcRecipients, msg.CC}} {
		for _, a := range list.addr {
			if err := checkAddress(a); err != nil {
				errs = append(errs, err)
				continue
			}
			*list.dst = append(*list.dst, recipient{emailAddress{Address: a}})
		}
	}
	if msg.InternetMessageID != "" && !messageIDRe.MatchString(msg.InternetMessageID) {
		errs = append(errs, fmt.Errorf("internet message id %q: want <id@host>", msg.InternetMessageID))
	}
	return m, errors.Join(errs...)
}

// checkAddress accepts a bare addr-spec only (no display name, no header
// folding), so that no recipient can smuggle extra headers or addresses.
func checkAddress(a string) error {
	if strings.ContainsAny(a, "\r\n,;<>\"") {
		return fmt.Errorf("recipient %q: not a bare e-mail address", a)
	}
	p, err := mail.ParseAddress(a)
	if err != nil || p.Name != "" || p.Address != a {
		return fmt.Errorf("recipient %q: not a bare e-mail address", a)
	}
	return nil
}

// cleanHeader replaces control characters (CR/LF header injection, tabs,
// NUL) by spaces and trims.
func cleanHeader(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
