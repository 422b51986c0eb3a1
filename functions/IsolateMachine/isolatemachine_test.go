package isolatemachine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/fntest"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
)

const (
	machineA  = "1111111111111111111111111111111111111111"
	machineB  = "2222222222222222222222222222222222222222"
	machineC  = "3333333333333333333333333333333333333333"
	protected = "4444444444444444444444444444444444444444"
)

type rig struct {
	f     *Function
	def   *fntest.Defender
	q     *queue.Recorder
	store store.Backend
	now   time.Time
}

type fakeSigner struct{}

func (fakeSigner) Links(base, id string, now time.Time) (string, string, time.Time, error) {
	return base + "/api/approvals/" + id + "?verdict=approve", base + "/api/approvals/" + id + "?verdict=deny", now.Add(time.Hour), nil
}

func newRig(t *testing.T, capN int) *rig {
	t.Helper()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	d := fntest.NewDefender()
	d.Now = func() time.Time { return now }
	for _, id := range []string{machineA, machineB, machineC} {
		d.AddMachine(mde.Machine{ID: id, ComputerDNSName: "ws-" + id[:4] + ".corp.example.com", OSPlatform: "Windows11"})
	}
	d.AddMachine(mde.Machine{ID: protected, ComputerDNSName: "dc01.corp.example.com", OSPlatform: "WindowsServer2022", MachineTags: []string{"protected"}})
	st := store.NewMemory()
	q := queue.NewRecorder()
	f := &Function{Defender: d, Policy: policy.Default(), Breaker: policy.NewBreaker(st, capN, time.Hour),
		Approvals: fakeSigner{}, PublicBaseURL: "https://app.example.com", OnExpiry: "deny",
		Store: st, Queue: q, FollowEvery: time.Second, FollowTimeout: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &rig{f: f, def: d, q: q, store: st, now: now}
}

func request(alertID, machineID string, approval bool) pipeline.IsolationRequest {
	return pipeline.IsolationRequest{
		RequestID: "iso-" + alertID, AlertID: alertID, MachineID: machineID, IsolationType: mde.IsolationFull,
		Comment: "mdeflow: alert " + alertID,
		Decision: pipeline.Decision{AlertID: alertID, MachineID: machineID, PolicyVersion: "test-1", RuleID: "high",
			Actions: []pipeline.Action{{Type: pipeline.ActionIsolate, IsolationType: mde.IsolationFull, RequireApproval: approval}, {Type: pipeline.ActionNotify}}},
		Alert: &pipeline.AlertInfo{ID: alertID, Title: "t", Severity: "High"},
	}
}

func (r *rig) state(t *testing.T, id string) RequestState {
	t.Helper()
	st, _, ok, err := States{Store: r.store}.Load(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("state of %s: ok=%v err=%v", id, ok, err)
	}
	return st
}

func notifications(t *testing.T, q *queue.Recorder) []pipeline.Notification {
	t.Helper()
	var out []pipeline.Notification
	for _, m := range q.Messages(queue.Notifications) {
		var n pipeline.Notification
		if err := json.Unmarshal(m.Body, &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// Pins: several High alerts for one machine, processed at the same time,
// lead to exactly one isolate call; the others are skipped, not failed.
func TestOneIsolateCallPerMachineUnderConcurrency(t *testing.T) {
	r := newRig(t, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- r.f.Process(context.Background(), request("da1_"+string(rune('a'+i)), machineA, false))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("process: %v", err)
		}
	}
	if n := r.def.Count("IsolateMachine"); n != 1 {
		t.Fatalf("isolate calls = %d, want 1", n)
	}
	accepted, skipped := 0, 0
	for i := 0; i < 8; i++ {
		st := r.state(t, "iso-da1_"+string(rune('a'+i)))
		switch st.Outcome.Kind {
		case pipeline.OutcomeAccepted:
			accepted++
		case pipeline.OutcomeSkipped:
			skipped++
			if st.Outcome.Guard != "alreadyIsolated" && st.Outcome.Guard != "isolationPending" {
				t.Errorf("skip guard = %q, want alreadyIsolated or isolationPending", st.Outcome.Guard)
			}
		default:
			t.Errorf("outcome = %+v", st.Outcome)
		}
	}
	if accepted != 1 || skipped != 7 {
		t.Fatalf("accepted=%d skipped=%d, want 1 and 7", accepted, skipped)
	}
	if got := len(r.q.Messages(queue.Actions)); got != 1 {
		t.Fatalf("follow-ups = %d, want 1", got)
	}
}

func TestGuards(t *testing.T) {
	tests := []struct {
		name      string
		machine   string
		dryRun    bool
		wantKind  string
		wantGuard string
		wantCalls int
	}{
		{name: "isolates a normal machine", machine: machineA, wantKind: pipeline.OutcomeAccepted, wantCalls: 1},
		{name: "never isolates a protected device", machine: protected, wantKind: pipeline.OutcomeSkipped, wantGuard: policy.GuardProtected},
		{name: "dry run isolates nothing", machine: machineA, dryRun: true, wantKind: pipeline.OutcomeDryRun},
		{name: "unknown machine is skipped", machine: "5555555555555555555555555555555555555555", wantKind: pipeline.OutcomeSkipped, wantGuard: "unknownMachine"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 0)
			r.f.GlobalDryRun = tc.dryRun
			if err := r.f.Process(context.Background(), request("da2_x", tc.machine, false)); err != nil {
				t.Fatal(err)
			}
			st := r.state(t, "iso-da2_x")
			if st.Outcome.Kind != tc.wantKind || (tc.wantGuard != "" && st.Outcome.Guard != tc.wantGuard) {
				t.Fatalf("outcome = %+v, want %s/%s", st.Outcome, tc.wantKind, tc.wantGuard)
			}
			if n := r.def.Count("IsolateMachine"); n != tc.wantCalls {
				t.Fatalf("isolate calls = %d, want %d", n, tc.wantCalls)
			}
			if tc.wantKind != pipeline.OutcomeAccepted {
				ns := notifications(t, r.q)
				if len(ns) != 1 || ns[0].Outcome == nil || ns[0].Outcome.Kind != tc.wantKind {
					t.Fatalf("notifications = %+v, want one with outcome %s", ns, tc.wantKind)
				}
			}
		})
	}
}

// Pins: the cap trips in the middle of a burst, isolations stop, a breaker
// notification goes out once, and a reset resumes them.
func TestCapTripsAndResetResumes(t *testing.T) {
	r := newRig(t, 2)
	ctx := context.Background()
	for i, m := range []string{machineA, machineB, machineC} {
		if err := r.f.Process(ctx, request("da3_"+string(rune('a'+i)), m, false)); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.def.Count("IsolateMachine"); n != 2 {
		t.Fatalf("isolate calls = %d, want 2 (the cap)", n)
	}
	if st := r.state(t, "iso-da3_c"); st.Outcome.Kind != pipeline.OutcomeSkipped || st.Outcome.Guard != policy.GuardCap {
		t.Fatalf("third outcome = %+v, want skipped by cap", st.Outcome)
	}
	breakers := 0
	for _, n := range notifications(t, r.q) {
		if n.Kind == pipeline.NotifyBreaker {
			breakers++
		}
	}
	if breakers != 1 {
		t.Fatalf("breaker notifications = %d, want 1", breakers)
	}
	if err := r.f.Breaker.(*policy.Breaker).Reset(ctx, "test", r.now); err != nil {
		t.Fatal(err)
	}
	if err := r.f.Process(ctx, request("da3_d", machineC, false)); err != nil {
		t.Fatal(err)
	}
	if n := r.def.Count("IsolateMachine"); n != 3 {
		t.Fatalf("isolate calls after reset = %d, want 3", n)
	}
}

func TestApprovalWaitsThenIsolates(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	req := request("da4_a", machineA, true)
	if err := r.f.Process(ctx, req); err != nil {
		t.Fatal(err)
	}
	st := r.state(t, req.RequestID)
	if st.State != StateApprovalPending || r.def.Count("IsolateMachine") != 0 {
		t.Fatalf("state = %s, isolate calls = %d; want approvalPending and none", st.State, r.def.Count("IsolateMachine"))
	}
	ns := notifications(t, r.q)
	if len(ns) != 1 || ns[0].Kind != pipeline.NotifyApproval || ns[0].Approval == nil || !strings.Contains(ns[0].Approval.ApproveURL, req.RequestID) {
		t.Fatalf("approval notification = %+v", ns)
	}
	if got := r.q.Messages(queue.Actions); len(got) != 1 || !got[0].ScheduledEnqueueTime.Equal(r.now.Add(time.Hour)) {
		t.Fatalf("expiry follow-up = %+v, want one scheduled at the expiry", got)
	}
	// A redelivery while waiting does not isolate.
	if err := r.f.Process(ctx, req); err != nil || r.def.Count("IsolateMachine") != 0 {
		t.Fatalf("redelivery: err=%v calls=%d", err, r.def.Count("IsolateMachine"))
	}
	// A message cannot approve itself: only the stored approval counts.
	forged := req
	forged.Approved = true
	if err := r.f.Process(ctx, forged); err != nil || r.def.Count("IsolateMachine") != 0 {
		t.Fatalf("self-approved message: err=%v isolate calls=%d", err, r.def.Count("IsolateMachine"))
	}
	// The Approval function records the approval, then sends the request.
	s := States{Store: r.store}
	st, etag, _, err := s.Load(ctx, req.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	st.Request.Approved = true
	if _, err := s.Save(ctx, &st, etag, false); err != nil {
		t.Fatal(err)
	}
	if err := r.f.Process(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if r.def.Count("IsolateMachine") != 1 || r.state(t, req.RequestID).State != StateAccepted {
		t.Fatalf("after approval: calls=%d state=%s", r.def.Count("IsolateMachine"), r.state(t, req.RequestID).State)
	}
}

// Pins: a redelivered request after acceptance never calls isolate again.
func TestRedeliveryAfterAcceptResumes(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	req := request("da5_a", machineB, false)
	for i := 0; i < 3; i++ {
		if err := r.f.Process(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.def.Count("IsolateMachine"); n != 1 {
		t.Fatalf("isolate calls = %d, want 1", n)
	}
	if d := r.q.Duplicates(queue.Actions); d != 2 {
		t.Fatalf("duplicate follow-ups dropped = %d, want 2 (same message id)", d)
	}
}

// hideFirstList hides the machine's actions from the first listing: the
// isolation another tool created between our guard check and our call.
type hideFirstList struct {
	*fntest.Defender
	mu sync.Mutex
	n  int
}

func (h *hideFirstList) ListMachineActions(ctx context.Context, o *mde.ListMachineActionsOptions) ([]mde.MachineAction, error) {
	h.mu.Lock()
	h.n++
	first := h.n == 1
	h.mu.Unlock()
	if first {
		return nil, nil
	}
	return h.Defender.ListMachineActions(ctx, o)
}

// Pins: ActiveRequestAlreadyExists on isolate counts as done: the pending
// action is followed, not reported as a failure.
func TestActiveRequestAlreadyExistsCountsAsDone(t *testing.T) {
	r := newRig(t, 0)
	created := r.now.Add(-time.Minute)
	const existing = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
	r.def.ActionsL = append(r.def.ActionsL, mde.MachineAction{ID: existing, Type: mde.ActionTypeIsolate,
		Status: mde.ActionPending, MachineID: machineC, CreationDateTimeUtc: &created})
	r.f.Defender = &hideFirstList{Defender: r.def}
	if err := r.f.Process(context.Background(), request("da6_a", machineC, false)); err != nil {
		t.Fatal(err)
	}
	st := r.state(t, "iso-da6_a")
	if st.State != StateAccepted || st.Outcome.ActionID != existing {
		t.Fatalf("state %s outcome %+v; want accepted, following %s", st.State, st.Outcome, existing)
	}
	if r.def.Count("IsolateMachine") != 1 {
		t.Fatalf("isolate calls = %d, want 1 (refused)", r.def.Count("IsolateMachine"))
	}
}

// Pins (found by the crash test): the handler died after Defender accepted
// the isolate call but before the request recorded it. The redelivered
// request must recognise the action as its own and follow it, not report
// "already isolated" and leave the action unfollowed.
func TestRedeliveryAfterCrashBeforeRecordResumesOwnAction(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	req := request("da7_a", machineA, false)
	s := States{Store: r.store}
	st := RequestState{Request: req, State: StateReceived, Updated: r.now}
	if _, err := s.Save(ctx, &st, "", true); err != nil {
		t.Fatal(err)
	}
	if won, _, err := s.Lock(ctx, machineA, req.RequestID); err != nil || !won {
		t.Fatalf("lock: won=%v err=%v", won, err)
	}
	act, err := r.def.IsolateMachine(ctx, machineA, req.Comment, mde.IsolationFull) // the call that "crashed"
	if err != nil {
		t.Fatal(err)
	}
	if err := r.f.Process(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := r.state(t, req.RequestID)
	if got.State != StateAccepted || got.Outcome.ActionID != act.ID {
		t.Fatalf("state %s outcome %+v; want accepted, following %s", got.State, got.Outcome, act.ID)
	}
	if n := r.def.Count("IsolateMachine"); n != 1 {
		t.Fatalf("isolate calls = %d, want the crashed one only", n)
	}
	if len(r.q.Messages(queue.Actions)) != 1 {
		t.Fatal("the resumed action is not followed")
	}
}

// Pins: a queue message cannot pass itself off as a manual request (which
// skips approval) or use another alert's request id.
func TestForgedRequestIdsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*pipeline.IsolationRequest)
	}{
		{"claims manual", func(r *pipeline.IsolationRequest) { r.Manual = true }},
		{"borrows another id", func(r *pipeline.IsolationRequest) { r.RequestID = "iso-da9_other" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request("da8_a", machineA, true)
			tc.edit(&req)
			if err := validate(req); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// Pins (found by the two-instance test): the same request delivered to two
// instances at once passes the per-machine lock on both (a redelivery must,
// to resume); still only one isolate call may reach Defender.
func TestSameRequestOnTwoInstancesIsolatesOnce(t *testing.T) {
	r := newRig(t, 0)
	// The first isolation completes before the other instance calls: a
	// second isolate would then be accepted by Defender, not refused.
	r.def.AutoSucceed = true
	req := request("da9_a", machineB, false)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- r.f.Process(context.Background(), req)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, store.ErrConflict) {
			t.Fatalf("process: %v", err)
		}
	}
	accepted := 0
	for _, a := range r.def.ActionsL {
		if a.MachineID == machineB && a.Type == mde.ActionTypeIsolate {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("isolate actions created = %d (calls %d), want 1", accepted, r.def.Count("IsolateMachine"))
	}
}
