package notifyfn

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/wire"
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

type recordingDeliverer struct{ got []pipeline.Notification }

func (r *recordingDeliverer) Deliver(_ context.Context, n pipeline.Notification) (notify.Report, error) {
	r.got = append(r.got, n)
	return notify.Report{}, nil
}

// Pins: a notification with recipients (the approvers) goes to mail
// channels only; with no mail channel it is dead-lettered, never widened.
func TestRecipientsGoToMailChannelsOnly(t *testing.T) {
	body := func(n pipeline.Notification) wire.ServiceBusMessage {
		b, _ := json.Marshal(n)
		return wire.ServiceBusMessage{Body: b, MessageID: n.ID}
	}
	n := pipeline.Notification{ID: "n-approval-iso-1", Kind: pipeline.NotifyApproval, Channels: []string{"email", "teams"},
		Recipients: []string{"approver@example.com"}}
	d := &recordingDeliverer{}
	f := &Function{Deliverer: d, Configured: []string{"smtp", "teams", "webhook"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := f.Handle(context.Background(), nil, body(n)); err != nil {
		t.Fatal(err)
	}
	if len(d.got) != 1 || !reflect.DeepEqual(d.got[0].Channels, []string{"smtp"}) {
		t.Fatalf("delivered to %+v, want smtp only", d.got)
	}
	f.Configured = []string{"teams", "webhook"}
	if err := f.Handle(context.Background(), nil, body(n)); err == nil || !fn.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error (no mail channel)", err)
	}
}
