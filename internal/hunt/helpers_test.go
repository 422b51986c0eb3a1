package hunt

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdeflow/mdeflow/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// publicDir returns ../shared/data/public relative to the module root, or
// skips the test when the acceptance corpus is absent.
func publicDir(t *testing.T) string { return testutil.PublicDir(t) }

// publicFile returns the path of one corpus file, skipping when absent.
func publicFile(t *testing.T, name string) string { return testutil.PublicData(t, name) }

// golden compares got with testdata/<name>, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
