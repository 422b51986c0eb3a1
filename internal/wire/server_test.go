package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestServer(t *testing.T, opts *ServerOptions) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	o := ServerOptions{}
	if opts != nil {
		o = *opts
	}
	o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	return NewServer(&o), logs
}

func timerBody(t *testing.T) string {
	t.Helper()
	return string(readFixture(t, "request_timer.json"))
}

func TestServerResponses(t *testing.T) {
	t.Parallel()
	s, logs := newTestServer(t, nil)
	s.Handle("Ok", func(ctx context.Context, inv *Invocation) (Result, error) {
		inv.Log("from Log")
		return Result{Logs: []string{"from Result"}}, nil
	})
	s.Handle("Outputs", func(ctx context.Context, inv *Invocation) (Result, error) {
		return JSONHTTPResponse("res", 201, map[string]string{"id": inv.ID}).WithOutput("message", map[string]int{"n": 1}), nil
	})
	s.Handle("Empty", func(ctx context.Context, inv *Invocation) (Result, error) { return Result{}, nil })
	s.Handle("Fails", func(ctx context.Context, inv *Invocation) (Result, error) {
		inv.Log("partial")
		return Result{}, errors.New("transient: defender 503")
	})
	s.Handle("Panics", func(ctx context.Context, inv *Invocation) (Result, error) { panic("nil map write") })
	s.Handle("Trap", func(ctx context.Context, inv *Invocation) (Result, error) {
		return Result{Outputs: map[string]any{"out": "order123"}}, nil
	})

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string // exact when set
		contains   string // substring of the body when set
	}{
		{"readiness ping", "GET", "/", "", 200, `{}`, ""},
		{"readiness HEAD", "HEAD", "/", "", 200, "", ""},
		{"POST to / is not an invocation", "POST", "/", "", 405, "", "method not allowed"},
		{"success with logs in order", "POST", "/Ok", timerBody(t), 200, `{"Outputs":{},"Logs":["from Log","from Result"],"ReturnValue":null}`, ""},
		{"empty result never null", "POST", "/Empty", `{"Data":{},"Metadata":{}}`, 200, `{"Outputs":{},"Logs":[],"ReturnValue":null}`, ""},
		{"outputs", "POST", "/Outputs", `{}`, 200, `{"Outputs":{"message":{"n":1},"res":{"statusCode":201,"headers":{"Content-Type":"application/json; charset=utf-8"},"body":"{\"id\":\"inv-1\"}"}},"Logs":[],"ReturnValue":null}`, ""},
		{"lower-case envelope keys", "POST", "/Empty", `{"data":{"x":"\"1\""},"metadata":{}}`, 200, "", "Outputs"},
		{"empty body tolerated", "POST", "/Empty", ``, 200, "", "Outputs"},
		{"error is 500", "POST", "/Fails", `{}`, 500, "", "transient: defender 503"},
		{"panic is 500", "POST", "/Panics", `{}`, 500, "", "function panicked"},
		{"unknown function", "POST", "/Nope", `{}`, 404, "", "unknown function"},
		{"function names are case-sensitive", "POST", "/ok", `{}`, 404, "", "unknown function"},
		{"GET on a function", "GET", "/Ok", "", 405, "", "method not allowed"},
		{"malformed body", "POST", "/Ok", `{"Data":`, 400, "", "decoding invocation request"},
		{"Data not an object", "POST", "/Ok", `{"Data":"x"}`, 400, "", "decoding invocation request"},
		{"base64 trap still answered", "POST", "/Trap", `{}`, 200, `{"Outputs":{"out":"order123"},"Logs":[],"ReturnValue":null}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.Header.Set(HeaderInvocationID, "inv-1")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body = %s\nwant   %s", rec.Body, tt.wantBody)
			}
			if tt.contains != "" && !strings.Contains(rec.Body.String(), tt.contains) {
				t.Errorf("body %s does not contain %q", rec.Body, tt.contains)
			}
			if tt.method != "HEAD" && !json.Valid(rec.Body.Bytes()) {
				t.Errorf("body is not JSON: %q", rec.Body)
			}
		})
	}
	// The host discards a 500's body, so failures must reach the log.
	out := logs.String()
	for _, want := range []string{
		`"msg":"invocation failed"`, `transient: defender 503`, `"function":"Fails"`, `"invocation_id":"inv-1"`,
		`"msg":"function panicked"`, `"stack":"goroutine`, `"msg":"output string looks like base64`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
}

func TestServerKeepsServingAfterPanic(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, nil)
	var calls int
	var mu sync.Mutex
	s.Handle("Flaky", func(ctx context.Context, inv *Invocation) (Result, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			var m map[string]int
			m["boom"]++ // real runtime panic
		}
		return Result{}, nil
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	for i, want := range []int{500, 200, 200} {
		resp, err := http.Post(srv.URL+"/Flaky", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("call %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
}

func TestServerBodyLimit(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, &ServerOptions{MaxBodyBytes: 64})
	s.Handle("F", func(ctx context.Context, inv *Invocation) (Result, error) { return Result{}, nil })
	body := `{"Data":{"x":"` + strings.Repeat("a", 100) + `"}}`
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/F", strings.NewReader(body)))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", rec.Code)
	}
}

// End to end over TCP with the host-side request builder: chunked body,
// host headers, and the answer read with the host's rules.
func TestServerEndToEndChunked(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, nil)
	type seen struct {
		id, fn   string
		body     string
		deliv    int
		tenant   any
		sysName  string
		hostVers string
	}
	got := make(chan seen, 1)
	s.Handle("ProcessOrder", func(ctx context.Context, inv *Invocation) (Result, error) {
		m, err := inv.ServiceBus("msg")
		if err != nil {
			return Result{}, err
		}
		got <- seen{inv.ID, inv.Function, string(m.Body), m.DeliveryCount, m.ApplicationProperties["tenant"], inv.Sys.MethodName, ""}
		return Result{Outputs: map[string]any{"outQueue": []map[string]any{{"orderId": 42, "status": "accepted"}}}}, nil
	})
	var hostVersion string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostVersion = r.Header.Get(HeaderHostVersion)
		if r.ContentLength != -1 || len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
			t.Errorf("request not chunked: length %d, encoding %v", r.ContentLength, r.TransferEncoding)
		}
		s.ServeHTTP(w, r)
	}))
	defer srv.Close()

	sys := Sys{MethodName: "ProcessOrder", UtcNow: time.Now().UTC(), RandGuid: "g"}
	payload, err := ServiceBusPayload("msg", ServiceBusMessage{
		Body: []byte(`{"orderId":42,"sku":"A-1"}`), MessageID: "order-42", DeliveryCount: 1,
		ApplicationProperties: map[string]any{"tenant": "contoso"},
	}, "", sys)
	if err != nil {
		t.Fatal(err)
	}
	req, err := NewInvocationRequest(context.Background(), srv.URL, "ProcessOrder", "inv-42", "", payload, true)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	hr, err := ParseHostResponse(resp.StatusCode, resp.Header.Get("Content-Type"), body)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ServiceBusOutputMessages(hr.Outputs["outQueue"], "")
	if err != nil || len(msgs) != 1 || string(msgs[0]) != "{\n  \"orderId\": 42,\n  \"status\": \"accepted\"\n}" {
		t.Errorf("messages = %q, %v", msgs, err)
	}
	g := <-got
	want := seen{"inv-42", "ProcessOrder", `{"orderId":42,"sku":"A-1"}`, 1, "contoso", "ProcessOrder", ""}
	if g != want {
		t.Errorf("handler saw %+v, want %+v", g, want)
	}
	if hostVersion != DefaultHostVersion {
		t.Errorf("host version header = %q", hostVersion)
	}
}

func TestServerInvocationTimeout(t *testing.T) {
	t.Parallel()
	s, logs := newTestServer(t, &ServerOptions{InvocationTimeout: 50 * time.Millisecond})
	s.abandonGrace = 50 * time.Millisecond
	release := make(chan struct{})
	s.Handle("Polite", func(ctx context.Context, inv *Invocation) (Result, error) {
		<-ctx.Done()
		return Result{}, fmt.Errorf("querying defender: %w", ctx.Err())
	})
	s.Handle("Stubborn", func(ctx context.Context, inv *Invocation) (Result, error) {
		<-release // ignores ctx
		return Result{}, nil
	})
	defer close(release)
	for _, fn := range []string{"Polite", "Stubborn"} {
		t.Run(fn, func(t *testing.T) {
			start := time.Now()
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("POST", "/"+fn, strings.NewReader(`{}`)))
			if rec.Code != 500 || !strings.Contains(rec.Body.String(), "deadline exceeded") {
				t.Errorf("status %d body %s", rec.Code, rec.Body)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answer took %v", d)
			}
		})
	}
	if !strings.Contains(logs.String(), "did not return after its context ended") {
		t.Errorf("abandoned function not logged:\n%s", logs)
	}
}

func TestServeGracefulShutdownDrains(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, nil)
	started := make(chan struct{})
	release := make(chan struct{})
	s.Handle("Slow", func(ctx context.Context, inv *Invocation) (Result, error) {
		close(started)
		<-release
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("context cancelled during drain: %w", ctx.Err())
		}
		return Result{Logs: []string{"finished"}}, nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()

	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+l.Addr().String()+"/Slow", "application/json", strings.NewReader(`{}`))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	<-started
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with an invocation in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	// New connections are refused while draining.
	if c, err := net.DialTimeout("tcp", l.Addr().String(), 200*time.Millisecond); err == nil {
		_ = c.Close()
		t.Error("listener still accepting during shutdown")
	}
	close(release)
	a := <-answered
	if a.err != nil || a.status != 200 || !strings.Contains(a.body, "finished") {
		t.Errorf("in-flight answer = %+v", a)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

func TestListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"custom handler port", map[string]string{EnvPort: "40123"}, "127.0.0.1:40123", ""},
		{"legacy fallback", map[string]string{EnvLegacyPort: "40124"}, "127.0.0.1:40124", ""},
		{"custom wins", map[string]string{EnvPort: "1", EnvLegacyPort: "2"}, "127.0.0.1:1", ""},
		{"missing", map[string]string{}, "", EnvPort + " is not set"},
		{"invalid", map[string]string{EnvPort: "http"}, "", EnvPort + `="http" is not a port`},
		{"out of range legacy", map[string]string{EnvLegacyPort: "70000"}, "", EnvLegacyPort + `="70000"`},
		{"zero", map[string]string{EnvPort: "0"}, "", "not a port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ListenAddr(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ListenAddr = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestHandleRejectsBadRegistrations(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, nil)
	ok := func(ctx context.Context, inv *Invocation) (Result, error) { return Result{}, nil }
	s.Handle("A", ok)
	if fns := s.Functions(); len(fns) != 1 || fns[0] != "A" {
		t.Errorf("Functions = %v", fns)
	}
	for _, tc := range []struct {
		name string
		fn   string
		f    Func
	}{{"empty", "", ok}, {"slash", "a/b", ok}, {"nil", "B", nil}, {"duplicate", "A", ok}} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			s.Handle(tc.fn, tc.f)
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func readTestdata(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}

type panicMarshaler struct{}

func (panicMarshaler) MarshalJSON() ([]byte, error) { panic("bad marshaler") }

// A result whose encoding panics must still be answered with a JSON 500,
// not a dropped connection.
func TestServerResultEncodingPanics(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, nil)
	s.Handle("F", func(ctx context.Context, inv *Invocation) (Result, error) {
		return Result{Outputs: map[string]any{"x": panicMarshaler{}}}, nil
	})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/F", strings.NewReader(`{}`)))
	if rec.Code != 500 || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("status %d body %s", rec.Code, rec.Body)
	}
}
