package policy

import (
	"strings"
	"testing"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

const guardPolicy = `version: g1
protected:
  tags: [protected]
  deviceGroups: [Domain Controllers]
  namePatterns: ["dc-*"]
cap: {maxIsolations: 3, window: 1h}
approval: {ttl: 1h}
defaults: {channels: [email]}
rules:
  - id: approve
    match: {category: [Ransomware]}
    actions:
      - isolate: {requireApproval: true}
      - notify
  - id: rehearse
    match: {category: [Exploit]}
    dryRun: true
    actions: [{isolate: {type: Selective}}]
  - id: action-dry
    match: {category: [Malware]}
    actions: [{isolate: {dryRun: true}}]
  - id: high
    match: {severity: [High]}
    actions: [isolate, notify]
`

// guardInput is an isolation that every guard lets through.
func guardInput(t *testing.T, p *Policy, category string) GuardInput {
	t.Helper()
	a, m := testAlert(), testMachine()
	if category != "" {
		a.Category = category
	}
	d := p.Evaluate(a, m, testNow)
	req, ok := RequestFor(d, a, m, testNow)
	if !ok {
		t.Fatalf("decision does not isolate: %+v", d)
	}
	return GuardInput{Request: req, Machine: m, NameMatches: 1, Now: testNow}
}

func action(typ, status string) *mde.MachineAction {
	return &mde.MachineAction{ID: "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", Type: typ, Status: status, MachineID: testMachineID}
}

func TestCheckIsolation(t *testing.T) {
	t.Parallel()
	p := mustParse(t, guardPolicy)
	dryPolicy := mustParse(t, strings.Replace(guardPolicy, "version: g1", "version: g1\ndryRun: true", 1))
	tests := []struct {
		name     string
		policy   *Policy
		category string
		alter    func(in *GuardInput)
		kind     string // "" = ok
		guard    string
		reason   string
	}{
		{name: "every guard passes"},
		{name: "approved request passes", category: "Ransomware", alter: func(in *GuardInput) { in.Request.Approved = true }},
		{name: "manual request needs no approval", category: "Ransomware", alter: func(in *GuardInput) { in.Request.Manual = true }},
		{name: "isolate failed before: try again", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "Failed") }},
		{name: "isolate cancelled before", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "Cancelled") }},
		{name: "released before", alter: func(in *GuardInput) { in.ActiveIsolation = action("Unisolate", "Succeeded") }},

		// 1. invalid request
		{name: "no policy", policy: &Policy{}, kind: "skipped", guard: GuardInvalidRequest, reason: "no valid policy"},
		{name: "bad machine id", alter: func(in *GuardInput) { in.Request.MachineID = "../machines/x" }, kind: "skipped", guard: GuardInvalidRequest, reason: "invalid machine id"},
		{name: "no request id", alter: func(in *GuardInput) { in.Request.RequestID = "" }, kind: "skipped", guard: GuardInvalidRequest, reason: "no requestId"},
		{name: "unsafe request id", alter: func(in *GuardInput) { in.Request.RequestID = "iso-a/../b" }, kind: "skipped", guard: GuardInvalidRequest, reason: "invalid request id"},
		{name: "bad isolation type", alter: func(in *GuardInput) { in.Request.IsolationType = "UnManagedDevice" }, kind: "skipped", guard: GuardInvalidRequest, reason: "is not Full or Selective"},
		{name: "bad alert id", alter: func(in *GuardInput) { in.Request.AlertID = "a b" }, kind: "skipped", guard: GuardInvalidRequest, reason: "invalid alert id"},
		{name: "machine record of another machine", alter: func(in *GuardInput) { in.Machine.ID = strings.Repeat("b", 40) }, kind: "skipped", guard: GuardInvalidRequest, reason: "is not the requested machine"},
		{name: "action of another machine", alter: func(in *GuardInput) {
			in.ActiveIsolation = action("Isolate", "Succeeded")
			in.ActiveIsolation.MachineID = strings.Repeat("c", 40)
		}, kind: "skipped", guard: GuardInvalidRequest, reason: "is of another machine"},
		{name: "machine unknown", alter: func(in *GuardInput) { in.Machine = nil }, kind: "skipped", guard: GuardMachineUnknown, reason: "protection cannot be checked"},

		// 2. protected
		{name: "protected by tag", alter: func(in *GuardInput) { in.Machine.MachineTags = []string{"PROTECTED"} }, kind: "skipped", guard: GuardProtected, reason: `protected by the policy: tag "PROTECTED"`},
		{name: "protected by device group", alter: func(in *GuardInput) { in.Machine.RbacGroupName = sp("Domain Controllers") }, kind: "skipped", guard: GuardProtected, reason: `device group "Domain Controllers"`},
		{name: "protected by machine name", alter: func(in *GuardInput) { in.Machine.ComputerDNSName = "dc-01.corp.example.com" }, kind: "skipped", guard: GuardProtected, reason: `name "dc-01.corp.example.com" matches "dc-*"`},
		{name: "protected by request name", alter: func(in *GuardInput) { in.Request.ComputerDNSName = "DC-02" }, kind: "skipped", guard: GuardProtected, reason: `matches "dc-*"`},

		// 3. ambiguous host name
		{name: "no device with the name", alter: func(in *GuardInput) { in.NameMatches = 0 }, kind: "skipped", guard: GuardAmbiguousHost, reason: `no Defender device is named "ws-fin-0142.corp.example.com"`},
		{name: "two devices with the name", alter: func(in *GuardInput) { in.NameMatches = 2 }, kind: "skipped", guard: GuardAmbiguousHost, reason: "2 Defender devices are named"},

		// 4. already isolated / pending
		{name: "already isolated", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "Succeeded") }, kind: "skipped", guard: GuardAlreadyIsolated, reason: "already isolated (action 0b1c2d3e"},
		{name: "isolation pending", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "Pending") }, kind: "skipped", guard: GuardIsolationPending, reason: "already Pending"},
		{name: "isolation in progress", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "InProgress") }, kind: "skipped", guard: GuardIsolationPending, reason: "already InProgress"},
		{name: "release in progress", alter: func(in *GuardInput) { in.ActiveIsolation = action("Unisolate", "Pending") }, kind: "skipped", guard: GuardIsolationPending, reason: "a release of machine"},
		{name: "release failed: still isolated", alter: func(in *GuardInput) { in.ActiveIsolation = action("Unisolate", "Failed") }, kind: "skipped", guard: GuardAlreadyIsolated, reason: "presumably still isolated"},

		// 5. breaker
		{name: "breaker open", alter: func(in *GuardInput) { in.BreakerOpen = true }, kind: "skipped", guard: GuardCap, reason: "circuit breaker is open (3 isolations per 1h0m0s reached)"},

		// 6. dry run
		{name: "dry run: deployment", alter: func(in *GuardInput) { in.GlobalDryRun = true }, kind: "dryRun", guard: GuardDryRun,
			reason: `would isolate machine ` + testMachineID + ` ("ws-fin-0142.corp.example.com") with Full isolation (dry run: deployment setting)`},
		{name: "dry run: policy", policy: dryPolicy, kind: "dryRun", guard: GuardDryRun, reason: "dry run: policy g1"},
		{name: "dry run: rule", category: "Exploit", kind: "dryRun", guard: GuardDryRun, reason: `with Selective isolation (dry run: decision of rule "rehearse")`},
		{name: "dry run: action", category: "Malware", kind: "dryRun", guard: GuardDryRun, reason: `dry run: isolate action of rule "action-dry"`},

		// 7. approval
		{name: "approval required", category: "Ransomware", kind: "pendingApproval", guard: GuardApproval, reason: `requires approval (rule "approve")`},

		// order: the first guard that refuses decides
		{name: "invalid before protected", alter: func(in *GuardInput) {
			in.Request.MachineID = "x"
			in.Machine.MachineTags = []string{"protected"}
		}, kind: "skipped", guard: GuardInvalidRequest},
		{name: "protected before ambiguous, pending, cap and dry run", alter: func(in *GuardInput) {
			in.Machine.MachineTags = []string{"protected"}
			in.NameMatches = 2
			in.ActiveIsolation = action("Isolate", "Pending")
			in.BreakerOpen, in.GlobalDryRun = true, true
		}, kind: "skipped", guard: GuardProtected},
		{name: "ambiguous before already isolated", alter: func(in *GuardInput) {
			in.NameMatches = 0
			in.ActiveIsolation = action("Isolate", "Succeeded")
		}, kind: "skipped", guard: GuardAmbiguousHost},
		{name: "already isolated before cap", alter: func(in *GuardInput) {
			in.ActiveIsolation = action("Isolate", "Succeeded")
			in.BreakerOpen = true
		}, kind: "skipped", guard: GuardAlreadyIsolated},
		{name: "cap before dry run", alter: func(in *GuardInput) { in.BreakerOpen, in.GlobalDryRun = true, true }, kind: "skipped", guard: GuardCap},
		{name: "dry run before approval", category: "Ransomware", alter: func(in *GuardInput) { in.GlobalDryRun = true }, kind: "dryRun", guard: GuardDryRun},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := guardInput(t, p, tc.category)
			if tc.alter != nil {
				tc.alter(&in)
			}
			pol := p
			if tc.policy != nil {
				pol = tc.policy
			}
			out, ok := CheckIsolation(pol, in)
			if tc.kind == "" {
				if !ok || out != (pipeline.Outcome{}) {
					t.Fatalf("CheckIsolation = %+v, %v; want ok", out, ok)
				}
				return
			}
			if ok {
				t.Fatalf("CheckIsolation let it through; want %s/%s", tc.kind, tc.guard)
			}
			if out.Kind != tc.kind || out.Guard != tc.guard || !out.At.Equal(testNow) {
				t.Errorf("outcome = %s/%s at %v, want %s/%s", out.Kind, out.Guard, out.At, tc.kind, tc.guard)
			}
			if !strings.Contains(out.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", out.Reason, tc.reason)
			}
		})
	}
}

func TestCheckRelease(t *testing.T) {
	t.Parallel()
	p := mustParse(t, guardPolicy)
	base := func() GuardInput {
		return GuardInput{
			Request: pipeline.IsolationRequest{RequestID: "rel-" + testMachineID + "-1", MachineID: testMachineID,
				Manual: true, Requestor: "analyst@example.com", Comment: "false positive", RequestedAt: testNow},
			Machine: testMachine(), NameMatches: 1, Now: testNow,
		}
	}
	tests := []struct {
		name   string
		alter  func(in *GuardInput)
		kind   string
		guard  string
		reason string
	}{
		{name: "passes"},
		{name: "protected machines can be released", alter: func(in *GuardInput) { in.Machine.MachineTags = []string{"protected"} }},
		{name: "breaker does not block a release", alter: func(in *GuardInput) { in.BreakerOpen = true }},
		{name: "isolated: release", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "Succeeded") }},
		{name: "bad request id", alter: func(in *GuardInput) { in.Request.RequestID = "rel x" }, kind: "skipped", guard: GuardInvalidRequest, reason: "invalid request id"},
		{name: "bad machine id", alter: func(in *GuardInput) { in.Request.MachineID = "abc" }, kind: "skipped", guard: GuardInvalidRequest, reason: "invalid machine id"},
		{name: "bad alert id", alter: func(in *GuardInput) { in.Request.AlertID = "../x" }, kind: "skipped", guard: GuardInvalidRequest, reason: "invalid alert id"},
		{name: "machine unknown", alter: func(in *GuardInput) { in.Machine = nil }, kind: "skipped", guard: GuardMachineUnknown},
		{name: "ambiguous 0", alter: func(in *GuardInput) { in.NameMatches = 0 }, kind: "skipped", guard: GuardAmbiguousHost, reason: "refusing to release"},
		{name: "ambiguous 2", alter: func(in *GuardInput) { in.NameMatches = 2 }, kind: "skipped", guard: GuardAmbiguousHost, reason: "which one to release"},
		{name: "isolation still pending", alter: func(in *GuardInput) { in.ActiveIsolation = action("Isolate", "InProgress") }, kind: "skipped", guard: GuardIsolationPending, reason: "release it after it completes"},
		{name: "release already pending", alter: func(in *GuardInput) { in.ActiveIsolation = action("Unisolate", "Pending") }, kind: "skipped", guard: GuardReleasePending},
		{name: "already released", alter: func(in *GuardInput) { in.ActiveIsolation = action("Unisolate", "Succeeded") }, kind: "skipped", guard: GuardNotIsolated, reason: "is not isolated"},
		{name: "dry run", alter: func(in *GuardInput) { in.GlobalDryRun = true }, kind: "dryRun", guard: GuardDryRun, reason: "would release machine " + testMachineID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := base()
			if tc.alter != nil {
				tc.alter(&in)
			}
			out, ok := CheckRelease(p, in)
			if tc.kind == "" {
				if !ok {
					t.Fatalf("CheckRelease = %+v; want ok", out)
				}
				return
			}
			if ok || out.Kind != tc.kind || out.Guard != tc.guard || !strings.Contains(out.Reason, tc.reason) {
				t.Errorf("CheckRelease = %+v, %v; want %s/%s containing %q", out, ok, tc.kind, tc.guard, tc.reason)
			}
		})
	}
}

func TestRequestFor(t *testing.T) {
	t.Parallel()
	p := Default()
	a, m := testAlert(), testMachine()
	d := p.Evaluate(a, m, testNow)
	r, ok := RequestFor(d, a, m, testNow)
	if !ok {
		t.Fatal("high-severity decision does not isolate")
	}
	if r.RequestID != "iso-"+a.ID || r.MachineID != testMachineID || r.IsolationType != "Full" || r.AlertID != a.ID ||
		r.ComputerDNSName != m.ComputerDNSName || r.Alert == nil || r.Decision.RuleID != "high-severity-isolate" || !r.RequestedAt.Equal(testNow) {
		t.Errorf("request = %+v", r)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("request does not validate: %v", err)
	}
	if !strings.Contains(r.Comment, a.ID) || !strings.Contains(r.Comment, "default-1") {
		t.Errorf("comment = %q", r.Comment)
	}
	a.Severity = "Low"
	if _, ok := RequestFor(p.Evaluate(a, m, testNow), a, m, testNow); ok {
		t.Error("notify-only decision produced an isolation request")
	}
}

func TestValidateRequestID(t *testing.T) {
	t.Parallel()
	for id, ok := range map[string]bool{
		"iso-da638765432109876543_-1029384756": true,
		"rel-" + testMachineID + "-1":          true,
		"a":                                    true,
		"":                                     false,
		"-leading":                             false,
		"iso/../x":                             false,
		"iso x":                                false,
		"iso?x=1":                              false,
		"iso#x":                                false,
		strings.Repeat("a", 161):               false,
		strings.Repeat("a", 160):               true,
	} {
		if err := ValidateRequestID(id); (err == nil) != ok {
			t.Errorf("ValidateRequestID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}
