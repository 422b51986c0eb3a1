package policy_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/store"
)

func ExampleParse() {
	_, err := policy.Parse([]byte(`
version: "2025-03-01"
defaults: {channels: [email]}
rules:
  - id: high
    match: {minSeverty: High}
    actions:
      - isolate: {type: Partial}
`), "policy.yaml")
	fmt.Println(err)
	// Output:
	// policy policy.yaml: 3 problem(s)
	//   - rules[0] "high".match: unknown key "minSeverty" (did you mean "minSeverity"?)
	//   - rules[0] "high".actions[0].isolate.type: "Partial" is not a valid isolation type (want one of Full, Selective)
	//   - rules[0] "high".match: is empty but the rule isolates: it would isolate the machine of every alert; add a condition (e.g. minSeverity: High)
}

// The isolation path of the pipeline: evaluate, build the request, run the
// guards, take a slot in the breaker, then (not shown) call Defender.
func Example() {
	ctx := context.Background()
	now := time.Date(2025, 3, 1, 9, 15, 0, 0, time.UTC)
	p := policy.Default()
	alert := &mde.Alert{ID: "da638765432109876543_-1029384756", Severity: "High",
		MachineID: "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c", Title: "Suspicious access to LSASS memory"}
	machine := &mde.Machine{ID: alert.MachineID, ComputerDNSName: "ws-fin-0142.corp.example.com"}

	// EnrichAlert: a pure decision.
	d := p.Evaluate(alert, machine, now)
	fmt.Println(d.RuleID, d.Actions[0].Type, d.Actions[0].IsolationType)
	req, isolates := policy.RequestFor(d, alert, machine, now)
	fmt.Println(isolates, req.RequestID)

	// IsolateMachine: fresh state, then the guards.
	backend := store.NewMemory()
	defer backend.Close()
	breaker := policy.NewBreakerFor(backend, p)
	state, _ := breaker.State(ctx)
	out, ok := policy.CheckIsolation(p, policy.GuardInput{
		Request: req, Machine: machine,
		NameMatches:     1,   // devices named ws-fin-0142.corp.example.com
		ActiveIsolation: nil, // latest Isolate/Unisolate action of the machine
		BreakerOpen:     state.Open(),
		Now:             now,
	})
	fmt.Println(ok, out.Kind == "")
	res, _ := breaker.Acquire(ctx, req.RequestID, now)
	fmt.Printf("allowed=%v count=%d tripped=%v\n", res.Allowed, res.Count, res.Tripped)

	// A protected machine is skipped, with the guard's name.
	machine.MachineTags = []string{"protected"}
	out, ok = policy.CheckIsolation(p, policy.GuardInput{Request: req, Machine: machine, NameMatches: 1, Now: now})
	fmt.Println(ok, out.Kind, out.Guard)
	// Output:
	// high-severity-isolate isolate Full
	// true iso-da638765432109876543_-1029384756
	// true true
	// allowed=true count=1 tripped=false
	// false skipped protected
}

func ExampleSigner() {
	s, err := policy.NewSigner([]byte("0123456789abcdef0123456789abcdef"), 2*time.Hour)
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 3, 1, 9, 15, 0, 0, time.UTC)
	approve, _, expires, _ := s.Links("https://mdeflow.example.com", "iso-da1_2", now)
	fmt.Println(approve)
	fmt.Println(expires)

	// The approval endpoint checks the query parameters.
	sig := approve[len(approve)-43:]
	fmt.Println(s.Verify("iso-da1_2", policy.VerdictApprove, "1740827700", sig, now.Add(time.Hour)))
	fmt.Println(s.Verify("iso-da1_2", policy.VerdictDeny, "1740827700", sig, now.Add(time.Hour)))
	fmt.Println(s.Verify("iso-da1_2", policy.VerdictApprove, "1740827700", sig, now.Add(3*time.Hour)))
	// Output:
	// https://mdeflow.example.com/api/approvals/iso-da1_2?verdict=approve&exp=1740827700&sig=CONHG98QW2JHWWVGqYcTG3dsyT0Oj4CwHN16KHmiU8M
	// 2025-03-01 11:15:00 +0000 UTC
	// <nil>
	// verifying approval: approval link signature is not valid
	// verifying approval: approval link expired at 2025-03-01T11:15:00Z
}
