package sim

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// countAlerts counts sample alerts matching pred (the expected values are
// computed from the seed, not hard-coded).
func countAlerts(now time.Time, pred func(a mde.Alert) bool) int {
	n := 0
	for _, a := range SampleTenant(now).Alerts {
		if pred(a) {
			n++
		}
	}
	return n
}

func TestListAlertsOData(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	iso := func(d time.Duration) string { return testStart.Add(d).Format(time.RFC3339) }
	all := func(mde.Alert) bool { return true }
	tests := []struct {
		name     string
		query    string
		want     func(a mde.Alert) bool
		check    func(t *testing.T, vals []map[string]any, body map[string]any)
		wantCode string
	}{
		{name: "all", query: "", want: all, check: func(t *testing.T, vals []map[string]any, _ map[string]any) {
			for _, v := range vals {
				if ev, _ := v["evidence"].([]any); len(ev) != 0 {
					t.Fatalf("evidence without $expand = %v, want []", v["evidence"])
				}
			}
		}},
		{name: "severity High", query: "$filter=severity eq 'High'", want: func(a mde.Alert) bool { return a.Severity == "High" }},
		{name: "status ne Resolved", query: "$filter=status ne 'Resolved'", want: func(a mde.Alert) bool { return a.Status != "Resolved" }},
		{name: "created ge", query: "$filter=alertCreationTime ge " + iso(-30*time.Minute), want: func(a mde.Alert) bool { return !a.AlertCreationTime.Before(testStart.Add(-30 * time.Minute)) }},
		{name: "created gt and le", query: "$filter=alertCreationTime gt " + iso(-40*time.Minute) + " and alertCreationTime le " + iso(-20*time.Minute),
			want: func(a mde.Alert) bool {
				return a.AlertCreationTime.After(testStart.Add(-40*time.Minute)) && !a.AlertCreationTime.After(testStart.Add(-20*time.Minute))
			}},
		{name: "created lt", query: "$filter=alertCreationTime lt " + iso(-45*time.Minute), want: func(a mde.Alert) bool { return a.AlertCreationTime.Before(testStart.Add(-45 * time.Minute)) }},
		{name: "lastUpdateTime gt (plus-encoded like the docs)", query: "$filter=lastUpdateTime+gt+" + iso(-10*time.Minute), want: func(a mde.Alert) bool { return a.LastUpdateTime.After(testStart.Add(-10 * time.Minute)) }},
		{name: "High and recent", query: "$filter=severity eq 'High' and alertCreationTime ge " + iso(-42*time.Minute),
			want: func(a mde.Alert) bool {
				return a.Severity == "High" && !a.AlertCreationTime.Before(testStart.Add(-42*time.Minute))
			}},
		{name: "or with parentheses", query: "$filter=(severity eq 'Low' or severity eq 'Informational') and status eq 'New'",
			want: func(a mde.Alert) bool {
				return (a.Severity == "Low" || a.Severity == "Informational") && a.Status == "New"
			}},
		{name: "in", query: "$filter=detectionSource in ('CustomDetection','AutomatedInvestigation')",
			want: func(a mde.Alert) bool {
				return a.DetectionSource == "CustomDetection" || a.DetectionSource == "AutomatedInvestigation"
			}},
		{name: "assignedTo eq null", query: "$filter=assignedTo eq null", want: func(a mde.Alert) bool { return a.AssignedTo == nil }},
		{name: "incidentId number", query: "$filter=incidentId eq 4701", want: func(a mde.Alert) bool { return *a.IncidentID == 4701 }},
		{name: "expand evidence", query: "$expand=evidence&$filter=severity eq 'High'", want: func(a mde.Alert) bool { return a.Severity == "High" },
			check: func(t *testing.T, vals []map[string]any, _ map[string]any) {
				for _, v := range vals {
					if ev, _ := v["evidence"].([]any); len(ev) == 0 {
						t.Errorf("alert %v has no evidence with $expand=evidence", v["id"])
					}
				}
			}},
		{name: "orderby desc", query: "$orderby=alertCreationTime desc", want: all, check: func(t *testing.T, vals []map[string]any, _ map[string]any) {
			if !sort.SliceIsSorted(vals, func(i, j int) bool {
				return vals[i]["alertCreationTime"].(string) > vals[j]["alertCreationTime"].(string)
			}) {
				t.Error("not sorted by alertCreationTime desc")
			}
		}},
		{name: "count", query: "$count=true&$filter=severity eq 'Medium'", want: func(a mde.Alert) bool { return a.Severity == "Medium" },
			check: func(t *testing.T, vals []map[string]any, body map[string]any) {
				if fmt.Sprint(body["@odata.count"]) != fmt.Sprint(len(vals)) {
					t.Errorf("@odata.count = %v, want %d", body["@odata.count"], len(vals))
				}
			}},
		{name: "top and skip", query: "$orderby=alertCreationTime asc&$top=5&$skip=3", want: nil, check: func(t *testing.T, vals []map[string]any, body map[string]any) {
			if len(vals) != 5 {
				t.Fatalf("got %d alerts, want 5", len(vals))
			}
			if _, ok := body["@odata.nextLink"]; ok {
				t.Error("nextLink present although $top was given (issue #8489 behaviour)")
			}
		}},
		{name: "select", query: "$select=id,severity&$top=2", want: nil, check: func(t *testing.T, vals []map[string]any, _ map[string]any) {
			if len(vals[0]) != 2 || vals[0]["id"] == nil || vals[0]["severity"] == nil {
				t.Errorf("$select result = %v", vals[0])
			}
		}},
		{name: "top over 10000", query: "$top=10001", wantCode: "ODataError"},
		{name: "enum with wrong case", query: "$filter=severity eq 'high'", wantCode: "ODataError"},
		{name: "quoted datetime", query: "$filter=alertCreationTime ge '2025-03-01T00:00:00Z'", wantCode: "ODataError"},
		{name: "not filterable", query: "$filter=title eq 'x'", wantCode: "ODataError"},
		{name: "syntax error", query: "$filter=severity eq", wantCode: "ODataError"},
		{name: "unterminated string", query: "$filter=severity eq 'High", wantCode: "ODataError"},
		{name: "bad expand", query: "$expand=machine", wantCode: "ODataError"},
		{name: "unknown option", query: "$search=x", wantCode: "ODataError"},
		{name: "negative skip", query: "$skip=-1", wantCode: "ODataError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/api/alerts"
			if tt.query != "" {
				path += "?" + encodeQuery(tt.query)
			}
			r := call(t, s, "GET", path, tok, nil)
			if tt.wantCode != "" {
				if r.status != 400 || r.errCode(t) != tt.wantCode {
					t.Fatalf("got %d %s, want 400 %s", r.status, r.body, tt.wantCode)
				}
				if ct := r.header.Get("Content-Type"); ct != contentTypeError {
					t.Errorf("error Content-Type = %q", ct)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if v := r.header.Get("OData-Version"); v != "4.0" {
				t.Errorf("OData-Version = %q", v)
			}
			body := r.json(t)
			if body["@odata.context"] != s.URL()+"/api/$metadata#Alerts" {
				t.Errorf("@odata.context = %v", body["@odata.context"])
			}
			vals := r.values(t)
			if tt.want != nil {
				if want := countAlerts(testStart, tt.want); len(vals) != want {
					t.Errorf("got %d alerts, want %d", len(vals), want)
				}
			}
			if tt.check != nil {
				tt.check(t, vals, body)
			}
		})
	}
}

// encodeQuery encodes a human-written query string, keeping "+" as a space
// the way the docs write it.
func encodeQuery(q string) string {
	var parts []string
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		parts = append(parts, url.QueryEscape(k)+"="+strings.ReplaceAll(url.QueryEscape(strings.ReplaceAll(v, "+", " ")), "%2B", "+"))
	}
	return strings.Join(parts, "&")
}

func TestAlertsPagingFollowsNextLink(t *testing.T) {
	s, _ := startSim(t, Options{PageSize: 7})
	tok := mdeToken(t, s)
	for _, prefix := range []string{"/api", "/api/v1.0"} {
		t.Run(prefix, func(t *testing.T) {
			seen := map[string]bool{}
			next := s.URL() + prefix + "/alerts?" + encodeQuery("$filter=status ne 'Resolved'&$expand=evidence")
			pages := 0
			for next != "" {
				r := call(t, s, "GET", next, tok, nil)
				if r.status != 200 {
					t.Fatalf("page %d: %d %s", pages, r.status, r.body)
				}
				vals := r.values(t)
				if len(vals) > 7 {
					t.Fatalf("page of %d > PageSize 7", len(vals))
				}
				for _, v := range vals {
					id := v["id"].(string)
					if seen[id] {
						t.Fatalf("alert %s returned twice", id)
					}
					seen[id] = true
				}
				next, _ = r.json(t)["@odata.nextLink"].(string)
				if next != "" && (!strings.Contains(next, "%24skip=") || !strings.HasPrefix(next, s.URL()+prefix+"/alerts?")) {
					t.Fatalf("nextLink %q", next)
				}
				pages++
			}
			want := countAlerts(testStart, func(a mde.Alert) bool { return a.Status != "Resolved" })
			if len(seen) != want || pages != (want+6)/7 {
				t.Errorf("collected %d alerts over %d pages, want %d over %d", len(seen), pages, want, (want+6)/7)
			}
		})
	}
}

func TestGetAlert(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	sample := SampleTenant(testStart).Alerts[2]
	r := call(t, s, "GET", "/api/alerts/"+sample.ID, tok, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if !strings.HasPrefix(string(r.body), `{"@odata.context":"`+s.URL()+`/api/$metadata#Alerts/$entity","id":"`+sample.ID+`"`) {
		t.Errorf("body starts %q", r.body[:120])
	}
	if ev, _ := r.json(t)["evidence"].([]any); len(ev) != len(sample.Evidence) {
		t.Errorf("single GET evidence = %d items, want %d", len(ev), len(sample.Evidence))
	}

	r = call(t, s, "GET", "/api/v1.0/alerts/da000000000000000000_1", tok, nil)
	if r.status != 404 || r.errCode(t) != "ResourceNotFound" {
		t.Fatalf("unknown alert: %d %s", r.status, r.body)
	}
	e := r.json(t)["error"].(map[string]any)
	if !guidRe.MatchString(e["target"].(string)) || !strings.Contains(e["message"].(string), "da000000000000000000_1") {
		t.Errorf("404 body = %v", e)
	}
}

func TestPatchAlert(t *testing.T) {
	readOnly := "aaaabbbb-cccc-dddd-eeee-ffff00001111"
	s, clk := startSim(t, Options{Apps: []App{
		{ClientID: DefaultClientID, ClientSecret: DefaultClientSecret, Roles: AllRoles},
		{ClientID: readOnly, ClientSecret: "ro", Roles: []string{RoleAlertRead}},
	}})
	tok := mdeToken(t, s)
	roTok := secretToken(t, s, readOnly, "ro", AudienceSecurityCenter+"/.default")
	alerts := SampleTenant(testStart).Alerts
	id := alerts[0].ID
	clk.Advance(time.Minute)
	tests := []struct {
		name       string
		id         string
		token      string
		body       any
		wantStatus int
		wantCode   string
		check      func(t *testing.T, a mde.Alert)
	}{
		{"status and comment", id, tok, map[string]any{"status": "InProgress", "assignedTo": "soc@example.com", "comment": "triage"}, 200, "", func(t *testing.T, a mde.Alert) {
			if a.Status != "InProgress" || mde.Str(a.AssignedTo) != "soc@example.com" || len(a.Comments) != 1 || a.Comments[0].Comment != "triage" || a.Comments[0].CreatedBy != DefaultClientID {
				t.Errorf("alert after PATCH: status %s assignedTo %v comments %+v", a.Status, mde.Str(a.AssignedTo), a.Comments)
			}
			if !a.LastUpdateTime.Equal(testStart.Add(time.Minute)) {
				t.Errorf("lastUpdateTime = %v, want the sim clock", a.LastUpdateTime)
			}
		}},
		{"resolve with classification", id, tok, map[string]any{"status": "Resolved", "classification": "TruePositive", "determination": "Malware"}, 200, "", func(t *testing.T, a mde.Alert) {
			if a.ResolvedTime == nil || mde.Str(a.Classification) != "TruePositive" || mde.Str(a.Determination) != "Malware" {
				t.Errorf("resolvedTime %v classification %v determination %v", a.ResolvedTime, mde.Str(a.Classification), mde.Str(a.Determination))
			}
		}},
		{"reopen clears resolvedTime", id, tok, map[string]any{"status": "New"}, 200, "", func(t *testing.T, a mde.Alert) {
			if a.ResolvedTime != nil {
				t.Error("resolvedTime kept after reopening")
			}
		}},
		{"determination of another classification", id, tok, map[string]any{"classification": "FalsePositive", "determination": "Malware"}, 400, "InvalidInput", nil},
		{"determination alias (update-alert.md)", id, tok, map[string]any{"classification": "FalsePositive", "determination": "NotMalicious"}, 200, "", nil},
		{"bad status", id, tok, map[string]any{"status": "Closed"}, 400, "InvalidInput", nil},
		{"bad classification", id, tok, map[string]any{"classification": "Benign"}, 400, "InvalidInput", nil},
		{"capitalised property", id, tok, map[string]any{"Status": "Resolved"}, 400, "InvalidRequestBody", nil},
		{"empty object", id, tok, map[string]any{}, 400, "InvalidRequestBody", nil},
		{"not json", id, tok, "status=Resolved", 400, "InvalidRequestBody", nil},
		{"unknown alert", "da111111111111111111_2", tok, map[string]any{"status": "Resolved"}, 404, "ResourceNotFound", nil},
		{"read-only app", id, roTok, map[string]any{"status": "Resolved"}, 403, "Forbidden", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, s, "PATCH", "/api/alerts/"+tt.id, tt.token, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if tt.wantCode != "" && r.errCode(t) != tt.wantCode {
				t.Fatalf("code %s, want %s", r.errCode(t), tt.wantCode)
			}
			if tt.check != nil {
				a, _ := s.Alert(tt.id)
				tt.check(t, a)
				if r.json(t)["status"] != a.Status {
					t.Errorf("response status %v differs from state %s", r.json(t)["status"], a.Status)
				}
			}
		})
	}
}

func TestAddAlertAppearsLate(t *testing.T) {
	s, clk := startSim(t, Options{})
	tok := mdeToken(t, s)
	since := clk.Now().Format(time.RFC3339Nano)
	q := "/api/alerts?" + encodeQuery("$filter=lastUpdateTime gt "+since)
	if n := len(call(t, s, "GET", q, tok, nil).values(t)); n != 0 {
		t.Fatalf("%d alerts updated after now before AddAlert", n)
	}
	now := clk.Advance(30 * time.Second)
	late := SampleTenant(testStart).Alerts[0]
	late.ID = "da638799999999999999_42"
	late.MachineID = "00112233445566778899aabbccddeeff00112233"
	late.ComputerDNSName = "new-host.corp.example.com"
	late.AlertCreationTime, late.LastUpdateTime = &now, &now
	if err := s.AddAlert(late); err != nil {
		t.Fatal(err)
	}
	vals := call(t, s, "GET", q, tok, nil).values(t)
	if len(vals) != 1 || vals[0]["id"] != late.ID {
		t.Fatalf("after AddAlert got %v", vals)
	}
	if r := call(t, s, "GET", "/api/machines/"+late.MachineID, tok, nil); r.status != 200 || r.json(t)["computerDnsName"] != "new-host.corp.example.com" {
		t.Errorf("synthesized machine: %d %s", r.status, r.body)
	}
	if err := s.AddAlert(mde.Alert{ID: "../machines/x"}); err == nil {
		t.Error("AddAlert accepted an id with a path in it")
	}
}
