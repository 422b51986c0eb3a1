// Package policy is mdeflow's versioned response policy and the safety rails
// that decide whether a machine is cut off the network.
//
// A policy is a YAML file (see examples/policies) validated in full at load:
// every problem is reported with the rule and the field it concerns, and an
// unknown key is an error, so a typo never silently disables a rail.
//
// The package is pure except for Load (reads a file), the Breaker (state in
// a store.Backend) and RunCheck / RunTest (read files, write a report):
//
//   - (*Policy).Evaluate turns (alert, machine, now) into a pipeline.Decision.
//   - CheckIsolation and CheckRelease run the guards, in a fixed order, just
//     before the Defender API is called, and return a typed outcome.
//   - Breaker is the isolation cap (circuit breaker), shared by every
//     instance through the store.
//   - Signer signs and verifies the approve/deny links of an isolation that
//     waits for a human.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Notification channels a policy may name.
const (
	ChannelEmail     = "email"
	ChannelTeams     = "teams"
	ChannelWebhook   = "webhook"
	ChannelOutbox    = "outbox"
	ChannelSMTP      = "smtp"
	ChannelGraphMail = "graphmail"
)

// What happens to an isolation waiting for approval when its links expire.
const (
	OnExpiryDeny    = "deny"
	OnExpiryIsolate = "isolate"
)

const (
	// NoMatchRuleID is the RuleID of a decision where no rule matched.
	NoMatchRuleID = "no-match"
	// DefaultVersion is the version of Default().
	DefaultVersion = "default-1"
	// ProtectedTag is the machine tag that Default() never isolates.
	ProtectedTag = "protected"
	// MaxCap bounds cap.maxIsolations: the breaker keeps one record per
	// isolation of the window in a single store entity.
	MaxCap = 100
	// maxPolicyBytes bounds the policy file.
	maxPolicyBytes = 1 << 20
)

// Policy is a loaded, validated response policy. Build it with Load, Parse
// or Default; a Policy built by hand has no compiled patterns and must not
// be used.
type Policy struct {
	// Version is recorded in every decision.
	Version string `json:"version"`
	// Source is the file the policy came from ("default" for Default()).
	Source string `json:"-"`
	// DryRun makes every mutating action a dry run.
	DryRun    bool      `json:"dryRun"`
	Protected Protected `json:"protected"`
	// Cap is the isolation circuit breaker; nil means no cap.
	Cap *Cap `json:"cap,omitempty"`
	// Approval configures isolations with requireApproval; nil when no rule
	// requires approval.
	Approval *Approval `json:"approval,omitempty"`
	Defaults Defaults  `json:"defaults"`
	Rules    []Rule    `json:"rules"`

	compiled bool
}

// Protected lists the machines that are never isolated.
type Protected struct {
	// Tags: a machine carrying any of these tags (case-insensitive).
	Tags []string `json:"tags,omitempty"`
	// DeviceGroups: machine rbacGroupName (case-insensitive).
	DeviceGroups []string `json:"deviceGroups,omitempty"`
	// NamePatterns: globs ("dc-*", "*.corp.example.com"; * and ? only) or,
	// with the prefix "re:", regular expressions; both case-insensitive and
	// tried on the full DNS name and on the short host name. Globs are
	// anchored; regular expressions are not unless they say so.
	NamePatterns []string `json:"namePatterns,omitempty"`

	names []*regexp.Regexp
}

// Cap is the isolation circuit breaker: at most MaxIsolations isolations in
// any rolling Window; the call that reaches the cap trips the breaker, and
// nothing more is isolated until someone resets it.
type Cap struct {
	MaxIsolations int           `json:"maxIsolations"`
	Window        time.Duration `json:"window"`
}

// Approval configures isolations that wait for a human.
type Approval struct {
	TTL time.Duration `json:"ttl"`
	// OnExpiry is OnExpiryDeny (the default) or OnExpiryIsolate.
	OnExpiry  string   `json:"onExpiry"`
	Approvers []string `json:"approvers,omitempty"`
}

// Defaults fill what a rule leaves out.
type Defaults struct {
	// IsolationType of an isolate action without a type (Full if unset).
	IsolationType string `json:"isolationType"`
	// Channels of a notify action without channels, and of no-match
	// decisions. Required.
	Channels []string `json:"channels"`
}

// Rule is one entry of the policy: when Match holds, Actions run in order.
type Rule struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Match       Match             `json:"match"`
	Actions     []pipeline.Action `json:"actions"`
	// Channels are the channels of the rule's notify action, or the
	// default channels when it has none; outcomes of its actions are
	// reported there.
	Channels []string `json:"channels"`
	DryRun   bool     `json:"dryRun,omitempty"`
	// Stop (default true) ends the evaluation when the rule matches; with
	// false, later matching rules add their actions.
	Stop bool `json:"stop"`
}

// Match is the condition of a rule. Every field that is set must hold
// (AND); a list holds when any of its values does (OR). Comparisons are
// case-insensitive. An empty Match matches every alert.
type Match struct {
	Severity         []string `json:"severity,omitempty"`
	MinSeverity      string   `json:"minSeverity,omitempty"`
	Category         []string `json:"category,omitempty"`
	DetectionSource  []string `json:"detectionSource,omitempty"`
	TitlePattern     string   `json:"titlePattern,omitempty"`
	MitreTechnique   []string `json:"mitreTechnique,omitempty"`
	MachineTagsAny   []string `json:"machineTagsAny,omitempty"`
	MachineTagsNone  []string `json:"machineTagsNone,omitempty"`
	DeviceGroup      []string `json:"deviceGroup,omitempty"`
	OSPlatform       []string `json:"osPlatform,omitempty"`
	RiskScore        []string `json:"riskScore,omitempty"`
	MinRiskScore     string   `json:"minRiskScore,omitempty"`
	ExposureLevel    []string `json:"exposureLevel,omitempty"`
	MinExposureLevel string   `json:"minExposureLevel,omitempty"`

	title *regexp.Regexp
}

// ValidationError lists every problem found in a policy file. It unwraps to
// the individual problems (like errors.Join), each a *FieldError or a YAML
// decoding error.
type ValidationError struct {
	Source   string
	Problems []error
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s: %d problem(s)", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so errors.Is and errors.As see each one.
func (e *ValidationError) Unwrap() []error { return e.Problems }

// FieldError is one problem of a policy, located by its path, e.g.
// `rules[1] "ransomware": match.severity[0]`.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Load reads and validates a policy file.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("loading policy %s: %w", path, err)
	}
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("loading policy %s: file is larger than %d bytes", path, maxPolicyBytes)
	}
	return Parse(data, path)
}

// Parse decodes and validates a policy. source names it in errors. The
// error, when not nil, is a *ValidationError carrying every problem.
func Parse(data []byte, source string) (*Policy, error) {
	if source == "" {
		source = "(inline)"
	}
	fail := func(problems ...error) (*Policy, error) {
		return nil, &ValidationError{Source: source, Problems: problems}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail(&FieldError{Msg: "the policy is empty"})
	}

	// Pass 1: the node tree, to report unknown keys with their path.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fail(fmt.Errorf("parsing YAML: %w", err))
	}
	var problems []error
	unknown := checkKeys(&root, fileDocType, "", &problems)

	// Pass 2: the strict decoder (KnownFields) into the file schema.
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return fail(append(problems, fmt.Errorf("decoding YAML: %w", err))...)
		}
		for _, msg := range te.Errors {
			// Unknown keys were already reported above, with their path;
			// keep the decoder's message only if pass 1 missed it.
			if unknown > 0 && strings.Contains(msg, " not found in type ") {
				continue
			}
			problems = append(problems, errors.New(strings.Replace(msg, "policy.file", "", 1)))
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		problems = append(problems, &FieldError{Msg: "the file holds more than one YAML document; keep one policy per file"})
	} else if !errors.Is(err, io.EOF) {
		problems = append(problems, fmt.Errorf("decoding YAML: %w", err))
	}

	p, vproblems := compile(&doc)
	// An unknown action also leaves its item empty; report it once.
	reported := map[string]bool{}
	for _, pr := range problems {
		if fe, ok := pr.(*FieldError); ok && strings.HasPrefix(fe.Msg, "unknown action") {
			reported[fe.Path] = true
		}
	}
	for _, pr := range vproblems {
		if fe, ok := pr.(*FieldError); ok && reported[fe.Path] && strings.HasPrefix(fe.Msg, "empty action") {
			continue
		}
		problems = append(problems, pr)
	}
	if len(problems) > 0 {
		return fail(problems...)
	}
	p.Source = source
	return p, nil
}

// Default is the seed flow: an alert of severity High isolates its machine
// (Full) and notifies; any other alert only notifies; machines tagged
// "protected" are never isolated; at most 10 isolations per hour. It equals
// examples/policies/default.yaml.
func Default() *Policy {
	doc := fileDoc{
		Version:   DefaultVersion,
		Protected: fileProtected{Tags: []string{ProtectedTag}},
		Cap:       &fileCap{MaxIsolations: 10, Window: "1h"},
		Defaults:  fileDefaults{IsolationType: "Full", Channels: []string{ChannelEmail}},
		Rules: []fileRule{
			{
				ID:          "high-severity-isolate",
				Name:        "Isolate the machine of a high-severity alert",
				Description: "Full isolation, then notify.",
				Match:       fileMatch{Severity: []string{"High"}},
				Actions: []fileAction{
					{Isolate: &fileIsolate{Type: "Full"}},
					{Notify: &fileNotify{}},
				},
			},
			{
				ID:          "notify-others",
				Name:        "Notify every other alert",
				Description: "Alerts below High are only notified.",
				Actions:     []fileAction{{Notify: &fileNotify{}}},
			},
		},
	}
	p, problems := compile(&doc)
	if len(problems) > 0 {
		// Default is a constant; its test makes this unreachable.
		panic(fmt.Sprintf("policy: invalid default policy: %v", errors.Join(problems...)))
	}
	p.Source = "default"
	return p
}

// Rule returns the rule with that id.
func (p *Policy) Rule(id string) (*Rule, bool) {
	for i := range p.Rules {
		if p.Rules[i].ID == id {
			return &p.Rules[i], true
		}
	}
	return nil, false
}
