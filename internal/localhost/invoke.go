package localhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mdeflow/mdeflow/internal/wire"
)

// ErrFunctionTimeout is an invocation that ran longer than functionTimeout;
// the handler process is killed and restarted, failing every invocation in
// flight, as the real host does (§4).
var ErrFunctionTimeout = errors.New("function timeout exceeded")

// maxResponseBody bounds what is read from the handler.
const maxResponseBody = 100 << 20

// begin and end count invocations in progress (Stats.Running) and busy
// work (WaitIdle), waking waiters on every change.
func (h *Host) begin(invocation bool) {
	h.mu.Lock()
	if invocation {
		h.running++
	}
	h.busy++
	h.mu.Unlock()
	h.broker.notify()
}

func (h *Host) end(invocation bool, err error) {
	h.mu.Lock()
	if invocation {
		h.running--
		h.invocations++
		if err != nil {
			h.failures++
		}
	}
	h.busy--
	h.mu.Unlock()
	h.broker.notify()
}

// track runs one invocation with the host's "Executing"/"Executed" log
// lines and the counters.
func (h *Host) track(f *Function, reason string, fn func(id string) error) error {
	id := uuid.NewString()
	h.begin(true)
	start := time.Now()
	h.log.Info(fmt.Sprintf("Executing 'Functions.%s' (Reason='%s', Id=%s)", f.Name, reason, id),
		"function", f.Name, "invocation_id", id)
	err := fn(id)
	dur := time.Since(start)
	if err != nil {
		h.log.Error(fmt.Sprintf("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", f.Name, id, dur.Milliseconds()),
			"function", f.Name, "invocation_id", id, "duration_ms", dur.Milliseconds(), "error", err.Error())
	} else {
		h.log.Info(fmt.Sprintf("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", f.Name, id, dur.Milliseconds()),
			"function", f.Name, "invocation_id", id, "duration_ms", dur.Milliseconds())
	}
	h.end(true, err)
	return err
}

// invokePayload builds the request with build, sends it, applies the
// Service Bus outputs and hands the response to after.
func (h *Host) invokePayload(ctx context.Context, f *Function, id string, build func(wire.Sys) (wire.HostRequest, error), after func(wire.HostResponse) error) error {
	sys := wire.Sys{MethodName: f.Name, UtcNow: time.Now().UTC(), RandGuid: uuid.NewString()}
	req, err := build(sys)
	if err != nil {
		return fmt.Errorf("building the %s request: %w", f.Trigger.Type, err)
	}
	resp, err := h.call(ctx, f, id, req)
	if err != nil {
		return err
	}
	if err := h.applyOutputs(f, id, resp); err != nil {
		return err
	}
	if after != nil {
		return after(resp)
	}
	return nil
}

// call sends one payload-mode invocation and parses the answer with the
// host's rules.
func (h *Host) call(ctx context.Context, f *Function, id string, req wire.HostRequest) (wire.HostResponse, error) {
	resp, body, err := h.roundTrip(ctx, f, id, func(ctx context.Context, p *handlerProc) (*http.Request, error) {
		return wire.NewInvocationRequest(ctx, p.baseURL(), f.Name, id, h.opts.HostVersion, req, h.opts.ChunkedRequests)
	})
	if err != nil {
		return wire.HostResponse{}, err
	}
	hr, err := wire.ParseHostResponse(resp.StatusCode, resp.Header.Get("Content-Type"), body)
	if err != nil {
		return wire.HostResponse{}, fmt.Errorf("invoking %s: %w", f.Name, err)
	}
	for _, l := range hr.Logs {
		h.log.Info(l, "function", f.Name, "invocation_id", id, "source", "function")
	}
	h.checkOutputs(f, id, hr)
	// Without a $return binding an object ReturnValue is merged into Outputs.
	hr.Outputs = hr.EffectiveOutputs(f.binding(returnBinding) != nil)
	return hr, nil
}

// roundTrip waits for a ready handler, sends the request built by build
// under functionTimeout and reads the whole answer. On timeout the handler
// is restarted.
func (h *Host) roundTrip(ctx context.Context, f *Function, id string, build func(context.Context, *handlerProc) (*http.Request, error)) (*http.Response, []byte, error) {
	p, err := h.sup.acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("invoking %s: %w", f.Name, err)
	}
	tctx, cancel := ctx, context.CancelFunc(func() {})
	if h.funcTimeout > 0 {
		tctx, cancel = context.WithTimeout(ctx, h.funcTimeout)
	}
	defer cancel()
	req, err := build(tctx, p)
	if err != nil {
		return nil, nil, fmt.Errorf("invoking %s: %w", f.Name, err)
	}
	resp, err := h.client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		_ = resp.Body.Close()
	}
	if err != nil {
		if ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
			h.log.Error(fmt.Sprintf("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
				formatTimeSpan(h.funcTimeout), f.Name, id), "function", f.Name, "invocation_id", id)
			h.sup.restartAfterTimeout(p)
			return nil, nil, fmt.Errorf("invoking %s: %w (%s); the handler is restarted", f.Name, ErrFunctionTimeout, formatTimeSpan(h.funcTimeout))
		}
		return nil, nil, fmt.Errorf("invoking %s: %w", f.Name, err)
	}
	return resp, body, nil
}

// checkOutputs warns about Outputs keys that match no output binding: the
// host ignores them silently (binding names are case-sensitive), which
// hides typos.
func (h *Host) checkOutputs(f *Function, id string, hr wire.HostResponse) {
	var declared []wire.OutputBinding
	for _, b := range f.Outputs() {
		declared = append(declared, wire.OutputBinding{Name: b.Name, Type: b.Type, DataType: b.DataType})
	}
	for _, k := range wire.UndeclaredOutputs(hr.Outputs, declared) {
		if b := f.binding(k); b != nil && b.Direction != "in" {
			h.log.Warn(fmt.Sprintf("Outputs key %q matches output binding %q only case-insensitively; the host looks binding names up case-sensitively and ignores it", k, b.Name),
				"function", f.Name, "invocation_id", id)
			continue
		}
		h.log.Warn(fmt.Sprintf("Outputs key %q matches no output binding of %s; the host ignores it", k, f.Name),
			"function", f.Name, "invocation_id", id)
	}
	rv := strings.TrimSpace(string(hr.ReturnValue))
	if rv != "" && f.binding(returnBinding) == nil && !strings.HasPrefix(rv, "{") {
		h.log.Warn("ReturnValue is set but the function has no $return binding; the host ignores it", "function", f.Name, "invocation_id", id)
	}
}

// applyOutputs sends the messages of the serviceBus output bindings. All
// bindings are converted before anything is sent; a send error fails the
// invocation, as a failing output binding flush does.
func (h *Host) applyOutputs(f *Function, id string, hr wire.HostResponse) error {
	type batch struct {
		queue string
		msgs  []Message
	}
	var batches []batch
	for _, b := range f.Bindings {
		if b.Type != TypeServiceBus || b.Direction == "in" {
			continue
		}
		raw, ok := hr.Outputs[b.Name]
		if b.Name == returnBinding {
			raw, ok = hr.ReturnValue, hr.ReturnValue != nil
		}
		if !ok {
			continue
		}
		bodies, err := wire.ServiceBusOutputMessages(raw, b.DataType)
		if err != nil {
			return fmt.Errorf("output binding %s: %w", b.Name, err)
		}
		var msgs []Message
		for _, body := range bodies {
			if string(body) == "System.Byte[]" {
				h.log.Warn(fmt.Sprintf("output %q looked like base64 and was turned into bytes: the message body is the text System.Byte[] (set dataType binary or send an object)", b.Name),
					"function", f.Name, "invocation_id", id)
			}
			// StringToMessageConverter: UTF-8 body, ContentType text/plain.
			msgs = append(msgs, Message{Body: body, ContentType: "text/plain"})
		}
		if len(msgs) > 0 {
			batches = append(batches, batch{b.QueueName, msgs})
		}
	}
	for _, bt := range batches {
		if _, err := h.broker.send(bt.queue, bt.msgs, false); err != nil {
			return fmt.Errorf("output binding to queue %s: %w", bt.queue, err)
		}
		h.log.Debug("output messages sent", "function", f.Name, "invocation_id", id, "queue", bt.queue, "count", len(bt.msgs))
	}
	return nil
}

// binding returns the binding named name (case-insensitive), or nil.
func (f *Function) binding(name string) *Binding {
	for _, b := range f.Bindings {
		if strings.EqualFold(b.Name, name) {
			return b
		}
	}
	return nil
}

// ---- Service Bus consumers ----

// consume delivers the messages of a function's queue with at most
// maxConcurrentCalls (maxConcurrentSessions for sessions) in flight.
func (h *Host) consume(f *Function) {
	t := f.Trigger
	limit := h.app.Host.MaxConcurrentCalls
	if t.IsSessionsEnabled {
		limit = h.app.Host.MaxConcurrentSessions
	}
	sem := make(chan struct{}, limit)
	for {
		select {
		case sem <- struct{}{}:
		case <-h.intake.Done():
			return
		}
		d, err := h.broker.receive(h.intake, t.QueueName)
		if err != nil {
			<-sem
			if h.intake.Err() == nil {
				h.log.Error("queue consumer stopped", "function", f.Name, "queue", t.QueueName, "error", err.Error())
			}
			return
		}
		h.goFn(func() {
			defer func() { <-sem }()
			h.deliver(f, d)
		})
	}
}

// deliver invokes the trigger with one locked message and settles it.
func (h *Host) deliver(f *Function, d delivery) {
	m := d.msg
	sbm := wire.ServiceBusMessage{
		Body: m.Body, MessageID: m.MessageID, CorrelationID: m.CorrelationID, SessionID: m.SessionID,
		ContentType: m.ContentType, Subject: m.Subject, LockToken: d.token,
		DeliveryCount: m.deliveryCount, SequenceNumber: m.seq, EnqueuedTime: m.enqueued, ExpiresAt: m.expiresAt,
		ApplicationProperties: m.Properties,
	}
	reason := fmt.Sprintf("New ServiceBus message detected on '%s'.", d.queue)
	err := h.track(f, reason, func(id string) error {
		h.log.Debug("message delivered", "function", f.Name, "invocation_id", id, "queue", d.queue,
			"message_id", m.MessageID, "sequence_number", m.seq, "delivery_count", m.deliveryCount)
		return h.invokePayload(h.life, f, id, func(sys wire.Sys) (wire.HostRequest, error) {
			return wire.ServiceBusPayload(f.Trigger.Name, sbm, f.Trigger.DataType, sys)
		}, nil)
	})
	release := err != nil && (h.life.Err() != nil || errors.Is(err, ErrHostStopped) ||
		errors.Is(err, ErrTooManyErrors) || errors.Is(err, ErrHandlerExited))
	h.broker.settle(d, err, release)
	switch {
	case release:
		h.log.Info("message lock released", "queue", d.queue, "message_id", m.MessageID, "sequence_number", m.seq)
	case err == nil:
	case m.deliveryCount >= h.broker.maxDelivery:
		h.log.Error("message dead-lettered", "queue", d.queue, "message_id", m.MessageID, "sequence_number", m.seq,
			"delivery_count", m.deliveryCount, "reason", ReasonMaxDeliveryCount)
	default:
		h.log.Warn("message abandoned; it will be redelivered", "queue", d.queue, "message_id", m.MessageID,
			"sequence_number", m.seq, "delivery_count", m.deliveryCount)
	}
}
