package localhost

import (
	"strings"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		expr string
		loc  *time.Location
		from string
		want []string // consecutive occurrences
		warn bool
	}{
		{"every five minutes", "0 */5 * * * *", nil, "2025-01-15T10:02:30Z", []string{"2025-01-15T10:05:00Z", "2025-01-15T10:10:00Z"}, false},
		{"every second", "* * * * * *", nil, "2025-01-15T10:00:00Z", []string{"2025-01-15T10:00:01Z", "2025-01-15T10:00:02Z"}, false},
		{"day names", "0 30 9 * * Mon-Fri", nil, "2025-01-17T10:00:00Z", []string{"2025-01-20T09:30:00Z", "2025-01-21T09:30:00Z"}, false},
		{"month names", "0 0 0 1 Jan,Jul *", nil, "2025-02-01T00:00:00Z", []string{"2025-07-01T00:00:00Z", "2026-01-01T00:00:00Z"}, false},
		{"sunday is 0", "0 0 12 * * 0", nil, "2025-01-15T00:00:00Z", []string{"2025-01-19T12:00:00Z"}, false},
		// NCRONTAB requires both day fields (vixie cron would fire on every 13th and every Friday).
		{"friday the 13th", "0 0 0 13 * Fri", nil, "2025-01-01T00:00:00Z", []string{"2025-06-13T00:00:00Z", "2026-02-13T00:00:00Z"}, false},
		{"time zone", "0 0 9 * * *", ny, "2025-01-15T00:00:00Z", []string{"2025-01-15T14:00:00Z", "2025-01-16T14:00:00Z"}, false},
		{"TimeSpan", "00:00:10", nil, "2025-01-15T00:00:00Z", []string{"2025-01-15T00:00:10Z", "2025-01-15T00:00:20Z"}, false},
		{"descriptor accepted with a warning", "@hourly", nil, "2025-01-15T00:30:00Z", []string{"2025-01-15T01:00:00Z"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, warn, err := ParseSchedule(tt.expr, tt.loc)
			if err != nil {
				t.Fatal(err)
			}
			if (warn != "") != tt.warn {
				t.Errorf("warning = %q, want one: %v", warn, tt.warn)
			}
			at := utc(tt.from)
			for _, w := range tt.want {
				at = s.Next(at)
				if !at.Equal(utc(w)) {
					t.Fatalf("next = %s, want %s", at.UTC().Format(time.RFC3339), w)
				}
			}
		})
	}
}

func TestParseScheduleErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ expr, want string }{
		{"", "empty"},
		{"0 */5 * * *", "6 fields"},
		{"0 0 25 * * *", "parsing schedule"},
		{"0 0 0 * * Funday", "parsing schedule"},
		{"TZ=UTC 0 0 0 * * *", "WEBSITE_TIME_ZONE"},
		{"25:00:00", "TimeSpan"},
		{"00:00:00", "positive"},
	}
	for _, tt := range tests {
		_, _, err := ParseSchedule(tt.expr, time.UTC)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSchedule(%q) error = %v, want it to mention %q", tt.expr, err, tt.want)
		}
	}
}
