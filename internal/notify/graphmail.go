package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/mdeflow/mdeflow/internal/graph"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// MailMessage is the message handed to a MailSender: internal/graph's Mail
// (Subject, HTMLBody, TextBody, To, CC, InternetMessageID).
type MailMessage = graph.Mail

// MailSender is the part of the Graph client GraphMail needs:
// POST /users/{mailbox}/sendMail. *graph.Client implements it; its errors
// are *mde.Error (status code, Retry-After) or mde.ErrInvalidArgument.
type MailSender interface {
	SendMail(ctx context.Context, mailbox string, msg graph.Mail, save bool) error
}

var _ MailSender = (*graph.Client)(nil)

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
	if err := graph.ValidateMailbox(cfg.Mailbox); err != nil {
		errs = append(errs, fmt.Errorf("graph mail: %w", err))
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
		To:                recipientsOf(n, g.to),
		CC:                append([]string(nil), g.cc...),
		InternetMessageID: MessageID(n.ID),
	}
	if err := g.sender.SendMail(ctx, g.mailbox, msg, g.save); err != nil {
		return classifySenderError(g.name, err)
	}
	return nil
}

// classifySenderError maps a Graph client error: already classified errors
// pass through; *mde.Error and *azcore.ResponseError become a *StatusError
// (with Retry-After); invalid arguments and untrusted certificates are
// permanent; everything else (network, deadlines) is transient.
func classifySenderError(channel string, err error) error {
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrTransient) {
		return fmt.Errorf("%s: %w", channel, err)
	}
	var me *mde.Error
	if errors.As(err, &me) {
		return &StatusError{Channel: channel, StatusCode: me.StatusCode, RetryAfter: me.RetryAfter, Body: oneLine(me.Code, 100)}
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		se := &StatusError{Channel: channel, StatusCode: re.StatusCode, Body: oneLine(re.ErrorCode, 100)}
		if re.RawResponse != nil {
			se.RetryAfter = parseRetryAfter(re.RawResponse.Header.Get("Retry-After"), time.Now())
		}
		return se
	}
	var cve *tls.CertificateVerificationError
	if errors.Is(err, mde.ErrInvalidArgument) || errors.As(err, &cve) {
		return Permanent(fmt.Errorf("%s: %w", channel, err))
	}
	return Transient(fmt.Errorf("%s: %w", channel, classifyContext(err)))
}
