// Package store keeps mdeflow's state: checkpoints, claimed alerts and their
// decisions, the action audit, hunt state, breaker and approvals.
//
// Every backend implements the small entity interface Backend (one table =
// partition + row key + JSON data + ETag), and passes the shared contract
// suite in storetest. The typed helpers in this package (checkpoints, claims,
// audit...) are written once on top of Backend, so the embedded and the Azure
// Table backends behave the same by construction.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap their native errors into these so callers
// can use errors.Is.
var (
	ErrNotFound = errors.New("store: entity not found")
	// ErrExists is returned by Insert when the entity is already there: it is
	// how an alert is claimed by exactly one invocation (insert-if-absent).
	ErrExists = errors.New("store: entity already exists")
	// ErrConflict is returned by a conditional Update/Delete whose ETag no
	// longer matches (optimistic concurrency).
	ErrConflict = errors.New("store: etag mismatch")
)

// Entity is one row. Data is the JSON document of the typed record.
type Entity struct {
	PartitionKey string
	RowKey       string
	Data         []byte
	// ETag is opaque; set by the backend on every write.
	ETag string
	// Timestamp is set by the backend on every write.
	Timestamp time.Time
}

// Backend is the storage contract. Keys must be valid Azure Table keys: no
// '/', '\\', '#', '?' or control characters, at most 1 KiB; use EscapeKey.
type Backend interface {
	// Get returns ErrNotFound when absent.
	Get(ctx context.Context, table, pk, rk string) (Entity, error)
	// Insert creates the entity, or returns ErrExists.
	Insert(ctx context.Context, table string, e Entity) (Entity, error)
	// Update replaces an existing entity. When e.ETag is non-empty the write
	// only succeeds if it still matches (ErrConflict otherwise). ErrNotFound
	// when absent.
	Update(ctx context.Context, table string, e Entity) (Entity, error)
	// Upsert creates or replaces unconditionally.
	Upsert(ctx context.Context, table string, e Entity) (Entity, error)
	// Delete removes the entity; with a non-empty etag it is conditional.
	// Deleting an absent entity returns ErrNotFound.
	Delete(ctx context.Context, table, pk, rk, etag string) error
	// List returns every entity of a partition ("" lists the whole table),
	// ordered by partition key then row key.
	List(ctx context.Context, table, pk string) ([]Entity, error)
	// Close releases resources.
	Close() error
}
