package notify

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/mdeflow/mdeflow/internal/store"
)

// TestHostileContentEveryChannel delivers one notification whose alert,
// machine and hunt fields are attacker-controlled (script tags, CRLF header
// injection, HTML attribute breakout, Markdown links, bidi overrides)
// through all five channels, and checks what actually arrived at each end.
func TestHostileContentEveryChannel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2024, 5, 1, 10, 0, 5, 0, time.UTC)

	// outbox
	outDir := t.TempDir()
	outbox, err := NewOutbox(OutboxConfig{Dir: outDir, From: "mdeflow@contoso.com", To: []string{"soc@contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	// SMTP: real server, STARTTLS + AUTH PLAIN
	cert, pool := testCert(t)
	be := &smtpBackend{user: "u@contoso.com", pass: "pw"}
	host, port := startSMTP(t, be, &cert)
	smtpCh, err := NewSMTP(SMTPConfig{Host: host, Port: port, From: "mdeflow@contoso.com", To: []string{"soc@contoso.com"},
		Username: "u@contoso.com", Password: "pw", TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Graph, Teams, webhook: loopback HTTP servers
	graphSrv := newTLSCaptureServer(t, http.StatusAccepted)
	graphCh, err := NewGraphMail(GraphMailConfig{Sender: newGraphClient(t, graphSrv), Mailbox: "bot@contoso.com", To: []string{"soc@contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	teamsSrv := newCaptureServer(t, http.StatusAccepted)
	teamsCh, err := NewTeams(TeamsConfig{WebhookURL: teamsSrv.URL + "/wf?sig=x"})
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := newCaptureServer(t, http.StatusOK)
	secret := []byte("hostile-test-secret-0123456789")
	hookCh, err := NewWebhook(WebhookConfig{URL: hookSrv.URL + "/in", Secret: secret, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}

	d, err := NewDispatcher(DispatcherOptions{
		Channels: map[string]Channel{"outbox": outbox, "smtp": smtpCh, "graphmail": graphCh, "teams": teamsCh, "webhook": hookCh},
		Store:    store.NewMemory(), Clock: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	n := hostileNotification()
	rep, err := d.Deliver(ctx, n)
	if err != nil {
		t.Fatalf("Deliver: %v (%s)", err, statuses(rep))
	}
	wantLinks := []string{
		"https://mdeflow.example.net/api/approve?req=iso-1&sig=abc",
		"https://mdeflow.example.net/api/deny?req=iso-1&sig=abc",
		"https://security.microsoft.com/alerts/da638765432109876543_-1029384756",
		"https://security.microsoft.com/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
	}

	t.Run("outbox", func(t *testing.T) {
		raw, err := os.ReadFile(outbox.Path(n.ID))
		if err != nil {
			t.Fatal(err)
		}
		checkHostileMail(t, raw, wantLinks)
	})
	t.Run("smtp", func(t *testing.T) {
		msgs := be.messages()
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		if strings.Join(msgs[0].To, ",") != "soc@contoso.com" {
			t.Errorf("envelope recipients %v: the alert added a recipient", msgs[0].To)
		}
		checkHostileMail(t, msgs[0].Data, wantLinks)
	})
	t.Run("graph", func(t *testing.T) {
		reqs := graphSrv.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		}
		var got graphSendMail
		if err := json.Unmarshal(reqs[0].Body, &got); err != nil {
			t.Fatalf("invalid JSON: %v", err)
		}
		if strings.ContainsAny(got.Message.Subject, "\r\n") {
			t.Errorf("subject %q has a line break", got.Message.Subject)
		}
		if len(got.Message.ToRecipients) != 1 || len(got.Message.CcRecipients) != 0 {
			t.Errorf("recipients changed: %+v", got.Message)
		}
		checkHostileHTML(t, got.Message.Body.Content, wantLinks)
	})
	t.Run("teams", func(t *testing.T) {
		reqs := teamsSrv.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		}
		if !json.Valid(reqs[0].Body) {
			t.Fatal("invalid JSON")
		}
		var card any
		_ = json.Unmarshal(reqs[0].Body, &card)
		var texts, urls []string
		walkCard(card, "", &texts, &urls)
		joined := strings.Join(texts, "\n")
		for _, raw := range []string{"**bold**", "[link](http://evil)", "**Tier0**", "\r"} {
			if strings.Contains(joined, raw) {
				t.Errorf("card text contains live markup %q", raw)
			}
		}
		for _, want := range []string{`\*\*bold\*\* \[link\]\(http:\/\/evil\)`, `\\r\\nBcc: victim@evil`, `\<script\>`} {
			if !strings.Contains(joined, want) {
				t.Errorf("card text lacks the escaped form %q", want)
			}
		}
		for _, s := range texts {
			if err := checkMarkdownNeutral(s); err != "" {
				t.Errorf("%s in card text %q", err, s)
			}
		}
		slices.Sort(urls)
		if !slices.Equal(urls, wantLinks) {
			t.Errorf("card buttons %v, want %v", urls, wantLinks)
		}
	})
	t.Run("webhook", func(t *testing.T) {
		reqs := hookSrv.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		}
		body := reqs[0].Body
		if !json.Valid(body) {
			t.Fatal("invalid JSON")
		}
		if err := VerifyWebhookSignature(secret, reqs[0].Header.Get(HeaderSignature), body, now, 0); err != nil {
			t.Errorf("signature: %v", err)
		}
		for _, raw := range []string{"<script>", "<img", "<svg", "<iframe"} {
			if strings.Contains(string(body), raw) {
				t.Errorf("raw %q in JSON bytes (not HTML-safe)", raw)
			}
		}
		var p WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		// Data arrives intact for machines; escaping is the receiver's job.
		if p.Alert.Title != hostileTitle || p.Alert.Evidence[0].Fields["fileName"] != hostileFileName ||
			p.Alert.Evidence[0].Fields["processCommandLine"] != hostileCmdLine || p.Table.Rows[0]["<col>"] != hostileRowValue {
			t.Errorf("payload does not round-trip: %+v", p.Alert)
		}
		if strings.ContainsAny(p.Subject, "\r\n") {
			t.Errorf("subject %q", p.Subject)
		}
		if id := reqs[0].Header.Get(HeaderNotificationID); id != n.ID {
			t.Errorf("id header %q", id)
		}
	})
}

// checkHostileMail parses a delivered message and checks headers and parts.
func checkHostileMail(t *testing.T, raw []byte, wantLinks []string) {
	t.Helper()
	p := parseMIME(t, raw)
	allowed := []string{"Date", "From", "To", "Subject", "Message-Id", "Mime-Version", "Auto-Submitted", "X-Auto-Response-Suppress", "Content-Type"}
	for k := range p.Header {
		if !slices.Contains(allowed, k) {
			t.Errorf("unexpected header %q (injection)", k)
		}
	}
	if len(p.Header["To"]) != 1 || p.Header.Get("To") != "<soc@contoso.com>" {
		t.Errorf("To = %q", p.Header["To"])
	}
	if strings.ContainsAny(p.Subject, "\r\n") || !strings.HasPrefix(p.Subject, "[mdeflow] Approval needed: isolate evil-host") {
		t.Errorf("subject %q", p.Subject)
	}
	for _, line := range strings.Split(p.Text, "\r\n") {
		for _, bad := range []string{"Bcc:", "Subject: injected", "X-Injected"} {
			if strings.HasPrefix(strings.TrimSpace(line), bad) {
				t.Errorf("text part has an injected line %q", line)
			}
		}
	}
	for _, want := range []string{`<script>alert("x")</script>\r\nBcc: victim@evil`, `cmd.exe /c **bold** [link](http://evil)\r\nSubject: injected`} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("text part lacks the visible form %q", want)
		}
	}
	if strings.ContainsRune(p.Text, '\u202e') || strings.ContainsRune(p.Text, '\x1b') {
		t.Error("text part carries bidi or escape characters")
	}
	checkHostileHTML(t, p.HTML, wantLinks)
}

// checkHostileHTML tokenises the HTML part: no active elements, no event
// handler attributes, links only to the expected URLs, and the hostile
// strings present as text.
func checkHostileHTML(t *testing.T, doc string, wantLinks []string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(doc))
	var text strings.Builder
	var links []string
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			switch tok.Data {
			case "script", "img", "svg", "iframe", "object", "embed", "form", "b" /* the hostile <b> tags */ :
				t.Errorf("active or injected element <%s> in HTML", tok.Data)
			}
			for _, a := range tok.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") {
					t.Errorf("event handler attribute %s=%q on <%s>", a.Key, a.Val, tok.Data)
				}
				if a.Key == "href" || a.Key == "src" {
					links = append(links, a.Val)
				}
			}
		case html.TextToken:
			text.WriteString(tok.Data)
		}
	}
	slices.Sort(links)
	links = slices.Compact(links)
	if !slices.Equal(links, wantLinks) {
		t.Errorf("HTML links %v, want %v", links, wantLinks)
	}
	for _, want := range []string{hostileFileName, `<script>alert("x")</script>\r\nBcc: victim@evil`, `<iframe src=javascript:alert(3)>\n| --- |`, `javascript:alert(4)`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("HTML text lacks %q (as escaped text)", want)
		}
	}
}

// walkCard collects text-bearing strings and Action.OpenUrl URLs of a card.
func walkCard(v any, key string, texts, urls *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if k == "url" {
				if s, ok := c.(string); ok {
					*urls = append(*urls, s)
				}
				continue
			}
			walkCard(c, k, texts, urls)
		}
	case []any:
		for _, c := range x {
			walkCard(c, key, texts, urls)
		}
	case string:
		if key == "text" || key == "value" || key == "title" {
			*texts = append(*texts, x)
		}
	}
}

// checkMarkdownNeutral reports an unescaped Markdown-active character.
func checkMarkdownNeutral(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '_', '[', ']', '(', ')', '`', '<', '>', '{', '}', '~':
			bs := 0
			for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
				bs++
			}
			if bs%2 == 0 {
				return "unescaped " + string(s[i])
			}
		}
	}
	if strings.Contains(s, "://") {
		return "auto-linkable URL"
	}
	return ""
}
