package notify

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Every alert-derived string passes through one of these before it reaches
// any output. They make the string safe to *read* (no hidden characters, no
// fake line breaks); escaping for a given output format (HTML, Markdown,
// JSON, e-mail headers) is then done by that output.

// isBidi reports the Unicode bidirectional controls used to visually reorder
// text ("Trojan Source"): file names like "invoice\u202Eexe.pdf".
func isBidi(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C:
		return true
	}
	return false
}

// isControl reports C0, DEL and C1 control characters.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}

// visibleRune returns the escape shown instead of a control or bidi rune.
func visibleRune(r rune) string {
	switch r {
	case '\r':
		return `\r`
	case '\n':
		return `\n`
	case '\t':
		return `\t`
	}
	if r <= 0xff {
		return fmt.Sprintf(`\x%02x`, r)
	}
	return fmt.Sprintf(`\u%04x`, r)
}

// oneLine makes an attacker-controlled value safe for a single-line field:
// invalid UTF-8 becomes U+FFFD, control and bidi characters (including CR
// and LF) become visible escapes such as `\r\n`, so a command line keeps its
// forensic content but can never start a new line, and the result is capped
// at max runes.
func oneLine(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if max > 0 && n >= max {
			b.WriteString("…")
			break
		}
		if isControl(r) || isBidi(r) {
			b.WriteString(visibleRune(r))
		} else {
			b.WriteRune(r)
		}
		n++
	}
	return b.String()
}

// multiLine is oneLine for free text (descriptions): line breaks survive
// (CRLF and CR become LF), tabs survive, everything else is made visible.
func multiLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var b strings.Builder
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if max > 0 && n >= max {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\n', r == '\t':
			b.WriteRune(r)
		case isControl(r) || isBidi(r):
			b.WriteString(visibleRune(r))
		default:
			b.WriteRune(r)
		}
		n++
	}
	return strings.TrimRight(b.String(), "\n\t ")
}

// SanitizeSubject makes a subject line: one line, no control or bidi
// characters (they are replaced by a space, not escaped, to stay readable),
// runs of white space collapsed, "=?" broken up so a title cannot smuggle a
// pre-encoded RFC 2047 word, and at most max runes.
func SanitizeSubject(s string, max int) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if isControl(r) || isBidi(r) || unicode.IsSpace(r) {
			space = true
			continue
		}
		if max > 0 && n >= max {
			b.WriteString("…")
			break
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		b.WriteRune(r)
		n++
	}
	return strings.ReplaceAll(b.String(), "=?", "= ?")
}

// stripControlText removes control characters except LF and TAB from a whole
// rendered text part (defence in depth after the per-field sanitising).
func stripControlText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if isControl(r) || isBidi(r) {
			return -1
		}
		return r
	}, s)
}

// truncateBytes cuts s to at most n bytes on a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// markdownEscape neutralises the Markdown subset that Adaptive Card
// TextBlocks and FactSet values interpret (bold, italic, links, lists,
// headings, code, strike-through) and the card's {{DATE()}}/{{TIME()}}
// functions: every special character gets a backslash (CommonMark escape),
// "://" becomes ":\/\/" so bare URLs are not auto-linked, and list markers at
// the start of a line are escaped. The input must already be sanitised.
func markdownEscape(s string) string {
	var b strings.Builder
	lineStart := true
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch r {
		case '\\', '*', '_', '[', ']', '(', ')', '`', '~', '<', '>', '#', '|', '{', '}', '!', '&':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '-', '+', '=':
			if lineStart {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		case '/':
			// break "://" (auto-linking) and "//"
			if i > 0 && (s[i-1] == ':' || s[i-1] == '/') {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		case '.':
			// "1. " at the start of a line is an ordered list
			if precededByLineDigits(s, i) {
				b.WriteString(`\.`)
			} else {
				b.WriteRune(r)
			}
		default:
			b.WriteRune(r)
		}
		if r == '\n' {
			lineStart = true
		} else if r != ' ' && r != '\t' {
			lineStart = false
		}
		i += size
	}
	return b.String()
}

// precededByLineDigits reports whether s[:i] ends with a line that consists
// only of (optional blanks and) digits: "12" in "12. item".
func precededByLineDigits(s string, i int) bool {
	j := i
	for j > 0 && s[j-1] >= '0' && s[j-1] <= '9' {
		j--
	}
	if j == i {
		return false
	}
	for j > 0 && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return j == 0 || s[j-1] == '\n'
}
