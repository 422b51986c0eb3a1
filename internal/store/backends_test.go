package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Backend {
		b := store.NewMemory()
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

func TestBoltContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Backend {
		b, err := store.OpenBolt(filepath.Join(t.TempDir(), "state", "mdeflow.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// azuriteConnectionString is Azurite's well-known development account
// (public, documented; not a secret) with the endpoint under test.
func azuriteConnectionString(endpoint string) string {
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
		"TableEndpoint=" + endpoint + ";"
}

// newAzuriteBackend returns a Tables backend on Azurite with a table
// prefix of its own, or skips when AZURITE_TABLE_ENDPOINT is unset.
func newAzuriteBackend(t *testing.T) *store.TablesBackend {
	t.Helper()
	endpoint := requireAzurite(t)
	var rnd [5]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	b, err := store.NewTables(store.TablesConfig{
		ConnectionString: azuriteConnectionString(endpoint),
		TablePrefix:      "t" + hex.EncodeToString(rnd[:]),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.DropTables(ctx); err != nil {
			t.Errorf("dropping test tables: %v", err)
		}
	})
	return b
}

// requireAzurite returns the Azurite table endpoint or skips the test.
func requireAzurite(t *testing.T) string {
	t.Helper()
	endpoint := os.Getenv("AZURITE_TABLE_ENDPOINT")
	if endpoint == "" {
		t.Skip("AZURITE_TABLE_ENDPOINT is not set: run `make test` (it starts Azurite), or " +
			"`scripts/azurite.sh start && eval \"$(scripts/azurite.sh env)\"` first")
	}
	return endpoint
}

func TestTablesContract(t *testing.T) {
	t.Parallel()
	requireAzurite(t)
	storetest.Run(t, func(t *testing.T) store.Backend { return newAzuriteBackend(t) })
}

func TestBoltPersistsAcrossReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mdeflow.db")
	b, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ins, err := b.Insert(ctx, "checkpoints", store.Entity{PartitionKey: "p", RowKey: "r", Data: []byte(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "checkpoints", "p", "r"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	b2, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	got, err := b2.Get(ctx, "checkpoints", "p", "r")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != `{"n":1}` || got.ETag != ins.ETag || !got.Timestamp.Equal(ins.Timestamp) {
		t.Fatalf("after reopen: %+v, inserted %+v", got, ins)
	}
	// Versions keep growing after a reopen: a new write never reuses an ETag.
	up, err := b2.Upsert(ctx, "checkpoints", store.Entity{PartitionKey: "p", RowKey: "r", Data: []byte(`{"n":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	if up.ETag == ins.ETag {
		t.Fatal("ETag reused after reopen")
	}
}

// TestBoltLockedFile pins the error a second opener gets: it names the
// path and says the file is locked, instead of hanging.
func TestBoltLockedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "locked.db")
	b, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	start := time.Now()
	_, err = store.OpenBoltWithTimeout(path, 200*time.Millisecond)
	if err == nil {
		t.Fatal("second open of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("error %q does not name the path and the lock", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second open took %v", d)
	}
}

func TestMemoryClosed(t *testing.T) {
	t.Parallel()
	b := store.NewMemory()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := b.Insert(t.Context(), "things", store.Entity{PartitionKey: "p", RowKey: "r"})
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Insert after Close: %v", err)
	}
}

func TestNewTablesConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  store.TablesConfig
		want string
	}{
		{"nothing", store.TablesConfig{}, "connection string or an endpoint"},
		{"endpoint without credential", store.TablesConfig{Endpoint: "https://a.table.core.windows.net"}, "no credential"},
		{"bad prefix", store.TablesConfig{ConnectionString: azuriteConnectionString("http://127.0.0.1:1/devstoreaccount1"), TablePrefix: "1bad"}, "table prefix"},
		{"long prefix", store.TablesConfig{ConnectionString: azuriteConnectionString("http://127.0.0.1:1/devstoreaccount1"), TablePrefix: strings.Repeat("a", 24)}, "table prefix"},
		{"malformed connection string", store.TablesConfig{ConnectionString: "AccountKey=secretvalue"}, "connection string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := store.NewTables(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewTables error = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secretvalue") || strings.Contains(err.Error(), "Eby8vdM02x") {
				t.Fatalf("error leaks the account key: %v", err)
			}
		})
	}
	if _, err := store.NewTables(store.TablesConfig{ConnectionString: azuriteConnectionString("http://127.0.0.1:1/devstoreaccount1"), TablePrefix: "ok1"}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}
