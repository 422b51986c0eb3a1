package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

func TestGraphAlertsV2(t *testing.T) {
	s, _ := startSim(t, Options{GraphPageSize: 10})
	tok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	iso := testStart.Add(-30 * time.Minute).Format(time.RFC3339)
	tests := []struct {
		query string
		want  int
		code  string
	}{
		{"$filter=severity eq 'high'", countAlerts(testStart, func(a mde.Alert) bool { return a.Severity == "High" }), ""},
		{"$filter=serviceSource eq 'microsoftDefenderForEndpoint' and severity eq 'high'", countAlerts(testStart, func(a mde.Alert) bool { return a.Severity == "High" }), ""},
		{"$filter=createdDateTime ge " + iso, countAlerts(testStart, func(a mde.Alert) bool { return !a.AlertCreationTime.Before(testStart.Add(-30 * time.Minute)) }), ""},
		{"$filter=lastUpdateDateTime gt " + iso, countAlerts(testStart, func(a mde.Alert) bool { return a.LastUpdateTime.After(testStart.Add(-30 * time.Minute)) }), ""},
		{"$filter=status eq 'inProgress'", 1, ""},
		{"$filter=severity eq 'unknown'", countAlerts(testStart, func(a mde.Alert) bool { return a.Severity == "UnSpecified" }), ""},
		{"$filter=severity eq 'High'", 0, "BadRequest"},
		{"$top=5000", 0, "BadRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			// Follow nextLinks: Graph pages with $skiptoken.
			next := s.URL() + "/v1.0/security/alerts_v2?" + encodeQuery(tt.query)
			total := 0
			for next != "" {
				r := call(t, s, "GET", next, tok, nil)
				if tt.code != "" {
					if r.status != 400 || r.errCode(t) != tt.code || !strings.Contains(string(r.body), "innerError") {
						t.Fatalf("%d %s", r.status, r.body)
					}
					return
				}
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				vals := r.values(t)
				if len(vals) > 10 {
					t.Fatalf("page of %d > GraphPageSize", len(vals))
				}
				total += len(vals)
				next, _ = r.json(t)["@odata.nextLink"].(string)
				if next != "" && !strings.Contains(next, "skiptoken") {
					t.Fatalf("nextLink %s without $skiptoken", next)
				}
			}
			if total != tt.want {
				t.Errorf("got %d alerts, want %d", total, tt.want)
			}
		})
	}

	// $top is the page size on Graph; the nextLink continues.
	r := call(t, s, "GET", "/v1.0/security/alerts_v2?$top=5", tok, nil)
	if len(r.values(t)) != 5 || r.json(t)["@odata.nextLink"] == nil {
		t.Errorf("$top=5: %d values, nextLink %v", len(r.values(t)), r.json(t)["@odata.nextLink"])
	}

	// Shape of one converted alert.
	var hot map[string]any
	for _, v := range call(t, s, "GET", "/v1.0/security/alerts_v2?"+encodeQuery("$filter=severity eq 'high'"), tok, nil).values(t) {
		if strings.HasPrefix(v["title"].(string), "<script>") {
			hot = v
		}
	}
	if hot == nil {
		t.Fatal("HTML-titled alert not found")
	}
	if hot["serviceSource"] != "microsoftDefenderForEndpoint" || hot["detectionSource"] != "smartScreen" || hot["status"] != "new" || hot["classification"] != "unknown" {
		t.Errorf("enums: %v %v %v %v", hot["serviceSource"], hot["detectionSource"], hot["status"], hot["classification"])
	}
	ev := hot["evidence"].([]any)
	dev := ev[0].(map[string]any)
	if dev["@odata.type"] != "#microsoft.graph.security.deviceEvidence" || dev["mdeDeviceId"] != SampleHotMachineID {
		t.Errorf("deviceEvidence = %v", dev)
	}
	types := map[string]bool{}
	for _, e := range ev {
		types[e.(map[string]any)["@odata.type"].(string)] = true
	}
	if !types["#microsoft.graph.security.urlEvidence"] || !types["#microsoft.graph.security.fileEvidence"] {
		t.Errorf("evidence types %v", types)
	}
	if r := call(t, s, "GET", "/v1.0/security/alerts_v2/"+hot["id"].(string), tok, nil); r.status != 200 || r.json(t)["id"] != hot["id"] {
		t.Errorf("get alert: %d", r.status)
	}
	if r := call(t, s, "GET", "/v1.0/security/alerts_v2/nope", tok, nil); r.status != 404 {
		t.Errorf("unknown graph alert: %d", r.status)
	}

	// An MDE PATCH shows in Graph.
	mdeTok := mdeToken(t, s)
	if r := call(t, s, "PATCH", "/api/alerts/"+hot["id"].(string), mdeTok, map[string]any{"status": "Resolved", "classification": "TruePositive", "determination": "MultiStagedAttack"}); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	g := call(t, s, "GET", "/v1.0/security/alerts_v2/"+hot["id"].(string), tok, nil).json(t)
	if g["status"] != "resolved" || g["classification"] != "truePositive" || g["determination"] != "multiStagedAttack" || g["resolvedDateTime"] == nil {
		t.Errorf("after PATCH: %v %v %v %v", g["status"], g["classification"], g["determination"], g["resolvedDateTime"])
	}

	// Auth.
	if r := call(t, s, "GET", "/v1.0/security/alerts_v2", "", nil); r.status != 401 || r.errCode(t) != "InvalidAuthenticationToken" {
		t.Errorf("no token: %d %s", r.status, r.body)
	}
	if r := call(t, s, "GET", "/v1.0/security/alerts_v2", mdeTok, nil); r.status != 401 {
		t.Errorf("MDE token: %d", r.status)
	}
	noRole, _ := s.MintToken(AudienceGraph, []string{RoleGraphMailSend}, time.Hour)
	if r := call(t, s, "GET", "/v1.0/security/alerts_v2", noRole, nil); r.status != 403 || !strings.Contains(string(r.body), "SecurityAlert.Read.All") {
		t.Errorf("without SecurityAlert.Read.All: %d %s", r.status, r.body)
	}
	if r := call(t, s, "GET", "/v1.0/security/nothing", tok, nil); r.status != 400 {
		t.Errorf("unknown segment: %d", r.status)
	}
}

func TestGraphSendMail(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	msg := func(to string, ct string) map[string]any {
		return map[string]any{
			"message": map[string]any{
				"subject":      "mdeflow: isolated ws-fin-0142",
				"body":         map[string]any{"contentType": ct, "content": "<p>&lt;script&gt;</p>"},
				"toRecipients": []any{map[string]any{"emailAddress": map[string]any{"address": to}}},
			},
			"saveToSentItems": false,
		}
	}
	tests := []struct {
		name    string
		mailbox string
		body    any
		status  int
		code    string
	}{
		{"html", "soc-bot@corp.example.com", msg("soc@corp.example.com", "HTML"), 202, ""},
		{"text to guid mailbox", "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9", msg("soc@corp.example.com", "Text"), 202, ""},
		{"no recipients", "soc-bot@corp.example.com", map[string]any{"message": map[string]any{"subject": "x"}}, 400, "ErrorInvalidRecipients"},
		{"bad recipient", "soc-bot@corp.example.com", msg("not an address", "Text"), 400, "ErrorInvalidRecipients"},
		{"bad content type", "soc-bot@corp.example.com", msg("soc@corp.example.com", "markdown"), 400, "RequestBodyRead"},
		{"no message", "soc-bot@corp.example.com", map[string]any{"saveToSentItems": true}, 400, "ErrorInvalidRequest"},
		{"header injection in subject", "soc-bot@corp.example.com", map[string]any{"message": map[string]any{"subject": "a\r\nBcc: x@y.z", "toRecipients": []any{map[string]any{"emailAddress": map[string]any{"address": "soc@corp.example.com"}}}}}, 400, "ErrorInvalidRequest"},
		{"bad mailbox", "not a user", msg("soc@corp.example.com", "Text"), 404, "ErrorInvalidUser"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, s, "POST", "/v1.0/users/"+strings.ReplaceAll(tt.mailbox, " ", "%20")+"/sendMail", tok, tt.body)
			if r.status != tt.status {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if tt.code != "" && r.errCode(t) != tt.code {
				t.Errorf("code %s, want %s", r.errCode(t), tt.code)
			}
			if tt.status == 202 && len(r.body) != 0 {
				t.Errorf("202 with a body: %s", r.body)
			}
		})
	}
	sent := s.SentMessages()
	if len(sent) != 2 || sent[0].Mailbox != "soc-bot@corp.example.com" {
		t.Fatalf("SentMessages = %+v", sent)
	}
	var body map[string]any
	if err := json.Unmarshal(s.SentMail()[0], &body); err != nil || body["message"].(map[string]any)["subject"] != "mdeflow: isolated ws-fin-0142" {
		t.Errorf("SentMail()[0] = %s", s.SentMail()[0])
	}
	noRole, _ := s.MintToken(AudienceGraph, []string{RoleGraphAlertRead}, time.Hour)
	if r := call(t, s, "POST", "/v1.0/users/soc-bot@corp.example.com/sendMail", noRole, msg("soc@corp.example.com", "Text")); r.status != 403 || r.errCode(t) != "ErrorAccessDenied" {
		t.Errorf("without Mail.Send: %d %s", r.status, r.body)
	}
}
