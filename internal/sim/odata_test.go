package sim

import (
	"testing"
)

func TestParseFilter(t *testing.T) {
	ent := map[string]any{
		"id":                "a1",
		"severity":          "High",
		"status":            "New",
		"assignedTo":        nil,
		"alertCreationTime": "2025-03-01T09:00:00.1234567Z",
		"incidentId":        jsonNumber("42"),
		"machineTags":       []any{"vip", "protected"},
		"detectionSource":   "WindowsDefenderAv",
	}
	sch := newSchema("t",
		field{JSON: "id"},
		field{JSON: "severity", Kind: kEnum, Enum: alertSeverities},
		field{JSON: "status", Kind: kEnum, Enum: []string{"New", "Resolved"}},
		field{JSON: "assignedTo"},
		field{JSON: "alertCreationTime", Kind: kDateTime},
		field{JSON: "incidentId", Kind: kInt},
		field{JSON: "machineTags", Kind: kStringList},
		field{JSON: "detectionSource"},
	)
	tests := []struct {
		filter  string
		want    bool
		wantErr bool
	}{
		{"severity eq 'High'", true, false},
		{"Severity eq 'High'", true, false}, // property names are case-insensitive
		{"severity ne 'High'", false, false},
		{"alertCreationTime gt 2025-03-01T09:00:00Z", true, false},
		{"alertCreationTime gt 2025-03-01T09:00:00.2Z", false, false},
		{"alertCreationTime ge 2025-03-01Z", true, false},
		{"alertCreationTime lt 2025-03-01T10:00:00+01:00", false, false},
		{"alertCreationTime le 2025-03-01T10:00:00+00:30", true, false},
		{"incidentId eq 42 and status eq 'New'", true, false},
		{"incidentId gt 42 or status eq 'Resolved'", false, false},
		{"not (status eq 'Resolved')", true, false},
		{"assignedTo eq null", true, false},
		{"assignedTo ne null", false, false},
		{"machineTags/any(t: t eq 'protected')", true, false},
		{"machineTags/any(x: x eq 'other')", false, false},
		{"machineTags/all(t: t ne 'other')", true, false},
		{"machineTags/any()", true, false},
		{"severity in ('Low','High')", true, false},
		{"startswith(detectionSource,'WindowsDefender')", true, false},
		{"contains(detectionSource,'Av')", true, false},
		{"endswith(id,'2')", false, false},
		{"id eq 'it''s'", false, false},
		{"((severity eq 'High'))", true, false},
		{"severity eq 'high'", false, true},
		{"alertCreationTime gt '2025-03-01T09:00:00Z'", false, true},
		{"incidentId eq '42'", false, true},
		{"title eq 'x'", false, true},
		{"severity eq", false, true},
		{"severity eq 'High' and", false, true},
		{"severity 'High'", false, true},
		{"severity eq 'High')", false, true},
		{"machineTags eq 'vip'", false, true},
		{"status/any(t: t eq 'x')", false, true},
		{"substringof('a', id)", false, true},
		{"alertCreationTime gt null", false, true},
		{"severity eq 'High' # comment", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			e, err := parseFilter(tt.filter, sch)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if err.Status != 400 || err.Code != "ODataError" {
					t.Errorf("error %d %s", err.Status, err.Code)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if got := e.eval(ent, nil); got != tt.want {
				t.Errorf("eval = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSkipTokenRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 10, 2000, 123456} {
		got, err := decodeSkipToken(encodeSkipToken(n))
		if err != nil || got != n {
			t.Errorf("%d -> %d, %v", n, got, err)
		}
	}
	for _, bad := range []string{"", "abc", encodeSkipToken(1)[:3], "c2ltLW9mZnNldDotMQ"} {
		if _, err := decodeSkipToken(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"severity eq 'High'", "machineTags/any(t: t eq 'x') and (a eq 1 or not b ne null)", "alertCreationTime ge 2025-01-01T00:00:00Z", "'", "((((("} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseFilter(s, machineSchema)
		if err == nil {
			_ = e.eval(map[string]any{"machineTags": []any{"x"}}, nil)
		}
	})
}
