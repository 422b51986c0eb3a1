package hunt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mdeflow/mdeflow/internal/store"
)

// Store layout (all keys are plain: hunt ids are validated to key-safe
// characters by Check, fingerprints are hex):
//
//	table "hunts"    pk <huntID>  rk "state"              HuntState
//	table "hunts"    pk <huntID>  rk "slot-<UTC slot>"    claim of one scheduled slot
//	table "hunts"    pk "_budget" rk "<UTC hour>"         CPU spent in that hour
//	table "findings" pk <huntID>  rk <fingerprint>        finding (first/last seen)
const (
	TableHunts    = "hunts"
	TableFindings = "findings"

	stateRow        = "state"
	slotPrefix      = "slot-"
	slotLayout      = "20060102T150405Z"
	budgetPartition = "_budget"
	budgetLayout    = "2006010215"
)

// HuntState is the schedule state of one hunt, kept in table "hunts".
type HuntState struct {
	HuntID string `json:"huntId"`
	// LastSlot is the scheduled slot of the last successful run.
	LastSlot time.Time `json:"lastSlot,omitzero"`
	// LastSuccess is when that run finished.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	// LastError is the last failure's message ("" after a success).
	LastError string `json:"lastError,omitempty"`
	// Failures counts consecutive failures (the backoff exponent).
	Failures int `json:"failures,omitempty"`
	// NextRetry holds the hunt back after a failure.
	NextRetry     time.Time `json:"nextRetry,omitzero"`
	LastTotalRows int       `json:"lastTotalRows,omitempty"`
	LastNewRows   int       `json:"lastNewRows,omitempty"`
	// LastCleanup is when expired findings and claims were last removed.
	LastCleanup time.Time `json:"lastCleanup,omitzero"`
}

// Claim statuses.
const (
	claimRunning = "running"
	claimDone    = "done"
	claimFailed  = "failed"
)

// claim is the record that gives one instance one slot of one hunt.
type claim struct {
	Slot       time.Time `json:"slot"`
	Owner      string    `json:"owner"`
	Status     string    `json:"status"`
	Attempt    int       `json:"attempt"`
	ClaimedAt  time.Time `json:"claimedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	NextRetry  time.Time `json:"nextRetry,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// finding is one fingerprint already reported.
type finding struct {
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	// Slot is the slot of the run that first reported it: a retry of the
	// same slot (after a crash before the run was recorded) reports it again.
	Slot time.Time `json:"slot"`
	// Manual marks a finding first reported by an on-demand run.
	Manual bool `json:"manual,omitempty"`
}

// budget is the CPU spent in one clock hour, shared by all instances.
type budget struct {
	Hour    time.Time `json:"hour"`
	SpentMS int64     `json:"spentMs"`
	Runs    int       `json:"runs"`
}

func (b budget) Spent() time.Duration { return time.Duration(b.SpentMS) * time.Millisecond }

func slotKey(slot time.Time) string { return slotPrefix + slot.UTC().Format(slotLayout) }

func entityOf(pk, rk string, v any, etag string) (store.Entity, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return store.Entity{}, fmt.Errorf("encoding %s/%s: %w", pk, rk, err)
	}
	return store.Entity{PartitionKey: pk, RowKey: rk, Data: b, ETag: etag}, nil
}

// loadState returns the hunt's state (zero value when never run).
func loadState(ctx context.Context, s store.Backend, huntID string) (HuntState, error) {
	var st HuntState
	_, err := store.GetJSON(ctx, s, TableHunts, huntID, stateRow, &st)
	if errors.Is(err, store.ErrNotFound) {
		return HuntState{HuntID: huntID}, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading hunt state %s: %w", huntID, err)
	}
	st.HuntID = huntID
	return st, nil
}

func saveState(ctx context.Context, s store.Backend, st HuntState) error {
	e, err := entityOf(st.HuntID, stateRow, st, "")
	if err != nil {
		return err
	}
	if _, err := s.Upsert(ctx, TableHunts, e); err != nil {
		return fmt.Errorf("saving hunt state %s: %w", st.HuntID, err)
	}
	return nil
}

// addBudget adds cost to the hour's CPU record (ETag-guarded, retried on
// conflicts with other instances).
func addBudget(ctx context.Context, s store.Backend, hour time.Time, cost time.Duration) error {
	_, err := store.Modify(ctx, s, TableHunts, budgetPartition, hour.UTC().Format(budgetLayout), func(b *budget, exists bool) error {
		if !exists {
			b.Hour = hour.UTC()
		}
		b.SpentMS += cost.Milliseconds()
		b.Runs++
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording hunting cpu: %w", err)
	}
	return nil
}

// spentBudget returns the CPU recorded for the hour.
func spentBudget(ctx context.Context, s store.Backend, hour time.Time) (time.Duration, error) {
	var b budget
	_, err := store.GetJSON(ctx, s, TableHunts, budgetPartition, hour.UTC().Format(budgetLayout), &b)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading hunting cpu: %w", err)
	}
	return b.Spent(), nil
}
