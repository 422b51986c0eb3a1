package ingestalert

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const m = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"
	tests := []struct {
		name    string
		body    string
		want    int
		wantErr string
	}{
		{name: "connector trigger object", body: `{"id":"da638765432109876543_-1029384756","machineId":"` + m + `"}`, want: 1},
		{name: "array with a duplicate", body: `[{"id":"da1_1"},{"id":"da1_2","machineId":"` + m + `"},{"id":"da1_1"}]`, want: 2},
		{name: "extra fields from a flow are tolerated", body: `{"id":"da1_1","severity":"High"}`, want: 1},
		{name: "empty body", body: ``, wantErr: "empty body"},
		{name: "empty array", body: `[]`, wantErr: "empty array"},
		{name: "not JSON", body: `id=1`, wantErr: "decoding"},
		{name: "missing id", body: `{"machineId":"` + m + `"}`, wantErr: `no "id"`},
		{name: "path traversal id", body: `{"id":"../machines/x/isolate"}`, wantErr: "invalid alert id"},
		{name: "bad machine id", body: `{"id":"da1","machineId":"not-a-machine"}`, wantErr: "invalid machine id"},
		{name: "one bad item refuses all", body: `[{"id":"da1"},{"id":"a b"}]`, wantErr: "item 1"},
		{name: "embedded alert refused over HTTP", body: `{"id":"da1","alert":{"id":"da1"}}`, wantErr: "only accepted from hunts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("got %d items, err %v; want %d", len(got), err, tc.want)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	body := "[" + strings.Repeat(`{"id":"da1"},`, MaxItems) + `{"id":"da2"}]`
	if _, err := Parse([]byte(body)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("err = %v, want a limit error", err)
	}
}
