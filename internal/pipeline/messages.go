// Package pipeline defines the messages that travel between the functions of
// the alert -> enrich -> isolate -> notify pipeline, and the typed outcomes
// recorded in the audit. It has no I/O.
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// AlertMessage is the body of the "alerts" queue. Its minimal form is the
// Power Automate Defender connector's trigger shape
// {"id":"<alertId>","machineId":"<machineId>"}, so an existing flow or Logic
// App can forward into the queue unchanged.
type AlertMessage struct {
	ID        string `json:"id"`
	MachineID string `json:"machineId,omitempty"`
	// Source says where the alert came from: "poll", "http", "hunt", "forward"
	// (empty means forwarded by an external flow).
	Source string `json:"source,omitempty"`
	// Alert carries a synthetic alert (raised by a hunt) that does not exist
	// in the Defender API. EnrichAlert does not trust it: it uses the copy
	// the hunt recorded in the store, and ignores it on any other alert.
	Alert *mde.Alert `json:"alert,omitempty"`
}

// HuntAlertPrefix starts the ids of the synthetic alerts hunts raise
// (hunt.HuntAlertID); no Defender alert id has it.
const HuntAlertPrefix = "hunt-"

// IsHuntAlertID reports whether id names a hunt-raised alert, which does
// not exist in Defender.
func IsHuntAlertID(id string) bool { return strings.HasPrefix(id, HuntAlertPrefix) }

// ParseAlertMessage decodes and validates an alerts-queue body. Unknown
// fields are tolerated (flows add their own); a bad id is an error.
func ParseAlertMessage(body []byte) (AlertMessage, error) {
	var m AlertMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return m, fmt.Errorf("decoding alert message: %w", err)
	}
	m.ID = strings.TrimSpace(m.ID)
	m.MachineID = strings.TrimSpace(m.MachineID)
	if m.ID == "" {
		return m, errors.New("alert message has no \"id\"")
	}
	if err := mde.ValidateAlertID(m.ID); err != nil {
		return m, err
	}
	if m.MachineID != "" {
		if err := mde.ValidateMachineID(m.MachineID); err != nil {
			return m, err
		}
	}
	if m.Alert != nil && m.Alert.ID != m.ID {
		return m, fmt.Errorf("embedded alert id %q does not match message id %q", m.Alert.ID, m.ID)
	}
	return m, nil
}

// Decision is what the policy decided for one alert. It is recorded in the
// audit and carried in every downstream message and notification.
type Decision struct {
	AlertID       string    `json:"alertId"`
	MachineID     string    `json:"machineId,omitempty"`
	PolicyVersion string    `json:"policyVersion"`
	RuleID        string    `json:"ruleId"`
	RuleName      string    `json:"ruleName,omitempty"`
	Actions       []Action  `json:"actions"`
	Channels      []string  `json:"channels,omitempty"`
	DryRun        bool      `json:"dryRun,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	DecidedAt     time.Time `json:"decidedAt"`
}

// Action kinds a rule can list.
const (
	ActionIsolate        = "isolate"
	ActionRestrict       = "restrictCodeExecution"
	ActionAVScan         = "runAntiVirusScan"
	ActionCollectPackage = "collectInvestigationPackage"
	ActionTag            = "tag"
	ActionUpdateAlert    = "updateAlert"
	ActionNotify         = "notify"
)

// Action is one step of a decision, with its typed parameters.
type Action struct {
	Type string `json:"type"`
	// IsolationType for isolate: Full or Selective.
	IsolationType string `json:"isolationType,omitempty"`
	// ScanType for runAntiVirusScan: Quick or Full.
	ScanType string `json:"scanType,omitempty"`
	// Tag for tag.
	Tag string `json:"tag,omitempty"`
	// Alert update fields for updateAlert.
	Status         string `json:"status,omitempty"`
	AssignedTo     string `json:"assignedTo,omitempty"`
	Classification string `json:"classification,omitempty"`
	Determination  string `json:"determination,omitempty"`
	Comment        string `json:"comment,omitempty"`
	// RequireApproval makes an isolate wait for an approver.
	RequireApproval bool `json:"requireApproval,omitempty"`
	// DryRun on this action only.
	DryRun bool `json:"dryRun,omitempty"`
}

// Has reports whether the decision lists an action of that type.
func (d Decision) Has(actionType string) (Action, bool) {
	for _, a := range d.Actions {
		if a.Type == actionType {
			return a, true
		}
	}
	return Action{}, false
}

// IsolationRequest is the body of the "isolations" queue.
type IsolationRequest struct {
	// RequestID is deterministic: "iso-<alertId>" for alert-driven requests,
	// so a redelivered EnrichAlert produces the same request.
	RequestID       string     `json:"requestId"`
	AlertID         string     `json:"alertId,omitempty"`
	MachineID       string     `json:"machineId"`
	ComputerDNSName string     `json:"computerDnsName,omitempty"`
	IsolationType   string     `json:"isolationType"`
	Comment         string     `json:"comment"`
	Decision        Decision   `json:"decision"`
	Alert           *AlertInfo `json:"alert,omitempty"`
	// Manual is set for requests from the manual HTTP functions.
	Manual      bool      `json:"manual,omitempty"`
	Requestor   string    `json:"requestor,omitempty"`
	Approved    bool      `json:"approved,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
}

// Validate checks ids and enums of an isolation request.
func (r IsolationRequest) Validate() error {
	var errs []error
	if r.RequestID == "" {
		errs = append(errs, errors.New("isolation request has no requestId"))
	}
	if err := mde.ValidateMachineID(r.MachineID); err != nil {
		errs = append(errs, err)
	}
	if r.AlertID != "" {
		if err := mde.ValidateAlertID(r.AlertID); err != nil {
			errs = append(errs, err)
		}
	}
	switch r.IsolationType {
	case mde.IsolationFull, mde.IsolationSelective:
	default:
		errs = append(errs, fmt.Errorf("isolation type %q is not Full or Selective", r.IsolationType))
	}
	return errors.Join(errs...)
}

// AlertInfo is the part of an alert that travels with requests and
// notifications (enough to render an e-mail without fetching again).
type AlertInfo struct {
	ID              string         `json:"id"`
	Title           string         `json:"title"`
	Severity        string         `json:"severity"`
	Category        string         `json:"category,omitempty"`
	DetectionSource string         `json:"detectionSource,omitempty"`
	Description     string         `json:"description,omitempty"`
	IncidentID      *int64         `json:"incidentId,omitempty"`
	CreatedAt       *time.Time     `json:"alertCreationTime,omitempty"`
	MitreTechniques []string       `json:"mitreTechniques,omitempty"`
	Evidence        []mde.Evidence `json:"evidence,omitempty"`
}

// Caps of the alert data that travels downstream. Titles, descriptions and
// above all evidence (process command lines, paths, URLs) are
// attacker-influenced and unbounded, while every message and record that
// carries an AlertInfo must fit a Service Bus message (256 KiB on the
// standard tier) and a store entity, with the rest of the message.
const (
	maxInfoEvidence  = 20
	maxInfoTitle     = 1024 // runes
	maxInfoText      = 4000 // runes, description
	maxInfoShort     = 256  // runes, severity, category, detection source
	maxInfoMitre     = 64   // techniques
	maxEvidenceField = 2048 // runes, each evidence string
	// maxInfoJSON bounds the encoded AlertInfo: evidence items that do not
	// fit are left out.
	maxInfoJSON = 64 << 10
)

// AlertInfoOf trims an alert to what travels downstream: at most 20
// evidence items, every string capped, and the whole at most 64 KiB of
// JSON (trailing evidence items are dropped to fit).
func AlertInfoOf(a *mde.Alert) *AlertInfo {
	if a == nil {
		return nil
	}
	info := &AlertInfo{
		ID: a.ID, Title: capRunes(a.Title, maxInfoTitle), Severity: capRunes(a.Severity, maxInfoShort),
		Category: capRunes(a.Category, maxInfoShort), DetectionSource: capRunes(a.DetectionSource, maxInfoShort),
		Description: capRunes(a.Description, maxInfoText), IncidentID: a.IncidentID, CreatedAt: a.AlertCreationTime,
		MitreTechniques: a.MitreTechniques,
	}
	if len(info.MitreTechniques) > maxInfoMitre {
		info.MitreTechniques = info.MitreTechniques[:maxInfoMitre]
	}
	for _, t := range info.MitreTechniques {
		if len(t) > maxInfoShort {
			capped := make([]string, len(info.MitreTechniques))
			for j, u := range info.MitreTechniques {
				capped[j] = capRunes(u, maxInfoShort)
			}
			info.MitreTechniques = capped
			break
		}
	}
	base, err := json.Marshal(info)
	if err != nil {
		return info
	}
	size := len(base)
	for i, e := range a.Evidence {
		if i == maxInfoEvidence {
			break
		}
		e = capEvidence(e)
		b, err := json.Marshal(e)
		if err != nil || size+len(b)+len(`,"evidence":[]`) > maxInfoJSON {
			break
		}
		size += len(b) + 1
		info.Evidence = append(info.Evidence, e)
	}
	return info
}

// capEvidence caps every string of an evidence item (a copy).
func capEvidence(e mde.Evidence) mde.Evidence {
	for _, p := range []**string{&e.Sha1, &e.Sha256, &e.FileName, &e.FilePath, &e.ProcessCommandLine,
		&e.ParentProcessFileName, &e.ParentProcessFilePath, &e.IPAddress, &e.URL, &e.RegistryKey, &e.RegistryHive,
		&e.RegistryValueType, &e.RegistryValue, &e.RegistryValueName, &e.AccountName, &e.DomainName, &e.UserSid,
		&e.AadUserID, &e.UserPrincipalName, &e.DetectionStatus} {
		if *p != nil && len(**p) > maxEvidenceField {
			c := capRunes(**p, maxEvidenceField)
			*p = &c
		}
	}
	e.EntityType = capRunes(e.EntityType, maxInfoShort)
	return e
}

// capRunes cuts s to at most n runes, marking the cut with "…".
func capRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}

// MachineInfo is the part of a machine that travels with notifications.
type MachineInfo struct {
	ID              string   `json:"id"`
	ComputerDNSName string   `json:"computerDnsName"`
	OSPlatform      string   `json:"osPlatform,omitempty"`
	RbacGroupName   string   `json:"rbacGroupName,omitempty"`
	RiskScore       string   `json:"riskScore,omitempty"`
	ExposureLevel   string   `json:"exposureLevel,omitempty"`
	HealthStatus    string   `json:"healthStatus,omitempty"`
	LastIPAddress   string   `json:"lastIpAddress,omitempty"`
	Tags            []string `json:"machineTags,omitempty"`
}

// MachineInfoOf trims a machine to what travels downstream.
func MachineInfoOf(m *mde.Machine) *MachineInfo {
	if m == nil {
		return nil
	}
	return &MachineInfo{
		ID: m.ID, ComputerDNSName: m.ComputerDNSName, OSPlatform: m.OSPlatform,
		RbacGroupName: mde.Str(m.RbacGroupName), RiskScore: mde.Str(m.RiskScore),
		ExposureLevel: mde.Str(m.ExposureLevel), HealthStatus: m.HealthStatus,
		LastIPAddress: m.LastIPAddress, Tags: m.MachineTags,
	}
}

// ActionFollow is the body of the "actions" queue: check a machine action
// again later (sent with ScheduledEnqueueTime).
type ActionFollow struct {
	// Kind is FollowAction (default) or FollowApprovalExpiry.
	Kind      string           `json:"kind,omitempty"`
	ActionID  string           `json:"actionId,omitempty"`
	MachineID string           `json:"machineId"`
	RequestID string           `json:"requestId"`
	Attempt   int              `json:"attempt"`
	Deadline  time.Time        `json:"deadline"`
	Request   IsolationRequest `json:"request"`
}

// Follow-up kinds on the "actions" queue.
const (
	FollowAction         = "action"
	FollowApprovalExpiry = "approvalExpiry"
)

// Outcome kinds. A guard that refuses to act is Skipped, not an error.
const (
	OutcomeSucceeded       = "succeeded"
	OutcomeAccepted        = "accepted" // action created, not final yet
	OutcomeSkipped         = "skipped"
	OutcomeDryRun          = "dryRun"
	OutcomeFailed          = "failed"
	OutcomePendingApproval = "pendingApproval"
	OutcomeDenied          = "denied"
	OutcomeExpired         = "expired"
	OutcomeNotified        = "notified"
)

// Outcome is the typed result of an action step.
type Outcome struct {
	Kind   string `json:"kind"`
	Reason string `json:"reason,omitempty"`
	// Guard names the guard that skipped ("protected", "alreadyIsolated",
	// "cap", "dryRun", "ambiguousHost", ...).
	Guard        string             `json:"guard,omitempty"`
	ActionID     string             `json:"actionId,omitempty"`
	ActionStatus string             `json:"actionStatus,omitempty"`
	Action       *mde.MachineAction `json:"action,omitempty"`
	At           time.Time          `json:"at"`
}

// Notification kinds.
const (
	NotifyAlert     = "alert"     // notify-only decision
	NotifyIsolation = "isolation" // outcome of an isolation request
	NotifyApproval  = "approval"  // an isolation waits for an approver
	NotifyBreaker   = "breaker"   // the isolation cap tripped
	NotifyHunt      = "hunt"      // hunt digest
)

// Notification is the body of the "notifications" queue.
type Notification struct {
	// ID is deterministic and makes delivery idempotent per channel.
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Channels []string `json:"channels,omitempty"`
	// Recipients, when set, replace the mail channels' configured
	// recipients, and the notification goes to mail channels only (the
	// policy's approvers receive the approval links, nobody else).
	Recipients []string     `json:"recipients,omitempty"`
	Alert      *AlertInfo   `json:"alert,omitempty"`
	Machine    *MachineInfo `json:"machine,omitempty"`
	Decision   *Decision    `json:"decision,omitempty"`
	Outcome    *Outcome     `json:"outcome,omitempty"`
	Approval   *Approval    `json:"approval,omitempty"`
	Hunt       *HuntDigest  `json:"hunt,omitempty"`
	Text       string       `json:"text,omitempty"` // free text for breaker/system notices
	GroupKey   string       `json:"groupKey,omitempty"`
	CreatedAt  time.Time    `json:"createdAt"`
}

// Approval carries the signed links for an isolation waiting for approval.
type Approval struct {
	RequestID  string    `json:"requestId"`
	ApproveURL string    `json:"approveUrl"`
	DenyURL    string    `json:"denyUrl"`
	ExpiresAt  time.Time `json:"expiresAt"`
	OnExpiry   string    `json:"onExpiry"` // "deny" or "isolate"
}

// HuntDigest is one hunt run's findings, for the digest notification.
type HuntDigest struct {
	HuntID    string              `json:"huntId"`
	Name      string              `json:"name"`
	Severity  string              `json:"severity,omitempty"`
	RunAt     time.Time           `json:"runAt"`
	Columns   []string            `json:"columns"`
	Rows      []map[string]string `json:"rows"` // capped
	TotalRows int                 `json:"totalRows"`
	NewRows   int                 `json:"newRows"`
}
