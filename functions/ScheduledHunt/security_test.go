package scheduledhunt

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	enrichalert "github.com/mdeflow/mdeflow/functions/EnrichAlert"
	"github.com/mdeflow/mdeflow/internal/fntest"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Pins: the device alerts a hunt raises are recorded before they are sent,
// so that EnrichAlert (which refuses unrecorded hunt alerts) acts on them.
func TestRaisedAlertsAreRecordedForEnrichAlert(t *testing.T) {
	h := hunt.Hunt{ID: "lsass", Name: "LSASS dump", Severity: "High", Enabled: true, Frequency: time.Hour, Period: time.Hour,
		OnHits: hunt.OnHits{RaiseAlerts: &hunt.RaiseAlerts{DeviceIDColumn: "DeviceId", DeviceNameColumn: "DeviceName"}}}
	st := store.NewMemory()
	q := queue.NewRecorder()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &Publisher{Queue: q, Store: st, Catalog: hunt.Catalog{Hunts: []hunt.Hunt{h}}, Logger: log}
	slot := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	rep := hunt.RunReport{HuntID: "lsass", Name: h.Name, Severity: "High", Slot: slot, RanAt: slot.Add(time.Minute), Period: time.Hour,
		Triggered: true, TotalRows: 1, Columns: []string{"DeviceId", "DeviceName"},
		NewRows: []map[string]any{{"DeviceId": dev, "DeviceName": "ws1"}}}
	if err := p.Publish(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
	as := q.Messages(queue.Alerts)
	if len(as) != 1 {
		t.Fatalf("device alerts = %d, want 1", len(as))
	}
	d := fntest.NewDefender()
	d.AddMachine(mde.Machine{ID: dev, ComputerDNSName: "ws1"})
	eq := queue.NewRecorder()
	e := &enrichalert.Function{Defender: d, Policy: policy.Default(), Store: st, Queue: eq, Now: time.Now, Logger: log}
	if err := e.Handle(context.Background(), nil, wire.ServiceBusMessage{MessageID: as[0].MessageID, Body: as[0].Body}); err != nil {
		t.Fatalf("EnrichAlert refused the hunt's own alert: %v", err)
	}
	if got := len(eq.Messages(queue.Isolations)); got != 1 {
		t.Fatalf("isolation requests = %d, want 1 (High hunt alert, default policy)", got)
	}
}
