package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdeflow/mdeflow/internal/testutil"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// repoRoot walks up from the package directory to go.mod.
func repoRoot(t *testing.T) string { return testutil.RepoRoot(t) }

// header is a valid policy head; tests append rules to it.
const header = `version: test-1
defaults:
  channels: [email]
`

func mustParse(t *testing.T, y string) *Policy {
	t.Helper()
	p, err := Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func canonicalJSON(t *testing.T, p *Policy) string {
	t.Helper()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDefaultEqualsExampleFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "examples", "policies", "default.yaml")
	fromFile, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	def := Default()
	if got, want := canonicalJSON(t, fromFile), canonicalJSON(t, def); got != want {
		t.Errorf("examples/policies/default.yaml differs from Default():\nfile:\n%s\nDefault():\n%s", got, want)
	}
	if def.Version != DefaultVersion || def.Source != "default" {
		t.Errorf("Default() version/source = %q/%q", def.Version, def.Source)
	}
	if !containsFold(def.Protected.Tags, ProtectedTag) {
		t.Errorf("Default() does not protect the %q tag", ProtectedTag)
	}
}

func TestExamplePoliciesLoad(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "examples", "policies", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("example policies: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("Load: %v", err)
			}
		})
	}
}

func TestParseNormalises(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `version: "7"
dryRun: false
protected:
  tags: [Protected, tier0]
  namePatterns: ["dc-*", "re:^sql[0-9]+$"]
defaults:
  isolationType: selective
  channels: [Teams, EMAIL]
rules:
  - id: a
    match:
      severity: [high, medium]
      minRiskScore: medium
      mitreTechnique: [t1003]
    actions:
      - isolate
      - runAntiVirusScan:
      - notify: {channels: [webhook]}
    stop: false
  - id: b
    match: {minSeverity: low}
    actions:
      - isolate: {type: full, requireApproval: false}
      - tag: {value: seen}
      - updateAlert: {status: inprogress, classification: truepositive, determination: malware}
`)
	if p.Version != "7" {
		t.Errorf("version = %q", p.Version)
	}
	a, b := p.Rules[0], p.Rules[1]
	if got := strings.Join(a.Match.Severity, ","); got != "High,Medium" {
		t.Errorf("severity = %s", got)
	}
	if a.Match.MinRiskScore != "Medium" || a.Match.MitreTechnique[0] != "T1003" {
		t.Errorf("match = %+v", a.Match)
	}
	if a.Stop || !b.Stop {
		t.Errorf("stop: a=%v (want false) b=%v (want true, the default)", a.Stop, b.Stop)
	}
	want := []pipeline.Action{
		{Type: pipeline.ActionIsolate, IsolationType: "Selective"}, // defaults.isolationType
		{Type: pipeline.ActionAVScan, ScanType: "Quick"},
		{Type: pipeline.ActionNotify},
	}
	if got, _ := json.Marshal(a.Actions); string(got) != mustJSON(t, want) {
		t.Errorf("rule a actions = %s, want %s", got, mustJSON(t, want))
	}
	if strings.Join(a.Channels, ",") != "webhook" || strings.Join(b.Channels, ",") != "teams,email" {
		t.Errorf("channels a=%v b=%v", a.Channels, b.Channels)
	}
	if b.Actions[0].IsolationType != "Full" || b.Actions[2].Status != "InProgress" || b.Actions[2].Determination != "Malware" {
		t.Errorf("rule b actions = %+v", b.Actions)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseAcceptsBothDeterminationSpellings(t *testing.T) {
	t.Parallel()
	// defender-api.md §2.4: update-alert.md and alerts.md disagree.
	for _, c := range []struct{ class, det string }{
		{"InformationalExpectedActivity", "ConfirmedUserActivity"},
		{"InformationalExpectedActivity", "ConfirmedActivity"},
		{"FalsePositive", "Clean"},
		{"FalsePositive", "NotMalicious"},
		{"", "NotMalicious"}, // determination alone: valid for some classification
	} {
		y := header + `rules:
  - id: r
    actions:
      - updateAlert: {classification: "` + c.class + `", determination: ` + c.det + `}
`
		p, err := Parse([]byte(y), "t")
		if err != nil {
			t.Errorf("%s/%s: %v", c.class, c.det, err)
			continue
		}
		if got := p.Rules[0].Actions[0].Determination; got != c.det {
			t.Errorf("%s: determination stored as %q", c.det, got)
		}
	}
}

func TestParseValidation(t *testing.T) {
	t.Parallel()
	rule := func(body string) string { return header + "rules:\n  - id: r1\n" + body }
	tests := []struct {
		name string
		yaml string
		want []string // every one must appear in some problem
	}{
		{"empty file", "  \n", []string{"the policy is empty"}},
		{"not yaml", "version: [", []string{"parsing YAML"}},
		{"missing version", "defaults: {channels: [email]}\nrules: [{id: a, actions: [notify]}]\n", []string{"version: required"}},
		{"bad version", "version: 'a b'\ndefaults: {channels: [email]}\nrules: [{id: a, actions: [notify]}]\n", []string{"version: \"a b\" must be"}},
		{"unknown top-level key", "dryrun: true\n" + rule("    actions: [notify]\n"),
			[]string{`unknown key "dryrun" (did you mean "dryRun"?)`}},
		{"unknown match key", rule("    match: {minSeverty: High}\n    actions: [notify]\n"),
			[]string{`rules[0] "r1".match: unknown key "minSeverty" (did you mean "minSeverity"?)`}},
		{"unknown machineTags key", rule("    match: {machineTags: {all: [x]}}\n    actions: [notify]\n"),
			[]string{`rules[0] "r1".match.machineTags: unknown key "all"`}},
		{"unknown action", rule("    actions:\n      - isolat: {}\n"),
			[]string{`rules[0] "r1".actions[0]: unknown action "isolat" (did you mean "isolate"?)`}},
		{"unknown scalar action", rule("    actions:\n      - notfy\n"),
			[]string{`rules[0] "r1".actions[0]: unknown action "notfy" (did you mean "notify"?)`}},
		{"unknown action parameter", rule("    match: {minSeverity: High}\n    actions:\n      - isolate: {typ: Full}\n"),
			[]string{`rules[0] "r1".actions[0].isolate: unknown key "typ" (did you mean "type"?)`}},
		{"wrong scalar type", "cap: {maxIsolations: lots, window: 1h}\n" + rule("    actions: [notify]\n"),
			[]string{"cannot unmarshal", "lots"}},
		{"two documents", rule("    actions: [notify]\n") + "---\nversion: x\n", []string{"more than one YAML document"}},
		{"bad severity", rule("    match: {severity: [High, Hgh]}\n    actions: [notify]\n"),
			[]string{`rules[0] "r1".match.severity[1]: "Hgh" is not a valid severity (want one of UnSpecified, Informational, Low, Medium, High)`}},
		{"bad minSeverity", rule("    match: {minSeverity: Critical}\n    actions: [notify]\n"),
			[]string{`rules[0] "r1".match.minSeverity: "Critical" is not a valid severity`}},
		{"severity and minSeverity", rule("    match: {severity: [High], minSeverity: Low}\n    actions: [notify]\n"),
			[]string{`rules[0] "r1".match: use severity or minSeverity, not both`}},
		{"riskScore and minRiskScore", rule("    match: {riskScore: [High], minRiskScore: Low}\n    actions: [notify]\n"),
			[]string{"use riskScore or minRiskScore, not both"}},
		{"bad riskScore", rule("    match: {riskScore: [Severe]}\n    actions: [notify]\n"),
			[]string{`match.riskScore[0]: "Severe" is not a valid risk score`}},
		{"bad exposure", rule("    match: {minExposureLevel: Informational}\n    actions: [notify]\n"),
			[]string{`match.minExposureLevel: "Informational" is not a valid exposure level (want one of None, Low, Medium, High)`}},
		{"exposure and min", rule("    match: {exposureLevel: [High], minExposureLevel: Low}\n    actions: [notify]\n"),
			[]string{"use exposureLevel or minExposureLevel, not both"}},
		{"bad title regexp", rule("    match: {titlePattern: 'lsass(('}\n    actions: [notify]\n"),
			[]string{`rules[0] "r1".match.titlePattern: not a valid regular expression`}},
		{"bad mitre", rule("    match: {mitreTechnique: [T1003, TA0006, t12]}\n    actions: [notify]\n"),
			[]string{`match.mitreTechnique[1]: "TA0006" is not a MITRE ATT&CK technique id`, `match.mitreTechnique[2]`}},
		{"tag in any and none", rule("    match: {machineTags: {any: [lab], none: [LAB]}}\n    actions: [notify]\n"),
			[]string{`tag "lab" is in both any and none`}},
		{"empty category", rule("    match: {category: ['']}\n    actions: [notify]\n"), []string{"match.category[0]: empty value"}},
		{"missing id", header + "rules:\n  - actions: [notify]\n", []string{"rules[0].id: required"}},
		{"bad id", header + "rules:\n  - id: 'a/b'\n    actions: [notify]\n", []string{`rules[0] "a/b".id: must be 1 to 64`}},
		{"reserved id", header + "rules:\n  - id: no-match\n    actions: [notify]\n", []string{`is reserved`}},
		{"duplicate id", header + "rules:\n  - id: a\n    actions: [notify]\n  - id: A\n    actions: [notify]\n",
			[]string{`rules[1] "A".id: duplicate rule id (also rules[0])`}},
		{"no rules", header, []string{"rules: at least one rule is required"}},
		{"empty actions", rule("    actions: []\n"), []string{`rules[0] "r1".actions: at least one action is required`}},
		{"no actions key", rule("    name: x\n"), []string{`rules[0] "r1".actions: at least one action is required`}},
		{"empty action item", rule("    actions:\n      - {}\n"), []string{`rules[0] "r1".actions[0]: empty action`}},
		{"two actions in one item", rule("    match: {minSeverity: High}\n    actions:\n      - isolate: {}\n        notify: {}\n"),
			[]string{`rules[0] "r1".actions[0]: one action per list item, found isolate, notify`}},
		{"action listed twice", rule("    actions: [notify, notify]\n"), []string{`actions[1]: notify is already listed as actions[0]`}},
		{"bad isolation type", rule("    match: {minSeverity: High}\n    actions:\n      - isolate: {type: UnManagedDevice}\n"),
			[]string{`actions[0].isolate.type: "UnManagedDevice" is not a valid isolation type (want one of Full, Selective)`}},
		{"isolate with empty match", rule("    actions: [isolate, notify]\n"),
			[]string{`rules[0] "r1".match: is empty but the rule isolates`}},
		{"requireApproval without approval", rule("    match: {minSeverity: High}\n    actions:\n      - isolate: {requireApproval: true}\n"),
			[]string{`actions[0].isolate.requireApproval: needs an approval section`}},
		{"bad scan type", rule("    actions:\n      - runAntiVirusScan: {scanType: Deep}\n"),
			[]string{`actions[0].runAntiVirusScan.scanType: "Deep" is not a valid scan type (want one of Quick, Full)`}},
		{"bad tag", rule("    actions:\n      - tag: {value: ''}\n"), []string{`actions[0].tag.value: "" is not a valid machine tag`}},
		{"bad alert status", rule("    actions:\n      - updateAlert: {status: Closed}\n"),
			[]string{`actions[0].updateAlert.status: "Closed" is not a valid alert status (want one of New, InProgress, Resolved)`}},
		{"bad classification", rule("    actions:\n      - updateAlert: {classification: Benign}\n"),
			[]string{`updateAlert.classification: "Benign" is not a valid classification`}},
		{"determination of another classification", rule("    actions:\n      - updateAlert: {classification: FalsePositive, determination: Malware}\n"),
			[]string{`updateAlert.determination: "Malware" is not a valid determination for FalsePositive (want one of Clean, NotMalicious, InsufficientData, Other)`}},
		{"deprecated determination", rule("    actions:\n      - updateAlert: {determination: Apt}\n"),
			[]string{`updateAlert.determination: "Apt" is deprecated`}},
		{"unknown determination", rule("    actions:\n      - updateAlert: {determination: Weird}\n"),
			[]string{`updateAlert.determination: "Weird" is not a valid determination`}},
		{"updateAlert sets nothing", rule("    actions:\n      - updateAlert: {}\n"), []string{`actions[0].updateAlert: sets nothing`}},
		{"bad notify channel", rule("    actions:\n      - notify: {channels: [slack]}\n"),
			[]string{`actions[0].notify.channels[0]: "slack" is not a valid channel (want one of email, teams, webhook, outbox, smtp, graphmail)`}},
		{"no default channels", "version: x\nrules: [{id: a, actions: [notify]}]\n", []string{"defaults.channels: required"}},
		{"bad default isolation type", "version: x\ndefaults: {isolationType: Partial, channels: [email]}\nrules: [{id: a, actions: [notify]}]\n",
			[]string{`defaults.isolationType: "Partial" is not a valid isolation type`}},
		{"cap without window", "cap: {maxIsolations: 5}\n" + rule("    actions: [notify]\n"), []string{"cap.window: required when cap is set"}},
		{"cap zero", "cap: {maxIsolations: 0, window: 1h}\n" + rule("    actions: [notify]\n"), []string{"cap.maxIsolations: 0 is out of range (1 to 100"}},
		{"cap too big", "cap: {maxIsolations: 1000, window: 1h}\n" + rule("    actions: [notify]\n"), []string{"cap.maxIsolations: 1000 is out of range"}},
		{"cap bad window", "cap: {maxIsolations: 5, window: 1hr}\n" + rule("    actions: [notify]\n"), []string{`cap.window: "1hr" is not a duration`}},
		{"cap negative window", "cap: {maxIsolations: 5, window: -1h}\n" + rule("    actions: [notify]\n"), []string{`cap.window: -1h0m0s is out of range`}},
		{"approval without ttl", "approval: {onExpiry: deny}\n" + rule("    actions: [notify]\n"), []string{"approval.ttl: required"}},
		{"approval bad onExpiry", "approval: {ttl: 1h, onExpiry: approve}\n" + rule("    actions: [notify]\n"),
			[]string{`approval.onExpiry: "approve" is not a valid onExpiry (want one of deny, isolate)`}},
		{"approval bad approver", "approval: {ttl: 1h, approvers: ['bob smith']}\n" + rule("    actions: [notify]\n"),
			[]string{`approval.approvers[0]: "bob smith" is not a user principal name`}},
		{"approval ttl too long", "approval: {ttl: 1000h}\n" + rule("    actions: [notify]\n"), []string{"approval.ttl: 1000h0m0s is out of range"}},
		{"protected bad name regexp", "protected: {namePatterns: ['re:(']}\n" + rule("    actions: [notify]\n"),
			[]string{"protected.namePatterns[0]: not a valid regular expression"}},
		{"protected empty pattern", "protected: {namePatterns: ['']}\n" + rule("    actions: [notify]\n"), []string{"protected.namePatterns[0]: empty pattern"}},
		{"protected bad tag", "protected: {tags: [\"a\\x01b\"]}\n" + rule("    actions: [notify]\n"), []string{"protected.tags[0]"}},
		{"control characters in name", rule("    name: \"evil\\x1b[2J\"\n    actions: [notify]\n"), []string{`rules[0] "r1".name: contains control characters`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse([]byte(tc.yaml), "t.yaml")
			if err == nil {
				t.Fatalf("Parse accepted the policy: %+v", p)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %T %v", err, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%s", w, msg)
				}
			}
		})
	}
}

// Regression: every problem of a file is reported at once, not just the
// first, and each names its rule.
func TestParseCollectsEveryProblem(t *testing.T) {
	t.Parallel()
	y := `version: ""
cap: {maxIsolations: 3}
defaults: {channels: [pigeon]}
rules:
  - id: a
    match: {severity: [Hgh], titlePattern: "("}
    actions: []
  - id: a
    match: {minSeverty: High}
    actions:
      - isolate: {type: Partial}
`
	_, err := Parse([]byte(y), "many.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"version: required",
		"cap.window: required",
		`defaults.channels[0]: "pigeon"`,
		`rules[0] "a".match.severity[0]`,
		`rules[0] "a".match.titlePattern`,
		`rules[0] "a".actions: at least one action`,
		`rules[1] "a".id: duplicate rule id`,
		`rules[1] "a".match: unknown key "minSeverty"`,
		`rules[1] "a".actions[0].isolate.type: "Partial"`,
		`rules[1] "a".match: is empty but the rule isolates`,
	}
	for _, w := range want {
		found := false
		for _, p := range ve.Problems {
			if strings.Contains(p.Error(), w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem mentions %q; got:\n%v", w, err)
		}
	}
	// The strict decoder's own "not found in type" message is not repeated.
	if strings.Contains(err.Error(), "not found in type") {
		t.Errorf("unknown key reported twice:\n%v", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("errors.As(*FieldError) failed")
	}
	if !strings.HasPrefix(err.Error(), "policy many.yaml: ") {
		t.Errorf("error does not name the source: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want ErrNotExist", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", maxPolicyBytes+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

func TestRuleLookup(t *testing.T) {
	t.Parallel()
	p := Default()
	if r, ok := p.Rule("high-severity-isolate"); !ok || r.Match.Severity[0] != "High" {
		t.Errorf("Rule(high-severity-isolate) = %+v, %v", r, ok)
	}
	if _, ok := p.Rule("absent"); ok {
		t.Error("Rule(absent) found")
	}
}
