// Package scheduledhunt is the ScheduledHunt function (timer). Each tick it
// runs the catalog's hunts that are due by their own frequency (the last run
// is kept in the store), inside the hunting quota. A hunt's new findings go
// out as one digest notification per run and, when the hunt says so, as one
// alert per device on the "alerts" queue, where they meet the same policy and
// guards as any Defender alert.
package scheduledhunt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "ScheduledHunt"

// Runner runs hunts.
type Runner interface {
	RunDue(ctx context.Context, now time.Time) ([]hunt.RunReport, error)
	Hunt(id string) (hunt.Hunt, bool)
}

// Function is ScheduledHunt.
type Function struct {
	Runner   Runner
	Queue    queue.Sender
	Channels []string
	MaxRows  int
	Now      func() time.Time
	Logger   *slog.Logger
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
		if err := Publish(ctx, f.Queue, f.Runner, r, f.Channels, f.MaxRows, f.Logger); err != nil {
			return wire.Result{}, err
		}
		inv.Log(fmt.Sprintf("hunt %s: rows=%d new=%d skipped=%q", r.HuntID, r.TotalRows, len(r.NewRows), r.Skipped))
	}
	return wire.Result{}, nil
}

// Publish sends a run's digest and device alerts. Message ids derive from the
// hunt id and run time, so a replayed run publishes nothing twice.
func Publish(ctx context.Context, q queue.Sender, rn Runner, r hunt.RunReport, channels []string, maxRows int, log *slog.Logger) error {
	if r.Err != nil {
		log.Warn("hunt failed; retried later", fn.KeyHuntID, r.HuntID, fn.KeyReason, r.Err.Error())
		return nil
	}
	if len(r.NewRows) == 0 {
		return nil
	}
	slot := r.RanAt.UTC().Format("20060102T150405")
	n := pipeline.Notification{ID: "n-hunt-" + r.HuntID + "-" + slot, Kind: pipeline.NotifyHunt, Channels: channels,
		Hunt: hunt.Digest(r, maxRows), CreatedAt: r.RanAt}
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if err := q.Send(ctx, queue.Notifications, queue.Message{MessageID: n.ID, CorrelationID: r.HuntID, Subject: n.Kind,
		ContentType: "application/json", Body: body}); err != nil {
		return fmt.Errorf("sending digest of hunt %s: %w", r.HuntID, err)
	}
	h, ok := rn.Hunt(r.HuntID)
	if !ok {
		return nil
	}
	alerts, skipped := hunt.DeviceAlerts(h, r, r.RanAt)
	if len(skipped) > 0 {
		log.Warn("hunt rows without a valid device id raised no alert", fn.KeyHuntID, r.HuntID, fn.KeyCount, len(skipped))
	}
	msgs := make([]queue.Message, 0, len(alerts))
	for _, a := range alerts {
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		msgs = append(msgs, queue.Message{MessageID: "alert-" + a.ID, CorrelationID: r.HuntID, Subject: "alert",
			ContentType: "application/json", Body: b, Properties: map[string]any{"source": "hunt", "hunt": r.HuntID}})
	}
	if len(msgs) > 0 {
		if err := q.Send(ctx, queue.Alerts, msgs...); err != nil {
			return fmt.Errorf("raising alerts of hunt %s: %w", r.HuntID, err)
		}
		log.Info("hunt raised device alerts", fn.KeyHuntID, r.HuntID, fn.KeyCount, len(msgs))
	}
	return nil
}
