package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

const maxReasonLen = 2000

// Evaluate decides what to do about an alert. It is a pure function of its
// arguments: no I/O and no clock reads (now only stamps DecidedAt).
//
// Rules are tried in order; the first matching rule wins unless it says
// stop: false, in which case later matching rules add their actions (an
// action type already listed is not added twice; notify channels are
// merged). When no rule matches, the decision is RuleID "no-match" with a
// single notify action on the default channels.
//
// m may be nil (the machine could not be fetched): conditions on machine
// fields then do not hold, and the reason says so. A machine whose id is not
// the alert's machineId is ignored the same way.
//
// The decision does not apply the guards (protected, cap, ...): they run at
// isolation time with fresh state. When the machine is protected, Reason
// warns that the isolation will be skipped.
func (p *Policy) Evaluate(a *mde.Alert, m *mde.Machine, now time.Time) pipeline.Decision {
	d := pipeline.Decision{PolicyVersion: p.Version, DecidedAt: now}
	if !p.compiled {
		return p.noMatch(d, "the policy was not built by Load, Parse or Default; nothing is evaluated")
	}
	if a == nil {
		return p.noMatch(d, "no alert")
	}
	d.AlertID = a.ID
	d.MachineID = a.MachineID
	var notes []string
	if m != nil && a.MachineID != "" && !strings.EqualFold(m.ID, a.MachineID) {
		notes = append(notes, fmt.Sprintf("machine record %q is not the alert's machine %q: evaluated as unknown", clip(m.ID, 64), clip(a.MachineID, 64)))
		m = nil
	}
	if d.MachineID == "" && m != nil {
		d.MachineID = m.ID
	}

	var matched []*Rule
	var why, misses []string
	for i := range p.Rules {
		r := &p.Rules[i]
		ok, reason := r.Match.eval(a, m)
		if !ok {
			misses = append(misses, fmt.Sprintf("%s: %s", r.ID, reason))
			continue
		}
		matched = append(matched, r)
		why = append(why, fmt.Sprintf("rule %q matched: %s", r.ID, reason))
		if r.Stop {
			break
		}
	}
	if len(matched) == 0 {
		if len(misses) > 8 {
			misses = append(misses[:8], fmt.Sprintf("and %d more rules", len(misses)-8))
		}
		reason := "no rule matched (" + strings.Join(misses, "; ") + "); notify only"
		if len(notes) > 0 {
			reason += "; " + strings.Join(notes, "; ")
		}
		return p.noMatch(d, reason)
	}

	var ids, names []string
	allDry := true
	seen := map[string]bool{}
	dropped := 0
	for _, r := range matched {
		ids = append(ids, r.ID)
		if r.Name != "" {
			names = append(names, r.Name)
		}
		allDry = allDry && r.DryRun
		for _, c := range r.Channels {
			if !slices.Contains(d.Channels, c) {
				d.Channels = append(d.Channels, c)
			}
		}
		for _, act := range r.Actions {
			key := act.Type
			if act.Type == pipeline.ActionTag {
				key += "|" + strings.ToLower(act.Tag)
			}
			if seen[key] {
				dropped++
				continue
			}
			seen[key] = true
			if act.Type == pipeline.ActionNotify {
				act.DryRun = false // notifications are how a dry run is observed
			} else {
				act.DryRun = p.DryRun || r.DryRun || act.DryRun
			}
			d.Actions = append(d.Actions, act)
		}
	}
	d.RuleID = strings.Join(ids, "+")
	d.RuleName = strings.Join(names, " + ")
	d.DryRun = p.DryRun || allDry

	switch {
	case p.DryRun:
		notes = append(notes, "dry run: the policy sets dryRun")
	case allDry:
		notes = append(notes, "dry run: the rule sets dryRun")
	default:
		for _, act := range d.Actions {
			if act.DryRun {
				notes = append(notes, fmt.Sprintf("dry run for %s", act.Type))
			}
		}
	}
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("%d action(s) of later rules were already listed and not repeated", dropped))
	}
	if _, iso := d.Has(pipeline.ActionIsolate); iso && m != nil {
		if reason, prot := p.IsProtected(m); prot {
			notes = append(notes, "machine is protected ("+reason+"): the isolation will be skipped")
		}
	}
	reason := strings.Join(why, "; ")
	if len(notes) > 0 {
		reason += "; " + strings.Join(notes, "; ")
	}
	d.Reason = clip(reason, maxReasonLen)
	return d
}

func (p *Policy) noMatch(d pipeline.Decision, reason string) pipeline.Decision {
	d.RuleID = NoMatchRuleID
	d.Actions = []pipeline.Action{{Type: pipeline.ActionNotify}}
	d.Channels = slices.Clone(p.Defaults.Channels)
	d.DryRun = p.DryRun
	d.Reason = clip(reason, maxReasonLen)
	return d
}

// eval reports whether the alert and machine satisfy the match. When they
// do, the string lists what matched; when not, it says the first condition
// that failed.
func (mt *Match) eval(a *mde.Alert, m *mde.Machine) (bool, string) {
	var ok []string
	sev, _ := canon(a.Severity, severities)
	if sev == "" {
		sev = a.Severity
	}
	if len(mt.Severity) > 0 {
		if !containsFold(mt.Severity, a.Severity) {
			return false, fmt.Sprintf("severity %q is not %s", clip(a.Severity, 32), orList(mt.Severity))
		}
		ok = append(ok, "severity "+sev)
	}
	if mt.MinSeverity != "" {
		if rank(sev, severities) < rank(mt.MinSeverity, severities) {
			return false, fmt.Sprintf("severity %q is below %s", clip(a.Severity, 32), mt.MinSeverity)
		}
		ok = append(ok, fmt.Sprintf("severity %s ≥ %s", sev, mt.MinSeverity))
	}
	if len(mt.Category) > 0 {
		if !containsFold(mt.Category, a.Category) {
			return false, fmt.Sprintf("category %q is not %s", clip(a.Category, 64), orList(mt.Category))
		}
		ok = append(ok, fmt.Sprintf("category %q", clip(a.Category, 64)))
	}
	if len(mt.DetectionSource) > 0 {
		if !containsFold(mt.DetectionSource, a.DetectionSource) {
			return false, fmt.Sprintf("detectionSource %q is not %s", clip(a.DetectionSource, 64), orList(mt.DetectionSource))
		}
		ok = append(ok, fmt.Sprintf("detectionSource %q", clip(a.DetectionSource, 64)))
	}
	if mt.TitlePattern != "" {
		if mt.title == nil || !mt.title.MatchString(a.Title) {
			return false, fmt.Sprintf("title does not match /%s/", mt.TitlePattern)
		}
		ok = append(ok, fmt.Sprintf("title matches /%s/", mt.TitlePattern))
	}
	if len(mt.MitreTechnique) > 0 {
		t, found := matchMitre(mt.MitreTechnique, a.MitreTechniques)
		if !found {
			return false, fmt.Sprintf("no MITRE technique of the alert is under %s", orList(mt.MitreTechnique))
		}
		ok = append(ok, fmt.Sprintf("MITRE technique %q", clip(t, 32)))
	}

	need := func(field string) (bool, string) {
		return false, "needs the machine (" + field + ") but the machine is unknown"
	}
	if len(mt.MachineTagsAny) > 0 {
		if m == nil {
			return need("machineTags.any")
		}
		t, found := firstCommonFold(m.MachineTags, mt.MachineTagsAny)
		if !found {
			return false, fmt.Sprintf("machine has none of the tags %s", orList(mt.MachineTagsAny))
		}
		ok = append(ok, fmt.Sprintf("machine tag %q", clip(t, 64)))
	}
	if len(mt.MachineTagsNone) > 0 {
		if m == nil {
			return need("machineTags.none")
		}
		if t, found := firstCommonFold(m.MachineTags, mt.MachineTagsNone); found {
			return false, fmt.Sprintf("machine has the excluded tag %q", clip(t, 64))
		}
		ok = append(ok, "machine has none of the excluded tags")
	}
	if len(mt.DeviceGroup) > 0 {
		// The group is on the alert too; the machine's wins when known.
		group, from := mde.Str(a.RbacGroupName), "alert"
		if m != nil {
			group, from = mde.Str(m.RbacGroupName), "machine"
		}
		if !containsFold(mt.DeviceGroup, group) {
			return false, fmt.Sprintf("device group %q (%s) is not %s", clip(group, 64), from, orList(mt.DeviceGroup))
		}
		ok = append(ok, fmt.Sprintf("device group %q", clip(group, 64)))
	}
	if len(mt.OSPlatform) > 0 {
		if m == nil {
			return need("osPlatform")
		}
		if !containsFold(mt.OSPlatform, m.OSPlatform) {
			return false, fmt.Sprintf("osPlatform %q is not %s", clip(m.OSPlatform, 64), orList(mt.OSPlatform))
		}
		ok = append(ok, fmt.Sprintf("osPlatform %q", clip(m.OSPlatform, 64)))
	}
	if len(mt.RiskScore) > 0 || mt.MinRiskScore != "" {
		if m == nil {
			return need("riskScore")
		}
		if hit, why := levelMatch("riskScore", m.RiskScore, mt.RiskScore, mt.MinRiskScore, riskScores); !hit {
			return false, why
		} else {
			ok = append(ok, why)
		}
	}
	if len(mt.ExposureLevel) > 0 || mt.MinExposureLevel != "" {
		if m == nil {
			return need("exposureLevel")
		}
		if hit, why := levelMatch("exposureLevel", m.ExposureLevel, mt.ExposureLevel, mt.MinExposureLevel, exposureLevels); !hit {
			return false, why
		} else {
			ok = append(ok, why)
		}
	}
	if len(ok) == 0 {
		return true, "the rule matches every alert"
	}
	return true, strings.Join(ok, ", ")
}

func levelMatch(field string, v *string, list []string, lowest string, order []string) (bool, string) {
	if v == nil || *v == "" {
		return false, "machine has no " + field
	}
	val := clip(*v, 32)
	if len(list) > 0 {
		if !containsFold(list, *v) {
			return false, fmt.Sprintf("%s %q is not %s", field, val, orList(list))
		}
		return true, fmt.Sprintf("%s %s", field, val)
	}
	r := rank(*v, order)
	if r < 0 || r < rank(lowest, order) {
		return false, fmt.Sprintf("%s %q is below %s", field, val, lowest)
	}
	return true, fmt.Sprintf("%s %s ≥ %s", field, val, lowest)
}

// matchMitre: a rule technique matches the same id or a sub-technique of it
// (T1003 matches T1003.001, not T10030).
func matchMitre(rule, alert []string) (string, bool) {
	for _, t := range alert {
		u := strings.ToUpper(strings.TrimSpace(t))
		for _, r := range rule {
			if u == r || strings.HasPrefix(u, r+".") {
				return t, true
			}
		}
	}
	return "", false
}

func firstCommonFold(have, want []string) (string, bool) {
	for _, h := range have {
		if containsFold(want, h) {
			return h, true
		}
	}
	return "", false
}

// rank is the position of v in order (case-insensitive), -1 if absent.
func rank(v string, order []string) int {
	for i, o := range order {
		if strings.EqualFold(v, o) {
			return i
		}
	}
	return -1
}

func orList(vs []string) string {
	if len(vs) == 1 {
		return fmt.Sprintf("%q", vs[0])
	}
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "one of " + strings.Join(q, ", ")
}

// IsProtected reports whether the machine must never be isolated, and why
// (which tag, group or name pattern).
func (p *Policy) IsProtected(m *mde.Machine) (string, bool) {
	if m == nil {
		return "", false
	}
	return p.Protected.check(m, m.ComputerDNSName)
}

func (pr *Protected) check(m *mde.Machine, names ...string) (string, bool) {
	if m != nil {
		for _, t := range m.MachineTags {
			if containsFold(pr.Tags, strings.TrimSpace(t)) {
				return fmt.Sprintf("tag %q", clip(t, 64)), true
			}
		}
		if g := mde.Str(m.RbacGroupName); g != "" && containsFold(pr.DeviceGroups, strings.TrimSpace(g)) {
			return fmt.Sprintf("device group %q", clip(g, 64)), true
		}
	}
	for _, n := range names {
		n = strings.TrimSuffix(strings.TrimSpace(n), ".")
		if n == "" {
			continue
		}
		short, _, _ := strings.Cut(n, ".")
		for i, re := range pr.names {
			if re.MatchString(n) || re.MatchString(short) {
				return fmt.Sprintf("name %q matches %q", clip(n, 64), pr.NamePatterns[i]), true
			}
		}
	}
	return "", false
}
