package hunt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestParseResultsPublicShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file      string
		columns   []string
		rows      int
		firstFile string
		stats     *Stats
	}{
		{file: "msdocs_mde_advancedqueries-run_response.json",
			columns: []string{"Timestamp", "FileName", "InitiatingProcessFileName", "DeviceId"}, rows: 2, firstFile: "csc.exe"},
		{file: "msdocs_xdr_advancedhunting-run_response.json",
			columns: []string{"Timestamp", "FileName", "InitiatingProcessFileName"}, rows: 2, firstFile: "conhost.exe",
			stats: &Stats{ExecutionTime: 4621215 * time.Microsecond, CPU: 19*time.Second + 62500*time.Microsecond}},
		{file: "graphdocs_runHuntingQuery_response.json",
			columns: []string{"Timestamp", "FileName", "InitiatingProcessFileName"}, rows: 2, firstFile: "cmd.exe"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(publicFile(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			res, err := ParseResults(raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.ColumnNames(); !reflect.DeepEqual(got, tc.columns) {
				t.Errorf("columns = %q, want %q", got, tc.columns)
			}
			if res.Columns[0].Type != "DateTime" || res.Columns[1].Type != "String" {
				t.Errorf("types = %+v", res.Columns)
			}
			if len(res.Rows) != tc.rows || res.Rows[0]["FileName"] != tc.firstFile {
				t.Errorf("rows = %v", res.Rows)
			}
			if !reflect.DeepEqual(res.Stats, tc.stats) {
				t.Errorf("stats = %+v, want %+v", res.Stats, tc.stats)
			}
		})
	}
}

func TestParseResultsFixtures(t *testing.T) {
	t.Parallel()
	read := func(t *testing.T, name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "responses", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("mde keeps big integers", func(t *testing.T) {
		res, err := ParseResults(read(t, "mde_lsass.json"))
		if err != nil {
			t.Fatal(err)
		}
		// 2^53+1 loses precision as float64; json.Number keeps it.
		if got := res.Rows[0]["ReportId"]; got != json.Number("9007199254740993") {
			t.Errorf("ReportId = %#v", got)
		}
		if res.Stats != nil {
			t.Errorf("stats = %+v, want nil", res.Stats)
		}
	})
	t.Run("xdr stats with days and dynamic column", func(t *testing.T) {
		res, err := ParseResults(read(t, "xdr_stats.json"))
		if err != nil {
			t.Fatal(err)
		}
		want := &Stats{ExecutionTime: 840 * time.Millisecond, CPU: 24*time.Hour + 2*time.Minute + 3500*time.Millisecond}
		if !reflect.DeepEqual(res.Stats, want) {
			t.Errorf("stats = %+v, want %+v", res.Stats, want)
		}
		if res.Stats.Cost() != want.CPU {
			t.Errorf("cost = %v", res.Stats.Cost())
		}
		if _, ok := res.Rows[0]["AdditionalFields"].(map[string]any); !ok {
			t.Errorf("dynamic column = %#v", res.Rows[0]["AdditionalFields"])
		}
	})
	t.Run("graph empty", func(t *testing.T) {
		res, err := ParseResults(read(t, "graph_empty.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 0 || len(res.Columns) != 2 || res.Columns[1].Name != "DeviceId" {
			t.Errorf("res = %+v", res)
		}
	})
	t.Run("no schema: columns from row keys", func(t *testing.T) {
		res, err := ParseResults(read(t, "graph_no_schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.ColumnNames(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
			t.Errorf("columns = %q", got)
		}
	})
}

func TestParseResultsErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"not json":          `<html>`,
		"error body":        `{"error":{"code":"429","message":"API calls quota exceeded! maximum allowed 45 per 00:01:00"}}`,
		"array":             `[1,2]`,
		"row not object":    `{"Results":[1]}`,
		"nameless column":   `{"Schema":[{"Type":"String"}],"Results":[]}`,
		"bad cpu":           `{"Stats":{"resource_usage":{"cpu":{"total cpu":"soon"}}},"Results":[]}`,
		"bad exec time":     `{"Stats":{"ExecutionTime":"x"},"Results":[]}`,
		"negative exec":     `{"Stats":{"ExecutionTime":-1},"Results":[]}`,
		"results not array": `{"Results":{"a":1}}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			if res, err := ParseResults([]byte(body)); err == nil {
				t.Errorf("ParseResults(%s) = %+v, want an error", body, res)
			}
		})
	}
}

func TestParseTimeSpan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"00:00:19.0625000", 19*time.Second + 62500*time.Microsecond, true},
		{"00:00:00", 0, true},
		{"01:02:03", time.Hour + 2*time.Minute + 3*time.Second, true},
		{"2.00:00:01", 48*time.Hour + time.Second, true},
		{"-00:00:01", -time.Second, true},
		{"1:2", 0, false},
		{"24:00:00", 0, false},
		{"00:60:00", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseTimeSpan(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTimeSpan(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
