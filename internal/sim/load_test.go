package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadAlertsFile(t *testing.T) {
	type want struct {
		alerts, machines, graphRaw int
		tenant                     string
		firstMachine               string
		evidence                   int
	}
	tests := []struct {
		name string
		path func(t *testing.T) string
		want want
	}{
		{"MDE docs example (public)", publicFile("msdocs_mde_get-alerts_example2_response.json"),
			want{1, 1, 0, "a839b112-1253-6432-9bf6-94542403f21c", "111e6dd8c833c8a052ea231ec1b19adaf497b625", 3}},
		{"Graph docs example (public)", publicFile("graphdocs_security_list-alerts_v2_response.json"),
			want{1, 1, 1, "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c", "73e7e2de709dff64ef64b1d0c30e67fab63279db", 3}},
		{"bare MDE array", localFile("mde_alerts_array.json"), want{2, 1, 0, DefaultTenantID, "aa00bb11cc22dd33ee44ff5566778899aabbccdd", 1}},
		{"Graph with ip and user evidence", localFile("graph_alerts_v2.json"), want{2, 2, 2, "0d3f1c2b-4a5e-4f60-8a7b-9c8d7e6f5a4b", "bb00bb11cc22dd33ee44ff5566778899aabbccdd", 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant, err := LoadAlertsFile(tt.path(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(tenant.Alerts) != tt.want.alerts || len(tenant.Machines) != tt.want.machines || len(tenant.GraphAlerts) != tt.want.graphRaw || tenant.ID != tt.want.tenant {
				t.Fatalf("alerts %d machines %d graph %d tenant %s", len(tenant.Alerts), len(tenant.Machines), len(tenant.GraphAlerts), tenant.ID)
			}
			if tenant.Machines[0].ID != tt.want.firstMachine || tenant.Alerts[0].MachineID != tt.want.firstMachine {
				t.Errorf("machine %s / alert machine %s", tenant.Machines[0].ID, tenant.Alerts[0].MachineID)
			}
			if len(tenant.Alerts[0].Evidence) != tt.want.evidence {
				t.Errorf("evidence %d, want %d", len(tenant.Alerts[0].Evidence), tt.want.evidence)
			}
			if len(tenant.HuntRows["AlertInfo"]) != tt.want.alerts {
				t.Errorf("AlertInfo rows %d", len(tenant.HuntRows["AlertInfo"]))
			}

			// The loaded tenant serves both APIs.
			s, _ := startSim(t, Options{Tenant: tenant})
			tok := mdeToken(t, s)
			a := tenant.Alerts[0]
			r := call(t, s, "GET", "/api/alerts/"+a.ID, tok, nil)
			if r.status != 200 || r.json(t)["machineId"] != tt.want.firstMachine {
				t.Fatalf("GET alert: %d %s", r.status, r.body)
			}
			if r := call(t, s, "GET", "/api/machines/"+a.MachineID, tok, nil); r.status != 200 {
				t.Errorf("GET machine: %d", r.status)
			}
			gtok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
			g := call(t, s, "GET", "/v1.0/security/alerts_v2/"+a.ID, gtok, nil)
			if g.status != 200 || !strings.Contains(string(g.body), `"mdeDeviceId":"`+tt.want.firstMachine+`"`) {
				t.Errorf("Graph alert: %d %.300s", g.status, g.body)
			}
			if tt.want.graphRaw > 0 && g.json(t)["detectorId"] != rawField(t, tenant.GraphAlerts[0], "detectorId") {
				t.Errorf("raw Graph alert not served as loaded")
			}
		})
	}
}

func TestLoadAlertsFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]string{
		"not json":         "hello",
		"object no value":  `{"alerts":[]}`,
		"bad alert id":     `[{"id":"../x","machineId":"aa00bb11cc22dd33ee44ff5566778899aabbccdd"}]`,
		"bad machine id":   `{"value":[{"id":"da1_2","machineId":"../../machines"}]}`,
		"graph bad device": `{"value":[{"id":"da1_2","createdDateTime":"2025-01-01T00:00:00Z","evidence":[{"@odata.type":"#microsoft.graph.security.deviceEvidence","mdeDeviceId":"xyz"}]}]}`,
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadAlertsFile(p); err == nil {
				t.Error("no error")
			}
		})
	}
	if _, err := LoadAlertsFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}

func publicFile(name string) func(t *testing.T) string {
	return func(t *testing.T) string {
		dir := publicDataDir(t)
		return filepath.Join(dir, name)
	}
}

func localFile(name string) func(t *testing.T) string {
	return func(*testing.T) string { return filepath.Join("testdata", name) }
}

func rawField(t *testing.T, raw []byte, key string) any {
	t.Helper()
	return resp{body: raw}.json(t)[key]
}
