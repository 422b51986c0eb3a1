// Package manualrelease is the ManualRelease function (HTTP POST
// /api/machines/{machine}/release, authLevel function): it releases a machine
// from isolation, records it in the audit, frees the machine's isolation lock
// so later alerts are judged afresh, and notifies.
package manualrelease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	manualisolate "github.com/mdeflow/mdeflow/functions/ManualIsolate"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "ManualRelease"

// Defender is what ManualRelease calls.
type Defender interface {
	manualisolate.Machines
	isolatemachine.ActionLister
	UnisolateMachine(ctx context.Context, id, comment string) (*mde.MachineAction, error)
}

// Function is ManualRelease.
type Function struct {
	Defender Defender
	Store    store.Backend
	Queue    queue.Sender
	DryRun   bool
	// Policy, when set, is consulted for its dryRun: a dry-run policy
	// promises that nothing in Defender changes.
	Policy        *policy.Policy
	PolicyVersion string
	Channels      []string
	Now           func() time.Time
	Logger        *slog.Logger
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	req, err := inv.HTTP("req")
	if err != nil {
		return wire.Result{}, fmt.Errorf("decoding http trigger: %w", err)
	}
	var b manualisolate.Body
	if req.HasBody {
		if err := json.Unmarshal(req.Body, &b); err != nil {
			return reply(http.StatusBadRequest, map[string]string{"error": "body is not JSON: " + err.Error()}), nil
		}
	}
	if strings.TrimSpace(b.Comment) == "" || strings.TrimSpace(b.Requestor) == "" || len(b.Comment) > 1000 || len(b.Requestor) > 200 {
		return reply(http.StatusBadRequest, map[string]string{"error": "comment (at most 1000 characters) and requestor (at most 200) are required"}), nil
	}
	m, status, msg := manualisolate.Resolve(ctx, f.Defender, req.Params["machine"])
	if m == nil {
		return reply(status, map[string]string{"error": msg}), nil
	}
	now := f.Now().UTC()
	requestID := fmt.Sprintf("release-%s-%d", m.ID, now.Unix())
	// The release guards: an isolation still pending, a release already in
	// progress or done, an ambiguous name, dry run (deployment or policy).
	active, err := isolatemachine.ActiveIsolation(ctx, f.Defender, m.ID)
	if err != nil {
		return reply(http.StatusBadGateway, map[string]string{"error": "Defender did not answer; retry later"}), nil
	}
	matches, err := isolatemachine.NameMatches(ctx, f.Defender, m)
	if err != nil {
		return reply(http.StatusBadGateway, map[string]string{"error": "Defender did not answer; retry later"}), nil
	}
	pol := f.Policy
	if pol == nil {
		pol = policy.Default()
	}
	out, proceed := policy.CheckRelease(pol, policy.GuardInput{
		Request: pipeline.IsolationRequest{RequestID: requestID, MachineID: m.ID, Manual: true, Requestor: b.Requestor},
		Machine: m, NameMatches: matches, ActiveIsolation: active, GlobalDryRun: f.DryRun, Now: now,
	})
	if proceed {
		act, err := f.Defender.UnisolateMachine(ctx, m.ID, "mdeflow manual release by "+b.Requestor+": "+b.Comment)
		switch {
		case errors.Is(err, mde.ErrActiveRequestAlreadyExists):
			out = pipeline.Outcome{Kind: pipeline.OutcomeAccepted, Reason: "a release is already in progress", At: now}
		case err != nil && fn.IsPermanent(err):
			return reply(http.StatusUnprocessableEntity, map[string]string{"error": "Defender refused the release: " + err.Error()}), nil
		case err != nil:
			return reply(http.StatusBadGateway, map[string]string{"error": "Defender did not answer; retry later"}), nil
		default:
			out = pipeline.Outcome{Kind: pipeline.OutcomeAccepted, ActionID: act.ID, ActionStatus: act.Status, Action: act, At: now}
		}
		// Later alerts for this machine are judged afresh.
		if err := (isolatemachine.States{Store: f.Store}).ForceReleaseLock(ctx, m.ID); err != nil {
			return wire.Result{}, fmt.Errorf("freeing isolation lock of %s: %w", m.ID, err)
		}
	}
	s := isolatemachine.States{Store: f.Store}
	if err := s.Audit(ctx, isolatemachine.AuditEntry{At: now, RequestID: requestID, MachineID: m.ID, Action: "release",
		PolicyVersion: f.PolicyVersion, RuleID: "manual", Outcome: out, Manual: true, Requestor: b.Requestor}); err != nil {
		return wire.Result{}, err
	}
	n := pipeline.Notification{ID: "n-" + requestID, Kind: pipeline.NotifyIsolation, Channels: f.Channels,
		Machine: pipeline.MachineInfoOf(m), Outcome: &out, CreatedAt: now,
		Decision: &pipeline.Decision{MachineID: m.ID, PolicyVersion: f.PolicyVersion, RuleID: "manual-release",
			Reason: "release requested by " + b.Requestor + ": " + b.Comment, DecidedAt: now},
		Text: releaseText(out, b.Requestor)}
	body, _ := json.Marshal(n)
	if err := f.Queue.Send(ctx, queue.Notifications, queue.Message{MessageID: n.ID, CorrelationID: requestID, Subject: n.Kind,
		ContentType: "application/json", Body: body}); err != nil {
		f.Logger.Error("enqueueing release notification failed", fn.KeyReason, err.Error())
	}
	f.Logger.Info("machine release requested", fn.KeyMachineID, m.ID, fn.KeyOutcome, out.Kind, fn.KeyGuard, out.Guard)
	code := http.StatusOK
	if out.Kind == pipeline.OutcomeSkipped {
		code = http.StatusConflict // a release guard refused
	}
	return reply(code, map[string]any{"machineId": m.ID, "outcome": out}), nil
}

func releaseText(out pipeline.Outcome, requestor string) string {
	switch out.Kind {
	case pipeline.OutcomeAccepted:
		return "The machine is being released from isolation on request of " + requestor + "."
	case pipeline.OutcomeDryRun:
		return "Dry run: the machine would have been released on request of " + requestor + "."
	default:
		return "The release requested by " + requestor + " was not performed: " + out.Reason
	}
}

func reply(status int, v any) wire.Result { return wire.JSONHTTPResponse("res", status, v) }
