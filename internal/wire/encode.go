package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// DateTime marks a time that the host holds as a .NET DateTime. EncodeValue
// writes it as the host does after its DateTime.Parse(value.ToString())
// round trip: seconds precision, no zone ("2025-01-15T10:05:00", §2.2 rule 2),
// clock time in UTC.
type DateTime time.Time

// DateTimeOffset marks a time that the host holds as a .NET DateTimeOffset:
// seconds precision with the offset ("2025-01-15T10:05:00+00:00", §2.2 rule
// 3). A plain time.Time passed to EncodeValue is encoded this way too.
type DateTimeOffset time.Time

const (
	layoutDateTime       = "2006-01-02T15:04:05"
	layoutDateTimeOffset = "2006-01-02T15:04:05-07:00"
	// Newtonsoft's ISO form: up to 7 fractional digits, trailing zeros trimmed.
	layoutNewtonsoftUTC   = "2006-01-02T15:04:05.9999999Z"
	layoutNewtonsoftLocal = "2006-01-02T15:04:05.9999999-07:00"
)

// EncodeValue encodes v the way the host's GetHttpScriptInvocationContextValue
// does (§2.2), for a Data or Metadata entry:
//
//   - []byte → base64 JSON string;
//   - DateTime → "2025-01-15T10:05:00" (UTC clock time, no zone);
//   - DateTimeOffset and time.Time → "2025-01-15T10:05:00+00:00";
//   - json.RawMessage holding an object, maps and structs → the JSON object;
//   - strings, numbers, booleans, arrays, slices and any other value whose
//     JSON is not an object → a JSON string holding the JSON text
//     ("hello" → "\"hello\"", 4 → "4").
//
// A nil value (nil interface, pointer, map or slice) returns (nil, nil): the
// host omits such keys, so callers must not add them.
func EncodeValue(v any) (json.RawMessage, error) {
	if isNilValue(v) {
		return nil, nil
	}
	switch t := v.(type) {
	case []byte:
		return marshalNoEscape(base64.StdEncoding.EncodeToString(t))
	case DateTime:
		return marshalNoEscape(time.Time(t).UTC().Format(layoutDateTime))
	case DateTimeOffset:
		return marshalNoEscape(time.Time(t).Truncate(time.Second).Format(layoutDateTimeOffset))
	case time.Time:
		return marshalNoEscape(t.Truncate(time.Second).Format(layoutDateTimeOffset))
	case json.RawMessage:
		b := bytes.TrimSpace(t)
		if !json.Valid(b) {
			return nil, fmt.Errorf("encoding value: invalid raw JSON")
		}
		if bytes.Equal(b, []byte("null")) {
			return nil, nil
		}
		if b[0] == '{' {
			return compactJSON(b)
		}
		return marshalNoEscape(string(b))
	}
	b, err := marshalNoEscape(v)
	if err != nil {
		return nil, fmt.Errorf("encoding value: %w", err)
	}
	if bytes.Equal(b, []byte("null")) {
		return nil, nil
	}
	if b[0] == '{' { // rule 4: JObject.FromObject succeeds only for objects
		return b, nil
	}
	return marshalNoEscape(string(b)) // rule 5: JSON text inside a string
}

func isNilValue(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// marshalNoEscape is json.Marshal without HTML escaping (Newtonsoft does
// not escape <, > and &) and without the trailing newline.
func marshalNoEscape(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return json.RawMessage(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

func compactJSON(b []byte) (json.RawMessage, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newtonsoftTime formats t as Newtonsoft serialises a DateTime inside an
// object: full precision; "Z" for UTC kind (sys.UtcNow), the offset for
// local kind (TimerInfo dates; on Azure "+00:00").
func newtonsoftTime(t time.Time, utcKind bool) string {
	if utcKind {
		return t.UTC().Format(layoutNewtonsoftUTC)
	}
	return t.Format(layoutNewtonsoftLocal)
}
