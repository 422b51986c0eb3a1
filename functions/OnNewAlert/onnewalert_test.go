package onnewalert

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
)

// visibleAlerts is a fake alert source where each alert becomes visible
// only at a given time (Defender shows some alerts minutes after their
// creation time).
type visibleAlerts struct {
	mu     sync.Mutex
	now    *time.Time
	alerts []struct {
		a       mde.Alert
		visible time.Time
	}
	calls []time.Time
}

func (v *visibleAlerts) add(id string, created, visible time.Time) {
	v.alerts = append(v.alerts, struct {
		a       mde.Alert
		visible time.Time
	}{mde.Alert{ID: id, AlertCreationTime: &created, Severity: "High"}, visible})
}

func (v *visibleAlerts) ListAlertsCreatedSince(_ context.Context, since time.Time) ([]mde.Alert, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, since)
	var out []mde.Alert
	for _, x := range v.alerts {
		if !x.visible.After(*v.now) && !x.a.AlertCreationTime.Before(since) {
			out = append(out, x.a)
		}
	}
	return out, nil
}

func ids(q *queue.Recorder) []string {
	var out []string
	for _, m := range q.Messages(queue.Alerts) {
		out = append(out, m.MessageID)
	}
	sort.Strings(out)
	return out
}

// Pins: an alert that becomes visible up to the overlap window after its
// creation time is still picked up, and no alert is queued twice.
func TestOverlapCatchesLateAlertsOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	now := t0
	src := &visibleAlerts{now: &now}
	src.add("da1_ontime", t0.Add(-30*time.Second), t0.Add(-29*time.Second))
	src.add("da2_late", t0.Add(-20*time.Second), t0.Add(4*time.Minute))     // visible 4m20s after creation
	src.add("da3_toolate", t0.Add(-10*time.Second), t0.Add(20*time.Minute)) // beyond the overlap
	q := queue.NewRecorder()
	f := &Function{Alerts: src, Store: store.NewMemory(), Queue: q, Overlap: 10 * time.Minute, Lookback: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	for i := 0; i < 6; i++ { // polls every minute for 5 minutes
		if _, err := f.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
	}
	got := ids(q)
	want := []string{"alert-da1_ontime", "alert-da2_late"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("queued %v, want %v", got, want)
	}
	if q.Duplicates(queue.Alerts) != 0 {
		t.Fatalf("duplicate sends = %d; seen alerts must be skipped before sending", q.Duplicates(queue.Alerts))
	}
	// The checkpoint moved with the polls; each poll looked back by the overlap.
	last := src.calls[len(src.calls)-1]
	if want := now.Add(-time.Minute).Add(-time.Minute).Add(-10 * time.Minute); !last.Equal(want) {
		t.Fatalf("last poll from %s, want %s", last, want)
	}
}

// Pins: when sending fails, the checkpoint does not advance, so the alert is
// queued by the next poll.
func TestSendFailureKeepsCheckpoint(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	now := t0
	src := &visibleAlerts{now: &now}
	src.add("da1", t0.Add(-time.Minute), t0.Add(-time.Minute))
	q := queue.NewRecorder()
	q.FailNext(1, context.DeadlineExceeded)
	f := &Function{Alerts: src, Store: store.NewMemory(), Queue: q, Overlap: time.Minute, Lookback: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := f.Poll(context.Background()); err == nil {
		t.Fatal("want the send error")
	}
	now = now.Add(30 * time.Minute)
	if _, err := f.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ids(q); len(got) != 1 {
		t.Fatalf("queued %v, want the alert once after the failure", got)
	}
}

// Pins (a regression a new user found): the first poll, with no
// checkpoint, looks back exactly MDEFLOW_POLL_LOOKBACK and no further; an
// old alert is never pulled in (it could isolate machines for history).
func TestFirstPollLooksBackOnlyTheLookback(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	now := t0
	src := &visibleAlerts{now: &now}
	src.add("da1_old", t0.Add(-90*24*time.Hour), t0.Add(-90*24*time.Hour))
	src.add("da2_recent", t0.Add(-30*time.Minute), t0.Add(-30*time.Minute))
	q := queue.NewRecorder()
	f := &Function{Alerts: src, Store: store.NewMemory(), Queue: q, Overlap: 10 * time.Minute, Lookback: time.Hour,
		Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r, err := f.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(-time.Hour).Add(-10 * time.Minute); !r.From.Equal(want) || !src.calls[0].Equal(want) {
		t.Fatalf("first poll from %s (asked %s), want %s", r.From, src.calls[0], want)
	}
	if got := ids(q); len(got) != 1 || got[0] != "alert-da2_recent" {
		t.Fatalf("queued %v, want only the recent alert", got)
	}
}
