package policy

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Enumerations the policy is checked against (defender-api.md §2.3, §2.4,
// §2.7, §3.2, §4.1). Values are accepted case-insensitively and stored in
// the spelling listed here.
var (
	severities     = []string{mde.SeverityUnSpecified, mde.SeverityInformational, mde.SeverityLow, mde.SeverityMedium, mde.SeverityHigh}
	riskScores     = []string{"None", "Informational", "Low", "Medium", "High"}
	exposureLevels = []string{"None", "Low", "Medium", "High"}
	isolationTypes = []string{mde.IsolationFull, mde.IsolationSelective}
	scanTypes      = []string{"Quick", "Full"}
	channels       = []string{ChannelEmail, ChannelTeams, ChannelWebhook, ChannelOutbox, ChannelSMTP, ChannelGraphMail}
	onExpiries     = []string{OnExpiryDeny, OnExpiryIsolate}
	// Statuses an alert can be PATCHed to (§2.7; "Unknown" is read-only).
	updateStatuses  = []string{"New", "InProgress", "Resolved"}
	classifications = []string{"TruePositive", "InformationalExpectedActivity", "FalsePositive"}
	// determinations per classification. Both documented spellings are
	// accepted (§2.4): ConfirmedActivity = ConfirmedUserActivity,
	// NotMalicious = Clean. They are passed to the API as written.
	determinations = map[string][]string{
		"TruePositive":                  {"MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing", "UnwantedSoftware", "Other"},
		"InformationalExpectedActivity": {"SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "ConfirmedActivity", "Other"},
		"FalsePositive":                 {"Clean", "NotMalicious", "InsufficientData", "Other"},
	}
	deprecatedDeterminations = []string{"Apt", "SecurityPersonnel"}

	ruleIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	versionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$`)
	mitreRe   = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)
)

const (
	maxApprovalTTL = 7 * 24 * time.Hour
	minApprovalTTL = time.Minute
	maxCapWindow   = 30 * 24 * time.Hour
	maxPatternLen  = 1024
	maxTextLen     = 2000
	maxValueLen    = 256
)

type checker struct{ problems []error }

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// enum returns the canonical spelling of v in allowed, or reports it.
func (c *checker) enum(path, what, v string, allowed []string) (string, bool) {
	if s, ok := canon(v, allowed); ok {
		return s, true
	}
	c.add(path, "%q is not a valid %s (want one of %s)", clip(v, 64), what, strings.Join(allowed, ", "))
	return "", false
}

func (c *checker) enumList(path, what string, vs []string, allowed []string) []string {
	var out []string
	seen := map[string]bool{}
	for i, v := range vs {
		s, ok := c.enum(fmt.Sprintf("%s[%d]", path, i), what, v, allowed)
		if !ok {
			continue
		}
		if seen[s] {
			c.add(fmt.Sprintf("%s[%d]", path, i), "%s is listed twice", s)
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// textList checks free values (categories, groups...): non-empty, printable.
func (c *checker) textList(path string, vs []string) []string {
	var out []string
	for i, v := range vs {
		p := fmt.Sprintf("%s[%d]", path, i)
		v = strings.TrimSpace(v)
		switch {
		case v == "":
			c.add(p, "empty value")
		case len(v) > maxValueLen:
			c.add(p, "longer than %d characters", maxValueLen)
		case hasControl(v, false):
			c.add(p, "contains control characters")
		default:
			out = append(out, v)
		}
	}
	return out
}

func (c *checker) text(path, v string, multiline bool) string {
	if len(v) > maxTextLen {
		c.add(path, "longer than %d characters", maxTextLen)
	}
	if hasControl(v, multiline) {
		c.add(path, "contains control characters")
	}
	return v
}

func (c *checker) duration(path, v string, lo, hi time.Duration) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		c.add(path, "%q is not a duration (write e.g. \"30m\", \"1h\", \"24h\")", clip(v, 64))
		return 0
	}
	if d < lo || d > hi {
		c.add(path, "%s is out of range (%s to %s)", d, lo, hi)
		return 0
	}
	return d
}

func (c *checker) tags(path string, vs []string) []string {
	var out []string
	for i, v := range vs {
		if err := mde.ValidateTag(v); err != nil || strings.TrimSpace(v) == "" {
			c.add(fmt.Sprintf("%s[%d]", path, i), "%q is not a valid machine tag (1 to 200 printable characters)", clip(v, 64))
			continue
		}
		out = append(out, v)
	}
	return out
}

// compile validates the file schema and builds the Policy, collecting every
// problem.
func compile(doc *fileDoc) (*Policy, []error) {
	c := &checker{}
	p := &Policy{DryRun: doc.DryRun, compiled: true}

	switch v := strings.TrimSpace(doc.Version); {
	case v == "":
		c.add("version", "required (a string recorded in every decision, e.g. \"2025-03-01\")")
	case !versionRe.MatchString(v):
		c.add("version", "%q must be 1 to 64 letters, digits or . _ : + -", clip(v, 64))
	default:
		p.Version = v
	}

	// protected
	p.Protected.Tags = c.tags("protected.tags", doc.Protected.Tags)
	p.Protected.DeviceGroups = c.textList("protected.deviceGroups", doc.Protected.DeviceGroups)
	for i, pat := range doc.Protected.NamePatterns {
		path := fmt.Sprintf("protected.namePatterns[%d]", i)
		re, err := compileNamePattern(pat)
		if err != nil {
			c.add(path, "%v", err)
			continue
		}
		p.Protected.NamePatterns = append(p.Protected.NamePatterns, pat)
		p.Protected.names = append(p.Protected.names, re)
	}

	// cap
	if doc.Cap != nil {
		cp := &Cap{}
		if doc.Cap.MaxIsolations < 1 || doc.Cap.MaxIsolations > MaxCap {
			c.add("cap.maxIsolations", "%d is out of range (1 to %d; remove the cap section to run without a breaker)", doc.Cap.MaxIsolations, MaxCap)
		}
		cp.MaxIsolations = doc.Cap.MaxIsolations
		if strings.TrimSpace(doc.Cap.Window) == "" {
			c.add("cap.window", "required when cap is set (e.g. \"1h\"): the cap counts isolations in a rolling window")
		} else {
			cp.Window = c.duration("cap.window", doc.Cap.Window, time.Minute, maxCapWindow)
		}
		p.Cap = cp
	}

	// approval
	if doc.Approval != nil {
		ap := &Approval{OnExpiry: OnExpiryDeny}
		if strings.TrimSpace(doc.Approval.TTL) == "" {
			c.add("approval.ttl", "required (how long approve/deny links stay valid, e.g. \"4h\")")
		} else {
			ap.TTL = c.duration("approval.ttl", doc.Approval.TTL, minApprovalTTL, maxApprovalTTL)
		}
		if doc.Approval.OnExpiry != "" {
			ap.OnExpiry, _ = c.enum("approval.onExpiry", "onExpiry", doc.Approval.OnExpiry, onExpiries)
		}
		for i, a := range doc.Approval.Approvers {
			path := fmt.Sprintf("approval.approvers[%d]", i)
			a = strings.TrimSpace(a)
			if a == "" || len(a) > maxValueLen || !strings.Contains(a, "@") || strings.ContainsFunc(a, unicode.IsSpace) || hasControl(a, false) {
				c.add(path, "%q is not a user principal name or e-mail address", clip(a, 64))
				continue
			}
			ap.Approvers = append(ap.Approvers, a)
		}
		p.Approval = ap
	}

	// defaults
	p.Defaults.IsolationType = mde.IsolationFull
	if doc.Defaults.IsolationType != "" {
		if s, ok := c.enum("defaults.isolationType", "isolation type", doc.Defaults.IsolationType, isolationTypes); ok {
			p.Defaults.IsolationType = s
		}
	}
	if len(doc.Defaults.Channels) == 0 {
		c.add("defaults.channels", "required: at least one channel (alerts no rule matches are notified there)")
	}
	p.Defaults.Channels = c.enumList("defaults.channels", "channel", doc.Defaults.Channels, channels)

	// rules
	if len(doc.Rules) == 0 {
		c.add("rules", "at least one rule is required")
	}
	ids := map[string]int{}
	for i := range doc.Rules {
		fr := &doc.Rules[i]
		path := fmt.Sprintf("rules[%d]", i)
		if fr.ID != "" {
			path = fmt.Sprintf("rules[%d] %q", i, clip(fr.ID, 64))
		}
		switch {
		case fr.ID == "":
			c.add(path+".id", "required")
		case !ruleIDRe.MatchString(fr.ID):
			c.add(path+".id", "must be 1 to 64 letters, digits or . _ - (starting with a letter or digit)")
		case strings.EqualFold(fr.ID, NoMatchRuleID):
			c.add(path+".id", "%q is reserved for decisions where no rule matched", NoMatchRuleID)
		default:
			if j, dup := ids[strings.ToLower(fr.ID)]; dup {
				c.add(path+".id", "duplicate rule id (also rules[%d])", j)
			}
			ids[strings.ToLower(fr.ID)] = i
		}
		p.Rules = append(p.Rules, c.rule(path, fr, doc, p))
	}
	return p, c.problems
}

func (c *checker) rule(path string, fr *fileRule, doc *fileDoc, p *Policy) Rule {
	r := Rule{
		ID:          fr.ID,
		Name:        c.text(path+".name", strings.TrimSpace(fr.Name), false),
		Description: c.text(path+".description", strings.TrimSpace(fr.Description), true),
		DryRun:      fr.DryRun,
		Stop:        fr.Stop == nil || *fr.Stop,
	}
	r.Match = c.match(path+".match", &fr.Match)

	if len(fr.Actions) == 0 {
		c.add(path+".actions", "at least one action is required")
	}
	seen := map[string]int{}
	for i := range fr.Actions {
		apath := fmt.Sprintf("%s.actions[%d]", path, i)
		a, chans, ok := c.action(apath, &fr.Actions[i], doc, p)
		if !ok {
			continue
		}
		key := a.Type
		if a.Type == pipeline.ActionTag {
			key += "|" + strings.ToLower(a.Tag)
		}
		if j, dup := seen[key]; dup {
			c.add(apath, "%s is already listed as actions[%d]", a.Type, j)
			continue
		}
		seen[key] = i
		if a.Type == pipeline.ActionNotify {
			r.Channels = chans
		}
		r.Actions = append(r.Actions, a)
	}
	if r.Channels == nil {
		r.Channels = p.Defaults.Channels
	}
	if _, isolates := seen[pipeline.ActionIsolate]; isolates && fr.Match.empty() {
		c.add(path+".match", "is empty but the rule isolates: it would isolate the machine of every alert; add a condition (e.g. minSeverity: High)")
	}
	return r
}

func (fm *fileMatch) empty() bool {
	return len(fm.Severity) == 0 && fm.MinSeverity == "" && len(fm.Category) == 0 &&
		len(fm.DetectionSource) == 0 && fm.TitlePattern == "" && len(fm.MitreTechnique) == 0 &&
		len(fm.MachineTags.Any) == 0 && len(fm.MachineTags.None) == 0 && len(fm.DeviceGroup) == 0 &&
		len(fm.OSPlatform) == 0 && len(fm.RiskScore) == 0 && fm.MinRiskScore == "" &&
		len(fm.ExposureLevel) == 0 && fm.MinExposureLevel == ""
}

func (c *checker) match(path string, fm *fileMatch) Match {
	var m Match
	m.Severity = c.enumList(path+".severity", "severity", fm.Severity, severities)
	if fm.MinSeverity != "" {
		m.MinSeverity, _ = c.enum(path+".minSeverity", "severity", fm.MinSeverity, severities)
		if len(fm.Severity) > 0 {
			c.add(path, "use severity or minSeverity, not both")
		}
	}
	m.Category = c.textList(path+".category", fm.Category)
	m.DetectionSource = c.textList(path+".detectionSource", fm.DetectionSource)
	if fm.TitlePattern != "" {
		switch re, err := regexp.Compile("(?i)" + fm.TitlePattern); {
		case len(fm.TitlePattern) > maxPatternLen:
			c.add(path+".titlePattern", "longer than %d characters", maxPatternLen)
		case err != nil:
			c.add(path+".titlePattern", "not a valid regular expression: %v", err)
		default:
			m.TitlePattern, m.title = fm.TitlePattern, re
		}
	}
	for i, t := range fm.MitreTechnique {
		u := strings.ToUpper(strings.TrimSpace(t))
		if !mitreRe.MatchString(u) {
			c.add(fmt.Sprintf("%s.mitreTechnique[%d]", path, i), "%q is not a MITRE ATT&CK technique id (T1234 or T1234.001)", clip(t, 64))
			continue
		}
		m.MitreTechnique = append(m.MitreTechnique, u)
	}
	m.MachineTagsAny = c.tags(path+".machineTags.any", fm.MachineTags.Any)
	m.MachineTagsNone = c.tags(path+".machineTags.none", fm.MachineTags.None)
	for _, a := range m.MachineTagsAny {
		if containsFold(m.MachineTagsNone, a) {
			c.add(path+".machineTags", "tag %q is in both any and none: the rule can never match", a)
		}
	}
	m.DeviceGroup = c.textList(path+".deviceGroup", fm.DeviceGroup)
	m.OSPlatform = c.textList(path+".osPlatform", fm.OSPlatform)
	m.RiskScore = c.enumList(path+".riskScore", "risk score", fm.RiskScore, riskScores)
	if fm.MinRiskScore != "" {
		m.MinRiskScore, _ = c.enum(path+".minRiskScore", "risk score", fm.MinRiskScore, riskScores)
		if len(fm.RiskScore) > 0 {
			c.add(path, "use riskScore or minRiskScore, not both")
		}
	}
	m.ExposureLevel = c.enumList(path+".exposureLevel", "exposure level", fm.ExposureLevel, exposureLevels)
	if fm.MinExposureLevel != "" {
		m.MinExposureLevel, _ = c.enum(path+".minExposureLevel", "exposure level", fm.MinExposureLevel, exposureLevels)
		if len(fm.ExposureLevel) > 0 {
			c.add(path, "use exposureLevel or minExposureLevel, not both")
		}
	}
	return m
}

// action validates one action item. For notify it also returns the
// resolved channels.
func (c *checker) action(path string, fa *fileAction, doc *fileDoc, p *Policy) (pipeline.Action, []string, bool) {
	var kinds []string
	var a pipeline.Action
	var chans []string
	if x := fa.Isolate; x != nil {
		kinds = append(kinds, "isolate")
		a = pipeline.Action{Type: pipeline.ActionIsolate, IsolationType: p.Defaults.IsolationType, RequireApproval: x.RequireApproval, DryRun: x.DryRun}
		if x.Type != "" {
			a.IsolationType, _ = c.enum(path+".isolate.type", "isolation type", x.Type, isolationTypes)
		}
		if x.RequireApproval && doc.Approval == nil {
			c.add(path+".isolate.requireApproval", "needs an approval section (approval.ttl, approval.onExpiry)")
		}
	}
	if x := fa.RestrictCodeExecution; x != nil {
		kinds = append(kinds, "restrictCodeExecution")
		a = pipeline.Action{Type: pipeline.ActionRestrict, DryRun: x.DryRun}
	}
	if x := fa.RunAntiVirusScan; x != nil {
		kinds = append(kinds, "runAntiVirusScan")
		a = pipeline.Action{Type: pipeline.ActionAVScan, ScanType: "Quick", DryRun: x.DryRun}
		if x.ScanType != "" {
			a.ScanType, _ = c.enum(path+".runAntiVirusScan.scanType", "scan type", x.ScanType, scanTypes)
		}
	}
	if x := fa.CollectInvestigationPackage; x != nil {
		kinds = append(kinds, "collectInvestigationPackage")
		a = pipeline.Action{Type: pipeline.ActionCollectPackage, DryRun: x.DryRun}
	}
	if x := fa.Tag; x != nil {
		kinds = append(kinds, "tag")
		a = pipeline.Action{Type: pipeline.ActionTag, Tag: x.Value, DryRun: x.DryRun}
		if err := mde.ValidateTag(x.Value); err != nil || strings.TrimSpace(x.Value) == "" {
			c.add(path+".tag.value", "%q is not a valid machine tag (1 to 200 printable characters)", clip(x.Value, 64))
		}
	}
	if x := fa.UpdateAlert; x != nil {
		kinds = append(kinds, "updateAlert")
		a = c.updateAlert(path+".updateAlert", x)
	}
	if x := fa.Notify; x != nil {
		kinds = append(kinds, "notify")
		a = pipeline.Action{Type: pipeline.ActionNotify}
		chans = c.enumList(path+".notify.channels", "channel", x.Channels, channels)
		if len(x.Channels) == 0 {
			chans = p.Defaults.Channels
		}
	}
	switch len(kinds) {
	case 0:
		c.add(path, "empty action (write one of isolate, restrictCodeExecution, runAntiVirusScan, collectInvestigationPackage, tag, updateAlert, notify)")
		return a, nil, false
	case 1:
		return a, chans, true
	default:
		c.add(path, "one action per list item, found %s (start each with \"- \")", strings.Join(kinds, ", "))
		return a, nil, false
	}
}

func (c *checker) updateAlert(path string, x *fileUpdateAlert) pipeline.Action {
	a := pipeline.Action{Type: pipeline.ActionUpdateAlert, DryRun: x.DryRun}
	if x.Status != "" {
		a.Status, _ = c.enum(path+".status", "alert status", x.Status, updateStatuses)
	}
	if x.Classification != "" {
		a.Classification, _ = c.enum(path+".classification", "classification", x.Classification, classifications)
	}
	if x.Determination != "" {
		a.Determination = c.determination(path+".determination", x.Determination, x.Classification, a.Classification)
	}
	a.AssignedTo = strings.TrimSpace(x.AssignedTo)
	if len(a.AssignedTo) > maxValueLen || hasControl(a.AssignedTo, false) {
		c.add(path+".assignedTo", "must be at most %d printable characters", maxValueLen)
	}
	a.Comment = c.text(path+".comment", strings.TrimSpace(x.Comment), true)
	if a.Status == "" && a.Classification == "" && a.Determination == "" && a.AssignedTo == "" && a.Comment == "" &&
		x.Status == "" && x.Classification == "" && x.Determination == "" {
		c.add(path, "sets nothing (give status, assignedTo, classification, determination or comment)")
	}
	return a
}

func (c *checker) determination(path, v, rawClass, class string) string {
	if _, dep := canon(v, deprecatedDeterminations); dep {
		c.add(path, "%q is deprecated by Microsoft; use another determination", v)
		return ""
	}
	if class != "" {
		s, _ := c.enum(path, "determination for "+class, v, determinations[class])
		return s
	}
	if rawClass != "" {
		return "" // the classification itself is already reported
	}
	for _, cl := range classifications {
		if s, ok := canon(v, determinations[cl]); ok {
			return s
		}
	}
	var all []string
	for _, cl := range classifications {
		all = append(all, determinations[cl]...)
	}
	c.add(path, "%q is not a valid determination (want one of %s)", clip(v, 64), strings.Join(dedupe(all), ", "))
	return ""
}

// compileNamePattern turns a protected name pattern into a case-insensitive
// regular expression: "re:<regexp>" as written, anything else a glob where
// * and ? are the only wildcards and the whole name must match.
func compileNamePattern(pat string) (*regexp.Regexp, error) {
	if strings.TrimSpace(pat) == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	if len(pat) > maxPatternLen {
		return nil, fmt.Errorf("longer than %d characters", maxPatternLen)
	}
	if expr, ok := strings.CutPrefix(pat, "re:"); ok {
		if strings.TrimSpace(expr) == "" {
			return nil, fmt.Errorf("empty regular expression after \"re:\"")
		}
		re, err := regexp.Compile("(?i)" + expr)
		if err != nil {
			return nil, fmt.Errorf("not a valid regular expression: %v", err)
		}
		return re, nil
	}
	if hasControl(pat, false) {
		return nil, fmt.Errorf("contains control characters")
	}
	var b strings.Builder
	b.WriteString("(?i)^")
	for _, r := range pat {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func canon(v string, allowed []string) (string, bool) {
	v = strings.TrimSpace(v)
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a, true
		}
	}
	return "", false
}

func containsFold(list []string, v string) bool {
	for _, s := range list {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

func dedupe(vs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// hasControl reports C0/C1 control characters and Unicode format characters
// (bidi overrides...). multiline allows \n, \r and \t.
func hasControl(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			return true
		}
	}
	return false
}
