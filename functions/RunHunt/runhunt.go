// Package runhunt is the RunHunt function (HTTP POST /api/hunts/{id}/run,
// authLevel function): it runs one hunt of the catalog now, whatever its
// schedule, and publishes its new findings like ScheduledHunt.
package runhunt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "RunHunt"

// Runner runs one hunt.
type Runner interface {
	RunOne(ctx context.Context, huntID string, now time.Time) (hunt.RunReport, error)
}

// Publisher publishes a run's findings.
type Publisher interface {
	Publish(ctx context.Context, r hunt.RunReport) error
}

// Function is RunHunt.
type Function struct {
	Runner    Runner
	Publisher Publisher
	Now       func() time.Time
	Logger    *slog.Logger
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
	r, err := f.Runner.RunOne(ctx, id, f.Now().UTC())
	switch {
	case errors.Is(err, hunt.ErrUnknownHunt):
		return wire.JSONHTTPResponse("res", http.StatusNotFound, reply{Error: "no hunt has this id"}), nil
	case errors.Is(err, hunt.ErrNotRunnable):
		return wire.JSONHTTPResponse("res", http.StatusUnprocessableEntity, reply{HuntID: id, Error: err.Error()}), nil
	case err != nil:
		f.Logger.Warn("on-demand hunt failed", fn.KeyHuntID, id, fn.KeyReason, err.Error())
		return wire.JSONHTTPResponse("res", http.StatusBadGateway, reply{HuntID: id, Error: "the hunting API failed; see the logs"}), nil
	}
	if err := f.Publisher.Publish(ctx, r); err != nil {
		return wire.Result{}, err
	}
	return wire.JSONHTTPResponse("res", http.StatusOK, reply{HuntID: id, TotalRows: r.TotalRows, NewRows: len(r.NewRows), Skipped: r.Skipped}), nil
}
