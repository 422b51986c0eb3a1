package scheduledhunt

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/fntest"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
)

const dev = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"

func TestPublishDigestAlertsAndTags(t *testing.T) {
	h := hunt.Hunt{ID: "lsass", Name: "LSASS dump", Severity: "High", Enabled: true, Frequency: time.Hour, Period: time.Hour,
		OnHits: hunt.OnHits{Notify: true, TagDevice: "hunt-lsass", RaiseAlerts: &hunt.RaiseAlerts{DeviceIDColumn: "DeviceId", DeviceNameColumn: "DeviceName"}}}
	cat := hunt.Catalog{Hunts: []hunt.Hunt{h}}
	d := fntest.NewDefender()
	d.AddMachine(mde.Machine{ID: dev, ComputerDNSName: "ws1"})
	q := queue.NewRecorder()
	p := &Publisher{Queue: q, Catalog: cat, Tagger: d, MaxRows: 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	slot := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rep := hunt.RunReport{HuntID: "lsass", Name: h.Name, Severity: "High", Slot: slot, RanAt: slot.Add(time.Minute), Period: time.Hour,
		Triggered: true, TotalRows: 3, Columns: []string{"DeviceId", "DeviceName", "FileName"},
		NewRows: []map[string]any{
			{"DeviceId": dev, "DeviceName": "ws1", "FileName": "procdump64.exe"},
			{"DeviceId": dev, "DeviceName": "ws1", "FileName": "procdump.exe"},
			{"DeviceId": "../../machines", "DeviceName": "evil", "FileName": "x"},
		}}
	for i := 0; i < 2; i++ { // a replayed run publishes nothing twice
		if err := p.Publish(context.Background(), rep); err != nil {
			t.Fatal(err)
		}
	}
	ns := q.Messages(queue.Notifications)
	if len(ns) != 1 {
		t.Fatalf("digests = %d, want 1", len(ns))
	}
	var n pipeline.Notification
	if err := json.Unmarshal(ns[0].Body, &n); err != nil || n.Hunt == nil || n.Hunt.NewRows != 3 {
		t.Fatalf("digest = %+v (%v)", n, err)
	}
	as := q.Messages(queue.Alerts)
	if len(as) != 1 {
		t.Fatalf("device alerts = %d, want 1 (one valid device)", len(as))
	}
	m, err := pipeline.ParseAlertMessage(as[0].Body)
	if err != nil || m.MachineID != dev || m.Alert == nil || m.Source != "hunt" {
		t.Fatalf("alert message = %+v (%v)", m, err)
	}
	if d.Count("AddMachineTag") != 2 { // once per publish; the invalid id never reaches the API
		t.Fatalf("tag calls = %d, want 2", d.Count("AddMachineTag"))
	}
}
