package queue

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type captured struct {
	method, path, key, contentType string
	body                           []byte
}

func localHost(t *testing.T, status int, answer string) (*httptest.Server, <-chan captured) {
	t.Helper()
	ch := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- captured{r.Method, r.URL.EscapedPath(), r.Header.Get("x-functions-key"), r.Header.Get("Content-Type"), b}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func TestLocalSenderWireFormat(t *testing.T) {
	t.Parallel()
	srv, ch := localHost(t, http.StatusCreated, "")
	s := NewLocalSender(srv.URL+"/", "master-key-1", srv.Client())
	at := time.Date(2025, 1, 15, 11, 5, 0, 0, time.FixedZone("CET", 3600))
	err := s.Send(t.Context(), "isolations",
		Message{
			MessageID: "iso-da1", CorrelationID: "da1", SessionID: "s1", Subject: "isolate",
			Body:                 []byte(`{"machineId":"m1","comment":"Zürich <b>"}`),
			Properties:           map[string]any{"attempt": 2, "dryRun": true, "at": at},
			ScheduledEnqueueTime: at,
		},
		Message{MessageID: "iso-da2", ContentType: "text/plain", Body: []byte("plain text")},
	)
	if err != nil {
		t.Fatal(err)
	}
	got := <-ch
	if got.method != http.MethodPost || got.path != "/admin/queues/isolations/messages" {
		t.Fatalf("request %s %s", got.method, got.path)
	}
	if got.key != "master-key-1" || got.contentType != "application/json" {
		t.Fatalf("headers key=%q content-type=%q", got.key, got.contentType)
	}
	want := `[
	  {"messageId":"iso-da1","correlationId":"da1","sessionId":"s1","contentType":"application/json","subject":"isolate",
	   "body":"{\"machineId\":\"m1\",\"comment\":\"Zürich <b>\"}",
	   "applicationProperties":{"at":"2025-01-15T10:05:00Z","attempt":2,"dryRun":true},
	   "scheduledEnqueueTimeUtc":"2025-01-15T10:05:00Z"},
	  {"messageId":"iso-da2","contentType":"text/plain","body":"plain text","applicationProperties":{}}
	]`
	var gotV, wantV any
	if err := json.Unmarshal(got.body, &gotV); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, got.body)
	}
	if err := json.Unmarshal([]byte(want), &wantV); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(gotV)
	wb, _ := json.Marshal(wantV)
	if string(gb) != string(wb) {
		t.Fatalf("body\n%s\nwant\n%s", gb, wb)
	}
}

func TestLocalSenderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		answer    string
		queue     string
		msg       Message
		want      string
		temporary bool
		unauth    bool
		noRequest bool
	}{
		{name: "server error", status: 500, answer: "boom", queue: "alerts", msg: Message{MessageID: "m"}, want: `answered 500: "boom"`, temporary: true},
		{name: "throttled", status: 429, queue: "alerts", msg: Message{MessageID: "m"}, want: "answered 429", temporary: true},
		{name: "wrong key", status: 401, queue: "alerts", msg: Message{MessageID: "m"}, want: "answered 401", unauth: true},
		{name: "200 is not 201", status: 200, queue: "alerts", msg: Message{MessageID: "m"}, want: "answered 200"},
		{name: "unknown queue", status: 404, answer: "no such queue", queue: "nope", msg: Message{MessageID: "m"}, want: "answered 404"},
		{name: "upper-case queue", queue: "Alerts", msg: Message{MessageID: "m"}, want: "invalid queue name", noRequest: true},
		{name: "path in queue", queue: "a/../b", msg: Message{MessageID: "m"}, want: "invalid queue name", noRequest: true},
		{name: "long queue", queue: strings.Repeat("q", 51), msg: Message{MessageID: "m"}, want: "invalid queue name", noRequest: true},
		{name: "no message id", queue: "alerts", msg: Message{Body: []byte("{}")}, want: "no MessageID", noRequest: true},
		{name: "binary body", queue: "alerts", msg: Message{MessageID: "m", Body: []byte{0xff, 0xfe}}, want: "not UTF-8", noRequest: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, ch := localHost(t, tc.status, tc.answer)
			err := NewLocalSender(srv.URL, "k", srv.Client()).Send(t.Context(), tc.queue, tc.msg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			var se *LocalStatusError
			if errors.As(err, &se) != !tc.noRequest {
				t.Fatalf("LocalStatusError = %v for %v", !tc.noRequest, err)
			}
			if se != nil && se.Temporary() != tc.temporary {
				t.Errorf("Temporary() = %v", se.Temporary())
			}
			if errors.Is(err, ErrLocalUnauthorized) != tc.unauth {
				t.Errorf("errors.Is(ErrLocalUnauthorized) = %v", !tc.unauth)
			}
			select {
			case <-ch:
				if tc.noRequest {
					t.Fatal("an invalid send reached the host")
				}
			default:
				if !tc.noRequest {
					t.Fatal("no request reached the host")
				}
			}
		})
	}
}

func TestLocalSenderTransport(t *testing.T) {
	t.Parallel()
	srv, _ := localHost(t, http.StatusCreated, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := NewLocalSender(srv.URL, "k", nil).Send(ctx, "alerts", Message{MessageID: "m"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
	if err := NewLocalSender("ftp://x", "k", nil).Send(t.Context(), "alerts", Message{MessageID: "m"}); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Fatalf("bad base URL: %v", err)
	}
	if err := NewLocalSender(srv.URL, "k", nil).Send(t.Context(), "alerts"); err != nil {
		t.Fatalf("Send of nothing: %v", err)
	}
	// A base URL with a path prefix keeps it.
	pre, ch := localHost(t, http.StatusCreated, "")
	if err := NewLocalSender(pre.URL+"/host1", "k", nil).Send(t.Context(), "alerts", Message{MessageID: "m"}); err != nil {
		t.Fatal(err)
	}
	if got := <-ch; got.path != "/host1/admin/queues/alerts/messages" {
		t.Fatalf("path %q", got.path)
	}
}
