package policy

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Guard names, recorded in pipeline.Outcome.Guard.
const (
	GuardInvalidRequest   = "invalidRequest"
	GuardMachineUnknown   = "machineUnknown"
	GuardProtected        = "protected"
	GuardAmbiguousHost    = "ambiguousHost"
	GuardAlreadyIsolated  = "alreadyIsolated"
	GuardIsolationPending = "isolationPending"
	GuardReleasePending   = "releasePending"
	GuardNotIsolated      = "notIsolated"
	GuardCap              = "cap"
	GuardDryRun           = "dryRun"
	GuardApproval         = "approval"
)

// GuardInput is the state the guards look at. The caller gathers it just
// before acting; the guards themselves do no I/O.
type GuardInput struct {
	Request pipeline.IsolationRequest
	// Machine is the fresh machine record of Request.MachineID. nil stops
	// the action (machineUnknown): protection cannot be checked without it.
	Machine *mde.Machine
	// NameMatches is how many Defender devices carry the machine's host
	// name (computerDnsName, case-insensitive). It must be exactly 1: MDE
	// keeps duplicate entries for re-imaged devices, and a manual request
	// by name must not guess. The zero value stops the action, so a
	// caller that forgets to look it up fails safe.
	NameMatches int
	// ActiveIsolation is the latest Isolate or Unisolate machine action of
	// the machine (any status), or nil when there is none.
	ActiveIsolation *mde.MachineAction
	// BreakerOpen is the isolation breaker's state (Breaker.State).
	BreakerOpen bool
	// GlobalDryRun is the deployment's dry-run setting.
	GlobalDryRun bool
	// Now stamps the outcome.
	Now time.Time
}

// CheckIsolation runs the guards in front of an isolation, in this order;
// the first that refuses decides:
//
//  1. invalidRequest: the request fails validation (ids, isolation type),
//     or the machine record or the latest action is of another machine;
//     machineUnknown: no machine record.
//  2. protected: the machine carries a protected tag, is in a protected
//     device group, or its name matches a protected pattern.
//  3. ambiguousHost: NameMatches is not exactly 1.
//  4. alreadyIsolated: the latest isolation action succeeded (or the latest
//     release failed); isolationPending: an isolation or a release is
//     still Pending / InProgress.
//  5. cap: the isolation circuit breaker is open.
//  6. dryRun: the deployment, the policy, the rule or the isolate action
//     is a dry run. Outcome kind "dryRun", reason "would isolate ...".
//  7. approval: the isolate action requires approval and the request is
//     neither approved nor manual. Outcome kind "pendingApproval".
//
// Guards 1-5 give outcome kind "skipped". When every guard passes, ok is
// true and the outcome is zero: the caller acquires the breaker
// (Breaker.Acquire) and calls the API.
func CheckIsolation(p *Policy, in GuardInput) (out pipeline.Outcome, ok bool) {
	r := in.Request
	skip := func(guard, format string, args ...any) (pipeline.Outcome, bool) {
		return pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: guard, Reason: fmt.Sprintf(format, args...), At: in.Now}, false
	}
	// 1. invalid request / unknown machine
	if p == nil || !p.compiled {
		return skip(GuardInvalidRequest, "no valid policy is loaded; refusing to isolate")
	}
	if err := r.Validate(); err != nil {
		return skip(GuardInvalidRequest, "invalid isolation request: %s", oneLine(err.Error()))
	}
	if err := ValidateRequestID(r.RequestID); err != nil {
		return skip(GuardInvalidRequest, "invalid isolation request: %v", err)
	}
	if o, bad := checkMachine(in, skip); bad {
		return o, false
	}
	m := in.Machine
	name := hostName(in)

	// 2. protected
	if reason, prot := p.Protected.check(m, m.ComputerDNSName, r.ComputerDNSName); prot {
		return skip(GuardProtected, "machine %s (%s) is protected by the policy: %s", m.ID, quoteName(name), reason)
	}

	// 3. ambiguous host name
	if o, bad := checkName(in, name, "isolate", skip); bad {
		return o, false
	}

	// 4. already isolated / pending
	if act := in.ActiveIsolation; act != nil {
		status := act.Status
		switch {
		case strings.EqualFold(act.Type, mde.ActionTypeIsolate) && strings.EqualFold(status, mde.ActionSucceeded):
			return skip(GuardAlreadyIsolated, "machine %s is already isolated (action %s succeeded)", m.ID, actionRef(act))
		case strings.EqualFold(act.Type, mde.ActionTypeIsolate) && !mde.IsFinalActionStatus(status):
			return skip(GuardIsolationPending, "an isolation of machine %s is already %s (action %s)", m.ID, statusWord(status), actionRef(act))
		case strings.EqualFold(act.Type, mde.ActionTypeUnisolate) && !mde.IsFinalActionStatus(status):
			return skip(GuardIsolationPending, "a release of machine %s is %s (action %s); isolate again after it completes", m.ID, statusWord(status), actionRef(act))
		case strings.EqualFold(act.Type, mde.ActionTypeUnisolate) && strings.EqualFold(status, mde.ActionFailed):
			return skip(GuardAlreadyIsolated, "the last release of machine %s failed (action %s): it is presumably still isolated", m.ID, actionRef(act))
		}
	}

	// 5. breaker
	if in.BreakerOpen {
		limit := "the cap"
		if p.Cap != nil {
			limit = fmt.Sprintf("%d isolations per %s", p.Cap.MaxIsolations, p.Cap.Window)
		}
		return skip(GuardCap, "the isolation circuit breaker is open (%s reached); machine %s was not isolated; reset the breaker to resume", limit, m.ID)
	}

	iso, _ := r.Decision.Has(pipeline.ActionIsolate)
	// 6. dry run
	if src := dryRunSource(p, in, iso); src != "" {
		return pipeline.Outcome{Kind: pipeline.OutcomeDryRun, Guard: GuardDryRun, At: in.Now,
			Reason: fmt.Sprintf("would isolate machine %s (%s) with %s isolation (dry run: %s)", m.ID, quoteName(name), r.IsolationType, src)}, false
	}

	// 7. approval
	if iso.RequireApproval && !r.Approved && !r.Manual {
		return pipeline.Outcome{Kind: pipeline.OutcomePendingApproval, Guard: GuardApproval, At: in.Now,
			Reason: fmt.Sprintf("isolating machine %s (%s) requires approval (rule %q); waiting for an approver", m.ID, quoteName(name), r.Decision.RuleID)}, false
	}
	return pipeline.Outcome{}, true
}

// CheckRelease runs the guards in front of a release (unisolate), in this
// order:
//
//  1. invalidRequest / machineUnknown, as for CheckIsolation (the
//     isolation type is not required).
//  2. ambiguousHost: NameMatches is not exactly 1.
//  3. isolationPending: an isolation is still in progress (release after
//     it completes); releasePending: a release is already in progress;
//     notIsolated: the latest release already succeeded.
//  4. dryRun: the deployment, the policy or the request's decision is a
//     dry run ("would release ...").
//
// Protection and the cap do not block a release: releasing is the safe
// direction. When no isolation action is known (nil) the release proceeds:
// the machine may have been isolated from the portal.
func CheckRelease(p *Policy, in GuardInput) (pipeline.Outcome, bool) {
	r := in.Request
	skip := func(guard, format string, args ...any) (pipeline.Outcome, bool) {
		return pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: guard, Reason: fmt.Sprintf(format, args...), At: in.Now}, false
	}
	if p == nil || !p.compiled {
		return skip(GuardInvalidRequest, "no valid policy is loaded; refusing to act")
	}
	if err := ValidateRequestID(r.RequestID); err != nil {
		return skip(GuardInvalidRequest, "invalid release request: %v", err)
	}
	if err := mde.ValidateMachineID(r.MachineID); err != nil {
		return skip(GuardInvalidRequest, "invalid release request: %v", err)
	}
	if r.AlertID != "" {
		if err := mde.ValidateAlertID(r.AlertID); err != nil {
			return skip(GuardInvalidRequest, "invalid release request: %v", err)
		}
	}
	if o, bad := checkMachine(in, skip); bad {
		return o, false
	}
	m := in.Machine
	name := hostName(in)
	if o, bad := checkName(in, name, "release", skip); bad {
		return o, false
	}
	if act := in.ActiveIsolation; act != nil {
		switch {
		case strings.EqualFold(act.Type, mde.ActionTypeIsolate) && !mde.IsFinalActionStatus(act.Status):
			return skip(GuardIsolationPending, "an isolation of machine %s is %s (action %s); release it after it completes", m.ID, statusWord(act.Status), actionRef(act))
		case strings.EqualFold(act.Type, mde.ActionTypeUnisolate) && !mde.IsFinalActionStatus(act.Status):
			return skip(GuardReleasePending, "a release of machine %s is already %s (action %s)", m.ID, statusWord(act.Status), actionRef(act))
		case strings.EqualFold(act.Type, mde.ActionTypeUnisolate) && strings.EqualFold(act.Status, mde.ActionSucceeded):
			return skip(GuardNotIsolated, "machine %s is not isolated (release %s succeeded)", m.ID, actionRef(act))
		}
	}
	if src := dryRunSource(p, in, pipeline.Action{}); src != "" {
		return pipeline.Outcome{Kind: pipeline.OutcomeDryRun, Guard: GuardDryRun, At: in.Now,
			Reason: fmt.Sprintf("would release machine %s (%s) from isolation (dry run: %s)", m.ID, quoteName(name), src)}, false
	}
	return pipeline.Outcome{}, true
}

type skipFunc func(guard, format string, args ...any) (pipeline.Outcome, bool)

func checkMachine(in GuardInput, skip skipFunc) (pipeline.Outcome, bool) {
	m, r := in.Machine, in.Request
	if m == nil {
		o, _ := skip(GuardMachineUnknown, "machine %s could not be read from Defender; protection cannot be checked", r.MachineID)
		return o, true
	}
	if !strings.EqualFold(m.ID, r.MachineID) {
		o, _ := skip(GuardInvalidRequest, "the machine record (%s) is not the requested machine (%s)", clip(m.ID, 64), r.MachineID)
		return o, true
	}
	if a := in.ActiveIsolation; a != nil && a.MachineID != "" && !strings.EqualFold(a.MachineID, r.MachineID) {
		o, _ := skip(GuardInvalidRequest, "the latest isolation action given (%s) is of another machine (%s)", actionRef(a), clip(a.MachineID, 64))
		return o, true
	}
	return pipeline.Outcome{}, false
}

func checkName(in GuardInput, name, verb string, skip skipFunc) (pipeline.Outcome, bool) {
	switch n := in.NameMatches; {
	case n == 1:
		return pipeline.Outcome{}, false
	case n <= 0:
		o, _ := skip(GuardAmbiguousHost, "no Defender device is named %s; refusing to %s by a host name that cannot be verified", quoteName(name), verb)
		return o, true
	default:
		o, _ := skip(GuardAmbiguousHost, "%d Defender devices are named %s; refusing to guess which one to %s", n, quoteName(name), verb)
		return o, true
	}
}

// dryRunSource says why an action is a dry run, or "" when it is not.
func dryRunSource(p *Policy, in GuardInput, iso pipeline.Action) string {
	var src []string
	if in.GlobalDryRun {
		src = append(src, "deployment setting")
	}
	if p.DryRun {
		src = append(src, fmt.Sprintf("policy %s", p.Version))
	}
	if in.Request.Decision.DryRun {
		src = append(src, fmt.Sprintf("decision of rule %q", in.Request.Decision.RuleID))
	} else if iso.DryRun {
		src = append(src, fmt.Sprintf("isolate action of rule %q", in.Request.Decision.RuleID))
	}
	return strings.Join(src, ", ")
}

func hostName(in GuardInput) string {
	if in.Machine != nil && in.Machine.ComputerDNSName != "" {
		return in.Machine.ComputerDNSName
	}
	return in.Request.ComputerDNSName
}

// quoteName quotes a host name for a reason string (Go quoting escapes any
// control character).
func quoteName(n string) string {
	if n == "" {
		return "no name"
	}
	return fmt.Sprintf("%q", clip(n, 128))
}

func actionRef(a *mde.MachineAction) string {
	if a.ID == "" {
		return "without id"
	}
	return clip(a.ID, 64)
}

func statusWord(s string) string {
	if s == "" {
		return "in an unknown state"
	}
	return clip(s, 32)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// requestIDRe: request ids are deterministic ("iso-<alertId>",
// "rel-<machineId>-<n>", ...) and travel in approval URLs and store keys.
var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,159}$`)

// ValidateRequestID checks an isolation request id: 1 to 160 letters,
// digits or . _ : - (starting with a letter or digit). Safe in a URL path,
// a query string and a store key.
func ValidateRequestID(id string) error {
	if !requestIDRe.MatchString(id) {
		return &mde.InvalidIDError{Kind: "request", Value: id}
	}
	return nil
}

// RequestFor builds the isolation request for a decision that isolates (ok
// is false otherwise). The request id is "iso-<alertId>", so a redelivered
// alert yields the same request. It is pure.
func RequestFor(d pipeline.Decision, a *mde.Alert, m *mde.Machine, now time.Time) (pipeline.IsolationRequest, bool) {
	iso, ok := d.Has(pipeline.ActionIsolate)
	if !ok || a == nil {
		return pipeline.IsolationRequest{}, false
	}
	r := pipeline.IsolationRequest{
		RequestID:       "iso-" + a.ID,
		AlertID:         a.ID,
		MachineID:       a.MachineID,
		ComputerDNSName: a.ComputerDNSName,
		IsolationType:   iso.IsolationType,
		Decision:        d,
		Alert:           pipeline.AlertInfoOf(a),
		RequestedAt:     now,
	}
	if m != nil && (r.MachineID == "" || strings.EqualFold(m.ID, r.MachineID)) {
		r.MachineID = m.ID
		if m.ComputerDNSName != "" {
			r.ComputerDNSName = m.ComputerDNSName
		}
	}
	r.Comment = fmt.Sprintf("mdeflow: isolated for alert %s (policy %s, rule %s)", a.ID, d.PolicyVersion, d.RuleID)
	return r, true
}
