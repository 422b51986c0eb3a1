// Package queue sends pipeline messages to Service Bus queues. Functions use
// the Sender interface; the Azure implementation uses azservicebus, the local
// one feeds the local Functions host (cmd "localhost") over HTTP.
package queue

import (
	"context"
	"time"
)

// Queue names of the pipeline. Each has a Service Bus trigger function.
const (
	Alerts        = "alerts"
	Isolations    = "isolations"
	Notifications = "notifications"
	Actions       = "actions" // follow-ups of machine actions (scheduled)
)

// Message is what a function sends. It maps one to one onto
// azservicebus.Message.
type Message struct {
	// MessageID is deterministic (derived from the alert / request id) so
	// Service Bus duplicate detection drops a second send of the same message.
	MessageID     string
	CorrelationID string
	SessionID     string
	ContentType   string // default application/json
	Subject       string
	Body          []byte
	Properties    map[string]any
	// ScheduledEnqueueTime, when non-zero, delays delivery (used to follow a
	// machine action later instead of waiting inside an invocation).
	ScheduledEnqueueTime time.Time
}

// Sender sends messages to a named queue.
type Sender interface {
	Send(ctx context.Context, queue string, msgs ...Message) error
}
