package enrichalert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/fntest"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
)

const (
	machine = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"
	other   = "0000000000000000000000000000000000000001"
)

func setup(t *testing.T) (*Function, *fntest.Defender, *queue.Recorder) {
	t.Helper()
	d := fntest.NewDefender()
	d.AddMachine(mde.Machine{ID: machine, ComputerDNSName: "ws-fin-0142.corp.example.com", OSPlatform: "Windows11"})
	d.AddMachine(mde.Machine{ID: other, ComputerDNSName: "other.corp.example.com"})
	inc := int64(4711)
	for _, a := range []mde.Alert{
		{ID: "da1_high", Severity: mde.SeverityHigh, Title: `<script>alert("x")</script>`, MachineID: machine, IncidentID: &inc},
		{ID: "da2_low", Severity: mde.SeverityLow, Title: "low", MachineID: machine},
	} {
		d.AddAlert(a)
	}
	q := queue.NewRecorder()
	f := &Function{Defender: d, Policy: policy.Default(), Store: store.NewMemory(), Queue: q,
		Now: func() time.Time { return time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC) }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return f, d, q
}

func TestHighAlertGoesToIsolationsOthersToNotifications(t *testing.T) {
	f, _, q := setup(t)
	ctx := context.Background()
	for _, id := range []string{"da1_high", "da2_low"} {
		if err := f.Process(ctx, pipeline.AlertMessage{ID: id, MachineID: machine}); err != nil {
			t.Fatal(err)
		}
	}
	isos := q.Messages(queue.Isolations)
	if len(isos) != 1 || isos[0].MessageID != "iso-da1_high" {
		t.Fatalf("isolation messages = %+v, want one iso-da1_high", isos)
	}
	var req pipeline.IsolationRequest
	if err := json.Unmarshal(isos[0].Body, &req); err != nil {
		t.Fatal(err)
	}
	if err := req.Validate(); err != nil || req.IsolationType != mde.IsolationFull || req.Decision.RuleID == "" {
		t.Fatalf("request = %+v (validate: %v)", req, err)
	}
	ns := q.Messages(queue.Notifications)
	if len(ns) != 1 || ns[0].MessageID != "n-alert-da2_low" {
		t.Fatalf("notifications = %+v, want n-alert-da2_low only", ns)
	}
}

// Pins: a redelivered alert re-sends the recorded decision's messages with
// the same ids (dropped as duplicates), and asks Defender nothing again.
func TestRedeliveryRedispatchesRecordedDecision(t *testing.T) {
	f, d, q := setup(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := f.Process(ctx, pipeline.AlertMessage{ID: "da1_high"}); err != nil {
			t.Fatal(err)
		}
	}
	if d.Count("GetAlert") != 1 {
		t.Fatalf("GetAlert calls = %d, want 1", d.Count("GetAlert"))
	}
	if len(q.Messages(queue.Isolations)) != 1 || q.Duplicates(queue.Isolations) != 2 {
		t.Fatalf("isolations = %d (duplicates %d), want 1 (2)", len(q.Messages(queue.Isolations)), q.Duplicates(queue.Isolations))
	}
}

func TestPermanentAndTransientErrors(t *testing.T) {
	tests := []struct {
		name      string
		msg       pipeline.AlertMessage
		fail      error
		permanent bool
	}{
		{name: "unknown alert is dead-lettered", msg: pipeline.AlertMessage{ID: "da9_missing"}, permanent: true},
		{name: "message naming another machine is refused", msg: pipeline.AlertMessage{ID: "da1_high", MachineID: other}, permanent: true},
		{name: "throttling is retried", msg: pipeline.AlertMessage{ID: "da1_high"}, fail: &mde.Error{StatusCode: 429, Code: mde.CodeThrottled}},
		{name: "server error is retried", msg: pipeline.AlertMessage{ID: "da1_high"}, fail: &mde.Error{StatusCode: 503, Code: mde.CodeServerError}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, d, q := setup(t)
			if tc.fail != nil {
				d.Fail["GetAlert"] = []error{tc.fail}
			}
			err := f.Process(context.Background(), tc.msg)
			if err == nil {
				t.Fatal("want an error")
			}
			if fn.IsPermanent(err) != tc.permanent {
				t.Fatalf("IsPermanent(%v) = %v, want %v", err, fn.IsPermanent(err), tc.permanent)
			}
			if len(q.Messages(queue.Isolations)) != 0 {
				t.Fatal("no isolation may be requested on error")
			}
			if !tc.permanent && !errors.Is(err, tc.fail) {
				t.Fatalf("error %v does not wrap %v", err, tc.fail)
			}
		})
	}
}

func TestEmbeddedHuntAlertIsNotFetched(t *testing.T) {
	f, d, q := setup(t)
	a := &mde.Alert{ID: "hunt-abc123", Severity: mde.SeverityHigh, Title: "hunt hit", MachineID: machine, DetectionSource: "CustomDetection"}
	if err := f.Process(context.Background(), pipeline.AlertMessage{ID: a.ID, MachineID: machine, Source: "hunt", Alert: a}); err != nil {
		t.Fatal(err)
	}
	if d.Count("GetAlert") != 0 || len(q.Messages(queue.Isolations)) != 1 {
		t.Fatalf("GetAlert=%d isolations=%d; want 0 and 1", d.Count("GetAlert"), len(q.Messages(queue.Isolations)))
	}
}
