package sim

import (
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// actionRec is a machine action. Its status is a function of the clock
// (computed lazily on every read): Pending for one ActionStep, InProgress for
// the next, then its fate (Succeeded, or Failed with Faults.FailActions). A
// TimeoutActions action stays Pending until ActionTimeout, then ends TimeOut.
// A cancel freezes it as Cancelled.
type actionRec struct {
	a           mde.MachineAction // static fields; Status/LastUpdate are computed
	created     time.Time
	step        time.Duration
	timeout     time.Duration
	fate        string
	cancelledAt *time.Time
}

// statusAt returns the status at now and when it was entered.
func (r *actionRec) statusAt(now time.Time) (string, time.Time) {
	if r.cancelledAt != nil && !now.Before(*r.cancelledAt) {
		return mde.ActionCancelled, *r.cancelledAt
	}
	if r.fate == mde.ActionTimeOut {
		end := r.created.Add(r.timeout)
		if now.Before(end) {
			return mde.ActionPending, r.created
		}
		return mde.ActionTimeOut, end
	}
	switch {
	case now.Before(r.created.Add(r.step)):
		return mde.ActionPending, r.created
	case now.Before(r.created.Add(2 * r.step)):
		return mde.ActionInProgress, r.created.Add(r.step)
	}
	return r.fate, r.created.Add(2 * r.step)
}

// view is the entity as of now.
func (r *actionRec) view(now time.Time) mde.MachineAction {
	a := r.a
	st, at := r.statusAt(now)
	a.Status = st
	at = at.UTC()
	a.LastUpdateDateTimeUtc = &at
	if st == mde.ActionFailed {
		a.ErrorHResult = -2147467259 // 0x80004005 E_FAIL
	}
	if st != mde.ActionCancelled {
		a.CancellationRequestor, a.CancellationComment, a.CancellationDateTimeUtc = nil, nil, nil
	}
	return a
}

// actionEntity is the MachineAction as the API returns it, with the fields
// mde.MachineAction does not model.
type actionEntity struct {
	mde.MachineAction
	Commands         []any `json:"commands"`
	RelatedFileInfo  any   `json:"relatedFileInfo"`
	TroubleshootInfo any   `json:"troubleshootInfo"`
}

// entity is the action as of now.
func (r *actionRec) entity(now time.Time) actionEntity {
	return actionEntity{MachineAction: r.view(now), Commands: []any{}}
}

// isolatedLocked: the latest succeeded Isolate/Unisolate decides.
func (s *Server) isolatedLocked(machineKey string, now time.Time) bool {
	var last time.Time
	isolated := false
	for _, r := range s.actions {
		if strings.ToLower(r.a.MachineID) != machineKey {
			continue
		}
		if r.a.Type != mde.ActionTypeIsolate && r.a.Type != mde.ActionTypeUnisolate {
			continue
		}
		st, at := r.statusAt(now)
		if st != mde.ActionSucceeded || at.Before(last) {
			continue
		}
		last = at
		isolated = r.a.Type == mde.ActionTypeIsolate
	}
	return isolated
}

// activeActionLocked finds a non-final action of the type on the machine.
func (s *Server) activeActionLocked(machineKey, typ string, now time.Time) *actionRec {
	for _, r := range s.actions {
		if strings.ToLower(r.a.MachineID) != machineKey || r.a.Type != typ {
			continue
		}
		if st, _ := r.statusAt(now); !mde.IsFinalActionStatus(st) {
			return r
		}
	}
	return nil
}

// osSupports encodes which platforms can run which response action
// (defender-api.md §4.1): Full isolation needs Windows 10 1703+ (build 15063),
// Windows 11, Windows Server 2012 R2+, Linux or macOS; Selective isolation,
// restricting app execution and AV scans need Windows 10 1709+ (build 16299)
// or Windows 11 (AV scans also run on servers, Linux and macOS).
func osSupports(m *mde.Machine, actionType, scope string) bool {
	p := strings.ToLower(m.OSPlatform)
	build := int64(-1)
	if m.OSBuild != nil {
		build = *m.OSBuild
	}
	win10 := func(min int64) bool { return p == "windows10" && (build < 0 || build >= min) }
	win11 := p == "windows11"
	server := strings.HasPrefix(p, "windowsserver") && p != "windowsserver2008r2" && p != "windowsserver2012"
	unixish := p == "linux" || p == "macos" || p == "ubuntu" || p == "redhatenterpriselinux" || p == "debian"
	switch actionType {
	case mde.ActionTypeIsolate, mde.ActionTypeUnisolate:
		if scope == mde.IsolationSelective {
			return win11 || win10(16299)
		}
		return win11 || win10(15063) || server || unixish
	case mde.ActionTypeRestrictCodeExecution, mde.ActionTypeUnrestrictCodeExecution:
		return win11 || win10(16299)
	case mde.ActionTypeRunAntiVirusScan:
		return win11 || win10(16299) || server || unixish
	case mde.ActionTypeCollectInvestigationPackage:
		return win11 || win10(15063) || server || unixish
	}
	return false
}
