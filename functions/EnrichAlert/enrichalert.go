// Package enrichalert is the EnrichAlert function (Service Bus, queue
// "alerts"): it fetches the alert with its evidence and its machine,
// evaluates the policy, records the decision, and dispatches: an isolation
// request to "isolations" when the decision has machine actions, and a
// notification to "notifications" otherwise (IsolateMachine notifies the
// outcome of the actions it runs).
//
// The decision is recorded once (insert-if-absent keyed by the alert id) and
// every downstream message has a deterministic id. A redelivered message
// re-dispatches the recorded decision, so a crash between recording and
// sending loses nothing and duplicates nothing.
package enrichalert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "EnrichAlert"

// DecisionTable keeps one decision per alert.
const DecisionTable = "decisions"

// Defender is what EnrichAlert calls.
type Defender interface {
	GetAlert(ctx context.Context, id string, expandEvidence bool) (*mde.Alert, error)
	GetMachine(ctx context.Context, id string) (*mde.Machine, error)
}

// Policy decides; it is pure.
type Policy interface {
	Evaluate(a *mde.Alert, m *mde.Machine, now time.Time) pipeline.Decision
}

// Function is EnrichAlert.
type Function struct {
	Defender Defender
	Policy   Policy
	Store    store.Backend
	Queue    queue.Sender
	Now      func() time.Time
	Logger   *slog.Logger
}

// Record is what the decisions table holds.
type Record struct {
	Decision pipeline.Decision     `json:"decision"`
	Alert    *pipeline.AlertInfo   `json:"alert"`
	Machine  *pipeline.MachineInfo `json:"machine,omitempty"`
	Source   string                `json:"source,omitempty"`
}

// HuntAlertTable keeps the synthetic alerts hunts raise, keyed by alert id.
// Handle takes a hunt alert from here, never from the message: anyone who
// can send to the alerts queue could otherwise make up a "hunt" alert of
// any severity for any machine.
const HuntAlertTable = "huntalerts"

// RecordHuntAlert records a hunt-raised alert; ScheduledHunt calls it
// before sending the alert's message.
func RecordHuntAlert(ctx context.Context, b store.Backend, a *mde.Alert) error {
	if a == nil || !pipeline.IsHuntAlertID(a.ID) {
		return errors.New("recording hunt alert: not a hunt alert id")
	}
	k := store.EscapeKey(a.ID)
	if _, err := store.UpsertJSON(ctx, b, HuntAlertTable, k, k, a); err != nil {
		return fmt.Errorf("recording hunt alert %s: %w", a.ID, err)
	}
	return nil
}

// Handle processes one alerts-queue message.
func (f *Function) Handle(ctx context.Context, _ *wire.Invocation, msg wire.ServiceBusMessage) error {
	m, err := pipeline.ParseAlertMessage(msg.Body)
	if err != nil {
		return fn.Permanent(err)
	}
	if pipeline.IsHuntAlertID(m.ID) {
		// A hunt alert is always the one the hunt recorded, whatever the
		// message carries (or when it carries none).
		var a mde.Alert
		k := store.EscapeKey(m.ID)
		_, err := store.GetJSON(ctx, f.Store, HuntAlertTable, k, k, &a)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fn.Permanentf("hunt alert %s was not raised by this deployment's hunts", m.ID)
		case err != nil:
			return fmt.Errorf("reading hunt alert %s: %w", m.ID, err)
		case a.ID != m.ID:
			return fn.Permanentf("recorded hunt alert %q does not match message id %q", a.ID, m.ID)
		}
		m.Alert = &a
	}
	return f.Process(ctx, m)
}

// Process decides and dispatches one alert.
func (f *Function) Process(ctx context.Context, m pipeline.AlertMessage) error {
	log := f.Logger.With(fn.KeyAlertID, m.ID)
	key := store.EscapeKey(m.ID)
	var rec Record
	if _, err := store.GetJSON(ctx, f.Store, DecisionTable, key, key, &rec); err == nil {
		log.Info("alert already decided; re-dispatching the recorded decision", fn.KeyRule, rec.Decision.RuleID)
		return f.dispatch(ctx, rec)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reading decision of alert %s: %w", m.ID, err)
	}

	alert := m.Alert
	if alert != nil && !pipeline.IsHuntAlertID(m.ID) {
		// Only hunts raise alerts that Defender does not know. A real
		// alert is always read from Defender: a forwarded message must not
		// be able to rewrite its severity or its machine.
		log.Warn("ignoring the alert embedded in the message: only hunt-raised alerts travel in messages", fn.KeyReason, "not a hunt alert id")
		alert = nil
	}
	if alert == nil {
		a, err := f.Defender.GetAlert(ctx, m.ID, true)
		if err != nil {
			if errors.Is(err, mde.ErrNotFound) {
				return fn.Permanentf("alert %s does not exist in Defender: %w", m.ID, err)
			}
			return fmt.Errorf("fetching alert %s: %w", m.ID, err)
		}
		alert = a
	}
	if alert.ID != m.ID {
		return fn.Permanentf("Defender returned alert %q for id %q", alert.ID, m.ID)
	}
	machineID := alert.MachineID
	if m.MachineID != "" && machineID != "" && m.MachineID != machineID {
		// A forwarded message must not steer the response to another device.
		return fn.Permanentf("message names machine %s but alert %s is on machine %s", m.MachineID, m.ID, machineID)
	}
	if machineID == "" && m.MachineID != "" {
		// The alert names no machine: the message must not pick one.
		log.Warn("the message names a machine but the alert has none; ignoring it", fn.KeyMachineID, m.MachineID)
	}
	var machine *mde.Machine
	if machineID != "" {
		if err := mde.ValidateMachineID(machineID); err != nil {
			return fn.Permanent(err)
		}
		mc, err := f.Defender.GetMachine(ctx, machineID)
		switch {
		case err == nil:
			machine = mc
		case errors.Is(err, mde.ErrNotFound):
			log.Warn("machine of the alert not found; deciding without it", fn.KeyMachineID, machineID)
		default:
			return fmt.Errorf("fetching machine %s: %w", machineID, err)
		}
	}
	if alert.MachineID == "" {
		alert.MachineID = machineID
	}

	d := f.Policy.Evaluate(alert, machine, f.Now().UTC())
	d.AlertID, d.MachineID = alert.ID, machineID
	rec = Record{Decision: d, Alert: pipeline.AlertInfoOf(alert), Machine: pipeline.MachineInfoOf(machine), Source: m.Source}
	if _, err := store.PutJSON(ctx, f.Store, DecisionTable, key, key, rec, ""); errors.Is(err, store.ErrExists) {
		// Another delivery decided first: use its decision, not ours.
		if _, err := store.GetJSON(ctx, f.Store, DecisionTable, key, key, &rec); err != nil {
			return fmt.Errorf("reading concurrent decision of alert %s: %w", m.ID, err)
		}
	} else if err != nil {
		return fmt.Errorf("recording decision of alert %s: %w", m.ID, err)
	}
	log.Info("alert decided", fn.KeyMachineID, machineID, fn.KeyRule, rec.Decision.RuleID,
		fn.KeyDecision, actionTypes(rec.Decision), fn.KeyDryRun, rec.Decision.DryRun)
	return f.dispatch(ctx, rec)
}

// machineActions are the decision's actions that IsolateMachine runs.
var machineActions = map[string]bool{
	pipeline.ActionIsolate: true, pipeline.ActionRestrict: true, pipeline.ActionAVScan: true,
	pipeline.ActionCollectPackage: true, pipeline.ActionTag: true, pipeline.ActionUpdateAlert: true,
}

func (f *Function) dispatch(ctx context.Context, rec Record) error {
	d := rec.Decision
	hasMachineActions := false
	for _, a := range d.Actions {
		if machineActions[a.Type] {
			hasMachineActions = true
		}
	}
	if hasMachineActions && d.MachineID != "" {
		iso, _ := d.Has(pipeline.ActionIsolate)
		req := pipeline.IsolationRequest{
			RequestID:     "iso-" + d.AlertID,
			AlertID:       d.AlertID,
			MachineID:     d.MachineID,
			IsolationType: iso.IsolationType,
			Comment:       Comment(d, rec.Alert),
			Decision:      d,
			Alert:         rec.Alert,
			RequestedAt:   d.DecidedAt,
		}
		if rec.Machine != nil {
			req.ComputerDNSName = rec.Machine.ComputerDNSName
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		return f.Queue.Send(ctx, queue.Isolations, queue.Message{
			MessageID: req.RequestID, CorrelationID: d.AlertID, Subject: "isolation",
			ContentType: "application/json", Body: body,
			Properties: map[string]any{"rule": d.RuleID, "machineId": d.MachineID},
		})
	}
	if _, notify := d.Has(pipeline.ActionNotify); !notify && !hasMachineActions {
		return nil
	}
	n := pipeline.Notification{
		ID: "n-alert-" + d.AlertID, Kind: pipeline.NotifyAlert, Channels: d.Channels,
		Alert: rec.Alert, Machine: rec.Machine, Decision: &d, CreatedAt: d.DecidedAt,
	}
	if rec.Alert != nil && rec.Alert.IncidentID != nil {
		n.GroupKey = fmt.Sprintf("incident-%d", *rec.Alert.IncidentID)
	}
	if hasMachineActions {
		n.Outcome = &pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: "noMachine",
			Reason: "the alert names no machine, so no machine action was taken", At: d.DecidedAt}
	}
	return SendNotification(ctx, f.Queue, n)
}

// SendNotification enqueues a notification with its deterministic id.
func SendNotification(ctx context.Context, q queue.Sender, n pipeline.Notification) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return q.Send(ctx, queue.Notifications, queue.Message{
		MessageID: n.ID, CorrelationID: correlation(n), Subject: n.Kind,
		ContentType: "application/json", Body: body,
	})
}

func correlation(n pipeline.Notification) string {
	if n.Alert != nil {
		return n.Alert.ID
	}
	return n.ID
}

// Comment is the isolation comment, naming the alert and the rule. It is
// sent to Defender, so it is built from validated ids and trimmed text only.
func Comment(d pipeline.Decision, a *pipeline.AlertInfo) string {
	c := fmt.Sprintf("mdeflow: alert %s, rule %s (policy %s)", d.AlertID, d.RuleID, d.PolicyVersion)
	if a != nil && a.Title != "" {
		title := []rune(a.Title)
		if len(title) > 120 {
			title = append(title[:120], '…')
		}
		c += ": " + string(title)
	}
	return c
}

func actionTypes(d pipeline.Decision) []string {
	out := make([]string, 0, len(d.Actions))
	for _, a := range d.Actions {
		out = append(out, a.Type)
	}
	return out
}
