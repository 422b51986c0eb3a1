package notify

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"
)

// parsedMail is a message decoded back with the standard library, the way a
// mail client would.
type parsedMail struct {
	Header  mail.Header
	Subject string
	Text    string
	HTML    string
}

func parseMIME(t *testing.T, raw []byte) parsedMail {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("message has a bare LF")
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("reading message: %v", err)
	}
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("decoding subject: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q: %v", m.Header.Get("Content-Type"), err)
	}
	p := parsedMail{Header: m.Header, Subject: subj}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading part: %v", err)
		}
		if cte := part.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
			t.Fatalf("part encoding %q", cte)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(part))
		if err != nil {
			t.Fatalf("decoding part: %v", err)
		}
		switch ct := part.Header.Get("Content-Type"); ct {
		case "text/plain; charset=utf-8":
			p.Text = string(body)
		case "text/html; charset=utf-8":
			p.HTML = string(body)
		default:
			t.Fatalf("unexpected part %q", ct)
		}
	}
	return p
}

func TestBuildMIMERoundTrip(t *testing.T) {
	t.Parallel()
	r := Rendered{
		Subject: "[mdeflow] Hohe Priorität: Überprüfung — 検出 " + strings.Repeat("lang ", 20),
		Text:    "line one\nline two with = sign and a very long line " + strings.Repeat("x", 200) + "\n",
		HTML:    "<p>Grüße</p>\n<p>" + strings.Repeat("y", 300) + "</p>",
	}
	date := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("CET", 3600))
	raw, err := BuildMIME("Zoë Bot <bot@contoso.com>", []string{"soc@contoso.com", "Team <team@contoso.com>"}, r, MessageID("notif/1 ü"), date)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 78 && !strings.HasPrefix(line, "<p>") {
			t.Errorf("line longer than 78 octets: %q", line)
		}
	}
	p := parseMIME(t, raw)
	if want := SanitizeSubject(r.Subject, 0); p.Subject != want {
		t.Errorf("subject = %q, want %q", p.Subject, want)
	}
	if p.Text != strings.ReplaceAll(r.Text, "\n", "\r\n") || p.HTML != strings.ReplaceAll(r.HTML, "\n", "\r\n") {
		t.Errorf("bodies do not round-trip:\n%q\n%q", p.Text, p.HTML)
	}
	if got := p.Header.Get("Message-ID"); got != "<notif=2F1=20=C3=BC@mdeflow>" {
		t.Errorf("Message-ID = %q", got)
	}
	if got, err := p.Header.Date(); err != nil || !got.Equal(date) {
		t.Errorf("Date = %v, %v", got, err)
	}
	from, err := p.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Zoë Bot" || from[0].Address != "bot@contoso.com" {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := p.Header.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Address != "team@contoso.com" {
		t.Errorf("To = %v, %v", to, err)
	}
	if p.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Error("Auto-Submitted missing")
	}
	// Deterministic: the same input gives the same bytes (a re-send is
	// byte-identical).
	again, _ := BuildMIME("Zoë Bot <bot@contoso.com>", []string{"soc@contoso.com", "Team <team@contoso.com>"}, r, MessageID("notif/1 ü"), date)
	if !bytes.Equal(raw, again) {
		t.Error("BuildMIME is not deterministic")
	}
}

func TestBuildMIMERejectsInjection(t *testing.T) {
	t.Parallel()
	r := Rendered{Subject: "s", Text: "t", HTML: "h"}
	date := time.Unix(1700000000, 0)
	tests := []struct {
		name      string
		from      string
		to        []string
		messageID string
	}{
		{"CRLF in from", "a@b.example\r\nBcc: victim@evil.example", []string{"x@y.example"}, "<a@mdeflow>"},
		{"CRLF in to", "a@b.example", []string{"x@y.example\r\nBcc: victim@evil.example"}, "<a@mdeflow>"},
		{"LF in display name", "a@b.example", []string{"\"x\ny\" <x@y.example>"}, "<a@mdeflow>"},
		{"two addresses in one", "a@b.example", []string{"x@y.example, v@evil.example"}, "<a@mdeflow>"},
		{"no recipients", "a@b.example", nil, "<a@mdeflow>"},
		{"not an address", "not an address", []string{"x@y.example"}, "<a@mdeflow>"},
		{"non-ASCII address", "a@b.example", []string{"zoë@y.example"}, "<a@mdeflow>"},
		{"CRLF in message id", "a@b.example", []string{"x@y.example"}, "<a@mdeflow>\r\nBcc: v@evil"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := BuildMIME(tc.from, tc.to, r, tc.messageID, date); err == nil {
				t.Error("accepted")
			} else if IsTransient(err) {
				t.Errorf("error %v is transient, want permanent", err)
			}
		})
	}
}

func TestBuildMIMEHostileSubjectAndBody(t *testing.T) {
	t.Parallel()
	// The Rendered may come from anywhere: BuildMIME re-sanitises the subject.
	r := Rendered{Subject: hostileTitle, Text: "body\r\n.\r\nQUIT\r\n", HTML: "<p>x</p>"}
	raw, err := BuildMIME("a@b.example", []string{"x@y.example"}, r, "n-1", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	p := parseMIME(t, raw)
	if p.Header.Get("Bcc") != "" {
		t.Fatal("Bcc header injected")
	}
	if strings.ContainsAny(p.Subject, "\r\n") || !strings.Contains(p.Subject, "Bcc: victim@evil") {
		t.Errorf("subject = %q", p.Subject)
	}
	if got := p.Header.Get("Message-ID"); got != "<n-1@mdeflow>" {
		t.Errorf("bare id not converted: %q", got)
	}
}

func TestMessageID(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"notif-alert-da1_2", "<notif-alert-da1_2@mdeflow>"},
		{"a.b", "<a.b@mdeflow>"},
		{".a..b.", "<=2Ea.=2Eb=2E@mdeflow>"},
		{"x>y@z", "<x=3Ey=40z@mdeflow>"},
		{"", "<=" + shortHash("") + "@mdeflow>"},
	}
	for _, tc := range tests {
		got := MessageID(tc.in)
		if got != tc.want {
			t.Errorf("MessageID(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !msgIDRe.MatchString(got) {
			t.Errorf("MessageID(%q) = %q is not a valid msg-id", tc.in, got)
		}
	}
	long := MessageID(strings.Repeat("a", 500))
	if !msgIDRe.MatchString(long) || long == MessageID(strings.Repeat("a", 499)) {
		t.Errorf("long ids: %q", long)
	}
}
