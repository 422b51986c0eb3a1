// Package storetest is the contract every store.Backend passes. A backend's
// test calls Run with a constructor; the typed helpers of package store rely
// on exactly these semantics.
//
//	func TestMemory(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Backend { return store.NewMemory() })
//	}
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/store"
)

// Run runs the contract. newBackend is called once per subtest and must
// return an empty backend (a fresh file, a fresh table prefix...); it
// should register its own cleanup with t.Cleanup. Subtests run in
// parallel.
func Run(t *testing.T, newBackend func(t *testing.T) store.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b store.Backend)
	}{
		{"GetMissing", testGetMissing},
		{"InsertGet", testInsertGet},
		{"InsertExists", testInsertExists},
		{"UpdateMissing", testUpdateMissing},
		{"UpdateETag", testUpdateETag},
		{"Upsert", testUpsert},
		{"Delete", testDelete},
		{"ListOrdering", testListOrdering},
		{"PartitionIsolation", testPartitionIsolation},
		{"TableIsolation", testTableIsolation},
		{"EmptyData", testEmptyData},
		{"LargeData", testLargeData},
		{"UnicodeKeys", testUnicodeKeys},
		{"InvalidInput", testInvalidInput},
		{"NoAliasing", testNoAliasing},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentInsert", testConcurrentInsert},
		{"ConcurrentCounter", testConcurrentCounter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newBackend(t))
		})
	}
}

func doc(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ent(pk, rk string, data []byte) store.Entity {
	return store.Entity{PartitionKey: pk, RowKey: rk, Data: data}
}

func mustInsert(t *testing.T, b store.Backend, table string, e store.Entity) store.Entity {
	t.Helper()
	got, err := b.Insert(t.Context(), table, e)
	if err != nil {
		t.Fatalf("Insert(%s, %s/%s): %v", table, e.PartitionKey, e.RowKey, err)
	}
	return got
}

func mustGet(t *testing.T, b store.Backend, table, pk, rk string) store.Entity {
	t.Helper()
	got, err := b.Get(t.Context(), table, pk, rk)
	if err != nil {
		t.Fatalf("Get(%s, %s/%s): %v", table, pk, rk, err)
	}
	return got
}

// sameJSON compares two JSON documents by value (a backend may keep the
// text as it is, but nothing forbids re-encoding).
func sameJSON(t *testing.T, got, want []byte) bool {
	t.Helper()
	if len(got) == 0 || len(want) == 0 {
		return len(got) == len(want)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("stored data is not JSON: %v: %.200s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

func wantErr(t *testing.T, op string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error = %v, want %v", op, err, target)
	}
}

func testGetMissing(t *testing.T, b store.Backend) {
	ctx := t.Context()
	_, err := b.Get(ctx, "nevercreated", "p", "r")
	wantErr(t, "Get from a table never written", err, store.ErrNotFound)
	mustInsert(t, b, "things", ent("p", "r", doc(t, map[string]int{"n": 1})))
	_, err = b.Get(ctx, "things", "p", "other")
	wantErr(t, "Get of an absent row", err, store.ErrNotFound)
	_, err = b.Get(ctx, "things", "other", "r")
	wantErr(t, "Get of an absent partition", err, store.ErrNotFound)
	list, err := b.List(ctx, "nevercreated", "")
	if err != nil || len(list) != 0 {
		t.Fatalf("List of a table never written = %v, %v; want empty, nil", list, err)
	}
}

func testInsertGet(t *testing.T, b store.Backend) {
	before := time.Now().Add(-time.Minute)
	data := doc(t, map[string]any{"alertId": "da1", "n": 3, "tags": []string{"a", "b"}})
	ins := mustInsert(t, b, "things", ent("p1", "r1", data))
	if ins.ETag == "" {
		t.Error("Insert returned an empty ETag")
	}
	if ins.PartitionKey != "p1" || ins.RowKey != "r1" {
		t.Errorf("Insert returned keys %q/%q", ins.PartitionKey, ins.RowKey)
	}
	if ins.Timestamp.Before(before) || ins.Timestamp.After(time.Now().Add(time.Minute)) {
		t.Errorf("Insert Timestamp = %v, want about now", ins.Timestamp)
	}
	got := mustGet(t, b, "things", "p1", "r1")
	if !sameJSON(t, got.Data, data) {
		t.Errorf("Get data = %s, want %s", got.Data, data)
	}
	if got.ETag != ins.ETag {
		t.Errorf("Get ETag = %q, Insert returned %q", got.ETag, ins.ETag)
	}
	if got.PartitionKey != "p1" || got.RowKey != "r1" {
		t.Errorf("Get keys = %q/%q", got.PartitionKey, got.RowKey)
	}
	if got.Timestamp.Before(before) || got.Timestamp.After(time.Now().Add(time.Minute)) {
		t.Errorf("Get Timestamp = %v, want about now", got.Timestamp)
	}
}

func testInsertExists(t *testing.T, b store.Backend) {
	first := doc(t, map[string]string{"owner": "first"})
	ins := mustInsert(t, b, "claims", ent("alert", "da1", first))
	_, err := b.Insert(t.Context(), "claims", ent("alert", "da1", doc(t, map[string]string{"owner": "second"})))
	wantErr(t, "second Insert", err, store.ErrExists)
	got := mustGet(t, b, "claims", "alert", "da1")
	if !sameJSON(t, got.Data, first) || got.ETag != ins.ETag {
		t.Errorf("after a refused Insert: data %s etag %q, want %s %q", got.Data, got.ETag, first, ins.ETag)
	}
}

func testUpdateMissing(t *testing.T, b store.Backend) {
	ctx := t.Context()
	_, err := b.Update(ctx, "things", ent("p", "r", doc(t, 1)))
	wantErr(t, "Update (no etag) of an entity in a table never written", err, store.ErrNotFound)
	mustInsert(t, b, "things", ent("p", "other", doc(t, 1)))
	_, err = b.Update(ctx, "things", ent("p", "r", doc(t, 1)))
	wantErr(t, "Update (no etag) of an absent entity", err, store.ErrNotFound)
	e := ent("p", "r", doc(t, 1))
	e.ETag = `W/"1"`
	_, err = b.Update(ctx, "things", e)
	if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update (etag) of an absent entity: %v, want ErrNotFound or ErrConflict", err)
	}
	if _, err := b.Get(ctx, "things", "p", "r"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update of an absent entity created it: Get error %v", err)
	}
}

func testUpdateETag(t *testing.T, b store.Backend) {
	ctx := t.Context()
	v1 := mustInsert(t, b, "things", ent("p", "r", doc(t, map[string]int{"v": 1})))

	e := ent("p", "r", doc(t, map[string]int{"v": 2}))
	e.ETag = v1.ETag
	v2, err := b.Update(ctx, "things", e)
	if err != nil {
		t.Fatalf("Update with the current etag: %v", err)
	}
	if v2.ETag == "" || v2.ETag == v1.ETag {
		t.Fatalf("Update ETag = %q, want new and different from %q", v2.ETag, v1.ETag)
	}
	if got := mustGet(t, b, "things", "p", "r"); got.ETag != v2.ETag || !sameJSON(t, got.Data, e.Data) {
		t.Fatalf("after Update: %s %q, want %s %q", got.Data, got.ETag, e.Data, v2.ETag)
	}

	stale := ent("p", "r", doc(t, map[string]int{"v": 99}))
	stale.ETag = v1.ETag
	_, err = b.Update(ctx, "things", stale)
	wantErr(t, "Update with a stale etag", err, store.ErrConflict)
	if got := mustGet(t, b, "things", "p", "r"); !sameJSON(t, got.Data, e.Data) || got.ETag != v2.ETag {
		t.Fatalf("a conflicting Update changed the entity: %s %q", got.Data, got.ETag)
	}

	uncond := ent("p", "r", doc(t, map[string]int{"v": 3}))
	v3, err := b.Update(ctx, "things", uncond)
	if err != nil {
		t.Fatalf("Update without etag: %v", err)
	}
	if v3.ETag == v2.ETag {
		t.Fatal("unconditional Update kept the old etag")
	}
	if got := mustGet(t, b, "things", "p", "r"); !sameJSON(t, got.Data, uncond.Data) || got.ETag != v3.ETag {
		t.Fatalf("after unconditional Update: %s %q", got.Data, got.ETag)
	}
}

func testUpsert(t *testing.T, b store.Backend) {
	ctx := t.Context()
	u1, err := b.Upsert(ctx, "things", ent("p", "r", doc(t, map[string]int{"v": 1})))
	if err != nil {
		t.Fatalf("Upsert (create): %v", err)
	}
	if u1.ETag == "" {
		t.Fatal("Upsert returned an empty ETag")
	}
	want := doc(t, map[string]string{"replaced": "yes"})
	u2, err := b.Upsert(ctx, "things", ent("p", "r", want))
	if err != nil {
		t.Fatalf("Upsert (replace): %v", err)
	}
	if u2.ETag == u1.ETag {
		t.Fatal("Upsert (replace) kept the old etag")
	}
	got := mustGet(t, b, "things", "p", "r")
	// Replace, not merge: the old field is gone.
	if !sameJSON(t, got.Data, want) || got.ETag != u2.ETag {
		t.Fatalf("after Upsert: %s %q, want %s %q", got.Data, got.ETag, want, u2.ETag)
	}
	_, err = b.Insert(ctx, "things", ent("p", "r", want))
	wantErr(t, "Insert after Upsert", err, store.ErrExists)
}

func testDelete(t *testing.T, b store.Backend) {
	ctx := t.Context()
	wantErr(t, "Delete in a table never written", b.Delete(ctx, "things", "p", "r", ""), store.ErrNotFound)
	v1 := mustInsert(t, b, "things", ent("p", "r", doc(t, 1)))
	wantErr(t, "Delete of an absent row", b.Delete(ctx, "things", "p", "absent", ""), store.ErrNotFound)

	e := ent("p", "r", doc(t, 2))
	e.ETag = v1.ETag
	v2, err := b.Update(ctx, "things", e)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Delete with a stale etag", b.Delete(ctx, "things", "p", "r", v1.ETag), store.ErrConflict)
	mustGet(t, b, "things", "p", "r")
	if err := b.Delete(ctx, "things", "p", "r", v2.ETag); err != nil {
		t.Fatalf("Delete with the current etag: %v", err)
	}
	_, err = b.Get(ctx, "things", "p", "r")
	wantErr(t, "Get after Delete", err, store.ErrNotFound)
	wantErr(t, "second Delete", b.Delete(ctx, "things", "p", "r", ""), store.ErrNotFound)

	// Re-created entity: the old etag must not match it.
	v3 := mustInsert(t, b, "things", ent("p", "r", doc(t, 3)))
	if v3.ETag == v1.ETag || v3.ETag == v2.ETag {
		t.Fatalf("re-inserted entity reuses an old etag %q", v3.ETag)
	}
	stale := ent("p", "r", doc(t, 4))
	stale.ETag = v2.ETag
	_, err = b.Update(ctx, "things", stale)
	wantErr(t, "Update of a re-created entity with the old etag", err, store.ErrConflict)
	if err := b.Delete(ctx, "things", "p", "r", ""); err != nil {
		t.Fatalf("unconditional Delete: %v", err)
	}
	if list, err := b.List(ctx, "things", ""); err != nil || len(list) != 0 {
		t.Fatalf("List after deleting everything = %d entities, %v", len(list), err)
	}
}

func keysOf(list []store.Entity) []string {
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.PartitionKey + "|" + e.RowKey
	}
	return out
}

func testListOrdering(t *testing.T, b store.Backend) {
	ctx := t.Context()
	// Inserted out of order, across partitions.
	rows := [][2]string{
		{"machine-b", "0003"}, {"machine-a", "0002"}, {"machine-c", "0001"},
		{"machine-a", "0010"}, {"machine-b", "0001"}, {"machine-a", "0001"},
		{"machine-b", "0002"}, {"machine-a", "0009"},
	}
	for _, r := range rows {
		mustInsert(t, b, "audit", ent(r[0], r[1], doc(t, map[string]string{"pk": r[0], "rk": r[1]})))
	}
	all, err := b.List(ctx, "audit", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"machine-a|0001", "machine-a|0002", "machine-a|0009", "machine-a|0010",
		"machine-b|0001", "machine-b|0002", "machine-b|0003", "machine-c|0001",
	}
	if got := keysOf(all); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("List all = %v, want %v", got, want)
	}
	for _, e := range all {
		if e.ETag == "" || e.Timestamp.IsZero() {
			t.Errorf("listed %s/%s without etag or timestamp", e.PartitionKey, e.RowKey)
		}
		if !sameJSON(t, e.Data, doc(t, map[string]string{"pk": e.PartitionKey, "rk": e.RowKey})) {
			t.Errorf("listed %s/%s with data %s", e.PartitionKey, e.RowKey, e.Data)
		}
		got := mustGet(t, b, "audit", e.PartitionKey, e.RowKey)
		if got.ETag != e.ETag {
			t.Errorf("List etag %q != Get etag %q for %s/%s", e.ETag, got.ETag, e.PartitionKey, e.RowKey)
		}
	}
	part, err := b.List(ctx, "audit", "machine-b")
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(part); strings.Join(got, ",") != "machine-b|0001,machine-b|0002,machine-b|0003" {
		t.Fatalf("List machine-b = %v", got)
	}
	none, err := b.List(ctx, "audit", "machine-z")
	if err != nil || len(none) != 0 {
		t.Fatalf("List of an absent partition = %v, %v", keysOf(none), err)
	}
}

func testPartitionIsolation(t *testing.T, b store.Backend) {
	ctx := t.Context()
	a := mustInsert(t, b, "things", ent("pa", "same", doc(t, "a")))
	mustInsert(t, b, "things", ent("pb", "same", doc(t, "b")))
	// A prefix of another partition's key is another partition.
	mustInsert(t, b, "things", ent("p", "same", doc(t, "p")))
	if err := b.Delete(ctx, "things", "pb", "same", ""); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b, "things", "pa", "same"); !sameJSON(t, got.Data, doc(t, "a")) || got.ETag != a.ETag {
		t.Fatalf("deleting pb/same changed pa/same: %s", got.Data)
	}
	list, err := b.List(ctx, "things", "p")
	if err != nil || strings.Join(keysOf(list), ",") != "p|same" {
		t.Fatalf("List p = %v, %v; want only p|same", keysOf(list), err)
	}
}

func testTableIsolation(t *testing.T, b store.Backend) {
	ctx := t.Context()
	mustInsert(t, b, "tablea", ent("p", "r", doc(t, "a")))
	mustInsert(t, b, "tableb", ent("p", "r", doc(t, "b")))
	if got := mustGet(t, b, "tablea", "p", "r"); !sameJSON(t, got.Data, doc(t, "a")) {
		t.Fatalf("tablea/p/r = %s", got.Data)
	}
	if err := b.Delete(ctx, "tableb", "p", "r", ""); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "tablea", "p", "r")
	if list, _ := b.List(ctx, "tableb", ""); len(list) != 0 {
		t.Fatalf("tableb still lists %v", keysOf(list))
	}
	// Table names are case-insensitive, as in Azure.
	got := mustGet(t, b, "TableA", "p", "r")
	if !sameJSON(t, got.Data, doc(t, "a")) {
		t.Fatalf("TableA/p/r = %s, want tablea's", got.Data)
	}
	_, err := b.Insert(ctx, "TABLEA", ent("p", "r", doc(t, "x")))
	wantErr(t, "Insert into TABLEA of a key in tablea", err, store.ErrExists)
}

func testEmptyData(t *testing.T, b store.Backend) {
	ctx := t.Context()
	mustInsert(t, b, "things", ent("p", "nil", nil))
	mustInsert(t, b, "things", ent("p", "empty", []byte{}))
	for _, rk := range []string{"nil", "empty"} {
		if got := mustGet(t, b, "things", "p", rk); len(got.Data) != 0 {
			t.Errorf("%s: Data = %q, want empty", rk, got.Data)
		}
	}
	e := ent("p", "nil", doc(t, map[string]int{"n": 1}))
	if _, err := b.Update(ctx, "things", e); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(ctx, "things", ent("p", "nil", nil)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b, "things", "p", "nil"); len(got.Data) != 0 {
		t.Errorf("Data after updating to empty = %q", got.Data)
	}
}

// bigDoc returns a JSON document of about n bytes mixing ASCII, 2-, 3- and
// 4-byte UTF-8 (a 4-byte rune is two UTF-16 units: it must not be split
// between two Azure properties).
func bigDoc(t *testing.T, n int) []byte {
	t.Helper()
	const unit = "alert é € 𝄞 \"quoted\" \\ "
	var items []string
	size := 0
	for i := 0; size < n-64; i++ {
		s := fmt.Sprintf("%05d %s", i, unit)
		items = append(items, s)
		size += len(doc(t, s)) + 1
	}
	b := doc(t, map[string]any{"items": items})
	if len(b) > store.MaxDataSize {
		t.Fatalf("bigDoc(%d) made %d bytes", n, len(b))
	}
	return b
}

func testLargeData(t *testing.T, b store.Backend) {
	ctx := t.Context()
	near := bigDoc(t, store.MaxDataSize-1024)
	mustInsert(t, b, "things", ent("p", "big", near))
	if got := mustGet(t, b, "things", "p", "big"); !sameJSON(t, got.Data, near) {
		t.Fatalf("large document (%d bytes) did not round-trip (got %d bytes): %s", len(near), len(got.Data), firstDiff(got.Data, near))
	}
	list, err := b.List(ctx, "things", "p")
	if err != nil || len(list) != 1 || !sameJSON(t, list[0].Data, near) {
		t.Fatalf("List of the large document: %d entities, %v", len(list), err)
	}
	// Shrinking must not leave pieces of the old document behind.
	small := bigDoc(t, 40<<10)
	if _, err := b.Update(ctx, "things", ent("p", "big", small)); err != nil {
		t.Fatalf("Update to a smaller document: %v", err)
	}
	if got := mustGet(t, b, "things", "p", "big"); !sameJSON(t, got.Data, small) {
		t.Fatalf("after shrinking: %d bytes, want %d", len(got.Data), len(small))
	}
	tiny := doc(t, "tiny")
	if _, err := b.Upsert(ctx, "things", ent("p", "big", tiny)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b, "things", "p", "big"); !sameJSON(t, got.Data, tiny) {
		t.Fatalf("after Upsert to tiny: %.100s", got.Data)
	}

	tooBig := doc(t, strings.Repeat("x", store.MaxDataSize))
	_, err = b.Insert(ctx, "things", ent("p", "toobig", tooBig))
	wantErr(t, "Insert over MaxDataSize", err, store.ErrTooLarge)
	_, err = b.Upsert(ctx, "things", ent("p", "big", tooBig))
	wantErr(t, "Upsert over MaxDataSize", err, store.ErrTooLarge)
	if got := mustGet(t, b, "things", "p", "big"); !sameJSON(t, got.Data, tiny) {
		t.Fatal("a refused Upsert changed the entity")
	}
}

func testUnicodeKeys(t *testing.T, b store.Backend) {
	ctx := t.Context()
	keys := []string{
		"Zürich-東京-🚀",
		"it's \"quoted\"",
		"a b&c=d+e;f,g",
		"100%",
		"~tilde~",
		"dot.and:colon@at",
		"Ünïcödé",
		store.EscapeKey("hunts/contoso#1?x\\y\x01z"),
		store.EscapeKey(strings.Repeat("é/", 400)), // shortened with a hash
	}
	for i, k := range keys {
		if err := store.ValidateKey(k); err != nil {
			t.Fatalf("test key %q is invalid: %v", k, err)
		}
		rk := fmt.Sprintf("row-%s-%d", k, i)
		if len(rk) > 300 {
			rk = fmt.Sprintf("row-%d", i)
		}
		data := doc(t, map[string]string{"key": k})
		v1 := mustInsert(t, b, "unicode", ent(k, rk, data))
		got := mustGet(t, b, "unicode", k, rk)
		if got.PartitionKey != k || got.RowKey != rk || !sameJSON(t, got.Data, data) {
			t.Fatalf("key %q: Get = %q/%q %s", k, got.PartitionKey, got.RowKey, got.Data)
		}
		list, err := b.List(ctx, "unicode", k)
		if err != nil || len(list) != 1 || list[0].PartitionKey != k || list[0].RowKey != rk {
			t.Fatalf("key %q: List = %v, %v", k, keysOf(list), err)
		}
		e := ent(k, rk, doc(t, "v2"))
		e.ETag = v1.ETag
		v2, err := b.Update(ctx, "unicode", e)
		if err != nil {
			t.Fatalf("key %q: Update: %v", k, err)
		}
		if err := b.Delete(ctx, "unicode", k, rk, v2.ETag); err != nil {
			t.Fatalf("key %q: Delete: %v", k, err)
		}
	}
}

func testInvalidInput(t *testing.T, b store.Backend) {
	ctx := t.Context()
	badKeys := []string{"", "a/b", "a\\b", "a#b", "a?b", "a\x00b", "a\tb", "a\x7fb", "a\u0085b", "bad\xffutf8", strings.Repeat("k", store.MaxKeyLen+1), strings.Repeat("𝄞", store.MaxKeyLen/2+1)}
	for _, k := range badKeys {
		_, err := b.Insert(ctx, "things", ent(k, "r", doc(t, 1)))
		wantErr(t, fmt.Sprintf("Insert with partition key %q", k), err, store.ErrInvalidKey)
		_, err = b.Upsert(ctx, "things", ent("p", k, doc(t, 1)))
		wantErr(t, fmt.Sprintf("Upsert with row key %q", k), err, store.ErrInvalidKey)
		_, err = b.Get(ctx, "things", "p", k)
		wantErr(t, fmt.Sprintf("Get with row key %q", k), err, store.ErrInvalidKey)
		wantErr(t, fmt.Sprintf("Delete with row key %q", k), b.Delete(ctx, "things", k, "r", ""), store.ErrInvalidKey)
		if k != "" {
			_, err = b.List(ctx, "things", k)
			wantErr(t, fmt.Sprintf("List with partition key %q", k), err, store.ErrInvalidKey)
		}
	}
	for _, table := range []string{"", "ab", "1abc", "with-dash", "with_underscore", "tables/x", strings.Repeat("t", 41)} {
		_, err := b.Insert(ctx, table, ent("p", "r", doc(t, 1)))
		wantErr(t, fmt.Sprintf("Insert into table %q", table), err, store.ErrInvalidKey)
		_, err = b.List(ctx, table, "")
		wantErr(t, fmt.Sprintf("List of table %q", table), err, store.ErrInvalidKey)
	}
	for _, data := range [][]byte{[]byte("not json"), []byte(`{"a":`), []byte("\"\xff\"")} {
		_, err := b.Insert(ctx, "things", ent("p", "r", data))
		wantErr(t, fmt.Sprintf("Insert of data %q", data), err, store.ErrInvalidData)
	}
	if list, err := b.List(ctx, "things", ""); err != nil || len(list) != 0 {
		t.Fatalf("refused writes left entities: %v, %v", keysOf(list), err)
	}
}

func testNoAliasing(t *testing.T, b store.Backend) {
	data := []byte(`{"v":"original"}`)
	mustInsert(t, b, "things", ent("p", "r", data))
	copy(data, `{"v":"MUTATED!"}`) // the caller reuses its buffer
	got := mustGet(t, b, "things", "p", "r")
	if string(got.Data) != `{"v":"original"}` {
		t.Fatalf("stored data follows the caller's buffer: %s", got.Data)
	}
	copy(got.Data, `{"v":"MUTATED!"}`)
	if again := mustGet(t, b, "things", "p", "r"); string(again.Data) != `{"v":"original"}` {
		t.Fatalf("stored data follows a returned buffer: %s", again.Data)
	}
}

func testCanceledContext(t *testing.T, b store.Backend) {
	mustInsert(t, b, "things", ent("p", "r", doc(t, 1)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := b.Get(ctx, "things", "p", "r")
	wantErr(t, "Get with a canceled context", err, context.Canceled)
	_, err = b.Insert(ctx, "things", ent("p", "r2", doc(t, 1)))
	wantErr(t, "Insert with a canceled context", err, context.Canceled)
	if _, err := b.Get(t.Context(), "things", "p", "r2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Insert with a canceled context wrote: %v", err)
	}
}

// testConcurrentInsert pins insert-if-absent: of 20 racing claims of the
// same alert exactly one wins.
func testConcurrentInsert(t *testing.T, b store.Backend) {
	const n = 20
	ctx := t.Context()
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = b.Insert(ctx, "claims", ent("alert", "da-race", doc(t, map[string]int{"owner": i})))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("both %d and %d won the insert race", winner, i)
			}
			winner = i
		case errors.Is(err, store.ErrExists):
		default:
			t.Fatalf("goroutine %d: unexpected error %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("nobody won the insert race")
	}
	got := mustGet(t, b, "claims", "alert", "da-race")
	if !sameJSON(t, got.Data, doc(t, map[string]int{"owner": winner})) {
		t.Fatalf("stored %s, winner was %d", got.Data, winner)
	}
}

// testConcurrentCounter pins optimistic concurrency: read-modify-write
// with ETags loses no increment.
func testConcurrentCounter(t *testing.T, b store.Backend) {
	const workers, perWorker = 20, 3
	ctx := t.Context()
	mustInsert(t, b, "counters", ent("c", "n", doc(t, map[string]int{"n": 0})))
	start := make(chan struct{})
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		conflicts int
		failures  []error
	)
	for range workers {
		wg.Go(func() {
			<-start
			for range perWorker {
				for attempt := 0; ; attempt++ {
					if attempt > 500 {
						mu.Lock()
						failures = append(failures, errors.New("gave up after 500 conflicts"))
						mu.Unlock()
						return
					}
					cur, err := b.Get(ctx, "counters", "c", "n")
					if err != nil {
						mu.Lock()
						failures = append(failures, err)
						mu.Unlock()
						return
					}
					var v struct{ N int }
					if err := json.Unmarshal(cur.Data, &v); err != nil {
						mu.Lock()
						failures = append(failures, err)
						mu.Unlock()
						return
					}
					v.N++
					next := ent("c", "n", []byte(fmt.Sprintf(`{"n":%d}`, v.N)))
					next.ETag = cur.ETag
					_, err = b.Update(ctx, "counters", next)
					if errors.Is(err, store.ErrConflict) {
						mu.Lock()
						conflicts++
						mu.Unlock()
						continue
					}
					if err != nil {
						mu.Lock()
						failures = append(failures, err)
						mu.Unlock()
						return
					}
					break
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d workers failed: %v", len(failures), errors.Join(failures...))
	}
	got := mustGet(t, b, "counters", "c", "n")
	var v struct{ N int }
	if err := json.Unmarshal(got.Data, &v); err != nil {
		t.Fatal(err)
	}
	if v.N != workers*perWorker {
		t.Fatalf("counter = %d, want %d (lost updates)", v.N, workers*perWorker)
	}
	t.Logf("%d increments, %d conflicts retried", workers*perWorker, conflicts)
}

// firstDiff describes where got first differs from want.
func firstDiff(got, want []byte) string {
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			lo := max(0, i-24)
			return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, got[lo:min(len(got), i+24)], want[lo:min(len(want), i+24)])
		}
	}
	if len(got) > len(want) {
		return fmt.Sprintf("got %d extra bytes: %q", len(got)-len(want), got[len(want):min(len(got), len(want)+48)])
	}
	return "equal"
}
