package policy

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// BenchmarkEvaluateStrict measures one decision with the strict example
// policy (every match field in use) on a realistic alert and machine.
func BenchmarkEvaluateStrict(b *testing.B) {
	p, err := Load("../../examples/policies/strict.yaml")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/alert_single.json")
	if err != nil {
		b.Fatal(err)
	}
	var a mde.Alert
	if err := json.Unmarshal(raw, &a); err != nil {
		b.Fatal(err)
	}
	risk, group := "High", "Finance-Workstations"
	m := &mde.Machine{ID: a.MachineID, ComputerDNSName: "ws-fin-0142.corp.example.com", OSPlatform: "Windows11",
		RiskScore: &risk, RbacGroupName: &group, MachineTags: []string{"finance", "vip"}}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(&a, m, now); d.RuleID == "" {
			b.Fatal("no rule")
		}
	}
}
