package isolatemachine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/fntest"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// restrictCodeExecution is "disruptive like isolation": on a protected
// device (a domain controller) it must not run, whether or not the rule
// also isolates.
func TestRestrictionNeverHitsAProtectedDevice(t *testing.T) {
	tests := []struct {
		name    string
		actions []pipeline.Action
	}{
		{"restrict with isolate", []pipeline.Action{{Type: pipeline.ActionIsolate, IsolationType: mde.IsolationFull},
			{Type: pipeline.ActionRestrict}, {Type: pipeline.ActionNotify}}},
		{"restrict without isolate", []pipeline.Action{{Type: pipeline.ActionRestrict}, {Type: pipeline.ActionNotify}}},
		{"restrict and scan without isolate", []pipeline.Action{{Type: pipeline.ActionRestrict}, {Type: pipeline.ActionAVScan},
			{Type: pipeline.ActionNotify}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 0)
			req := request("da_dc", protected, false)
			req.Decision.Actions = tc.actions
			if _, iso := req.Decision.Has(pipeline.ActionIsolate); !iso {
				req.IsolationType = ""
			}
			if err := r.f.Process(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if n := r.def.Count("RestrictCodeExecution"); n != 0 {
				t.Fatalf("RestrictCodeExecution called %d time(s) on a protected device", n)
			}
			if n := r.def.Count("IsolateMachine"); n != 0 {
				t.Fatalf("IsolateMachine called %d time(s) on a protected device", n)
			}
			st := r.state(t, "iso-da_dc")
			for _, s := range st.Steps {
				if s.Action == pipeline.ActionRestrict && s.Outcome.Kind != pipeline.OutcomeSkipped {
					t.Fatalf("restrict step = %+v, want skipped", s.Outcome)
				}
			}
		})
	}
}

// A machine released from the Defender portal (not through ManualRelease,
// which frees the lock) must be isolated again by the next alert. The
// per-machine lock of the first isolation must not turn every later alert
// into "alreadyIsolated" for a machine that is on the network.
func TestIsolatedAgainAfterAPortalRelease(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	r.def.Now = time.Now // the lock's claim time is the store's clock
	if err := r.f.Process(ctx, request("da7_a", machineA, false)); err != nil {
		t.Fatal(err)
	}
	first := r.state(t, "iso-da7_a")
	if first.State != StateAccepted {
		t.Fatalf("first request: %s %+v", first.State, first.Outcome)
	}
	r.def.SetActionStatus(first.Outcome.ActionID, mde.ActionSucceeded)

	// An analyst releases the machine in the portal later.
	r.def.Now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	rel, err := r.def.UnisolateMachine(ctx, machineA, "released in the portal")
	if err != nil {
		t.Fatal(err)
	}
	r.def.SetActionStatus(rel.ID, mde.ActionSucceeded)

	r.def.Now = func() time.Time { return time.Now().Add(20 * time.Minute) }
	if err := r.f.Process(ctx, request("da7_b", machineA, false)); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t, "iso-da7_b"); st.State != StateAccepted {
		t.Fatalf("second alert after the release: %s %+v; want accepted (isolated again)", st.State, st.Outcome)
	}
	if n := r.def.Count("IsolateMachine"); n != 2 {
		t.Fatalf("isolate calls = %d, want 2", n)
	}
}

// Pins the other side: a release older than the lock does not free it, so
// concurrent alerts after a release still make one isolate call.
func TestOneIsolateCallAfterAReleaseUnderConcurrency(t *testing.T) {
	r := newRig(t, 0)
	ctx := context.Background()
	r.def.Now = func() time.Time { return time.Now().Add(-time.Minute) }
	rel, err := r.def.UnisolateMachine(ctx, machineA, "released earlier")
	if err != nil {
		t.Fatal(err)
	}
	r.def.SetActionStatus(rel.ID, mde.ActionSucceeded)
	r.def.Now = time.Now
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := r.f.Process(ctx, request("da8_"+string(rune('a'+i)), machineA, false)); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if n := r.def.Count("IsolateMachine"); n != 1 {
		t.Fatalf("isolate calls = %d, want 1", n)
	}
}

// realNameSearch validates the name before searching, as mde.Client does:
// Defender's $filter cannot express every host name.
type realNameSearch struct{ *fntest.Defender }

func (d realNameSearch) FindMachineByName(ctx context.Context, name string) (*mde.Machine, error) {
	if err := mde.ValidateMachineName(name); err != nil {
		return nil, fmt.Errorf("finding machine by name: %w", err)
	}
	return d.Defender.FindMachineByName(ctx, name)
}

// A device's host name is whatever its owner set (a compromised Linux box
// can be renamed at will) and need not be a DNS name. A name the search
// cannot take must not make the isolation fail permanently: the request
// was dead-lettered, nothing was isolated and no outcome was notified.
func TestUnsearchableHostNameDoesNotPreventIsolation(t *testing.T) {
	for _, name := range []string{"PC-Müller.corp.example.com", "evil host", "ws1..corp.example.com", strings.Repeat("a", 64) + ".corp"} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, 0)
			const id = "5555555555555555555555555555555555555555"
			r.def.AddMachine(mde.Machine{ID: id, ComputerDNSName: name, OSPlatform: "Linux"})
			r.f.Defender = realNameSearch{r.def}
			err := r.f.Process(context.Background(), request("da9_a", id, false))
			if err != nil {
				t.Fatalf("Process: %v (permanent: %v)", err, fn.IsPermanent(err))
			}
			if n := r.def.Count("IsolateMachine"); n != 1 {
				t.Fatalf("isolate calls = %d, want 1; outcome %+v", n, r.state(t, "iso-da9_a").Outcome)
			}
		})
	}
}
