package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkBoltInsert measures one durable insert-if-absent in the
// embedded store (the claim each alert, request and delivery makes).
func BenchmarkBoltInsert(b *testing.B) {
	db, err := OpenBolt(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	data := []byte(`{"requestId":"iso-da1","state":"received"}`)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if _, err := db.Insert(ctx, "requests", Entity{PartitionKey: "p", RowKey: fmt.Sprintf("r%09d", i), Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}
