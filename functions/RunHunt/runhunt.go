// Package runhunt is the RunHunt function (HTTP POST /api/hunts/{id}/run,
// authLevel function): it runs one hunt of the catalog now, whatever its
// schedule, and publishes its findings like ScheduledHunt.
package runhunt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	scheduledhunt "github.com/mdeflow/mdeflow/functions/ScheduledHunt"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "RunHunt"

// Runner runs one hunt.
type Runner interface {
	scheduledhunt.Runner
	RunOne(ctx context.Context, huntID string, now time.Time) (hunt.RunReport, error)
}

// Function is RunHunt.
type Function struct {
	Runner   Runner
	Queue    queue.Sender
	Channels []string
	MaxRows  int
	Now      func() time.Time
	Logger   *slog.Logger
}

type reply struct {
	HuntID    string `json:"huntId"`
	TotalRows int    `json:"totalRows"`
	NewRows   int    `json:"newRows"`
	Skipped   string `json:"skipped,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	req, err := inv.HTTP("req")
	if err != nil {
		return wire.Result{}, fmt.Errorf("decoding http trigger: %w", err)
	}
	id := req.Params["id"]
	if _, ok := f.Runner.Hunt(id); !ok {
		return wire.JSONHTTPResponse("res", http.StatusNotFound, reply{HuntID: "", Error: "no hunt has this id"}), nil
	}
	r, err := f.Runner.RunOne(ctx, id, f.Now().UTC())
	if err != nil && !errors.Is(err, r.Err) {
		return wire.Result{}, err
	}
	if r.Err != nil {
		return wire.JSONHTTPResponse("res", http.StatusBadGateway, reply{HuntID: id, Error: r.Err.Error()}), nil
	}
	if err := scheduledhunt.Publish(ctx, f.Queue, f.Runner, r, f.Channels, f.MaxRows, f.Logger); err != nil {
		return wire.Result{}, err
	}
	return wire.JSONHTTPResponse("res", http.StatusOK, reply{HuntID: id, TotalRows: r.TotalRows, NewRows: len(r.NewRows), Skipped: r.Skipped}), nil
}
