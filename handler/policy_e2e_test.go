package main

// End-to-end tests of the response policy's safety rails (issue 5): the
// isolation cap and its breaker, approvals through signed links, manual
// requests, and the `policy test` command. Each stack test runs the built
// handler as a separate process under the local Functions host, against the
// simulated tenant, and judges only what an operator could see: HTTP
// answers, the .eml outbox, the simulator's record of Defender calls, and
// the state left in the embedded store.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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

// approvalLink is one signed link of an approval notification.
type approvalLink struct {
	raw  string
	u    *url.URL
	exp  time.Time
	form url.Values // verdict, exp, sig
}

func parseApprovalLink(t *testing.T, raw string) approvalLink {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		t.Fatalf("approval link %q: %v", raw, err)
	}
	q := u.Query()
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil || q.Get("sig") == "" || q.Get("verdict") == "" {
		t.Fatalf("approval link %q lacks verdict, exp or sig", raw)
	}
	return approvalLink{raw: raw, u: u, exp: time.Unix(exp, 0), form: q}
}

// post submits the link's parameters as the confirmation page's form does
// (POST to the link's path, form body verdict/exp/sig), after change.
func (l approvalLink) post(ctx context.Context, t *testing.T, st *peStack, change func(url.Values)) peResp {
	t.Helper()
	form := url.Values{}
	for k, v := range l.form {
		form[k] = append([]string(nil), v...)
	}
	if change != nil {
		change(form)
	}
	target := l.u.Scheme + "://" + l.u.Host + l.u.EscapedPath()
	return st.do(ctx, t, "POST", target, "", "application/x-www-form-urlencoded", form.Encode())
}

// flipChar changes one character of a base64url signature.
func flipChar(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

// A High rule with requireApproval: the approval notification carries the
// signed approve/deny links and what an approver needs to decide; a GET of
// a link only shows a confirmation page; a POST approves (isolation,
// outcome notified, audit) or denies (no isolate call); unanswered requests
// expire per onExpiry deny; tampered and expired links are refused with 403
// and change nothing; a second decision answers 409. An approval given just
// before the link expires is honoured, even when the expiry follow-up runs
// while the isolation is still being carried out.
func TestPolicyApprovalEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	now := time.Now().UTC()
	mA := peMachine("ws-appr-approve", "Windows11", "Finance-Workstations", "High", "finance")
	mB := peMachine("ws-appr-deny", "Windows10", "HR-Workstations", "Medium")
	mC := peMachine("ws-appr-expire", "WindowsServer2019", "Tier1-Servers", "Low")
	mD := peMachine("ws-appr-late", "Windows11", "Dev-Workstations", "High")
	machines := []mde.Machine{mA, mB, mC, mD}
	tn := &sim.Tenant{ID: sim.DefaultTenantID, Machines: machines}
	alerts := map[string]mde.Alert{}
	for i, m := range machines {
		a := peAlert(200+i, mde.SeverityHigh, m, fmt.Sprintf(`Suspicious access to LSASS memory on <%s> & "friends"`, m.ComputerDNSName), now.Add(-time.Duration(5-i)*time.Minute))
		tn.Alerts = append(tn.Alerts, a)
		alerts[m.ID] = a
	}
	reqID := func(m mde.Machine) string { return "iso-" + alerts[m.ID].ID }

	st := peStart(ctx, t, tn, "testdata/policies/approval.yaml", nil)
	if err := st.Host.Invoke(ctx, "OnNewAlert", ""); err != nil {
		t.Fatal(err)
	}
	// The expiry follow-ups are scheduled a minute ahead, so the queues are
	// not idle until then: wait for the approval notifications instead.
	type links struct{ approve, deny approvalLink }
	ls := map[string]links{}
	for _, m := range machines {
		n := st.waitMail(ctx, t, "n-approval-"+reqID(m), time.Minute)
		if strings.Contains(n.Text, "withheld") {
			t.Fatalf("approval notification for %s withholds its links:\n%s", m.ComputerDNSName, n.Text)
		}
		want := map[string]string{"Name": m.ComputerDNSName, "OS": m.OSPlatform, "Device group": *m.RbacGroupName,
			"Risk": *m.RiskScore, "Title": alerts[m.ID].Title, "Severity": mde.SeverityHigh, "Rule": "high-approve"}
		for label, v := range want {
			if got := n.Field(label); got != v {
				t.Errorf("approval notification for %s: %s is %q, want %q", m.ComputerDNSName, label, got, v)
			}
		}
		if !strings.HasPrefix(n.Subject, "[mdeflow] Approval needed: isolate "+m.ComputerDNSName) {
			t.Errorf("approval subject %q", n.Subject)
		}
		// The HTML part escapes the hostile title and carries the same links.
		if strings.Contains(n.HTML, "<"+m.ComputerDNSName+">") || !strings.Contains(n.HTML, "&lt;"+m.ComputerDNSName+"&gt;") {
			t.Errorf("HTML part does not escape the alert title")
		}
		l := links{approve: parseApprovalLink(t, n.Field("Approve")), deny: parseApprovalLink(t, n.Field("Deny"))}
		if !strings.HasPrefix(l.approve.raw, st.Host.URL()+"/api/approvals/"+reqID(m)+"?") || l.approve.form.Get("verdict") != "approve" || l.deny.form.Get("verdict") != "deny" {
			t.Fatalf("links of %s: %s %s", m.ComputerDNSName, l.approve.raw, l.deny.raw)
		}
		if !strings.Contains(n.HTML, strings.ReplaceAll(l.approve.raw, "&", "&amp;")) {
			t.Errorf("HTML part of %s lacks the approve link", m.ComputerDNSName)
		}
		if d := time.Until(l.approve.exp); d < 30*time.Second || d > 61*time.Second {
			t.Fatalf("links of %s expire in %s; the policy says 1m", m.ComputerDNSName, d)
		}
		ls[m.ID] = l
	}
	if total, _ := st.isolateCalls(machines...); total != 0 {
		t.Fatalf("%d isolate calls before any approval", total)
	}

	t.Run("approve", func(t *testing.T) {
		l := ls[mA.ID]
		before := st.enqueued("isolations")
		// GET never acts: mail scanners open links.
		for i := 0; i < 2; i++ {
			r := st.do(ctx, t, "GET", l.approve.raw, "", "", "")
			if r.Status != 200 || !strings.Contains(r.Body, `<form method="post"`) || !strings.Contains(r.Body, l.approve.form.Get("sig")) ||
				!strings.Contains(r.Body, mA.ComputerDNSName) || !strings.Contains(r.Body, "Approve isolation") {
				t.Fatalf("GET approve link: %d\n%s", r.Status, r.Body)
			}
		}
		if after := st.enqueued("isolations"); after != before {
			t.Fatalf("GET of the approve link enqueued %d isolation message(s)", after-before)
		}
		if total, _ := st.Sim.IsolateCalls(mA.ID); total != 0 {
			t.Fatalf("GET of the approve link isolated the machine")
		}
		r := l.approve.post(ctx, t, st, nil)
		if r.Status != 200 || !strings.Contains(r.Body, "Approved") {
			t.Fatalf("POST approve: %d\n%s", r.Status, r.Body)
		}
		o := st.waitMail(ctx, t, outcomeID(reqID(mA)), time.Minute)
		if o.Field("Outcome") != pipeline.OutcomeSucceeded || o.Field("Action type") != mde.ActionTypeIsolate || o.Field("Final status") != mde.ActionSucceeded {
			t.Errorf("outcome after approval:\n%s", o.Text)
		}
		if total, accepted := st.Sim.IsolateCalls(mA.ID); total != 1 || accepted != 1 {
			t.Errorf("approved isolation: %d isolate calls (%d accepted), want 1", total, accepted)
		}
		// Decided: a second POST, the deny link and a GET answer 409.
		for name, r := range map[string]peResp{
			"second approve": l.approve.post(ctx, t, st, nil),
			"deny":           ls[mA.ID].deny.post(ctx, t, st, nil),
			"GET":            st.do(ctx, t, "GET", l.approve.raw, "", "", ""),
		} {
			if r.Status != 409 || !strings.Contains(r.Body, "Nothing was changed") {
				t.Errorf("%s after the approval: %d, want 409\n%s", name, r.Status, r.Body)
			}
		}
		if total, _ := st.Sim.IsolateCalls(mA.ID); total != 1 {
			t.Errorf("a second decision made another isolate call (%d)", total)
		}
	})

	t.Run("tampered links change nothing", func(t *testing.T) {
		l := ls[mB.ID]
		before := st.enqueued("isolations")
		cases := map[string]func() peResp{
			"one character of sig": func() peResp {
				return l.deny.post(ctx, t, st, func(f url.Values) { f.Set("sig", flipChar(f.Get("sig"))) })
			},
			"approve verdict with the deny sig": func() peResp {
				return l.deny.post(ctx, t, st, func(f url.Values) { f.Set("verdict", "approve") })
			},
			"deny verdict with the approve sig": func() peResp {
				return l.approve.post(ctx, t, st, func(f url.Values) { f.Set("verdict", "deny") })
			},
			"later exp": func() peResp {
				return l.approve.post(ctx, t, st, func(f url.Values) { f.Set("exp", strconv.FormatInt(l.approve.exp.Unix()+30, 10)) })
			},
			"no sig": func() peResp {
				return l.approve.post(ctx, t, st, func(f url.Values) { f.Del("sig") })
			},
			"another request's link": func() peResp {
				other := ls[mC.ID].approve
				other.u = l.approve.u
				return other.post(ctx, t, st, nil)
			},
			"GET with a changed sig": func() peResp {
				u := *l.approve.u
				q := u.Query()
				q.Set("sig", flipChar(q.Get("sig")))
				u.RawQuery = q.Encode()
				return st.do(ctx, t, "GET", u.String(), "", "", "")
			},
		}
		for name, call := range cases {
			if r := call(); r.Status != 403 || !strings.Contains(r.Body, "Nothing was changed") {
				t.Errorf("%s: %d, want 403\n%s", name, r.Status, r.Body)
			}
		}
		if after := st.enqueued("isolations"); after != before {
			t.Errorf("refused links enqueued %d isolation message(s)", after-before)
		}
		if _, ok := st.mail(t, outcomeID(reqID(mB))); ok {
			t.Errorf("a refused link decided the request")
		}
		// The request still waits: its real link is still good.
		if r := st.do(ctx, t, "GET", l.deny.raw, "", "", ""); r.Status != 200 || !strings.Contains(r.Body, "Deny isolation") {
			t.Errorf("GET deny link after the refused ones: %d\n%s", r.Status, r.Body)
		}
	})

	t.Run("deny", func(t *testing.T) {
		l := ls[mB.ID]
		r := l.deny.post(ctx, t, st, nil)
		if r.Status != 200 || !strings.Contains(r.Body, "Denied") {
			t.Fatalf("POST deny: %d\n%s", r.Status, r.Body)
		}
		o := st.waitMail(ctx, t, outcomeID(reqID(mB)), time.Minute)
		if o.Field("Outcome") != pipeline.OutcomeDenied {
			t.Errorf("outcome after the denial:\n%s", o.Text)
		}
		if r := l.approve.post(ctx, t, st, nil); r.Status != 409 {
			t.Errorf("approve after the denial: %d, want 409\n%s", r.Status, r.Body)
		}
		if r := l.deny.post(ctx, t, st, nil); r.Status != 409 {
			t.Errorf("second deny: %d, want 409", r.Status)
		}
	})

	// D is approved 3 s before its link expires while Defender answers
	// slowly, so the expiry follow-up runs while IsolateMachine is still
	// carrying out the approved isolation.
	t.Run("approved just before expiry", func(t *testing.T) {
		l := ls[mD.ID]
		time.Sleep(time.Until(l.approve.exp.Add(-3 * time.Second)))
		st.Sim.SetFaults(sim.Faults{Latency: 5 * time.Second})
		r := l.approve.post(ctx, t, st, nil)
		if r.Status != 200 || !strings.Contains(r.Body, "Approved") {
			st.Sim.SetFaults(sim.Faults{})
			t.Fatalf("POST approve 3 s before expiry: %d\n%s", r.Status, r.Body)
		}
		time.Sleep(time.Until(l.approve.exp.Add(time.Second)))
		st.Sim.SetFaults(sim.Faults{})
	})

	st.waitIdle(ctx, t) // every expiry follow-up has run

	t.Run("expiry", func(t *testing.T) {
		o := st.mustMail(t, outcomeID(reqID(mC)))
		if o.Field("Outcome") != pipeline.OutcomeExpired || !strings.Contains(o.Field("Reason"), "not isolated") {
			t.Errorf("outcome of the unanswered request:\n%s", o.Text)
		}
		if total, _ := st.Sim.IsolateCalls(mC.ID); total != 0 {
			t.Errorf("the expired request isolated the machine")
		}
		// Expired links are refused and change nothing.
		before := st.enqueued("isolations")
		if r := ls[mC.ID].approve.post(ctx, t, st, nil); r.Status != 403 {
			t.Errorf("POST of an expired approve link: %d, want 403\n%s", r.Status, r.Body)
		}
		if r := st.do(ctx, t, "GET", ls[mC.ID].deny.raw, "", "", ""); r.Status != 403 {
			t.Errorf("GET of an expired deny link: %d, want 403", r.Status)
		}
		st.waitIdle(ctx, t)
		if after := st.enqueued("isolations"); after != before {
			t.Errorf("an expired link enqueued %d isolation message(s)", after-before)
		}
		if total, _ := st.Sim.IsolateCalls(mC.ID); total != 0 {
			t.Errorf("an expired link isolated the machine")
		}
	})

	o := st.mustMail(t, outcomeID(reqID(mD)))
	if o.Field("Outcome") != pipeline.OutcomeSucceeded {
		t.Errorf("approved just before expiry: outcome %q (%s), want succeeded", o.Field("Outcome"), o.Field("Reason"))
	}
	if total, accepted := st.Sim.IsolateCalls(mD.ID); total != 1 || accepted != 1 {
		t.Errorf("approved just before expiry: %d isolate calls (%d accepted), want 1", total, accepted)
	}
	if total, accepted := st.isolateCalls(machines...); total != 2 || accepted != 2 {
		t.Errorf("isolate calls in all: %d (%d accepted), want 2 (the approved ones)", total, accepted)
	}
	if n := st.deadLettered(); n != 0 {
		t.Errorf("%d dead-lettered messages", n)
	}

	// The store and the audit.
	ps := st.snapshot(ctx, t)
	want := map[string]struct {
		outcome string
		audit   []string
	}{
		reqID(mA): {pipeline.OutcomeSucceeded, []string{pipeline.OutcomePendingApproval, pipeline.OutcomeAccepted, pipeline.OutcomeSucceeded}},
		reqID(mB): {pipeline.OutcomeDenied, []string{pipeline.OutcomePendingApproval, pipeline.OutcomeDenied}},
		reqID(mC): {pipeline.OutcomeExpired, []string{pipeline.OutcomePendingApproval, pipeline.OutcomeExpired}},
		reqID(mD): {pipeline.OutcomeSucceeded, []string{pipeline.OutcomePendingApproval, pipeline.OutcomeAccepted, pipeline.OutcomeSucceeded}},
	}
	for id, w := range want {
		rs, ok := ps.Requests[id]
		if !ok || rs.Outcome == nil || rs.Outcome.Kind != w.outcome {
			t.Errorf("request %s: %+v, want outcome %s", id, rs.Outcome, w.outcome)
			continue
		}
		audit := ps.auditOf(id)
		for _, k := range w.audit {
			e, ok := audit[k]
			if !ok {
				t.Errorf("request %s: no audit entry %q (has %v)", id, k, audit)
				continue
			}
			if e.RuleID != "high-approve" || e.PolicyVersion != "e2e-approval-1" || e.MachineID != rs.Request.MachineID {
				t.Errorf("audit %s/%s: %+v", id, k, e)
			}
		}
		if len(audit) != len(w.audit) {
			t.Errorf("request %s: audit %v, want exactly %v", id, audit, w.audit)
		}
	}
	if rs := ps.Requests[reqID(mA)]; !rs.Request.Approved || rs.Request.Requestor != "approval link" {
		t.Errorf("approved request: approved=%v requestor=%q", rs.Request.Approved, rs.Request.Requestor)
	}
}

// Manual requests: POST /api/machines/{id-or-name}/isolate goes through the
// same queue and guards as an alert (a protected machine is skipped, an
// isolated one is not isolated twice, a free one is isolated), with the
// function key and a valid body only; POST .../release unisolates, audits,
// notifies and frees the machine for later requests.
func TestPolicyManualIsolateAndRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	prot := peMachine("dc-e2e-01", "WindowsServer2022", "Tier0-Servers", "High", "protected")
	free := peMachine("ws-e2e-01", "Windows11", "Finance-Workstations", "Medium")
	dup1 := peMachine("ws-dup", "Windows10", "HR-Workstations", "Low")
	dup2 := dup1
	dup2.ID = peMachine("ws-dup-reimaged", "", "", "").ID // a re-imaged device keeps its name
	tn := &sim.Tenant{ID: sim.DefaultTenantID, Machines: []mde.Machine{prot, free, dup1, dup2}}
	st := peStart(ctx, t, tn, "", nil) // the built-in policy: tag "protected" is never isolated

	isolate := func(ref string) string { return "/api/machines/" + url.PathEscape(ref) + "/isolate" }
	release := func(ref string) string { return "/api/machines/" + url.PathEscape(ref) + "/release" }
	good := `{"comment":"contain for forensics","requestor":"e2e-analyst"}`

	t.Run("refused requests", func(t *testing.T) {
		before := st.enqueued("isolations")
		cases := []struct {
			name, path, key, body string
			status                int
		}{
			{"isolate without key", isolate(free.ID), "", good, 401},
			{"isolate with a wrong key", isolate(free.ID), "wrong", good, 401},
			{"release without key", release(free.ID), "", good, 401},
			{"body is not JSON", isolate(free.ID), st.FunctionKey, `comment=x`, 400},
			{"no body", isolate(free.ID), st.FunctionKey, ``, 400},
			{"no requestor", isolate(free.ID), st.FunctionKey, `{"comment":"x"}`, 400},
			{"no comment", isolate(free.ID), st.FunctionKey, `{"requestor":"x"}`, 400},
			{"unknown isolation type", isolate(free.ID), st.FunctionKey, `{"comment":"x","requestor":"y","isolationType":"Partial"}`, 400},
			{"name with forbidden characters", isolate("ws-e2e-01;rm -rf"), st.FunctionKey, good, 400},
			{"unknown device id", isolate(strings.Repeat("ab", 20)), st.FunctionKey, good, 404},
			{"unknown name", isolate("ws-nowhere"), st.FunctionKey, good, 404},
			{"name of two devices", isolate(dup1.ComputerDNSName), st.FunctionKey, good, 409},
			{"release body is not JSON", release(free.ID), st.FunctionKey, `{`, 400},
			{"release without requestor", release(free.ID), st.FunctionKey, `{"comment":"x"}`, 400},
			{"release of an unknown device", release(strings.Repeat("cd", 20)), st.FunctionKey, good, 404},
		}
		for _, c := range cases {
			if r := st.do(ctx, t, "POST", c.path, c.key, "", c.body); r.Status != c.status {
				t.Errorf("%s: %d, want %d\n%s", c.name, r.Status, c.status, r.Body)
			}
		}
		if after := st.enqueued("isolations"); after != before {
			t.Errorf("refused requests enqueued %d isolation message(s)", after-before)
		}
		if n := len(st.actionsOf(free.ID, mde.ActionTypeUnisolate)); n != 0 {
			t.Errorf("a refused release called Defender")
		}
	})

	type accepted struct{ RequestID, MachineID, Status string }
	post := func(t *testing.T, ref, body string) accepted {
		t.Helper()
		r := st.do(ctx, t, "POST", isolate(ref), st.FunctionKey, "", body)
		if r.Status != 202 {
			t.Fatalf("manual isolate %s: %d %s", ref, r.Status, r.Body)
		}
		var a accepted
		r.JSON(t, &a)
		return a
	}

	var protReq, freeReq, againReq, afterRelease accepted
	t.Run("guards", func(t *testing.T) {
		protReq = post(t, "dc-e2e-01", good) // short name: the first DNS label
		body := `{"comment":"contain for forensics","requestor":"e2e-analyst","idempotencyKey":"e2e-1"}`
		freeReq = post(t, free.ID, body)
		if retry := post(t, free.ID, body); retry.RequestID != freeReq.RequestID {
			t.Errorf("same idempotencyKey, new request: %s != %s", retry.RequestID, freeReq.RequestID)
		}
		if protReq.MachineID != prot.ID || freeReq.MachineID != free.ID {
			t.Fatalf("resolved %s and %s", protReq.MachineID, freeReq.MachineID)
		}
		st.waitIdle(ctx, t)

		o := st.mustMail(t, outcomeID(protReq.RequestID))
		if o.Field("Outcome") != pipeline.OutcomeSkipped || o.Field("Guard") != policy.GuardProtected {
			t.Errorf("protected machine: outcome %q guard %q\n%s", o.Field("Outcome"), o.Field("Guard"), o.Text)
		}
		if total, _ := st.Sim.IsolateCalls(prot.ID); total != 0 {
			t.Errorf("a protected machine got %d isolate calls", total)
		}
		o = st.mustMail(t, outcomeID(freeReq.RequestID))
		if o.Field("Outcome") != pipeline.OutcomeSucceeded || o.Field("Rule") != "manual" {
			t.Errorf("free machine: outcome %q rule %q\n%s", o.Field("Outcome"), o.Field("Rule"), o.Text)
		}
		if total, acc := st.Sim.IsolateCalls(free.ID); total != 1 || acc != 1 || !st.Sim.Isolated(free.ID) {
			t.Fatalf("free machine: %d isolate calls (%d accepted), isolated=%v", total, acc, st.Sim.Isolated(free.ID))
		}
		acts := st.actionsOf(free.ID, mde.ActionTypeIsolate)
		if len(acts) != 1 || !strings.Contains(acts[0].RequestorComment, "manual isolation by e2e-analyst: contain for forensics") {
			t.Errorf("isolate action comment: %+v", acts)
		}

		// Already isolated: skipped, no second call.
		againReq = post(t, free.ComputerDNSName, `{"comment":"again","requestor":"e2e-analyst","idempotencyKey":"e2e-2"}`)
		if againReq.RequestID == freeReq.RequestID {
			t.Fatal("a new idempotencyKey gave the same request id")
		}
		st.waitIdle(ctx, t)
		if o := st.mustMail(t, outcomeID(againReq.RequestID)); o.Field("Outcome") != pipeline.OutcomeSkipped || o.Field("Guard") != policy.GuardAlreadyIsolated {
			t.Errorf("isolated machine: outcome %q guard %q", o.Field("Outcome"), o.Field("Guard"))
		}
		if total, _ := st.Sim.IsolateCalls(free.ID); total != 1 {
			t.Errorf("an isolated machine got a second isolate call")
		}
	})

	t.Run("release", func(t *testing.T) {
		r := st.do(ctx, t, "POST", release(free.ID), st.FunctionKey, "", `{"comment":"cleaned up","requestor":"e2e-analyst"}`)
		if r.Status != 200 {
			t.Fatalf("release: %d %s", r.Status, r.Body)
		}
		var rel struct {
			MachineID string           `json:"machineId"`
			Outcome   pipeline.Outcome `json:"outcome"`
		}
		r.JSON(t, &rel)
		if rel.MachineID != free.ID || rel.Outcome.Kind != pipeline.OutcomeAccepted || rel.Outcome.ActionID == "" {
			t.Fatalf("release answer: %s", r.Body)
		}
		un := st.actionsOf(free.ID, mde.ActionTypeUnisolate)
		if len(un) != 1 || un[0].ID != rel.Outcome.ActionID || !strings.Contains(un[0].RequestorComment, "manual release by e2e-analyst: cleaned up") {
			t.Fatalf("unisolate actions in the simulator: %+v", un)
		}
		for deadline := time.Now().Add(30 * time.Second); st.Sim.Isolated(free.ID); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the machine is still isolated 30 s after the release")
			}
		}
		st.waitIdle(ctx, t)
		mails := st.mailsWithPrefix(t, "n-release-")
		if len(mails) != 1 || !strings.Contains(mails[0].Text, "released from isolation on request of e2e-analyst") || mails[0].Field("Name") != free.ComputerDNSName {
			t.Errorf("release notifications: %+v", mails)
		}
		// Released: a later request is judged afresh and isolates again.
		afterRelease = post(t, free.ID, `{"comment":"again after release","requestor":"e2e-analyst","idempotencyKey":"e2e-3"}`)
		st.waitIdle(ctx, t)
		if o := st.mustMail(t, outcomeID(afterRelease.RequestID)); o.Field("Outcome") != pipeline.OutcomeSucceeded {
			t.Errorf("isolation after the release: outcome %q (%s)", o.Field("Outcome"), o.Field("Reason"))
		}
		if total, acc := st.Sim.IsolateCalls(free.ID); total != 2 || acc != 2 {
			t.Errorf("isolate calls after the release: %d (%d accepted), want 2", total, acc)
		}
	})
	if n := st.deadLettered(); n != 0 {
		t.Errorf("%d dead-lettered messages", n)
	}

	// The audit names the requestor and the manual origin of each step.
	ps := st.snapshot(ctx, t)
	checks := []struct {
		requestID, kind, guard string
	}{
		{protReq.RequestID, pipeline.OutcomeSkipped, policy.GuardProtected},
		{freeReq.RequestID, pipeline.OutcomeAccepted, ""},
		{freeReq.RequestID, pipeline.OutcomeSucceeded, ""},
		{againReq.RequestID, pipeline.OutcomeSkipped, policy.GuardAlreadyIsolated},
		{afterRelease.RequestID, pipeline.OutcomeSucceeded, ""},
	}
	for _, c := range checks {
		e, ok := ps.auditOf(c.requestID)[c.kind]
		if !ok {
			t.Errorf("no audit entry %s for %s (%v)", c.kind, c.requestID, ps.auditOf(c.requestID))
			continue
		}
		if !e.Manual || !strings.HasPrefix(e.Requestor, "e2e-analyst") || e.RuleID != "manual" || e.Outcome.Guard != c.guard || e.Action != pipeline.ActionIsolate {
			t.Errorf("audit %s/%s: %+v", c.requestID, c.kind, e)
		}
	}
	releases := 0
	for _, e := range ps.Audit {
		if e.Action == "release" {
			releases++
			if e.MachineID != free.ID || !e.Manual || e.Requestor != "e2e-analyst" || e.Outcome.Kind != pipeline.OutcomeAccepted || e.Outcome.ActionID == "" {
				t.Errorf("release audit: %+v", e)
			}
		}
	}
	if releases != 1 {
		t.Errorf("%d release audit entries, want 1", releases)
	}
}

// `policy test` on the public MDE sample alert (Low, Execution) names the
// rule that fires and what would happen, for the built-in policy and for a
// policy that isolates on it, with and without the machine.
func TestPolicyTestCommandOnPublicAlert(t *testing.T) {
	alert := publicData(t, "msdocs_mde_get-alerts_example2_response.json")
	const machineID = "111e6dd8c833c8a052ea231ec1b19adaf497b625" // the sample alert's machineId
	machineFile := func(tags ...string) string {
		m := mde.Machine{ID: machineID, ComputerDNSName: "temp123.middleeast.corp.microsoft.com", OSPlatform: "Windows10", MachineTags: tags}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "machine.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"built-in policy", nil, []string{"alert da637472900382838869_1364969609",
			"Low-reputation arbitrary code executed by signed executable", "rule:", "notify-others",
			"not needed (the decision does not isolate)", "summary: 1 alert(s) evaluated, 0 skipped"}},
		{"isolating policy, no machine", []string{"--policy", "testdata/policies/execution.yaml"}, []string{
			"policy e2e-execution-1", "execution-isolate (Isolate on code execution)", "isolate(Full)",
			"machine unknown: guards that need the machine are not evaluated"}},
		{"isolating policy, protected machine", []string{"--policy", "testdata/policies/execution.yaml", "--machine", machineFile("protected")}, []string{
			"execution-isolate", "protected", "skipped by protected"}},
		{"isolating policy, free machine", []string{"--policy", "testdata/policies/execution.yaml", "--machine", machineFile()}, []string{
			"execution-isolate", "pass: isolate (Full) would be called on " + machineID}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"policy", "test", "--alert", alert}, c.args...)
			if err := run(context.Background(), args, func(string) string { return "" }, &out, &errb); err != nil {
				t.Fatalf("policy test: %v\n%s%s", err, out.String(), errb.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
