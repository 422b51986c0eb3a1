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
	KeyAlertID   = "alert_id"
	KeyMachineID = "machine_id"
	KeyRequestID = "request_id"
	KeyActionID  = "action_id"
	KeyDecision  = "decision"
	KeyOutcome   = "outcome"
	KeyDryRun    = "dry_run"
	KeyRule      = "rule"
	KeyQueue     = "queue"
	KeyReason    = "reason"
	KeyDuration  = "duration_ms"
	KeyNotifyID  = "notification_id"
	KeyHuntID    = "hunt_id"
	KeyDelivery  = "delivery_count"
	KeyMessageID = "message_id"
	KeyGuard     = "guard"
	KeyCount     = "count"
	// KeyFunction is the attribute the wire server puts on every
	// invocation's logger; the composition root uses it for the functions'.
	KeyFunction = wire.AttrFunction
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

// DeadLetterTable is the store table of the dead-letter log.
const DeadLetterTable = store.TableDeadLetters

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
			id := msg.MessageID
			if id == "" {
				id = fmt.Sprintf("seq-%d", msg.SequenceNumber)
			}
			dl := store.DeadLetter{Queue: queue, Function: inv.Function, MessageID: id, Reason: "permanent",
				Error: err.Error(), Body: string(msg.Body), DeliveryCount: msg.DeliveryCount}
			if _, rerr := store.NewDeadLetterLog(d.Store).Record(ctx, dl); rerr != nil {
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
