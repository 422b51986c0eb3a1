package policy

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdeflow/mdeflow/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares got with testdata/golden/<name>.golden (or rewrites it
// with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// publicData returns a file of the shared acceptance corpus, skipping the
// test when the corpus is absent.
func publicData(t *testing.T, name string) string { return testutil.PublicData(t, name) }

func strictPolicy(t *testing.T) *Policy {
	t.Helper()
	p, err := Load(filepath.Join(repoRoot(t), "examples", "policies", "strict.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunTestGolden(t *testing.T) {
	t.Parallel()
	msdocs := func(t *testing.T) string { return publicData(t, "msdocs_mde_get-alerts_example2_response.json") }
	graph := func(t *testing.T) string { return publicData(t, "graphdocs_security_list-alerts_v2_response.json") }
	local := func(name string) func(*testing.T) string {
		return func(*testing.T) string { return filepath.Join("testdata", name) }
	}
	tests := []struct {
		name    string
		policy  func(*testing.T) *Policy
		alerts  func(*testing.T) string
		machine string
	}{
		{"msdocs_default", func(*testing.T) *Policy { return nil }, msdocs, ""},
		{"msdocs_strict_machine", strictPolicy, msdocs, "machine_msdocs.json"},
		{"graph_page_default", func(*testing.T) *Policy { return Default() }, graph, ""},
		{"mixed_default", func(*testing.T) *Policy { return Default() }, local("alerts_mixed.json"), "machines.json"},
		{"mixed_strict", strictPolicy, local("alerts_mixed.json"), "machines.json"},
		{"single_no_machine", func(*testing.T) *Policy { return Default() }, local("alert_single.json"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			machine := ""
			if tc.machine != "" {
				machine = filepath.Join("testdata", tc.machine)
			}
			var out bytes.Buffer
			if err := RunTest(&out, tc.policy(t), tc.alerts(t), machine, testNow); err != nil {
				t.Fatalf("RunTest: %v", err)
			}
			golden(t, tc.name, out.Bytes())
		})
	}
}

// Regression: alert text must not reach the terminal with escape
// sequences, carriage returns or bidi overrides (a forged "isolated OK"
// line, a cleared screen).
func TestRunTestEscapesAlertText(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := RunTest(&out, Default(), filepath.Join("testdata", "alerts_mixed.json"), filepath.Join("testdata", "machines.json"), testNow); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, bad := range []string{"\x1b", "\r", "\u202e", "\a"} {
		if strings.Contains(s, bad) {
			t.Errorf("output contains %q", bad)
		}
	}
	if !strings.Contains(s, "title:    Invoice[2J[31m PAID  FAKE: isolated OK") {
		t.Errorf("hostile title not rendered as one inert line:\n%s", s)
	}
}

func TestRunTestErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	alert := filepath.Join("testdata", "alert_single.json")
	tests := []struct {
		name, alerts, machines, want string
	}{
		{"missing alert file", filepath.Join(dir, "absent.json"), "", "reading alerts"},
		{"not JSON", write("text.json", "hello"), "", "holds no JSON object or array"},
		{"broken JSON", write("broken.json", `{"value": [`), "", "decoding broken.json"},
		{"empty page", write("empty.json", `{"value": []}`), "", "holds no records"},
		{"missing machine file", alert, filepath.Join(dir, "absent.json"), "reading machines"},
		{"machine of the wrong shape", alert, write("m.json", `[{"id": 5}]`), "item 0 of m.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := RunTest(&bytes.Buffer{}, nil, tc.alerts, tc.machines, testNow)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RunTest = %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// An array of alerts with a BOM, and an undecodable item, are handled.
	var out bytes.Buffer
	arr := write("arr.json", "\xef\xbb\xbf"+`[{"id": "da1_2", "severity": "Low"}, {"id": 7}]`)
	if err := RunTest(&out, nil, arr, "", testNow); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "alert da1_2") || !strings.Contains(s, "cannot decode it as an MDE alert") ||
		!strings.Contains(s, "summary: 1 alert(s) evaluated, 1 skipped") {
		t.Errorf("output:\n%s", s)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRunTestWriteError(t *testing.T) {
	t.Parallel()
	if err := RunTest(failWriter{}, nil, filepath.Join("testdata", "alert_single.json"), "", testNow); err == nil || err.Error() != "disk full" {
		t.Errorf("RunTest to a failing writer = %v", err)
	}
}

func TestRunCheck(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := RunCheck(&out, filepath.Join(repoRoot(t), "examples", "policies", "default.yaml")); err != nil {
		t.Fatalf("RunCheck(default.yaml): %v", err)
	}
	if out.String() != "ok: 2 rules, version default-1\n" {
		t.Errorf("output = %q", out.String())
	}

	out.Reset()
	err := RunCheck(&out, filepath.Join("testdata", "bad_policy.yaml"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("RunCheck(bad) = %v, want a *ValidationError", err)
	}
	if n := strings.Count(out.String(), "\n  - "); n != len(ve.Problems) || n < 10 {
		t.Errorf("%d problem lines for %d problems", n, len(ve.Problems))
	}
	golden(t, "check_bad_policy", out.Bytes())

	out.Reset()
	if err := RunCheck(&out, filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.HasPrefix(out.String(), "error: loading policy") {
		t.Errorf("RunCheck(absent) = %v, output %q", err, out.String())
	}
}

func TestTermSafe(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":                 "plain",
		"a\nb\tc\rd":            "a b c d",
		"\x1b[31mred\x1b[0m":    "[31mred[0m",
		"bidi\u202eexe.pdf":     "bidiexe.pdf",
		"zero\u200bwidth":       "zerowidth",
		"c1\u0085\u009bcontrol": "c1control",
		"bad\xffutf8":           "bad\uFFFDutf8",
		"ünïcödé ok":            "ünïcödé ok",
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
