// Package ingestalert is the IngestAlert function (HTTP POST /api/alerts,
// authLevel function). It accepts the Power Automate Defender connector's
// trigger shape {"id":"<alertId>","machineId":"<machineId>"}, one object or an
// array, validates every item and enqueues them to "alerts". All items are
// validated before any is sent: a request is accepted whole or refused whole.
package ingestalert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "IngestAlert"

// MaxItems bounds one request.
const MaxItems = 500

// Function is IngestAlert.
type Function struct {
	Queue  queue.Sender
	Logger *slog.Logger
}

type response struct {
	Accepted []string `json:"accepted,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Invoke is the wire entry point.
func (f *Function) Invoke(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
	req, err := inv.HTTP("req")
	if err != nil {
		return wire.Result{}, fmt.Errorf("decoding http trigger: %w", err)
	}
	items, err := Parse(req.Body)
	if err != nil {
		return wire.JSONHTTPResponse("res", http.StatusBadRequest, response{Error: err.Error()}), nil
	}
	msgs := make([]queue.Message, 0, len(items))
	ids := make([]string, 0, len(items))
	for _, it := range items {
		it.Source = "http"
		body, _ := json.Marshal(it)
		msgs = append(msgs, queue.Message{
			MessageID: "alert-" + it.ID, CorrelationID: it.ID, Subject: "alert",
			ContentType: "application/json", Body: body, Properties: map[string]any{"source": "http"},
		})
		ids = append(ids, it.ID)
	}
	if err := f.Queue.Send(ctx, queue.Alerts, msgs...); err != nil {
		// The caller may retry: every message id is deterministic.
		f.Logger.Error("enqueueing alerts failed", fn.KeyReason, err.Error())
		return wire.JSONHTTPResponse("res", http.StatusServiceUnavailable,
			response{Error: "could not enqueue the alerts; retry later"}), nil
	}
	f.Logger.Info("alerts accepted over http", fn.KeyCount, len(ids))
	return wire.JSONHTTPResponse("res", http.StatusAccepted, response{Accepted: ids}), nil
}

// Parse decodes one trigger object or an array of them, and validates each.
func Parse(body []byte) ([]pipeline.AlertMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, fmt.Errorf(`empty body: send {"id":"<alertId>","machineId":"<machineId>"} or an array of them`)
	}
	var raws []json.RawMessage
	if body[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("body is not a JSON array of alert objects: %v", err)
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("empty array: no alert to ingest")
		}
	} else {
		raws = []json.RawMessage{body}
	}
	if len(raws) > MaxItems {
		return nil, fmt.Errorf("%d alerts in one request; at most %d", len(raws), MaxItems)
	}
	out := make([]pipeline.AlertMessage, 0, len(raws))
	seen := map[string]bool{}
	var problems []string
	for i, raw := range raws {
		m, err := pipeline.ParseAlertMessage(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("item %d: %v", i, err))
			continue
		}
		if m.Alert != nil {
			problems = append(problems, fmt.Sprintf("item %d: an embedded alert is only accepted from hunts, not over HTTP", i))
			continue
		}
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		out = append(out, pipeline.AlertMessage{ID: m.ID, MachineID: m.MachineID})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid input: %s", strings.Join(problems, "; "))
	}
	return out, nil
}
