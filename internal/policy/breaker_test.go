package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/store"
)

// faultyStore wraps the memory backend and injects failures.
type faultyStore struct {
	store.Backend
	conflicts atomic.Int32 // the next N writes fail with ErrConflict
	getErr    error
	calls     atomic.Int32
}

var _ store.Backend = (*faultyStore)(nil)

func newFaulty(t *testing.T) *faultyStore {
	t.Helper()
	m := store.NewMemory()
	t.Cleanup(func() { m.Close() })
	return &faultyStore{Backend: m}
}

func (f *faultyStore) Get(ctx context.Context, table, pk, rk string) (store.Entity, error) {
	f.calls.Add(1)
	if f.getErr != nil {
		return store.Entity{}, f.getErr
	}
	return f.Backend.Get(ctx, table, pk, rk)
}

func (f *faultyStore) write(ctx context.Context, do func() (store.Entity, error)) (store.Entity, error) {
	f.calls.Add(1)
	if f.conflicts.Add(-1) >= 0 {
		return store.Entity{}, fmt.Errorf("updating: %w", store.ErrConflict)
	}
	return do()
}

func (f *faultyStore) Insert(ctx context.Context, table string, e store.Entity) (store.Entity, error) {
	return f.write(ctx, func() (store.Entity, error) { return f.Backend.Insert(ctx, table, e) })
}

func (f *faultyStore) Update(ctx context.Context, table string, e store.Entity) (store.Entity, error) {
	return f.write(ctx, func() (store.Entity, error) { return f.Backend.Update(ctx, table, e) })
}

func acquire(t *testing.T, b *Breaker, id string, at time.Time) BreakerResult {
	t.Helper()
	res, err := b.Acquire(context.Background(), id, at)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", id, err)
	}
	return res
}

func TestBreakerTripAndReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newFaulty(t)
	b := NewBreaker(s, 3, time.Hour)

	want := []BreakerResult{
		{Allowed: true, Count: 1},
		{Allowed: true, Count: 2},
		{Allowed: true, Tripped: true, Count: 3}, // reaching the cap trips it
		{Allowed: false, Count: 3},
	}
	for i, w := range want {
		if got := acquire(t, b, fmt.Sprintf("iso-%d", i+1), testNow.Add(time.Duration(i)*time.Minute)); got != w {
			t.Errorf("Acquire #%d = %+v, want %+v", i+1, got, w)
		}
	}
	// Open: even a request counted before is refused.
	if got := acquire(t, b, "iso-1", testNow.Add(5*time.Minute)); got.Allowed || got.Tripped {
		t.Errorf("Acquire(counted request) while open = %+v", got)
	}
	st, err := b.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Open() || st.TrippedBy != "iso-3" || st.TrippedAt == nil || !st.TrippedAt.Equal(testNow.Add(2*time.Minute)) ||
		st.Cap != 3 || st.Window != time.Hour || st.InWindow(testNow.Add(5*time.Minute)) != 3 {
		t.Errorf("state = %+v", st)
	}

	// The open state survives the window: it needs a human.
	if got := acquire(t, b, "iso-9", testNow.Add(24*time.Hour)); got.Allowed {
		t.Errorf("Acquire a day later = %+v, want refused until Reset", got)
	}

	if err := b.Reset(ctx, "alice@example.com", testNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, _ = b.State(ctx)
	if st.Open() || len(st.Entries) != 0 || st.ResetBy != "alice@example.com" || st.ResetAt == nil {
		t.Errorf("state after reset = %+v", st)
	}
	if got := acquire(t, b, "iso-4", testNow.Add(time.Hour)); got != (BreakerResult{Allowed: true, Count: 1}) {
		t.Errorf("Acquire after reset = %+v", got)
	}
}

func TestBreakerRedeliveryCountsOnce(t *testing.T) {
	t.Parallel()
	s := newFaulty(t)
	b := NewBreaker(s, 2, time.Hour)
	for i := range 3 {
		if got := acquire(t, b, "iso-same", testNow.Add(time.Duration(i)*time.Second)); got != (BreakerResult{Allowed: true, Count: 1}) {
			t.Fatalf("Acquire #%d of the same request = %+v", i+1, got)
		}
	}
	e1, _ := s.Backend.Get(context.Background(), BreakerTable, breakerPK, breakerRK)
	acquire(t, b, "iso-same", testNow.Add(time.Minute))
	e2, _ := s.Backend.Get(context.Background(), BreakerTable, breakerPK, breakerRK)
	if e1.ETag != e2.ETag {
		t.Error("a redelivered request rewrote the state")
	}
}

func TestBreakerRollingWindow(t *testing.T) {
	t.Parallel()
	b := NewBreaker(newFaulty(t), 3, time.Hour)
	steps := []struct {
		id   string
		at   time.Duration
		want BreakerResult
	}{
		{"a", 0, BreakerResult{Allowed: true, Count: 1}},
		{"b", 30 * time.Minute, BreakerResult{Allowed: true, Count: 2}},
		{"c", 60 * time.Minute, BreakerResult{Allowed: true, Count: 2}}, // "a" is exactly one window old: gone
		{"d", 70 * time.Minute, BreakerResult{Allowed: true, Count: 3, Tripped: true}},
	}
	for _, s := range steps {
		if got := acquire(t, b, s.id, testNow.Add(s.at)); got != s.want {
			t.Errorf("Acquire(%s at +%s) = %+v, want %+v", s.id, s.at, got, s.want)
		}
	}
	// A request counted long ago is a new isolation now.
	b2 := NewBreaker(newFaulty(t), 5, time.Hour)
	acquire(t, b2, "x", testNow)
	if got := acquire(t, b2, "x", testNow.Add(2*time.Hour)); got != (BreakerResult{Allowed: true, Count: 1}) {
		t.Errorf("re-acquire after the window = %+v", got)
	}
}

func TestBreakerConcurrency(t *testing.T) {
	t.Parallel()
	const workers, limit = 40, 7
	s := newFaulty(t)
	b := NewBreaker(s, limit, time.Hour)
	var allowed, tripped atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two instances of the app: separate Breaker values, same store.
			br := b
			if i%2 == 1 {
				br = NewBreaker(s, limit, time.Hour)
			}
			res, err := br.Acquire(context.Background(), fmt.Sprintf("iso-%02d", i), testNow)
			if err != nil {
				errs <- err
				return
			}
			if res.Allowed {
				allowed.Add(1)
			}
			if res.Tripped {
				tripped.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Acquire: %v", err)
	}
	if allowed.Load() != limit || tripped.Load() != 1 {
		t.Errorf("allowed=%d tripped=%d, want %d and 1", allowed.Load(), tripped.Load(), limit)
	}
	st, err := b.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Open() || len(st.Entries) != limit {
		t.Errorf("state = %s with %d entries", st.State, len(st.Entries))
	}
}

func TestBreakerConcurrentRedelivery(t *testing.T) {
	t.Parallel()
	b := NewBreaker(newFaulty(t), 3, time.Hour)
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.Acquire(context.Background(), "iso-dup", testNow)
			if err != nil || !res.Allowed || res.Count != 1 {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() != 0 {
		t.Errorf("%d concurrent deliveries of one request were not allowed with count 1", refused.Load())
	}
}

func TestBreakerRetriesConflicts(t *testing.T) {
	t.Parallel()
	s := newFaulty(t)
	b := NewBreaker(s, 3, time.Hour)
	acquire(t, b, "iso-1", testNow) // insert
	s.conflicts.Store(5)
	if got := acquire(t, b, "iso-2", testNow); got != (BreakerResult{Allowed: true, Count: 2}) {
		t.Errorf("Acquire after 5 conflicts = %+v", got)
	}
	s.conflicts.Store(1 << 20)
	_, err := b.Acquire(context.Background(), "iso-3", testNow)
	if err == nil || !strings.Contains(err.Error(), "still conflicting") {
		t.Errorf("Acquire under endless conflicts = %v", err)
	}
}

func TestBreakerFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("store error", func(t *testing.T) {
		s := newFaulty(t)
		s.getErr = errors.New("boom")
		_, err := NewBreaker(s, 3, time.Hour).Acquire(ctx, "iso-1", testNow)
		if err == nil || !strings.Contains(err.Error(), "acquiring isolation breaker: boom") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("undecodable state", func(t *testing.T) {
		s := newFaulty(t)
		if _, err := s.Backend.Upsert(ctx, BreakerTable, store.Entity{PartitionKey: breakerPK, RowKey: breakerRK, Data: []byte(`{"state": 5}`)}); err != nil {
			t.Fatal(err)
		}
		_, err := NewBreaker(s, 3, time.Hour).Acquire(ctx, "iso-1", testNow)
		if err == nil || !strings.Contains(err.Error(), "decoding breaker state") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unknown state refuses", func(t *testing.T) {
		s := newFaulty(t)
		if _, err := s.Backend.Upsert(ctx, BreakerTable, store.Entity{PartitionKey: breakerPK, RowKey: breakerRK, Data: []byte(`{"state": "half-open"}`)}); err != nil {
			t.Fatal(err)
		}
		if got := acquire(t, NewBreaker(s, 3, time.Hour), "iso-1", testNow); got.Allowed {
			t.Errorf("Acquire with an unknown stored state = %+v, want refused", got)
		}
	})
	t.Run("cap lowered below the count", func(t *testing.T) {
		s := newFaulty(t)
		wide := NewBreaker(s, 10, time.Hour)
		for i := range 5 {
			acquire(t, wide, fmt.Sprintf("iso-%d", i), testNow)
		}
		if got := acquire(t, NewBreaker(s, 3, time.Hour), "iso-9", testNow); got.Allowed || !got.Tripped || got.Count != 5 {
			t.Errorf("Acquire over a lowered cap = %+v", got)
		}
	})
	t.Run("invalid request id", func(t *testing.T) {
		if _, err := NewBreaker(newFaulty(t), 3, time.Hour).Acquire(ctx, "iso/../x", testNow); err == nil {
			t.Error("accepted an unsafe request id")
		}
	})
	t.Run("reset needs a name", func(t *testing.T) {
		for _, by := range []string{"", "  ", "a\x1bb"} {
			if err := NewBreaker(newFaulty(t), 3, time.Hour).Reset(ctx, by, testNow); err == nil {
				t.Errorf("Reset(%q) accepted", by)
			}
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		s := newFaulty(t)
		s.conflicts.Store(1 << 20)
		c, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := NewBreaker(s, 3, time.Hour).Acquire(c, "iso-1", testNow); err == nil {
			t.Error("Acquire with a cancelled context succeeded")
		}
	})
}

func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	s := newFaulty(t)
	s.getErr = errors.New("must not be called")
	for _, b := range []*Breaker{NewBreaker(s, 0, time.Hour), NewBreaker(s, 3, 0), NewBreakerFor(s, mustParse(t, header+"rules: [{id: r, actions: [notify]}]\n"))} {
		if b.Enabled() {
			t.Error("breaker enabled")
		}
		if got := acquire(t, b, "iso-1", testNow); !got.Allowed {
			t.Errorf("disabled breaker refused: %+v", got)
		}
	}
	if s.calls.Load() != 0 {
		t.Errorf("disabled breaker did %d store calls", s.calls.Load())
	}
	if b := NewBreakerFor(s, Default()); !b.Enabled() || b.cap != 10 || b.window != time.Hour {
		t.Errorf("NewBreakerFor(Default()) = %+v", b)
	}
}

func TestBreakerStateEmptyAndOutcome(t *testing.T) {
	t.Parallel()
	b := NewBreaker(newFaulty(t), 3, time.Hour)
	st, err := b.State(context.Background())
	if err != nil || st.Open() || st.State != BreakerClosed || len(st.Entries) != 0 {
		t.Errorf("State of an empty store = %+v, %v", st, err)
	}
	o := b.Outcome(BreakerResult{Count: 3}, testMachineID, testNow)
	if o.Kind != "skipped" || o.Guard != GuardCap || !o.At.Equal(testNow) || !strings.Contains(o.Reason, "3 isolations per 1h0m0s") {
		t.Errorf("Outcome = %+v", o)
	}
}
