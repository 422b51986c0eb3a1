package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// TeamsConfig configures the Teams channel.
type TeamsConfig struct {
	// Name of the channel, default "teams".
	Name string
	// WebhookURL is the URL of a Teams Workflows flow ("When a Teams
	// webhook request is received" → "Post card in a chat or channel"). It
	// carries a signature: treat it as a secret; it is never logged.
	WebhookURL string
	// LinkBaseURL, when set, is an extra prefix accepted for card buttons
	// besides https URLs (set it to the approval base URL of a local run).
	LinkBaseURL string
	// HTTPClient defaults to a client with a 30 s timeout that does not
	// follow redirects.
	HTTPClient *http.Client
	// Clock is used for Retry-After dates, default time.Now.
	Clock func() time.Time
}

// Teams posts an Adaptive Card (version 1.4) to a Teams Workflows webhook.
type Teams struct {
	name     string
	endpoint string
	linkBase string
	client   *http.Client
	clock    func() time.Time
}

// NewTeams validates cfg.
func NewTeams(cfg TeamsConfig) (*Teams, error) {
	if cfg.Name == "" {
		cfg.Name = "teams"
	}
	var errs []error
	if err := ValidateChannelName(cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if _, err := validateEndpoint(cfg.WebhookURL); err != nil {
		errs = append(errs, fmt.Errorf("teams webhook: %w", err))
	}
	if cfg.LinkBaseURL != "" {
		if _, err := parseBaseURL(cfg.LinkBaseURL, true); err != nil {
			errs = append(errs, fmt.Errorf("teams link base: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Teams{name: cfg.Name, endpoint: cfg.WebhookURL, linkBase: cfg.LinkBaseURL,
		client: newHTTPClient(cfg.HTTPClient), clock: cfg.Clock}, nil
}

// Name implements Channel.
func (t *Teams) Name() string { return t.name }

// Send implements Channel. Workflows answers 202 Accepted.
func (t *Teams) Send(ctx context.Context, n pipeline.Notification, r Rendered) error {
	body, err := BuildTeamsPayload(n, r, t.linkBase)
	if err != nil {
		return Permanent(fmt.Errorf("%s: %w", t.name, err))
	}
	return postJSON(ctx, t.client, t.name, t.endpoint, body, nil, t.clock)
}

// Card size budget: Teams rejects messages over about 28 KB.
const teamsMaxBytes = 24 * 1024

type cardLimits struct {
	evidence, fieldRunes, rows, cells, description int
}

var teamsLimits = []cardLimits{
	{evidence: 10, fieldRunes: 500, rows: 10, cells: 8, description: 1500},
	{evidence: 3, fieldRunes: 200, rows: 5, cells: 6, description: 500},
	{evidence: 0, fieldRunes: 120, rows: 0, cells: 0, description: 0},
}

// BuildTeamsPayload builds the Workflows webhook body
// {"type":"message","attachments":[{"contentType":
// "application/vnd.microsoft.card.adaptive","content":<AdaptiveCard 1.4>}]}.
// It is a pure function of its inputs.
//
// Every alert-derived string is sanitised (control characters made
// visible) and Markdown-escaped, because TextBlock and FactSet text
// interpret a Markdown subset; JSON encoding does the rest. Buttons
// (Action.OpenUrl) are only emitted for https links from r.Links, or links
// under linkBase when set. The card shrinks (fewer evidence items and rows)
// until it fits Teams' size limit.
func BuildTeamsPayload(n pipeline.Notification, r Rendered, linkBase string) ([]byte, error) {
	v := buildView(n, RenderOptions{})
	var out []byte
	for _, lim := range teamsLimits {
		card := buildCard(v, r, linkBase, lim)
		msg := map[string]any{
			"type": "message",
			"attachments": []any{map[string]any{
				"contentType": "application/vnd.microsoft.card.adaptive",
				"contentUrl":  nil,
				"content":     card,
			}},
		}
		b, err := json.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("encoding Teams card: %w", err)
		}
		out = b
		if len(b) <= teamsMaxBytes {
			break
		}
	}
	return out, nil
}

type card = map[string]any

// textBlock builds a TextBlock; opts are property name/value pairs.
func textBlock(text string, opts ...any) card {
	tb := card{"type": "TextBlock", "text": text, "wrap": true}
	for i := 0; i+1 < len(opts); i += 2 {
		if k, ok := opts[i].(string); ok {
			tb[k] = opts[i+1]
		}
	}
	return tb
}

func factSet(pairs []kv, maxRunes int) (card, bool) {
	var facts []any
	for _, p := range pairs {
		if p.V == "" {
			continue
		}
		facts = append(facts, card{"title": markdownEscape(p.K), "value": markdownEscape(capRunes(p.V, maxRunes))})
	}
	if len(facts) == 0 {
		return nil, false
	}
	return card{"type": "FactSet", "facts": facts}, true
}

func capRunes(s string, max int) string {
	if max <= 0 {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

func section(title string) card {
	return textBlock(title, "weight", "Bolder", "spacing", "Medium", "separator", true)
}

func buildCard(v view, r Rendered, linkBase string, lim cardLimits) card {
	var body []any
	style := "emphasis"
	switch {
	case v.Kind == pipeline.NotifyBreaker, v.Alert != nil && v.Alert.Severity == "High":
		style = "attention"
	case v.Kind == pipeline.NotifyApproval, v.Alert != nil && v.Alert.Severity == "Medium":
		style = "warning"
	}
	title := SanitizeSubject(r.Subject, SubjectMaxRunes+40)
	if title == "" {
		title = v.Headline
	}
	body = append(body, card{
		"type": "Container", "style": style, "bleed": true,
		"items": []any{textBlock(markdownEscape(title), "size", "Medium", "weight", "Bolder")},
	})
	for _, w := range v.Warnings {
		body = append(body, textBlock("⚠ "+markdownEscape(w), "color", "Warning"))
	}
	if v.Approval != nil {
		s := "Isolation of this machine is waiting for an approver"
		if v.Approval.Expires != "" {
			s += " until " + v.Approval.Expires
		}
		if v.Approval.OnExpiry != "" {
			s += "; when it expires the request is " + v.Approval.OnExpiry
		}
		body = append(body, textBlock(markdownEscape(s+".")))
		if fs, ok := factSet([]kv{{"Request", v.Approval.RequestID}}, lim.fieldRunes); ok {
			body = append(body, fs)
		}
	}
	if v.Notice != "" {
		body = append(body, textBlock(paragraphs(markdownEscape(capRunes(v.Notice, 2000)))))
	}
	if o := v.Outcome; o != nil {
		if fs, ok := factSet([]kv{{"Outcome", o.Kind}, {"Action type", o.ActionType}, {"Final status", o.ActionStatus},
			{"Guard", o.Guard}, {"Reason", o.Reason}, {"Action id", o.ActionID}, {"Requestor", o.Requestor}, {"At", o.At}}, lim.fieldRunes); ok {
			body = append(body, section("Action"), fs)
		}
	}
	if a := v.Alert; a != nil {
		if fs, ok := factSet([]kv{{"Title", a.Title}, {"Severity", a.Severity}, {"Category", a.Category},
			{"Detection source", a.DetectionSource}, {"Incident", a.IncidentID}, {"Created", a.Created},
			{"MITRE", a.Mitre}, {"Alert id", a.ID}}, lim.fieldRunes); ok {
			body = append(body, section("Alert"), fs)
		}
		if a.Description != "" && lim.description > 0 {
			body = append(body, textBlock(paragraphs(markdownEscape(capRunes(a.Description, lim.description))), "isSubtle", true))
		}
		ev := a.Evidence
		if len(ev) > lim.evidence {
			ev = ev[:lim.evidence]
		}
		if len(ev) > 0 {
			body = append(body, section("Evidence"))
		}
		for i, e := range ev {
			body = append(body, textBlock(markdownEscape(fmt.Sprintf("%d. %s", i+1, e.Type)), "weight", "Bolder", "spacing", "Small"))
			if fs, ok := factSet(e.Fields, lim.fieldRunes); ok {
				body = append(body, fs)
			}
		}
		if more := len(a.Evidence) - len(ev) + a.MoreEvidence; more > 0 {
			body = append(body, textBlock(markdownEscape(fmt.Sprintf("%d more evidence items in the portal.", more)), "isSubtle", true))
		}
	}
	if m := v.Machine; m != nil {
		if fs, ok := factSet([]kv{{"Name", m.Name}, {"OS", m.OS}, {"Device group", m.Group}, {"Risk", m.Risk},
			{"Exposure", m.Exposure}, {"Health", m.Health}, {"Last IP", m.IP}, {"Tags", m.Tags}, {"Machine id", m.ID}}, lim.fieldRunes); ok {
			body = append(body, section("Machine"), fs)
		}
	}
	if d := v.Decision; d != nil {
		dry := ""
		if d.DryRun {
			dry = "yes"
		}
		if fs, ok := factSet([]kv{{"Rule", d.RuleID}, {"Rule name", d.RuleName}, {"Policy version", d.PolicyVersion},
			{"Actions", d.Actions}, {"Dry run", dry}, {"Reason", d.Reason}}, lim.fieldRunes); ok {
			body = append(body, section("Decision"), fs)
		}
	}
	if t := v.Table; t != nil {
		name := t.Title
		if name == "" {
			name = "Results"
		}
		body = append(body, section(markdownEscape(name)))
		rows := t.Rows
		if len(rows) > lim.rows {
			rows = rows[:lim.rows]
		}
		body = append(body, textBlock(markdownEscape(fmt.Sprintf("Showing %d of %d rows (%d new).", len(rows), t.Total, t.New)), "isSubtle", true))
		for i, row := range rows {
			var pairs []kv
			for j, cell := range row {
				if j == lim.cells {
					break
				}
				pairs = append(pairs, kv{K: t.Columns[j], V: cell})
			}
			if fs, ok := factSet(pairs, lim.fieldRunes); ok {
				fs["separator"] = i > 0
				body = append(body, fs)
			}
		}
	}
	footer := "notification " + v.NotificationID
	if v.Created != "" {
		footer += " · " + v.Created
	}
	body = append(body, textBlock(markdownEscape(footer), "size", "Small", "isSubtle", true, "spacing", "Medium"))

	var actions []any
	addAction := func(title, link, style string) {
		if !cardLinkOK(link, linkBase) {
			return
		}
		a := card{"type": "Action.OpenUrl", "title": title, "url": link}
		if style != "" {
			a["style"] = style
		}
		actions = append(actions, a)
	}
	if v.Approval != nil && v.Approval.HasLinks {
		addAction("Approve isolation", r.Links.Approve, "destructive")
		addAction("Deny", r.Links.Deny, "")
	}
	addAction("Open alert", r.Links.Alert, "")
	addAction("Open machine", r.Links.Machine, "")

	c := card{
		"type":    "AdaptiveCard",
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"version": "1.4",
		"msteams": card{"width": "Full"},
		"body":    body,
	}
	if len(actions) > 0 {
		c["actions"] = actions
	}
	return c
}

// paragraphs turns single line breaks into Markdown paragraph breaks, which
// Teams renders as line breaks.
func paragraphs(s string) string {
	return strings.ReplaceAll(s, "\n", "\n\n")
}

// cardLinkOK accepts https links and, when base is set, links under it.
func cardLinkOK(link, base string) bool {
	if link == "" || strings.ContainsFunc(link, func(r rune) bool { return isControl(r) || isBidi(r) || r == ' ' }) {
		return false
	}
	u, err := url.Parse(link)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	if base == "" {
		return false
	}
	_, err = approvalURL(link, base)
	return err == nil
}
