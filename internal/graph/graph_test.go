package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/testutil"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mdeflow/mdeflow/internal/mde"
)

type staticCred struct{}

var _ azcore.TokenCredential = staticCred{}

func (staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "graph-test-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func newTestClient(t *testing.T, h http.Handler) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	c, err := NewClient(staticCred{}, &ClientOptions{
		BaseURL: srv.URL + "/v1.0",
		ClientOptions: azcore.ClientOptions{Transport: srv.Client(),
			Retry: policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: time.Second}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func publicData(t *testing.T, name string) string { return testutil.PublicData(t, name) }

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func TestListAlertsV2DocsExampleToMDE(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile(publicData(t, "graphdocs_security_list-alerts_v2_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gotFilter string
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1.0/security/alerts_v2" {
			http.NotFound(w, r)
			return
		}
		gotFilter = r.URL.Query().Get("$filter")
		writeJSON(w, 200, string(body))
	}))
	alerts, err := c.ListAlertsV2(context.Background(), &ListAlertsV2Options{
		Filter: "serviceSource eq 'microsoftDefenderForEndpoint'", CreatedAfter: time.Date(2021, 4, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("ListAlertsV2: %v", err)
	}
	if gotFilter != "(serviceSource eq 'microsoftDefenderForEndpoint') and createdDateTime gt 2021-04-01T00:00:00Z" {
		t.Errorf("filter = %q", gotFilter)
	}
	if len(alerts) != 1 || len(alerts[0].Evidence) != 4 {
		t.Fatalf("alerts = %d", len(alerts))
	}
	kinds := []string{}
	for _, e := range alerts[0].Evidence {
		kinds = append(kinds, e.Kind)
	}
	if fmt.Sprint(kinds) != "[deviceEvidence fileEvidence processEvidence registryKeyEvidence]" {
		t.Errorf("kinds = %v", kinds)
	}
	if e := alerts[0].Evidence[0]; e.Device == nil || e.Device.RbacGroupID != "75" || e.Device.VMMetadata == nil ||
		fmt.Sprint(e.Tags) != "[Test Machine]" || fmt.Sprint(e.Roles) != "[compromised]" {
		t.Errorf("device evidence = %+v %+v", e, e.Device)
	}
	m, err := alerts[0].ToMDE()
	if err != nil {
		t.Fatalf("ToMDE: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"id", m.ID, "da637551227677560813_-961444813"},
		{"severity", m.Severity, "Low"},
		{"status", m.Status, "New"},
		{"machineId", m.MachineID, "73e7e2de709dff64ef64b1d0c30e67fab63279db"},
		{"computerDnsName", m.ComputerDNSName, "tempDns"},
		{"rbacGroupName", mde.Str(m.RbacGroupName), "UnassignedGroup"},
		{"detectionSource", m.DetectionSource, "WindowsDefenderAv"},
		{"category", m.Category, "DefenseEvasion"},
		{"aadTenantId", m.AadTenantID, "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c"},
		{"classification", fmt.Sprint(m.Classification), "<nil>"},
		{"determination", fmt.Sprint(m.Determination), "<nil>"},
		{"alertCreationTime", m.AlertCreationTime.Format(time.RFC3339Nano), "2021-04-27T12:19:27.7211305Z"},
		{"lastEventTime", m.LastEventTime.Format(time.RFC3339Nano), "2021-05-02T07:56:58.222Z"},
		{"mitre", fmt.Sprint(m.MitreTechniques), "[T1564.001]"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if m.IncidentID == nil || *m.IncidentID != 28282 {
		t.Errorf("incidentId = %v", m.IncidentID)
	}
	if len(m.Evidence) != 3 {
		t.Fatalf("mde evidence = %d, want 3 (device becomes machineId)", len(m.Evidence))
	}
	f, p, r := m.Evidence[0], m.Evidence[1], m.Evidence[2]
	if f.EntityType != "File" || mde.Str(f.FileName) != "MsSense.exe" || mde.Str(f.Sha1) != "5f1e8acedc065031aad553b710838eb366cfee9a" || mde.Str(f.DetectionStatus) != "Detected" {
		t.Errorf("file = %+v", f)
	}
	if p.EntityType != "Process" || p.ProcessID == nil || *p.ProcessID != 4780 || mde.Str(p.ParentProcessFileName) != "services.exe" ||
		mde.Str(p.ProcessCommandLine) != `"MsSense.exe"` || p.ParentProcessID == nil || *p.ParentProcessID != 668 {
		t.Errorf("process = %+v", p)
	}
	if r.EntityType != "Registry" || mde.Str(r.RegistryHive) != "HKEY_LOCAL_MACHINE" {
		t.Errorf("registry = %+v", r)
	}
	// AlertV2 survives a JSON round trip with its typed evidence.
	b2, err := json.Marshal(alerts[0])
	if err != nil {
		t.Fatal(err)
	}
	var again AlertV2
	if err := json.Unmarshal(b2, &again); err != nil || len(again.Evidence) != 4 || again.Evidence[0].Device == nil ||
		again.Evidence[0].Device.MdeDeviceID != "73e7e2de709dff64ef64b1d0c30e67fab63279db" {
		t.Errorf("AlertV2 round trip: %v", err)
	}
	// The mapped alert must survive the MDE JSON round trip the queues use.
	b, _ := json.Marshal(m)
	var back mde.Alert
	if err := json.Unmarshal(b, &back); err != nil || back.MachineID != m.MachineID {
		t.Errorf("round trip: %v", err)
	}
}

func TestToMDEDeviceChoiceAndValidation(t *testing.T) {
	t.Parallel()
	dev := func(id string, roles ...string) string {
		return fmt.Sprintf(`{"@odata.type":"#microsoft.graph.security.deviceEvidence","mdeDeviceId":%q,"deviceDnsName":"h-%s","roles":%s}`,
			id, id[:4], mustJSON(roles))
	}
	a1 := strings.Repeat("a", 40)
	b1 := strings.Repeat("b", 40)
	tests := []struct {
		name        string
		id          string
		evidence    []string
		wantMachine string
		wantErr     bool
	}{
		{"single device", "da1_2", []string{dev(a1)}, a1, false},
		{"same device twice", "da1_2", []string{dev(a1), dev(strings.ToUpper(a1))}, a1, false},
		{"two devices, one compromised", "da1_2", []string{dev(a1), dev(b1, "compromised")}, b1, false},
		{"two devices, none marked: no guess", "da1_2", []string{dev(a1), dev(b1)}, "", false},
		{"no device", "da1_2", []string{`{"@odata.type":"#microsoft.graph.security.ipEvidence","ipAddress":"10.0.0.1"}`}, "", false},
		{"hostile device id", "da1_2", []string{dev("../../machines/" + a1[:20])}, "", true},
		{"hostile alert id", "da1?$x=1", []string{dev(a1)}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := fmt.Sprintf(`{"id":%q,"severity":"high","status":"inProgress","classification":"truePositive","determination":"multiStagedAttack","evidence":[%s]}`,
				tt.id, strings.Join(tt.evidence, ","))
			var a AlertV2
			if err := json.Unmarshal([]byte(raw), &a); err != nil {
				t.Fatal(err)
			}
			m, err := a.ToMDE()
			if tt.wantErr {
				if !errors.Is(err, mde.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid id", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.MachineID != tt.wantMachine {
				t.Errorf("machineId = %q, want %q", m.MachineID, tt.wantMachine)
			}
			if m.Severity != "High" || m.Status != "InProgress" || mde.Str(m.Classification) != "TruePositive" || mde.Str(m.Determination) != "MultiStagedAttack" {
				t.Errorf("enums = %s %s %v %v", m.Severity, m.Status, mde.Str(m.Classification), mde.Str(m.Determination))
			}
		})
	}
}

func mustJSON(v any) string {
	if v == nil {
		return "[]"
	}
	b, _ := json.Marshal(v)
	if string(b) == "null" {
		return "[]"
	}
	return string(b)
}

func TestEvidenceKinds(t *testing.T) {
	t.Parallel()
	raw := `[
	 {"@odata.type":"#microsoft.graph.security.userEvidence","userAccount":{"accountName":"jdoe","domainName":"EXAMPLE","userSid":"S-1-5-21-1","azureAdUserId":"u1","userPrincipalName":"jdoe@example.com"}},
	 {"@odata.type":"#microsoft.graph.security.ipEvidence","ipAddress":"203.0.113.7","countryLetterCode":"NL"},
	 {"@odata.type":"#microsoft.graph.security.urlEvidence","url":"https://bad.example/x"},
	 {"@odata.type":"#microsoft.graph.security.registryValueEvidence","registryKey":"K","registryHive":"HKLM","registryValue":"V","registryValueName":"N","registryValueType":"String"},
	 {"@odata.type":"#microsoft.graph.security.mailboxEvidence","primaryAddress":"x@example.com"}
	]`
	var ev []Evidence
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		t.Fatal(err)
	}
	if ev[4].Kind != "mailboxEvidence" || len(ev[4].Raw) == 0 {
		t.Errorf("unknown kind not kept raw: %+v", ev[4])
	}
	a := AlertV2{ID: "da1_2", Evidence: ev}
	m, err := a.ToMDE()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range m.Evidence {
		types = append(types, e.EntityType)
	}
	if fmt.Sprint(types) != "[User Ip Url Registry]" {
		t.Errorf("types = %v", types)
	}
	if m.RelatedUser == nil || m.RelatedUser.UserName != "jdoe" || mde.Str(m.Evidence[0].UserPrincipalName) != "jdoe@example.com" {
		t.Errorf("user = %+v %+v", m.RelatedUser, m.Evidence[0])
	}
	if mde.Str(m.Evidence[1].IPAddress) != "203.0.113.7" || mde.Str(m.Evidence[3].RegistryValueName) != "N" {
		t.Errorf("ip/registry = %+v %+v", m.Evidence[1], m.Evidence[3])
	}
	if m.Severity != "UnSpecified" || m.Status != "Unknown" {
		t.Errorf("defaults = %s %s", m.Severity, m.Status)
	}
}

func TestListAlertsV2Paging(t *testing.T) {
	t.Parallel()
	var foreign atomic.Int32
	evil := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { foreign.Add(1) }))
	defer evil.Close()
	tests := []struct {
		name    string
		next    func(base string, page int) string
		top     int
		wantIDs int
		wantErr error
	}{
		{"follows nextLink", func(base string, page int) string {
			if page < 2 {
				return fmt.Sprintf("%s/v1.0/security/alerts_v2?$skiptoken=p%d", base, page+1)
			}
			return ""
		}, 0, 9, nil},
		{"top caps", func(base string, page int) string {
			return fmt.Sprintf("%s/v1.0/security/alerts_v2?$skiptoken=p%d", base, page+1)
		}, 4, 4, nil},
		{"foreign host refused", func(base string, page int) string { return evil.URL + "/v1.0/security/alerts_v2?$skiptoken=x" }, 0, 3, mde.ErrForeignNextLink},
		{"other path refused", func(base string, page int) string { return base + "/v1.0/users/x/messages" }, 0, 3, mde.ErrForeignNextLink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var tops []string
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				page := 0
				fmt.Sscanf(r.URL.Query().Get("$skiptoken"), "p%d", &page)
				mu.Lock()
				tops = append(tops, r.URL.Query().Get("$top"))
				mu.Unlock()
				var vals []string
				for i := range 3 {
					vals = append(vals, fmt.Sprintf(`{"id":"da%d_%d","severity":"low"}`, page, i))
				}
				body := `{"value":[` + strings.Join(vals, ",") + `]`
				if l := tt.next("https://"+r.Host, page); l != "" {
					body += `,"@odata.nextLink":` + mustJSON(l)
				}
				writeJSON(w, 200, body+"}")
			}))
			got, err := c.ListAlertsV2(context.Background(), &ListAlertsV2Options{Top: tt.top})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.wantIDs {
				t.Errorf("got %d alerts, want %d", len(got), tt.wantIDs)
			}
			if tt.top > 0 && tops[0] != fmt.Sprint(tt.top) {
				t.Errorf("$top = %q", tops[0])
			}
		})
	}
	if foreign.Load() != 0 {
		t.Fatal("foreign host contacted")
	}
}

func TestRunHuntingQuery(t *testing.T) {
	t.Parallel()
	var got map[string]any
	var calls atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/v1.0/security/runHuntingQuery" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		got = nil
		_ = json.NewDecoder(r.Body).Decode(&got)
		writeJSON(w, 200, `{"schema":[{"name":"A","type":"String"}],"results":[{"A":"b"}]}`)
	}))
	raw, err := c.RunHuntingQuery(context.Background(), "DeviceInfo | take 1", "P1D")
	if err != nil || !strings.Contains(string(raw), `"results"`) {
		t.Fatalf("RunHuntingQuery: %v %s", err, raw)
	}
	if got["Query"] != "DeviceInfo | take 1" || got["Timespan"] != "P1D" {
		t.Errorf("body = %v", got)
	}
	if _, err := c.RunHuntingQuery(context.Background(), "x", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := got["Timespan"]; ok {
		t.Error("empty timespan sent")
	}
	for _, ts := range []string{"PT12H", "P30D", "2024-01-01T00:00:00Z/2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z/P1D"} {
		if _, err := c.RunHuntingQuery(context.Background(), "x", ts); err != nil {
			t.Errorf("timespan %q refused: %v", ts, err)
		}
	}
	before := calls.Load()
	for _, ts := range []string{"P", "1 day", "P1D\r\nX: y", "P1D&x=1"} {
		if _, err := c.RunHuntingQuery(context.Background(), "x", ts); !errors.Is(err, mde.ErrInvalidArgument) {
			t.Errorf("timespan %q: err = %v", ts, err)
		}
	}
	if _, err := c.RunHuntingQuery(context.Background(), "  ", ""); !errors.Is(err, mde.ErrInvalidArgument) {
		t.Errorf("empty query: %v", err)
	}
	if calls.Load() != before {
		t.Error("invalid hunting calls reached the server")
	}
}

func TestSendMail(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var paths []string
	var bodies []map[string]any
	status := 202
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		paths = append(paths, r.URL.EscapedPath())
		bodies = append(bodies, m)
		st := status
		mu.Unlock()
		if st != 202 {
			writeJSON(w, st, `{"error":{"code":"ErrorAccessDenied","message":"Access is denied.","innerError":{"request-id":"r1"}}}`)
			return
		}
		w.WriteHeader(202)
	}))
	ctx := context.Background()
	msg := Mail{Subject: "Isolated ws1\r\nBcc: evil@example.com", HTMLBody: "<p>alert &lt;x&gt;</p>", TextBody: "ignored",
		To: []string{"soc@example.com"}, CC: []string{"lead@example.com"}, InternetMessageID: "<alert-da1_2.isolate@mdeflow>"}
	if err := c.SendMail(ctx, "mdeflow@contoso.onmicrosoft.com", msg, false); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	mu.Lock()
	b, _ := json.Marshal(bodies[0])
	p := paths[0]
	mu.Unlock()
	if p != "/v1.0/users/mdeflow@contoso.onmicrosoft.com/sendMail" {
		t.Errorf("path = %s", p)
	}
	want := `{"message":{"body":{"content":"\u003cp\u003ealert \u0026lt;x\u0026gt;\u003c/p\u003e","contentType":"HTML"},"ccRecipients":[{"emailAddress":{"address":"lead@example.com"}}],"internetMessageId":"\u003calert-da1_2.isolate@mdeflow\u003e","subject":"Isolated ws1  Bcc: evil@example.com","toRecipients":[{"emailAddress":{"address":"soc@example.com"}}]},"saveToSentItems":false}`
	if string(b) != want {
		t.Errorf("body = %s\nwant   %s", b, want)
	}
	if err := c.SendMail(ctx, "5f0c7a3e-1b2d-4c5e-8f9a-0b1c2d3e4f5a", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com"}}, true); err != nil {
		t.Fatalf("SendMail by GUID: %v", err)
	}
	mu.Lock()
	if bodies[1]["message"].(map[string]any)["body"].(map[string]any)["contentType"] != "Text" || bodies[1]["saveToSentItems"] != true {
		t.Errorf("text body = %v", bodies[1])
	}
	n := len(paths)
	mu.Unlock()

	bad := []struct {
		mailbox string
		msg     Mail
	}{
		{"../users/admin@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com"}}},
		{"a?b@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com"}}},
		{"a@example.com/x", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com"}}},
		{"ok@example.com", Mail{Subject: "s", TextBody: "t"}},
		{"ok@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"Eve <eve@example.com>"}}},
		{"ok@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com\r\nBcc: x@y.z"}}},
		{"ok@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com, b@example.com"}}},
		{"ok@example.com", Mail{Subject: "\r\n", TextBody: "t", To: []string{"a@example.com"}}},
		{"ok@example.com", Mail{Subject: "s", To: []string{"a@example.com"}}},
		{"ok@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com"}, InternetMessageID: "no-brackets"}},
	}
	for _, tt := range bad {
		if err := c.SendMail(ctx, tt.mailbox, tt.msg, false); !errors.Is(err, mde.ErrInvalidArgument) {
			t.Errorf("SendMail(%q, %+v) = %v, want invalid argument", tt.mailbox, tt.msg, err)
		}
	}
	mu.Lock()
	if len(paths) != n {
		t.Errorf("%d invalid mails reached the server", len(paths)-n)
	}
	status = 403
	mu.Unlock()
	err := c.SendMail(ctx, "ok@example.com", Mail{Subject: "s", TextBody: "t", To: []string{"a@example.com"}}, false)
	var me *mde.Error
	if !errors.Is(err, mde.ErrForbidden) || IsTransient(err) || !errors.As(err, &me) || me.Target != "r1" || me.RawCode != "ErrorAccessDenied" {
		t.Errorf("403: %v", err)
	}
}
