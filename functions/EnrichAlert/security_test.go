package enrichalert

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// A forwarded alerts-queue message (Power Automate, a Logic App, anyone
// with Send on the queue) must not be able to steer the response: the
// machine and the severity are Defender's, not the message's. These
// messages all name a real Defender alert that does not isolate anything
// (Low severity, or no machine) and try to turn it into an isolation.
func TestForwardedMessageCannotSteerIsolation(t *testing.T) {
	tests := []struct {
		name string
		msg  pipeline.AlertMessage
	}{
		{
			name: "embedded alert escalates a real Low alert to High",
			msg: pipeline.AlertMessage{ID: "da2_low", Alert: &mde.Alert{ID: "da2_low", Severity: mde.SeverityHigh,
				Title: "forged", MachineID: machine}},
		},
		{
			name: "embedded alert moves a real alert to another machine",
			msg: pipeline.AlertMessage{ID: "da2_low", MachineID: other, Source: "hunt", Alert: &mde.Alert{ID: "da2_low",
				Severity: mde.SeverityHigh, Title: "forged", MachineID: other}},
		},
		{
			name: "message names a machine for an alert that has none",
			msg:  pipeline.AlertMessage{ID: "da3_nomachine", MachineID: other},
		},
		{
			name: "embedded alert for an alert that has no machine",
			msg: pipeline.AlertMessage{ID: "da3_nomachine", MachineID: other, Alert: &mde.Alert{ID: "da3_nomachine",
				Severity: mde.SeverityHigh, Title: "forged", MachineID: other}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, d, q := setup(t)
			// A real High alert without a machine (identity / cloud app
			// alerts look like this).
			d.AddAlert(mde.Alert{ID: "da3_nomachine", Severity: mde.SeverityHigh, Title: "no machine"})
			// Round-trip through JSON: this is what arrives on the queue.
			body, err := json.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			m, err := pipeline.ParseAlertMessage(body)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_ = f.Process(context.Background(), m) // refusing with an error is fine too
			if isos := q.Messages(queue.Isolations); len(isos) != 0 {
				var req pipeline.IsolationRequest
				_ = json.Unmarshal(isos[0].Body, &req)
				t.Fatalf("a forwarded message made mdeflow request isolation of %s (rule %s)", req.MachineID, req.Decision.RuleID)
			}
		})
	}
}

// A hunt-raised alert exists only in mdeflow: its message carries the whole
// alert. Whoever can send to the alerts queue could otherwise make up a
// "hunt" alert of any severity for any machine. At the queue boundary
// (Handle) a hunt alert is taken from what ScheduledHunt recorded, never
// from the message.
func TestForgedHuntAlertIsRefused(t *testing.T) {
	recorded := &mde.Alert{ID: "hunt-0123456789abcdef01234567", Severity: mde.SeverityMedium, Title: "hunt hit",
		MachineID: machine, DetectionSource: "CustomDetection"}
	tests := []struct {
		name      string
		alert     *mde.Alert
		record    bool
		wantIsos  int
		permanent bool
	}{
		{name: "forged hunt alert (never recorded) for another machine", alert: &mde.Alert{ID: "hunt-ffffffffffffffffffffffff",
			Severity: mde.SeverityHigh, Title: "forged", MachineID: other, DetectionSource: "CustomDetection"}, permanent: true},
		{name: "recorded hunt alert whose message was edited to High", alert: &mde.Alert{ID: recorded.ID, Severity: mde.SeverityHigh,
			Title: "edited", MachineID: machine, DetectionSource: "CustomDetection"}, record: true},
		{name: "recorded High hunt alert is processed", alert: &mde.Alert{ID: recorded.ID, Severity: mde.SeverityHigh,
			Title: "hunt hit", MachineID: machine}, record: true, wantIsos: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, d, q := setup(t)
			if tc.record {
				rec := *recorded
				if tc.wantIsos == 1 {
					rec.Severity = mde.SeverityHigh
				}
				if err := RecordHuntAlert(context.Background(), f.Store, &rec); err != nil {
					t.Fatal(err)
				}
			}
			body, err := json.Marshal(pipeline.AlertMessage{ID: tc.alert.ID, MachineID: tc.alert.MachineID, Source: "hunt", Alert: tc.alert})
			if err != nil {
				t.Fatal(err)
			}
			err = f.Handle(context.Background(), nil, wire.ServiceBusMessage{MessageID: "alert-" + tc.alert.ID, Body: body})
			if tc.permanent != (err != nil && fn.IsPermanent(err)) {
				t.Fatalf("Handle error = %v, want permanent=%v", err, tc.permanent)
			}
			if !tc.permanent && err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if got := len(q.Messages(queue.Isolations)); got != tc.wantIsos {
				t.Fatalf("isolation requests = %d, want %d", got, tc.wantIsos)
			}
			if d.Count("GetAlert") != 0 {
				t.Fatalf("a hunt alert id reached Defender's GetAlert")
			}
		})
	}
}

// Process command lines, file paths and URLs in an alert's evidence are
// the attacker's (a Linux command line can be megabytes). They travel in
// the decision record (store entities hold at most store.MaxDataSize) and
// in the isolation request (a Service Bus message holds 256 KiB on the
// standard tier). An alert whose evidence did not fit was never decided:
// every delivery failed, and the machine was never isolated.
func TestHugeEvidenceStillIsolates(t *testing.T) {
	const serviceBusStandardMax = 256 << 10
	tests := []struct {
		name  string
		cmd   string
		items int
	}{
		{"20 Windows-sized command lines", strings.Repeat("A", 32767), 20},
		{"one Linux command line of 1 MiB", strings.Repeat("x", 1<<20), 1},
		{"command lines that grow 6x in JSON", strings.Repeat("<\x01", 16000), 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, d, q := setup(t)
			a := mde.Alert{ID: "da4_huge", Severity: mde.SeverityHigh, Title: "huge", MachineID: machine}
			for i := 0; i < tc.items; i++ {
				cmd := tc.cmd
				a.Evidence = append(a.Evidence, mde.Evidence{EntityType: "Process", ProcessCommandLine: &cmd, FileName: &cmd})
			}
			d.AddAlert(a)
			if err := f.Process(context.Background(), pipeline.AlertMessage{ID: a.ID, MachineID: machine}); err != nil {
				t.Fatalf("Process: %v", err)
			}
			isos := q.Messages(queue.Isolations)
			if len(isos) != 1 {
				t.Fatalf("isolation requests = %d, want 1", len(isos))
			}
			if n := len(isos[0].Body); n > serviceBusStandardMax/2 {
				t.Fatalf("isolation request is %d bytes; a Service Bus message (with the state and notification built from it) must stay well under %d", n, serviceBusStandardMax)
			}
		})
	}
}
