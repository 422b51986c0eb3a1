package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Webhook headers and schema name.
const (
	HeaderSignature      = "X-Mdeflow-Signature"
	HeaderNotificationID = "X-Mdeflow-Notification-Id"
	HeaderKind           = "X-Mdeflow-Kind"
	// WebhookSchema is the "schema" field of every payload. A breaking
	// change to the payload gets a new version.
	WebhookSchema = "mdeflow.notification/v1"
	// MinWebhookSecret is the shortest accepted signing secret (bytes).
	MinWebhookSecret = 16
)

// WebhookConfig configures the generic webhook channel.
type WebhookConfig struct {
	// Name of the channel, default "webhook".
	Name string
	// URL receives the POST (https; http only on loopback).
	URL string
	// Secret signs every body (HMAC-SHA256), at least 16 bytes. Never
	// logged.
	Secret []byte
	// HTTPClient defaults to a client with a 30 s timeout that does not
	// follow redirects.
	HTTPClient *http.Client
	// Clock gives the signature timestamp, default time.Now.
	Clock func() time.Time
}

// Webhook posts a stable JSON document (WebhookPayload) signed with
// X-Mdeflow-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
type Webhook struct {
	name   string
	url    string
	secret []byte
	client *http.Client
	clock  func() time.Time
}

// NewWebhook validates cfg.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.Name == "" {
		cfg.Name = "webhook"
	}
	var errs []error
	if err := ValidateChannelName(cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if _, err := validateEndpoint(cfg.URL); err != nil {
		errs = append(errs, fmt.Errorf("webhook: %w", err))
	}
	if len(cfg.Secret) < MinWebhookSecret {
		errs = append(errs, fmt.Errorf("webhook: secret must be at least %d bytes", MinWebhookSecret))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Webhook{name: cfg.Name, url: cfg.URL, secret: append([]byte(nil), cfg.Secret...),
		client: newHTTPClient(cfg.HTTPClient), clock: cfg.Clock}, nil
}

// Name implements Channel.
func (w *Webhook) Name() string { return w.name }

// Send implements Channel.
func (w *Webhook) Send(ctx context.Context, n pipeline.Notification, r Rendered) error {
	body, err := BuildWebhookPayload(n, r)
	if err != nil {
		return Permanent(fmt.Errorf("%s: %w", w.name, err))
	}
	h := http.Header{}
	h.Set(HeaderSignature, SignWebhook(w.secret, w.clock(), body))
	h.Set(HeaderNotificationID, oneLine(n.ID, 256))
	h.Set(HeaderKind, oneLine(n.Kind, 40))
	return postJSON(ctx, w.client, w.name, w.url, body, h, w.clock)
}

// SignWebhook returns the X-Mdeflow-Signature value for body sent at t.
func SignWebhook(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// VerifyWebhookSignature checks a X-Mdeflow-Signature header against body:
// the MAC must match (constant-time) and t must be within tolerance of now
// (replay protection; 0 means 5 minutes). Several v1= values are accepted
// (secret rotation). docs/notifiers/webhook.md has the same check as a
// stand-alone snippet for receivers.
func VerifyWebhookSignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = 5 * time.Minute
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("signature: missing or bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature: timestamp outside tolerance")
	}
	want := webhookMAC(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("signature: no matching v1 signature")
}

// WebhookPayload is the documented body of the generic webhook
// (schema mdeflow.notification/v1, see docs/notifiers/webhook.md). Values
// are the data as received (JSON-escaped, invalid UTF-8 replaced, lengths
// capped): a receiver that displays them must escape them for its output.
type WebhookPayload struct {
	Schema    string    `json:"schema"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"createdAt"`
	GroupKey  string    `json:"groupKey,omitempty"`
	// Subject is the sanitised one-line summary; Text the plain-text
	// rendering (the same as the e-mail's text part).
	Subject  string           `json:"subject"`
	Text     string           `json:"text"`
	Links    Links            `json:"links"`
	Notice   string           `json:"notice,omitempty"`
	Alert    *WebhookAlert    `json:"alert,omitempty"`
	Machine  *WebhookMachine  `json:"machine,omitempty"`
	Decision *WebhookDecision `json:"decision,omitempty"`
	Outcome  *WebhookOutcome  `json:"outcome,omitempty"`
	Approval *WebhookApproval `json:"approval,omitempty"`
	Table    *WebhookTable    `json:"table,omitempty"`
}

// WebhookAlert is the alert part of a WebhookPayload.
type WebhookAlert struct {
	ID              string            `json:"id"`
	Title           string            `json:"title"`
	Severity        string            `json:"severity,omitempty"`
	Category        string            `json:"category,omitempty"`
	DetectionSource string            `json:"detectionSource,omitempty"`
	Description     string            `json:"description,omitempty"`
	IncidentID      *int64            `json:"incidentId,omitempty"`
	CreatedAt       *time.Time        `json:"createdAt,omitempty"`
	MitreTechniques []string          `json:"mitreTechniques,omitempty"`
	Evidence        []WebhookEvidence `json:"evidence,omitempty"`
}

// WebhookEvidence is one evidence item: its entity type and the non-empty
// fields among fileName, filePath, sha1, sha256, processId,
// processCommandLine, parentProcessFileName, parentProcessFilePath,
// ipAddress, url, accountName, domainName, userPrincipalName, registryKey,
// registryValueName, registryValue, detectionStatus.
type WebhookEvidence struct {
	EntityType string            `json:"entityType"`
	Fields     map[string]string `json:"fields,omitempty"`
}

// WebhookMachine is the machine part of a WebhookPayload.
type WebhookMachine struct {
	ID              string   `json:"id"`
	ComputerDNSName string   `json:"computerDnsName,omitempty"`
	OSPlatform      string   `json:"osPlatform,omitempty"`
	DeviceGroup     string   `json:"deviceGroup,omitempty"`
	RiskScore       string   `json:"riskScore,omitempty"`
	ExposureLevel   string   `json:"exposureLevel,omitempty"`
	HealthStatus    string   `json:"healthStatus,omitempty"`
	LastIPAddress   string   `json:"lastIpAddress,omitempty"`
	Tags            []string `json:"tags,omitempty"`
}

// WebhookDecision is the policy decision part of a WebhookPayload.
type WebhookDecision struct {
	RuleID        string    `json:"ruleId"`
	RuleName      string    `json:"ruleName,omitempty"`
	PolicyVersion string    `json:"policyVersion"`
	Actions       []string  `json:"actions,omitempty"`
	DryRun        bool      `json:"dryRun,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	DecidedAt     time.Time `json:"decidedAt"`
}

// WebhookOutcome is the action outcome part of a WebhookPayload.
type WebhookOutcome struct {
	Kind         string    `json:"kind"`
	Reason       string    `json:"reason,omitempty"`
	Guard        string    `json:"guard,omitempty"`
	ActionID     string    `json:"actionId,omitempty"`
	ActionType   string    `json:"actionType,omitempty"`
	ActionStatus string    `json:"actionStatus,omitempty"`
	At           time.Time `json:"at"`
}

// WebhookApproval is the approval part of a WebhookPayload (the links are in
// Links.Approve / Links.Deny).
type WebhookApproval struct {
	RequestID string    `json:"requestId"`
	ExpiresAt time.Time `json:"expiresAt"`
	OnExpiry  string    `json:"onExpiry,omitempty"`
}

// WebhookTable carries hunt rows (kind "hunt") or the folded alerts of a
// group digest (kind "groupDigest"), capped at 50 rows.
type WebhookTable struct {
	Name      string              `json:"name,omitempty"`
	ID        string              `json:"id,omitempty"`
	Severity  string              `json:"severity,omitempty"`
	RunAt     time.Time           `json:"runAt,omitzero"`
	Columns   []string            `json:"columns"`
	Rows      []map[string]string `json:"rows"`
	TotalRows int                 `json:"totalRows"`
	NewRows   int                 `json:"newRows"`
}

// rawField caps a raw value and makes it valid UTF-8 (JSON escaping does
// the rest).
func rawField(s string, max int) string {
	return truncateBytes(strings.ToValidUTF8(s, "\uFFFD"), max)
}

// BuildWebhookPayload builds the JSON body of the generic webhook. It is a
// pure function of its inputs.
func BuildWebhookPayload(n pipeline.Notification, r Rendered) ([]byte, error) {
	p := WebhookPayload{
		Schema: WebhookSchema, ID: rawField(n.ID, 512), Kind: rawField(n.Kind, 40), CreatedAt: n.CreatedAt,
		GroupKey: rawField(n.GroupKey, 256), Subject: SanitizeSubject(r.Subject, SubjectMaxRunes+40),
		Text: stripControlText(r.Text), Links: r.Links, Notice: rawField(n.Text, 8192),
	}
	if a := n.Alert; a != nil {
		wa := &WebhookAlert{
			ID: rawField(a.ID, 256), Title: rawField(a.Title, 1024), Severity: rawField(a.Severity, 40),
			Category: rawField(a.Category, 256), DetectionSource: rawField(a.DetectionSource, 256),
			Description: rawField(a.Description, 8192), IncidentID: a.IncidentID, CreatedAt: a.CreatedAt,
		}
		for i, m := range a.MitreTechniques {
			if i == 50 {
				break
			}
			wa.MitreTechniques = append(wa.MitreTechniques, rawField(m, 40))
		}
		for i, e := range a.Evidence {
			if i == maxEvidence {
				break
			}
			wa.Evidence = append(wa.Evidence, webhookEvidenceOf(e))
		}
		p.Alert = wa
	}
	if m := n.Machine; m != nil {
		wm := &WebhookMachine{
			ID: rawField(m.ID, 64), ComputerDNSName: rawField(m.ComputerDNSName, 256), OSPlatform: rawField(m.OSPlatform, 64),
			DeviceGroup: rawField(m.RbacGroupName, 256), RiskScore: rawField(m.RiskScore, 40), ExposureLevel: rawField(m.ExposureLevel, 40),
			HealthStatus: rawField(m.HealthStatus, 40), LastIPAddress: rawField(m.LastIPAddress, 64),
		}
		for i, t := range m.Tags {
			if i == maxTags {
				break
			}
			wm.Tags = append(wm.Tags, rawField(t, 200))
		}
		p.Machine = wm
	}
	if d := n.Decision; d != nil {
		wd := &WebhookDecision{RuleID: rawField(d.RuleID, 256), RuleName: rawField(d.RuleName, 256),
			PolicyVersion: rawField(d.PolicyVersion, 128), DryRun: d.DryRun, Reason: rawField(d.Reason, 1024), DecidedAt: d.DecidedAt}
		for _, a := range d.Actions {
			wd.Actions = append(wd.Actions, rawField(a.Type, 64))
		}
		p.Decision = wd
	}
	if o := n.Outcome; o != nil {
		wo := &WebhookOutcome{Kind: rawField(o.Kind, 40), Reason: rawField(o.Reason, 1024), Guard: rawField(o.Guard, 64),
			ActionID: rawField(o.ActionID, 64), ActionStatus: rawField(o.ActionStatus, 40), At: o.At}
		if o.Action != nil {
			wo.ActionType = rawField(o.Action.Type, 64)
			if wo.ActionID == "" {
				wo.ActionID = rawField(o.Action.ID, 64)
			}
			if wo.ActionStatus == "" {
				wo.ActionStatus = rawField(o.Action.Status, 40)
			}
		}
		p.Outcome = wo
	}
	if ap := n.Approval; ap != nil {
		p.Approval = &WebhookApproval{RequestID: rawField(ap.RequestID, 256), ExpiresAt: ap.ExpiresAt, OnExpiry: rawField(ap.OnExpiry, 20)}
	}
	if h := n.Hunt; h != nil {
		wt := &WebhookTable{Name: rawField(h.Name, 512), ID: rawField(h.HuntID, 256), Severity: rawField(h.Severity, 40),
			RunAt: h.RunAt, TotalRows: h.TotalRows, NewRows: h.NewRows, Columns: []string{}, Rows: []map[string]string{}}
		cols := h.Columns
		if len(cols) > 100 {
			cols = cols[:100]
		}
		for _, c := range cols {
			wt.Columns = append(wt.Columns, rawField(c, 256))
		}
		for i, row := range h.Rows {
			if i == DefaultMaxTableRows {
				break
			}
			out := make(map[string]string, len(row))
			for k, v := range row {
				if len(out) == 100 {
					break
				}
				out[rawField(k, 256)] = rawField(v, 4096)
			}
			wt.Rows = append(wt.Rows, out)
		}
		if wt.TotalRows < len(h.Rows) {
			wt.TotalRows = len(h.Rows)
		}
		p.Table = wt
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding webhook payload: %w", err)
	}
	return b, nil
}

func webhookEvidenceOf(e mde.Evidence) WebhookEvidence {
	we := WebhookEvidence{EntityType: rawField(e.EntityType, 64), Fields: map[string]string{}}
	set := func(k string, p *string, max int) {
		if p != nil && *p != "" {
			we.Fields[k] = rawField(*p, max)
		}
	}
	set("fileName", e.FileName, 1024)
	set("filePath", e.FilePath, 2048)
	set("sha1", e.Sha1, 64)
	set("sha256", e.Sha256, 80)
	if e.ProcessID != nil {
		we.Fields["processId"] = strconv.FormatInt(*e.ProcessID, 10)
	}
	set("processCommandLine", e.ProcessCommandLine, 8192)
	set("parentProcessFileName", e.ParentProcessFileName, 1024)
	set("parentProcessFilePath", e.ParentProcessFilePath, 2048)
	set("ipAddress", e.IPAddress, 64)
	set("url", e.URL, 4096)
	set("accountName", e.AccountName, 256)
	set("domainName", e.DomainName, 256)
	set("userPrincipalName", e.UserPrincipalName, 256)
	set("registryKey", e.RegistryKey, 2048)
	set("registryValueName", e.RegistryValueName, 1024)
	set("registryValue", e.RegistryValue, 4096)
	set("detectionStatus", e.DetectionStatus, 64)
	if len(we.Fields) == 0 {
		we.Fields = nil
	}
	return we
}
