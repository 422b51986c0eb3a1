package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// DefaultBoltLockTimeout is how long OpenBolt waits for the file lock.
const DefaultBoltLockTimeout = 5 * time.Second

// BoltBackend keeps entities in one bbolt file: a top-level bucket per
// table (lower-cased name) holding a bucket per partition key, whose keys
// are row keys and whose values are a JSON envelope
// {"data":<Entity.Data>,"etag":"W/\"<version>\"","ts":"<RFC 3339>"}.
// ETags come from the table bucket's sequence, so they only grow, also
// across delete and re-insert. Safe for concurrent goroutines (bbolt runs
// one writer at a time; a read-modify-write is one transaction).
//
// A bbolt file is locked by one process at a time: a second process waits
// for the lock, then OpenBolt fails with an error naming the path.
type BoltBackend struct {
	db   *bolt.DB
	path string
}

var _ Backend = (*BoltBackend)(nil)

type boltEnvelope struct {
	Data json.RawMessage `json:"data,omitempty"`
	ETag string          `json:"etag"`
	TS   time.Time       `json:"ts"`
}

// OpenBolt opens (creating it and its folder if needed) the store file at
// path, waiting up to DefaultBoltLockTimeout for another process's lock.
//
//	b, err := store.OpenBolt(".mdeflow/state.db") // defer b.Close()
func OpenBolt(path string) (*BoltBackend, error) {
	return OpenBoltWithTimeout(path, DefaultBoltLockTimeout)
}

// OpenBoltWithTimeout is OpenBolt with an explicit lock timeout (0 waits
// for ever).
func OpenBoltWithTimeout(path string, lockTimeout time.Duration) (*BoltBackend, error) {
	if path == "" {
		return nil, errors.New("opening bolt store: empty path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("opening bolt store %s: creating folder: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening bolt store %s: the file is locked by another process (waited %s); stop that process or use another path: %w",
			path, lockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening bolt store %s: %w", path, err)
	}
	return &BoltBackend{db: db, path: path}, nil
}

// Path returns the file the backend uses.
func (b *BoltBackend) Path() string { return b.path }

func (b *BoltBackend) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	return mapBoltErr(b.db.View(fn))
}

func (b *BoltBackend) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	return mapBoltErr(b.db.Update(fn))
}

func mapBoltErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

func decodeEnvelope(pk, rk string, v []byte) (Entity, error) {
	var env boltEnvelope
	if err := json.Unmarshal(v, &env); err != nil {
		return Entity{}, fmt.Errorf("decoding stored entity %s/%s: %w", pk, rk, err)
	}
	return Entity{
		PartitionKey: pk, RowKey: rk,
		Data: cloneBytes(env.Data), ETag: env.ETag, Timestamp: env.TS,
	}, nil
}

// get reads one entity inside tx; found is false when absent.
func boltGet(tx *bolt.Tx, table, pk, rk string) (Entity, bool, error) {
	tb := tx.Bucket([]byte(table))
	if tb == nil {
		return Entity{}, false, nil
	}
	pb := tb.Bucket([]byte(pk))
	if pb == nil {
		return Entity{}, false, nil
	}
	v := pb.Get([]byte(rk))
	if v == nil {
		return Entity{}, false, nil
	}
	e, err := decodeEnvelope(pk, rk, v)
	return e, err == nil, err
}

// boltPut writes e with a new version ETag and returns what was stored.
func boltPut(tx *bolt.Tx, table string, e Entity) (Entity, error) {
	tb, err := tx.CreateBucketIfNotExists([]byte(table))
	if err != nil {
		return Entity{}, err
	}
	pb, err := tb.CreateBucketIfNotExists([]byte(e.PartitionKey))
	if err != nil {
		return Entity{}, err
	}
	v, err := tb.NextSequence()
	if err != nil {
		return Entity{}, err
	}
	out := Entity{
		PartitionKey: e.PartitionKey, RowKey: e.RowKey,
		Data: cloneBytes(e.Data), ETag: versionETag(v), Timestamp: time.Now().UTC(),
	}
	buf, err := json.Marshal(boltEnvelope{Data: out.Data, ETag: out.ETag, TS: out.Timestamp})
	if err != nil {
		return Entity{}, err
	}
	if err := pb.Put([]byte(e.RowKey), buf); err != nil {
		return Entity{}, err
	}
	return out, nil
}

// Get implements Backend.
func (b *BoltBackend) Get(ctx context.Context, table, pk, rk string) (Entity, error) {
	if err := validateRef(table, pk, rk); err != nil {
		return Entity{}, err
	}
	var out Entity
	err := b.view(ctx, func(tx *bolt.Tx) error {
		e, ok, err := boltGet(tx, strings.ToLower(table), pk, rk)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		out = e
		return nil
	})
	if err != nil {
		return Entity{}, fmt.Errorf("getting %s/%s/%s: %w", table, pk, rk, err)
	}
	return out, nil
}

// Insert implements Backend.
func (b *BoltBackend) Insert(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	var out Entity
	err := b.update(ctx, func(tx *bolt.Tx) error {
		t := strings.ToLower(table)
		_, ok, err := boltGet(tx, t, e.PartitionKey, e.RowKey)
		if err != nil {
			return err
		}
		if ok {
			return ErrExists
		}
		out, err = boltPut(tx, t, e)
		return err
	})
	if err != nil {
		return Entity{}, fmt.Errorf("inserting %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, err)
	}
	return out, nil
}

// Update implements Backend.
func (b *BoltBackend) Update(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	var out Entity
	err := b.update(ctx, func(tx *bolt.Tx) error {
		t := strings.ToLower(table)
		cur, ok, err := boltGet(tx, t, e.PartitionKey, e.RowKey)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if e.ETag != "" && e.ETag != cur.ETag {
			return ErrConflict
		}
		out, err = boltPut(tx, t, e)
		return err
	})
	if err != nil {
		return Entity{}, fmt.Errorf("updating %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, err)
	}
	return out, nil
}

// Upsert implements Backend.
func (b *BoltBackend) Upsert(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	var out Entity
	err := b.update(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = boltPut(tx, strings.ToLower(table), e)
		return err
	})
	if err != nil {
		return Entity{}, fmt.Errorf("upserting %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, err)
	}
	return out, nil
}

// Delete implements Backend.
func (b *BoltBackend) Delete(ctx context.Context, table, pk, rk, etag string) error {
	if err := validateRef(table, pk, rk); err != nil {
		return err
	}
	err := b.update(ctx, func(tx *bolt.Tx) error {
		t := strings.ToLower(table)
		cur, ok, err := boltGet(tx, t, pk, rk)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if etag != "" && etag != cur.ETag {
			return ErrConflict
		}
		tb := tx.Bucket([]byte(t))
		pb := tb.Bucket([]byte(pk))
		if err := pb.Delete([]byte(rk)); err != nil {
			return err
		}
		if k, _ := pb.Cursor().First(); k == nil {
			return tb.DeleteBucket([]byte(pk))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting %s/%s/%s: %w", table, pk, rk, err)
	}
	return nil
}

// List implements Backend. bbolt keeps keys in byte order, which is the
// partition-then-row order List promises.
func (b *BoltBackend) List(ctx context.Context, table, pk string) ([]Entity, error) {
	if err := validateList(table, pk); err != nil {
		return nil, err
	}
	var out []Entity
	err := b.view(ctx, func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(strings.ToLower(table)))
		if tb == nil {
			return nil
		}
		listPartition := func(name []byte, pb *bolt.Bucket) error {
			return pb.ForEach(func(k, v []byte) error {
				e, err := decodeEnvelope(string(name), string(k), v)
				if err != nil {
					return err
				}
				out = append(out, e)
				return nil
			})
		}
		if pk != "" {
			pb := tb.Bucket([]byte(pk))
			if pb == nil {
				return nil
			}
			return listPartition([]byte(pk), pb)
		}
		c := tb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil { // not a bucket
				continue
			}
			if err := listPartition(bytes.Clone(k), tb.Bucket(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s/%s: %w", table, pk, err)
	}
	return out, nil
}

// Close implements Backend; it releases the file lock.
func (b *BoltBackend) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("closing bolt store %s: %w", b.path, err)
	}
	return nil
}
