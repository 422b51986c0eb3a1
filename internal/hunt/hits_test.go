package hunt

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// hitsReport is a run of the lsass_minidump fixture hunt with rows for two
// devices, one row without a device id and one with a hostile id.
func hitsReport(t *testing.T) (Hunt, RunReport) {
	t.Helper()
	cat, err := LoadDir(filepath.Join("testdata", "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	h, ok := cat.Get("test-lsass-minidump")
	if !ok {
		t.Fatal("fixture hunt missing")
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "responses", "hits.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ParseResults(raw)
	if err != nil {
		t.Fatal(err)
	}
	return h, RunReport{
		HuntID: h.ID, Name: h.Name, Severity: h.Severity, Slot: t0, RanAt: t0.Add(time.Minute), Period: h.Period,
		Triggered: true, TotalRows: len(res.Rows) + 3, NewRows: res.Rows, Columns: res.ColumnNames(),
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	_, rep := hitsReport(t)
	d := Digest(rep, 2)
	if d == nil {
		t.Fatal("no digest")
	}
	if d.HuntID != rep.HuntID || d.NewRows != len(rep.NewRows) || d.TotalRows != rep.TotalRows || len(d.Rows) != 2 ||
		!d.RunAt.Equal(rep.RanAt) || strings.Join(d.Columns, ",") != strings.Join(rep.Columns, ",") {
		t.Errorf("digest = %+v", d)
	}
	row := d.Rows[0]
	if row["ProcessId"] != "704" || row["Timestamp"] != "2025-03-01T08:55:00.1234567Z" || row["SHA256"] != "" {
		t.Errorf("row values = %q", row)
	}
	if d := Digest(rep, 0); len(d.Rows) != len(rep.NewRows) {
		t.Errorf("default cap: %d rows", len(d.Rows))
	}
	// Hostile cell: control characters replaced, length capped.
	long := RunReport{HuntID: "x", Triggered: true, TotalRows: 1, Columns: []string{"c"},
		NewRows: []map[string]any{{"c": "a\x1b[31m\r\nb" + strings.Repeat("z", 2000)}}}
	got := Digest(long, 1).Rows[0]["c"]
	if strings.ContainsAny(got, "\x1b\r") || !strings.HasPrefix(got, "a\uFFFD[31m\uFFFD\nb") || len([]rune(got)) != maxCellRunes+1 {
		t.Errorf("sanitised cell = %q…", got[:20])
	}
	none := []RunReport{
		{Triggered: true, TotalRows: 3},                                             // all rows seen before
		{Triggered: false, TotalRows: 1, NewRows: rep.NewRows},                      // below threshold
		{Triggered: true, TotalRows: 1, NewRows: rep.NewRows, Err: errors.New("x")}, // failed
		{Skipped: "budget"},
	}
	for i, r := range none {
		if d := Digest(r, 0); d != nil {
			t.Errorf("case %d: digest %+v, want nil", i, d)
		}
	}
	// An absence trigger (lt 1) with no rows still notifies.
	if d := Digest(RunReport{HuntID: "quiet", Triggered: true}, 0); d == nil || d.TotalRows != 0 || len(d.Rows) != 0 {
		t.Errorf("absence digest = %+v", d)
	}
}

func TestDeviceAlerts(t *testing.T) {
	t.Parallel()
	h, rep := hitsReport(t)
	now := t0.Add(2 * time.Minute)
	msgs, skipped := DeviceAlerts(h, rep, now)
	if len(msgs) != 2 {
		t.Fatalf("%d alerts, want one per device", len(msgs))
	}
	if len(skipped) != 2 || skipped[0].Row != 3 || skipped[1].Row != 4 ||
		!strings.Contains(skipped[0].Reason, "no DeviceId") || !strings.Contains(skipped[1].Reason, "not a machine id") {
		t.Errorf("skipped = %+v", skipped)
	}
	for _, m := range msgs {
		// Each message survives the queue: JSON and ParseAlertMessage.
		body, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := pipeline.ParseAlertMessage(body)
		if err != nil {
			t.Fatalf("ParseAlertMessage: %v", err)
		}
		if err := mde.ValidateAlertID(back.ID); err != nil || !strings.HasPrefix(back.ID, "hunt-") {
			t.Errorf("alert id %q: %v", back.ID, err)
		}
		if back.Source != "hunt" || back.Alert == nil || back.Alert.MachineID != back.MachineID {
			t.Errorf("message = %+v", back)
		}
	}
	a := msgs[0].Alert // devices sorted: 10cb… before 3f9c…
	if a.MachineID != devB || a.ComputerDNSName != "dc-01.contoso.local" || a.Title != "LSASS minidump via comsvcs on dc-01.contoso.local" ||
		a.Severity != mde.SeverityHigh || a.Category != "CredentialAccess" || a.DetectionSource != "CustomDetection" ||
		a.Status != "New" || a.DetectorID != h.ID || strings.Join(a.MitreTechniques, ",") != "T1003.001" ||
		!a.AlertCreationTime.Equal(now) {
		t.Errorf("alert = %+v", a)
	}
	b := msgs[1].Alert
	if b.MachineID != devA || b.FirstEventTime == nil || b.LastEventTime == nil ||
		!b.FirstEventTime.Equal(time.Date(2025, 3, 1, 8, 55, 0, 123456700, time.UTC)) ||
		!b.LastEventTime.Equal(time.Date(2025, 3, 1, 8, 58, 0, 0, time.UTC)) {
		t.Errorf("event span = %v..%v", b.FirstEventTime, b.LastEventTime)
	}
	if !strings.Contains(b.Description, "2 new row(s)") {
		t.Errorf("description = %q", b.Description)
	}
	// Evidence of devA: two processes and one user (the repeated user once).
	var kinds []string
	for _, e := range b.Evidence {
		kinds = append(kinds, e.EntityType)
	}
	if strings.Join(kinds, ",") != "Process,User,Process" {
		t.Errorf("evidence kinds = %q", kinds)
	}
	p := b.Evidence[0]
	if mde.Str(p.FileName) != "rundll32.exe" || mde.Str(p.FilePath) != `C:\Windows\System32` || p.ProcessID == nil || *p.ProcessID != 704 ||
		mde.Str(p.ProcessCommandLine) == "" || mde.Str(p.ParentProcessFileName) != "cmd.exe" || mde.Str(p.Sha256) != "" ||
		p.EvidenceCreationTime == nil {
		t.Errorf("process evidence = %+v", p)
	}
	if u := b.Evidence[1]; mde.Str(u.AccountName) != "svc-backup" || mde.Str(u.DomainName) != "CONTOSO" {
		t.Errorf("user evidence = %+v", u)
	}

	// Deterministic: same slot, same ids; another slot, other ids.
	again, _ := DeviceAlerts(h, rep, now.Add(time.Hour))
	if again[0].ID != msgs[0].ID || again[1].ID != msgs[1].ID {
		t.Error("alert ids change between calls for the same slot")
	}
	rep2 := rep
	rep2.Slot = t0.Add(time.Hour)
	other, _ := DeviceAlerts(h, rep2, now)
	if other[0].ID == msgs[0].ID || msgs[0].ID == msgs[1].ID {
		t.Error("alert ids collide across slots or devices")
	}
	if HuntAlertID(h.ID, strings.ToUpper(devA), t0) != HuntAlertID(h.ID, devA, t0) {
		t.Error("alert id depends on the device id's case")
	}

	// No raiseAlerts, or a failed run: no alerts.
	plain := h
	plain.OnHits.RaiseAlerts = nil
	if m, _ := DeviceAlerts(plain, rep, now); m != nil {
		t.Error("alerts without raiseAlerts")
	}
	failed := rep
	failed.Err = errors.New("x")
	if m, _ := DeviceAlerts(h, failed, now); m != nil {
		t.Error("alerts from a failed run")
	}
}

func TestDeviceAlertsDefaults(t *testing.T) {
	t.Parallel()
	// A hand-built hunt: no template, Sentinel severity name, custom columns.
	h := Hunt{ID: "h", Name: "Custom", Severity: "informational",
		OnHits: OnHits{RaiseAlerts: &RaiseAlerts{DeviceIDColumn: "MachineId", DeviceNameColumn: "Host"}}}
	rep := RunReport{HuntID: "h", Slot: t0, Triggered: true, TotalRows: 1,
		NewRows: []map[string]any{{"MachineId": strings.ToUpper(devA), "Host": "h1", "RemoteIP": "203.0.113.9", "RemoteUrl": "http://x.test/a"}}}
	msgs, skipped := DeviceAlerts(h, rep, t0)
	if len(msgs) != 1 || len(skipped) != 0 {
		t.Fatalf("alerts %d skipped %v", len(msgs), skipped)
	}
	a := msgs[0].Alert
	if a.MachineID != devA || a.Title != "Custom" || a.Severity != mde.SeverityInformational || a.Category != "SuspiciousActivity" ||
		len(a.Evidence) != 2 || a.Evidence[0].EntityType != "Ip" || a.Evidence[1].EntityType != "Url" {
		t.Errorf("alert = %+v", a)
	}
	h.Severity = "Sev0"
	if msgs, _ := DeviceAlerts(h, rep, t0); msgs[0].Alert.Severity != mde.SeverityMedium {
		t.Errorf("unknown severity mapped to %q", msgs[0].Alert.Severity)
	}
}

func TestCategory(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Credential Access": "CredentialAccess", "CredentialAccess": "CredentialAccess",
		"initial-access": "InitialAccess", "": "SuspiciousActivity",
	} {
		var tactics []string
		if in != "" {
			tactics = []string{in}
		}
		if got := category(tactics); got != want {
			t.Errorf("category(%q) = %q, want %q", in, got, want)
		}
	}
}
