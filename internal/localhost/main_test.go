package localhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// handlerBin is the test handler (testdata/handler) built once by TestMain.
var handlerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "localhost-handler-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating temp dir:", err)
		os.Exit(2)
	}
	handlerBin = filepath.Join(dir, "handler")
	cmd := exec.Command("go", "build", "-o", handlerBin, "./testdata/handler")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test handler:", err)
		os.Exit(2)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// writeApp writes an app folder; "{{HANDLER}}" in any file is replaced by
// the JSON-escaped path of the test handler.
func writeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	esc, _ := json.Marshal(handlerBin)
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		content = strings.ReplaceAll(content, `"{{HANDLER}}"`, string(esc))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const hostJSONBasic = `{
  "version": "2.0",
  "customHandler": {"description": {"defaultExecutablePath": "{{HANDLER}}"}}
}`

// lineLog collects written lines and lets tests wait for a condition.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{}
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lineLog) snapshot() ([]string, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.changed
}

// waitFor waits until pred holds for the lines written so far.
func (l *lineLog) waitFor(t *testing.T, timeout time.Duration, what string, pred func([]string) bool) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		lines, ch := l.snapshot()
		if pred(lines) {
			return lines
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; lines:\n%s", timeout, what, strings.Join(lines, "\n"))
		}
	}
}

// record is one "RECV" line of the test handler.
type record struct {
	Fn            string          `json:"fn"`
	Pid           int             `json:"pid"`
	ID            string          `json:"id"`
	HostVersion   string          `json:"hostVersion"`
	UA            string          `json:"ua"`
	ContentType   string          `json:"contentType"`
	ContentLength int64           `json:"contentLength"`
	Body          json.RawMessage `json:"body"`
}

func (r record) envelope(t *testing.T) (data, meta map[string]json.RawMessage) {
	t.Helper()
	var env struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(r.Body, &env); err != nil {
		t.Fatalf("decoding request body %s: %v", r.Body, err)
	}
	return env.Data, env.Metadata
}

// metaString decodes a double-encoded metadata string.
func metaString(t *testing.T, meta map[string]json.RawMessage, key string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(meta[key], &s); err != nil {
		t.Fatalf("metadata %s = %s: %v", key, meta[key], err)
	}
	var inner string
	if json.Unmarshal([]byte(s), &inner) == nil {
		return inner
	}
	return s
}

func records(lines []string, kind, fn string) []record {
	var out []record
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l, kind+" ")
		if !ok {
			continue
		}
		var r record
		if json.Unmarshal([]byte(rest), &r) != nil {
			continue
		}
		if fn == "" || r.Fn == fn {
			out = append(out, r)
		}
	}
	return out
}

// harness is a started host with its captured output.
type harness struct {
	host *Host
	out  *lineLog // handler stdout/stderr lines
	logs *lineLog // host slog JSON lines
}

func startHost(t *testing.T, files map[string]string, opts Options) *harness {
	t.Helper()
	hs := &harness{out: newLineLog(), logs: newLineLog()}
	opts.AppRoot = writeApp(t, files)
	opts.HandlerOutput = hs.out
	opts.Logger = slog.New(slog.NewJSONHandler(hs.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Settings == nil {
		opts.Settings = map[string]string{}
	}
	if _, ok := opts.Settings["ServiceBusConnection"]; !ok {
		opts.Settings["ServiceBusConnection"] = "Endpoint=sb://localhost/"
	}
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs.host = h
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return hs
}

func (hs *harness) waitIdle(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.host.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v", err)
	}
}

// waitRecords waits until the handler output holds at least n RECV
// records of fn (output arrives through a pipe, possibly after the
// invocation ended) and returns all lines.
func (hs *harness) waitRecords(t *testing.T, fn string, n int) []string {
	t.Helper()
	return hs.out.waitFor(t, 10*time.Second, fmt.Sprintf("%d %s records", n, fn), func(l []string) bool {
		return len(records(l, "RECV", fn)) >= n
	})
}

// logged reports whether a host log line at level has a message containing
// substr.
func logged(lines []string, level, substr string) bool {
	for _, l := range lines {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Level == level && strings.Contains(rec.Msg, substr) {
			return true
		}
	}
	return false
}
