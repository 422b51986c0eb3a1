package wire

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// The §2.2 table: what the host puts on the wire and what a decoder must
// return, plus the single-encoded forms docs examples and fixtures use.
func TestDecodeString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{"double-encoded string", `"\"hello\""`, "hello", false},
		{"double-encoded JSON body", `"\"{\\\"a\\\":1}\""`, `{"a":1}`, false},
		{"int as text", `"4"`, "4", false},
		{"bool as text", `"true"`, "true", false},
		{"single-encoded string", `"hello"`, "hello", false},
		{"single-encoded JSON text", `"{\"a\":1}"`, `{"a":1}`, false},
		{"single-encoded text null", `"null"`, "null", false},
		{"bare number", `17`, "17", false},
		{"bare bool", `false`, "false", false},
		{"null", `null`, "", false},
		{"double-encoded guid", `"\"8b6f4e2a-1111-2222-3333-444455556666\""`, "8b6f4e2a-1111-2222-3333-444455556666", false},
		{"double-encoded numeric string", `"\"42\""`, "42", false},
		{"empty double-encoded", `"\"\""`, "", false},
		{"surrounding space", "  \"\\\"x\\\"\"\n", "x", false},
		{"object", `{"k":"v"}`, "", true},
		{"array", `["m1"]`, "", true},
		{"broken", `"\"x`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeString(json.RawMessage(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeString(%s) error = %v, wantErr %v", tt.raw, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("DecodeString(%s) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
	if _, err := DecodeString(nil); !errors.Is(err, ErrMissing) {
		t.Errorf("DecodeString(nil) error = %v, want ErrMissing", err)
	}
}

func TestDecodeInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		want    int
		wantErr bool
	}{
		{`"4"`, 4, false},     // host form (DeliveryCount)
		{`4`, 4, false},       // docs example form
		{`"\"4\""`, 4, false}, // a string that holds a number
		{`" 7 "`, 7, false},
		{`"-1"`, -1, false},
		{`"4.5"`, 0, true},
		{`"four"`, 0, true},
		{`null`, 0, true},
		{`{}`, 0, true},
		{`"99999999999999999999"`, 0, true},
	}
	for _, tt := range tests {
		got, err := DecodeInt(json.RawMessage(tt.raw))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("DecodeInt(%s) = %d, %v; want %d, err %v", tt.raw, got, err, tt.want, tt.wantErr)
		}
	}
	n, err := DecodeInt64(json.RawMessage(`"9223372036854775807"`))
	if err != nil || n != 9223372036854775807 {
		t.Errorf("DecodeInt64(max) = %d, %v", n, err)
	}
}

func TestDecodeBool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		want    bool
		wantErr bool
	}{
		{`"true"`, true, false}, {`true`, true, false}, {`"True"`, true, false},
		{`"False"`, false, false}, {`false`, false, false}, {`"yes"`, false, true}, {`null`, false, true},
	}
	for _, tt := range tests {
		got, err := DecodeBool(json.RawMessage(tt.raw))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("DecodeBool(%s) = %v, %v; want %v, err %v", tt.raw, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDecodeTime(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name    string
		raw     string
		want    time.Time
		wantErr bool
	}{
		{"DateTime seconds, UTC implied", `"2025-01-15T10:05:00"`, utc("2025-01-15T10:05:00Z"), false},
		{"DateTimeOffset seconds", `"2025-01-15T10:05:00+00:00"`, utc("2025-01-15T10:05:00Z"), false},
		{"full precision offset", `"2025-01-15T10:00:00.0123456+00:00"`, utc("2025-01-15T10:00:00.0123456Z"), false},
		{"full precision Z", `"2025-01-15T10:05:00.0214567Z"`, utc("2025-01-15T10:05:00.0214567Z"), false},
		{"non-UTC offset", `"2025-01-15T12:05:00+02:00"`, utc("2025-01-15T10:05:00Z"), false},
		{"double-encoded", `"\"2025-01-15T10:05:00\""`, utc("2025-01-15T10:05:00Z"), false},
		{"DateTime with fraction", `"2025-01-15T10:05:00.5"`, utc("2025-01-15T10:05:00.5Z"), false},
		{".NET invariant ToString", `"01/15/2025 10:05:00"`, utc("2025-01-15T10:05:00Z"), false},
		{"garbage", `"yesterday"`, time.Time{}, true},
		{"number", `1736935500`, time.Time{}, true},
		{"null", `null`, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeTime(json.RawMessage(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeTime(%s) error = %v, wantErr %v", tt.raw, err, tt.wantErr)
			}
			if !got.Equal(tt.want) {
				t.Errorf("DecodeTime(%s) = %v, want %v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want []string
	}{
		{`"[\"m1\",\"m2\"]"`, []string{"m1", "m2"}}, // batch: JSON array in text
		{`["m1","m2"]`, []string{"m1", "m2"}},
	}
	for _, tt := range tests {
		var got []string
		if err := DecodeJSON(json.RawMessage(tt.raw), &got); err != nil {
			t.Fatalf("DecodeJSON(%s): %v", tt.raw, err)
		}
		if len(got) != 2 || got[0] != tt.want[0] || got[1] != tt.want[1] {
			t.Errorf("DecodeJSON(%s) = %v", tt.raw, got)
		}
	}
	var m map[string]string
	if err := DecodeJSON(json.RawMessage(`{"k":"v"}`), &m); err != nil || m["k"] != "v" {
		t.Errorf("DecodeJSON(object) = %v, %v", m, err)
	}
	if err := DecodeJSON(nil, &m); !errors.Is(err, ErrMissing) {
		t.Errorf("DecodeJSON(nil) = %v, want ErrMissing", err)
	}
}
