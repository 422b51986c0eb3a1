package hunt

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// Problem is one finding of Check. Errors make a hunt not runnable;
// warnings are printed and do not block.
type Problem struct {
	// Code is stable, for tests and tooling: no-query, bad-id,
	// sentinel-table, unknown-table, table-case, api-table,
	// time-generated, sentinel-function, bad-duration, period-too-long,
	// short-frequency, gap, bad-trigger, bad-severity, deprecated,
	// unscoped-wildcard, no-tables, default-frequency, bad-title-template,
	// bad-tag, device-column, bad-max-rows, unknown-api.
	Code    string
	Message string
	Warning bool
}

func (p Problem) String() string {
	if p.Warning {
		return "warning: " + p.Message
	}
	return "error: " + p.Message
}

// Runnable reports whether problems contain no error.
func Runnable(problems []Problem) bool {
	for _, p := range problems {
		if !p.Warning {
			return false
		}
	}
	return true
}

// MaxPeriod is the advanced hunting data retention: a period beyond it
// cannot be honoured.
const MaxPeriod = 30 * 24 * time.Hour

// minFrequency is the shortest schedule Sentinel allows; shorter ones burn
// the 45 calls/min and CPU quotas for little gain.
const minFrequency = 5 * time.Minute

// sentinelFunctions are Log Analytics functions that Defender advanced
// hunting does not have.
var sentinelFunctions = map[string]string{
	"_GetWatchlist":      "Sentinel watchlists",
	"_GetWatchlistAlias": "Sentinel watchlists",
	"workspace":          "cross-workspace queries",
	"app":                "cross-resource queries",
	"cluster":            "cross-cluster queries",
	"database":           "cross-database queries",
	"adx":                "Azure Data Explorer cross-service queries",
}

// Check reports whether h can run through api (APIMDE, APIGraph or APIXDR)
// and why not. It looks at the query text (source tables, TimeGenerated,
// Sentinel-only functions), the durations, the trigger and the mdeflow
// block. It is pure and cheap.
func Check(h Hunt, api string) []Problem {
	var ps []Problem
	add := func(code string, warning bool, format string, args ...any) {
		ps = append(ps, Problem{Code: code, Message: fmt.Sprintf(format, args...), Warning: warning})
	}
	if !contains(APIs, api) {
		add("unknown-api", false, "unknown API %q (use %s)", api, strings.Join(APIs, ", "))
	}
	switch {
	case h.ID == "":
		add("bad-id", false, "hunt has no id")
	case !validHuntID.MatchString(h.ID):
		add("bad-id", false, "hunt id %q must be 1-128 letters, digits, '.', '_' or '-'", h.ID)
	}
	if strings.TrimSpace(h.Query) == "" {
		add("no-query", false, "hunt has no query")
	} else {
		ps = append(ps, checkQuery(h.Query, api)...)
	}
	ps = append(ps, checkSchedule(h)...)
	switch h.TriggerOperator {
	case "gt", "lt", "eq", "ne", "":
	default:
		add("bad-trigger", false, "triggerOperator %q is not gt, lt, eq or ne", h.TriggerOperator)
	}
	if h.TriggerThreshold < 0 {
		add("bad-trigger", false, "triggerThreshold %d is negative", h.TriggerThreshold)
	}
	if h.Severity != "" {
		if _, ok := mdeSeverity(h.Severity); !ok {
			add("bad-severity", true, "severity %q is not Informational, Low, Medium or High; alerts use Medium", h.Severity)
		}
	}
	if strings.EqualFold(h.Status, "Deprecated") {
		add("deprecated", true, "the published rule is marked Deprecated")
	}
	if h.MaxRowsInDigest < 0 {
		add("bad-max-rows", false, "mdeflow.maxRowsInDigest %d is negative", h.MaxRowsInDigest)
	}
	if tag := h.OnHits.TagDevice; tag != "" {
		if err := mde.ValidateTag(tag); err != nil {
			add("bad-tag", false, "mdeflow.onHits.tagDevice: %v", err)
		}
	}
	if ra := h.OnHits.RaiseAlerts; ra != nil {
		if ra.Severity != "" {
			if _, ok := mdeSeverity(ra.Severity); !ok {
				add("bad-severity", false, "mdeflow.onHits.raiseAlerts.severity %q is not Informational, Low, Medium or High", ra.Severity)
			}
		}
		if _, err := parseTitleTemplate(ra.TitleTemplate); err != nil {
			add("bad-title-template", false, "mdeflow.onHits.raiseAlerts.titleTemplate: %v", err)
		}
		if q := h.Query; q != "" {
			if reshapesColumns(q) && !analyzeKQL(q).idents[ra.DeviceIDColumn] {
				add("device-column", true, "raiseAlerts needs column %s but the query projects or summarizes without naming it", ra.DeviceIDColumn)
			}
		}
	}
	return ps
}

// reshapesColumns reports whether the query chooses its output columns
// (project, summarize, distinct), so a column it never names is not in the
// results. project-away/-rename/-reorder/-keep do not count.
func reshapesColumns(q string) bool {
	toks := lexKQL(q)
	for i, t := range toks {
		if t.kind != tokIdent || i == 0 || toks[i-1].text != "|" {
			continue
		}
		switch t.text {
		case "summarize", "distinct":
			return true
		case "project":
			if i+1 >= len(toks) || toks[i+1].text != "-" || t.spaceAfter {
				return true
			}
		}
	}
	return false
}

func checkQuery(q, api string) []Problem {
	var ps []Problem
	add := func(code string, warning bool, format string, args ...any) {
		ps = append(ps, Problem{Code: code, Message: fmt.Sprintf(format, args...), Warning: warning})
	}
	info := analyzeKQL(q)
	seen := map[string]bool{}
	for _, r := range info.tables {
		if seen[r.name] {
			continue
		}
		seen[r.name] = true
		if r.wildcard {
			apis := wildcardAPIs(r.name)
			switch {
			case apis == nil:
				add("unknown-table", false, "union %s matches no Defender advanced hunting table", r.name)
			case !contains(apis, api):
				add("api-table", false, "union %s matches no table available through the %s API, only through %s", r.name, apiLabel(api), apiList(apis))
			case api == APIMDE:
				add("unscoped-wildcard", true, "union %s cannot be limited to the hunt period on the MDE API (no timespan parameter); filter Timestamp in the query", r.name)
			}
			continue
		}
		apis := schemaAPIs(r.name)
		switch {
		case apis != nil && !contains(apis, api) && contains(APIs, api):
			add("api-table", false, "table %s is not available through the %s API, only through %s", r.name, apiLabel(api), apiList(apis))
		case apis != nil:
		case sentinelTables[r.name]:
			add("sentinel-table", false, "table %s is a Microsoft Sentinel/Log Analytics table, not in the Defender advanced hunting schema", r.name)
		case tableCaseMatch(r.name) != "":
			add("table-case", false, "table %s is spelled %s in the hunting schema (KQL names are case-sensitive)", r.name, tableCaseMatch(r.name))
		default:
			add("unknown-table", false, "table %s is not in the Defender advanced hunting schema", r.name)
		}
	}
	if len(info.tables) == 0 {
		add("no-tables", true, "no source table found in the query")
	}
	if info.idents["TimeGenerated"] {
		add("time-generated", false, "the query uses TimeGenerated; the Defender hunting schema has Timestamp")
	}
	reported := map[string]bool{}
	for _, c := range info.calls {
		what, ok := sentinelFunctions[c.name]
		if !ok && (strings.HasPrefix(c.name, "_ASim") || strings.HasPrefix(c.name, "_Im_") || strings.HasPrefix(c.name, "_im_")) {
			what, ok = "ASIM parsers", true
		}
		if ok && !reported[c.name] {
			reported[c.name] = true
			add("sentinel-function", false, "%s() (%s) exists only in Microsoft Sentinel / Log Analytics", c.name, what)
		}
	}
	return ps
}

func checkSchedule(h Hunt) []Problem {
	var ps []Problem
	add := func(code string, warning bool, format string, args ...any) {
		ps = append(ps, Problem{Code: code, Message: fmt.Sprintf(format, args...), Warning: warning})
	}
	fields := []struct{ name, value string }{
		{"queryFrequency", h.QueryFrequency}, {"queryPeriod", h.QueryPeriod},
	}
	if m := h.MDEFlow; m != nil {
		fields = append(fields, struct{ name, value string }{"mdeflow.frequency", m.Frequency},
			struct{ name, value string }{"mdeflow.period", m.Period})
	}
	bad := false
	for _, f := range fields {
		if f.value == "" {
			continue
		}
		d, err := ParseDuration(f.value)
		if err != nil {
			bad = true
			add("bad-duration", false, "%s %q: %v", f.name, f.value, errors.Unwrap(err))
			continue
		}
		if strings.HasSuffix(f.name, "eriod") && d > MaxPeriod {
			add("period-too-long", false, "%s %s is longer than the 30 days advanced hunting keeps", f.name, humanDuration(d))
		}
	}
	if bad {
		return ps
	}
	switch {
	case h.Frequency <= 0 || h.Period <= 0:
		add("bad-duration", false, "no usable frequency and period")
		return ps
	case h.Period > MaxPeriod:
		if !hasCode(ps, "period-too-long") {
			add("period-too-long", false, "period %s is longer than the 30 days advanced hunting keeps", humanDuration(h.Period))
		}
	}
	if h.FrequencyDefaulted {
		add("default-frequency", true, "no queryFrequency: runs every %s over the last %s (catalog default)", humanDuration(h.Frequency), humanDuration(h.Period))
	}
	if h.Frequency < minFrequency {
		add("short-frequency", true, "frequency %s is shorter than 5m; it spends the hunting quota fast", humanDuration(h.Frequency))
	}
	if h.Period < h.Frequency {
		add("gap", true, "period %s is shorter than frequency %s: events between runs are never seen", humanDuration(h.Period), humanDuration(h.Frequency))
	}
	return ps
}

func hasCode(ps []Problem, code string) bool {
	for _, p := range ps {
		if p.Code == code {
			return true
		}
	}
	return false
}

func apiLabel(api string) string {
	switch api {
	case APIMDE:
		return "MDE advancedqueries"
	case APIGraph:
		return "Graph runHuntingQuery"
	case APIXDR:
		return "XDR advancedhunting"
	}
	return api
}

func apiList(apis []string) string {
	labels := make([]string, len(apis))
	for i, a := range apis {
		labels[i] = apiLabel(a)
	}
	return strings.Join(labels, " or ")
}

// RunnableVia lists the APIs through which h passes Check.
func RunnableVia(h Hunt) []string {
	var out []string
	for _, api := range APIs {
		if Runnable(Check(h, api)) {
			out = append(out, api)
		}
	}
	return out
}

// ErrCheckFailed is returned (wrapped) by RunCheck when a file is not a
// runnable hunt.
var ErrCheckFailed = errors.New("hunt catalog check failed")

// RunCheck loads dir and prints, for each file, whether it can run through
// api and why not. It returns an error wrapping ErrCheckFailed when an
// enabled hunt is not runnable or a file is not a hunt; disabled hunts are
// listed but do not fail the check.
func RunCheck(w io.Writer, dir string, api string) error {
	cat, err := LoadDir(dir)
	if err != nil {
		return err
	}
	return WriteCheck(w, cat, api)
}

// WriteCheck is RunCheck on an already loaded catalog.
func WriteCheck(w io.Writer, cat Catalog, api string) error {
	type entry struct {
		file  string
		lines []string
	}
	var entries []entry
	var ok, off, failed, unsupported int
	for _, h := range cat.Hunts {
		ps := Check(h, api)
		sort.SliceStable(ps, func(a, b int) bool { return !ps[a].Warning && ps[b].Warning })
		status := "OK  "
		switch {
		case !h.Enabled:
			status = "OFF "
			off++
		case !Runnable(ps):
			status = "FAIL"
			failed++
		default:
			ok++
		}
		head := fmt.Sprintf("%s %s: hunt %s %q", status, h.File, h.ID, h.Name)
		if h.Frequency > 0 && h.Period > 0 {
			head += fmt.Sprintf(", every %s over the last %s", humanDuration(h.Frequency), humanDuration(h.Period))
		}
		if tables := Tables(h.Query); len(tables) > 0 {
			head += ", tables " + strings.Join(tables, ", ")
		}
		lines := []string{head}
		if !h.Enabled {
			lines = append(lines, "     disabled (mdeflow.enabled: false)")
		}
		for _, p := range ps {
			lines = append(lines, "     "+p.String())
		}
		if !Runnable(ps) {
			if via := RunnableVia(h); len(via) > 0 {
				lines = append(lines, "     runnable via: "+strings.Join(via, ", "))
			} else {
				lines = append(lines, "     runnable via: none of "+strings.Join(APIs, ", "))
			}
		}
		entries = append(entries, entry{h.File, lines})
	}
	for _, u := range cat.Unsupported {
		unsupported++
		entries = append(entries, entry{u.File, []string{fmt.Sprintf("SKIP %s: %s", u.File, u.Reason)}})
	}
	sort.SliceStable(entries, func(a, b int) bool { return entries[a].file < entries[b].file })
	for _, e := range entries {
		for _, l := range e.lines {
			if _, err := fmt.Fprintln(w, l); err != nil {
				return fmt.Errorf("writing check output: %w", err)
			}
		}
	}
	total := len(cat.Hunts) + len(cat.Unsupported)
	if _, err := fmt.Fprintf(w, "%d files checked for the %s API: %d runnable, %d not runnable, %d disabled, %d not hunts\n",
		total, apiLabel(api), ok, failed, off, unsupported); err != nil {
		return fmt.Errorf("writing check output: %w", err)
	}
	if failed+unsupported > 0 {
		return fmt.Errorf("%w: %d not runnable, %d not hunts", ErrCheckFailed, failed, unsupported)
	}
	return nil
}

// AlertTitleData is what a raiseAlerts.titleTemplate can use:
// {{.Name}}, {{.HuntID}}, {{.Severity}}, {{.DeviceID}}, {{.DeviceName}},
// {{.Rows}} (new rows for that device).
type AlertTitleData struct {
	HuntID, Name, Severity, DeviceID, DeviceName string
	Rows                                         int
}

func parseTitleTemplate(s string) (*template.Template, error) {
	if s == "" {
		return nil, nil
	}
	t, err := template.New("title").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, err
	}
	// Execute once on sample data so an unknown field fails the check,
	// not the first hit.
	if err := t.Execute(io.Discard, AlertTitleData{Name: "n", DeviceName: "d", Rows: 1}); err != nil {
		return nil, err
	}
	return t, nil
}

// mdeSeverity maps Sentinel / Graph / MDE severity spellings to the MDE
// names.
func mdeSeverity(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "informational", "info":
		return mde.SeverityInformational, true
	case "low":
		return mde.SeverityLow, true
	case "medium":
		return mde.SeverityMedium, true
	case "high", "critical":
		return mde.SeverityHigh, true
	}
	return "", false
}
