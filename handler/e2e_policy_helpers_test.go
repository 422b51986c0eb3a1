package main

// Helpers of the policy end-to-end tests (policy_e2e_test.go): a local stack
// per test with its own tenant and policy, HTTP calls to the local host's
// front end, the .eml outbox, and the state the handler leaves in the
// embedded store.

import (
	"context"
	"crypto/sha1" // #nosec G505 -- deterministic test ids, not security
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
)

// peDomain is the DNS suffix of the test machines.
const peDomain = ".e2e.example.com"

// peMachine is a test machine: a 40-hex id derived from the name, so a
// test can name machines instead of carrying ids around.
func peMachine(name, os, group, risk string, tags ...string) mde.Machine {
	sum := sha1.Sum([]byte("e2e-machine/" + name)) // #nosec G401 -- ids only
	seen := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	if tags == nil {
		tags = []string{}
	}
	return mde.Machine{
		ID: hex.EncodeToString(sum[:]), ComputerDNSName: name + peDomain, OSPlatform: os, OSArchitecture: "64-bit",
		HealthStatus: "Active", OnboardingStatus: "Onboarded", FirstSeen: &seen, LastSeen: &seen,
		RbacGroupName: &group, RiskScore: &risk, ExposureLevel: ptrTo("Medium"), DeviceValue: ptrTo("Normal"),
		LastIPAddress: "10.99.0.1", MachineTags: tags,
	}
}

// peAlert is a test alert on m, created at `created`; n makes the id unique.
func peAlert(n int, severity string, m mde.Machine, title string, created time.Time) mde.Alert {
	created = created.UTC().Truncate(time.Millisecond)
	return mde.Alert{
		ID: fmt.Sprintf("da%018d_%d", 638800000000000000+int64(n)*7919, 1000+n), Severity: severity, Status: "New",
		DetectionSource: "WindowsDefenderAtp", Category: "Execution", Title: title,
		Description: "End-to-end test alert " + title, AlertCreationTime: &created, FirstEventTime: &created,
		LastEventTime: &created, LastUpdateTime: &created, MachineID: m.ID, ComputerDNSName: m.ComputerDNSName,
		RbacGroupName: m.RbacGroupName, AadTenantID: sim.DefaultTenantID,
		MitreTechniques: []string{}, Comments: []mde.AlertComment{}, Evidence: []mde.Evidence{},
	}
}

func ptrTo[T any](v T) *T { return &v }

// peStack is a running local system for one test.
type peStack struct {
	*stack
	client *http.Client
}

// peStart starts a stack with the built handler, tn as the simulated tenant
// and the policy file (relative to the handler folder; "" is the built-in
// policy). It is closed when the test ends; a failed test keeps its folder
// (state, outbox, handler log) and logs where it is.
func peStart(ctx context.Context, t *testing.T, tn *sim.Tenant, policyFile string, settings map[string]string) *peStack {
	t.Helper()
	st, err := startStack(ctx, stackOptions{Tenant: tn, Policy: policyFile, Handler: handlerBin, Settings: settings})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			st.keep = true
			t.Logf("kept the run folder %s (handler log %s)", st.Dir, st.LogPath())
		}
		st.Close()
	})
	return &peStack{stack: st, client: &http.Client{Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// peResp is an HTTP answer of the local host.
type peResp struct {
	Status int
	Body   string
	Header http.Header
}

// JSON decodes the body into v.
func (r peResp) JSON(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Body), v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.Status, err, r.Body)
	}
}

// do sends one request to the local host's front end. target is a path
// ("/api/...") or an absolute URL (approval links); key goes into
// x-functions-key when not empty; ctype defaults to application/json when a
// body is sent.
func (s *peStack) do(ctx context.Context, t *testing.T, method, target, key, ctype, body string) peResp {
	t.Helper()
	u := target
	if strings.HasPrefix(target, "/") {
		u = s.Host.URL() + target
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if ctype == "" {
			ctype = "application/json"
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("x-functions-key", key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, target, err)
	}
	return peResp{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
}

// waitIdle waits until every queue is drained (scheduled messages too).
func (s *peStack) waitIdle(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := s.Host.WaitIdle(ctx); err != nil {
		t.Fatalf("waiting for the pipeline: %v (handler log %s)", err, s.LogPath())
	}
}

// enqueued counts the messages a queue has taken in so far (duplicates
// dropped by duplicate detection included, redeliveries not).
func (s *peStack) enqueued(name string) int64 {
	for _, q := range s.Host.Stats().Queues {
		if q.Name == name {
			return int64(q.Active+q.Scheduled+q.InFlight+q.DeadLettered) + q.Completed + q.Duplicates
		}
	}
	return 0
}

// deadLettered counts the dead-lettered messages of every pipeline queue.
func (s *peStack) deadLettered() int {
	n := 0
	for _, q := range []string{queue.Alerts, queue.Isolations, queue.Actions, queue.Notifications} {
		n += len(s.Host.DeadLetters(q))
	}
	return n
}

// peMail is one delivered notification, decoded from its .eml file.
type peMail struct {
	File    string
	Subject string
	Text    string // the text/plain part, quoted-printable decoded
	HTML    string
}

// Field returns the value of a labelled line of the text part ("Outcome",
// "Guard", "Name", ...), or "".
func (m peMail) Field(label string) string {
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `:[ \t]+(.+?)\s*$`)
	if g := re.FindStringSubmatch(m.Text); g != nil {
		return g[1]
	}
	return ""
}

// mailPath is the outbox file of a notification id.
func (s *peStack) mailPath(t *testing.T, id string) string {
	t.Helper()
	ob, err := notify.NewOutbox(notify.OutboxConfig{Dir: s.Settings["MDEFLOW_OUTBOX_DIR"]})
	if err != nil {
		t.Fatal(err)
	}
	return ob.Path(id)
}

// mail reads the notification with this id; ok is false when it was not
// delivered (yet).
func (s *peStack) mail(t *testing.T, id string) (peMail, bool) {
	t.Helper()
	p := s.mailPath(t, id)
	if _, err := os.Stat(p); err != nil {
		return peMail{}, false
	}
	return peReadMail(t, p), true
}

// mustMail is mail for a notification that must have been delivered.
func (s *peStack) mustMail(t *testing.T, id string) peMail {
	t.Helper()
	m, ok := s.mail(t, id)
	if !ok {
		t.Fatalf("notification %s was not delivered to the outbox", id)
	}
	return m
}

// waitMail polls the outbox for a notification (for steps that cannot wait
// for idle queues, e.g. while an approval expiry is scheduled).
func (s *peStack) waitMail(ctx context.Context, t *testing.T, id string, timeout time.Duration) peMail {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m, ok := s.mail(t, id); ok {
			return m
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("notification %s not delivered within %s (queues: %+v)", id, timeout, s.Host.Stats().Queues)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mailsWithPrefix reads every delivered notification whose id starts with
// prefix (the file name is the id for ids made of [A-Za-z0-9_-]).
func (s *peStack) mailsWithPrefix(t *testing.T, prefix string) []peMail {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.Settings["MDEFLOW_OUTBOX_DIR"], prefix+"*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []peMail
	for _, f := range files {
		out = append(out, peReadMail(t, f))
	}
	return out
}

// peReadMail parses an outbox .eml (multipart/alternative, quoted-printable
// parts) into its subject and decoded text and HTML parts.
func peReadMail(t *testing.T, path string) peMail {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatalf("%s is not an e-mail: %v", path, err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("%s: subject: %v", path, err)
	}
	m := peMail{File: filepath.Base(path), Subject: subject}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		t.Fatalf("%s: content type %q: %v", path, msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(p) // quoted-printable is decoded by the reader
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct {
		case "text/plain":
			m.Text = string(b)
		case "text/html":
			m.HTML = string(b)
		}
	}
	if m.Text == "" {
		t.Fatalf("%s has no text part", path)
	}
	return m
}

// peState is what the handler left in the embedded store.
type peState struct {
	Requests map[string]isolatemachine.RequestState // by request id
	Audit    []isolatemachine.AuditEntry
	Breaker  *policy.BreakerState
}

// auditOf returns the audit entries of a request, by outcome kind.
func (ps peState) auditOf(requestID string) map[string]isolatemachine.AuditEntry {
	out := map[string]isolatemachine.AuditEntry{}
	for _, e := range ps.Audit {
		if e.RequestID == requestID {
			out[e.Outcome.Kind] = e
		}
	}
	return out
}

// snapshot stops the host (the handler process holds the store's file
// lock) and reads the requests, the audit and the breaker.
func (s *peStack) snapshot(ctx context.Context, t *testing.T) peState {
	t.Helper()
	if err := s.StopHost(ctx); err != nil {
		t.Fatalf("stopping the host: %v", err)
	}
	db, err := store.OpenBolt(s.Settings["MDEFLOW_STORE_PATH"])
	if err != nil {
		t.Fatalf("opening the store: %v", err)
	}
	defer db.Close()
	ps := peState{Requests: map[string]isolatemachine.RequestState{}}
	reqs, err := db.List(ctx, isolatemachine.RequestTable, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range reqs {
		var rs isolatemachine.RequestState
		if err := json.Unmarshal(e.Data, &rs); err != nil {
			t.Fatal(err)
		}
		ps.Requests[rs.Request.RequestID] = rs
	}
	audit, err := store.NewAudit(db).ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range audit {
		// IsolateMachine's details (policy, rule, full outcome) travel in
		// the store entry's Detail document.
		var d struct {
			PolicyVersion string           `json:"policyVersion"`
			RuleID        string           `json:"ruleId"`
			Outcome       pipeline.Outcome `json:"outcome"`
			Manual        bool             `json:"manual"`
		}
		if len(e.Detail) > 0 {
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				t.Fatalf("audit entry %s: detail: %v", e.ID, err)
			}
		}
		if d.Outcome.Kind != e.Outcome {
			t.Errorf("audit entry %s: outcome %q, detail says %q", e.ID, e.Outcome, d.Outcome.Kind)
		}
		ps.Audit = append(ps.Audit, isolatemachine.AuditEntry{At: e.At, RequestID: e.RequestID, AlertID: e.AlertID,
			MachineID: e.MachineID, Action: e.Action, PolicyVersion: d.PolicyVersion, RuleID: d.RuleID,
			Outcome: d.Outcome, Manual: d.Manual, Requestor: e.Actor})
	}
	var bs policy.BreakerState
	if _, err := store.GetJSON(ctx, db, policy.BreakerTable, "isolation", "state", &bs); err == nil {
		ps.Breaker = &bs
	}
	return ps
}

// isolateCalls sums the simulator's isolate calls over machines.
func (s *peStack) isolateCalls(ms ...mde.Machine) (total, accepted int) {
	for _, m := range ms {
		tot, acc := s.Sim.IsolateCalls(m.ID)
		total += tot
		accepted += acc
	}
	return total, accepted
}

// peActions returns the simulator's machine actions of a type on a machine.
func (s *peStack) actionsOf(machineID, typ string) []mde.MachineAction {
	var out []mde.MachineAction
	for _, a := range s.Sim.Actions() {
		if strings.EqualFold(a.MachineID, machineID) && a.Type == typ {
			out = append(out, a)
		}
	}
	return out
}
