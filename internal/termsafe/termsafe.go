// Package termsafe makes untrusted text (alert titles, message ids, error
// texts that quote a message) safe to print on an operator's terminal.
package termsafe

import (
	"strings"
	"unicode"
)

// String makes s safe to print on a terminal, on one line: line breaks and
// tabs become spaces; every other control character (C0, DEL, and C1,
// which includes the 8-bit CSI U+009B) and Unicode format characters (bidi
// overrides, zero-width) are dropped; invalid UTF-8 becomes U+FFFD. At
// most max runes are kept, the cut marked with "…" (0: no limit).
func String(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	n := 0
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			r = ' '
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			continue
		}
		if max > 0 && n == max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
