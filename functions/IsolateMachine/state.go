package isolatemachine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Tables and claim kinds.
const (
	RequestTable = "requests"  // one row per isolation request: its state
	LockKind     = "isolation" // store claim per machine: which request isolates it
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

// AuditEntry is one line of the action audit.
type AuditEntry struct {
	At            time.Time
	RequestID     string
	AlertID       string
	MachineID     string
	Action        string
	PolicyVersion string
	RuleID        string
	Outcome       pipeline.Outcome
	Manual        bool
	Requestor     string
}

// auditDetail is what the store's audit entry carries besides its columns.
type auditDetail struct {
	PolicyVersion string           `json:"policyVersion"`
	RuleID        string           `json:"ruleId"`
	Outcome       pipeline.Outcome `json:"outcome"`
	Manual        bool             `json:"manual,omitempty"`
}

// States reads and writes request states.
type States struct{ Store store.Backend }

// Load returns the state of a request; ok is false when there is none.
func (s States) Load(ctx context.Context, requestID string) (st RequestState, etag string, ok bool, err error) {
	k := store.EscapeKey(requestID)
	etag, err = store.GetJSON(ctx, s.Store, RequestTable, k, k, &st)
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
		return store.PutJSON(ctx, s.Store, RequestTable, k, k, st, "")
	}
	if etag == "" {
		return store.UpsertJSON(ctx, s.Store, RequestTable, k, k, st)
	}
	return store.PutJSON(ctx, s.Store, RequestTable, k, k, st, etag)
}

// Audit records an outcome in the store's audit (keyed by request, action
// and outcome kind, so a replay records it once).
func (s States) Audit(ctx context.Context, e AuditEntry) error {
	detail, err := json.Marshal(auditDetail{PolicyVersion: e.PolicyVersion, RuleID: e.RuleID, Outcome: e.Outcome, Manual: e.Manual})
	if err != nil {
		return err
	}
	actor := e.Requestor
	if actor == "" {
		actor = Name
	}
	_, err = store.NewAudit(s.Store).Record(ctx, store.AuditEntry{
		Key: e.RequestID + "|" + e.Action + "|" + e.Outcome.Kind, At: e.At, AlertID: e.AlertID, MachineID: e.MachineID,
		RequestID: e.RequestID, Action: e.Action, Outcome: e.Outcome.Kind, Reason: e.Outcome.Reason, Actor: actor,
		DryRun: e.Outcome.Kind == pipeline.OutcomeDryRun, Detail: detail,
	})
	return err
}

// auditIsolation records an outcome of the request's isolation.
func (s States) auditIsolation(ctx context.Context, r pipeline.IsolationRequest, out pipeline.Outcome) error {
	return s.Audit(ctx, AuditEntry{At: out.At, RequestID: r.RequestID, AlertID: r.AlertID, MachineID: r.MachineID,
		Action: pipeline.ActionIsolate, PolicyVersion: r.Decision.PolicyVersion, RuleID: r.Decision.RuleID,
		Outcome: out, Manual: r.Manual, Requestor: r.Requestor})
}

// Lock claims a machine's isolation for a request: true when the request
// holds it (won now, or on an earlier delivery), else the holder's id.
func (s States) Lock(ctx context.Context, machineID, requestID string) (bool, string, error) {
	won, rec, err := store.NewClaims(s.Store).Claim(ctx, LockKind, machineID, requestID, nil)
	if err != nil {
		return false, "", fmt.Errorf("taking isolation lock of %s: %w", machineID, err)
	}
	return won, rec.Owner, nil
}

// lockClockSkew is how much later than the lock a release must be to free it.
const lockClockSkew = time.Minute

// takeOverReleased takes a machine's isolation lock over for requestID when
// latest (the machine's newest Isolate or Unisolate action) is a release
// that succeeded and was created after the lock was taken (by more than
// lockClockSkew). A release from the Defender portal does not free the
// lock (ManualRelease does): without this, every later alert for the
// machine would be skipped as "already isolated" while it is on the
// network. A lock taken after the release (a concurrent isolation of the
// released machine) is left alone.
func (s States) takeOverReleased(ctx context.Context, machineID, requestID string, latest *mde.MachineAction) (bool, error) {
	if latest == nil || latest.CreationDateTimeUtc == nil || !strings.EqualFold(latest.Type, mde.ActionTypeUnisolate) ||
		!strings.EqualFold(latest.Status, mde.ActionSucceeded) {
		return false, nil
	}
	c := store.NewClaims(s.Store)
	cur, err := c.Get(ctx, LockKind, machineID)
	if errors.Is(err, store.ErrNotFound) {
		won, _, err := s.Lock(ctx, machineID, requestID) // freed meanwhile
		return won, err
	}
	if err != nil {
		return false, fmt.Errorf("reading isolation lock of %s: %w", machineID, err)
	}
	// The release time is Defender's clock, the claim time ours: allow
	// for skew, in the direction that keeps the lock.
	if !cur.ClaimedAt.Add(lockClockSkew).Before(*latest.CreationDateTimeUtc) {
		return false, nil
	}
	// Release checks the owner and deletes with the lock's ETag: if another
	// request took the lock over first, this one stays locked out.
	if err := c.Release(ctx, LockKind, machineID, cur.Owner); errors.Is(err, store.ErrConflict) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("freeing stale isolation lock of %s: %w", machineID, err)
	}
	won, _, err := s.Lock(ctx, machineID, requestID)
	return won, err
}

// ReleaseLock frees a machine's isolation lock if the request owns it.
func (s States) ReleaseLock(ctx context.Context, machineID, requestID string) error {
	err := store.NewClaims(s.Store).Release(ctx, LockKind, machineID, requestID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// ForceReleaseLock frees a machine's isolation lock whoever holds it (a
// manual release).
func (s States) ForceReleaseLock(ctx context.Context, machineID string) error {
	rec, err := store.NewClaims(s.Store).Get(ctx, LockKind, machineID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.ReleaseLock(ctx, machineID, rec.Owner)
}

// Finish records a final outcome: state, audit, and the outcome notification
// (deterministic id, so a replay is dropped as a duplicate).
func (s States) Finish(ctx context.Context, q queue.Sender, st *RequestState, etag string, out pipeline.Outcome) error {
	st.State, st.Outcome, st.Updated = StateDone, &out, out.At
	if _, err := s.Save(ctx, st, etag, false); err != nil {
		return fmt.Errorf("recording outcome of %s: %w", st.Request.RequestID, err)
	}
	if err := s.auditIsolation(ctx, st.Request, out); err != nil {
		return fmt.Errorf("auditing %s: %w", st.Request.RequestID, err)
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
