// Package manualisolate is the ManualIsolate function (HTTP POST
// /api/machines/{machine}/isolate, authLevel function). An analyst's request
// goes through the same queue, guards, cap and audit as an alert-driven one.
// {machine} is a device id or a host name; a name must match exactly one
// device.
package manualisolate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "ManualIsolate"

// Machines resolves a device id or a host name.
type Machines interface {
	GetMachine(ctx context.Context, id string) (*mde.Machine, error)
	FindMachineByName(ctx context.Context, name string) (*mde.Machine, error)
}

// Function is ManualIsolate.
type Function struct {
	Machines      Machines
	Queue         queue.Sender
	PolicyVersion string
	Channels      []string
	Now           func() time.Time
	Logger        *slog.Logger
}

// Body is the request body.
type Body struct {
	Comment       string `json:"comment"`
	IsolationType string `json:"isolationType"`
	Requestor     string `json:"requestor"`
	// IdempotencyKey makes a retried request the same request.
	IdempotencyKey string `json:"idempotencyKey"`
}

// Resolve finds the one machine a path parameter names, or answers an HTTP
// status with a message.
func Resolve(ctx context.Context, m Machines, ref string) (*mde.Machine, int, string) {
	ref = strings.TrimSpace(ref)
	if mde.ValidateMachineID(ref) == nil {
		mc, err := m.GetMachine(ctx, ref)
		switch {
		case err == nil:
			return mc, 0, ""
		case errors.Is(err, mde.ErrNotFound):
			return nil, http.StatusNotFound, "no device has this id"
		default:
			return nil, http.StatusBadGateway, "Defender did not answer; retry later"
		}
	}
	// The name must be one Defender's search (FindMachineByName) takes.
	if mde.ValidateMachineName(ref) != nil {
		return nil, http.StatusBadRequest, "machine must be a 40-character device id or a host name"
	}
	mc, err := m.FindMachineByName(ctx, ref)
	switch {
	case err == nil:
		return mc, 0, ""
	case errors.Is(err, mde.ErrNotFound):
		return nil, http.StatusNotFound, "no device has this name"
	case errors.Is(err, mde.ErrMachineAmbiguous):
		return nil, http.StatusConflict, "this name matches several devices; use the device id: " + err.Error()
	default:
		return nil, http.StatusBadGateway, "Defender did not answer; retry later"
	}
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	req, err := inv.HTTP("req")
	if err != nil {
		return wire.Result{}, fmt.Errorf("decoding http trigger: %w", err)
	}
	var b Body
	if req.HasBody {
		if err := json.Unmarshal(req.Body, &b); err != nil {
			return bad(http.StatusBadRequest, "body is not JSON: "+err.Error()), nil
		}
	}
	if b.IsolationType == "" {
		b.IsolationType = mde.IsolationFull
	}
	if b.IsolationType != mde.IsolationFull && b.IsolationType != mde.IsolationSelective {
		return bad(http.StatusBadRequest, "isolationType must be Full or Selective"), nil
	}
	if strings.TrimSpace(b.Comment) == "" || strings.TrimSpace(b.Requestor) == "" {
		return bad(http.StatusBadRequest, "comment and requestor are required"), nil
	}
	if len(b.Comment) > 1000 || len(b.Requestor) > 200 {
		return bad(http.StatusBadRequest, "comment (1000) or requestor (200) too long"), nil
	}
	m, status, msg := Resolve(ctx, f.Machines, req.Params["machine"])
	if m == nil {
		return bad(status, msg), nil
	}
	now := f.Now().UTC()
	key := b.IdempotencyKey
	if key == "" {
		key = now.Format(time.RFC3339)
	}
	sum := sha256.Sum256([]byte(m.ID + "|" + key))
	requestor := b.Requestor
	if kid := req.KeyID(); kid != "" {
		requestor += " (function key " + kid + ")"
	}
	r := pipeline.IsolationRequest{
		RequestID: "manual-" + hex.EncodeToString(sum[:12]), MachineID: m.ID, ComputerDNSName: m.ComputerDNSName,
		IsolationType: b.IsolationType, Comment: "mdeflow manual isolation by " + b.Requestor + ": " + b.Comment,
		Manual: true, Requestor: requestor, RequestedAt: now,
		Decision: pipeline.Decision{MachineID: m.ID, PolicyVersion: f.PolicyVersion, RuleID: "manual", RuleName: "manual request",
			Actions:  []pipeline.Action{{Type: pipeline.ActionIsolate, IsolationType: b.IsolationType}, {Type: pipeline.ActionNotify}},
			Channels: f.Channels, Reason: "requested by " + b.Requestor, DecidedAt: now},
	}
	body, _ := json.Marshal(r)
	if err := f.Queue.Send(ctx, queue.Isolations, queue.Message{MessageID: r.RequestID, CorrelationID: r.RequestID,
		Subject: "isolation", ContentType: "application/json", Body: body}); err != nil {
		f.Logger.Error("enqueueing manual isolation failed", fn.KeyReason, err.Error())
		return bad(http.StatusServiceUnavailable, "could not enqueue the request; retry with the same idempotencyKey"), nil
	}
	f.Logger.Info("manual isolation requested", fn.KeyRequestID, r.RequestID, fn.KeyMachineID, m.ID)
	return wire.JSONHTTPResponse("res", http.StatusAccepted, map[string]string{"requestId": r.RequestID, "machineId": m.ID,
		"status": "queued: the same guards as automatic isolations apply; the outcome is notified"}), nil
}

func bad(status int, msg string) wire.Result {
	return wire.JSONHTTPResponse("res", status, map[string]string{"error": msg})
}
