package main

// End-to-end tests of the response policy's safety rails (issue 5): the
// isolation cap and its breaker, approvals through signed links, manual
// requests, and the `policy test` command. Each stack test runs the built
// handler as a separate process under the local Functions host, against the
// simulated tenant, and judges only what an operator could see: HTTP
// answers, the .eml outbox, the simulator's record of Defender calls, and
// the state left in the embedded store.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/sim"
)

// outcomeID is the id of the outcome notification of an isolation request.
func outcomeID(requestID string) string { return "n-iso-" + requestID }

// A burst of High alerts on more machines than the cap: isolations stop at
// the cap, the breaker notification says so, the rest are skipped with
// guard "cap" (a manual request too); the breaker is shown and reset over
// HTTP with the admin key; new alerts, polled or forwarded to
// POST /api/alerts, are isolated again.
func TestPolicyCapBreakerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	now := time.Now().UTC()
	tn := &sim.Tenant{ID: sim.DefaultTenantID}
	var burst []mde.Machine
	for i := 1; i <= 5; i++ {
		m := peMachine(fmt.Sprintf("ws-cap-%02d", i), "Windows11", "Finance-Workstations", "High")
		burst = append(burst, m)
		tn.Machines = append(tn.Machines, m)
		tn.Alerts = append(tn.Alerts, peAlert(i, mde.SeverityHigh, m, fmt.Sprintf("Ransomware behavior %d", i), now.Add(-time.Duration(10-i)*time.Minute)))
	}
	spare := peMachine("ws-cap-spare", "Windows10", "Finance-Workstations", "Medium")
	tn.Machines = append(tn.Machines, spare)
	alertOf := map[string]mde.Alert{}
	for _, a := range tn.Alerts {
		alertOf[a.MachineID] = a
	}

	st := peStart(ctx, t, tn, "testdata/policies/cap.yaml", nil)
	if err := st.Host.Invoke(ctx, "OnNewAlert", ""); err != nil {
		t.Fatal(err)
	}
	st.waitIdle(ctx, t)

	// Exactly cap (3) machines isolated; the other two never called.
	var isolated, refused []mde.Machine
	for _, m := range burst {
		switch total, accepted := st.Sim.IsolateCalls(m.ID); {
		case total == 1 && accepted == 1:
			isolated = append(isolated, m)
		case total == 0:
			refused = append(refused, m)
		default:
			t.Fatalf("machine %s: %d isolate calls (%d accepted)", m.ComputerDNSName, total, accepted)
		}
	}
	if len(isolated) != 3 || len(refused) != 2 {
		t.Fatalf("isolated %d machines and refused %d; want the cap (3) and the rest (2)", len(isolated), len(refused))
	}
	for _, m := range isolated {
		if o := st.mustMail(t, outcomeID("iso-"+alertOf[m.ID].ID)); o.Field("Outcome") != pipeline.OutcomeSucceeded {
			t.Errorf("%s: outcome %q, want succeeded\n%s", m.ComputerDNSName, o.Field("Outcome"), o.Text)
		}
	}
	for _, m := range refused {
		o := st.mustMail(t, outcomeID("iso-"+alertOf[m.ID].ID))
		if o.Field("Outcome") != pipeline.OutcomeSkipped || o.Field("Guard") != policy.GuardCap {
			t.Errorf("%s: outcome %q guard %q, want skipped by cap\n%s", m.ComputerDNSName, o.Field("Outcome"), o.Field("Guard"), o.Text)
		}
		if !strings.Contains(o.Subject, "skipped (cap)") {
			t.Errorf("%s: subject %q does not say the cap skipped it", m.ComputerDNSName, o.Subject)
		}
	}

	// One breaker notification, which says what happened and how to resume.
	br := st.mailsWithPrefix(t, "n-breaker-")
	if len(br) != 1 {
		t.Fatalf("%d breaker notifications, want 1", len(br))
	}
	if !strings.Contains(br[0].Subject, "breaker tripped") || !strings.Contains(br[0].Text, "after 3 isolations") {
		t.Errorf("breaker notification does not say the cap tripped after 3 isolations:\n%s\n%s", br[0].Subject, br[0].Text)
	}
	// The reset it describes must be the one ResetBreaker accepts.
	if !strings.Contains(br[0].Text, "/api/breaker") || !strings.Contains(br[0].Text, `{"action":"reset"`) {
		t.Errorf("breaker notification does not tell how to reset (POST /api/breaker {\"action\":\"reset\",\"by\":...}):\n%s", br[0].Text)
	}

	// GET /api/breaker is admin-only and shows the open breaker.
	for _, key := range []string{"", st.FunctionKey, "not-a-key"} {
		if r := st.do(ctx, t, "GET", "/api/breaker", key, "", ""); r.Status != 401 {
			t.Errorf("GET /api/breaker with key %q: %d, want 401", key, r.Status)
		}
	}
	var bs policy.BreakerState
	r := st.do(ctx, t, "GET", "/api/breaker", st.MasterKey, "", "")
	if r.Status != 200 {
		t.Fatalf("GET /api/breaker: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &bs)
	if !bs.Open() || len(bs.Entries) != 3 || bs.Cap != 3 || bs.TrippedAt == nil || !strings.HasPrefix(bs.TrippedBy, "iso-") {
		t.Fatalf("breaker after the burst: %s", r.Body)
	}

	// A manual request meets the same cap.
	r = st.do(ctx, t, "POST", "/api/machines/"+spare.ID+"/isolate", st.FunctionKey, "",
		`{"comment":"contain while the breaker is open","requestor":"e2e-analyst"}`)
	if r.Status != 202 {
		t.Fatalf("manual isolate: %d %s", r.Status, r.Body)
	}
	var manual struct{ RequestID string }
	r.JSON(t, &manual)
	st.waitIdle(ctx, t)
	if o := st.mustMail(t, outcomeID(manual.RequestID)); o.Field("Outcome") != pipeline.OutcomeSkipped || o.Field("Guard") != policy.GuardCap {
		t.Errorf("manual request while the breaker is open: outcome %q guard %q, want skipped by cap", o.Field("Outcome"), o.Field("Guard"))
	}
	if total, _ := st.Sim.IsolateCalls(spare.ID); total != 0 {
		t.Errorf("the breaker let a manual isolation through (%d calls)", total)
	}

	// Reset: admin key and a well-formed body only.
	if r := st.do(ctx, t, "POST", "/api/breaker", st.FunctionKey, "", `{"action":"reset","by":"test"}`); r.Status != 401 {
		t.Errorf("reset with the function key: %d, want 401", r.Status)
	}
	for _, body := range []string{`{"action":"open","by":"test"}`, `{"action":"reset"}`, `reset`} {
		if r := st.do(ctx, t, "POST", "/api/breaker", st.MasterKey, "", body); r.Status != 400 {
			t.Errorf("reset with body %s: %d, want 400", body, r.Status)
		}
	}
	if r := st.do(ctx, t, "GET", "/api/breaker", st.MasterKey, "", ""); !strings.Contains(r.Body, `"open"`) {
		t.Fatalf("a refused reset changed the breaker: %s", r.Body)
	}
	r = st.do(ctx, t, "POST", "/api/breaker", st.MasterKey, "", `{"action":"reset","by":"test"}`)
	if r.Status != 200 {
		t.Fatalf("reset: %d %s", r.Status, r.Body)
	}
	bs = policy.BreakerState{}
	r.JSON(t, &bs)
	if bs.Open() || len(bs.Entries) != 0 || bs.ResetBy != "test" || bs.ResetAt == nil {
		t.Fatalf("breaker after reset: %s", r.Body)
	}

	// New alerts on the refused machines are isolated again: one forwarded
	// in the connector's shape to POST /api/alerts, one found by the poll.
	var fresh []mde.Alert
	for i, m := range refused {
		a := peAlert(100+i, mde.SeverityHigh, m, "Ransomware behavior again", time.Now().UTC())
		if err := st.Sim.AddAlert(a); err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, a)
	}
	body, _ := json.Marshal(map[string]string{"id": fresh[0].ID, "machineId": fresh[0].MachineID})
	if r := st.do(ctx, t, "POST", "/api/alerts", "", "", string(body)); r.Status != 401 {
		t.Errorf("POST /api/alerts without key: %d, want 401", r.Status)
	}
	r = st.do(ctx, t, "POST", "/api/alerts", st.FunctionKey, "", string(body))
	if r.Status != 202 || !strings.Contains(r.Body, fresh[0].ID) {
		t.Fatalf("POST /api/alerts: %d %s", r.Status, r.Body)
	}
	st.waitIdle(ctx, t)
	if err := st.Host.Invoke(ctx, "OnNewAlert", ""); err != nil {
		t.Fatal(err)
	}
	st.waitIdle(ctx, t)
	for i, m := range refused {
		if total, accepted := st.Sim.IsolateCalls(m.ID); total != 1 || accepted != 1 {
			t.Errorf("%s after the reset: %d isolate calls (%d accepted), want 1", m.ComputerDNSName, total, accepted)
		}
		if o := st.mustMail(t, outcomeID("iso-"+fresh[i].ID)); o.Field("Outcome") != pipeline.OutcomeSucceeded {
			t.Errorf("%s after the reset: outcome %q, want succeeded", m.ComputerDNSName, o.Field("Outcome"))
		}
	}
	bs = policy.BreakerState{}
	st.do(ctx, t, "GET", "/api/breaker", st.MasterKey, "", "").JSON(t, &bs)
	if bs.Open() || len(bs.Entries) != 2 {
		t.Errorf("breaker after two isolations since the reset: %+v", bs)
	}
	if n := len(st.mailsWithPrefix(t, "n-breaker-")); n != 1 {
		t.Errorf("%d breaker notifications, want still 1", n)
	}
	if n := st.deadLettered(); n != 0 {
		t.Errorf("%d dead-lettered messages", n)
	}
	if total, accepted := st.isolateCalls(append(burst, spare)...); total != 5 || accepted != 5 {
		t.Errorf("isolate calls in all: %d (%d accepted), want 5", total, accepted)
	}

	// The store: refused requests are skipped by cap, in the audit too.
	ps := st.snapshot(ctx, t)
	for _, m := range refused {
		id := "iso-" + alertOf[m.ID].ID
		rs, ok := ps.Requests[id]
		if !ok || rs.Outcome == nil || rs.Outcome.Kind != pipeline.OutcomeSkipped || rs.Outcome.Guard != policy.GuardCap {
			t.Errorf("request %s: %+v, want skipped by cap", id, rs.Outcome)
		}
		if a, ok := ps.auditOf(id)[pipeline.OutcomeSkipped]; !ok || a.Outcome.Guard != policy.GuardCap || a.RuleID != "high-isolate" || a.PolicyVersion != "e2e-cap-1" {
			t.Errorf("audit of %s: %+v", id, ps.auditOf(id))
		}
	}
	if rs := ps.Requests[manual.RequestID]; rs.Outcome == nil || rs.Outcome.Guard != policy.GuardCap || !rs.Request.Manual {
		t.Errorf("manual request %s: %+v", manual.RequestID, rs)
	}
	if ps.Breaker == nil || ps.Breaker.ResetBy != "test" {
		t.Errorf("stored breaker: %+v", ps.Breaker)
	}
}
