package hunt

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Hunt cells are attacker-influenced (command lines, file names of the
// processes a hunt matches). The digest travels as one Service Bus message
// (256 KiB on the standard tier): a digest that does not fit fails the
// publish, the slot is retried with the same rows and the device alerts,
// sent after the digest, are never raised.
func TestDigestFitsAServiceBusMessage(t *testing.T) {
	const serviceBusStandardMax = 256 << 10
	hostile := strings.Repeat("<", 600) // '<' is six bytes in JSON (\u003c)
	tests := []struct {
		name string
		cols int
		rows int
	}{
		{"two command-line columns", 2, 50},
		{"ten columns", 10, 50},
		{"forty columns", 40, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := RunReport{HuntID: "h1", Name: "hostile", Severity: "High", Triggered: true, TotalRows: tc.rows,
				Slot: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), RanAt: time.Date(2026, 12, 3, 10, 1, 0, 0, time.UTC)}
			for c := 0; c < tc.cols; c++ {
				rep.Columns = append(rep.Columns, "Col"+strings.Repeat("x", c))
			}
			for r := 0; r < tc.rows; r++ {
				row := map[string]any{}
				for _, c := range rep.Columns {
					row[c] = hostile
				}
				rep.NewRows = append(rep.NewRows, row)
			}
			d := Digest(rep, 50)
			if d == nil {
				t.Fatal("no digest")
			}
			b, err := json.Marshal(pipeline.Notification{ID: "n-hunt-h1-20261203T100000", Kind: pipeline.NotifyHunt, Hunt: d})
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > serviceBusStandardMax/2 {
				t.Fatalf("digest notification is %d bytes (%d rows shown); it must stay well under %d", len(b), len(d.Rows), serviceBusStandardMax)
			}
			if len(d.Rows) == 0 || d.NewRows != tc.rows || d.TotalRows != tc.rows {
				t.Fatalf("digest shows %d rows, new %d, total %d; want some rows and the true counts", len(d.Rows), d.NewRows, d.TotalRows)
			}
		})
	}
}

// The device alert a hunt raises carries its evidence, built from the
// rows' cells, in one alerts-queue message (and one store record). Twenty
// rows of hostile cells must not make it too big to send: the alerts of
// the run would never be raised, and the device never isolated.
func TestDeviceAlertFitsAServiceBusMessage(t *testing.T) {
	const serviceBusStandardMax = 256 << 10
	const dev = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"
	h := Hunt{ID: "h1", Name: "hostile", Severity: "High", OnHits: OnHits{RaiseAlerts: &RaiseAlerts{}}}
	rep := RunReport{HuntID: "h1", Triggered: true, Slot: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	for i := 0; i < 40; i++ {
		cell := strings.Repeat("x", i) + strings.Repeat("<", 512) // distinct, so evidence is not de-duplicated
		// The columns of a DeviceProcessEvents hunt.
		rep.NewRows = append(rep.NewRows, map[string]any{"DeviceId": dev, "DeviceName": "ws1",
			"FileName": cell, "FolderPath": cell, "ProcessCommandLine": cell, "SHA1": cell, "SHA256": cell,
			"InitiatingProcessFileName": cell, "InitiatingProcessFolderPath": cell})
	}
	rep.TotalRows = len(rep.NewRows)
	alerts, _ := DeviceAlerts(h, rep, rep.Slot)
	if len(alerts) != 1 {
		t.Fatalf("alerts = %d, want 1", len(alerts))
	}
	b, err := json.Marshal(alerts[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > serviceBusStandardMax/2 {
		t.Fatalf("device alert message is %d bytes (%d evidence items); it must stay well under %d", len(b), len(alerts[0].Alert.Evidence), serviceBusStandardMax)
	}
	if len(alerts[0].Alert.Evidence) == 0 {
		t.Fatal("no evidence kept")
	}
}
