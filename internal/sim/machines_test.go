package sim

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

func TestListAndGetMachines(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	countMachines := func(pred func(sm sampleMachine) bool) int {
		n := 0
		for _, m := range sampleMachines {
			if pred(m) {
				n++
			}
		}
		return n
	}
	tests := []struct {
		query string
		want  int
		code  string
	}{
		{"", len(sampleMachines), ""},
		{"$filter=computerDnsName eq 'dc01.corp.example.com'", 1, ""},
		{"$filter=machineTags/any(t: t eq 'protected')", 1, ""},
		{"$filter=machineTags/any(t: t eq 'vip' or t eq 'legacy')", countMachines(func(m sampleMachine) bool {
			for _, tg := range m.tags {
				if tg == "vip" || tg == "legacy" {
					return true
				}
			}
			return false
		}), ""},
		{"$filter=machineTags/any()", countMachines(func(m sampleMachine) bool { return len(m.tags) > 0 }), ""},
		{"$filter=healthStatus ne 'Active'", countMachines(func(m sampleMachine) bool { return m.health != "Active" }), ""},
		{"$filter=riskScore eq 'High'", countMachines(func(m sampleMachine) bool { return m.risk == "High" }), ""},
		{"$filter=osPlatform eq 'Linux' or osPlatform eq 'macOS'", 2, ""},
		{"$filter=startswith(computerDnsName,'srv-')", countMachines(func(m sampleMachine) bool { return strings.HasPrefix(m.name, "srv-") }), ""},
		{"$filter=rbacGroupId eq 3", countMachines(func(m sampleMachine) bool { return m.groupID == 3 }), ""},
		{"$top=3&$skip=12", 2, ""},
		{"$filter=machineTags eq 'vip'", 0, "ODataError"},
		{"$filter=riskScore eq 'Critical'", 0, "ODataError"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			path := "/api/machines"
			if tt.query != "" {
				path += "?" + encodeQuery(tt.query)
			}
			r := call(t, s, "GET", path, tok, nil)
			if tt.code != "" {
				if r.status != 400 || r.errCode(t) != tt.code {
					t.Fatalf("%d %s, want 400 %s", r.status, r.body, tt.code)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := len(r.values(t)); got != tt.want {
				t.Errorf("got %d machines, want %d", got, tt.want)
			}
		})
	}

	for _, key := range []string{SampleProtectedMachineID, "dc01.corp.example.com", "DC01.corp.example.com"} {
		r := call(t, s, "GET", "/api/machines/"+key, tok, nil)
		if r.status != 200 || r.json(t)["id"] != SampleProtectedMachineID || r.json(t)["@odata.context"] != s.URL()+"/api/$metadata#Machines/$entity" {
			t.Errorf("GET machine %s: %d %s", key, r.status, r.body)
		}
	}
	if r := call(t, s, "GET", "/api/machines/0000000000000000000000000000000000000000", tok, nil); r.status != 404 || r.errCode(t) != "ResourceNotFound" ||
		!strings.Contains(string(r.body), "Machine 0000000000000000000000000000000000000000 was not found") {
		t.Errorf("unknown machine: %d %s", r.status, r.body)
	}
	// Related calls (§2.8).
	hot := countAlerts(testStart, func(a mde.Alert) bool { return a.MachineID == SampleHotMachineID })
	if r := call(t, s, "GET", "/api/machines/"+SampleHotMachineID+"/alerts", tok, nil); r.status != 200 || len(r.values(t)) != hot {
		t.Errorf("machine alerts: %d %s", r.status, r.body)
	}
	alertID := SampleTenant(testStart).Alerts[3].ID
	if r := call(t, s, "GET", "/api/alerts/"+alertID+"/machine", tok, nil); r.status != 200 || r.json(t)["id"] != SampleProtectedMachineID {
		t.Errorf("alert machine: %d %s", r.status, r.body)
	}
}

func TestMachineTags(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	path := "/api/machines/" + SampleLinuxMachineID + "/tags"
	tests := []struct {
		body     any
		status   int
		code     string
		wantTags []string
	}{
		{map[string]any{"Value": "isolated-by-mdeflow", "Action": "Add"}, 200, "", []string{"dmz", "isolated-by-mdeflow"}},
		{map[string]any{"Value": "isolated-by-mdeflow", "Action": "Add"}, 200, "", []string{"dmz", "isolated-by-mdeflow"}},
		{map[string]any{"Value": "dmz", "Action": "Remove"}, 200, "", []string{"isolated-by-mdeflow"}},
		{map[string]any{"value": "x", "action": "Add"}, 400, "MissingRequiredParameter", nil},
		{map[string]any{"Value": "x", "Action": "Toggle"}, 400, "InvalidRequestBody", nil},
		{map[string]any{"Value": strings.Repeat("x", 201), "Action": "Add"}, 400, "InvalidInput", nil},
	}
	for i, tt := range tests {
		r := call(t, s, "POST", path, tok, tt.body)
		if r.status != tt.status || (tt.code != "" && r.errCode(t) != tt.code) {
			t.Fatalf("case %d: %d %s, want %d %s", i, r.status, r.body, tt.status, tt.code)
		}
		if tt.wantTags != nil {
			m, _ := s.Machine(SampleLinuxMachineID)
			if strings.Join(m.MachineTags, ",") != strings.Join(tt.wantTags, ",") {
				t.Errorf("case %d: tags %v, want %v", i, m.MachineTags, tt.wantTags)
			}
		}
	}
}

func TestIsolationLifecycle(t *testing.T) {
	s, clk := startSim(t, Options{ActionStep: 2 * time.Second})
	tok := mdeToken(t, s)
	id := SampleHotMachineID
	iso := func() resp {
		return call(t, s, "POST", "/api/machines/"+id+"/isolate", tok, map[string]any{"Comment": "mdeflow: High alert", "IsolationType": "Full"})
	}
	r := iso()
	if r.status != http.StatusCreated {
		t.Fatalf("isolate: %d %s", r.status, r.body)
	}
	act := r.json(t)
	if act["status"] != "Pending" || act["type"] != "Isolate" || act["scope"] != "Full" || act["machineId"] != id ||
		act["requestor"] != DefaultClientID || act["requestorComment"] != "mdeflow: High alert" ||
		act["@odata.context"] != s.URL()+"/api/$metadata#MachineActions/$entity" {
		t.Fatalf("created action = %v", act)
	}
	actionID := act["id"].(string)
	if !guidRe.MatchString(actionID) {
		t.Fatalf("action id %q is not a GUID", actionID)
	}

	// Duplicate while pending and while in progress.
	for _, step := range []time.Duration{0, 2500 * time.Millisecond} {
		clk.Advance(step)
		r := iso()
		if r.status != 400 || r.errCode(t) != "ActiveRequestAlreadyExists" || !strings.Contains(string(r.body), "Action is already in progress") {
			t.Fatalf("duplicate isolate after %v: %d %s", step, r.status, r.body)
		}
	}
	status := func() string {
		return call(t, s, "GET", "/api/machineactions/"+actionID, tok, nil).json(t)["status"].(string)
	}
	if got := status(); got != "InProgress" {
		t.Fatalf("status at +2.5s = %s, want InProgress", got)
	}
	if s.Isolated(id) {
		t.Fatal("machine isolated before the action succeeded")
	}
	clk.Advance(2 * time.Second)
	if got := status(); got != "Succeeded" {
		t.Fatalf("status at +4.5s = %s, want Succeeded", got)
	}
	if !s.Isolated(id) {
		t.Fatal("machine not isolated after Isolate succeeded")
	}
	// A new isolate is accepted once the first is final.
	if r := iso(); r.status != 201 {
		t.Fatalf("isolate after success: %d %s", r.status, r.body)
	}
	total, accepted := s.IsolateCalls(id)
	if total != 4 || accepted != 2 {
		t.Errorf("IsolateCalls = %d/%d, want 4/2", total, accepted)
	}
	clk.Advance(5 * time.Second)
	if r := call(t, s, "POST", "/api/machines/"+id+"/unisolate", tok, map[string]any{"Comment": "released"}); r.status != 201 {
		t.Fatalf("unisolate: %d %s", r.status, r.body)
	}
	clk.Advance(5 * time.Second)
	if s.Isolated(id) {
		t.Error("machine still isolated after Unisolate succeeded")
	}
	acts := s.Actions()
	if len(acts) != 3 || acts[0].Status != mde.ActionSucceeded || acts[2].Type != mde.ActionTypeUnisolate {
		t.Errorf("Actions() = %+v", acts)
	}
}

func TestActionValidation(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	post := func(machine, action string, body any) resp {
		return call(t, s, "POST", "/api/machines/"+machine+"/"+action, tok, body)
	}
	tests := []struct {
		name    string
		machine string
		action  string
		body    any
		status  int
		code    string
		msg     string
	}{
		{"missing Comment", SampleHotMachineID, "isolate", map[string]any{"IsolationType": "Full"}, 400, "MissingRequiredParameter", "Parameter Comment is missing"},
		{"lower-case comment", SampleHotMachineID, "isolate", map[string]any{"comment": "x", "isolationType": "Full"}, 400, "MissingRequiredParameter", "Parameter Comment is missing"},
		{"bad IsolationType", SampleHotMachineID, "isolate", map[string]any{"Comment": "x", "IsolationType": "full"}, 400, "InvalidRequestBody", "IsolationType"},
		{"body not an object", SampleHotMachineID, "isolate", `["Comment"]`, 400, "InvalidRequestBody", ""},
		{"empty body", SampleHotMachineID, "isolate", " ", 400, "InvalidRequestBody", ""},
		{"Selective on Linux", SampleLinuxMachineID, "isolate", map[string]any{"Comment": "x", "IsolationType": "Selective"}, 400, "OsPlatformNotSupported", "OS Platform Linux isn't supported for this action"},
		{"Selective on Windows 10 1703", SampleLegacyMachineID, "isolate", map[string]any{"Comment": "x", "IsolationType": "Selective"}, 400, "OsPlatformNotSupported", ""},
		{"Full on Windows 10 1703", SampleLegacyMachineID, "isolate", map[string]any{"Comment": "x", "IsolationType": "Full"}, 201, "", ""},
		{"Full on Linux", SampleLinuxMachineID, "isolate", map[string]any{"Comment": "x"}, 201, "", ""},
		{"Selective on Windows 11", SampleHotMachineID, "isolate", map[string]any{"Comment": "x", "IsolationType": "Selective"}, 201, "", ""},
		{"UnManagedDevice on onboarded", SampleProtectedMachineID, "isolate", map[string]any{"Comment": "x", "IsolationType": "UnManagedDevice"}, 400, "InvalidInput", ""},
		{"restrict on Linux", SampleLinuxMachineID, "restrictCodeExecution", map[string]any{"Comment": "x"}, 400, "OsPlatformNotSupported", ""},
		{"restrict on Windows 11", SampleHotMachineID, "restrictCodeExecution", map[string]any{"Comment": "x"}, 201, "", ""},
		{"scan without ScanType", SampleHotMachineID, "runAntiVirusScan", map[string]any{"Comment": "x"}, 400, "MissingRequiredParameter", "Parameter ScanType is missing"},
		{"scan bad ScanType", SampleHotMachineID, "runAntiVirusScan", map[string]any{"Comment": "x", "ScanType": "Deep"}, 400, "InvalidRequestBody", ""},
		{"scan", SampleHotMachineID, "runAntiVirusScan", map[string]any{"Comment": "x", "ScanType": "Quick"}, 201, "", ""},
		{"collect", SampleProtectedMachineID, "collectInvestigationPackage", map[string]any{"Comment": "x"}, 201, "", ""},
		{"collect again", SampleProtectedMachineID, "collectInvestigationPackage", map[string]any{"Comment": "x"}, 400, "ActiveRequestAlreadyExists", ""},
		{"unknown machine", "0000000000000000000000000000000000000001", "isolate", map[string]any{"Comment": "x"}, 404, "ResourceNotFound", "Machine 0000000000000000000000000000000000000001 was not found"},
		{"machine by name is not an id", "dc01.corp.example.com", "isolate", map[string]any{"Comment": "x"}, 404, "ResourceNotFound", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(tt.machine, tt.action, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.code != "" && r.errCode(t) != tt.code {
				t.Errorf("code %s, want %s", r.errCode(t), tt.code)
			}
			if tt.msg != "" && !strings.Contains(string(r.body), tt.msg) {
				t.Errorf("body %s does not contain %q", r.body, tt.msg)
			}
		})
	}

	// Content-Type is required.
	req, _ := http.NewRequest("POST", s.URL()+"/api/machines/"+SampleHotMachineID+"/unisolate", strings.NewReader(`{"Comment":"x"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	res, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d, want 415", res.StatusCode)
	}

	// Wrong verb on an action path: 405, empty body, Allow: POST.
	for _, p := range []string{"/api/machines/" + SampleHotMachineID + "/isolate", "/api/v1.0/machineactions/" + "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9" + "/cancel"} {
		r := call(t, s, "GET", p, tok, nil)
		if r.status != 405 || r.header.Get("Allow") != "POST" || len(r.body) != 0 {
			t.Errorf("GET %s: %d Allow=%q body=%q", p, r.status, r.header.Get("Allow"), r.body)
		}
	}
	if r := call(t, s, "DELETE", "/api/alerts/x", tok, nil); r.status != 405 || r.header.Get("Allow") != "GET, PATCH" {
		t.Errorf("DELETE alert: %d Allow=%q", r.status, r.header.Get("Allow"))
	}
	if r := call(t, s, "GET", "/api/nosuchthing", tok, nil); r.status != 404 {
		t.Errorf("unknown route: %d", r.status)
	}
}

func TestMachineActionsEndpoints(t *testing.T) {
	s, clk := startSim(t, Options{})
	tok := mdeToken(t, s)
	mk := func(machine, action string, body map[string]any) string {
		r := call(t, s, "POST", "/api/machines/"+machine+"/"+action, tok, body)
		if r.status != 201 {
			t.Fatalf("%s %s: %d %s", action, machine, r.status, r.body)
		}
		return r.json(t)["id"].(string)
	}
	isoHot := mk(SampleHotMachineID, "isolate", map[string]any{"Comment": "a"})
	clk.Advance(10 * time.Second)
	isoDC := mk(SampleProtectedMachineID, "isolate", map[string]any{"Comment": "b"})
	scanDC := mk(SampleProtectedMachineID, "runAntiVirusScan", map[string]any{"Comment": "c", "ScanType": "Full"})

	list := func(q string) []map[string]any {
		r := call(t, s, "GET", "/api/machineactions?"+encodeQuery(q), tok, nil)
		if r.status != 200 {
			t.Fatalf("list %s: %d %s", q, r.status, r.body)
		}
		return r.values(t)
	}
	if got := list("$filter=machineId eq '" + SampleProtectedMachineID + "'"); len(got) != 2 {
		t.Errorf("by machine: %d, want 2", len(got))
	}
	if got := list("$filter=machineId eq '" + SampleProtectedMachineID + "' and type eq 'Isolate'&$top=5"); len(got) != 1 || got[0]["id"] != isoDC {
		t.Errorf("by machine and type: %v", got)
	}
	if got := list("$filter=status eq 'Succeeded'"); len(got) != 1 || got[0]["id"] != isoHot {
		t.Errorf("succeeded: %v", got)
	}
	if got := list("$filter=status eq 'Pending'"); len(got) != 2 {
		t.Errorf("pending: %d, want 2", len(got))
	}
	if got := list("$orderby=creationDateTimeUtc desc&$top=1"); len(got) != 1 || got[0]["id"] == isoHot {
		t.Errorf("latest: %v", got)
	}

	// Non-GUID id → 400 BadRequest with the Edm.Guid message; unknown → 404.
	r := call(t, s, "GET", "/api/machineactions/not-a-guid", tok, nil)
	if r.status != 400 || r.errCode(t) != "BadRequest" || !strings.Contains(string(r.body), "The key value (not-a-guid) from request is not valid. The key value should be format of type 'Edm.Guid'.") {
		t.Errorf("non-GUID: %d %s", r.status, r.body)
	}
	if r := call(t, s, "GET", "/api/machineactions/0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", tok, nil); r.status != 404 || r.errCode(t) != "ResourceNotFound" {
		t.Errorf("unknown action: %d %s", r.status, r.body)
	}

	// Cancel before final → 200 Cancelled; the machine never gets isolated.
	r = call(t, s, "POST", "/api/machineactions/"+isoDC+"/cancel", tok, map[string]any{"Comment": "false positive"})
	if r.status != 200 || r.json(t)["status"] != "Cancelled" || r.json(t)["cancellationComment"] != "false positive" || r.json(t)["cancellationRequestor"] != DefaultClientID {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	clk.Advance(time.Minute)
	if s.Isolated(SampleProtectedMachineID) {
		t.Error("cancelled isolation took effect")
	}
	if st := call(t, s, "GET", "/api/machineactions/"+isoDC, tok, nil).json(t)["status"]; st != "Cancelled" {
		t.Errorf("status after cancel and time = %v", st)
	}
	for _, id := range []string{isoDC, scanDC} {
		if r := call(t, s, "POST", "/api/machineactions/"+id+"/cancel", tok, map[string]any{"Comment": "again"}); r.status != 400 {
			t.Errorf("cancel final action %s: %d %s", id, r.status, r.body)
		}
	}
	if r := call(t, s, "POST", "/api/machineactions/"+isoDC+"/cancel", tok, map[string]any{}); r.status != 400 || r.errCode(t) != "MissingRequiredParameter" {
		t.Errorf("cancel without Comment: %d %s", r.status, r.body)
	}
}

func TestActionFates(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		at     []time.Duration
		want   []string
	}{
		{"succeeds", Faults{}, []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second}, []string{"Pending", "Pending", "InProgress", "Succeeded"}},
		{"fails", Faults{FailActions: true}, []time.Duration{0, 2 * time.Second, 4 * time.Second}, []string{"Pending", "InProgress", "Failed"}},
		{"times out", Faults{TimeoutActions: true}, []time.Duration{0, 4 * time.Second, 19 * time.Second, 20 * time.Second}, []string{"Pending", "Pending", "Pending", "TimeOut"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := startSim(t, Options{Faults: tt.faults, ActionStep: 2 * time.Second})
			tok := mdeToken(t, s)
			r := call(t, s, "POST", "/api/machines/"+SampleHotMachineID+"/isolate", tok, map[string]any{"Comment": "x"})
			if r.status != 201 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			id := r.json(t)["id"].(string)
			for i, d := range tt.at {
				clk.Set(testStart.Add(d))
				got := call(t, s, "GET", "/api/machineactions/"+id, tok, nil).json(t)
				if got["status"] != tt.want[i] {
					t.Errorf("at +%v status %v, want %s", d, got["status"], tt.want[i])
				}
				if tt.want[i] == "Failed" && got["errorHResult"].(jsonNumber).String() == "0" {
					t.Error("failed action has errorHResult 0")
				}
			}
			if s.Isolated(SampleHotMachineID) != (tt.want[len(tt.want)-1] == "Succeeded") {
				t.Errorf("Isolated = %v at the end", s.Isolated(SampleHotMachineID))
			}
		})
	}
}
