// Package isolatemachine is the IsolateMachine function (Service Bus, queue
// "isolations"). It runs the machine actions of a decision, isolation first,
// behind the safety rails:
//
//  1. the pure guards of the policy (protected device, ambiguous host name,
//     already isolated or pending, breaker open, dry run), each a "skipped"
//     or "dryRun" outcome with its reason, never an error;
//  2. approval, when the rule asks for it: signed, expiring links are sent
//     and the request waits;
//  3. a per-machine lock (insert-if-absent), so several alerts for one
//     machine, even on several instances at once, lead to one isolate call;
//  4. the isolation cap (circuit breaker);
//  5. the isolate call; ActiveRequestAlreadyExists counts as done.
//
// The created machine action is followed by FollowAction through scheduled
// messages, which notifies the final outcome.
package isolatemachine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "IsolateMachine"

// Defender is what IsolateMachine calls.
type Defender interface {
	GetMachine(ctx context.Context, id string) (*mde.Machine, error)
	FindMachineByName(ctx context.Context, name string) (*mde.Machine, error)
	ListMachineActions(ctx context.Context, opts *mde.ListMachineActionsOptions) ([]mde.MachineAction, error)
	IsolateMachine(ctx context.Context, id, comment, isolationType string) (*mde.MachineAction, error)
	RestrictCodeExecution(ctx context.Context, id, comment string) (*mde.MachineAction, error)
	RunAntiVirusScan(ctx context.Context, id, comment, scanType string) (*mde.MachineAction, error)
	CollectInvestigationPackage(ctx context.Context, id, comment string) (*mde.MachineAction, error)
	AddMachineTag(ctx context.Context, id, tag string) (*mde.Machine, error)
	UpdateAlert(ctx context.Context, id string, u mde.AlertUpdate) (*mde.Alert, error)
}

// Breaker is the isolation cap.
type Breaker interface {
	State(ctx context.Context) (policy.BreakerState, error)
	Acquire(ctx context.Context, requestID string, now time.Time) (policy.BreakerResult, error)
}

// Approvals signs approval links.
type Approvals interface {
	Links(baseURL, requestID string, now time.Time) (approveURL, denyURL string, expiresAt time.Time, err error)
}

// Function is IsolateMachine.
type Function struct {
	Defender      Defender
	Policy        *policy.Policy
	Breaker       Breaker
	Approvals     Approvals // nil when no secret is configured
	PublicBaseURL string
	OnExpiry      string // "deny" or "isolate"
	GlobalDryRun  bool
	Store         store.Backend
	Queue         queue.Sender
	FollowEvery   time.Duration
	FollowTimeout time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// Handle processes one isolations-queue message.
func (f *Function) Handle(ctx context.Context, _ *wire.Invocation, msg wire.ServiceBusMessage) error {
	var req pipeline.IsolationRequest
	if err := json.Unmarshal(msg.Body, &req); err != nil {
		return fn.Permanentf("decoding isolation request: %w", err)
	}
	if err := validate(req); err != nil {
		return fn.Permanent(err)
	}
	return f.Process(ctx, req)
}

func validate(req pipeline.IsolationRequest) error {
	// Request ids say where a request comes from; a message must not claim
	// to be a manual request (no approval needed) or borrow another id.
	switch {
	case req.Manual && !strings.HasPrefix(req.RequestID, "manual-"):
		return fmt.Errorf("request %q claims to be manual", req.RequestID)
	case !req.Manual && req.RequestID != "iso-"+req.AlertID:
		return fmt.Errorf("request id %q does not match alert %q", req.RequestID, req.AlertID)
	}
	if _, iso := req.Decision.Has(pipeline.ActionIsolate); iso {
		return req.Validate()
	}
	// No isolation: the isolation type may be empty.
	req.IsolationType = mde.IsolationFull
	return req.Validate()
}

// Process runs one request, resuming from its recorded state.
func (f *Function) Process(ctx context.Context, req pipeline.IsolationRequest) error {
	s := States{Store: f.Store}
	log := f.Logger.With(fn.KeyRequestID, req.RequestID, fn.KeyMachineID, req.MachineID, fn.KeyAlertID, req.AlertID)
	st, etag, ok, err := s.Load(ctx, req.RequestID)
	if err != nil {
		return err
	}
	if !ok {
		st = RequestState{Request: req, State: StateReceived, Updated: f.Now().UTC()}
		etag, err = s.Save(ctx, &st, "", true)
		if errors.Is(err, store.ErrExists) {
			if st, etag, _, err = s.Load(ctx, req.RequestID); err != nil {
				return err
			}
		} else if err != nil {
			return fmt.Errorf("recording request %s: %w", req.RequestID, err)
		}
	}
	// Approval is read from the stored request only: the Approval function
	// records it after checking the signed link (and FollowAction on an
	// onExpiry: isolate), so a message cannot approve itself.
	switch st.State {
	case StateDone:
		log.Info("request already finished; re-sending its outcome")
		return NotifyOutcome(ctx, f.Queue, &st)
	case StateAccepted:
		log.Info("request already accepted; re-scheduling the follow-up")
		return f.follow(ctx, &st)
	case StateApprovalPending:
		if !st.Request.Approved {
			log.Info("request waits for approval; re-sending the approval notification")
			return f.notifyApproval(ctx, &st)
		}
	}
	now := f.Now().UTC()

	machine, err := f.Defender.GetMachine(ctx, req.MachineID)
	if errors.Is(err, mde.ErrNotFound) {
		return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: "unknownMachine",
			Reason: fmt.Sprintf("machine %s is not known to Defender", req.MachineID), At: now})
	}
	if err != nil {
		return fmt.Errorf("fetching machine %s: %w", req.MachineID, err)
	}
	st.Machine = pipeline.MachineInfoOf(machine)

	iso, wantIsolate := st.Request.Decision.Has(pipeline.ActionIsolate)
	if !wantIsolate {
		// No isolation to guard, but the restriction is as disruptive:
		// a protected device (or no valid policy to tell) never gets it.
		allowed := f.Policy != nil
		if allowed {
			if reason, prot := f.Policy.IsProtected(machine); prot {
				log.Info("machine is protected; no code execution restriction", fn.KeyReason, reason)
				allowed = false
			}
		}
		st.Steps = f.otherActions(ctx, &st, machine, allowed)
		return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeSucceeded,
			Reason: "no isolation in the decision; other actions ran", At: now})
	}

	active, err := ActiveIsolation(ctx, f.Defender, req.MachineID)
	if err != nil {
		return err
	}
	if own, err := f.ownIsolation(ctx, &st, active); err != nil {
		return err
	} else if own != nil {
		// An earlier delivery made the isolate call and died before
		// recording it: resume with that action, which the guards would
		// otherwise take for someone else's isolation.
		log.Info("resuming the isolation an earlier delivery started", fn.KeyActionID, own.ID, fn.KeyOutcome, own.Status)
		return f.accepted(ctx, s, &st, etag, machine, own, now)
	}
	bs, err := f.Breaker.State(ctx)
	if err != nil {
		return fmt.Errorf("reading the isolation breaker: %w", err)
	}
	matches, err := NameMatches(ctx, f.Defender, machine)
	if err != nil {
		return err
	}
	out, proceed := policy.CheckIsolation(f.Policy, policy.GuardInput{
		Request: st.Request, Machine: machine, NameMatches: matches, ActiveIsolation: active,
		BreakerOpen: bs.Open(), GlobalDryRun: f.GlobalDryRun || st.Request.Decision.DryRun || iso.DryRun, Now: now,
	})
	if !proceed && out.Kind == pipeline.OutcomePendingApproval {
		return f.requestApproval(ctx, s, &st, etag, now)
	}
	if !proceed {
		log.Info("isolation not performed", fn.KeyOutcome, out.Kind, fn.KeyGuard, out.Guard, fn.KeyReason, out.Reason)
		if out.Kind != pipeline.OutcomeDryRun {
			st.Steps = f.otherActions(ctx, &st, machine, false)
		}
		return s.Finish(ctx, f.Queue, &st, etag, out)
	}

	if iso.RequireApproval && !st.Request.Approved && !st.Request.Manual {
		// The guards ask for approval themselves; this is a second lock.
		return f.requestApproval(ctx, s, &st, etag, now)
	}

	// Per-machine lock: one isolate call per machine, whatever the number
	// of alerts and instances.
	won, holder, err := s.Lock(ctx, req.MachineID, req.RequestID)
	if err != nil {
		return err
	}
	if !won {
		if won, err = s.takeOverReleased(ctx, req.MachineID, req.RequestID, active); err != nil {
			return err
		}
		if won {
			log.Info("the machine was released after the isolation lock was taken; isolating again", "previous_holder", holder)
		}
	}
	if !won {
		return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: "alreadyIsolated",
			Reason: fmt.Sprintf("isolation already requested by %s", holder), At: now})
	}

	br, err := f.Breaker.Acquire(ctx, req.RequestID, now)
	if err != nil {
		return fmt.Errorf("acquiring the isolation cap: %w", err)
	}
	if !br.Allowed {
		if err := s.ReleaseLock(ctx, req.MachineID, req.RequestID); err != nil {
			return err
		}
		if br.Tripped {
			if err := f.notifyBreaker(ctx, br, now); err != nil {
				return err
			}
		}
		return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: "cap",
			Reason: fmt.Sprintf("isolation cap reached (%d in the window); the breaker is open until reset", br.Count), At: now})
	}
	if br.Tripped {
		if err := f.notifyBreaker(ctx, br, now); err != nil {
			return err
		}
	}

	// The lock is re-entrant per request, so another delivery of this
	// request (a copy on another instance, or a redelivery while this one
	// was slow) may have passed it too and isolated the machine since the
	// history above was read. Defender refuses a second isolate only while
	// the first is pending; once that one has succeeded it would accept
	// ours. Look again right before the call and follow that isolation.
	if latest, err := ActiveIsolation(ctx, f.Defender, req.MachineID); err != nil {
		return err
	} else if own, err := f.ownIsolation(ctx, &st, latest); err != nil {
		return err
	} else if own != nil {
		log.Info("another delivery of this request isolated the machine meanwhile; following its action",
			fn.KeyActionID, own.ID, fn.KeyOutcome, own.Status)
		return f.accepted(ctx, s, &st, etag, machine, own, now)
	}
	action, err := f.Defender.IsolateMachine(ctx, req.MachineID, st.Request.Comment, st.Request.IsolationType)
	if errors.Is(err, mde.ErrActiveRequestAlreadyExists) {
		log.Info("an isolation is already pending in Defender; following it")
		action, err = f.pendingIsolation(ctx, req.MachineID)
	}
	if err != nil {
		if fn.IsPermanent(err) {
			if rerr := s.ReleaseLock(ctx, req.MachineID, req.RequestID); rerr != nil {
				return rerr
			}
			return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeFailed,
				Reason: "Defender refused the isolation: " + err.Error(), At: now})
		}
		return fmt.Errorf("isolating machine %s: %w", req.MachineID, err)
	}
	log.Info("isolation accepted", fn.KeyActionID, action.ID, fn.KeyOutcome, action.Status)
	return f.accepted(ctx, s, &st, etag, machine, action, now)
}

// accepted records the isolation action Defender accepted for the request,
// runs the decision's other actions, audits, and schedules the follow-up.
func (f *Function) accepted(ctx context.Context, s States, st *RequestState, etag string, machine *mde.Machine, action *mde.MachineAction, now time.Time) error {
	req := st.Request
	st.Steps = f.otherActions(ctx, st, machine, true)
	st.State, st.Updated = StateAccepted, now
	st.Outcome = &pipeline.Outcome{Kind: pipeline.OutcomeAccepted, ActionID: action.ID, ActionStatus: action.Status, Action: action, At: now}
	if _, err := s.Save(ctx, st, etag, false); err != nil {
		// The action exists in Defender; a redelivery finds it as this
		// request's own (ownIsolation) and resumes.
		return fmt.Errorf("recording accepted isolation %s: %w", action.ID, err)
	}
	if err := s.auditIsolation(ctx, req, *st.Outcome); err != nil {
		return err
	}
	return f.follow(ctx, st)
}

// ownIsolation returns the machine's latest isolation when an earlier
// delivery of this request created it: it carries the request's comment
// (which names the alert) and the request holds the machine's lock. Nil
// otherwise.
func (f *Function) ownIsolation(ctx context.Context, st *RequestState, latest *mde.MachineAction) (*mde.MachineAction, error) {
	r := st.Request
	if latest == nil || !strings.EqualFold(latest.Type, mde.ActionTypeIsolate) || latest.RequestorComment != r.Comment || r.Comment == "" {
		return nil, nil
	}
	lock, err := store.NewClaims(f.Store).Get(ctx, LockKind, r.MachineID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading isolation lock of %s: %w", r.MachineID, err)
	}
	if lock.Owner != r.RequestID {
		return nil, nil
	}
	return latest, nil
}

func (f *Function) follow(ctx context.Context, st *RequestState) error {
	if st.Outcome == nil || st.Outcome.ActionID == "" {
		return fmt.Errorf("request %s is accepted but has no action id", st.Request.RequestID)
	}
	at := st.Outcome.At
	return ScheduleFollow(ctx, f.Queue, pipeline.ActionFollow{
		Kind: pipeline.FollowAction, ActionID: st.Outcome.ActionID, MachineID: st.Request.MachineID,
		RequestID: st.Request.RequestID, Attempt: 1, Deadline: at.Add(f.FollowTimeout), Request: st.Request,
	}, at.Add(f.FollowEvery))
}

// ActionLister lists a machine's actions.
type ActionLister interface {
	ListMachineActions(ctx context.Context, opts *mde.ListMachineActionsOptions) ([]mde.MachineAction, error)
}

// NameFinder finds the one machine with a host name.
type NameFinder interface {
	FindMachineByName(ctx context.Context, name string) (*mde.Machine, error)
}

// ActiveIsolation returns the latest Isolate or Unisolate action of the
// machine, any status (the machine entity has no isolation state; the
// guards judge from the action history).
func ActiveIsolation(ctx context.Context, d ActionLister, machineID string) (*mde.MachineAction, error) {
	acts, err := d.ListMachineActions(ctx, &mde.ListMachineActionsOptions{MachineID: machineID, Top: 50})
	if err != nil {
		return nil, fmt.Errorf("listing machine actions of %s: %w", machineID, err)
	}
	var latest *mde.MachineAction
	for i := range acts {
		a := &acts[i]
		if a.Type != mde.ActionTypeIsolate && a.Type != mde.ActionTypeUnisolate {
			continue
		}
		if latest == nil || created(a).After(created(latest)) {
			latest = a
		}
	}
	return latest, nil
}

// NameMatches counts the Defender devices that carry the machine's host
// name. Defender keeps a second record for a re-imaged device; acting by a
// name that is not unique is refused by the guards.
func NameMatches(ctx context.Context, d NameFinder, m *mde.Machine) (int, error) {
	if m.ComputerDNSName == "" {
		return 1, nil // nothing to confuse it with
	}
	if mde.ValidateMachineName(m.ComputerDNSName) != nil {
		// The device's owner chose the name; Defender's search cannot
		// take it (non-ASCII, spaces, an empty label...). As when the
		// search does not see it, the id lookup did: failing here made
		// such a device impossible to isolate or release.
		return 1, nil
	}
	found, err := d.FindMachineByName(ctx, m.ComputerDNSName)
	var le *mde.MachineLookupError
	switch {
	case err == nil && found.ID == m.ID:
		return 1, nil
	case err == nil:
		return 2, nil // the name belongs to another record as well
	case errors.As(err, &le):
		if le.Count == 0 {
			return 1, nil // the search did not see it; the id lookup did
		}
		return le.Count, nil
	default:
		return 0, fmt.Errorf("counting devices named %s: %w", m.ComputerDNSName, err)
	}
}

func created(a *mde.MachineAction) time.Time {
	if a.CreationDateTimeUtc == nil {
		return time.Time{}
	}
	return *a.CreationDateTimeUtc
}

// LatestIsolation returns the newest Isolate action that is pending, in
// progress or succeeded and not followed by a succeeded or pending Unisolate.
func LatestIsolation(acts []mde.MachineAction) *mde.MachineAction {
	var latest *mde.MachineAction
	var latestAt time.Time
	for i := range acts {
		a := &acts[i]
		if a.Type != mde.ActionTypeIsolate && a.Type != mde.ActionTypeUnisolate {
			continue
		}
		if a.Status == mde.ActionFailed || a.Status == mde.ActionCancelled || a.Status == mde.ActionTimeOut {
			continue
		}
		var at time.Time
		if a.CreationDateTimeUtc != nil {
			at = *a.CreationDateTimeUtc
		}
		if latest == nil || at.After(latestAt) {
			latest, latestAt = a, at
		}
	}
	if latest == nil || latest.Type != mde.ActionTypeIsolate {
		return nil
	}
	return latest
}

func (f *Function) pendingIsolation(ctx context.Context, machineID string) (*mde.MachineAction, error) {
	acts, err := f.Defender.ListMachineActions(ctx, &mde.ListMachineActionsOptions{MachineID: machineID, Type: mde.ActionTypeIsolate, Top: 20})
	if err != nil {
		return nil, fmt.Errorf("finding the pending isolation of %s: %w", machineID, err)
	}
	if a := LatestIsolation(acts); a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("Defender says an isolation of %s is in progress but lists none", machineID)
}

func (f *Function) requestApproval(ctx context.Context, s States, st *RequestState, etag string, now time.Time) error {
	if f.Approvals == nil || f.PublicBaseURL == "" {
		return s.Finish(ctx, f.Queue, st, etag, pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: "approvalUnavailable",
			Reason: "the rule requires approval but MDEFLOW_APPROVAL_SECRET or MDEFLOW_PUBLIC_BASE_URL is not set", At: now})
	}
	approve, deny, exp, err := f.Approvals.Links(f.PublicBaseURL, st.Request.RequestID, now)
	if err != nil {
		return fn.Permanentf("signing approval links for %s: %w", st.Request.RequestID, err)
	}
	st.State, st.Updated = StateApprovalPending, now
	st.Approval = &pipeline.Approval{RequestID: st.Request.RequestID, ApproveURL: approve, DenyURL: deny, ExpiresAt: exp, OnExpiry: f.OnExpiry}
	st.Outcome = &pipeline.Outcome{Kind: pipeline.OutcomePendingApproval, Reason: "waiting for an approver until " + exp.Format(time.RFC3339), At: now}
	if _, err := s.Save(ctx, st, etag, false); err != nil {
		return fmt.Errorf("recording approval request %s: %w", st.Request.RequestID, err)
	}
	if err := s.auditIsolation(ctx, st.Request, *st.Outcome); err != nil {
		return err
	}
	if err := ScheduleFollow(ctx, f.Queue, pipeline.ActionFollow{Kind: pipeline.FollowApprovalExpiry, MachineID: st.Request.MachineID,
		RequestID: st.Request.RequestID, Attempt: 1, Deadline: exp, Request: st.Request}, exp); err != nil {
		return err
	}
	return f.notifyApproval(ctx, st)
}

func (f *Function) notifyApproval(ctx context.Context, st *RequestState) error {
	r := st.Request
	d := r.Decision
	n := pipeline.Notification{ID: "n-approval-" + r.RequestID, Kind: pipeline.NotifyApproval, Channels: d.Channels,
		Alert: r.Alert, Machine: st.Machine, Decision: &d, Outcome: st.Outcome, Approval: st.Approval}
	if ap := f.Policy.Approval; ap != nil && len(ap.Approvers) > 0 {
		// Only the policy's approvers receive the signed links, by e-mail.
		n.Recipients = append([]string(nil), ap.Approvers...)
	}
	if st.Outcome != nil {
		n.CreatedAt = st.Outcome.At
	}
	return send(ctx, f.Queue, queue.Notifications, n.ID, correlation(r), n.Kind, n, time.Time{})
}

func (f *Function) notifyBreaker(ctx context.Context, br policy.BreakerResult, now time.Time) error {
	n := pipeline.Notification{ID: fmt.Sprintf("n-breaker-%d", now.Unix()), Kind: pipeline.NotifyBreaker,
		Text:      fmt.Sprintf("The isolation cap tripped after %d isolations in the window. mdeflow isolates nothing more until someone resets the breaker: POST /api/breaker with the admin key and the body {\"action\":\"reset\",\"by\":\"<your name>\"}.", br.Count),
		CreatedAt: now}
	return send(ctx, f.Queue, queue.Notifications, n.ID, n.ID, n.Kind, n, time.Time{})
}

// otherActions runs the decision's non-isolation actions. isolationAllowed
// is false when a guard refused the isolation: then the disruptive
// restriction is skipped too, while tags, scans, packages and the alert
// update still run.
func (f *Function) otherActions(ctx context.Context, st *RequestState, m *mde.Machine, isolationAllowed bool) []Step {
	r := st.Request
	var steps []Step
	now := f.Now().UTC()
	dryRun := r.Decision.DryRun || f.GlobalDryRun
	for _, a := range r.Decision.Actions {
		if a.Type == pipeline.ActionIsolate || a.Type == pipeline.ActionNotify {
			continue
		}
		if a.Type == pipeline.ActionUpdateAlert && pipeline.IsHuntAlertID(r.AlertID) {
			continue // hunt-raised alerts do not exist in Defender
		}
		if dryRun || a.DryRun {
			steps = append(steps, Step{a.Type, pipeline.Outcome{Kind: pipeline.OutcomeDryRun, Reason: "would run " + a.Type, At: now}})
			continue
		}
		var err error
		var act *mde.MachineAction
		switch a.Type {
		case pipeline.ActionRestrict:
			if !isolationAllowed {
				steps = append(steps, Step{a.Type, pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Reason: "refused with the isolation", At: now}})
				continue
			}
			act, err = f.Defender.RestrictCodeExecution(ctx, r.MachineID, r.Comment)
		case pipeline.ActionAVScan:
			scan := a.ScanType
			if scan == "" {
				scan = "Quick"
			}
			act, err = f.Defender.RunAntiVirusScan(ctx, r.MachineID, r.Comment, scan)
		case pipeline.ActionCollectPackage:
			act, err = f.Defender.CollectInvestigationPackage(ctx, r.MachineID, r.Comment)
		case pipeline.ActionTag:
			_, err = f.Defender.AddMachineTag(ctx, r.MachineID, a.Tag)
		case pipeline.ActionUpdateAlert:
			if r.AlertID == "" {
				continue
			}
			_, err = f.Defender.UpdateAlert(ctx, r.AlertID, mde.AlertUpdate{Status: a.Status, AssignedTo: a.AssignedTo,
				Classification: a.Classification, Determination: a.Determination, Comment: a.Comment})
		default:
			continue
		}
		out := pipeline.Outcome{Kind: pipeline.OutcomeSucceeded, At: now}
		switch {
		case errors.Is(err, mde.ErrActiveRequestAlreadyExists):
			out.Reason = "already in progress in Defender"
		case err != nil:
			out = pipeline.Outcome{Kind: pipeline.OutcomeFailed, Reason: err.Error(), At: now}
		case act != nil:
			out.Kind, out.ActionID, out.ActionStatus = pipeline.OutcomeAccepted, act.ID, act.Status
		}
		f.Logger.Info("action ran", fn.KeyRequestID, r.RequestID, "action", a.Type, fn.KeyOutcome, out.Kind)
		steps = append(steps, Step{Action: a.Type, Outcome: out})
	}
	return steps
}
