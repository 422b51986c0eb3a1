package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// More sentinel errors (additive to those in store.go). Every backend
// returns them for the same inputs, so behaviour does not depend on the
// backend.
var (
	// ErrInvalidKey is returned for a partition key, row key or table name
	// that breaks the Azure Table rules (see ValidateKey, ValidateTable).
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrInvalidData is returned when Entity.Data is neither empty nor a
	// valid UTF-8 JSON document.
	ErrInvalidData = errors.New("store: data is not valid JSON")
	// ErrTooLarge is returned when Entity.Data exceeds MaxDataSize.
	ErrTooLarge = errors.New("store: data too large")
)

const (
	// MaxKeyLen is the longest partition or row key, in UTF-16 code units:
	// Azure Table keys are at most 1 KiB, stored as UTF-16.
	MaxKeyLen = 512
	// MaxDataSize is the largest Entity.Data, in bytes. It is what always
	// fits in one Azure Table entity (1 MiB, strings stored as UTF-16),
	// and every backend enforces it so none accepts what another refuses.
	MaxDataSize = 480 << 10
)

// ValidateKey reports whether s is a valid partition or row key: non-empty,
// valid UTF-8, at most MaxKeyLen UTF-16 code units, and none of '/', '\\',
// '#', '?' or the control characters U+0000-U+001F and U+007F-U+009F.
//
//	store.ValidateKey("alert-da637")  // nil
func ValidateKey(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidKey, s)
	}
	n := 0
	for _, r := range s {
		if disallowedKeyRune(r) {
			return fmt.Errorf("%w: %q contains %q (use store.EscapeKey)", ErrInvalidKey, s, r)
		}
		n += utf16.RuneLen(r)
	}
	if n > MaxKeyLen {
		return fmt.Errorf("%w: %d UTF-16 code units, limit %d", ErrInvalidKey, n, MaxKeyLen)
	}
	return nil
}

func disallowedKeyRune(r rune) bool {
	switch {
	case r == '/', r == '\\', r == '#', r == '?':
		return true
	case r <= 0x1f, r >= 0x7f && r <= 0x9f:
		return true
	}
	return false
}

// escapeRune reports the runes EscapeKey rewrites: the disallowed ones,
// '%' (which some HTTP stacks mishandle in URL paths) and the escape
// character '~' itself.
func escapeRune(r rune) bool {
	return disallowedKeyRune(r) || r == '%' || r == '~'
}

// hashedKeyMarker starts the suffix of a key EscapeKey had to shorten.
const hashedKeyMarker = "~h"

// EscapeKey turns any string into a valid key: each disallowed character,
// '%' and '~' become "~XX" (hex of the code point), invalid UTF-8 bytes
// become U+FFFD, and a result longer than MaxKeyLen is cut and ends with
// "~h" plus a SHA-256 of the whole input, so distinct long inputs stay
// distinct. The empty string stays empty (which is not a valid key).
//
//	store.EscapeKey("contoso/hunts#1") // "contoso~2Fhunts~231"
func EscapeKey(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	units := 0
	for _, r := range s {
		if escapeRune(r) {
			fmt.Fprintf(&b, "~%02X", r)
			units += 3
		} else {
			b.WriteRune(r)
			units += utf16.RuneLen(r)
		}
	}
	if units <= MaxKeyLen {
		return b.String()
	}
	sum := sha256.Sum256([]byte(s))
	suffix := hashedKeyMarker + hex.EncodeToString(sum[:16])
	// Keep as many leading runes as fit, never cutting a "~XX" sequence.
	limit := MaxKeyLen - len(suffix)
	out := b.String()
	var keep strings.Builder
	units = 0
	for i := 0; i < len(out); {
		r, size := utf8.DecodeRuneInString(out[i:])
		step, n := string(r), utf16.RuneLen(r)
		if r == '~' {
			step, n = out[i:i+3], 3
			size = 3
		}
		if units+n > limit {
			break
		}
		keep.WriteString(step)
		units += n
		i += size
	}
	return keep.String() + suffix
}

// UnescapeKey reverses EscapeKey. It fails for a key EscapeKey shortened
// (those end with "~h" and a hash) and for malformed escapes.
//
//	store.UnescapeKey("contoso~2Fhunts~231") // "contoso/hunts#1", nil
func UnescapeKey(s string) (string, error) {
	if !strings.Contains(s, "~") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+3 > len(s) {
			return "", fmt.Errorf("%w: truncated escape in %q", ErrInvalidKey, s)
		}
		if s[i+1] == 'h' { // hashedKeyMarker: 'h' is never a hex digit of an escape
			return "", fmt.Errorf("%w: %q was shortened by EscapeKey and cannot be reversed", ErrInvalidKey, s)
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("%w: bad escape %q in %q", ErrInvalidKey, s[i:i+3], s)
		}
		b.WriteRune(rune(v[0]))
		i += 2
	}
	return b.String(), nil
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,39}$`)

// ValidateTable reports whether name is a valid logical table name: a
// letter then letters or digits, 3-40 characters (Azure allows 63; the rest
// is left for a TablePrefix). Table names are case-insensitive in every
// backend, as in Azure.
//
//	store.ValidateTable("checkpoints") // nil
func ValidateTable(name string) error {
	if !tableNameRE.MatchString(name) {
		return fmt.Errorf("%w: table name %q must be a letter then 2-39 letters or digits", ErrInvalidKey, name)
	}
	return nil
}

// validateEntity checks what every backend checks before a write.
func validateEntity(table string, e Entity) error {
	if err := ValidateTable(table); err != nil {
		return err
	}
	if err := ValidateKey(e.PartitionKey); err != nil {
		return fmt.Errorf("partition key: %w", err)
	}
	if err := ValidateKey(e.RowKey); err != nil {
		return fmt.Errorf("row key: %w", err)
	}
	return validateData(e.Data)
}

func validateData(data []byte) error {
	if len(data) > MaxDataSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxDataSize)
	}
	if len(data) > 0 && (!utf8.Valid(data) || !jsonValid(data)) {
		return ErrInvalidData
	}
	return nil
}

// validateRef checks the table and keys of a point read or delete.
func validateRef(table, pk, rk string) error {
	if err := ValidateTable(table); err != nil {
		return err
	}
	if err := ValidateKey(pk); err != nil {
		return fmt.Errorf("partition key: %w", err)
	}
	if err := ValidateKey(rk); err != nil {
		return fmt.Errorf("row key: %w", err)
	}
	return nil
}

// validateList checks the table and optional partition of a List.
func validateList(table, pk string) error {
	if err := ValidateTable(table); err != nil {
		return err
	}
	if pk != "" {
		if err := ValidateKey(pk); err != nil {
			return fmt.Errorf("partition key: %w", err)
		}
	}
	return nil
}
