package isolatemachine

import (
	"context"
	"testing"

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
