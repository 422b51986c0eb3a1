package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestAdvancedQueryShape(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	r := call(t, s, "POST", "/api/advancedqueries/run", tok, map[string]any{
		"Query": "DeviceProcessEvents | where DeviceId == '" + SampleHotMachineID + "' | project Timestamp, FileName, ProcessCommandLine | take 2",
	})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var out struct {
		Stats   map[string]any
		Schema  []struct{ Name, Type string }
		Results []map[string]any
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Stats["ExecutionTime"] == nil || out.Stats["dataset_statistics"] == nil || out.Stats["resource_usage"] == nil {
		t.Errorf("Stats = %v", out.Stats)
	}
	wantSchema := "Timestamp:DateTime,FileName:String,ProcessCommandLine:String"
	var got []string
	for _, c := range out.Schema {
		got = append(got, c.Name+":"+c.Type)
	}
	if strings.Join(got, ",") != wantSchema {
		t.Errorf("Schema = %v, want %s", got, wantSchema)
	}
	if len(out.Results) != 1 || out.Results[0]["FileName"] != "procdump64.exe" {
		t.Fatalf("Results = %v", out.Results)
	}
	ts, _ := out.Results[0]["Timestamp"].(string)
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") {
		t.Errorf("Timestamp %q is not ISO-8601 UTC", ts)
	}
}

// The public Sentinel queries run unchanged and hit the sample tenant's rows.
func TestPublicSentinelQueriesHit(t *testing.T) {
	dir := publicDataDir(t)
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	graphTok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	tests := []struct {
		file        string
		wantDevices []string
	}{
		{"sentinel_rule_XDR_LSASSCredDumpProcdump.yaml", []string{"9c59d6c21e3faaafad573805c7e0173f59c511d8", SampleHotMachineID}},
		{"sentinel_hq_M365D_Bazacall_NTDS_theft.yaml", []string{SampleProtectedMachineID}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Query string `yaml:"query"`
			}
			if err := yaml.Unmarshal(b, &doc); err != nil || doc.Query == "" {
				t.Fatalf("reading query: %v", err)
			}
			devices := func(rows []map[string]any) []string {
				var ids []string
				for _, r := range rows {
					ids = append(ids, r["DeviceId"].(string))
				}
				sort.Strings(ids)
				return ids
			}
			r := call(t, s, "POST", "/api/advancedqueries/run", tok, map[string]any{"Query": doc.Query})
			if r.status != 200 {
				t.Fatalf("MDE: %d %s", r.status, r.body)
			}
			var mdeOut struct{ Results []map[string]any }
			_ = json.Unmarshal(r.body, &mdeOut)
			if got := devices(mdeOut.Results); strings.Join(got, ",") != strings.Join(tt.wantDevices, ",") {
				t.Errorf("MDE hits on %v, want %v", got, tt.wantDevices)
			}
			if strings.Contains(tt.file, "LSASS") {
				for _, row := range mdeOut.Results {
					if row["HostName"] == nil || strings.Contains(row["HostName"].(string), ".") || row["DnsDomain"] != "corp.example.com" {
						t.Errorf("extend HostName/DnsDomain = %v/%v", row["HostName"], row["DnsDomain"])
					}
				}
			}
			r = call(t, s, "POST", "/v1.0/security/runHuntingQuery", graphTok, map[string]any{"Query": doc.Query})
			if r.status != 200 {
				t.Fatalf("Graph: %d %s", r.status, r.body)
			}
			var g struct {
				Context string `json:"@odata.context"`
				Schema  []struct{ Name, Type string }
				Results []map[string]any
			}
			_ = json.Unmarshal(r.body, &g)
			if !strings.Contains(string(r.body), `"schema":[{"name":`) || !strings.HasSuffix(g.Context, "$metadata#microsoft.graph.security.huntingQueryResults") {
				t.Errorf("Graph shape: %.200s", r.body)
			}
			if got := devices(g.Results); strings.Join(got, ",") != strings.Join(tt.wantDevices, ",") {
				t.Errorf("Graph hits on %v, want %v", got, tt.wantDevices)
			}
		})
	}
}

func TestHuntingErrorsAndHook(t *testing.T) {
	tenant := SampleTenant(testStart)
	var seen []string
	tenant.Hunt = func(q string, now time.Time) ([]Column, []map[string]any, error) {
		seen = append(seen, q)
		switch {
		case strings.Contains(q, "toolarge"):
			return nil, nil, &HuntError{Status: http.StatusBadRequest, Code: "BadRequest", Message: "Query execution has exceeded the allowed result size."}
		case strings.Contains(q, "boom"):
			return nil, nil, errors.New("Syntax error: boom")
		}
		return []Column{{"DeviceId", "String"}, {"Count", "Int64"}}, []map[string]any{{"DeviceId": SampleHotMachineID, "Count": 3, "At": now}}, nil
	}
	s, _ := startSim(t, Options{Tenant: tenant})
	tok := mdeToken(t, s)
	r := call(t, s, "POST", "/api/advancedqueries/run", tok, map[string]any{"Query": "DeviceProcessEvents | summarize Count=count() by DeviceId"})
	if r.status != 200 || !strings.Contains(string(r.body), `"Schema":[{"Name":"DeviceId","Type":"String"},{"Name":"Count","Type":"Int64"}]`) {
		t.Fatalf("hook result: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"At":"2025-03-01T09:30:00Z"`) {
		t.Errorf("hook got the wrong now or time not rendered: %s", r.body)
	}
	for _, q := range []string{"toolarge", "boom"} {
		if r := call(t, s, "POST", "/api/advancedqueries/run", tok, map[string]any{"Query": q}); r.status != 400 || r.errCode(t) != "BadRequest" {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
	if len(seen) != 3 {
		t.Errorf("hook saw %d queries", len(seen))
	}

	s2, _ := startSim(t, Options{})
	tok2 := mdeToken(t, s2)
	tests := []struct {
		body any
		code string
		msg  string
	}{
		{map[string]any{"query": "DeviceInfo"}, "MissingRequiredParameter", "Parameter Query is missing"},
		{map[string]any{"Query": "NoSuchTable | take 1"}, "BadRequest", "Failed to resolve table or column expression named 'NoSuchTable'"},
		{map[string]any{"Query": "DeviceProcessEvents | join kind=inner (DeviceInfo) on DeviceId"}, "BadRequest", "Tenant.Hunt"},
		{map[string]any{"Query": "DeviceProcessEvents | where FileName == 'x"}, "BadRequest", "unterminated"},
	}
	for _, tt := range tests {
		r := call(t, s2, "POST", "/api/advancedqueries/run", tok2, tt.body)
		if r.status != 400 || r.errCode(t) != tt.code || !strings.Contains(string(r.body), tt.msg) {
			t.Errorf("%v: %d %s", tt.body, r.status, r.body)
		}
	}
	// A known table without rows answers empty.
	r = call(t, s2, "POST", "/api/advancedqueries/run", tok2, map[string]any{"Query": "DeviceNetworkEvents | take 10"})
	if r.status != 200 || !strings.Contains(string(r.body), `"Results":[]`) {
		t.Errorf("empty table: %d %s", r.status, r.body)
	}
}

func TestGraphHuntingTimespan(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	count := func(body map[string]any) int {
		r := call(t, s, "POST", "/v1.0/security/runHuntingQuery", tok, body)
		if r.status != 200 {
			t.Fatalf("%v: %d %s", body, r.status, r.body)
		}
		res, _ := r.json(t)["results"].([]any)
		return len(res)
	}
	q := "DeviceProcessEvents | where FileName =~ 'NTDSUTIL.EXE'"
	if n := count(map[string]any{"Query": q}); n != 2 {
		t.Errorf("default 30-day window: %d ntdsutil rows, want 2", n)
	}
	if n := count(map[string]any{"Query": q, "Timespan": "P1D"}); n != 1 {
		t.Errorf("P1D: %d rows, want 1", n)
	}
	if n := count(map[string]any{"Query": "DeviceProcessEvents", "Timespan": "P60D"}); n != len(SampleTenant(testStart).HuntRows["DeviceProcessEvents"]) {
		t.Errorf("P60D: %d rows", n)
	}
	if r := call(t, s, "POST", "/v1.0/security/runHuntingQuery", tok, map[string]any{"Query": q, "Timespan": "yesterday"}); r.status != 400 {
		t.Errorf("bad Timespan: %d", r.status)
	}
	mdeTok := mdeToken(t, s)
	if r := call(t, s, "POST", "/v1.0/security/runHuntingQuery", mdeTok, map[string]any{"Query": q}); r.status != 401 || r.errCode(t) != "InvalidAuthenticationToken" {
		t.Errorf("MDE token on Graph: %d %s", r.status, r.body)
	}
}
