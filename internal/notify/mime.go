package notify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
)

// MessageIDDomain is the right-hand side of every Message-ID mdeflow sends.
const MessageIDDomain = "mdeflow"

// maxRecipients caps the To list of one message.
const maxRecipients = 100

var msgIDRe = regexp.MustCompile(`^<[A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~.-]{1,250}@[A-Za-z0-9.-]{1,100}>$`)

// MessageID returns the deterministic Message-ID of a notification,
// "<notification-id@mdeflow>", so a re-send of the same notification is
// recognisable (and de-duplicated by many mail systems). Characters that are
// not allowed in a Message-ID are written as =XX; very long ids are
// shortened with a hash suffix.
func MessageID(notificationID string) string {
	var b strings.Builder
	for i := 0; i < len(notificationID); i++ {
		c := notificationID[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0 && i < len(notificationID)-1 && notificationID[i-1] != '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	local := b.String()
	if len(local) > 200 || local == "" {
		local = truncateBytes(local, 160) + "=" + shortHash(notificationID)
	}
	return "<" + local + "@" + MessageIDDomain + ">"
}

// BuildMIME builds the RFC 5322 message of a rendered notification:
// multipart/alternative with a quoted-printable text part and HTML part.
//
// Header injection is impossible by construction: addresses must parse with
// net/mail and are re-formatted from the parsed value (ASCII only; give
// international domains in punycode), the subject is sanitised again and
// RFC 2047 encoded when it is not plain ASCII, messageID must be a valid
// msg-id (pass MessageID(n.ID); a bare id is converted), and every header
// line is checked for stray CR/LF before the message is returned.
func BuildMIME(from string, to []string, r Rendered, messageID string, date time.Time) ([]byte, error) {
	var errs []error
	fromAddr, err := parseASCIIAddress(from)
	if err != nil {
		errs = append(errs, fmt.Errorf("from: %w", err))
	}
	if len(to) == 0 {
		errs = append(errs, errors.New("no recipients"))
	}
	if len(to) > maxRecipients {
		errs = append(errs, fmt.Errorf("%d recipients, at most %d", len(to), maxRecipients))
	}
	toAddrs := make([]string, 0, len(to))
	for _, t := range to {
		a, err := parseASCIIAddress(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("to: %w", err))
			continue
		}
		toAddrs = append(toAddrs, a)
	}
	if !strings.HasPrefix(messageID, "<") {
		messageID = MessageID(messageID)
	}
	if !msgIDRe.MatchString(messageID) {
		errs = append(errs, fmt.Errorf("invalid Message-ID %q", oneLine(messageID, 80)))
	}
	if date.IsZero() {
		errs = append(errs, errors.New("no date"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, Permanent(fmt.Errorf("building e-mail: %w", err))
	}

	subject := SanitizeSubject(r.Subject, SubjectMaxRunes+40)
	if subject == "" {
		subject = "(no subject)"
	}

	textQP, err := qpEncode(stripControlText(r.Text))
	if err != nil {
		return nil, fmt.Errorf("encoding text part: %w", err)
	}
	htmlQP, err := qpEncode(strings.ToValidUTF8(r.HTML, "\uFFFD"))
	if err != nil {
		return nil, fmt.Errorf("encoding HTML part: %w", err)
	}
	// "=_" can never occur in quoted-printable output ('=' is always
	// followed by two hex digits or a line break), so this boundary cannot
	// collide with a body, whatever the alert contains.
	sum := sha256.Sum256([]byte(messageID + "\x00" + r.Text + "\x00" + r.HTML))
	boundary := "=_mdeflow_" + hex.EncodeToString(sum[:12])

	var buf bytes.Buffer
	headers := [][2]string{
		{"Date", date.Format(time.RFC1123Z)},
		{"From", fromAddr},
		{"To", strings.Join(toAddrs, ", ")},
		{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		{"Message-ID", messageID},
		{"MIME-Version", "1.0"},
		// RFC 3834: no auto-replies; Exchange-specific equivalent.
		{"Auto-Submitted", "auto-generated"},
		{"X-Auto-Response-Suppress", "All"},
		{"Content-Type", `multipart/alternative; boundary="` + boundary + `"`},
	}
	for _, h := range headers {
		line := foldHeader(h[0], h[1])
		if err := checkHeaderLine(line); err != nil {
			return nil, Permanent(fmt.Errorf("building e-mail header %s: %w", h[0], err))
		}
		buf.WriteString(line)
	}
	buf.WriteString("\r\n")

	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, fmt.Errorf("setting MIME boundary: %w", err)
	}
	for _, part := range []struct {
		ctype string
		body  []byte
	}{
		{"text/plain; charset=utf-8", textQP},
		{"text/html; charset=utf-8", htmlQP},
	} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, fmt.Errorf("creating MIME part: %w", err)
		}
		if _, err := w.Write(part.body); err != nil {
			return nil, fmt.Errorf("writing MIME part: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("closing MIME message: %w", err)
	}
	buf.WriteString("\r\n")
	return buf.Bytes(), nil
}

// shortHash is 24 hex characters of SHA-256.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

// parseASCIIAddress parses exactly one address and returns it re-formatted
// by net/mail (display names are quoted or RFC 2047 encoded by String).
func parseASCIIAddress(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("address %q contains a line break", oneLine(s, 80))
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("parsing address %q: %w", oneLine(s, 80), err)
	}
	for _, r := range a.Address {
		if r > 0x7e || r < 0x21 {
			return "", fmt.Errorf("address %q is not ASCII (use punycode for the domain)", oneLine(s, 80))
		}
	}
	out := a.String()
	if strings.ContainsAny(out, "\r\n") {
		return "", fmt.Errorf("address %q does not format to one line", oneLine(s, 80))
	}
	return out, nil
}

// qpEncode quoted-printable encodes s with CRLF line ends.
func qpEncode(s string) ([]byte, error) {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// foldHeader writes "Name: value\r\n", folding at spaces so lines stay
// under 78 characters where possible (RFC 5322 §2.2.3). value must already
// be free of CR and LF.
func foldHeader(name, value string) string {
	const limit = 76
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(":")
	lineLen := len(name) + 1
	for i, word := range strings.Split(value, " ") {
		// Fold before a word that would overflow the line; before the
		// first word too ("Subject:" CRLF SP word) when that helps.
		if lineLen+1+len(word) > limit && (i > 0 || 1+len(word) <= limit) {
			b.WriteString("\r\n")
			lineLen = 0
		}
		b.WriteString(" ")
		b.WriteString(word)
		lineLen += 1 + len(word)
	}
	b.WriteString("\r\n")
	return b.String()
}

// checkHeaderLine verifies a folded header: CR only in CRLF, every
// continuation line starts with white space, no other control characters,
// no line over 998 octets.
func checkHeaderLine(h string) error {
	lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
	for i, l := range lines {
		if i > 0 && !strings.HasPrefix(l, " ") {
			return errors.New("continuation line without leading space")
		}
		if len(l) > 998 {
			return errors.New("line longer than 998 octets")
		}
		for _, r := range l {
			if isControl(r) && r != '\t' {
				return fmt.Errorf("control character %U in header", r)
			}
		}
	}
	return nil
}
