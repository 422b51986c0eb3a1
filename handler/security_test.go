package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/mdeflow/mdeflow/internal/store"
)

// hostile holds what a forwarded message id, an alert title or an error
// can carry to an operator's terminal: ESC sequences (title change, OSC 8
// links, clear screen), an 8-bit CSI (U+009B), bidi overrides, line breaks.
var hostile = []string{
	"\x1b]0;pwned\x07\x1b[2J\x1b[31mred",
	"\u009b2J\u009d0;pwned\u009c",
	"invoice\u202egpj.exe",
	"line1\r\nFAKE 2026-01-01T00:00:00Z  alerts  ok",
	"\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
}

func assertTerminalSafe(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		for _, r := range line {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("terminal output carries %U: %q", r, line)
			}
		}
	}
}

func TestDeadLettersListIsTerminalSafe(t *testing.T) {
	for _, h := range hostile {
		d := store.DeadLetter{Queue: "alerts", Function: "EnrichAlert", MessageID: h, Error: "decoding: " + h,
			At: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
		out := deadLetterLine(d)
		if strings.Count(out, "\n") != 1 {
			t.Fatalf("one dead letter printed as %d lines: %q", strings.Count(out, "\n"), out)
		}
		assertTerminalSafe(t, out)
	}
}

func TestDemoOutcomesAreTerminalSafe(t *testing.T) {
	for _, h := range hostile {
		var b bytes.Buffer
		printOutcomes(&b, demoResult{Outcomes: []outcomeLine{{Alert: "da1", Rule: "high", Title: "High " + h, Outcome: "failed: " + h}}})
		if strings.Count(b.String(), "\n") != 3 {
			t.Fatalf("one outcome printed over several lines: %q", b.String())
		}
		assertTerminalSafe(t, b.String())
	}
}
