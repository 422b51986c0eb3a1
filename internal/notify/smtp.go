package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// SMTP transport security modes.
const (
	// SMTPStartTLS connects in plain text and requires STARTTLS before
	// anything else is sent (port 587). The default.
	SMTPStartTLS = "starttls"
	// SMTPImplicitTLS speaks TLS from the first byte (SMTPS, port 465).
	SMTPImplicitTLS = "tls"
	// SMTPPlaintext sends without TLS. Only accepted when Host is a loopback
	// address (tests, a local relay); never for a remote server.
	SMTPPlaintext = "none"
)

// SMTP authentication mechanisms.
const (
	SMTPAuthPlain = "plain"
	SMTPAuthLogin = "login"
)

// SMTPConfig configures the SMTP channel.
type SMTPConfig struct {
	// Name of the channel, default "smtp".
	Name string
	Host string
	// Port, default 587 (465 for SMTPImplicitTLS).
	Port int
	From string
	To   []string
	// Username and Password enable SMTP AUTH (over TLS only, except on
	// loopback). Never logged.
	Username string
	Password string
	// Auth is SMTPAuthPlain (default) or SMTPAuthLogin (Office 365 and
	// some older servers only offer LOGIN).
	Auth string
	// Security is SMTPStartTLS (default), SMTPImplicitTLS or SMTPPlaintext.
	Security string
	// TLSConfig overrides the TLS settings (for example RootCAs of a
	// private CA). ServerName defaults to Host. Certificates are always
	// verified unless the caller sets InsecureSkipVerify itself.
	TLSConfig *tls.Config
	// Timeout bounds the dial, each command and the final submission,
	// default 30s. The context deadline, when earlier, wins.
	Timeout time.Duration
}

// SMTP sends each notification as one e-mail through an SMTP submission
// server.
type SMTP struct {
	name     string
	addr     string
	host     string
	from     string
	to       []string // envelope addresses
	headerTo []string // as configured, for the To header
	username string
	password string
	auth     string
	security string
	tls      *tls.Config
	timeout  time.Duration
}

// NewSMTP validates cfg, collecting every problem.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	if cfg.Name == "" {
		cfg.Name = "smtp"
	}
	if cfg.Security == "" {
		cfg.Security = SMTPStartTLS
	}
	if cfg.Port == 0 {
		cfg.Port = 587
		if cfg.Security == SMTPImplicitTLS {
			cfg.Port = 465
		}
	}
	if cfg.Auth == "" {
		cfg.Auth = SMTPAuthPlain
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	var errs []error
	if err := ValidateChannelName(cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if cfg.Host == "" || strings.ContainsAny(cfg.Host, " /\r\n") {
		errs = append(errs, fmt.Errorf("smtp: invalid host %q", oneLine(cfg.Host, 80)))
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("smtp: invalid port %d", cfg.Port))
	}
	switch cfg.Security {
	case SMTPStartTLS, SMTPImplicitTLS:
	case SMTPPlaintext:
		if !isLoopbackHost(cfg.Host) {
			errs = append(errs, fmt.Errorf("smtp: security %q is only allowed for a loopback host, not %q", SMTPPlaintext, oneLine(cfg.Host, 80)))
		}
	default:
		errs = append(errs, fmt.Errorf("smtp: security %q is not %q, %q or %q", oneLine(cfg.Security, 20), SMTPStartTLS, SMTPImplicitTLS, SMTPPlaintext))
	}
	switch cfg.Auth {
	case SMTPAuthPlain, SMTPAuthLogin:
	default:
		errs = append(errs, fmt.Errorf("smtp: auth %q is not %q or %q", oneLine(cfg.Auth, 20), SMTPAuthPlain, SMTPAuthLogin))
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		errs = append(errs, errors.New("smtp: set both username and password, or neither"))
	}
	if _, err := parseASCIIAddress(cfg.From); err != nil {
		errs = append(errs, fmt.Errorf("smtp from: %w", err))
	}
	if len(cfg.To) == 0 {
		errs = append(errs, errors.New("smtp: no recipients"))
	}
	var to []string
	for _, t := range cfg.To {
		a, err := envelopeAddress(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("smtp to: %w", err))
			continue
		}
		to = append(to, a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Host
	}
	return &SMTP{
		name: cfg.Name, addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), host: cfg.Host,
		from: cfg.From, to: to, headerTo: append([]string(nil), cfg.To...), username: cfg.Username, password: cfg.Password, auth: cfg.Auth,
		security: cfg.Security, tls: tc, timeout: cfg.Timeout,
	}, nil
}

// Name implements Channel.
func (s *SMTP) Name() string { return s.name }

// Send implements Channel: one connection per message (a Functions
// invocation sends a handful at most), STARTTLS before AUTH, then MAIL,
// RCPT, DATA and QUIT. 4xx replies and network errors are transient, 5xx
// replies and certificate failures permanent.
func (s *SMTP) Send(ctx context.Context, n pipeline.Notification, r Rendered) error {
	fromEnv, err := envelopeAddress(s.from)
	if err != nil {
		return Permanent(err)
	}
	headerTo, rcpts := s.headerTo, s.to
	if len(n.Recipients) > 0 {
		headerTo = recipientsOf(n, s.headerTo)
		rcpts = headerTo
	}
	msg, err := BuildMIME(s.from, headerTo, r, MessageID(n.ID), messageDate(n))
	if err != nil {
		return err
	}
	if err := s.send(ctx, fromEnv, rcpts, msg); err != nil {
		return classifySMTP(s.name, err)
	}
	return nil
}

func (s *SMTP) send(ctx context.Context, from string, rcpts []string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 3*s.timeout)
	defer cancel()
	d := net.Dialer{Timeout: s.timeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", s.addr, err)
	}
	// Closing the connection is the only way to interrupt a blocked
	// read or write of the SMTP client when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	var c *smtp.Client
	switch s.security {
	case SMTPImplicitTLS:
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("TLS handshake with %s: %w", s.addr, err)
		}
		c = smtp.NewClient(tc)
	case SMTPStartTLS:
		c, err = smtp.NewClientStartTLS(conn, s.tls)
		if err != nil {
			conn.Close()
			return fmt.Errorf("starting TLS with %s: %w", s.addr, err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout = s.timeout
	c.SubmissionTimeout = s.timeout

	if s.username != "" {
		var a sasl.Client
		mech := sasl.Plain
		if s.auth == SMTPAuthLogin {
			mech = sasl.Login
			a = sasl.NewLoginClient(s.username, s.password)
		} else {
			a = sasl.NewPlainClient("", s.username, s.password)
		}
		if !c.SupportsAuth(mech) {
			return Permanent(fmt.Errorf("server %s does not offer AUTH %s", s.addr, mech))
		}
		if err := c.Auth(a); err != nil {
			return fmt.Errorf("authenticating as configured user: %w", err)
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, rcpt := range rcpts {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("writing message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("submitting message: %w", err)
	}
	// The message is accepted once DATA is acknowledged; a failed QUIT
	// does not make it undelivered.
	_ = c.Quit()
	return nil
}

// classifySMTP maps SMTP replies: 4xx transient, 5xx permanent; TLS
// certificate failures permanent; everything else (network) transient.
func classifySMTP(channel string, err error) error {
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrTransient) {
		return fmt.Errorf("%s: %w", channel, err)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Code >= 500 {
			return Permanent(fmt.Errorf("%s: %w", channel, err))
		}
		return Transient(fmt.Errorf("%s: %w", channel, err))
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) || strings.Contains(err.Error(), "doesn't support STARTTLS") {
		return Permanent(fmt.Errorf("%s: %w", channel, err))
	}
	return Transient(fmt.Errorf("%s: %w", channel, err))
}

// envelopeAddress returns the bare addr-spec for MAIL FROM / RCPT TO.
func envelopeAddress(s string) (string, error) {
	if _, err := parseASCIIAddress(s); err != nil {
		return "", err
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}
