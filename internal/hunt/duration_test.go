package hunt

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "1h", want: time.Hour},
		{in: "5m", want: 5 * time.Minute},
		{in: "1d", want: day},
		{in: "14d", want: 14 * day},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "90s", want: 90 * time.Second},
		{in: "1.5h", want: 90 * time.Minute},
		{in: " 2H ", want: 2 * time.Hour},
		{in: "PT1H", want: time.Hour},
		{in: "P1D", want: day},
		{in: "P1DT12H", want: 36 * time.Hour},
		{in: "PT5M", want: 5 * time.Minute},
		{in: "PT30S", want: 30 * time.Second},
		{in: "P2W", want: 14 * day},
		{in: "pt15m", want: 15 * time.Minute},
		{in: "", wantErr: true},
		{in: "1", wantErr: true},
		{in: "h", wantErr: true},
		{in: "1y", wantErr: true},
		{in: "P1M", wantErr: true}, // months have no fixed length
		{in: "P1Y", wantErr: true},
		{in: "PT", wantErr: true},
		{in: "P", wantErr: true},
		{in: "P1H", wantErr: true}, // H needs the T
		{in: "0m", wantErr: true},
		{in: "PT0S", wantErr: true},
		{in: "-1h", wantErr: true},
		{in: "1 hour", wantErr: true},
		{in: "99999999999999999d", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestISODurationAndKQLTimespan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d        time.Duration
		iso, kql string
	}{
		{24 * time.Hour, "P1D", "1d"},
		{time.Hour, "PT1H", "1h"},
		{36 * time.Hour, "P1DT12H", "36h"},
		{90 * time.Minute, "PT1H30M", "90m"},
		{30 * time.Second, "PT30S", "30s"},
		{61 * time.Second, "PT1M1S", "61s"},
		{14 * 24 * time.Hour, "P14D", "14d"},
	}
	if got := KQLTimespan(1500 * time.Millisecond); got != "1500ms" {
		t.Errorf("KQLTimespan(1.5s) = %q", got)
	}
	if got := ISODuration(1500 * time.Millisecond); got != "PT2S" {
		t.Errorf("ISODuration(1.5s) = %q, want whole seconds PT2S", got)
	}
	for _, tc := range tests {
		if got := ISODuration(tc.d); got != tc.iso {
			t.Errorf("ISODuration(%v) = %q, want %q", tc.d, got, tc.iso)
		}
		if got := KQLTimespan(tc.d); got != tc.kql {
			t.Errorf("KQLTimespan(%v) = %q, want %q", tc.d, got, tc.kql)
		}
		// ISO output reads back to the same duration.
		back, err := ParseDuration(ISODuration(tc.d))
		if err != nil || back != tc.d {
			t.Errorf("ParseDuration(ISODuration(%v)) = %v, %v", tc.d, back, err)
		}
	}
}
