package sim

import (
	"strings"
	"testing"
	"time"
)

func TestKQLSubset(t *testing.T) {
	now := testStart
	rows := []map[string]any{
		{"Timestamp": now.Add(-time.Hour), "DeviceName": "a.corp.example.com", "FileName": "procdump64.exe", "ProcessCommandLine": "procdump64.exe -ma lsass.exe out.dmp", "N": int64(3)},
		{"Timestamp": now.Add(-2 * time.Hour), "DeviceName": "b", "FileName": "cmd.exe", "ProcessCommandLine": "cmd /c whoami", "N": int64(1)},
		{"Timestamp": now.Add(-3 * 24 * time.Hour), "DeviceName": "c.corp", "FileName": "NTDSUTIL.exe", "ProcessCommandLine": `ntdsutil "ifm" "create full c:\temp\x"`, "N": int64(7)},
		{"Timestamp": now.Add(-30 * time.Minute).Format(time.RFC3339Nano), "DeviceName": "d", "FileName": "lsass_helper.exe", "ProcessCommandLine": "helper lsassy", "N": int64(2)},
	}
	tables := map[string][]map[string]any{"T": rows}
	tests := []struct {
		q       string
		want    int
		check   func(t *testing.T, tab *kqlTable)
		wantErr string
	}{
		{q: "T", want: 4},
		{q: "T | where FileName == 'cmd.exe'", want: 1},
		{q: "T | where FileName == 'CMD.EXE'", want: 0},
		{q: "T | where FileName =~ 'CMD.EXE'", want: 1},
		{q: "T | where FileName !~ 'cmd.exe'", want: 3},
		{q: `T | where ProcessCommandLine has "lsass"`, want: 1},       // not "lsassy"
		{q: `T | where ProcessCommandLine contains "lsass"`, want: 2},  // substring
		{q: `T | where ProcessCommandLine !contains "lsass"`, want: 2}, // negation
		{q: `T | where ProcessCommandLine has "lsass.exe"`, want: 1},   // multi-term phrase
		{q: `T | where FileName has_any ("procdump.exe", "procdump64.exe")`, want: 1},
		{q: `T | where FileName in~ ("ntdsutil.exe", "x")`, want: 1},
		{q: `T | where FileName in ("ntdsutil.exe", "x")`, want: 0},
		{q: `T | where FileName !in ("cmd.exe")`, want: 3},
		{q: `T | where FileName startswith "proc" or FileName endswith ".EXE"`, want: 4},
		{q: `T | where Timestamp > ago(90m)`, want: 2}, // includes the string-typed timestamp
		{q: `T | where Timestamp between (ago(4d) .. ago(1d))`, want: 1},
		{q: `T | where N >= 2 and N < 7`, want: 2},
		{q: `T | where not(N == 1)`, want: 3},
		{q: `T | where isnotempty(DeviceName) and strlen(DeviceName) > 1`, want: 2},
		{q: `T | where FileName matches regex @"^[a-z]+\.exe$"`, want: 1},
		{q: "let names = dynamic(['cmd.exe', 'NTDSUTIL.exe']);\nT | where FileName in (names)", want: 2},
		{q: "let since = ago(2h);\nT // comment | take 0\n| where Timestamp >= since", want: 3},
		{q: "T | take 2", want: 2},
		{q: "T | top 1 by N", want: 1, check: func(t *testing.T, tab *kqlTable) {
			if tab.rows[0]["N"].(int64) != 7 {
				t.Errorf("top by N: %v", tab.rows[0])
			}
		}},
		{q: "T | sort by N asc | project FileName, Count = N", want: 4, check: func(t *testing.T, tab *kqlTable) {
			if strings.Join(tab.cols, ",") != "FileName,Count" || tab.rows[0]["Count"].(int64) != 1 {
				t.Errorf("cols %v first %v", tab.cols, tab.rows[0])
			}
		}},
		{q: "T | extend Host = iff(DeviceName has '.', substring(DeviceName, 0, indexof(DeviceName, '.')), DeviceName) | project-away ProcessCommandLine", want: 4, check: func(t *testing.T, tab *kqlTable) {
			if tab.cols[len(tab.cols)-1] != "Host" || tab.rows[0]["Host"] != "a" || tab.rows[1]["Host"] != "b" {
				t.Errorf("extend: %v %v", tab.cols, tab.rows[0])
			}
			if _, ok := tab.rows[0]["ProcessCommandLine"]; ok {
				t.Error("project-away kept the column")
			}
		}},
		{q: "T | project-rename Image = FileName | distinct Image", want: 4},
		{q: "T | count", want: 1, check: func(t *testing.T, tab *kqlTable) {
			if tab.rows[0]["Count"].(int64) != 4 {
				t.Errorf("count = %v", tab.rows[0]["Count"])
			}
		}},
		{q: "T | where tolower(FileName) == 'ntdsutil.exe' | extend S = strcat(DeviceName, '/', FileName)", want: 1},
		{q: "Nope | take 1", wantErr: "Failed to resolve table"},
		{q: "T | join (T) on DeviceName", wantErr: "not supported"},
		{q: "T | where foo(FileName)", wantErr: "not supported"},
		{q: "T | where FileName == 'x", wantErr: "unterminated"},
		{q: "T | where", wantErr: "parsed"},
		{q: "T | take x", wantErr: "row count"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			tab, err := runKQL(tt.q, now, tables, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.rows) != tt.want {
				t.Errorf("%d rows, want %d", len(tab.rows), tt.want)
			}
			if tt.check != nil {
				tt.check(t, tab)
			}
		})
	}
}

func TestKQLHas(t *testing.T) {
	tests := []struct {
		hay, needle string
		want        bool
	}{
		{"procdump64.exe -ma lsass.exe", "lsass", true},
		{"procdump64.exe -ma lsass.exe", "lsass.exe", true},
		{"helper lsassy", "lsass", false},
		{"create full c:\\temp", "fu", false},
		{"create full c:\\temp", "full", true},
		{"a.b", ".", true},
		{"LSASS", "lsass", true},
	}
	for _, tt := range tests {
		if got := kqlHas(tt.hay, tt.needle, false); got != tt.want {
			t.Errorf("%q has %q = %v, want %v", tt.hay, tt.needle, got, tt.want)
		}
	}
}

func FuzzKQL(f *testing.F) {
	f.Add("T | where A has 'x' and B in~ ('a') | project A, C = strcat(A, 'b') | top 3 by A")
	f.Add("let x = dynamic([1,2]); T | where N in (x)")
	f.Fuzz(func(t *testing.T, q string) {
		_, _ = runKQL(q, testStart, map[string][]map[string]any{"T": {{"A": "x", "N": int64(1)}}}, nil)
	})
}

func TestParseISODuration(t *testing.T) {
	tests := map[string]time.Duration{"P30D": 30 * 24 * time.Hour, "PT12H": 12 * time.Hour, "P1DT6H30M": 30*time.Hour + 30*time.Minute, "PT90S": 90 * time.Second}
	for in, want := range tests {
		if got, ok := parseISODuration(in); !ok || got != want {
			t.Errorf("%s = %v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "P", "PT", "30D", "P-1D", "1 day"} {
		if _, ok := parseISODuration(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Regression: deeply nested input must fail cleanly, not exhaust the stack.
func TestNestingLimits(t *testing.T) {
	if _, err := runKQL("T | where "+strings.Repeat("(", 100000)+"1", testStart, map[string][]map[string]any{"T": nil}, nil); err == nil {
		t.Error("KQL: no error for deep nesting")
	}
	if _, err := runKQL("T | where "+strings.Repeat("-", 100000)+"1", testStart, map[string][]map[string]any{"T": nil}, nil); err == nil {
		t.Error("KQL: no error for deep unary minus")
	}
	if _, err := parseFilter(strings.Repeat("not ", 100000)+"id eq 'x'", machineSchema); err == nil {
		t.Error("OData: no error for deep not")
	}
	if _, err := parseFilter(strings.Repeat("(", 100000)+"id eq 'x'", machineSchema); err == nil {
		t.Error("OData: no error for deep parentheses")
	}
}

func TestKQLSummarize(t *testing.T) {
	now := testStart
	rows := []map[string]any{
		{"Timestamp": now.Add(-10 * time.Minute), "DeviceId": "a", "FileName": "x.exe", "N": int64(1)},
		{"Timestamp": now.Add(-20 * time.Minute), "DeviceId": "a", "FileName": "y.exe", "N": int64(2)},
		{"Timestamp": now.Add(-70 * time.Minute), "DeviceId": "b", "FileName": "x.exe", "N": int64(5)},
	}
	tables := map[string][]map[string]any{"T": rows}
	tests := []struct {
		q    string
		cols string
		want []string // rendered rows, in group order
	}{
		{"T | summarize count() by DeviceId", "DeviceId,count_", []string{"a|2", "b|1"}},
		{"T | summarize Hits = count(), Files = dcount(FileName), Last = max(Timestamp) by DeviceId | where Hits > 1", "DeviceId,Hits,Files,Last",
			[]string{"a|2|2|" + now.Add(-10*time.Minute).Format(time.RFC3339Nano)}},
		{"T | summarize sum(N), min(N), countif(FileName == 'x.exe')", "sum_N,min_N,countif_", []string{"8|1|2"}},
		{"T | summarize make_set(FileName) by DeviceId | project DeviceId", "DeviceId", []string{"a", "b"}},
		{"T | summarize count() by bin(Timestamp, 1h)", "Timestamp,count_", []string{
			time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC).Format(time.RFC3339Nano) + "|2",
			time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC).Format(time.RFC3339Nano) + "|1"}},
		{"T | where N > 100 | summarize count()", "count_", []string{"0"}},
		{"T | summarize by DeviceId", "DeviceId", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			tab, err := runKQL(tt.q, now, tables, nil)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(tab.cols, ",") != tt.cols {
				t.Errorf("cols %v, want %s", tab.cols, tt.cols)
			}
			var got []string
			for _, r := range tab.rows {
				var parts []string
				for _, c := range tab.cols {
					parts = append(parts, kqlString(r[c]))
				}
				got = append(got, strings.Join(parts, "|"))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	if _, err := runKQL("T | summarize arg_max(Timestamp, *) by DeviceId", now, tables, nil); err == nil || !strings.Contains(err.Error(), "Tenant.Hunt") {
		t.Errorf("arg_max: %v", err)
	}
}
