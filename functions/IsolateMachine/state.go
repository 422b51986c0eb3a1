package isolatemachine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Tables.
const (
	RequestTable = "requests"  // one row per isolation request: its state
	LockTable    = "isolation" // one row per machine: which request isolates it
	AuditTable   = "audit"     // append-only: every outcome, by machine
)

// Request states.
const (
	StateReceived        = "received"
	StateApprovalPending = "approvalPending"
	StateAccepted        = "accepted" // machine action created, being followed
	StateDone            = "done"     // Outcome is final
)

// RequestState is the row of the requests table. It makes every step
// resumable: a redelivered message continues from the recorded state.
type RequestState struct {
	Request  pipeline.IsolationRequest `json:"request"`
	State    string                    `json:"state"`
	Outcome  *pipeline.Outcome         `json:"outcome,omitempty"`
	Steps    []Step                    `json:"steps,omitempty"`
	Machine  *pipeline.MachineInfo     `json:"machine,omitempty"`
	Approval *pipeline.Approval        `json:"approval,omitempty"`
	Updated  time.Time                 `json:"updated"`
}

// Step is the outcome of one non-isolation action of the decision.
type Step struct {
	Action  string           `json:"action"`
	Outcome pipeline.Outcome `json:"outcome"`
}

// Lock is the per-machine isolation lock: the request that owns it.
type Lock struct {
	RequestID string    `json:"requestId"`
	AlertID   string    `json:"alertId,omitempty"`
	At        time.Time `json:"at"`
}

// AuditEntry is one line of the action audit.
type AuditEntry struct {
	At            time.Time        `json:"at"`
	RequestID     string           `json:"requestId"`
	AlertID       string           `json:"alertId,omitempty"`
	MachineID     string           `json:"machineId"`
	Action        string           `json:"action"`
	PolicyVersion string           `json:"policyVersion"`
	RuleID        string           `json:"ruleId"`
	Outcome       pipeline.Outcome `json:"outcome"`
	Manual        bool             `json:"manual,omitempty"`
	Requestor     string           `json:"requestor,omitempty"`
}

// States reads and writes request states.
type States struct{ Store store.Backend }

// Load returns the state of a request; ok is false when there is none.
func (s States) Load(ctx context.Context, requestID string) (st RequestState, etag string, ok bool, err error) {
	k := store.EscapeKey(requestID)
	etag, err = fn.GetJSON(ctx, s.Store, RequestTable, k, k, &st)
	if errors.Is(err, store.ErrNotFound) {
		return st, "", false, nil
	}
	if err != nil {
		return st, "", false, fmt.Errorf("reading request %s: %w", requestID, err)
	}
	return st, etag, true, nil
}

// Save writes a request state (conditional when etag is set; create when
// etag is empty and create is true).
func (s States) Save(ctx context.Context, st *RequestState, etag string, create bool) (string, error) {
	k := store.EscapeKey(st.Request.RequestID)
	if create {
		return fn.InsertJSON(ctx, s.Store, RequestTable, k, k, st)
	}
	if etag == "" {
		return "", fn.PutJSON(ctx, s.Store, RequestTable, k, k, st)
	}
	return fn.UpdateJSON(ctx, s.Store, RequestTable, k, k, etag, st)
}

// Audit appends an audit entry (keyed so a replay writes the same row).
func (s States) Audit(ctx context.Context, e AuditEntry) error {
	rk := store.EscapeKey(e.RequestID + "|" + e.Action + "|" + e.Outcome.Kind)
	return fn.PutJSON(ctx, s.Store, AuditTable, store.EscapeKey(e.MachineID), rk, e)
}

// ReleaseLock frees a machine's isolation lock if the request owns it.
func (s States) ReleaseLock(ctx context.Context, machineID, requestID string) error {
	k := store.EscapeKey(machineID)
	var l Lock
	etag, err := fn.GetJSON(ctx, s.Store, LockTable, k, k, &l)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.RequestID != requestID {
		return nil
	}
	err = s.Store.Delete(ctx, LockTable, k, k, etag)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// Finish records a final outcome: state, audit, and the outcome notification
// (deterministic id, so a replay is dropped as a duplicate).
func (s States) Finish(ctx context.Context, q queue.Sender, st *RequestState, etag string, out pipeline.Outcome) error {
	st.State, st.Outcome, st.Updated = StateDone, &out, out.At
	if _, err := s.Save(ctx, st, etag, false); err != nil {
		return fmt.Errorf("recording outcome of %s: %w", st.Request.RequestID, err)
	}
	r := st.Request
	if err := s.Audit(ctx, AuditEntry{At: out.At, RequestID: r.RequestID, AlertID: r.AlertID, MachineID: r.MachineID,
		Action: pipeline.ActionIsolate, PolicyVersion: r.Decision.PolicyVersion, RuleID: r.Decision.RuleID,
		Outcome: out, Manual: r.Manual, Requestor: r.Requestor}); err != nil {
		return fmt.Errorf("auditing %s: %w", r.RequestID, err)
	}
	return NotifyOutcome(ctx, q, st)
}

// NotifyOutcome sends the outcome notification of a finished request.
func NotifyOutcome(ctx context.Context, q queue.Sender, st *RequestState) error {
	if st.Outcome == nil {
		return nil
	}
	r := st.Request
	d := r.Decision
	n := pipeline.Notification{
		ID: "n-iso-" + r.RequestID, Kind: pipeline.NotifyIsolation, Channels: d.Channels,
		Alert: r.Alert, Machine: st.Machine, Decision: &d, Outcome: st.Outcome, CreatedAt: st.Outcome.At,
	}
	if n.Machine == nil {
		n.Machine = &pipeline.MachineInfo{ID: r.MachineID, ComputerDNSName: r.ComputerDNSName}
	}
	if len(st.Steps) > 0 {
		n.Text = stepsText(st.Steps)
	}
	return send(ctx, q, queue.Notifications, n.ID, correlation(r), n.Kind, n, time.Time{})
}

func stepsText(steps []Step) string {
	s := "Other actions:"
	for _, st := range steps {
		s += fmt.Sprintf("\n- %s: %s", st.Action, st.Outcome.Kind)
		if st.Outcome.Reason != "" {
			s += " (" + st.Outcome.Reason + ")"
		}
	}
	return s
}

func correlation(r pipeline.IsolationRequest) string {
	if r.AlertID != "" {
		return r.AlertID
	}
	return r.RequestID
}

func send(ctx context.Context, q queue.Sender, name, id, corr, subject string, v any, at time.Time) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return q.Send(ctx, name, queue.Message{MessageID: id, CorrelationID: corr, Subject: subject,
		ContentType: "application/json", Body: body, ScheduledEnqueueTime: at})
}

// ScheduleFollow sends an ActionFollow to be delivered at `at`.
func ScheduleFollow(ctx context.Context, q queue.Sender, f pipeline.ActionFollow, at time.Time) error {
	id := fmt.Sprintf("follow-%s-%s-%d", f.Kind, f.RequestID, f.Attempt)
	return send(ctx, q, queue.Actions, id, correlation(f.Request), f.Kind, f, at)
}
