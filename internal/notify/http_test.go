package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mdeflow/mdeflow/internal/graph"
	"github.com/mdeflow/mdeflow/internal/mde"
)

// capturedRequest is one request received by a test server.
type capturedRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// captureServer answers with the scripted statuses (then 200) and records
// every request.
type captureServer struct {
	*httptest.Server
	mu       sync.Mutex
	reqs     []capturedRequest
	statuses []int
	header   http.Header // added to scripted (non-2xx) answers
}

func newCaptureServer(t *testing.T, okStatus int, statuses ...int) *captureServer {
	t.Helper()
	return startCaptureServer(t, false, okStatus, statuses...)
}

// newTLSCaptureServer is newCaptureServer over https (the Graph client
// refuses plain http).
func newTLSCaptureServer(t *testing.T, okStatus int, statuses ...int) *captureServer {
	t.Helper()
	return startCaptureServer(t, true, okStatus, statuses...)
}

func startCaptureServer(t *testing.T, useTLS bool, okStatus int, statuses ...int) *captureServer {
	t.Helper()
	cs := &captureServer{statuses: statuses, header: http.Header{}}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cs.mu.Lock()
		i := len(cs.reqs)
		cs.reqs = append(cs.reqs, capturedRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		cs.mu.Unlock()
		if i < len(cs.statuses) {
			for k, v := range cs.header {
				w.Header()[k] = v
			}
			w.WriteHeader(cs.statuses[i])
			fmt.Fprint(w, `{"error":{"code":"scripted","message":"scripted failure"}}`)
			return
		}
		w.WriteHeader(okStatus)
	}))
	if useTLS {
		cs.StartTLS()
	} else {
		cs.Start()
	}
	t.Cleanup(cs.Close)
	return cs
}

func (cs *captureServer) requests() []capturedRequest {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]capturedRequest(nil), cs.reqs...)
}

func TestTeamsPostsAdaptiveCard(t *testing.T) {
	t.Parallel()
	srv := newCaptureServer(t, http.StatusAccepted)
	ch, err := NewTeams(TeamsConfig{WebhookURL: srv.URL + "/workflows/abc/triggers/manual/paths/invoke?sig=SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	n := loadNotification(t, "alert_notification.json")
	r, _ := Render(n, RenderOptions{})
	if err := ch.Send(context.Background(), n, r); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	var msg struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string         `json:"contentType"`
			Content     map[string]any `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(reqs[0].Body, &msg); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if msg.Type != "message" || len(msg.Attachments) != 1 || msg.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("envelope %+v", msg)
	}
	c := msg.Attachments[0].Content
	if c["type"] != "AdaptiveCard" || c["version"] != "1.4" {
		t.Errorf("card type/version %v %v", c["type"], c["version"])
	}
	if ct := reqs[0].Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestTeamsCardShrinksToFit(t *testing.T) {
	t.Parallel()
	// Pins: a hunt with many wide rows must not exceed Teams' message size.
	n := hostileNotification()
	n.Hunt.Rows = nil
	for i := range 50 {
		n.Hunt.Rows = append(n.Hunt.Rows, map[string]string{"DeviceName": strings.Repeat("d", 300), "<col>": fmt.Sprint(i, strings.Repeat("v", 300))})
	}
	for range 19 {
		n.Alert.Evidence = append(n.Alert.Evidence, n.Alert.Evidence[0])
	}
	r, _ := Render(n, RenderOptions{})
	b, err := BuildTeamsPayload(n, r, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > teamsMaxBytes {
		t.Errorf("card is %d bytes, budget %d", len(b), teamsMaxBytes)
	}
	if !json.Valid(b) {
		t.Error("invalid JSON")
	}
}

func TestTeamsButtonsOnlyForSafeLinks(t *testing.T) {
	t.Parallel()
	n := hostileNotification()
	r := Rendered{Subject: "s", Links: Links{
		Alert: "https://security.microsoft.com/alerts/x", Machine: "javascript:alert(1)",
		Approve: "http://localhost:7071/api/approve?x=1", Deny: "http://evil.example/deny",
	}}
	urls := func(base string) []string {
		b, err := BuildTeamsPayload(n, r, base)
		if err != nil {
			t.Fatal(err)
		}
		var msg struct {
			Attachments []struct {
				Content struct {
					Actions []struct{ URL string } `json:"actions"`
				} `json:"content"`
			} `json:"attachments"`
		}
		if err := json.Unmarshal(b, &msg); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range msg.Attachments[0].Content.Actions {
			out = append(out, a.URL)
		}
		return out
	}
	if got := urls(""); strings.Join(got, " ") != "https://security.microsoft.com/alerts/x" {
		t.Errorf("without base: %v", got)
	}
	if got := urls("http://localhost:7071"); strings.Join(got, " ") != "http://localhost:7071/api/approve?x=1 https://security.microsoft.com/alerts/x" {
		t.Errorf("with local base: %v", got)
	}
}

func TestWebhookSignedPayload(t *testing.T) {
	t.Parallel()
	srv := newCaptureServer(t, http.StatusNoContent)
	secret := []byte("0123456789abcdef-secret")
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	ch, err := NewWebhook(WebhookConfig{URL: srv.URL + "/hook", Secret: secret, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	n := loadNotification(t, "alert_notification.json")
	r, _ := Render(n, RenderOptions{})
	if err := ch.Send(context.Background(), n, r); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	req := reqs[0]
	sig := req.Header.Get(HeaderSignature)
	if !strings.HasPrefix(sig, fmt.Sprintf("t=%d,v1=", now.Unix())) {
		t.Errorf("signature header %q", sig)
	}
	if err := VerifyWebhookSignature(secret, sig, req.Body, now.Add(time.Minute), 0); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if !verifyMdeflowSignature(secret, sig, req.Body, now) {
		t.Error("the documented verification snippet rejects the signature")
	}
	tampered := bytes.Replace(req.Body, []byte("High"), []byte("Low!"), 1)
	if VerifyWebhookSignature(secret, sig, tampered, now, 0) == nil {
		t.Error("tampered body verifies")
	}
	if VerifyWebhookSignature([]byte("another-secret-of-16"), sig, req.Body, now, 0) == nil {
		t.Error("wrong secret verifies")
	}
	if VerifyWebhookSignature(secret, sig, req.Body, now.Add(10*time.Minute), 0) == nil {
		t.Error("replayed (old) signature verifies")
	}
	if got := req.Header.Get(HeaderNotificationID); got != n.ID {
		t.Errorf("%s = %q", HeaderNotificationID, got)
	}
	var p WebhookPayload
	if err := json.Unmarshal(req.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Schema != WebhookSchema || p.ID != n.ID || p.Kind != "alert" || p.Alert == nil || p.Alert.Title != n.Alert.Title ||
		p.Machine == nil || p.Machine.DeviceGroup != "Finance workstations" || p.Decision == nil || p.Decision.PolicyVersion != "2024-05-01.3" ||
		p.Links.Alert == "" || len(p.Alert.Evidence) != 2 || p.Alert.Evidence[0].Fields["processCommandLine"] == "" {
		t.Errorf("payload incomplete: %+v", p)
	}
}

func TestNewWebhookValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  WebhookConfig
	}{
		{"short secret", WebhookConfig{URL: "https://h.example/x", Secret: []byte("short")}},
		{"http remote", WebhookConfig{URL: "http://h.example/x", Secret: []byte("0123456789abcdef")}},
		{"user info", WebhookConfig{URL: "https://u:p@h.example/x", Secret: []byte("0123456789abcdef")}},
		{"not a URL", WebhookConfig{URL: "::", Secret: []byte("0123456789abcdef")}},
	}
	for _, tc := range tests {
		if _, err := NewWebhook(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := NewTeams(TeamsConfig{WebhookURL: "http://prod-1.westus.logic.azure.com/x"}); err == nil {
		t.Error("Teams over http accepted")
	}
}

func TestHTTPStatusMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status     int
		retryAfter string
		wantErr    bool
		transient  bool
		wantRA     time.Duration
	}{
		{status: 200}, {status: 202}, {status: 204},
		{status: 400, wantErr: true}, {status: 401, wantErr: true}, {status: 403, wantErr: true}, {status: 404, wantErr: true},
		{status: 413, wantErr: true},
		{status: 408, wantErr: true, transient: true},
		{status: 429, retryAfter: "7", wantErr: true, transient: true, wantRA: 7 * time.Second},
		{status: 429, retryAfter: "Wed, 01 May 2024 12:00:30 GMT", wantErr: true, transient: true, wantRA: 30 * time.Second},
		{status: 500, wantErr: true, transient: true}, {status: 502, wantErr: true, transient: true},
		{status: 503, retryAfter: "999999", wantErr: true, transient: true, wantRA: time.Hour},
		{status: 302, wantErr: true}, // redirects are not followed
	}
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status, tc.retryAfter), func(t *testing.T) {
			t.Parallel()
			srv := newCaptureServer(t, tc.status)
			if tc.status >= 300 {
				srv.statuses = []int{tc.status}
				if tc.retryAfter != "" {
					srv.header.Set("Retry-After", tc.retryAfter)
				}
				srv.header.Set("Location", "https://elsewhere.example/")
			}
			for _, mk := range []func() (Channel, error){
				func() (Channel, error) {
					return NewTeams(TeamsConfig{WebhookURL: srv.URL + "/t?sig=SECRET", Clock: func() time.Time { return now }})
				},
				func() (Channel, error) {
					return NewWebhook(WebhookConfig{URL: srv.URL + "/w", Secret: []byte("0123456789abcdef"), Clock: func() time.Time { return now }})
				},
			} {
				srv.mu.Lock()
				srv.reqs = nil
				srv.mu.Unlock()
				ch, err := mk()
				if err != nil {
					t.Fatal(err)
				}
				err = ch.Send(context.Background(), hostileNotification(), Rendered{Subject: "s"})
				if (err != nil) != tc.wantErr {
					t.Fatalf("%s: err = %v, want error %v", ch.Name(), err, tc.wantErr)
				}
				if err == nil {
					continue
				}
				var se *StatusError
				if !errors.As(err, &se) || se.StatusCode != tc.status {
					t.Errorf("%s: err %v is not a *StatusError for %d", ch.Name(), err, tc.status)
				}
				if errors.Is(err, ErrTransient) != tc.transient || errors.Is(err, ErrPermanent) == tc.transient {
					t.Errorf("%s: transient = %v, want %v", ch.Name(), errors.Is(err, ErrTransient), tc.transient)
				}
				if ra, _ := RetryAfter(err); ra != tc.wantRA {
					t.Errorf("%s: RetryAfter = %v, want %v", ch.Name(), ra, tc.wantRA)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error leaks the webhook URL: %v", err)
				}
				if len(srv.requests()) != 1 {
					t.Errorf("%s: %d requests (redirect followed?)", ch.Name(), len(srv.requests()))
				}
			}
		})
	}
}

func TestHTTPTransportErrorIsTransientAndRedacted(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens any more
	ch, err := NewTeams(TeamsConfig{WebhookURL: u + "/x?sig=SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	err = ch.Send(context.Background(), hostileNotification(), Rendered{})
	if err == nil || !errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v, want transient", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error leaks the URL: %v", err)
	}
}

// staticCred hands the Graph client a fixed token.
type staticCred struct{}

var _ azcore.TokenCredential = staticCred{}

func (staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "notify-test-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// newGraphClient returns the real internal/graph client talking to a fake
// Graph (an httptest TLS server); the SDK retry policy is off so each
// scripted answer is seen once.
func newGraphClient(t *testing.T, srv *captureServer) *graph.Client {
	t.Helper()
	c, err := graph.NewClient(staticCred{}, &graph.ClientOptions{
		BaseURL:       srv.URL + "/v1.0",
		ClientOptions: azcore.ClientOptions{Transport: srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// graphSendMail is the sendMail request body as Graph documents it.
type graphRecipient struct {
	EmailAddress struct {
		Address string `json:"address"`
	} `json:"emailAddress"`
}

type graphSendMail struct {
	Message struct {
		Subject string `json:"subject"`
		Body    struct {
			ContentType string `json:"contentType"`
			Content     string `json:"content"`
		} `json:"body"`
		ToRecipients      []graphRecipient `json:"toRecipients"`
		CcRecipients      []graphRecipient `json:"ccRecipients"`
		InternetMessageID string           `json:"internetMessageId"`
	} `json:"message"`
	SaveToSentItems bool `json:"saveToSentItems"`
}

func TestGraphMailSendsThroughSender(t *testing.T) {
	t.Parallel()
	srv := newTLSCaptureServer(t, http.StatusAccepted)
	ch, err := NewGraphMail(GraphMailConfig{Sender: newGraphClient(t, srv), Mailbox: "soc-bot@contoso.com",
		To: []string{"SOC <soc@contoso.com>"}, CC: []string{"lead@contoso.com"}, SaveToSentItems: true})
	if err != nil {
		t.Fatal(err)
	}
	n := loadNotification(t, "alert_notification.json")
	r, _ := Render(n, RenderOptions{})
	if err := ch.Send(context.Background(), n, r); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 || reqs[0].Path != "/v1.0/users/soc-bot@contoso.com/sendMail" || reqs[0].Header.Get("Authorization") != "Bearer notify-test-token" {
		t.Fatalf("requests %+v", reqs)
	}
	var got graphSendMail
	if err := json.Unmarshal(reqs[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	m := got.Message
	if m.Subject != r.Subject || m.Body.Content != r.HTML || m.Body.ContentType != "HTML" || m.InternetMessageID != MessageID(n.ID) || !got.SaveToSentItems ||
		len(m.ToRecipients) != 1 || m.ToRecipients[0].EmailAddress.Address != "soc@contoso.com" ||
		len(m.CcRecipients) != 1 || m.CcRecipients[0].EmailAddress.Address != "lead@contoso.com" {
		t.Errorf("sendMail body %+v", got)
	}
}

func TestGraphMailErrorClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		transient bool
		ra        time.Duration
	}{
		{status: 429, transient: true, ra: 3 * time.Second},
		{status: 503, transient: true},
		{status: 403},
		{status: 400},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			srv := newTLSCaptureServer(t, http.StatusAccepted, tc.status)
			if tc.ra > 0 {
				srv.header.Set("Retry-After", "3")
			}
			ch, err := NewGraphMail(GraphMailConfig{Sender: newGraphClient(t, srv), Mailbox: "bot@contoso.com", To: []string{"soc@contoso.com"}})
			if err != nil {
				t.Fatal(err)
			}
			err = ch.Send(context.Background(), hostileNotification(), Rendered{Subject: "s", HTML: "<p>h</p>"})
			if err == nil {
				t.Fatal("no error")
			}
			if n := len(srv.requests()); n != 1 {
				t.Fatalf("fake Graph saw %d requests, want 1 (err %v)", n, err)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status {
				t.Errorf("err %v is not a *StatusError %d", err, tc.status)
			}
			if IsTransient(err) != tc.transient {
				t.Errorf("transient = %v, want %v: %v", IsTransient(err), tc.transient, err)
			}
			if ra, _ := RetryAfter(err); ra != tc.ra {
				t.Errorf("RetryAfter = %v, want %v", ra, tc.ra)
			}
		})
	}
	// Nothing listens: a network error is transient.
	dead := newTLSCaptureServer(t, http.StatusAccepted)
	client := newGraphClient(t, dead)
	dead.Close()
	ch, _ := NewGraphMail(GraphMailConfig{Sender: client, Mailbox: "bot@contoso.com", To: []string{"soc@contoso.com"}})
	if err := ch.Send(context.Background(), hostileNotification(), Rendered{Subject: "s", HTML: "h"}); !errors.Is(err, ErrTransient) {
		t.Errorf("network error: %v", err)
	}
}

func TestClassifySenderError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		transient bool
		ra        time.Duration
	}{
		{"mde 429 with Retry-After", &mde.Error{StatusCode: 429, RetryAfter: 9 * time.Second}, true, 9 * time.Second},
		{"mde 503", fmt.Errorf("sending mail: %w", &mde.Error{StatusCode: 503}), true, 0},
		{"mde 403", &mde.Error{StatusCode: 403, Code: "ErrorAccessDenied"}, false, 0},
		{"invalid argument", fmt.Errorf("%w: bad recipient", mde.ErrInvalidArgument), false, 0},
		{"deadline", context.DeadlineExceeded, true, 0},
		{"unknown", errors.New("connection reset by peer"), true, 0},
		{"already permanent", Permanent(errors.New("x")), false, 0},
	}
	for _, tc := range tests {
		err := classifySenderError("graphmail", tc.err)
		if IsTransient(err) != tc.transient || errors.Is(err, ErrTransient) != tc.transient {
			t.Errorf("%s: transient = %v, want %v (%v)", tc.name, IsTransient(err), tc.transient, err)
		}
		if ra, _ := RetryAfter(err); ra != tc.ra {
			t.Errorf("%s: RetryAfter = %v, want %v", tc.name, ra, tc.ra)
		}
	}
}
