package termsafe

import "testing"

func TestString(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "ws-fin-0142", 0, "ws-fin-0142"},
		{"line breaks and tabs", "a\r\nb\tc", 0, "a  b c"},
		{"ESC sequence", "\x1b[31mred\x1b[0m", 0, "[31mred[0m"},
		{"8-bit CSI", "a\u009b2Jb", 0, "a2Jb"},
		{"bidi override", "evil\u202egpj.exe", 0, "evilgpj.exe"},
		{"invalid UTF-8", "a\xffb", 0, "a\uFFFDb"},
		{"cap", "abcdef", 3, "abc…"},
		{"cap not reached", "abc", 3, "abc"},
		{"cap counts kept runes", "a\x1bbcd", 3, "abc…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := String(tc.in, tc.max); got != tc.want {
				t.Errorf("String(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}
