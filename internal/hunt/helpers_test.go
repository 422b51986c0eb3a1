package hunt

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// publicDir returns ../shared/data/public relative to the module root, or
// skips the test when the acceptance corpus is absent.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
	pub := filepath.Join(dir, "..", "shared", "data", "public")
	if _, err := os.Stat(pub); err != nil {
		t.Skipf("public corpus absent: %v", err)
	}
	return pub
}

// publicFile returns the path of one corpus file, skipping when absent.
func publicFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(publicDir(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s absent: %v", name, err)
	}
	return p
}

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
