// Package onnewalert is the OnNewAlert function (timer trigger): it lists the
// alerts created since the saved checkpoint, minus an overlap window so that
// alerts which become visible late are not missed, and sends one message per
// alert not yet seen to the "alerts" queue.
//
// Order matters for "never lose an alert": the message is sent first (with a
// deterministic MessageID, so Service Bus duplicate detection drops a second
// send), then the alert is marked seen, and the checkpoint advances only when
// every alert of the poll was sent. A crash anywhere leads to a re-send that
// is dropped as a duplicate, never to a gap.
package onnewalert

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
const Name = "OnNewAlert"

// Tables and keys.
const (
	CheckpointName = "alerts-poll"
	SeenTable      = "seen"
)

// AlertLister lists alerts created at or after a time (MDE /api/alerts or
// Graph alerts_v2, chosen by MDEFLOW_ALERT_SOURCE).
type AlertLister interface {
	ListAlertsCreatedSince(ctx context.Context, since time.Time) ([]mde.Alert, error)
}

// Function is OnNewAlert.
type Function struct {
	Alerts   AlertLister
	Store    store.Backend
	Queue    queue.Sender
	Overlap  time.Duration
	Lookback time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// Report is what one poll did.
type Report struct {
	Listed, Sent, AlreadySeen, Invalid int
	From, Until                        time.Time
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	if _, err := inv.Timer("timer"); err != nil {
		return wire.Result{}, fmt.Errorf("decoding timer: %w", err)
	}
	r, err := f.Poll(ctx)
	if err != nil {
		return wire.Result{}, err
	}
	inv.Log(fmt.Sprintf("polled alerts from %s: listed=%d sent=%d seen=%d invalid=%d",
		r.From.Format(time.RFC3339), r.Listed, r.Sent, r.AlreadySeen, r.Invalid))
	return wire.Result{}, nil
}

// Poll runs one poll.
func (f *Function) Poll(ctx context.Context) (Report, error) {
	now := f.Now().UTC()
	cps := store.NewCheckpoints(f.Store)
	// The checkpoint is the start time of the last complete poll.
	until, etag, err := cps.GetCheckpoint(ctx, CheckpointName)
	if err != nil {
		return Report{}, fmt.Errorf("reading checkpoint: %w", err)
	}
	if until.IsZero() {
		// First poll: look back MDEFLOW_POLL_LOOKBACK, never further.
		until = now.Add(-f.Lookback)
	}
	r := Report{From: until.Add(-f.Overlap), Until: now}
	alerts, err := f.Alerts.ListAlertsCreatedSince(ctx, r.From)
	if err != nil {
		return r, fmt.Errorf("listing alerts since %s: %w", r.From.Format(time.RFC3339), err)
	}
	r.Listed = len(alerts)
	for i := range alerts {
		a := &alerts[i]
		if err := mde.ValidateAlertID(a.ID); err != nil {
			// Never put it on the queue; log without the (hostile) value's tail.
			r.Invalid++
			f.Logger.Warn("alert with invalid id skipped", fn.KeyReason, err.Error())
			continue
		}
		if a.MachineID != "" && mde.ValidateMachineID(a.MachineID) != nil {
			r.Invalid++
			f.Logger.Warn("alert with invalid machine id skipped", fn.KeyAlertID, a.ID)
			continue
		}
		key := store.EscapeKey(a.ID)
		if _, err := f.Store.Get(ctx, SeenTable, key, key); err == nil {
			r.AlreadySeen++
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return r, fmt.Errorf("checking alert %s: %w", a.ID, err)
		}
		body, err := json.Marshal(pipeline.AlertMessage{ID: a.ID, MachineID: a.MachineID, Source: "poll"})
		if err != nil {
			return r, err
		}
		if err := f.Queue.Send(ctx, queue.Alerts, queue.Message{
			MessageID: "alert-" + a.ID, CorrelationID: a.ID, Subject: "alert",
			ContentType: "application/json", Body: body,
			Properties: map[string]any{"source": "poll", "severity": a.Severity},
		}); err != nil {
			return r, fmt.Errorf("sending alert %s: %w", a.ID, err)
		}
		if _, err := store.UpsertJSON(ctx, f.Store, SeenTable, key, key, map[string]any{"at": now, "createdAt": a.AlertCreationTime}); err != nil {
			return r, fmt.Errorf("marking alert %s seen: %w", a.ID, err)
		}
		r.Sent++
		f.Logger.Info("alert queued", fn.KeyAlertID, a.ID, fn.KeyMachineID, a.MachineID)
	}
	// Advances with the ETag read above (never backwards).
	err = cps.AdvanceCheckpoint(ctx, CheckpointName, now, etag)
	if errors.Is(err, store.ErrConflict) {
		// Another instance advanced it meanwhile; our alerts are sent, its
		// checkpoint is as good as ours.
		f.Logger.Info("checkpoint advanced by another poll")
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("advancing checkpoint: %w", err)
	}
	return r, nil
}
