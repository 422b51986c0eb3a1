package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
)

// pollOverlap is MDEFLOW_POLL_OVERLAP in the overlap test.
const pollOverlap = 10 * time.Minute

// Issue 4: alerts that become visible up to the overlap window after their
// creation time are processed, and none twice.
//
// OnNewAlert saves the start time of each complete poll as its checkpoint
// and the next poll lists alerts created since checkpoint - overlap, so an
// alert that Defender shows only after a poll is still picked up if its
// creation time is at most MDEFLOW_POLL_OVERLAP before that checkpoint. An
// alert that turns up later than that is NOT processed: that is the
// designed limit (widen the overlap if Defender is slower than that), and
// the test pins it down so it cannot change unnoticed.
//
// Each late alert is placed relative to the start of the previous poll
// (pollStart), which is at most the checkpoint: created = pollStart - 8m is
// inside the window as long as a poll takes under two minutes, created =
// pollStart - 11m is outside it whatever the poll took.
func TestOverlapLateAlertsProcessedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end overlap test; skipped with -short")
	}
	now := time.Now().UTC()
	var machines []mde.Machine
	for i := range 6 {
		machines = append(machines, e2eMachine(200+i, now, i == 5))
	}
	m := func(i int) mde.Machine { return machines[i] }
	seq := 1000
	alert := func(machine int, severity string, created time.Time) mde.Alert {
		seq++
		return e2eAlert(seq, m(machine), severity, created)
	}
	initial := []mde.Alert{
		alert(0, mde.SeverityHigh, now.Add(-20*time.Minute)),
		alert(1, mde.SeverityMedium, now.Add(-12*time.Minute)),
		alert(2, mde.SeverityLow, now.Add(-3*time.Minute)),
		alert(5, mde.SeverityHigh, now.Add(-time.Minute)), // protected
	}
	tn := &sim.Tenant{ID: sim.DefaultTenantID, Machines: machines, Alerts: initial}
	x := newExpect(machines)
	x.process(initial...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := startStack(ctx, stackOptions{
		Tenant:  tn,
		Handler: handlerBin,
		Settings: map[string]string{
			"MDEFLOW_POLL_OVERLAP":           pollOverlap.String(),
			"MDEFLOW_MDE_CALLS_PER_MINUTE":   "100000",
			"MDEFLOW_MDE_CALLS_PER_HOUR":     "6000000",
			"MDEFLOW_ACTION_FOLLOW_INTERVAL": "250ms",
		},
		Sim: func(o *sim.Options) { o.DisableQuotas = true; o.ActionStep = 100 * time.Millisecond },
	})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			st.keep = true
			t.Logf("kept the run folder (state, outbox, handler.log): %s", st.Dir)
		}
		st.Close()
	})

	// poll fires OnNewAlert n times at once (n > 1: polls racing for the
	// same alerts and the checkpoint, as a manual run during a scheduled
	// one), waits for the pipeline, and returns when the polls started.
	poll := func(n int) time.Time {
		t.Helper()
		start := time.Now().UTC()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() { errs <- st.Host.Invoke(ctx, "OnNewAlert", "") })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("OnNewAlert: %v (handler log: %s)", err, st.LogPath())
			}
		}
		if err := st.Host.WaitIdle(ctx); err != nil {
			t.Fatalf("waiting for the pipeline: %v (handler log: %s)", err, st.LogPath())
		}
		return start
	}
	show := func(as ...mde.Alert) {
		t.Helper()
		for _, a := range as {
			if err := st.Sim.AddAlert(a); err != nil {
				t.Fatal(err)
			}
		}
	}
	completed := func() int64 {
		for _, q := range st.Host.Stats().Queues {
			if q.Name == queue.Alerts {
				return q.Completed
			}
		}
		return -1
	}

	// Round 1: the seeded alerts (first poll: the look-back, not the overlap).
	p1 := poll(1)

	// Round 2: alerts that show up after poll 1 although created before it.
	late2 := []mde.Alert{
		alert(1, mde.SeverityHigh, p1.Add(-8*time.Minute)),    // isolates machine 1
		alert(0, mde.SeverityMedium, p1.Add(-30*time.Second)), // machine 0 again
		alert(0, mde.SeverityHigh, p1.Add(-5*time.Minute)),    // machine 0 is already isolated
		alert(4, mde.SeverityLow, time.Now().UTC()),           // on time: created after the checkpoint
	}
	tooOld2 := alert(3, mde.SeverityHigh, p1.Add(-pollOverlap-time.Minute)) // would isolate machine 3
	show(append(late2, tooOld2)...)
	x.process(late2...)
	x.ignore(tooOld2)
	p2 := poll(1)

	// Round 3: nothing new; every alert of the window is listed again and
	// must be recognised as seen.
	before := completed()
	p3 := poll(1)
	if got := completed(); got != before {
		t.Errorf("a poll with nothing new put %d alert messages through EnrichAlert", got-before)
	}
	if !p3.After(p2) {
		t.Fatalf("poll 3 started at %s, not after poll 2 (%s)", p3, p2)
	}

	// Round 4: late alerts again, found by two polls racing each other.
	late4 := []mde.Alert{
		alert(2, mde.SeverityMedium, p3.Add(-9*time.Minute)),
		alert(4, mde.SeverityHigh, p3.Add(-2*time.Minute)),
		alert(5, mde.SeverityHigh, p3.Add(-7*time.Minute)), // protected
	}
	tooOld4 := alert(2, mde.SeverityHigh, p3.Add(-pollOverlap-time.Minute)) // would isolate machine 2
	show(append(late4, tooOld4)...)
	x.process(late4...)
	x.ignore(tooOld4)
	poll(2)
	// And once more: the too-old alerts stay ignored, nothing runs twice.
	before = completed()
	poll(1)
	if got := completed(); got != before {
		t.Errorf("a poll with nothing new put %d alert messages through EnrichAlert", got-before)
	}

	if got, want := completed(), int64(len(x.Alerts)); got != want {
		t.Errorf("EnrichAlert completed %d alert messages, want one per processed alert (%d)", got, want)
	}
	rep := verifyE2E(t, ctx, st, x)
	t.Logf("alerts processed=%d ignored (older than checkpoint-%s)=%d; decisions=%d notifications=%d machines due=%d isolated=%d; outcomes %v",
		len(x.Alerts), pollOverlap, len(x.Ignored), rep.Decisions, rep.Notifications, rep.DueMachines, rep.IsolatedMachines, sortedCounts(rep.Guards))
	t.Logf("host: %s", rep.Stats)
	if rep.DueMachines != 3 {
		t.Errorf("test set-up: %d machines due isolation, want 3 (machines 0, 1 and 4)", rep.DueMachines)
	}
}
