package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

var testNow = time.Date(2025, 3, 1, 9, 15, 0, 0, time.UTC)

const testMachineID = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"

func sp(s string) *string { return &s }

// testAlert is the alert of defender-api.md A.2.
func testAlert() *mde.Alert {
	return &mde.Alert{
		ID:              "da638765432109876543_-1029384756",
		Severity:        "High",
		Status:          "New",
		DetectionSource: "WindowsDefenderAtp",
		Category:        "CredentialAccess",
		Title:           "Suspicious access to LSASS memory",
		MachineID:       testMachineID,
		ComputerDNSName: "ws-fin-0142.corp.example.com",
		RbacGroupName:   sp("Finance-Workstations"),
		MitreTechniques: []string{"T1003.001"},
	}
}

// testMachine is the machine of defender-api.md A.4.
func testMachine() *mde.Machine {
	return &mde.Machine{
		ID:              testMachineID,
		ComputerDNSName: "ws-fin-0142.corp.example.com",
		OSPlatform:      "Windows11",
		HealthStatus:    "Active",
		RbacGroupName:   sp("Finance-Workstations"),
		RiskScore:       sp("High"),
		ExposureLevel:   sp("Medium"),
		MachineTags:     []string{"finance", "vip"},
	}
}

// oneRule is a policy whose single rule "r" has the given match.
func oneRule(t *testing.T, match string) *Policy {
	t.Helper()
	return mustParse(t, header+"rules:\n  - id: r\n    match: "+match+"\n    actions: [notify]\n")
}

func TestEvaluateMatchFields(t *testing.T) {
	t.Parallel()
	type mod func(a *mde.Alert, m *mde.Machine)
	noMachine := func(*mde.Alert, *mde.Machine) {}
	tests := []struct {
		name      string
		match     string
		alter     mod
		nilMach   bool
		want      bool
		reasonHas string
	}{
		{"empty match matches everything", "{}", nil, false, true, "matches every alert"},

		{"severity hit", "{severity: [Medium, High]}", nil, false, true, "severity High"},
		{"severity case-insensitive alert value", "{severity: [High]}", func(a *mde.Alert, _ *mde.Machine) { a.Severity = "high" }, false, true, "severity High"},
		{"severity miss", "{severity: [High]}", func(a *mde.Alert, _ *mde.Machine) { a.Severity = "Medium" }, false, false, `severity "Medium" is not "High"`},

		{"minSeverity equal", "{minSeverity: High}", nil, false, true, "severity High ≥ High"},
		{"minSeverity above", "{minSeverity: Low}", nil, false, true, "≥ Low"},
		{"minSeverity below", "{minSeverity: High}", func(a *mde.Alert, _ *mde.Machine) { a.Severity = "Medium" }, false, false, `severity "Medium" is below High`},
		{"minSeverity unknown value never matches", "{minSeverity: UnSpecified}", func(a *mde.Alert, _ *mde.Machine) { a.Severity = "Critical" }, false, false, "is below UnSpecified"},

		{"category hit", "{category: [Ransomware, credentialaccess]}", nil, false, true, `category "CredentialAccess"`},
		{"category miss", "{category: [Ransomware]}", nil, false, false, `category "CredentialAccess" is not "Ransomware"`},

		{"detectionSource hit", "{detectionSource: [WindowsDefenderAtp]}", nil, false, true, "detectionSource"},
		{"detectionSource miss", "{detectionSource: [WindowsDefenderAv, CustomDetection]}", nil, false, false, `is not one of "WindowsDefenderAv", "CustomDetection"`},

		{"titlePattern hit, case-insensitive", "{titlePattern: 'lsass'}", nil, false, true, "title matches /lsass/"},
		{"titlePattern anchored miss", "{titlePattern: '^LSASS'}", nil, false, false, "title does not match /^LSASS/"},

		{"mitre parent matches sub-technique", "{mitreTechnique: [T1003]}", nil, false, true, `MITRE technique "T1003.001"`},
		{"mitre exact sub-technique", "{mitreTechnique: [T1003.001]}", nil, false, true, "T1003.001"},
		{"mitre other sub-technique", "{mitreTechnique: [T1003.002]}", nil, false, false, "no MITRE technique"},
		{"mitre prefix is not a digit prefix", "{mitreTechnique: [T1003]}", func(a *mde.Alert, _ *mde.Machine) { a.MitreTechniques = []string{"T10030"} }, false, false, "no MITRE technique"},
		{"mitre alert value lower case", "{mitreTechnique: [T1003]}", func(a *mde.Alert, _ *mde.Machine) { a.MitreTechniques = []string{"t1003.001"} }, false, true, "t1003.001"},
		{"mitre alert without techniques", "{mitreTechnique: [T1003]}", func(a *mde.Alert, _ *mde.Machine) { a.MitreTechniques = nil }, false, false, "no MITRE technique"},

		{"machineTags.any hit", "{machineTags: {any: [VIP, lab]}}", nil, false, true, `machine tag "vip"`},
		{"machineTags.any miss", "{machineTags: {any: [lab]}}", nil, false, false, `machine has none of the tags "lab"`},
		{"machineTags.any needs machine", "{machineTags: {any: [vip]}}", nil, true, false, "needs the machine (machineTags.any) but the machine is unknown"},
		{"machineTags.none pass", "{machineTags: {none: [lab]}}", nil, false, true, "none of the excluded tags"},
		{"machineTags.none excluded", "{machineTags: {none: [Finance]}}", nil, false, false, `machine has the excluded tag "finance"`},
		{"machineTags.none needs machine", "{machineTags: {none: [lab]}}", nil, true, false, "needs the machine (machineTags.none)"},

		{"deviceGroup from machine", "{deviceGroup: [finance-workstations]}", nil, false, true, `device group "Finance-Workstations"`},
		{"deviceGroup machine wins over alert", "{deviceGroup: [Finance-Workstations]}", func(_ *mde.Alert, m *mde.Machine) { m.RbacGroupName = sp("Lab") }, false, false, `device group "Lab" (machine)`},
		{"deviceGroup from alert when machine unknown", "{deviceGroup: [Finance-Workstations]}", nil, true, true, "device group"},
		{"deviceGroup miss", "{deviceGroup: [Servers]}", nil, false, false, `is not "Servers"`},
		{"deviceGroup null group", "{deviceGroup: [Servers]}", func(a *mde.Alert, m *mde.Machine) { m.RbacGroupName = nil }, false, false, `device group "" (machine)`},

		{"osPlatform hit", "{osPlatform: [windows11, Windows10]}", nil, false, true, `osPlatform "Windows11"`},
		{"osPlatform miss", "{osPlatform: [Linux]}", nil, false, false, `osPlatform "Windows11" is not "Linux"`},
		{"osPlatform needs machine", "{osPlatform: [Windows11]}", nil, true, false, "needs the machine (osPlatform)"},

		{"riskScore list hit", "{riskScore: [Medium, High]}", nil, false, true, "riskScore High"},
		{"riskScore list miss", "{riskScore: [Low]}", nil, false, false, `riskScore "High" is not "Low"`},
		{"minRiskScore hit", "{minRiskScore: Medium}", nil, false, true, "riskScore High ≥ Medium"},
		{"minRiskScore miss", "{minRiskScore: High}", func(_ *mde.Alert, m *mde.Machine) { m.RiskScore = sp("Informational") }, false, false, `riskScore "Informational" is below High`},
		{"riskScore null", "{minRiskScore: None}", func(_ *mde.Alert, m *mde.Machine) { m.RiskScore = nil }, false, false, "machine has no riskScore"},
		{"riskScore unknown value", "{minRiskScore: None}", func(_ *mde.Alert, m *mde.Machine) { m.RiskScore = sp("Severe") }, false, false, "is below None"},
		{"riskScore needs machine", "{minRiskScore: Low}", nil, true, false, "needs the machine (riskScore)"},

		{"exposureLevel list hit", "{exposureLevel: [medium]}", nil, false, true, "exposureLevel Medium"},
		{"exposureLevel list miss", "{exposureLevel: [High]}", nil, false, false, `exposureLevel "Medium" is not "High"`},
		{"minExposureLevel hit", "{minExposureLevel: Low}", nil, false, true, "exposureLevel Medium ≥ Low"},
		{"minExposureLevel miss", "{minExposureLevel: High}", nil, false, false, `exposureLevel "Medium" is below High`},
		{"exposureLevel null", "{exposureLevel: [None]}", func(_ *mde.Alert, m *mde.Machine) { m.ExposureLevel = nil }, false, false, "machine has no exposureLevel"},
		{"exposureLevel needs machine", "{minExposureLevel: Low}", nil, true, false, "needs the machine (exposureLevel)"},

		{"all conditions must hold", "{severity: [High], category: [Ransomware]}", nil, false, false, "category"},
		{"all conditions hold", "{severity: [High], category: [CredentialAccess], minRiskScore: High, osPlatform: [Windows11]}", nil, false, true,
			`severity High, category "CredentialAccess", osPlatform "Windows11", riskScore High ≥ High`},
		{"alert-only rule works without machine", "{severity: [High], titlePattern: lsass}", noMachine, true, true, "severity High"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := oneRule(t, tc.match)
			a, m := testAlert(), testMachine()
			if tc.alter != nil {
				tc.alter(a, m)
			}
			if tc.nilMach {
				m = nil
			}
			d := p.Evaluate(a, m, testNow)
			matched := d.RuleID == "r"
			if matched != tc.want {
				t.Fatalf("matched = %v, want %v (decision %+v)", matched, tc.want, d)
			}
			if !matched && d.RuleID != NoMatchRuleID {
				t.Errorf("RuleID = %q, want %q", d.RuleID, NoMatchRuleID)
			}
			if !strings.Contains(d.Reason, tc.reasonHas) {
				t.Errorf("reason %q does not contain %q", d.Reason, tc.reasonHas)
			}
		})
	}
}

func TestEvaluateDefaultPolicy(t *testing.T) {
	t.Parallel()
	p := Default()
	tests := []struct {
		severity string
		rule     string
		actions  string
	}{
		{"High", "high-severity-isolate", "isolate,notify"},
		{"Medium", "notify-others", "notify"},
		{"Low", "notify-others", "notify"},
		{"Informational", "notify-others", "notify"},
		{"", "notify-others", "notify"},
	}
	for _, tc := range tests {
		t.Run(tc.severity, func(t *testing.T) {
			a := testAlert()
			a.Severity = tc.severity
			d := p.Evaluate(a, testMachine(), testNow)
			if d.RuleID != tc.rule || actionTypes(d) != tc.actions {
				t.Fatalf("decision = %s / %s, want %s / %s", d.RuleID, actionTypes(d), tc.rule, tc.actions)
			}
			if d.PolicyVersion != DefaultVersion || !d.DecidedAt.Equal(testNow) || d.AlertID != a.ID || d.MachineID != testMachineID {
				t.Errorf("decision metadata = %+v", d)
			}
			if strings.Join(d.Channels, ",") != ChannelEmail {
				t.Errorf("channels = %v", d.Channels)
			}
			if iso, ok := d.Has(pipeline.ActionIsolate); ok && (iso.IsolationType != mde.IsolationFull || iso.DryRun || iso.RequireApproval) {
				t.Errorf("isolate action = %+v", iso)
			}
		})
	}
}

func actionTypes(d pipeline.Decision) string {
	var s []string
	for _, a := range d.Actions {
		s = append(s, a.Type)
	}
	return strings.Join(s, ",")
}

func TestEvaluateNoMatch(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `version: v1
defaults: {channels: [teams, outbox]}
rules:
  - id: high
    match: {severity: [High]}
    actions: [isolate, notify]
  - id: linux
    match: {osPlatform: [Linux]}
    actions: [notify]
`)
	a := testAlert()
	a.Severity = "Low"
	d := p.Evaluate(a, nil, testNow)
	if d.RuleID != NoMatchRuleID || actionTypes(d) != "notify" || strings.Join(d.Channels, ",") != "teams,outbox" {
		t.Fatalf("decision = %+v", d)
	}
	for _, w := range []string{"no rule matched", `high: severity "Low" is not "High"`, "linux: needs the machine (osPlatform) but the machine is unknown", "notify only"} {
		if !strings.Contains(d.Reason, w) {
			t.Errorf("reason %q does not contain %q", d.Reason, w)
		}
	}
	// The no-match channels are a copy: the caller may not alter the policy.
	d.Channels[0] = "mutated"
	if p.Defaults.Channels[0] != ChannelTeams {
		t.Error("decision channels alias the policy defaults")
	}
}

func TestEvaluateDryRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		yaml         string
		decisionDry  bool
		isolateDry   bool
		scanDry      bool
		reasonHas    string
		reasonHasNot string
	}{
		{"none", `version: v
defaults: {channels: [email]}
rules:
  - id: r
    match: {minSeverity: High}
    actions: [isolate, runAntiVirusScan, notify]
`, false, false, false, "", "dry run"},
		{"global", `version: v
dryRun: true
defaults: {channels: [email]}
rules:
  - id: r
    match: {minSeverity: High}
    actions: [isolate, runAntiVirusScan, notify]
`, true, true, true, "dry run: the policy sets dryRun", ""},
		{"rule", `version: v
defaults: {channels: [email]}
rules:
  - id: r
    match: {minSeverity: High}
    dryRun: true
    actions: [isolate, runAntiVirusScan, notify]
`, true, true, true, "dry run: the rule sets dryRun", ""},
		{"action", `version: v
defaults: {channels: [email]}
rules:
  - id: r
    match: {minSeverity: High}
    actions:
      - isolate: {dryRun: true}
      - runAntiVirusScan
      - notify
`, false, true, false, "dry run for isolate", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := mustParse(t, tc.yaml).Evaluate(testAlert(), testMachine(), testNow)
			iso, _ := d.Has(pipeline.ActionIsolate)
			scan, _ := d.Has(pipeline.ActionAVScan)
			notify, _ := d.Has(pipeline.ActionNotify)
			if d.DryRun != tc.decisionDry || iso.DryRun != tc.isolateDry || scan.DryRun != tc.scanDry {
				t.Errorf("dry run: decision=%v isolate=%v scan=%v, want %v %v %v", d.DryRun, iso.DryRun, scan.DryRun, tc.decisionDry, tc.isolateDry, tc.scanDry)
			}
			if notify.DryRun {
				t.Error("notify is never a dry run: it is how a dry run is observed")
			}
			if tc.reasonHas != "" && !strings.Contains(d.Reason, tc.reasonHas) {
				t.Errorf("reason %q lacks %q", d.Reason, tc.reasonHas)
			}
			if tc.reasonHasNot != "" && strings.Contains(d.Reason, tc.reasonHasNot) {
				t.Errorf("reason %q has %q", d.Reason, tc.reasonHasNot)
			}
		})
	}
}

func TestEvaluateStopFalseMergesRules(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `version: v
defaults: {channels: [email]}
rules:
  - id: scan
    name: Scan
    match: {severity: [High]}
    stop: false
    actions:
      - runAntiVirusScan
      - tag: {value: x}
      - notify: {channels: [teams]}
  - id: skipped
    match: {severity: [Low]}
    actions: [collectInvestigationPackage]
  - id: contain
    name: Contain
    match: {category: [CredentialAccess]}
    actions:
      - isolate
      - tag: {value: X}
      - tag: {value: y}
      - notify: {channels: [email, teams]}
  - id: never-reached
    match: {}
    actions: [restrictCodeExecution]
`)
	d := p.Evaluate(testAlert(), testMachine(), testNow)
	if d.RuleID != "scan+contain" || d.RuleName != "Scan + Contain" {
		t.Errorf("rule = %q / %q", d.RuleID, d.RuleName)
	}
	if got := actionTypes(d); got != "runAntiVirusScan,tag,notify,isolate,tag" {
		t.Errorf("actions = %s", got)
	}
	if d.Actions[4].Tag != "y" {
		t.Errorf("second tag = %q, want y (X duplicates x)", d.Actions[4].Tag)
	}
	if strings.Join(d.Channels, ",") != "teams,email" {
		t.Errorf("channels = %v", d.Channels)
	}
	if !strings.Contains(d.Reason, `rule "scan" matched`) || !strings.Contains(d.Reason, `rule "contain" matched`) ||
		!strings.Contains(d.Reason, "2 action(s) of later rules were already listed") {
		t.Errorf("reason = %q", d.Reason)
	}
	// The decision does not alias the rule's actions.
	d.Actions[0].ScanType = "mutated"
	if p.Rules[0].Actions[0].ScanType != "Quick" {
		t.Error("decision actions alias the policy")
	}
}

func TestEvaluateNotes(t *testing.T) {
	t.Parallel()
	p := Default()
	m := testMachine()
	m.MachineTags = append(m.MachineTags, "Protected")
	d := p.Evaluate(testAlert(), m, testNow)
	if !strings.Contains(d.Reason, `machine is protected (tag "Protected"): the isolation will be skipped`) {
		t.Errorf("reason = %q", d.Reason)
	}

	// A machine record of another machine is ignored, and the reason says so.
	other := testMachine()
	other.ID = strings.Repeat("a", 40)
	d = oneRule(t, "{osPlatform: [Windows11]}").Evaluate(testAlert(), other, testNow)
	if d.RuleID != NoMatchRuleID || !strings.Contains(d.Reason, "is not the alert's machine") || d.MachineID != testMachineID {
		t.Errorf("decision = %+v", d)
	}
}

func TestEvaluateDegenerateInputs(t *testing.T) {
	t.Parallel()
	d := Default().Evaluate(nil, nil, testNow)
	if d.RuleID != NoMatchRuleID || d.Reason != "no alert" || actionTypes(d) != "notify" {
		t.Errorf("nil alert: %+v", d)
	}
	var hand Policy
	hand.Version = "hand"
	hand.Rules = []Rule{{ID: "x", Actions: []pipeline.Action{{Type: pipeline.ActionIsolate}}}}
	d = hand.Evaluate(testAlert(), testMachine(), testNow)
	if d.RuleID != NoMatchRuleID || !strings.Contains(d.Reason, "not built by Load") {
		t.Errorf("hand-built policy: %+v", d)
	}
	// Alert without machine id: the machine's id is used.
	a := testAlert()
	a.MachineID = ""
	if d := Default().Evaluate(a, testMachine(), testNow); d.MachineID != testMachineID {
		t.Errorf("machine id = %q", d.MachineID)
	}
	// A hostile title is quoted in the reason, not copied raw.
	a = testAlert()
	a.Category = "x\x1b[31m\nInjected"
	d = oneRule(t, "{category: [Ransomware]}").Evaluate(a, nil, testNow)
	if strings.ContainsAny(d.Reason, "\x1b\n") {
		t.Errorf("reason carries control characters: %q", d.Reason)
	}
}

func TestIsProtected(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `version: v
protected:
  tags: [protected, tier0]
  deviceGroups: [Domain Controllers]
  namePatterns: ["dc-*", "*.pki.corp.example.com", 're:^(sql|exch)[0-9]+\.', "build??"]
defaults: {channels: [email]}
rules: [{id: r, actions: [notify]}]
`)
	tests := []struct {
		name  string
		alter func(m *mde.Machine)
		want  string // "" = not protected
	}{
		{"plain", nil, ""},
		{"tag case-insensitive", func(m *mde.Machine) { m.MachineTags = []string{"TIER0"} }, `tag "TIER0"`},
		{"tag with spaces", func(m *mde.Machine) { m.MachineTags = []string{" protected "} }, `tag " protected "`},
		{"device group", func(m *mde.Machine) { m.RbacGroupName = sp("domain controllers") }, `device group "domain controllers"`},
		{"glob on FQDN", func(m *mde.Machine) { m.ComputerDNSName = "DC-01.corp.example.com" }, `matches "dc-*"`},
		{"glob on short name", func(m *mde.Machine) { m.ComputerDNSName = "build01.corp.example.com" }, `matches "build??"`},
		{"glob ? is one character", func(m *mde.Machine) { m.ComputerDNSName = "build001.corp.example.com" }, ""},
		{"glob suffix", func(m *mde.Machine) { m.ComputerDNSName = "ca1.pki.corp.example.com." }, `matches "*.pki.corp.example.com"`},
		{"glob dot is literal", func(m *mde.Machine) { m.ComputerDNSName = "ca1Xpki.corp.example.com" }, ""},
		{"regexp", func(m *mde.Machine) { m.ComputerDNSName = "SQL12.corp.example.com" }, `matches "re:^(sql|exch)[0-9]+\\."`},
		{"regexp miss", func(m *mde.Machine) { m.ComputerDNSName = "mysql12.corp.example.com" }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testMachine()
			if tc.alter != nil {
				tc.alter(m)
			}
			reason, prot := p.IsProtected(m)
			if prot != (tc.want != "") || !strings.Contains(reason, tc.want) {
				t.Errorf("IsProtected = %q, %v; want %q", reason, prot, tc.want)
			}
		})
	}
	if _, prot := p.IsProtected(nil); prot {
		t.Error("nil machine is protected")
	}
}
