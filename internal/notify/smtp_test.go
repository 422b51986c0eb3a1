package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testCert returns a self-signed certificate for 127.0.0.1 and localhost and
// a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mdeflow test SMTP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// receivedMail is one message accepted by the test server.
type receivedMail struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	User string
}

// smtpBackend records messages. Mail, Rcpt and Data require AUTH when a
// user is configured.
type smtpBackend struct {
	user, pass string
	login      bool // offer LOGIN instead of PLAIN
	rcptErr    error

	mu   sync.Mutex
	msgs []receivedMail
}

func (b *smtpBackend) messages() []receivedMail {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]receivedMail(nil), b.msgs...)
}

func (b *smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{b: b, c: c}, nil
}

type smtpSession struct {
	b    *smtpBackend
	c    *smtp.Conn
	user string
	from string
	to   []string
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (s *smtpSession) AuthMechanisms() []string {
	if s.b.login {
		return []string{sasl.Login}
	}
	return []string{sasl.Plain}
}

func (s *smtpSession) check(user, pass string) error {
	if user != s.b.user || pass != s.b.pass {
		return smtp.ErrAuthFailed
	}
	s.user = user
	return nil
}

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech == sasl.Login && s.b.login {
		return &loginServer{check: s.check}, nil
	}
	if mech != sasl.Plain || s.b.login {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error { return s.check(user, pass) }), nil
}

func (s *smtpSession) authed() error {
	if s.b.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if err := s.authed(); err != nil {
		return err
	}
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.authed(); err != nil {
		return err
	}
	if s.b.rcptErr != nil {
		return s.b.rcptErr
	}
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	if err := s.authed(); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, receivedMail{From: s.from, To: s.to, Data: data, TLS: isTLS, User: s.user})
	s.b.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (go-sasl only has the
// client): username in the initial response, then "Password:".
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// startSMTP runs a go-smtp server on 127.0.0.1; tlsCert nil disables
// STARTTLS.
func startSMTP(t *testing.T, be *smtpBackend, cert *tls.Certificate) (host string, port int) {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.MaxMessageBytes = 1 << 20
	if cert != nil {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	h, p, _ := net.SplitHostPort(l.Addr().String())
	port, _ = strconv.Atoi(p)
	return h, port
}

func TestSMTPDeliversOverSTARTTLS(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	n := loadNotification(t, "alert_notification.json")
	r, err := Render(n, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{SMTPAuthPlain, SMTPAuthLogin} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			be := &smtpBackend{user: "relay@contoso.com", pass: "s3cret pass", login: mech == SMTPAuthLogin}
			host, port := startSMTP(t, be, &cert)
			ch, err := NewSMTP(SMTPConfig{
				Host: host, Port: port, From: "mdeflow <mdeflow@contoso.com>", To: []string{"soc@contoso.com", "Duty <duty@contoso.com>"},
				Username: "relay@contoso.com", Password: "s3cret pass", Auth: mech,
				TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Timeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ch.Send(context.Background(), n, r); err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := be.messages()
			if len(msgs) != 1 {
				t.Fatalf("server received %d messages", len(msgs))
			}
			m := msgs[0]
			if !m.TLS || m.User != "relay@contoso.com" {
				t.Errorf("TLS=%v user=%q, want STARTTLS and AUTH", m.TLS, m.User)
			}
			if m.From != "mdeflow@contoso.com" || strings.Join(m.To, ",") != "soc@contoso.com,duty@contoso.com" {
				t.Errorf("envelope from %q to %v", m.From, m.To)
			}
			p := parseMIME(t, m.Data)
			if p.Subject != r.Subject {
				t.Errorf("subject %q, want %q", p.Subject, r.Subject)
			}
			if got := p.Header.Get("Message-ID"); got != "<notif-alert-da637472900382838869_1364969609@mdeflow>" {
				t.Errorf("Message-ID %q", got)
			}
			if got := p.Header.Get("Date"); got != "Tue, 26 Jan 2021 20:35:01 +0000" {
				t.Errorf("Date %q, want the notification's creation time", got)
			}
			if !strings.Contains(p.Text, "Policy version:    2024-05-01.3") || !strings.Contains(p.HTML, `href="https://security.microsoft.com/alerts/da637472900382838869_1364969609"`) {
				t.Errorf("parts incomplete:\n%s", p.Text)
			}
		})
	}
}

func TestSMTPErrors(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	n := loadNotification(t, "alert_notification.json")
	r, _ := Render(n, RenderOptions{})
	tlsOK := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	tests := []struct {
		name      string
		be        *smtpBackend
		noTLS     bool // server does not offer STARTTLS
		cfg       func(c *SMTPConfig)
		permanent bool
	}{
		{name: "server without STARTTLS", be: &smtpBackend{}, noTLS: true, permanent: true},
		{name: "wrong password", be: &smtpBackend{user: "u", pass: "right"}, cfg: func(c *SMTPConfig) { c.Username, c.Password = "u", "wrong" }, permanent: true},
		{name: "mechanism not offered", be: &smtpBackend{user: "u", pass: "p", login: true}, cfg: func(c *SMTPConfig) { c.Username, c.Password = "u", "p" }, permanent: true},
		{name: "mailbox full 452", be: &smtpBackend{rcptErr: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}}},
		{name: "no such user 550", be: &smtpBackend{rcptErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}, permanent: true},
		{name: "untrusted certificate", be: &smtpBackend{}, cfg: func(c *SMTPConfig) { c.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12} }, permanent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &cert
			if tc.noTLS {
				c = nil
			}
			host, port := startSMTP(t, tc.be, c)
			cfg := SMTPConfig{Host: host, Port: port, From: "a@contoso.com", To: []string{"b@contoso.com"}, TLSConfig: tlsOK, Timeout: 5 * time.Second}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			ch, err := NewSMTP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = ch.Send(context.Background(), n, r)
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := !IsTransient(err); got != tc.permanent {
				t.Errorf("permanent = %v, want %v (err %v)", got, tc.permanent, err)
			}
			if len(tc.be.messages()) != 0 {
				t.Error("a message was delivered")
			}
			if strings.Contains(err.Error(), "right") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestSMTPConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ch, err := NewSMTP(SMTPConfig{Host: "127.0.0.1", Port: port, From: "a@contoso.com", To: []string{"b@contoso.com"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = ch.Send(context.Background(), loadNotification(t, "alert_notification.json"), Rendered{Subject: "s", Text: "t", HTML: "h"})
	if err == nil || !errors.Is(err, ErrTransient) {
		t.Errorf("err = %v, want transient", err)
	}
}

func TestSMTPPlaintextOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	be := &smtpBackend{}
	host, port := startSMTP(t, be, nil)
	ch, err := NewSMTP(SMTPConfig{Host: host, Port: port, Security: SMTPPlaintext, From: "a@contoso.com", To: []string{"b@contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Send(context.Background(), loadNotification(t, "alert_notification.json"), Rendered{Subject: "s", Text: "t", HTML: "h"}); err != nil {
		t.Fatal(err)
	}
	if m := be.messages(); len(m) != 1 || m[0].TLS {
		t.Fatalf("messages %+v", m)
	}
	if _, err := NewSMTP(SMTPConfig{Host: "smtp.office365.com", Security: SMTPPlaintext, From: "a@contoso.com", To: []string{"b@contoso.com"}}); err == nil {
		t.Error("plaintext to a remote host accepted")
	}
}

func TestNewSMTPCollectsProblems(t *testing.T) {
	t.Parallel()
	_, err := NewSMTP(SMTPConfig{Name: "bad name!", Host: "", Port: 70000, Security: "ssl", Auth: "cram", Username: "u", From: "nope", To: []string{"x@y.example\r\nBcc: z@evil"}})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"channel name", "host", "port", "security", "auth", "username and password", "from", "to"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}
