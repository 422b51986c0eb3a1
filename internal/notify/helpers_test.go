package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/testutil"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixedDate is the Date of every golden e-mail.
var fixedDate = time.Date(2021, 1, 26, 20, 35, 1, 0, time.UTC)

func loadNotification(t *testing.T, name string) pipeline.Notification {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var n pipeline.Notification
	if err := json.Unmarshal(b, &n); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	return n
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./internal/notify -run %s -update and review the diff)\n--- got ---\n%s", name, t.Name(), got)
	}
}

// readPublicSample reads a file of the shared public data corpus
// (<repo>/../shared/data/public), skipping the test when it is absent.
func readPublicSample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.PublicData(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// Hostile strings used across the tests.
const (
	hostileTitle    = "<script>alert(\"x\")</script>\r\nBcc: victim@evil"
	hostileFileName = `"><img src=x onerror=alert(1)>.exe`
	hostileCmdLine  = "cmd.exe /c **bold** [link](http://evil)\r\nSubject: injected\r\n\r\n<b>body</b>"
	hostileHost     = "evil-host\r\nX-Injected: 1 <svg onload=alert(2)>"
	hostileRowValue = "<iframe src=javascript:alert(3)>\n| --- |"
)

// hostileNotification carries attacker-controlled text in every field an
// alert or hunt can influence.
func hostileNotification() pipeline.Notification {
	inc := int64(42)
	created := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	return pipeline.Notification{
		ID:       "notif-hostile-da638765432109876543_-1029384756",
		Kind:     pipeline.NotifyApproval,
		Channels: []string{"outbox", "smtp", "graphmail", "teams", "webhook"},
		Alert: &pipeline.AlertInfo{
			ID: "da638765432109876543_-1029384756", Title: hostileTitle, Severity: "High",
			Category: "Execution", Description: "line1\r\n<a href=\"http://evil\">click</a>\u202Egnp.exe\x1b[31m",
			IncidentID: &inc, CreatedAt: &created, MitreTechniques: []string{"T1059"},
			Evidence: []mde.Evidence{{
				EntityType:         "Process",
				FileName:           ptr(hostileFileName),
				FilePath:           ptr(`C:\Users\Public\"><script>`),
				ProcessCommandLine: ptr(hostileCmdLine),
				URL:                ptr("javascript:alert(4)"),
			}},
		},
		Machine: &pipeline.MachineInfo{
			ID: "1e5bc9d7e413ddd7902c2932e418702b84d0cc07", ComputerDNSName: hostileHost,
			OSPlatform: "Windows11", RbacGroupName: "**Tier0** [x](http://evil)", RiskScore: "High", ExposureLevel: "Medium",
		},
		Decision: &pipeline.Decision{AlertID: "da638765432109876543_-1029384756", PolicyVersion: "v7", RuleID: "isolate-high",
			RuleName: "Isolate <b>high</b>", Actions: []pipeline.Action{{Type: pipeline.ActionIsolate, IsolationType: "Full", RequireApproval: true}}},
		Approval: &pipeline.Approval{
			RequestID:  "iso-da638765432109876543_-1029384756",
			ApproveURL: "https://mdeflow.example.net/api/approve?req=iso-1&sig=abc",
			DenyURL:    "https://mdeflow.example.net/api/deny?req=iso-1&sig=abc",
			ExpiresAt:  created.Add(time.Hour), OnExpiry: "deny",
		},
		Hunt: &pipeline.HuntDigest{HuntID: "h1", Name: "hunt <b>x</b>", Columns: []string{"DeviceName", "<col>"},
			Rows: []map[string]string{{"DeviceName": hostileHost, "<col>": hostileRowValue}}, TotalRows: 1, NewRows: 1},
		GroupKey:  "incident-42",
		CreatedAt: created,
	}
}

// recordingChannel records what it was sent and fails as scripted.
type recordingChannel struct {
	name string
	mu   sync.Mutex
	got  []pipeline.Notification
	errs []error // returned by successive calls; nil or exhausted = success
	call int
	// hook, when set, runs inside Send (used to pause a send).
	hook func()
}

var _ Channel = (*recordingChannel)(nil)

func (c *recordingChannel) Name() string { return c.name }

func (c *recordingChannel) Send(ctx context.Context, n pipeline.Notification, r Rendered) error {
	if c.hook != nil {
		c.hook()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.call
	c.call++
	if i < len(c.errs) && c.errs[i] != nil {
		return c.errs[i]
	}
	c.got = append(c.got, n)
	return nil
}

func (c *recordingChannel) sent() []pipeline.Notification {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]pipeline.Notification(nil), c.got...)
}

func (c *recordingChannel) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.call
}

// testClock is a settable clock safe for concurrent use.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
