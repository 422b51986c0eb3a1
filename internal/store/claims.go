package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Claims makes sure one piece of work is done once: the first Claim of a
// (kind, key) wins (insert-if-absent), every later one sees the winner.
// Use a deterministic owner (the Service Bus MessageId, the request id) so
// that a redelivered message re-claims its own work instead of being
// locked out by its earlier, failed attempt.
// Stored in table "claims", partition EscapeKey(kind), row EscapeKey(key).
type Claims struct {
	b Backend
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewClaims returns the claim helper on b.
//
//	claims := store.NewClaims(b)
func NewClaims(b Backend) *Claims { return &Claims{b: b} }

// ClaimRecord is a stored claim.
type ClaimRecord struct {
	Kind      string          `json:"kind"`
	Key       string          `json:"key"`
	Owner     string          `json:"owner"`
	Data      json.RawMessage `json:"data,omitempty"`
	ClaimedAt time.Time       `json:"claimedAt"`
	// ExpiresAt is set by ClaimFor; a claim past it can be taken over.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	ETag      string    `json:"-"`
}

// Expired reports whether a ClaimFor claim has lapsed at now.
func (r ClaimRecord) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Claim claims (kind, key) for owner with optional data (any JSON value).
// claimed is true when owner holds the claim: it just won it, or already
// held it. Otherwise existing is the winner's record. A claim never
// expires; see ClaimFor.
//
//	won, rec, err := claims.Claim(ctx, "alert", alertID, msgID, decision) // !won: rec.Owner handled it
func (c *Claims) Claim(ctx context.Context, kind, key, owner string, data any) (bool, ClaimRecord, error) {
	return c.claim(ctx, kind, key, owner, 0, data)
}

// ClaimFor is Claim with a lease: the claim lapses ttl after it was made,
// and a later ClaimFor or Claim by another owner then takes it over.
//
//	won, _, err := claims.ClaimFor(ctx, "hunt-run", huntID, invocationID, 10*time.Minute, nil)
func (c *Claims) ClaimFor(ctx context.Context, kind, key, owner string, ttl time.Duration, data any) (bool, ClaimRecord, error) {
	if ttl <= 0 {
		return false, ClaimRecord{}, fmt.Errorf("claiming %s %s: ttl %v must be positive", kind, key, ttl)
	}
	return c.claim(ctx, kind, key, owner, ttl, data)
}

func (c *Claims) claim(ctx context.Context, kind, key, owner string, ttl time.Duration, data any) (bool, ClaimRecord, error) {
	if kind == "" || key == "" || owner == "" {
		return false, ClaimRecord{}, fmt.Errorf("claiming %q %q for %q: kind, key and owner are required", kind, key, owner)
	}
	now := clock(c.Now)
	rec := ClaimRecord{Kind: kind, Key: key, Owner: owner, ClaimedAt: now}
	if ttl > 0 {
		rec.ExpiresAt = now.Add(ttl)
	}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return false, ClaimRecord{}, fmt.Errorf("claiming %s %s: encoding data: %w", kind, key, err)
		}
		rec.Data = raw
	}
	pk, rk := EscapeKey(kind), EscapeKey(key)
	for range 5 {
		etag, err := PutJSON(ctx, c.b, TableClaims, pk, rk, rec, "")
		if err == nil {
			rec.ETag = etag
			return true, rec, nil
		}
		if !errors.Is(err, ErrExists) {
			return false, ClaimRecord{}, fmt.Errorf("claiming %s %s: %w", kind, key, err)
		}
		cur, err := c.Get(ctx, kind, key)
		if errors.Is(err, ErrNotFound) {
			continue // released in between: try again
		}
		if err != nil {
			return false, ClaimRecord{}, fmt.Errorf("claiming %s %s: %w", kind, key, err)
		}
		if cur.Owner == owner {
			return true, cur, nil
		}
		if !cur.Expired(now) {
			return false, cur, nil
		}
		// Take over a lapsed claim, only if nobody else did first.
		etag, err = PutJSON(ctx, c.b, TableClaims, pk, rk, rec, cur.ETag)
		if err == nil {
			rec.ETag = etag
			return true, rec, nil
		}
		if !errors.Is(err, ErrConflict) {
			return false, ClaimRecord{}, fmt.Errorf("claiming %s %s: %w", kind, key, err)
		}
	}
	return false, ClaimRecord{}, fmt.Errorf("claiming %s %s: %w", kind, key, ErrConflict)
}

// Get returns the claim of (kind, key), or ErrNotFound.
//
//	rec, err := claims.Get(ctx, "alert", alertID)
func (c *Claims) Get(ctx context.Context, kind, key string) (ClaimRecord, error) {
	var rec ClaimRecord
	etag, err := GetJSON(ctx, c.b, TableClaims, EscapeKey(kind), EscapeKey(key), &rec)
	if err != nil {
		return ClaimRecord{}, err
	}
	rec.ETag = etag
	return rec, nil
}

// Release deletes owner's claim so the work can be claimed again. Releasing
// an absent claim is not an error; releasing another owner's claim is
// ErrConflict.
//
//	err := claims.Release(ctx, "alert", alertID, msgID)
func (c *Claims) Release(ctx context.Context, kind, key, owner string) error {
	cur, err := c.Get(ctx, kind, key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing %s %s: %w", kind, key, err)
	}
	if cur.Owner != owner {
		return fmt.Errorf("releasing %s %s: %w: held by %q, not %q", kind, key, ErrConflict, cur.Owner, owner)
	}
	err = c.b.Delete(ctx, TableClaims, EscapeKey(kind), EscapeKey(key), cur.ETag)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing %s %s: %w", kind, key, err)
	}
	return nil
}
