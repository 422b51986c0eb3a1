// Package followaction is the FollowAction function (Service Bus, queue
// "actions"). It follows a machine action to a final state without waiting
// inside an invocation: each check that finds the action still pending
// schedules the next check (ScheduledEnqueueTime). It also applies the
// configured outcome to approval requests that expired.
package followaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "FollowAction"

// Defender is what FollowAction calls.
type Defender interface {
	GetMachineAction(ctx context.Context, id string) (*mde.MachineAction, error)
}

// Function is FollowAction.
type Function struct {
	Defender    Defender
	Store       store.Backend
	Queue       queue.Sender
	FollowEvery time.Duration
	// MaxEvery caps the back-off between checks.
	MaxEvery time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Handle processes one actions-queue message.
func (f *Function) Handle(ctx context.Context, _ *wire.Invocation, msg wire.ServiceBusMessage) error {
	var fl pipeline.ActionFollow
	if err := json.Unmarshal(msg.Body, &fl); err != nil {
		return fn.Permanentf("decoding follow-up: %w", err)
	}
	if fl.RequestID == "" {
		return fn.Permanentf("follow-up has no requestId")
	}
	switch fl.Kind {
	case pipeline.FollowApprovalExpiry:
		return f.expire(ctx, fl)
	case pipeline.FollowAction, "":
		if err := mde.ValidateActionID(fl.ActionID); err != nil {
			return fn.Permanent(err)
		}
		return f.check(ctx, fl)
	default:
		return fn.Permanentf("unknown follow-up kind %q", fl.Kind)
	}
}

func (f *Function) check(ctx context.Context, fl pipeline.ActionFollow) error {
	s := isolatemachine.States{Store: f.Store}
	st, etag, ok, err := s.Load(ctx, fl.RequestID)
	if err != nil {
		return err
	}
	if !ok {
		return fn.Permanentf("follow-up for unknown request %s", fl.RequestID)
	}
	if st.State == isolatemachine.StateDone {
		return isolatemachine.NotifyOutcome(ctx, f.Queue, &st)
	}
	now := f.Now().UTC()
	act, err := f.Defender.GetMachineAction(ctx, fl.ActionID)
	if errors.Is(err, mde.ErrNotFound) {
		return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeFailed, ActionID: fl.ActionID,
			Reason: "the machine action disappeared from Defender", At: now})
	}
	if err != nil {
		return fmt.Errorf("getting machine action %s: %w", fl.ActionID, err)
	}
	log := f.Logger.With(fn.KeyRequestID, fl.RequestID, fn.KeyActionID, act.ID, fn.KeyMachineID, fl.MachineID)
	if mde.IsFinalActionStatus(act.Status) {
		out := pipeline.Outcome{Kind: pipeline.OutcomeSucceeded, ActionID: act.ID, ActionStatus: act.Status, Action: act, At: now}
		if act.Status != mde.ActionSucceeded {
			out.Kind = pipeline.OutcomeFailed
			out.Reason = "the isolation ended " + act.Status
			// Let a later alert try again.
			if err := s.ReleaseLock(ctx, fl.MachineID, fl.RequestID); err != nil {
				return err
			}
		}
		log.Info("machine action final", fn.KeyOutcome, act.Status)
		return s.Finish(ctx, f.Queue, &st, etag, out)
	}
	if !fl.Deadline.IsZero() && now.After(fl.Deadline) {
		log.Warn("gave up following the machine action", fn.KeyOutcome, act.Status)
		return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeFailed, ActionID: act.ID, ActionStatus: act.Status,
			Action: act, Reason: fmt.Sprintf("still %s after the follow timeout", act.Status), At: now})
	}
	next := fl
	next.Attempt++
	return isolatemachine.ScheduleFollow(ctx, f.Queue, next, now.Add(f.backoff(fl.Attempt)))
}

// backoff doubles the interval each attempt up to MaxEvery.
func (f *Function) backoff(attempt int) time.Duration {
	d := f.FollowEvery
	for i := 1; i < attempt && d < f.MaxEvery; i++ {
		d *= 2
	}
	if f.MaxEvery > 0 && d > f.MaxEvery {
		d = f.MaxEvery
	}
	return d
}

func (f *Function) expire(ctx context.Context, fl pipeline.ActionFollow) error {
	s := isolatemachine.States{Store: f.Store}
	st, etag, ok, err := s.Load(ctx, fl.RequestID)
	if err != nil {
		return err
	}
	if !ok || st.State != isolatemachine.StateApprovalPending {
		return nil // decided meanwhile
	}
	if st.Request.Approved {
		// An approver answered before the link expired: IsolateMachine is
		// carrying out the approved request (or will: the approval is sent
		// again in case that send was lost; its message id makes a
		// duplicate harmless). Expiring it now would report "not isolated"
		// for a machine Defender is isolating.
		return Approve(ctx, f.Queue, st.Request)
	}
	now := f.Now().UTC()
	onExpiry := "deny"
	if st.Approval != nil && st.Approval.OnExpiry != "" {
		onExpiry = st.Approval.OnExpiry
	}
	if onExpiry == "isolate" {
		// Recorded first: IsolateMachine trusts only the stored approval.
		st.Request.Approved, st.Request.Requestor = true, "approval expiry (onExpiry: isolate)"
		if _, err := s.Save(ctx, &st, etag, false); err != nil {
			return fmt.Errorf("recording the expiry approval of %s: %w", st.Request.RequestID, err)
		}
		return Approve(ctx, f.Queue, st.Request)
	}
	return s.Finish(ctx, f.Queue, &st, etag, pipeline.Outcome{Kind: pipeline.OutcomeExpired,
		Reason: "no approver answered before the link expired; not isolated", At: now})
}

// Approve sends a request whose approval is already recorded in the store
// back to the isolations queue (IsolateMachine reads the approval from the
// store, never from the message).
func Approve(ctx context.Context, q queue.Sender, r pipeline.IsolationRequest) error {
	r.Approved = true
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return q.Send(ctx, queue.Isolations, queue.Message{MessageID: r.RequestID + "-approved", CorrelationID: r.AlertID,
		Subject: "isolation", ContentType: "application/json", Body: body})
}
