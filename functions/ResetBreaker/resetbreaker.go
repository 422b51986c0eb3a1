// Package resetbreaker is the ResetBreaker function (HTTP GET/POST
// /api/breaker, authLevel admin): GET shows the isolation breaker, POST with
// {"action":"reset","by":"<who>"} closes it again after a trip.
package resetbreaker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "ResetBreaker"

// Breaker is the isolation cap's state.
type Breaker interface {
	State(ctx context.Context) (policy.BreakerState, error)
	Reset(ctx context.Context, by string, now time.Time) error
}

// Function is ResetBreaker.
type Function struct {
	Breaker Breaker
	Now     func() time.Time
	Logger  *slog.Logger
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	req, err := inv.HTTP("req")
	if err != nil {
		return wire.Result{}, fmt.Errorf("decoding http trigger: %w", err)
	}
	now := f.Now().UTC()
	if req.Method == http.MethodPost {
		var b struct {
			Action string `json:"action"`
			By     string `json:"by"`
		}
		if err := json.Unmarshal(req.Body, &b); err != nil || b.Action != "reset" || strings.TrimSpace(b.By) == "" || len(b.By) > 200 {
			return wire.JSONHTTPResponse("res", http.StatusBadRequest, map[string]string{"error": `send {"action":"reset","by":"<your name>"}`}), nil
		}
		if err := f.Breaker.Reset(ctx, b.By, now); err != nil {
			return wire.Result{}, fmt.Errorf("resetting breaker: %w", err)
		}
		f.Logger.Info("isolation breaker reset", "by", b.By)
	}
	st, err := f.Breaker.State(ctx)
	if err != nil {
		return wire.Result{}, fmt.Errorf("reading breaker: %w", err)
	}
	f.Logger.Debug("breaker read", fn.KeyFunction, Name)
	return wire.JSONHTTPResponse("res", http.StatusOK, struct {
		policy.BreakerState
		// WindowText is Window for people ("1h0m0s"); Window stays in
		// nanoseconds for programs.
		WindowText string `json:"windowText"`
	}{st, st.Window.String()}), nil
}
