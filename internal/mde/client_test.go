package mde

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	machineA = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"
	actionA  = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
	alertA   = "da638765432109876543_-1029384756"
)

func TestListAlertsDecodesDocsExample2(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile(publicData(t, "msdocs_mde_get-alerts_example2_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var gotQuery string
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/alerts" {
			http.NotFound(w, r)
			return
		}
		gotQuery = r.URL.RawQuery
		writeJSON(w, 200, string(body))
	}), nil)
	alerts, err := c.ListAlerts(context.Background(), &ListAlertsOptions{ExpandEvidence: true, CreatedAfter: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("ListAlerts: %v", err)
	}
	if !strings.Contains(gotQuery, "$expand=evidence") || !strings.Contains(gotQuery, "$filter=alertCreationTime%20gt%202021-01-01T00:00:00Z") {
		t.Errorf("query = %s", gotQuery)
	}
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(alerts))
	}
	a := alerts[0]
	if a.ID != "da637472900382838869_1364969609" || a.IncidentID == nil || *a.IncidentID != 1126093 {
		t.Errorf("id/incident = %q/%v", a.ID, a.IncidentID)
	}
	if a.Severity != SeverityLow || a.Status != "New" || a.MachineID != "111e6dd8c833c8a052ea231ec1b19adaf497b625" {
		t.Errorf("severity/status/machine = %s/%s/%s", a.Severity, a.Status, a.MachineID)
	}
	if err := ValidateMachineID(a.MachineID); err != nil {
		t.Errorf("machine id from docs fails validation: %v", err)
	}
	if a.RelatedUser == nil || a.RelatedUser.UserName != "temp123" {
		t.Errorf("relatedUser = %+v", a.RelatedUser)
	}
	if len(a.Comments) != 1 || a.Comments[0].CreatedTime == nil {
		t.Errorf("comments = %+v", a.Comments)
	}
	if len(a.Evidence) != 3 {
		t.Fatalf("evidence = %d, want 3", len(a.Evidence))
	}
	p := a.Evidence[1]
	if p.EntityType != "Process" || p.ProcessID == nil || *p.ProcessID != 3276 || Str(p.ParentProcessFileName) != "rundll32.exe" {
		t.Errorf("process evidence = %+v", p)
	}
	if got := Str(a.Evidence[0].UserPrincipalName); got != "temp123@microsoft.com" {
		t.Errorf("user evidence upn = %q", got)
	}
	if want := time.Date(2021, 1, 26, 20, 33, 57, 722023900, time.UTC); a.AlertCreationTime == nil || !a.AlertCreationTime.Equal(want) {
		t.Errorf("alertCreationTime = %v", a.AlertCreationTime)
	}
}

// Hostile ids must be refused before any request is built: "../" would let an
// alert field steer the request to another endpoint, "?" would inject a query.
func TestInvalidIDsRejectedBeforeRequest(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		writeJSON(w, 200, `{}`)
	}), nil)
	ctx := context.Background()
	bad := []string{"../machines/" + machineA + "/isolate", machineA + "?x=1", "", "a/b", "%2e%2e", machineA + "/../x", "da63_1?$expand=x"}
	ops := map[string]func(id string) error{
		"GetAlert":    func(id string) error { _, err := c.GetAlert(ctx, id, false); return err },
		"UpdateAlert": func(id string) error { _, err := c.UpdateAlert(ctx, id, AlertUpdate{Status: "Resolved"}); return err },
		"GetMachine":  func(id string) error { _, err := c.GetMachine(ctx, id); return err },
		"Isolate":     func(id string) error { _, err := c.IsolateMachine(ctx, id, "c", ""); return err },
		"Unisolate":   func(id string) error { _, err := c.UnisolateMachine(ctx, id, "c"); return err },
		"Restrict":    func(id string) error { _, err := c.RestrictCodeExecution(ctx, id, "c"); return err },
		"Unrestrict":  func(id string) error { _, err := c.UnrestrictCodeExecution(ctx, id, "c"); return err },
		"Scan":        func(id string) error { _, err := c.RunAntiVirusScan(ctx, id, "c", "Quick"); return err },
		"Collect":     func(id string) error { _, err := c.CollectInvestigationPackage(ctx, id, "c"); return err },
		"AddTag":      func(id string) error { _, err := c.AddMachineTag(ctx, id, "t"); return err },
		"RemoveTag":   func(id string) error { _, err := c.RemoveMachineTag(ctx, id, "t"); return err },
		"GetAction":   func(id string) error { _, err := c.GetMachineAction(ctx, id); return err },
		"Cancel":      func(id string) error { _, err := c.CancelMachineAction(ctx, id, "c"); return err },
		"PackageURI":  func(id string) error { _, err := c.GetInvestigationPackageURI(ctx, id); return err },
		"ListActions": func(id string) error {
			if id == "" {
				return ErrInvalidArgument // an empty MachineID means "no filter"
			}
			_, err := c.ListMachineActions(ctx, &ListMachineActionsOptions{MachineID: id})
			return err
		},
		"FindByName": func(id string) error { _, err := c.FindMachineByName(ctx, id); return err },
	}
	for name, op := range ops {
		for _, id := range bad {
			err := op(id)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s(%q) = %v, want ErrInvalidArgument", name, id, err)
			}
			if IsTransient(err) {
				t.Errorf("%s(%q): invalid id classified transient", name, id)
			}
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("server received %d requests for invalid ids", n)
	}
}

func TestUpdateAlert(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []map[string]any
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPatch || r.URL.Path != "/api/alerts/"+alertA {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		bodies = append(bodies, m)
		mu.Unlock()
		writeJSON(w, 200, `{"id":"`+alertA+`","status":"InProgress","assignedTo":"soc@example.com"}`)
	}), nil)
	tests := []struct {
		name    string
		u       AlertUpdate
		want    map[string]any // nil: refused locally
		wantErr string
	}{
		{"status and comment", AlertUpdate{Status: "inprogress", AssignedTo: "soc@example.com", Comment: "auto"},
			map[string]any{"status": "InProgress", "assignedTo": "soc@example.com", "comment": "auto"}, ""},
		{"classification pair", AlertUpdate{Classification: "TruePositive", Determination: "malware"},
			map[string]any{"classification": "TruePositive", "determination": "Malware"}, ""},
		{"alerts.md spelling", AlertUpdate{Classification: "FalsePositive", Determination: "Clean"},
			map[string]any{"classification": "FalsePositive", "determination": "Clean"}, ""},
		{"update-alert.md spelling", AlertUpdate{Classification: "FalsePositive", Determination: "NotMalicious"},
			map[string]any{"classification": "FalsePositive", "determination": "NotMalicious"}, ""},
		{"ConfirmedActivity", AlertUpdate{Classification: "InformationalExpectedActivity", Determination: "ConfirmedActivity"},
			map[string]any{"classification": "InformationalExpectedActivity", "determination": "ConfirmedActivity"}, ""},
		{"determination alone", AlertUpdate{Determination: "ConfirmedUserActivity"},
			map[string]any{"determination": "ConfirmedUserActivity"}, ""},
		{"bad status", AlertUpdate{Status: "Closed"}, nil, "status"},
		{"mismatched pair", AlertUpdate{Classification: "TruePositive", Determination: "Clean"}, nil, "not valid with classification"},
		{"unknown determination", AlertUpdate{Determination: "Apt"}, nil, "not a known value"},
		{"empty", AlertUpdate{}, nil, "nothing to update"},
		{"assignedTo header injection", AlertUpdate{AssignedTo: "a\r\nb"}, nil, "assignedTo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := len(bodies)
			mu.Unlock()
			a, err := c.UpdateAlert(context.Background(), alertA, tt.u)
			mu.Lock()
			defer mu.Unlock()
			if tt.want == nil {
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want invalid argument mentioning %q", err, tt.wantErr)
				}
				if len(bodies) != before {
					t.Fatal("refused update still sent a request")
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateAlert: %v", err)
			}
			if a.Status != "InProgress" {
				t.Errorf("returned alert status = %q", a.Status)
			}
			got := bodies[len(bodies)-1]
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("body = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMachineActionsRequests(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path string
		body         map[string]any
	}
	var mu sync.Mutex
	var last seen
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			if len(b) > 0 {
				if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("content-type = %q", ct)
				}
				_ = json.Unmarshal(b, &m)
			}
		}
		mu.Lock()
		last = seen{r.Method, r.URL.Path, m}
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/tags"):
			writeJSON(w, 200, `{"id":"`+machineA+`","machineTags":["x"],"rbacGroupId":12}`)
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			writeJSON(w, 200, `{"id":"`+actionA+`","status":"Cancelled"}`)
		case strings.HasSuffix(r.URL.Path, "/getPackageUri"):
			writeJSON(w, 200, `{"@odata.context":"x","value":"https://blob.example/pkg?sig=abc"}`)
		case r.URL.Path == "/api/advancedqueries/run":
			writeJSON(w, 200, `{"Schema":[{"Name":"A","Type":"String"}],"Results":[{"A":"b"}]}`)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/machineactions/"):
			writeJSON(w, 200, `{"id":"`+actionA+`","status":"Succeeded","lastUpdateTimeUtc":"2025-03-01T09:16:40.5Z"}`)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/machines/"):
			writeJSON(w, 200, `{"id":"`+machineA+`","onboardingstatus":"onboarded","rbacGroupId":"140"}`)
		default:
			writeJSON(w, 201, `{"id":"`+actionA+`","type":"Isolate","status":"Pending","machineId":"`+machineA+`"}`)
		}
	}), nil)
	ctx := context.Background()
	mp := "/api/machines/" + machineA
	tests := []struct {
		name     string
		call     func() (any, error)
		method   string
		path     string
		wantBody map[string]any
	}{
		{"isolate default full", func() (any, error) { return c.IsolateMachine(ctx, machineA, "because", "") },
			"POST", mp + "/isolate", map[string]any{"Comment": "because", "IsolationType": "Full"}},
		{"isolate selective", func() (any, error) { return c.IsolateMachine(ctx, machineA, "because", "selective") },
			"POST", mp + "/isolate", map[string]any{"Comment": "because", "IsolationType": "Selective"}},
		{"unisolate", func() (any, error) { return c.UnisolateMachine(ctx, machineA, "done") },
			"POST", mp + "/unisolate", map[string]any{"Comment": "done"}},
		{"restrict", func() (any, error) { return c.RestrictCodeExecution(ctx, machineA, "r") },
			"POST", mp + "/restrictCodeExecution", map[string]any{"Comment": "r"}},
		{"unrestrict", func() (any, error) { return c.UnrestrictCodeExecution(ctx, machineA, "u") },
			"POST", mp + "/unrestrictCodeExecution", map[string]any{"Comment": "u"}},
		{"scan", func() (any, error) { return c.RunAntiVirusScan(ctx, machineA, "s", "full") },
			"POST", mp + "/runAntiVirusScan", map[string]any{"Comment": "s", "ScanType": "Full"}},
		{"collect", func() (any, error) { return c.CollectInvestigationPackage(ctx, machineA, "k") },
			"POST", mp + "/collectInvestigationPackage", map[string]any{"Comment": "k"}},
		{"add tag", func() (any, error) { return c.AddMachineTag(ctx, machineA, "isolated by mdeflow") },
			"POST", mp + "/tags", map[string]any{"Value": "isolated by mdeflow", "Action": "Add"}},
		{"remove tag", func() (any, error) { return c.RemoveMachineTag(ctx, machineA, "x") },
			"POST", mp + "/tags", map[string]any{"Value": "x", "Action": "Remove"}},
		{"cancel", func() (any, error) { return c.CancelMachineAction(ctx, actionA, "fp") },
			"POST", "/api/machineactions/" + actionA + "/cancel", map[string]any{"Comment": "fp"}},
		{"get action", func() (any, error) { return c.GetMachineAction(ctx, actionA) },
			"GET", "/api/machineactions/" + actionA, nil},
		{"get machine", func() (any, error) { return c.GetMachine(ctx, machineA) },
			"GET", mp, nil},
		{"package uri", func() (any, error) { return c.GetInvestigationPackageURI(ctx, actionA) },
			"GET", "/api/machineactions/" + actionA + "/getPackageUri", nil},
		{"advanced query", func() (any, error) { return c.RunAdvancedQuery(ctx, "DeviceInfo | take 1") },
			"POST", "/api/advancedqueries/run", map[string]any{"Query": "DeviceInfo | take 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			mu.Lock()
			l := last
			mu.Unlock()
			if l.method != tt.method || l.path != tt.path {
				t.Errorf("request = %s %s, want %s %s", l.method, l.path, tt.method, tt.path)
			}
			if tt.wantBody != nil && fmt.Sprint(l.body) != fmt.Sprint(tt.wantBody) {
				t.Errorf("body = %v, want %v", l.body, tt.wantBody)
			}
			switch v := got.(type) {
			case *MachineAction:
				if v.ID != actionA {
					t.Errorf("action id = %q", v.ID)
				}
			case *Machine:
				if v.ID != machineA {
					t.Errorf("machine id = %q", v.ID)
				}
			case string:
				if !strings.HasPrefix(v, "https://blob.example/") {
					t.Errorf("package uri = %q", v)
				}
			case json.RawMessage:
				if !bytes.Contains(v, []byte(`"Results"`)) {
					t.Errorf("raw = %s", v)
				}
			}
		})
	}
	// Tolerant decoding through the client: lastUpdateTimeUtc and onboardingstatus spellings.
	a, _ := c.GetMachineAction(ctx, actionA)
	if a.LastUpdateDateTimeUtc == nil {
		t.Error("lastUpdateTimeUtc spelling not decoded")
	}
	m, _ := c.GetMachine(ctx, machineA)
	if m.OnboardingStatus != "onboarded" || m.RbacGroupID != "140" {
		t.Errorf("machine = %+v", m)
	}
}

func TestActionArgumentValidation(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), nil)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"empty comment", func() error { _, err := c.IsolateMachine(ctx, machineA, "  ", ""); return err }},
		{"huge comment", func() error {
			_, err := c.UnisolateMachine(ctx, machineA, strings.Repeat("x", maxCommentLen+1))
			return err
		}},
		{"isolation type", func() error { _, err := c.IsolateMachine(ctx, machineA, "c", "Partial"); return err }},
		{"scan type", func() error { _, err := c.RunAntiVirusScan(ctx, machineA, "c", ""); return err }},
		{"tag control char", func() error { _, err := c.AddMachineTag(ctx, machineA, "a\nb"); return err }},
		{"empty query", func() error { _, err := c.RunAdvancedQuery(ctx, " "); return err }},
		{"action type", func() error {
			_, err := c.ListMachineActions(ctx, &ListMachineActionsOptions{Type: "Nuke"})
			return err
		}},
		{"action status", func() error {
			_, err := c.ListMachineActions(ctx, &ListMachineActionsOptions{Status: "Done"})
			return err
		}},
		{"machine name with quote", func() error { _, err := c.FindMachineByName(ctx, "ws1' or 1 eq 1"); return err }},
		{"tag for list", func() error { _, err := c.ListMachinesByTag(ctx, ""); return err }},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", tt.name, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests sent for invalid arguments", hits.Load())
	}
}

func TestDuplicateActionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
	}{
		{"coded", `{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress","target":"5c7d"}}`},
		// Several action pages document only the message with a generic code.
		{"message only", `{"error":{"code":"BadRequest","message":"Action is already in progress","target":"5c7e"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 400, tt.body)
			}), nil)
			_, err := c.IsolateMachine(context.Background(), machineA, "c", "Full")
			if !errors.Is(err, ErrActiveRequestAlreadyExists) {
				t.Fatalf("err = %v, want ErrActiveRequestAlreadyExists", err)
			}
			if IsTransient(err) {
				t.Error("duplicate action classified transient")
			}
			var me *Error
			if !errors.As(err, &me) || me.Op != "IsolateMachine" || me.Target == "" {
				t.Errorf("error = %#v", me)
			}
			if !strings.HasPrefix(err.Error(), "isolating machine "+machineA+": ") {
				t.Errorf("message = %q", err.Error())
			}
		})
	}
}

func TestFindMachineByName(t *testing.T) {
	t.Parallel()
	machines := `[
		{"id":"1111111111111111111111111111111111111111","computerDnsName":"ws-fin-0142.corp.example.com"},
		{"id":"2222222222222222222222222222222222222222","computerDnsName":"ws-fin-01420.corp.example.com"},
		{"id":"3333333333333333333333333333333333333333","computerDnsName":"dup.corp.example.com"},
		{"id":"4444444444444444444444444444444444444444","computerDnsName":"dup.lab.example.com"},
		{"id":"5555555555555555555555555555555555555555","computerDnsName":"DUP.corp.example.com"}]`
	var all []Machine
	if err := json.Unmarshal([]byte(machines), &all); err != nil {
		t.Fatal(err)
	}
	var filters []string
	var mu sync.Mutex
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := r.URL.Query().Get("$filter")
		mu.Lock()
		filters = append(filters, f)
		mu.Unlock()
		prefix := strings.TrimSuffix(strings.TrimPrefix(f, "startswith(computerDnsName,'"), "')")
		var hits []Machine
		for _, m := range all {
			if strings.HasPrefix(strings.ToLower(m.ComputerDNSName), prefix) {
				hits = append(hits, m)
			}
		}
		if len(hits) == 0 {
			// "If there are no recent machines, you see 404 Not Found" (get-machines.md).
			writeJSON(w, 404, `{"error":{"code":"ResourceNotFound","message":"none"}}`)
			return
		}
		b, _ := json.Marshal(map[string]any{"value": hits})
		writeJSON(w, 200, string(b))
	}), nil)
	ctx := context.Background()
	m, err := c.FindMachineByName(ctx, "WS-FIN-0142")
	if err != nil || m.ID != "1111111111111111111111111111111111111111" {
		t.Fatalf("short name: %v, %+v", err, m)
	}
	m, err = c.FindMachineByName(ctx, "ws-fin-0142.corp.example.com")
	if err != nil || m.ID != "1111111111111111111111111111111111111111" {
		t.Fatalf("fqdn: %v, %+v", err, m)
	}
	_, err = c.FindMachineByName(ctx, "dup")
	var le *MachineLookupError
	if !errors.Is(err, ErrMachineAmbiguous) || !errors.As(err, &le) || le.Count != 3 || len(le.IDs) != 3 {
		t.Fatalf("ambiguous: %v", err)
	}
	_, err = c.FindMachineByName(ctx, "dup.corp.example.com")
	if !errors.Is(err, ErrMachineAmbiguous) || !errors.As(err, &le) || le.Count != 2 {
		t.Fatalf("ambiguous fqdn (case-insensitive): %v", err)
	}
	_, err = c.FindMachineByName(ctx, "nosuch")
	if !errors.Is(err, ErrMachineNotFound) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrMachineAmbiguous) {
		t.Fatalf("none: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if filters[0] != "startswith(computerDnsName,'ws-fin-0142')" {
		t.Errorf("filter = %q", filters[0])
	}
}

func TestListMachinesByTagAndActionsFilters(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var filters []string
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		filters = append(filters, r.URL.Path+" "+r.URL.Query().Get("$filter"))
		mu.Unlock()
		if r.URL.Path == "/api/machines" {
			writeJSON(w, 200, `{"value":[{"id":"`+machineA+`","machineTags":["o'brien"]}]}`)
			return
		}
		writeJSON(w, 200, `{"value":[{"id":"`+actionA+`","type":"Isolate","status":"Pending"}]}`)
	}), nil)
	ms, err := c.ListMachinesByTag(context.Background(), "o'brien")
	if err != nil || len(ms) != 1 {
		t.Fatalf("ListMachinesByTag: %v %v", ms, err)
	}
	as, err := c.ListMachineActions(context.Background(), &ListMachineActionsOptions{MachineID: machineA, Type: "isolate", Status: "pending", Top: 5})
	if err != nil || len(as) != 1 {
		t.Fatalf("ListMachineActions: %v %v", as, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"/api/machines machineTags/any(tag: tag eq 'o''brien')",
		"/api/machineactions machineId eq '" + machineA + "' and type eq 'Isolate' and status eq 'Pending'",
	}
	if fmt.Sprint(filters) != fmt.Sprint(want) {
		t.Errorf("filters = %q\nwant %q", filters, want)
	}
}

func TestRouteAzcoreLogRedactsToken(t *testing.T) {
	// Not parallel: RouteAzcoreLog sets a process-wide hook.
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	RouteAzcoreLog(logger)
	defer RouteAzcoreLog(nil)
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("authorization header not sent")
		}
		writeJSON(w, 404, `{"error":{"code":"ResourceNotFound","message":"Machine was not found"}}`)
	}), nil)
	_, err := c.GetMachine(context.Background(), machineA)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, `"sdk_event":"Request"`) || !strings.Contains(out, "REDACTED") {
		t.Errorf("expected SDK request log with redacted header, got:\n%s", out)
	}
	if strings.Contains(out, testToken) {
		t.Fatal("token leaked into logs")
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewClientRejectsBadBaseURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://api.securitycenter.microsoft.com", "https://", "https://h/api?x=1", "://bad"} {
		if _, err := NewClient(&staticCred{}, &ClientOptions{BaseURL: u}); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
	c, err := NewClient(&staticCred{}, &ClientOptions{BaseURL: "https://eu.api.security.microsoft.com/api/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.endpoint(nil, "alerts", "x"); got != "https://eu.api.security.microsoft.com/api/alerts/x" {
		t.Errorf("endpoint = %s", got)
	}
}
