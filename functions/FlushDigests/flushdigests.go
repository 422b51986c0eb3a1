// Package flushdigests is the FlushDigests function (timer, on the polling
// schedule). When MDEFLOW_NOTIFY_GROUP_WINDOW groups the notifications of
// one incident, the alerts folded into a group go out as one digest once the
// window has closed; this timer sends the digests of quiet incidents, which
// no later alert would flush.
package flushdigests

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "FlushDigests"

// Flusher sends the digests of closed groups.
type Flusher interface {
	FlushGroups(ctx context.Context, now time.Time) ([]notify.Report, error)
}

// Function is FlushDigests.
type Function struct {
	Flusher Flusher
	Enabled bool // grouping is on
	Now     func() time.Time
	Logger  *slog.Logger
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	if _, err := inv.Timer("timer"); err != nil {
		return wire.Result{}, fmt.Errorf("decoding timer: %w", err)
	}
	if !f.Enabled {
		return wire.Result{}, nil
	}
	reps, err := f.Flusher.FlushGroups(ctx, f.Now().UTC())
	if err != nil {
		return wire.Result{}, fmt.Errorf("flushing notification digests: %w", err)
	}
	if len(reps) > 0 {
		f.Logger.Info("notification digests sent", fn.KeyCount, len(reps))
	}
	return wire.Result{}, nil
}
