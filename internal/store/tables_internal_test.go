package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
)

func TestAsciiJSON(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`{"a":"plain"}`, `{"a":"plain"}`},
		{`{"a":"é€"}`, `{"a":"\u00e9\u20ac"}`},
		{`{"a":"𝄞"}`, `{"a":"\ud834\udd1e"}`},
		{`{"Zürich":"x"}`, `{"Z\u00fcrich":"x"}`},
		{"{\"a\":\"\xff\"}", `{"a":"\ufffd"}`},
	}
	for _, tc := range tests {
		got, changed := asciiJSON([]byte(tc.in))
		if string(got) != tc.want {
			t.Errorf("asciiJSON(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if changed != (tc.in != tc.want) {
			t.Errorf("asciiJSON(%q) changed = %v", tc.in, changed)
		}
		for _, c := range got {
			if c >= utf8.RuneSelf {
				t.Errorf("asciiJSON(%q) left a non-ASCII byte", tc.in)
			}
		}
		if utf8.ValidString(tc.in) {
			var a, b any
			if err := json.Unmarshal([]byte(tc.in), &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(got, &b); err != nil {
				t.Fatalf("asciiJSON(%q) is not JSON: %v", tc.in, err)
			}
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("asciiJSON(%q) decodes to %v, want %v", tc.in, b, a)
			}
		}
	}
}

func TestSplitUTF16(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("ab𝄞é", 1000) // 5 units per repetition
	for _, max := range []int{1, 2, 3, 7, 100, 5000, 10000} {
		parts := splitUTF16(s, max)
		if strings.Join(parts, "") != s {
			t.Fatalf("max %d: parts do not join back", max)
		}
		for i, p := range parts {
			if p == "" {
				t.Fatalf("max %d: empty part %d", max, i)
			}
			if !utf8.ValidString(p) {
				t.Fatalf("max %d: part %d splits a rune", max, i)
			}
			n := len(utf16.Encode([]rune(p)))
			if n > max && !(max == 1 && n == 2) { // a surrogate pair cannot be split
				t.Fatalf("max %d: part %d has %d units", max, i, n)
			}
		}
	}
	if got := splitUTF16("", 10); len(got) != 1 || got[0] != "" {
		t.Fatalf("splitUTF16(\"\") = %q", got)
	}
}

func TestTableEntityRoundTrip(t *testing.T) {
	t.Parallel()
	big := `"` + strings.Repeat("x€", 40000) + `"` // 80002 units: 3 parts
	for _, data := range []string{"", `{"a":1}`, big} {
		raw, err := toTableEntity(Entity{PartitionKey: "p", RowKey: "r", Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		var props map[string]any
		if err := json.Unmarshal(raw, &props); err != nil {
			t.Fatal(err)
		}
		for name, v := range props {
			if s, ok := v.(string); ok && len(utf16.Encode([]rune(s))) > dataChunkUnits {
				t.Fatalf("property %s has %d units", name, len(utf16.Encode([]rune(s))))
			}
		}
		if data == big {
			if props["DataParts"] != float64(3) {
				t.Fatalf("DataParts = %v, want 3", props["DataParts"])
			}
			if _, ok := props["Data"]; ok {
				t.Fatal("split document also has Data")
			}
		}
		// What the service answers: the properties plus metadata.
		props["odata.etag"] = `W/"datetime'2025-01-15T10%3A05%3A00.1234567Z'"`
		props["Timestamp"] = "2025-01-15T10:05:00.1234567Z"
		back, _ := json.Marshal(props)
		e, err := fromTableEntity(back, "")
		if err != nil {
			t.Fatal(err)
		}
		if string(e.Data) != data || e.PartitionKey != "p" || e.RowKey != "r" {
			t.Fatalf("round trip: %q/%q %.40q", e.PartitionKey, e.RowKey, e.Data)
		}
		if e.ETag != props["odata.etag"] {
			t.Fatalf("ETag = %q", e.ETag)
		}
		if want := time.Date(2025, 1, 15, 10, 5, 0, 123456700, time.UTC); !e.Timestamp.Equal(want) {
			t.Fatalf("Timestamp = %v", e.Timestamp)
		}
	}
}

func TestFromTableEntityRejectsBadParts(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{"DataParts":-1}`, `{"DataParts":"x"}`, `{"DataParts":100000}`, `{"Data":5}`, `not json`} {
		if _, err := fromTableEntity([]byte(raw), ""); err == nil {
			t.Errorf("fromTableEntity(%s) accepted", raw)
		}
	}
}

func TestTimeFromETag(t *testing.T) {
	t.Parallel()
	got := timeFromETag(`W/"datetime'2025-01-15T10%3A05%3A00.1234567Z'"`)
	if want := time.Date(2025, 1, 15, 10, 5, 0, 123456700, time.UTC); !got.Equal(want) {
		t.Fatalf("timeFromETag = %v, want %v", got, want)
	}
	if got := timeFromETag(`W/"1"`); time.Since(got) > time.Minute {
		t.Fatalf("fallback = %v, want now", got)
	}
}

func TestMapTablesErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   string
		status int
		want   error
	}{
		{"EntityAlreadyExists", http.StatusConflict, ErrExists},
		{"UpdateConditionNotSatisfied", http.StatusPreconditionFailed, ErrConflict},
		{"", http.StatusPreconditionFailed, ErrConflict},
		{"ResourceNotFound", http.StatusNotFound, ErrNotFound},
		{"TableNotFound", http.StatusNotFound, ErrNotFound},
		{"EntityTooLarge", http.StatusBadRequest, ErrTooLarge},
		{"PropertyValueTooLarge", http.StatusBadRequest, ErrTooLarge},
		{"TableBeingDeleted", http.StatusConflict, nil},
		{"ServerBusy", http.StatusServiceUnavailable, nil},
	}
	for _, tc := range tests {
		in := &azcore.ResponseError{ErrorCode: tc.code, StatusCode: tc.status}
		got := mapTablesErr(fmt.Errorf("wrapped: %w", in))
		for _, s := range []error{ErrExists, ErrConflict, ErrNotFound, ErrTooLarge} {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("%s %d: errors.Is(%v, %v) = %v", tc.code, tc.status, got, s, !(s == tc.want))
			}
		}
		if tc.want == nil {
			var re *azcore.ResponseError
			if !errors.As(got, &re) {
				t.Errorf("%s: unmapped error lost the ResponseError", tc.code)
			}
		}
	}
	plain := errors.New("dial tcp: refused")
	if got := mapTablesErr(plain); got != plain {
		t.Errorf("non-service error changed: %v", got)
	}
}
