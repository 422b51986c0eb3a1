package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Breaker storage: one entity holds the whole state, so a single
// ETag-guarded write keeps every instance consistent.
const (
	BreakerTable = "breaker"
	breakerPK    = "isolation"
	breakerRK    = "state"
	// breakerAttempts bounds the optimistic-concurrency retries of one call.
	breakerAttempts = 32
)

// Breaker states.
const (
	BreakerClosed = "closed"
	BreakerOpen   = "open"
)

// breakerStore is what the breaker needs from the store.
type breakerStore interface {
	Get(ctx context.Context, table, pk, rk string) (store.Entity, error)
	Insert(ctx context.Context, table string, e store.Entity) (store.Entity, error)
	Update(ctx context.Context, table string, e store.Entity) (store.Entity, error)
}

var _ breakerStore = store.Backend(nil)

// Breaker is the isolation circuit breaker: it counts isolations in a
// rolling window and, once the cap is reached, opens and refuses every
// further isolation until Reset. Its state lives in the store, so every
// instance of the app shares it.
type Breaker struct {
	b      breakerStore
	cap    int
	window time.Duration
}

// BreakerResult is the answer of Acquire.
type BreakerResult struct {
	// Allowed: the isolation may proceed.
	Allowed bool
	// Tripped: this call opened the breaker (send the breaker notice).
	Tripped bool
	// Count is the number of isolations in the window, this one included
	// when allowed.
	Count int
}

// BreakerState is the stored state.
type BreakerState struct {
	State   string         `json:"state"`
	Entries []BreakerEntry `json:"entries,omitempty"`
	// Cap and Window are those in force at the last write.
	Cap       int           `json:"cap"`
	Window    time.Duration `json:"window"`
	TrippedAt *time.Time    `json:"trippedAt,omitempty"`
	// TrippedBy is the request that reached the cap.
	TrippedBy string     `json:"trippedBy,omitempty"`
	ResetAt   *time.Time `json:"resetAt,omitempty"`
	ResetBy   string     `json:"resetBy,omitempty"`
}

// BreakerEntry is one counted isolation.
type BreakerEntry struct {
	RequestID string `json:"r"`
	// At is Unix seconds.
	At int64 `json:"t"`
}

// Open reports whether the breaker refuses isolations.
func (s BreakerState) Open() bool { return s.State == BreakerOpen }

// InWindow counts the entries younger than the window at now.
func (s BreakerState) InWindow(now time.Time) int {
	n := 0
	for _, e := range s.Entries {
		if s.Window <= 0 || e.At > now.Add(-s.Window).Unix() {
			n++
		}
	}
	return n
}

// NewBreaker returns the breaker for a policy cap: at most cap isolations in
// any rolling window. cap <= 0 disables it: Acquire always allows and does
// no I/O (a policy without a cap section).
func NewBreaker(b store.Backend, cap int, window time.Duration) *Breaker {
	return &Breaker{b: b, cap: cap, window: window}
}

// NewBreakerFor returns the breaker of a policy (disabled when the policy has
// no cap).
func NewBreakerFor(b store.Backend, p *Policy) *Breaker {
	if p == nil || p.Cap == nil {
		return NewBreaker(b, 0, 0)
	}
	return NewBreaker(b, p.Cap.MaxIsolations, p.Cap.Window)
}

// Enabled reports whether the breaker counts anything.
func (br *Breaker) Enabled() bool { return br.cap > 0 && br.window > 0 }

// Acquire counts one isolation of requestID at now, if the breaker allows
// it. A request already counted in the window is allowed again without
// counting twice (redelivery). The call that brings the count to the cap is
// allowed and opens the breaker (Tripped), so the operators hear of it at
// once; every later call is refused until Reset, even a request already
// counted. The read-modify-write is guarded by the entity's ETag and
// retried on store.ErrConflict.
func (br *Breaker) Acquire(ctx context.Context, requestID string, now time.Time) (BreakerResult, error) {
	if !br.Enabled() {
		return BreakerResult{Allowed: true}, nil
	}
	if err := ValidateRequestID(requestID); err != nil {
		return BreakerResult{}, fmt.Errorf("acquiring isolation breaker: %w", err)
	}
	var res BreakerResult
	err := br.update(ctx, "acquiring isolation breaker", func(st *BreakerState) bool {
		br.prune(st, now)
		res = BreakerResult{Count: len(st.Entries)}
		if st.Open() {
			return false
		}
		for _, e := range st.Entries {
			if e.RequestID == requestID {
				res.Allowed = true
				return false
			}
		}
		if len(st.Entries) >= br.cap {
			// Already at the cap while closed (the cap was lowered): refuse
			// and open.
			br.trip(st, requestID, now)
			res.Tripped = true
			return true
		}
		st.Entries = append(st.Entries, BreakerEntry{RequestID: requestID, At: now.Unix()})
		res = BreakerResult{Allowed: true, Count: len(st.Entries)}
		if len(st.Entries) >= br.cap {
			br.trip(st, requestID, now)
			res.Tripped = true
		}
		return true
	})
	if err != nil {
		return BreakerResult{}, err
	}
	return res, nil
}

// Reset closes the breaker and forgets the counted isolations. by names who
// reset it (recorded in the state).
func (br *Breaker) Reset(ctx context.Context, by string, now time.Time) error {
	by = strings.TrimSpace(by)
	if by == "" || len(by) > maxValueLen || hasControl(by, false) {
		return errors.New("resetting isolation breaker: say who resets it (1 to 256 printable characters)")
	}
	return br.update(ctx, "resetting isolation breaker", func(st *BreakerState) bool {
		t := now.UTC()
		st.State = BreakerClosed
		st.Entries = nil
		st.ResetAt, st.ResetBy = &t, by
		return true
	})
}

// State returns the stored state ("closed" with no entries when nothing was
// stored yet).
func (br *Breaker) State(ctx context.Context) (BreakerState, error) {
	st, _, err := br.read(ctx)
	if err != nil {
		return BreakerState{}, fmt.Errorf("reading isolation breaker: %w", err)
	}
	return st, nil
}

// Outcome is the skipped outcome of an isolation the breaker refused.
func (br *Breaker) Outcome(res BreakerResult, machineID string, now time.Time) pipeline.Outcome {
	return pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: GuardCap, At: now,
		Reason: fmt.Sprintf("the isolation circuit breaker is open (%d isolations per %s reached, %d in the window); machine %s was not isolated; reset the breaker to resume",
			br.cap, br.window, res.Count, machineID)}
}

func (br *Breaker) prune(st *BreakerState, now time.Time) {
	cut := now.Add(-br.window).Unix()
	kept := st.Entries[:0]
	for _, e := range st.Entries {
		if e.At > cut {
			kept = append(kept, e)
		}
	}
	st.Entries = kept
}

func (br *Breaker) trip(st *BreakerState, requestID string, now time.Time) {
	t := now.UTC()
	st.State = BreakerOpen
	st.TrippedAt, st.TrippedBy = &t, requestID
}

func (br *Breaker) read(ctx context.Context) (BreakerState, string, error) {
	e, err := br.b.Get(ctx, BreakerTable, breakerPK, breakerRK)
	if errors.Is(err, store.ErrNotFound) {
		return BreakerState{State: BreakerClosed, Cap: br.cap, Window: br.window}, "", nil
	}
	if err != nil {
		return BreakerState{}, "", err
	}
	var st BreakerState
	if err := json.Unmarshal(e.Data, &st); err != nil {
		return BreakerState{}, "", fmt.Errorf("decoding breaker state: %w", err)
	}
	if st.State != BreakerClosed && st.State != BreakerOpen {
		// An unreadable state must not allow isolations.
		st.State = BreakerOpen
	}
	if e.ETag == "" {
		return BreakerState{}, "", errors.New("breaker state has no ETag: refusing an unguarded write")
	}
	return st, e.ETag, nil
}

// update runs the ETag-guarded read-modify-write; change returns false when
// there is nothing to write.
func (br *Breaker) update(ctx context.Context, op string, change func(*BreakerState) bool) error {
	for attempt := 0; attempt < breakerAttempts; attempt++ {
		st, etag, err := br.read(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if !change(&st) {
			return nil
		}
		st.Cap, st.Window = br.cap, br.window
		data, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("%s: encoding state: %w", op, err)
		}
		e := store.Entity{PartitionKey: breakerPK, RowKey: breakerRK, Data: data, ETag: etag}
		if etag == "" {
			_, err = br.b.Insert(ctx, BreakerTable, e)
		} else {
			_, err = br.b.Update(ctx, BreakerTable, e)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotFound):
			// Someone else wrote (or deleted) it first: read again.
			if err := sleepCtx(ctx, time.Duration(attempt%8)*time.Millisecond); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			continue
		default:
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return fmt.Errorf("%s: still conflicting after %d attempts", op, breakerAttempts)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
