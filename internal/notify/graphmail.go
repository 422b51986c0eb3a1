package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// MailMessage is the message handed to a MailSender. Its fields match
// internal/graph's Mail (Subject, HTMLBody, TextBody, To, CC,
// InternetMessageID); when that package lands this becomes an alias.
type MailMessage struct {
	Subject           string
	HTMLBody          string
	TextBody          string
	To                []string
	CC                []string
	InternetMessageID string
}

// MailSender is the part of the Graph client GraphMail needs:
// POST /users/{mailbox}/sendMail. Errors should be *azcore.ResponseError
// (or already classified with ErrTransient / ErrPermanent).
type MailSender interface {
	SendMail(ctx context.Context, mailbox string, msg MailMessage, save bool) error
}

// GraphMailConfig configures the GraphMail channel.
type GraphMailConfig struct {
	// Name of the channel, default "graphmail".
	Name string
	// Sender is the Graph client (application permission Mail.Send,
	// ideally limited to Mailbox with an application access policy).
	Sender MailSender
	// Mailbox is the sending user or shared mailbox (UPN or object id).
	Mailbox string
	To      []string
	CC      []string
	// SaveToSentItems keeps a copy in the mailbox's Sent Items.
	SaveToSentItems bool
}

// GraphMail sends each notification through Microsoft Graph sendMail, the
// usual choice in tenants that disabled SMTP AUTH.
type GraphMail struct {
	name    string
	sender  MailSender
	mailbox string
	to, cc  []string
	save    bool
}

// NewGraphMail validates cfg, collecting every problem.
func NewGraphMail(cfg GraphMailConfig) (*GraphMail, error) {
	if cfg.Name == "" {
		cfg.Name = "graphmail"
	}
	var errs []error
	if err := ValidateChannelName(cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if cfg.Sender == nil {
		errs = append(errs, errors.New("graph mail: no sender"))
	}
	if cfg.Mailbox == "" || strings.ContainsAny(cfg.Mailbox, "/\\?#% \r\n") {
		errs = append(errs, fmt.Errorf("graph mail: invalid mailbox %q", oneLine(cfg.Mailbox, 80)))
	}
	if len(cfg.To) == 0 {
		errs = append(errs, errors.New("graph mail: no recipients"))
	}
	var to, cc []string
	for _, t := range cfg.To {
		a, err := envelopeAddress(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("graph mail to: %w", err))
		}
		to = append(to, a)
	}
	for _, t := range cfg.CC {
		a, err := envelopeAddress(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("graph mail cc: %w", err))
		}
		cc = append(cc, a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &GraphMail{name: cfg.Name, sender: cfg.Sender, mailbox: cfg.Mailbox, to: to, cc: cc, save: cfg.SaveToSentItems}, nil
}

// Name implements Channel.
func (g *GraphMail) Name() string { return g.name }

// Send implements Channel. Graph builds the MIME itself; the subject is the
// sanitised one-liner, the bodies the rendered parts, and the
// internetMessageId the deterministic MessageID.
func (g *GraphMail) Send(ctx context.Context, n pipeline.Notification, r Rendered) error {
	msg := MailMessage{
		Subject:           SanitizeSubject(r.Subject, SubjectMaxRunes+40),
		HTMLBody:          strings.ToValidUTF8(r.HTML, "\uFFFD"),
		TextBody:          stripControlText(r.Text),
		To:                append([]string(nil), g.to...),
		CC:                append([]string(nil), g.cc...),
		InternetMessageID: MessageID(n.ID),
	}
	if err := g.sender.SendMail(ctx, g.mailbox, msg, g.save); err != nil {
		return classifySenderError(g.name, err)
	}
	return nil
}

// classifySenderError maps a client error: already classified errors pass
// through, *azcore.ResponseError becomes a *StatusError (with Retry-After),
// everything else is transient.
func classifySenderError(channel string, err error) error {
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrTransient) {
		return fmt.Errorf("%s: %w", channel, err)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		se := &StatusError{Channel: channel, StatusCode: re.StatusCode, Body: oneLine(re.ErrorCode, 100)}
		if re.RawResponse != nil {
			se.RetryAfter = parseRetryAfter(re.RawResponse.Header.Get("Retry-After"), time.Now())
		}
		return se
	}
	return Transient(fmt.Errorf("%s: %w", channel, classifyContext(err)))
}
