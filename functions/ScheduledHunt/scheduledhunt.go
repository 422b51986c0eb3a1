// Package scheduledhunt is the ScheduledHunt function (timer). Each tick it
// runs the catalog's hunts that are due by their own frequency (the last run
// is kept in the store), inside the hunting quota. A hunt's new findings go
// out as one digest notification per run and, when the hunt says so, as one
// alert per device on the "alerts" queue, where they meet the same policy and
// guards as any Defender alert.
//
// The Publisher is the runner's publish hook: it runs before a slot is
// marked done, so a crash between the query and the notification makes the
// slot run again instead of losing its findings.
package scheduledhunt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	enrichalert "github.com/mdeflow/mdeflow/functions/EnrichAlert"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "ScheduledHunt"

// Runner runs the due hunts (and publishes through its hook).
type Runner interface {
	RunDue(ctx context.Context, now time.Time) ([]hunt.RunReport, error)
}

// Function is ScheduledHunt.
type Function struct {
	Runner Runner
	Now    func() time.Time
	Logger *slog.Logger
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	if _, err := inv.Timer("timer"); err != nil {
		return wire.Result{}, fmt.Errorf("decoding timer: %w", err)
	}
	reps, err := f.Runner.RunDue(ctx, f.Now().UTC())
	if err != nil {
		return wire.Result{}, err
	}
	for _, r := range reps {
		if r.Err != nil {
			f.Logger.Warn("hunt failed; retried later", fn.KeyHuntID, r.HuntID, fn.KeyReason, r.Err.Error(), "next_retry", r.NextRetry)
		}
		inv.Log(fmt.Sprintf("hunt %s: rows=%d new=%d skipped=%q", r.HuntID, r.TotalRows, len(r.NewRows), r.Skipped))
	}
	return wire.Result{}, nil
}

// Catalog finds a hunt by id.
type Catalog interface {
	Get(id string) (hunt.Hunt, bool)
}

// Tagger tags a device (the hunt's onHits.tagDevice).
type Tagger interface {
	AddMachineTag(ctx context.Context, id, tag string) (*mde.Machine, error)
}

// Publisher sends a run's digest and device alerts, and tags the devices of
// new rows when the hunt says so. Message ids derive from the hunt id and
// slot, so a replayed run publishes nothing twice; adding a tag twice is
// harmless.
type Publisher struct {
	Queue queue.Sender
	// Store records the device alerts before they are sent: EnrichAlert
	// accepts a hunt alert only when it was recorded (nil: not recorded,
	// and EnrichAlert refuses them).
	Store    store.Backend
	Catalog  Catalog
	Tagger   Tagger // nil: tagging is off
	DryRun   bool
	Channels []string
	MaxRows  int
	Logger   *slog.Logger
}

// Publish implements the runner's publish hook.
func (p *Publisher) Publish(ctx context.Context, r hunt.RunReport) error {
	digest := hunt.Digest(r, p.MaxRows)
	if digest == nil {
		return nil
	}
	slot := r.Slot.UTC().Format("20060102T150405")
	if r.Manual {
		slot = "manual-" + r.RanAt.UTC().Format("20060102T150405")
	}
	h, ok := p.Catalog.Get(r.HuntID)
	if !ok || h.OnHits.Notify {
		n := pipeline.Notification{ID: "n-hunt-" + r.HuntID + "-" + slot, Kind: pipeline.NotifyHunt, Channels: p.Channels,
			Hunt: digest, CreatedAt: r.RanAt}
		body, err := json.Marshal(n)
		if err != nil {
			return err
		}
		if err := p.Queue.Send(ctx, queue.Notifications, queue.Message{MessageID: n.ID, CorrelationID: r.HuntID, Subject: n.Kind,
			ContentType: "application/json", Body: body}); err != nil {
			return fmt.Errorf("sending digest of hunt %s: %w", r.HuntID, err)
		}
	}
	if !ok {
		return nil
	}
	alerts, skipped := hunt.DeviceAlerts(h, r, r.RanAt)
	if len(skipped) > 0 {
		p.Logger.Warn("hunt rows without a valid device id raised no alert", fn.KeyHuntID, r.HuntID, fn.KeyCount, len(skipped))
	}
	msgs := make([]queue.Message, 0, len(alerts))
	for _, a := range alerts {
		if p.Store != nil {
			if err := enrichalert.RecordHuntAlert(ctx, p.Store, a.Alert); err != nil {
				return fmt.Errorf("raising alerts of hunt %s: %w", r.HuntID, err)
			}
		}
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		msgs = append(msgs, queue.Message{MessageID: "alert-" + a.ID, CorrelationID: r.HuntID, Subject: "alert",
			ContentType: "application/json", Body: b, Properties: map[string]any{"source": "hunt", "hunt": r.HuntID}})
	}
	if len(msgs) > 0 {
		if err := p.Queue.Send(ctx, queue.Alerts, msgs...); err != nil {
			return fmt.Errorf("raising alerts of hunt %s: %w", r.HuntID, err)
		}
		p.Logger.Info("hunt raised device alerts", fn.KeyHuntID, r.HuntID, fn.KeyCount, len(msgs))
	}
	return p.tag(ctx, h, r)
}

// tag applies onHits.tagDevice to every valid device id of the new rows.
func (p *Publisher) tag(ctx context.Context, h hunt.Hunt, r hunt.RunReport) error {
	tag := h.OnHits.TagDevice
	if tag == "" || p.Tagger == nil {
		return nil
	}
	if err := mde.ValidateTag(tag); err != nil {
		return fn.Permanent(err)
	}
	col := "DeviceId"
	if ra := h.OnHits.RaiseAlerts; ra != nil && ra.DeviceIDColumn != "" {
		col = ra.DeviceIDColumn
	}
	done := map[string]bool{}
	for _, row := range r.NewRows {
		id, _ := row[col].(string)
		if done[id] || mde.ValidateMachineID(id) != nil {
			continue
		}
		done[id] = true
		if p.DryRun {
			p.Logger.Info("dry run: would tag device", fn.KeyHuntID, r.HuntID, fn.KeyMachineID, id, "tag", tag)
			continue
		}
		if _, err := p.Tagger.AddMachineTag(ctx, id, tag); err != nil {
			if fn.IsPermanent(err) {
				p.Logger.Warn("device not tagged", fn.KeyHuntID, r.HuntID, fn.KeyMachineID, id, fn.KeyReason, err.Error())
				continue
			}
			return fmt.Errorf("tagging device %s for hunt %s: %w", id, r.HuntID, err)
		}
		p.Logger.Info("device tagged", fn.KeyHuntID, r.HuntID, fn.KeyMachineID, id, "tag", tag)
	}
	return nil
}
