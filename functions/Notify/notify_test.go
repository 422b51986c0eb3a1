package notifyfn

import (
	"io"
	"log/slog"
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name       string
		configured []string
		in, want   []string
	}{
		{name: "email goes to the outbox when no mail channel is set up", configured: []string{"outbox"}, in: []string{"email"}, want: []string{"outbox"}},
		{name: "email goes to every mail channel", configured: []string{"outbox", "smtp", "graphmail", "teams"}, in: []string{"email", "teams"}, want: []string{"smtp", "graphmail", "teams"}},
		{name: "unconfigured channel falls back to defaults", configured: []string{"outbox"}, in: []string{"teams"}, want: nil},
		{name: "duplicates folded", configured: []string{"smtp"}, in: []string{"smtp", "email"}, want: []string{"smtp"}},
		{name: "none named means defaults", configured: []string{"outbox"}, in: nil, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &Function{Configured: tc.configured, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if got := f.Resolve(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Resolve(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
