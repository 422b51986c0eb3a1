package notify

import (
	"strings"
	"testing"
)

func TestOneLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "powershell.exe", 0, "powershell.exe"},
		{"CRLF made visible", "a\r\nBcc: x", 0, `a\r\nBcc: x`},
		{"escape sequence", "\x1b[31mred", 0, `\x1b[31mred`},
		{"NUL and DEL", "a\x00b\x7f", 0, `a\x00b\x7f`},
		{"C1 control", "a\u0085b", 0, `a\x85b`},
		{"bidi override", "invoice\u202Egnp.exe", 0, `invoice\u202egnp.exe`},
		{"invalid UTF-8", "a\xffb", 0, "a\uFFFDb"},
		{"capped", "abcdef", 3, "abc…"},
		{"unicode kept", "Zoë — ok", 0, "Zoë — ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := oneLine(tc.in, tc.max); got != tc.want {
				t.Errorf("oneLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMultiLine(t *testing.T) {
	t.Parallel()
	got := multiLine("one\r\ntwo\rthree\n\tfour\x07\n\n", 0)
	want := "one\ntwo\nthree\n\tfour\\x07"
	if got != want {
		t.Errorf("multiLine = %q, want %q", got, want)
	}
}

func TestSanitizeSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"CRLF header injection", "Alert\r\nBcc: victim@evil", 0, "Alert Bcc: victim@evil"},
		{"tabs and runs", " a \t\t b  ", 0, "a b"},
		{"bidi", "x\u202Ey", 0, "x y"},
		{"encoded word smuggling", "=?utf-8?q?=0D=0ABcc:_x?=", 0, "= ?utf-8?q?=0D=0ABcc:_x?="},
		{"cap", strings.Repeat("a", 10), 4, "aaaa…"},
		{"NUL", "a\x00b", 0, "a b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := SanitizeSubject(tc.in, tc.max); got != tc.want {
				t.Errorf("SanitizeSubject(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMarkdownEscape(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"**bold**", `\*\*bold\*\*`},
		{"[link](http://evil)", `\[link\]\(http:\/\/evil\)`},
		{"_it_ `code` ~~s~~", `\_it\_ \` + "`" + `code\` + "`" + ` \~\~s\~\~`},
		{"- item\n+ item\n1. item\n 22. item", "\\- item\n\\+ item\n1\\. item\n 22\\. item"},
		{"v1.2 a-b 3.5", "v1.2 a-b 3.5"},
		{"{{DATE(2017-02-14T06:08:39Z, SHORT)}}", `\{\{DATE\(2017-02-14T06:08:39Z, SHORT\)\}\}`},
		{`C:\Windows`, `C:\\Windows`},
		{"<b>&lt;", `\<b\>\&lt;`},
		{"# h\n> q", "\\# h\n\\> q"},
	}
	for _, tc := range tests {
		if got := markdownEscape(tc.in); got != tc.want {
			t.Errorf("markdownEscape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStripControlText(t *testing.T) {
	t.Parallel()
	if got := stripControlText("a\r\nb\tc\x00\x1b\u202e"); got != "a\nb\tc" {
		t.Errorf("stripControlText = %q", got)
	}
}
