package manualrelease

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/fntest"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

const machine = "1111111111111111111111111111111111111111"

// A policy with dryRun: true promises that nothing in Defender changes.
// A manual release must honour it as the deployment setting is honoured.
func TestReleaseHonoursDryRun(t *testing.T) {
	dryPolicy, err := policy.Parse([]byte(`version: rehearsal-1
dryRun: true
defaults: {channels: [email]}
rules:
  - id: r
    match: {minSeverity: High}
    actions: [isolate, notify]
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		settingDry bool
		pol        *policy.Policy
		wantCalls  int
	}{
		{"deployment dry run", true, policy.Default(), 0},
		{"policy dry run", false, dryPolicy, 0},
		{"no dry run", false, policy.Default(), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fntest.NewDefender()
			d.AddMachine(mde.Machine{ID: machine, ComputerDNSName: "ws1.corp.example.com"})
			f := &Function{Defender: d, Store: store.NewMemory(), Queue: queue.NewRecorder(), DryRun: tc.settingDry,
				Policy: tc.pol, PolicyVersion: tc.pol.Version, Now: func() time.Time { return time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC) },
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			hr, err := wire.HTTPPayload("req", wire.IncomingHTTP{URL: "https://app.example.com/api/machines/" + machine + "/release",
				Method: "POST", Header: http.Header{"Content-Type": {"application/json"}}, Params: map[string]string{"machine": machine},
				Body: []byte(`{"comment":"incident closed","requestor":"alice"}`), AuthLevel: "Function", KeyID: "default"}, wire.Sys{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Invoke(context.Background(), wire.NewInvocation(Name, "1", hr, nil)); err != nil {
				t.Fatal(err)
			}
			if got := d.Count("UnisolateMachine"); got != tc.wantCalls {
				t.Fatalf("UnisolateMachine calls = %d, want %d", got, tc.wantCalls)
			}
		})
	}
}
