package localhost

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/mdeflow/mdeflow/internal/wire"
)

// timerState is the in-memory schedule monitor of one timer function (the
// real host keeps it in storage).
type timerState struct {
	fn     *Function
	mu     sync.Mutex
	status wire.ScheduleStatus
	seeded bool // status came from Options.TimerStatus
}

func (t *timerState) get() wire.ScheduleStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

func (t *timerState) set(s wire.ScheduleStatus) {
	t.mu.Lock()
	t.status = s
	t.mu.Unlock()
}

// TimerStatus returns the schedule monitor state of a timer function.
func (h *Host) TimerStatus(function string) (wire.ScheduleStatus, bool) {
	f := h.app.Function(function)
	if f == nil || h.timers[f.Name] == nil {
		return wire.ScheduleStatus{}, false
	}
	return h.timers[f.Name].get(), true
}

// runTimer is TimerListener: past-due check and runOnStartup at start, then
// one invocation per occurrence. An occurrence missed while an invocation
// ran is skipped, as the real listener schedules from "now".
func (h *Host) runTimer(f *Function) {
	ctx := h.intake
	ts := h.timers[f.Name]
	loc := h.app.Location
	now := time.Now().In(loc)
	st := ts.get()
	pastDue := ts.seeded && f.Trigger.UseMonitor && !st.Next.IsZero() && st.Next.Before(now)
	if !ts.seeded || !f.Trigger.UseMonitor {
		// No stored status: Last is default(DateTime), Next the first occurrence.
		st = wire.ScheduleStatus{Next: f.schedule.Next(now)}
		ts.set(st)
	}
	switch {
	case pastDue:
		h.log.Info("timer is past due on startup; executing now", "function", f.Name, "next", st.Next)
		_ = h.fireTimer(ctx, f, true, st.Next, "past due")
	case f.Trigger.RunOnStartup:
		_ = h.fireTimer(ctx, f, false, time.Time{}, "runOnStartup")
	}
	for ctx.Err() == nil {
		now := time.Now().In(loc)
		next := ts.get().Next
		if !next.After(now) {
			next = f.schedule.Next(now)
		}
		if next.IsZero() {
			h.log.Warn("timer schedule has no further occurrence", "function", f.Name)
			return
		}
		h.log.Debug("timer scheduled", "function", f.Name, "next", next)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		_ = h.fireTimer(ctx, f, false, next, "schedule")
	}
}

// fireTimer invokes a timer function once (with its retry policy) and, for
// scheduled, past-due and start-up runs, updates the monitor status the way
// TimerListener.InvokeJobFunction does. how is "schedule", "past due",
// "runOnStartup" or "manual" (admin API / Invoke: the status is left alone).
func (h *Host) fireTimer(ctx context.Context, f *Function, isPastDue bool, scheduled time.Time, how string) error {
	ts := h.timers[f.Name]
	loc := h.app.Location
	h.begin(false)
	defer h.end(false, nil)

	invocationTime := time.Now().In(loc)
	st := ts.get()
	info := wire.TimerInfo{IsPastDue: isPastDue}
	info.Schedule.AdjustForDST = true
	if f.Trigger.UseMonitor {
		s := wire.ScheduleStatus{Last: st.Last.In(loc), Next: st.Next.In(loc), LastUpdated: st.LastUpdated.In(loc)}
		if st.Last.IsZero() {
			s.Last = time.Time{}
		}
		if st.LastUpdated.IsZero() {
			s.LastUpdated = time.Time{}
		}
		info.ScheduleStatus = &s
	}
	reason := fmt.Sprintf("Timer fired at %s", invocationTime.Format("2006-01-02T15:04:05.0000000-07:00"))
	if how == "manual" {
		reason = "This function was programmatically called via the host APIs."
	}
	err := h.withRetry(ctx, f, func(rc *wire.RetryContext) error {
		return h.track(f, reason, func(id string) error {
			return h.invokePayload(h.life, f, id, func(sys wire.Sys) (wire.HostRequest, error) {
				return wire.TimerPayload(f.Trigger.Name, info, f.Trigger.UseMonitor, sys, rc)
			}, nil)
		})
	})
	if how != "manual" {
		last := invocationTime
		if !scheduled.IsZero() {
			last = scheduled
		}
		ts.set(wire.ScheduleStatus{Last: last, Next: f.schedule.Next(last), LastUpdated: time.Now().In(loc)})
	}
	return err
}

// withRetry applies a function's retry policy: RetryContext is sent on
// every attempt (RetryCount 0 first) with the previous failure as
// Exception; retries wait fixedDelay or an exponential backoff between
// minimumInterval and maximumInterval.
func (h *Host) withRetry(ctx context.Context, f *Function, attempt func(*wire.RetryContext) error) error {
	p := f.Retry
	if p == nil {
		return attempt(nil)
	}
	var last error
	for n := 0; ; n++ {
		rc := &wire.RetryContext{RetryCount: n, MaxRetryCount: p.MaxRetryCount, Exception: exceptionJSON(last)}
		err := attempt(rc)
		if err == nil {
			return nil
		}
		last = err
		if p.MaxRetryCount >= 0 && n >= p.MaxRetryCount {
			return err
		}
		d := p.delay(n + 1)
		h.log.Warn("function failed; retrying", "function", f.Name, "retry", n+1, "max_retry_count", p.MaxRetryCount, "delay", d.String())
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// exceptionJSON is the RetryContext.Exception for the previous failure
// (null on the first attempt).
func exceptionJSON(err error) json.RawMessage {
	if err == nil {
		return nil
	}
	b, _ := json.Marshal(struct {
		ClassName string
		Message   string
	}{"Microsoft.Azure.WebJobs.Host.FunctionInvocationException", err.Error()})
	return b
}
