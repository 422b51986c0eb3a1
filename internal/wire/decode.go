package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrMissing reports that a binding or metadata key is absent (the host omits
// keys whose value is null).
var ErrMissing = errors.New("value missing")

// unwrap returns the JSON value held by raw. A JSON string whose content is
// itself valid JSON (the host's double encoding, §2.2) is peeled once; any
// other value is returned trimmed and unchanged.
func unwrap(raw json.RawMessage) json.RawMessage {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || b[0] != '"' {
		return b
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return b
	}
	inner := bytes.TrimSpace([]byte(s))
	if len(inner) > 0 && json.Valid(inner) {
		return inner
	}
	return b
}

// isNull reports whether raw is absent or the JSON literal null.
func isNull(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}

// DecodeString decodes a Data or Metadata value as text. It accepts the
// host's double-encoded form ("\"abc\"") and a single-encoded string ("abc").
// Numbers and booleans (which arrive as "4", "true") yield their JSON text. A
// string whose content is JSON text (a single-encoded message body) yields
// that text. null yields "". A real JSON object or array is an error.
func DecodeString(raw json.RawMessage) (string, error) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return "", ErrMissing
	}
	v := unwrap(b)
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("decoding string: %w", err)
		}
		return s, nil
	case '{', '[', 'n':
		if b[0] == '"' {
			// A single-encoded string whose text happens to be JSON
			// ("null", "{...}"): the string itself is the value.
			var s string
			if err := json.Unmarshal(b, &s); err != nil {
				return "", fmt.Errorf("decoding string: %w", err)
			}
			return s, nil
		}
		if v[0] == 'n' {
			return "", nil
		}
		return "", fmt.Errorf("decoding string: got a JSON %s", kind(v))
	default: // number, true, false
		if !json.Valid(v) {
			return "", fmt.Errorf("decoding string: invalid JSON %.40q", v)
		}
		return string(v), nil
	}
}

// kind names the JSON type of an unwrapped value for error messages.
func kind(v json.RawMessage) string {
	if len(v) == 0 {
		return "empty value"
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// scalarText returns the text of a number, boolean or string value, after
// unwrapping, with surrounding space removed.
func scalarText(raw json.RawMessage, what string) (string, error) {
	if isNull(raw) {
		return "", fmt.Errorf("decoding %s: %w", what, ErrMissing)
	}
	v := unwrap(raw)
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("decoding %s: %w", what, err)
		}
		return strings.TrimSpace(s), nil
	case '{', '[':
		return "", fmt.Errorf("decoding %s: got a JSON %s", what, kind(v))
	case 'n':
		return "", fmt.Errorf("decoding %s: %w", what, ErrMissing)
	default:
		return string(v), nil
	}
}

// DecodeInt decodes an integer sent as a number, as number text ("4", the
// host's form) or as a double-encoded string ("\"4\"").
func DecodeInt(raw json.RawMessage) (int, error) {
	s, err := scalarText(raw, "integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("decoding integer: %w", err)
	}
	return n, nil
}

// DecodeInt64 is DecodeInt for 64-bit values such as SequenceNumber.
func DecodeInt64(raw json.RawMessage) (int64, error) {
	s, err := scalarText(raw, "integer")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decoding integer: %w", err)
	}
	return n, nil
}

// DecodeBool decodes a boolean sent as JSON true/false, as text ("true") or
// in .NET spelling ("True").
func DecodeBool(raw json.RawMessage) (bool, error) {
	s, err := scalarText(raw, "boolean")
	if err != nil {
		return false, err
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("decoding boolean: %w", err)
	}
	return b, nil
}

// timeLayouts are the date forms the host produces (§2.2, §2.3), most
// specific first. Layouts without a zone are read as UTC: on the wire a
// .NET DateTime loses its Kind, and the values the host sends that way
// (EnqueuedTimeUtc, ExpiresAtUtc) are UTC.
var timeLayouts = []string{
	time.RFC3339Nano,                // 2025-01-15T10:05:00.0214567Z, ...+00:00
	"2006-01-02T15:04:05.999999999", // DateTime without zone, with or without fraction
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05.999999999",
	"01/02/2006 15:04:05", // .NET invariant-culture DateTime.ToString()
}

// DecodeTime decodes a date sent in any of the host's forms:
// "2025-01-15T10:05:00" (.NET DateTime, UTC implied),
// "2025-01-15T10:05:00+00:00" (DateTimeOffset), full-precision RFC 3339
// ("2025-01-15T10:00:00.0123456+00:00", "...Z"), double- or single-encoded.
// Values without a zone are returned in UTC.
func DecodeTime(raw json.RawMessage) (time.Time, error) {
	s, err := scalarText(raw, "time")
	if err != nil {
		return time.Time{}, err
	}
	return parseTime(s)
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("decoding time: unrecognised format %.64q", s)
}

// DecodeJSON unmarshals a Data or Metadata value into v after peeling the
// host's string encoding (§2.2). Use it for objects and arrays that may arrive
// either as real JSON or as JSON text inside a string.
func DecodeJSON(raw json.RawMessage, v any) error {
	if isNull(raw) {
		return fmt.Errorf("decoding JSON: %w", ErrMissing)
	}
	if err := json.Unmarshal(unwrap(raw), v); err != nil {
		return fmt.Errorf("decoding JSON: %w", err)
	}
	return nil
}

// lookup finds key in m: exact match first, then a unique case-insensitive
// match (the host's binding-data dictionaries ignore case).
func lookup(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	var found json.RawMessage
	n := 0
	for k, v := range m {
		if strings.EqualFold(k, key) {
			found, n = v, n+1
		}
	}
	return found, n == 1
}
