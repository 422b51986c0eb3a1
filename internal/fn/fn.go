// Package fn holds what every mdeflow function shares: the one place where
// error classes map to host behaviour, the dead-letter path, and JSON records
// in the store.
//
// Transient errors (throttling, 5xx, timeouts, a store conflict) make the
// invocation answer non-2xx, so Service Bus abandons the message and delivers
// it again. Permanent errors (a malformed message, an unknown alert, an id
// that fails validation) are recorded in the dead-letter log with their reason
// and answered 2xx, so the message is completed and never retried in a loop.
package fn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Log attribute keys (house style: constants, not ad-hoc strings).
const (
	KeyAlertID    = "alert_id"
	KeyMachineID  = "machine_id"
	KeyRequestID  = "request_id"
	KeyActionID   = "action_id"
	KeyDecision   = "decision"
	KeyOutcome    = "outcome"
	KeyDryRun     = "dry_run"
	KeyRule       = "rule"
	KeyQueue      = "queue"
	KeyReason     = "reason"
	KeyDuration   = "duration_ms"
	KeyNotifyID   = "notification_id"
	KeyHuntID     = "hunt_id"
	KeyDelivery   = "delivery_count"
	KeyMessageID  = "message_id"
	KeyGuard      = "guard"
	KeyCount      = "count"
	KeyFunction   = "function"
	KeyInvocation = "invocation_id"
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as permanent: the message is dead-lettered, not retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Permanentf is Permanent(fmt.Errorf(...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// IsPermanent classifies an error. This is the only classification the
// functions use: explicit Permanent marks, invalid ids and MDE 4xx errors
// (other than throttling) are permanent; everything else is transient.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var idErr *mde.InvalidIDError
	if errors.As(err, &idErr) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// API errors: the client's single classification decides.
	var apiErr *mde.Error
	if errors.As(err, &apiErr) {
		return !mde.IsTransient(err)
	}
	return false
}

// DeadLetter is one message that could never succeed.
type DeadLetter struct {
	Queue         string    `json:"queue"`
	Function      string    `json:"function"`
	MessageID     string    `json:"messageId"`
	Reason        string    `json:"reason"`
	Body          string    `json:"body"`
	DeliveryCount int       `json:"deliveryCount"`
	At            time.Time `json:"at"`
	Resubmitted   bool      `json:"resubmitted,omitempty"`
}

// DeadLetterTable is the store table of the dead-letter log.
const DeadLetterTable = "deadletters"

// RecordDeadLetter writes a dead letter. The row key is the message id so a
// redelivered poison message is recorded once.
func RecordDeadLetter(ctx context.Context, b store.Backend, dl DeadLetter) error {
	key := dl.MessageID
	if key == "" {
		key = fmt.Sprintf("%d", dl.At.UnixNano())
	}
	return PutJSON(ctx, b, DeadLetterTable, store.EscapeKey(dl.Queue), store.EscapeKey(key), dl)
}

// Deps are what the Service Bus adapter needs.
type Deps struct {
	Store  store.Backend
	Logger *slog.Logger
}

// MessageHandler handles one decoded Service Bus message.
type MessageHandler func(ctx context.Context, inv *wire.Invocation, msg wire.ServiceBusMessage) error

// ServiceBus adapts a MessageHandler to a wire.Func with the error mapping:
// nil -> 2xx (complete); permanent -> dead-letter log + 2xx; transient ->
// error (non-2xx, Service Bus abandons and redelivers; after MaxDeliveryCount
// Service Bus itself dead-letters with the last error).
func ServiceBus(d Deps, queue, binding string, h MessageHandler) wire.Func {
	return func(ctx context.Context, inv *wire.Invocation) (wire.Result, error) {
		start := time.Now()
		log := inv.Logger
		if log == nil {
			log = d.Logger
		}
		msg, err := inv.ServiceBus(binding)
		if err != nil {
			// The envelope itself is broken: nothing to dead-letter by id.
			return wire.Result{}, fmt.Errorf("decoding %s trigger: %w", queue, err)
		}
		log = log.With(KeyQueue, queue, KeyMessageID, msg.MessageID, KeyDelivery, msg.DeliveryCount)
		err = h(ctx, inv, msg)
		switch {
		case err == nil:
			log.Debug("message handled", KeyDuration, time.Since(start).Milliseconds())
			return wire.Result{}, nil
		case IsPermanent(err):
			log.Warn("message dead-lettered", KeyReason, err.Error())
			inv.Log("dead-lettered: " + err.Error())
			dl := DeadLetter{Queue: queue, Function: inv.Function, MessageID: msg.MessageID,
				Reason: err.Error(), Body: string(msg.Body), DeliveryCount: msg.DeliveryCount, At: time.Now().UTC()}
			if rerr := RecordDeadLetter(ctx, d.Store, dl); rerr != nil {
				// Could not record: let Service Bus redeliver rather than lose it.
				return wire.Result{}, fmt.Errorf("recording dead letter (%v): %w", err, rerr)
			}
			return wire.Result{}, nil
		default:
			log.Warn("message will be retried", KeyReason, err.Error(), KeyDuration, time.Since(start).Milliseconds())
			return wire.Result{}, err
		}
	}
}

// GetJSON reads a JSON record; store.ErrNotFound when absent.
func GetJSON(ctx context.Context, b store.Backend, table, pk, rk string, v any) (etag string, err error) {
	e, err := b.Get(ctx, table, pk, rk)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return "", fmt.Errorf("decoding %s/%s/%s: %w", table, pk, rk, err)
	}
	return e.ETag, nil
}

// InsertJSON creates a record, store.ErrExists when it is already there.
func InsertJSON(ctx context.Context, b store.Backend, table, pk, rk string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	e, err := b.Insert(ctx, table, store.Entity{PartitionKey: pk, RowKey: rk, Data: data})
	return e.ETag, err
}

// UpdateJSON replaces a record; with etag it is conditional (store.ErrConflict).
func UpdateJSON(ctx context.Context, b store.Backend, table, pk, rk, etag string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	e, err := b.Update(ctx, table, store.Entity{PartitionKey: pk, RowKey: rk, Data: data, ETag: etag})
	return e.ETag, err
}

// PutJSON upserts a record.
func PutJSON(ctx context.Context, b store.Backend, table, pk, rk string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = b.Upsert(ctx, table, store.Entity{PartitionKey: pk, RowKey: rk, Data: data})
	return err
}
