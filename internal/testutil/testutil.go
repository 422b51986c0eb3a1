// Package testutil finds the repository root and the shared public data
// corpus (../shared/data/public beside the checkout) for tests. Tests that
// use the corpus skip when it is absent.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot walks up from the working directory (a package's folder under
// go test) to the folder holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
}

// PublicDir is the shared public data corpus; the test is skipped when the
// folder is absent.
func PublicDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "..", "shared", "data", "public")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("public data corpus not available: %v", err)
	}
	return dir
}

// PublicData is one file of the corpus; the test is skipped when it is absent.
func PublicData(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(PublicDir(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("public data file %s not available: %v", name, err)
	}
	return p
}
