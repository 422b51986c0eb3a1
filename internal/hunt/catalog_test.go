package hunt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadDirPublicSentinelFiles(t *testing.T) {
	t.Parallel()
	cat, err := LoadDir(publicDir(t))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Hunt{}
	for _, h := range cat.Hunts {
		byID[h.ID] = h
	}
	tests := []struct {
		id, name     string
		freq, period time.Duration
		defaulted    bool
		tables       []string
		severity     string
		techniques   []string
	}{
		{id: "2a03d94e-991b-44f7-a2b3-e12ce6fd6c57", name: "NTDS theft", freq: DefaultFrequency, period: DefaultPeriod,
			defaulted: true, tables: []string{"DeviceProcessEvents"}},
		{id: "e7791695-c103-4d20-a75a-53e90788616b", name: "Alerts Related to Log4j Vulnerability",
			freq: DefaultFrequency, period: DefaultPeriod, defaulted: true, tables: []string{"AlertInfo"}},
		{id: "c332b840-61e4-462e-a201-0e2d69bad45d", name: "LSASS Credential Dumping with Procdump",
			freq: time.Hour, period: time.Hour, tables: []string{"DeviceProcessEvents"}, severity: "High",
			techniques: []string{"T1003"}},
	}
	for _, tc := range tests {
		h, ok := byID[tc.id]
		if !ok {
			t.Errorf("hunt %s (%s) not loaded", tc.id, tc.name)
			continue
		}
		if h.Name != tc.name || h.Frequency != tc.freq || h.Period != tc.period || h.FrequencyDefaulted != tc.defaulted {
			t.Errorf("%s: name %q freq %v period %v defaulted %v", tc.id, h.Name, h.Frequency, h.Period, h.FrequencyDefaulted)
		}
		if got := Tables(h.Query); !reflect.DeepEqual(got, tc.tables) {
			t.Errorf("%s: tables %q, want %q", tc.id, got, tc.tables)
		}
		if h.Severity != tc.severity || !reflect.DeepEqual(h.RelevantTechniques, tc.techniques) {
			t.Errorf("%s: severity %q techniques %q", tc.id, h.Severity, h.RelevantTechniques)
		}
		if !h.Enabled || !h.OnHits.Notify || h.TriggerOperator != "gt" || h.TriggerThreshold != 0 {
			t.Errorf("%s: defaults not applied: %+v", tc.id, h)
		}
	}
	lsass := byID["c332b840-61e4-462e-a201-0e2d69bad45d"]
	if len(lsass.EntityMappings) != 1 || len(lsass.EntityMappings[0].FieldMappings) != 3 ||
		lsass.EntityMappings[0].FieldMappings[0].ColumnName != "DeviceName" {
		t.Errorf("entity mappings = %+v", lsass.EntityMappings)
	}
	if lsass.Kind != "Scheduled" || lsass.Version != "1.0.0" || len(lsass.Tags) != 5 || lsass.Status != "Available" {
		t.Errorf("kind/version/tags/status = %q %q %q %q", lsass.Kind, lsass.Version, lsass.Tags, lsass.Status)
	}
	if len(lsass.RequiredDataConnectors) != 1 || lsass.RequiredDataConnectors[0].DataTypes[0] != "DeviceProcessEvents" {
		t.Errorf("connectors = %+v", lsass.RequiredDataConnectors)
	}
	var msticpy *Unsupported
	for i, u := range cat.Unsupported {
		if u.File == "msticpy_kql_m365_alerts.yaml" {
			msticpy = &cat.Unsupported[i]
		}
	}
	if msticpy == nil || !strings.Contains(msticpy.Reason, "sources") {
		t.Errorf("msticpy template not reported as unsupported: %+v", cat.Unsupported)
	}
}

func TestLoadDirOwnCatalog(t *testing.T) {
	t.Parallel()
	cat, err := LoadDir(filepath.Join("testdata", "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, h := range cat.Hunts {
		files = append(files, h.File)
	}
	wantFiles := []string{"bad_schedule.yaml", "disabled.yaml", "lsass_minidump.yaml", "nested/deeper/ntds.yaml", "sentinel_only.yaml"}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Errorf("hunt files = %q, want %q", files, wantFiles)
	}
	unsupported := map[string]string{}
	for _, u := range cat.Unsupported {
		unsupported[u.File] = u.Reason
	}
	wantReasons := map[string]string{
		"broken.yaml":     "invalid YAML",
		"z_duplicate.yml": "duplicate id test-lsass-minidump (already defined in lsass_minidump.yaml)",
		"not_a_hunt.yaml": "msticpy",
		"typo.yaml":       "field raiseAlert not found",
	}
	if len(unsupported) != len(wantReasons) {
		t.Errorf("unsupported = %v", unsupported)
	}
	for f, frag := range wantReasons {
		if !strings.Contains(unsupported[f], frag) {
			t.Errorf("%s: reason %q does not mention %q", f, unsupported[f], frag)
		}
	}

	h, ok := cat.Get("test-lsass-minidump")
	if !ok {
		t.Fatal("test-lsass-minidump not loaded")
	}
	if h.Frequency != time.Hour || h.Period != 2*time.Hour || h.FrequencyDefaulted {
		t.Errorf("schedule = %v/%v defaulted=%v", h.Frequency, h.Period, h.FrequencyDefaulted)
	}
	ra := h.OnHits.RaiseAlerts
	if ra == nil || ra.Severity != "High" || ra.DeviceIDColumn != "DeviceId" || ra.DeviceNameColumn != "DeviceName" ||
		ra.TitleTemplate != "{{.Name}} on {{.DeviceName}}" {
		t.Errorf("raiseAlerts = %+v", ra)
	}
	if h.OnHits.TagDevice != "hunt-lsass" || !h.OnHits.Notify || h.MaxRowsInDigest != 10 {
		t.Errorf("onHits = %+v maxRows %d", h.OnHits, h.MaxRowsInDigest)
	}

	d, _ := cat.Get("test-disabled")
	if d.Enabled || d.Frequency != 30*time.Minute || d.Period != time.Hour || d.FrequencyDefaulted {
		t.Errorf("disabled hunt: enabled=%v %v/%v", d.Enabled, d.Frequency, d.Period)
	}
	s, _ := cat.Get("test-sentinel-only")
	if s.Frequency != time.Hour || s.Period != 24*time.Hour || s.TriggerThreshold != 5 {
		t.Errorf("ISO durations: %v/%v threshold %d", s.Frequency, s.Period, s.TriggerThreshold)
	}
	if _, ok := cat.Get("never-loaded"); ok {
		t.Error("a file under a hidden directory was loaded")
	}
}

func TestLoadDirOptionsDefaults(t *testing.T) {
	t.Parallel()
	cat, err := LoadDirOptions(filepath.Join("testdata", "catalog"), &LoadOptions{DefaultFrequency: 6 * time.Hour, DefaultPeriod: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := cat.Get("test-ntds-hunting")
	if h.Frequency != 6*time.Hour || h.Period != 12*time.Hour || !h.FrequencyDefaulted {
		t.Errorf("defaults = %v/%v defaulted=%v", h.Frequency, h.Period, h.FrequencyDefaulted)
	}
}

func TestLoadDirMissing(t *testing.T) {
	t.Parallel()
	if _, err := LoadDir(filepath.Join("testdata", "no-such-dir")); err == nil {
		t.Error("LoadDir on a missing directory returned no error")
	}
}

func TestTriggered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		op        string
		threshold int
		rows      int
		want      bool
	}{
		{"gt", 0, 0, false}, {"gt", 0, 1, true}, {"", 0, 1, true},
		{"gt", 5, 5, false}, {"gt", 5, 6, true},
		{"lt", 1, 0, true}, {"lt", 1, 1, false},
		{"eq", 0, 0, true}, {"eq", 0, 2, false},
		{"ne", 3, 3, false}, {"ne", 3, 4, true},
	}
	for _, tc := range tests {
		h := Hunt{TriggerOperator: tc.op, TriggerThreshold: tc.threshold}
		if got := h.Triggered(tc.rows); got != tc.want {
			t.Errorf("%s %d with %d rows = %v, want %v", tc.op, tc.threshold, tc.rows, got, tc.want)
		}
	}
	for in, want := range map[string]string{"GreaterThan": "gt", "LessThan": "lt", "Equal": "eq", "NotEqual": "ne", "above": "above"} {
		if got := normaliseOperator(in); got != want {
			t.Errorf("normaliseOperator(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckCodes(t *testing.T) {
	t.Parallel()
	cat, err := LoadDir(filepath.Join("testdata", "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id       string
		api      string
		errors   []string
		warnings []string
	}{
		{id: "test-lsass-minidump", api: APIMDE},
		{id: "test-sentinel-only", api: APIGraph,
			errors: []string{"sentinel-table", "sentinel-table", "time-generated", "sentinel-function", "sentinel-function"}},
		{id: "test-bad-schedule", api: APIMDE,
			errors:   []string{"bad-duration", "period-too-long", "bad-trigger"},
			warnings: []string{"bad-severity"}},
		{id: "test-disabled", api: APIMDE, errors: []string{"api-table"}},
		{id: "test-disabled", api: APIXDR},
		{id: "test-ntds-hunting", api: APIMDE, warnings: []string{"default-frequency"}},
		{id: "test-ntds-hunting", api: "splunk", errors: []string{"unknown-api"}, warnings: []string{"default-frequency"}},
	}
	for _, tc := range tests {
		t.Run(tc.id+"/"+tc.api, func(t *testing.T) {
			h, ok := cat.Get(tc.id)
			if !ok {
				t.Fatalf("%s not loaded", tc.id)
			}
			var errs, warns []string
			for _, p := range Check(h, tc.api) {
				if p.Warning {
					warns = append(warns, p.Code)
				} else {
					errs = append(errs, p.Code)
				}
			}
			if !reflect.DeepEqual(errs, tc.errors) || !reflect.DeepEqual(warns, tc.warnings) {
				t.Errorf("errors %q warnings %q, want %q %q", errs, warns, tc.errors, tc.warnings)
			}
		})
	}
}

func TestCheckHandBuilt(t *testing.T) {
	t.Parallel()
	base := Hunt{ID: "x", Query: "DeviceEvents | take 1", Frequency: time.Hour, Period: time.Hour, TriggerOperator: "gt"}
	tests := []struct {
		name   string
		mutate func(*Hunt)
		api    string
		code   string
	}{
		{"missing query", func(h *Hunt) { h.Query = "  " }, APIGraph, "no-query"},
		{"missing id", func(h *Hunt) { h.ID = "" }, APIGraph, "bad-id"},
		{"id with slash", func(h *Hunt) { h.ID = "a/b" }, APIGraph, "bad-id"},
		{"wrong case", func(h *Hunt) { h.Query = "deviceprocessevents | take 1" }, APIGraph, "table-case"},
		{"unknown table", func(h *Hunt) { h.Query = "MyCustomTable_CL | take 1" }, APIGraph, "unknown-table"},
		{"asim", func(h *Hunt) { h.Query = "_Im_ProcessEvent(starttime=ago(1d))" }, APIGraph, "sentinel-function"},
		{"gap", func(h *Hunt) { h.Period = 30 * time.Minute }, APIGraph, "gap"},
		{"short", func(h *Hunt) { h.Frequency, h.Period = time.Minute, time.Minute }, APIGraph, "short-frequency"},
		{"long period", func(h *Hunt) { h.Period = 31 * 24 * time.Hour }, APIGraph, "period-too-long"},
		{"wildcard on mde", func(h *Hunt) { h.Query = "union Device* | take 1" }, APIMDE, "unscoped-wildcard"},
		{"wildcard of xdr tables on mde", func(h *Hunt) { h.Query = "union Identity* | take 1" }, APIMDE, "api-table"},
		{"bad tag", func(h *Hunt) { h.OnHits.TagDevice = "a\nb" }, APIGraph, "bad-tag"},
		{"bad title template", func(h *Hunt) {
			h.OnHits.RaiseAlerts = &RaiseAlerts{DeviceIDColumn: "DeviceId", TitleTemplate: "{{.Nope}}"}
		}, APIGraph, "bad-title-template"},
		{"bad alert severity", func(h *Hunt) {
			h.OnHits.RaiseAlerts = &RaiseAlerts{DeviceIDColumn: "DeviceId", Severity: "Sev1"}
		}, APIGraph, "bad-severity"},
		{"device column projected away", func(h *Hunt) {
			h.Query = "DeviceEvents | project Timestamp, DeviceName"
			h.OnHits.RaiseAlerts = &RaiseAlerts{DeviceIDColumn: "DeviceId"}
		}, APIGraph, "device-column"},
		{"device column summarized away", func(h *Hunt) {
			h.Query = "DeviceEvents | summarize count() by DeviceName"
			h.OnHits.RaiseAlerts = &RaiseAlerts{DeviceIDColumn: "DeviceId"}
		}, APIGraph, "device-column"},
		{"negative threshold", func(h *Hunt) { h.TriggerThreshold = -1 }, APIGraph, "bad-trigger"},
		{"deprecated", func(h *Hunt) { h.Status = "Deprecated" }, APIGraph, "deprecated"},
	}
	if ps := Check(base, APIMDE); len(ps) != 0 {
		t.Fatalf("base hunt has problems: %v", ps)
	}
	// project-away keeps the other columns: no device-column warning.
	away := base
	away.Query = "DeviceEvents | project-away AdditionalFields"
	away.OnHits.RaiseAlerts = &RaiseAlerts{DeviceIDColumn: "DeviceId"}
	if ps := Check(away, APIGraph); len(ps) != 0 {
		t.Errorf("project-away: %v", ps)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := base
			tc.mutate(&h)
			if !hasCode(Check(h, tc.api), tc.code) {
				t.Errorf("Check() = %v, want code %s", Check(h, tc.api), tc.code)
			}
		})
	}
}

func TestRunCheckGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, golden, api string
		dir               func(t *testing.T) string
	}{
		{"own catalog mde", "check_catalog_mde.golden", APIMDE, func(*testing.T) string { return filepath.Join("testdata", "catalog") }},
		{"public mde", "check_public_mde.golden", APIMDE, publicDir},
		{"public graph", "check_public_graph.golden", APIGraph, publicDir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			var buf bytes.Buffer
			err := RunCheck(&buf, dir, tc.api)
			if !errors.Is(err, ErrCheckFailed) {
				t.Errorf("RunCheck error = %v, want ErrCheckFailed", err)
			}
			golden(t, tc.golden, buf.Bytes())
		})
	}
}

func TestRunCheckExamples(t *testing.T) {
	t.Parallel()
	// The shipped demo catalog must pass the check on the MDE API (the
	// simulator serves advancedqueries) and on Graph.
	dir := filepath.Join("..", "..", "examples", "hunts")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("examples/hunts missing: %v", err)
	}
	for _, api := range []string{APIMDE, APIGraph} {
		var buf bytes.Buffer
		if err := RunCheck(&buf, dir, api); err != nil {
			t.Errorf("RunCheck(examples/hunts, %s) = %v\n%s", api, err, buf.String())
		}
	}
	cat, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	raise := 0
	for _, h := range cat.Hunts {
		if h.OnHits.RaiseAlerts != nil {
			raise++
		}
		if h.MDEFlow == nil {
			t.Errorf("%s has no mdeflow block", h.File)
		}
	}
	if len(cat.Hunts) < 2 || raise == 0 {
		t.Errorf("examples: %d hunts, %d raising alerts", len(cat.Hunts), raise)
	}
}
