package store

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key string
		ok  bool
	}{
		{"alert-da637", true},
		{"Zürich 東京 🚀", true},
		{"it's", true},
		{"100%", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{strings.Repeat("𝄞", MaxKeyLen/2), true}, // 2 UTF-16 units each
		{"", false},
		{"a/b", false},
		{"a\\b", false},
		{"a#b", false},
		{"a?b", false},
		{"a\x00", false},
		{"a\x1f", false},
		{"a\x7f", false},
		{"a\u009f", false},
		{"\xff", false},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{strings.Repeat("𝄞", MaxKeyLen/2) + "k", false},
	}
	for _, tc := range tests {
		err := ValidateKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%.40q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%.40q) error %v is not ErrInvalidKey", tc.key, err)
		}
	}
}

func TestEscapeKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain-key_1.2", "plain-key_1.2"},
		{"contoso/hunts#1", "contoso~2Fhunts~231"},
		{"a\\b?c", "a~5Cb~3Fc"},
		{"100%", "100~25"},
		{"~", "~7E"},
		{"tab\there\x00", "tab~09here~00"},
		{"c1\u0085", "c1~85"},
		{"Zürich 東京 🚀 it's", "Zürich 東京 🚀 it's"},
		{"bad\xffbyte", "bad\uFFFDbyte"},
		{"", ""},
	}
	for _, tc := range tests {
		got := EscapeKey(tc.in)
		if got != tc.want {
			t.Errorf("EscapeKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in == "" {
			continue
		}
		if err := ValidateKey(got); err != nil {
			t.Errorf("EscapeKey(%q) = %q is not a valid key: %v", tc.in, got, err)
		}
		back, err := UnescapeKey(got)
		if err != nil {
			t.Errorf("UnescapeKey(%q): %v", got, err)
		}
		if want := strings.ToValidUTF8(tc.in, "\uFFFD"); back != want {
			t.Errorf("UnescapeKey(EscapeKey(%q)) = %q", tc.in, back)
		}
	}
}

func TestEscapeKeyLong(t *testing.T) {
	t.Parallel()
	long1 := strings.Repeat("a/", 600)
	long2 := strings.Repeat("a/", 600) + "b"
	k1, k2 := EscapeKey(long1), EscapeKey(long2)
	for _, k := range []string{k1, k2} {
		if err := ValidateKey(k); err != nil {
			t.Fatalf("shortened key %q invalid: %v", k, err)
		}
		if n := len(utf16.Encode([]rune(k))); n > MaxKeyLen {
			t.Fatalf("shortened key has %d units", n)
		}
		if !strings.Contains(k, hashedKeyMarker) {
			t.Fatalf("shortened key %q has no hash marker", k)
		}
		// Never cut inside an escape: everything before the marker unescapes.
		prefix := k[:strings.Index(k, hashedKeyMarker)]
		if _, err := UnescapeKey(prefix); err != nil {
			t.Fatalf("prefix of a shortened key does not unescape: %v", err)
		}
		if _, err := UnescapeKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("UnescapeKey of a shortened key = %v, want ErrInvalidKey", err)
		}
	}
	if k1 == k2 {
		t.Fatal("two long inputs that differ at the end got the same key")
	}
	if EscapeKey(long1) != k1 {
		t.Fatal("EscapeKey is not deterministic")
	}
	// Multi-unit runes near the cut.
	k3 := EscapeKey(strings.Repeat("𝄞", 400))
	if err := ValidateKey(k3); err != nil {
		t.Fatalf("EscapeKey of 400 surrogate-pair runes: %v", err)
	}
}

func TestUnescapeKeyErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"a~", "a~2", "a~zz", "a~h"} {
		if _, err := UnescapeKey(in); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("UnescapeKey(%q) = %v, want ErrInvalidKey", in, err)
		}
	}
}

func TestValidateTable(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"abc", "checkpoints", "Audit", "deadletters2", strings.Repeat("t", 40)} {
		if err := ValidateTable(ok); err != nil {
			t.Errorf("ValidateTable(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "1abc", "a-b", "a_b", "tables/x", strings.Repeat("t", 41)} {
		if err := ValidateTable(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateTable(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}
