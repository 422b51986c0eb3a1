package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemoryBackend keeps entities in memory. It has the same semantics as the
// other backends (it passes storetest) and is meant for unit tests.
type MemoryBackend struct {
	mu      sync.RWMutex
	tables  map[string]map[string]map[string]Entity // table -> pk -> rk
	version uint64
	closed  bool
}

var _ Backend = (*MemoryBackend)(nil)

// NewMemory returns an empty in-memory backend.
//
//	b := store.NewMemory() // in a test: defer b.Close()
func NewMemory() *MemoryBackend {
	return &MemoryBackend{tables: map[string]map[string]map[string]Entity{}}
}

func (m *MemoryBackend) check(ctx context.Context) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if m.closed {
		return ErrClosed
	}
	return nil
}

// stamp sets a new ETag and Timestamp on e and stores a copy. m.mu is held.
func (m *MemoryBackend) stamp(table string, e Entity) Entity {
	m.version++
	e.Data = cloneBytes(e.Data)
	e.ETag = versionETag(m.version)
	e.Timestamp = time.Now().UTC()
	t := m.tables[table]
	if t == nil {
		t = map[string]map[string]Entity{}
		m.tables[table] = t
	}
	p := t[e.PartitionKey]
	if p == nil {
		p = map[string]Entity{}
		t[e.PartitionKey] = p
	}
	p[e.RowKey] = e
	out := e
	out.Data = cloneBytes(e.Data)
	return out
}

// lookup returns the stored entity. m.mu is held.
func (m *MemoryBackend) lookup(table, pk, rk string) (Entity, bool) {
	e, ok := m.tables[table][pk][rk]
	return e, ok
}

// Get implements Backend.
func (m *MemoryBackend) Get(ctx context.Context, table, pk, rk string) (Entity, error) {
	if err := validateRef(table, pk, rk); err != nil {
		return Entity{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return Entity{}, err
	}
	e, ok := m.lookup(strings.ToLower(table), pk, rk)
	if !ok {
		return Entity{}, fmt.Errorf("getting %s/%s/%s: %w", table, pk, rk, ErrNotFound)
	}
	e.Data = cloneBytes(e.Data)
	return e, nil
}

// Insert implements Backend.
func (m *MemoryBackend) Insert(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return Entity{}, err
	}
	t := strings.ToLower(table)
	if _, ok := m.lookup(t, e.PartitionKey, e.RowKey); ok {
		return Entity{}, fmt.Errorf("inserting %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, ErrExists)
	}
	return m.stamp(t, e), nil
}

// Update implements Backend.
func (m *MemoryBackend) Update(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return Entity{}, err
	}
	t := strings.ToLower(table)
	cur, ok := m.lookup(t, e.PartitionKey, e.RowKey)
	if !ok {
		return Entity{}, fmt.Errorf("updating %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, ErrNotFound)
	}
	if e.ETag != "" && e.ETag != cur.ETag {
		return Entity{}, fmt.Errorf("updating %s/%s/%s: %w", table, e.PartitionKey, e.RowKey, ErrConflict)
	}
	return m.stamp(t, e), nil
}

// Upsert implements Backend.
func (m *MemoryBackend) Upsert(ctx context.Context, table string, e Entity) (Entity, error) {
	if err := validateEntity(table, e); err != nil {
		return Entity{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return Entity{}, err
	}
	return m.stamp(strings.ToLower(table), e), nil
}

// Delete implements Backend.
func (m *MemoryBackend) Delete(ctx context.Context, table, pk, rk, etag string) error {
	if err := validateRef(table, pk, rk); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	t := strings.ToLower(table)
	cur, ok := m.lookup(t, pk, rk)
	if !ok {
		return fmt.Errorf("deleting %s/%s/%s: %w", table, pk, rk, ErrNotFound)
	}
	if etag != "" && etag != cur.ETag {
		return fmt.Errorf("deleting %s/%s/%s: %w", table, pk, rk, ErrConflict)
	}
	delete(m.tables[t][pk], rk)
	if len(m.tables[t][pk]) == 0 {
		delete(m.tables[t], pk)
	}
	return nil
}

// List implements Backend.
func (m *MemoryBackend) List(ctx context.Context, table, pk string) ([]Entity, error) {
	if err := validateList(table, pk); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	var out []Entity
	for p, rows := range m.tables[strings.ToLower(table)] {
		if pk != "" && p != pk {
			continue
		}
		for _, e := range rows {
			e.Data = cloneBytes(e.Data)
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PartitionKey != out[j].PartitionKey {
			return out[i].PartitionKey < out[j].PartitionKey
		}
		return out[i].RowKey < out[j].RowKey
	})
	return out, nil
}

// Close implements Backend. Later calls fail with ErrClosed.
func (m *MemoryBackend) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
