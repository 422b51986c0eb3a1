package enrichalert

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
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
