package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Table names used by the typed helpers.
const (
	TableCheckpoints = "checkpoints"
	TableClaims      = "claims"
	TableAudit       = "audit"
	TableDeadLetters = "deadletters"
)

const checkpointPartition = "checkpoint"

// Checkpoints keeps named high-water marks (e.g. the last alert time the
// poller has seen). A checkpoint only moves forward, and two pollers racing
// on one checkpoint cannot both advance it from the same read.
// Stored in table "checkpoints", partition "checkpoint", row EscapeKey(name).
type Checkpoints struct {
	b Backend
}

// NewCheckpoints returns the checkpoint helper on b.
//
//	cps := store.NewCheckpoints(b)
func NewCheckpoints(b Backend) *Checkpoints { return &Checkpoints{b: b} }

type checkpointDoc struct {
	Time time.Time `json:"time"`
}

// GetCheckpoint returns the checkpoint's time and ETag; the zero time and
// "" when it was never set (not an error).
//
//	since, etag, err := cps.GetCheckpoint(ctx, "alerts-poll")
func (c *Checkpoints) GetCheckpoint(ctx context.Context, name string) (time.Time, string, error) {
	if name == "" {
		return time.Time{}, "", errors.New("getting checkpoint: empty name")
	}
	var d checkpointDoc
	etag, err := GetJSON(ctx, c.b, TableCheckpoints, checkpointPartition, EscapeKey(name), &d)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, "", nil
	}
	if err != nil {
		return time.Time{}, "", fmt.Errorf("getting checkpoint %s: %w", name, err)
	}
	return d.Time, etag, nil
}

// AdvanceCheckpoint moves the checkpoint to t, if it still has the ETag
// GetCheckpoint returned ("" for a checkpoint never set); otherwise it
// returns ErrConflict and the caller should re-read. A t not after the
// stored time leaves the checkpoint as it is and returns nil: it never
// moves backwards.
//
//	err := cps.AdvanceCheckpoint(ctx, "alerts-poll", newest, etag) // errors.Is(err, store.ErrConflict): another poller won
func (c *Checkpoints) AdvanceCheckpoint(ctx context.Context, name string, t time.Time, etag string) error {
	if name == "" {
		return errors.New("advancing checkpoint: empty name")
	}
	rk := EscapeKey(name)
	if etag != "" {
		var cur checkpointDoc
		curETag, err := GetJSON(ctx, c.b, TableCheckpoints, checkpointPartition, rk, &cur)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("advancing checkpoint %s: %w (it was deleted)", name, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("advancing checkpoint %s: %w", name, err)
		}
		if curETag != etag {
			return fmt.Errorf("advancing checkpoint %s: %w", name, ErrConflict)
		}
		if !t.After(cur.Time) {
			return nil
		}
	}
	if _, err := PutJSON(ctx, c.b, TableCheckpoints, checkpointPartition, rk, checkpointDoc{Time: t.UTC()}, etag); err != nil {
		return fmt.Errorf("advancing checkpoint %s: %w", name, err)
	}
	return nil
}
