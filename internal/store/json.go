package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrNoChange is returned by a Modify callback to stop without writing.
var ErrNoChange = errors.New("store: no change")

// GetJSON reads one entity, decodes its Data into v and returns its ETag
// for a later conditional PutJSON. ErrNotFound when absent.
//
//	etag, err := store.GetJSON(ctx, b, "breaker", "global", "state", &st)
func GetJSON(ctx context.Context, b Backend, table, pk, rk string, v any) (string, error) {
	e, err := b.Get(ctx, table, pk, rk)
	if err != nil {
		return "", err
	}
	if len(e.Data) == 0 {
		return e.ETag, nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return "", fmt.Errorf("decoding %s/%s/%s: %w", table, pk, rk, err)
	}
	return e.ETag, nil
}

// PutJSON encodes v and writes it conditionally, returning the new ETag.
// With etag "" it creates the entity only if absent; with an ETag it
// replaces the entity only if unchanged. Either way a lost race is
// ErrConflict (an existing entity also matches ErrExists).
//
//	etag, err = store.PutJSON(ctx, b, "breaker", "global", "state", st, etag)
func PutJSON(ctx context.Context, b Backend, table, pk, rk string, v any, etag string) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding %s/%s/%s: %w", table, pk, rk, err)
	}
	e := Entity{PartitionKey: pk, RowKey: rk, Data: data, ETag: etag}
	if etag == "" {
		out, err := b.Insert(ctx, table, e)
		if errors.Is(err, ErrExists) {
			return "", fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return out.ETag, err
	}
	out, err := b.Update(ctx, table, e)
	if errors.Is(err, ErrNotFound) { // deleted since it was read
		return "", fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return out.ETag, err
}

// UpsertJSON encodes v and writes it unconditionally.
//
//	_, err := store.UpsertJSON(ctx, b, "hunts", "run", store.EscapeKey(huntID), run)
func UpsertJSON(ctx context.Context, b Backend, table, pk, rk string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding %s/%s/%s: %w", table, pk, rk, err)
	}
	out, err := b.Upsert(ctx, table, Entity{PartitionKey: pk, RowKey: rk, Data: data})
	return out.ETag, err
}

// ModifyAttempts bounds the retries of Modify under contention.
const ModifyAttempts = 30

// Modify is an optimistic read-modify-write: it reads the record into a T
// (zero and exists=false when absent), calls fn to change it, and writes it
// back conditionally, calling fn again on a fresh read when another writer
// got there first. fn may run several times, so it must only change v.
// When fn returns ErrNoChange nothing is written and Modify returns the
// value read. Returns the value written.
//
//	n, err := store.Modify(ctx, b, "counters", "isolations", day, func(c *int, _ bool) error { *c++; return nil })
func Modify[T any](ctx context.Context, b Backend, table, pk, rk string, fn func(v *T, exists bool) error) (T, error) {
	var zero T
	for attempt := range ModifyAttempts {
		var v T
		etag, err := GetJSON(ctx, b, table, pk, rk, &v)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return zero, err
		}
		if err := fn(&v, exists); err != nil {
			if errors.Is(err, ErrNoChange) {
				return v, nil
			}
			return zero, err
		}
		if exists && etag == "" {
			// Never write unconditionally: a backend always sets ETags, so
			// this is a bug, not a race.
			return zero, fmt.Errorf("modifying %s/%s/%s: entity has no etag", table, pk, rk)
		}
		_, err = PutJSON(ctx, b, table, pk, rk, v, etag)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, ErrConflict) {
			return zero, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return zero, err
		}
	}
	return zero, fmt.Errorf("modifying %s/%s/%s: still conflicting after %d attempts: %w", table, pk, rk, ModifyAttempts, ErrConflict)
}

// backoff sleeps a little, growing with attempt, with jitter so racing
// writers spread out.
func backoff(ctx context.Context, attempt int) error {
	maxDelay := time.Duration(min(attempt+1, 20)) * 10 * time.Millisecond
	t := time.NewTimer(rand.N(maxDelay) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clock returns now, or time.Now when now is nil.
func clock(now func() time.Time) time.Time {
	if now != nil {
		return now().UTC()
	}
	return time.Now().UTC()
}
