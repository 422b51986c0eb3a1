package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// KindGroupDigest is the kind of the digest the Dispatcher sends when a
// grouping window closes ("N more alerts for this incident"). It is created
// inside this package only; its rows travel in Notification.Hunt (the same
// table shape as a hunt digest) and its summary in Notification.Text.
const KindGroupDigest = "groupDigest"

// Defaults and caps of the renderer.
const (
	DefaultPortalBaseURL = "https://security.microsoft.com"
	DefaultProduct       = "mdeflow"
	DefaultMaxTableRows  = 50
	// SubjectMaxRunes caps the subject line (before the product prefix).
	SubjectMaxRunes = 160

	maxTitle       = 300
	maxShort       = 200
	maxCommandLine = 2000
	maxDescription = 4000
	maxEvidence    = 20
	maxColumns     = 20
	maxCell        = 300
	maxTags        = 20
)

// RenderOptions configure Render. The zero value renders for the commercial
// cloud portal.
type RenderOptions struct {
	// PortalBaseURL is the Defender portal, default
	// https://security.microsoft.com; GCC High / DoD use
	// https://security.microsoft.us. Must be https, without query or fragment.
	PortalBaseURL string
	// Product names the sender in subjects and footers, default "mdeflow".
	Product string
	// ApprovalBaseURL, when set, is the only prefix accepted for approve and
	// deny links (so a local run may use http://localhost:7071/...). When
	// empty, approval links must be https. Links that fail are withheld and
	// the message says so.
	ApprovalBaseURL string
	// MaxTableRows caps hunt and digest tables, default 50.
	MaxTableRows int
}

func (o RenderOptions) withDefaults() RenderOptions {
	if o.PortalBaseURL == "" {
		o.PortalBaseURL = DefaultPortalBaseURL
	}
	if o.Product == "" {
		o.Product = DefaultProduct
	}
	if o.MaxTableRows <= 0 {
		o.MaxTableRows = DefaultMaxTableRows
	}
	return o
}

// Validate reports every problem of the options.
func (o RenderOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	if _, err := parseBaseURL(o.PortalBaseURL, false); err != nil {
		errs = append(errs, fmt.Errorf("portal base URL: %w", err))
	}
	if o.ApprovalBaseURL != "" {
		if _, err := parseBaseURL(o.ApprovalBaseURL, true); err != nil {
			errs = append(errs, fmt.Errorf("approval base URL: %w", err))
		}
	}
	if p := SanitizeSubject(o.Product, 40); p != o.Product || p == "" {
		errs = append(errs, fmt.Errorf("product name %q must be one short line", o.Product))
	}
	return errors.Join(errs...)
}

// Links are the validated URLs of a notification; empty when absent or
// rejected. Channels use them for buttons (Teams) and payloads (webhook).
type Links struct {
	Alert   string `json:"alert,omitempty"`
	Machine string `json:"machine,omitempty"`
	Approve string `json:"approve,omitempty"`
	Deny    string `json:"deny,omitempty"`
}

// Rendered is a notification rendered once for every channel.
type Rendered struct {
	// Subject is one line, no control characters, capped.
	Subject string
	// Text is the plain-text part: control characters other than \n and \t
	// removed, every field on its own line.
	Text string
	// HTML is the HTML part, every value escaped by html/template.
	HTML string
	// Links are the validated portal and approval URLs used in Text and HTML.
	Links Links
}

//go:embed templates/*.tmpl
var templateFS embed.FS

var templateFuncs = map[string]any{
	"line":   textLine,
	"indent": indent,
	"kv":     func(k, v string) kv { return kv{K: k, V: v} },
	"join":   strings.Join,
	"add":    func(a, b int) int { return a + b },
}

type kv struct{ K, V string }

var (
	htmlTemplates = htmltemplate.Must(htmltemplate.New("notification.html.tmpl").
			Funcs(templateFuncs).ParseFS(templateFS, "templates/notification.html.tmpl"))
	textTemplates = texttemplate.Must(texttemplate.New("notification.txt.tmpl").
			Funcs(templateFuncs).ParseFS(templateFS, "templates/notification.txt.tmpl"))
)

// textLine prints "  Label: value\n" when value is not empty.
func textLine(label, value string) string {
	if value == "" {
		return ""
	}
	return fmt.Sprintf("  %-18s %s\n", label+":", value)
}

// indent prefixes every line with four spaces, so free text can never look
// like one of the labelled lines.
func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Render renders a notification for every channel. Every string that comes
// from the alert, machine, hunt or decision is sanitised (control and bidi
// characters made visible, lengths capped) and then escaped for its output:
// html/template for HTML, nothing more for text (it is never interpreted),
// RFC 2047 for the subject when it becomes a header (BuildMIME).
func Render(n pipeline.Notification, opts RenderOptions) (Rendered, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return Rendered{}, Permanent(fmt.Errorf("rendering notification: %w", err))
	}
	v := buildView(n, opts)
	var html, text bytes.Buffer
	if err := htmlTemplates.ExecuteTemplate(&html, "notification.html.tmpl", v); err != nil {
		return Rendered{}, Permanent(fmt.Errorf("rendering HTML of notification %s: %w", oneLine(n.ID, 80), err))
	}
	if err := textTemplates.ExecuteTemplate(&text, "notification.txt.tmpl", v); err != nil {
		return Rendered{}, Permanent(fmt.Errorf("rendering text of notification %s: %w", oneLine(n.ID, 80), err))
	}
	return Rendered{
		Subject: v.Subject,
		Text:    tidyText(text.String()),
		HTML:    html.String(),
		Links:   v.Links,
	}, nil
}

// tidyText removes control characters (except LF and TAB), trailing blanks
// and runs of more than one empty line from the rendered text part.
func tidyText(s string) string {
	lines := strings.Split(stripControlText(s), "\n")
	out := make([]string, 0, len(lines))
	empty := 0
	for _, l := range lines {
		l = strings.TrimRight(l, " \t")
		if l == "" {
			empty++
			if empty > 1 {
				continue
			}
		} else {
			empty = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n")) + "\n"
}

// view is what the templates see: every string already sanitised.
type view struct {
	Product        string
	NotificationID string
	Kind           string
	Subject        string
	Headline       string
	Created        string
	Notice         string
	Alert          *alertView
	Machine        *machineView
	Decision       *decisionView
	Outcome        *outcomeView
	Approval       *approvalView
	Table          *tableView
	Links          Links
	Warnings       []string
}

type alertView struct {
	ID, Title, Severity, Category, DetectionSource, Description, IncidentID, Created string
	Mitre                                                                            string
	Evidence                                                                         []evidenceView
	MoreEvidence                                                                     int
}

type evidenceView struct {
	Type   string
	Fields []kv
}

type machineView struct {
	ID, Name, OS, Group, Risk, Exposure, Health, IP, Tags string
}

type decisionView struct {
	RuleID, RuleName, PolicyVersion, Reason, Actions, Decided string
	DryRun                                                    bool
}

type outcomeView struct {
	Kind, Reason, Guard, ActionID, ActionType, ActionStatus, Requestor, At string
}

type approvalView struct {
	RequestID, Expires, OnExpiry string
	HasLinks                     bool
}

type tableView struct {
	Title, Severity, RunAt string
	Columns                []string
	Rows                   [][]string
	Shown, Total, New      int
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

func buildView(n pipeline.Notification, opts RenderOptions) view {
	v := view{
		Product:        opts.Product,
		NotificationID: oneLine(n.ID, maxShort),
		Kind:           oneLine(n.Kind, 40),
		Created:        fmtTime(n.CreatedAt),
		Notice:         multiLine(n.Text, maxDescription),
	}
	if a := n.Alert; a != nil {
		v.Alert = alertViewOf(a)
		if u, err := portalURL(opts.PortalBaseURL, "alerts", a.ID, mde.ValidateAlertID); err == nil {
			v.Links.Alert = u
		} else if a.ID != "" {
			v.Warnings = append(v.Warnings, "alert link withheld: invalid alert id")
		}
	}
	if m := n.Machine; m != nil {
		v.Machine = &machineView{
			ID: oneLine(m.ID, 64), Name: oneLine(m.ComputerDNSName, maxShort), OS: oneLine(m.OSPlatform, maxShort),
			Group: oneLine(m.RbacGroupName, maxShort), Risk: oneLine(m.RiskScore, 40), Exposure: oneLine(m.ExposureLevel, 40),
			Health: oneLine(m.HealthStatus, 40), IP: oneLine(m.LastIPAddress, 64), Tags: joinCapped(m.Tags, maxTags, 100),
		}
		if u, err := portalURL(opts.PortalBaseURL, "machines", m.ID, mde.ValidateMachineID); err == nil {
			v.Links.Machine = u
		} else if m.ID != "" {
			v.Warnings = append(v.Warnings, "machine link withheld: invalid machine id")
		}
	}
	if d := n.Decision; d != nil {
		acts := make([]string, 0, len(d.Actions))
		for _, a := range d.Actions {
			s := a.Type
			switch {
			case a.IsolationType != "":
				s += " (" + a.IsolationType + ")"
			case a.ScanType != "":
				s += " (" + a.ScanType + ")"
			case a.Tag != "":
				s += " (" + a.Tag + ")"
			}
			if a.RequireApproval {
				s += " [approval]"
			}
			if a.DryRun {
				s += " [dry run]"
			}
			acts = append(acts, s)
		}
		v.Decision = &decisionView{
			RuleID: oneLine(d.RuleID, maxShort), RuleName: oneLine(d.RuleName, maxShort),
			PolicyVersion: oneLine(d.PolicyVersion, 80), Reason: oneLine(d.Reason, maxTitle),
			Actions: joinCapped(acts, 20, 200), Decided: fmtTime(d.DecidedAt), DryRun: d.DryRun,
		}
	}
	if o := n.Outcome; o != nil {
		ov := &outcomeView{
			Kind: oneLine(o.Kind, 40), Reason: oneLine(o.Reason, maxTitle), Guard: oneLine(o.Guard, 80),
			ActionID: oneLine(o.ActionID, 80), ActionStatus: oneLine(o.ActionStatus, 40), At: fmtTime(o.At),
		}
		if a := o.Action; a != nil {
			ov.ActionType = oneLine(a.Type, 80)
			ov.Requestor = oneLine(a.Requestor, maxShort)
			if ov.ActionID == "" {
				ov.ActionID = oneLine(a.ID, 80)
			}
			if ov.ActionStatus == "" {
				ov.ActionStatus = oneLine(a.Status, 40)
			}
		}
		v.Outcome = ov
	}
	if ap := n.Approval; ap != nil {
		av := &approvalView{RequestID: oneLine(ap.RequestID, maxShort), Expires: fmtTime(ap.ExpiresAt), OnExpiry: oneLine(ap.OnExpiry, 20)}
		approve, err1 := approvalURL(ap.ApproveURL, opts.ApprovalBaseURL)
		deny, err2 := approvalURL(ap.DenyURL, opts.ApprovalBaseURL)
		if err1 == nil && err2 == nil {
			v.Links.Approve, v.Links.Deny = approve, deny
			av.HasLinks = true
		} else {
			v.Warnings = append(v.Warnings, "approval links withheld: "+oneLine(errors.Join(err1, err2).Error(), maxTitle))
		}
		v.Approval = av
	}
	if h := n.Hunt; h != nil {
		v.Table = tableViewOf(h, opts.MaxTableRows)
	}
	v.Headline = headline(n, v)
	v.Subject = SanitizeSubject("["+opts.Product+"] "+v.Headline, SubjectMaxRunes+len(opts.Product)+3)
	return v
}

func alertViewOf(a *pipeline.AlertInfo) *alertView {
	av := &alertView{
		ID: oneLine(a.ID, 130), Title: oneLine(a.Title, maxTitle), Severity: oneLine(a.Severity, 40),
		Category: oneLine(a.Category, maxShort), DetectionSource: oneLine(a.DetectionSource, maxShort),
		Description: multiLine(a.Description, maxDescription), Created: fmtTimePtr(a.CreatedAt),
		Mitre: joinCapped(a.MitreTechniques, 30, 40),
	}
	if a.IncidentID != nil {
		av.IncidentID = strconv.FormatInt(*a.IncidentID, 10)
	}
	ev := a.Evidence
	if len(ev) > maxEvidence {
		av.MoreEvidence = len(ev) - maxEvidence
		ev = ev[:maxEvidence]
	}
	for _, e := range ev {
		av.Evidence = append(av.Evidence, evidenceViewOf(e))
	}
	return av
}

func evidenceViewOf(e mde.Evidence) evidenceView {
	ev := evidenceView{Type: oneLine(e.EntityType, 60)}
	add := func(label string, p *string, max int) {
		if p != nil && *p != "" {
			ev.Fields = append(ev.Fields, kv{K: label, V: oneLine(*p, max)})
		}
	}
	add("File name", e.FileName, maxShort)
	add("File path", e.FilePath, maxTitle)
	add("SHA-256", e.Sha256, 80)
	add("SHA-1", e.Sha1, 60)
	add("Command line", e.ProcessCommandLine, maxCommandLine)
	if e.ProcessID != nil {
		ev.Fields = append(ev.Fields, kv{K: "Process id", V: strconv.FormatInt(*e.ProcessID, 10)})
	}
	add("Parent process", e.ParentProcessFileName, maxShort)
	add("Parent path", e.ParentProcessFilePath, maxTitle)
	add("IP address", e.IPAddress, 64)
	add("URL", e.URL, maxTitle)
	if acct := accountOf(e); acct != "" {
		ev.Fields = append(ev.Fields, kv{K: "Account", V: oneLine(acct, maxShort)})
	}
	add("UPN", e.UserPrincipalName, maxShort)
	add("Registry key", e.RegistryKey, maxTitle)
	add("Registry value", e.RegistryValueName, maxShort)
	add("Registry data", e.RegistryValue, maxTitle)
	add("Detection", e.DetectionStatus, 60)
	return ev
}

func accountOf(e mde.Evidence) string {
	name, dom := mde.Str(e.AccountName), mde.Str(e.DomainName)
	switch {
	case name == "":
		return ""
	case dom == "":
		return name
	}
	return dom + `\` + name
}

func tableViewOf(h *pipeline.HuntDigest, maxRows int) *tableView {
	t := &tableView{
		Title: oneLine(h.Name, maxTitle), Severity: oneLine(h.Severity, 40), RunAt: fmtTime(h.RunAt),
		Total: h.TotalRows, New: h.NewRows,
	}
	cols := h.Columns
	if len(cols) == 0 && len(h.Rows) > 0 {
		// no declared columns: use the first row's keys, sorted for stability
		for k := range h.Rows[0] {
			cols = append(cols, k)
		}
		slices.Sort(cols)
	}
	if len(cols) > maxColumns {
		cols = cols[:maxColumns]
	}
	for _, c := range cols {
		t.Columns = append(t.Columns, oneLine(c, 100))
	}
	rows := h.Rows
	if len(rows) > maxRows {
		rows = rows[:maxRows]
	}
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = oneLine(r[c], maxCell)
		}
		t.Rows = append(t.Rows, cells)
	}
	t.Shown = len(t.Rows)
	if t.Total < len(h.Rows) {
		t.Total = len(h.Rows)
	}
	return t
}

func joinCapped(items []string, maxItems, maxEach int) string {
	var out []string
	for i, s := range items {
		if i == maxItems {
			out = append(out, fmt.Sprintf("(+%d more)", len(items)-maxItems))
			break
		}
		out = append(out, oneLine(s, maxEach))
	}
	return strings.Join(out, ", ")
}

var outcomeWords = map[string]string{
	pipeline.OutcomeSucceeded:       "succeeded",
	pipeline.OutcomeAccepted:        "requested",
	pipeline.OutcomeSkipped:         "skipped",
	pipeline.OutcomeDryRun:          "dry run",
	pipeline.OutcomeFailed:          "FAILED",
	pipeline.OutcomePendingApproval: "waiting for approval",
	pipeline.OutcomeDenied:          "denied",
	pipeline.OutcomeExpired:         "expired",
	pipeline.OutcomeNotified:        "notified",
}

// headline is the one-line summary used as subject (after the product
// prefix) and as the heading of every channel.
func headline(n pipeline.Notification, v view) string {
	host := ""
	if v.Machine != nil {
		host = v.Machine.Name
		if host == "" {
			host = v.Machine.ID
		}
	}
	title := ""
	sev := ""
	if v.Alert != nil {
		title, sev = v.Alert.Title, v.Alert.Severity
	}
	on := func(s string) string {
		if host == "" {
			return s
		}
		return s + " on " + host
	}
	switch n.Kind {
	case pipeline.NotifyAlert:
		s := "Alert"
		if sev != "" {
			s = sev + " alert"
		}
		if title != "" {
			s += ": " + title
		}
		return on(s)
	case pipeline.NotifyIsolation:
		word := "update"
		if v.Outcome != nil {
			if w, ok := outcomeWords[n.Outcome.Kind]; ok {
				word = w
			} else if v.Outcome.Kind != "" {
				word = v.Outcome.Kind
			}
			if v.Outcome.Guard != "" && n.Outcome.Kind == pipeline.OutcomeSkipped {
				word += " (" + v.Outcome.Guard + ")"
			}
		}
		s := "Isolation " + word
		if host != "" {
			s += ": " + host
		}
		if title != "" {
			s += " — " + title
		}
		return s
	case pipeline.NotifyApproval:
		s := "Approval needed: isolate " + host
		if host == "" {
			s = "Approval needed: isolation"
		}
		if title != "" {
			s += " — " + title
		}
		return s
	case pipeline.NotifyBreaker:
		return "Isolation breaker tripped: isolations paused"
	case pipeline.NotifyHunt:
		name := "hunt"
		if v.Table != nil && v.Table.Title != "" {
			name = v.Table.Title
		}
		if v.Table == nil {
			return "Hunt " + name
		}
		return fmt.Sprintf("Hunt %s: %d new, %d total rows", name, v.Table.New, v.Table.Total)
	case KindGroupDigest:
		count := 0
		if v.Table != nil {
			count = v.Table.Total
		}
		s := fmt.Sprintf("%d more alerts", count)
		if v.Alert != nil && v.Alert.IncidentID != "" {
			s += " for incident " + v.Alert.IncidentID
		} else {
			s += " for this incident"
		}
		if title != "" {
			s += " — first: " + title
		}
		return s
	}
	s := "Notification"
	if v.Kind != "" {
		s += " (" + v.Kind + ")"
	}
	if title != "" {
		s += ": " + title
	}
	return on(s)
}

// parseBaseURL validates a configured base URL. http is accepted only when
// allowHTTP is set or the host is a loopback address.
func parseBaseURL(raw string, allowHTTP bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", oneLine(raw, 100), err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (allowHTTP || isLoopbackHost(u.Hostname())):
	default:
		return nil, fmt.Errorf("%q is not an https URL", oneLine(raw, 100))
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q must be scheme://host[/path] without user, query or fragment", oneLine(raw, 100))
	}
	return u, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// portalURL is the Defender portal link of an alert or a machine, its id
// validated first; base "" means the commercial portal.
func portalURL(base, segment, id string, validate func(string) error) (string, error) {
	if base == "" {
		base = DefaultPortalBaseURL
	}
	if err := validate(id); err != nil {
		return "", err
	}
	u, err := parseBaseURL(base, false)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(u.String(), "/") + "/" + segment + "/" + url.PathEscape(id), nil
}

// approvalURL validates an approve/deny link: absolute, no user info, no
// control characters, at most 2 KiB, and either https or under base.
func approvalURL(raw, base string) (string, error) {
	if raw == "" {
		return "", errors.New("missing link")
	}
	if len(raw) > 2048 || strings.ContainsFunc(raw, func(r rune) bool { return isControl(r) || isBidi(r) || r == ' ' }) {
		return "", errors.New("link has control characters or is too long")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("link does not parse")
	}
	if u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("link is not an absolute URL")
	}
	if base != "" {
		b, err := parseBaseURL(base, true)
		if err != nil {
			return "", err
		}
		prefix := strings.TrimRight(b.String(), "/")
		s := u.String()
		if u.Scheme != b.Scheme || u.Host != b.Host || (s != prefix && !strings.HasPrefix(s, prefix+"/") && !strings.HasPrefix(s, prefix+"?")) {
			return "", errors.New("link is not under the configured approval base URL")
		}
		return s, nil
	}
	if u.Scheme != "https" {
		return "", errors.New("link is not https")
	}
	return u.String(), nil
}
