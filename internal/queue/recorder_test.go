package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestRecorder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := NewRecorder()
	body := []byte(`{"id":"da1"}`)
	if err := r.Send(ctx, Alerts, Message{MessageID: "alert-da1", Body: body, Properties: map[string]any{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	body[2] = 'X' // the caller reuses its buffer
	if err := r.Send(ctx, Isolations, Message{MessageID: "iso-da1"}, Message{MessageID: "iso-da2"}); err != nil {
		t.Fatal(err)
	}
	// Redelivered EnrichAlert sends the same request again: dropped.
	if err := r.Send(ctx, Isolations, Message{MessageID: "iso-da1", Body: []byte("second")}); err != nil {
		t.Fatal(err)
	}
	// The same MessageID on another queue is another message.
	if err := r.Send(ctx, Notifications, Message{MessageID: "iso-da1"}); err != nil {
		t.Fatal(err)
	}
	if got := r.Messages(Alerts); len(got) != 1 || string(got[0].Body) != `{"id":"da1"}` {
		t.Fatalf("alerts = %+v", got)
	}
	iso := r.Messages(Isolations)
	if len(iso) != 2 || iso[0].MessageID != "iso-da1" || iso[1].MessageID != "iso-da2" || len(iso[0].Body) != 0 {
		t.Fatalf("isolations = %+v", iso)
	}
	if r.Duplicates(Isolations) != 1 || r.Duplicates(Alerts) != 0 {
		t.Fatalf("duplicates isolations=%d alerts=%d", r.Duplicates(Isolations), r.Duplicates(Alerts))
	}
	if fmt.Sprint(r.Queues()) != "[alerts isolations notifications]" {
		t.Fatalf("queues = %v", r.Queues())
	}
	got := r.Messages(Alerts)
	got[0].Body[0], got[0].Properties["k"] = 'Z', "changed"
	if again := r.Messages(Alerts); again[0].Body[0] != '{' || again[0].Properties["k"] != "v" {
		t.Fatal("Messages returns the recorder's own storage")
	}
	if r.Calls() != 4 {
		t.Fatalf("calls = %d", r.Calls())
	}
	r.Reset()
	if len(r.Queues()) != 0 || r.Calls() != 0 {
		t.Fatal("Reset kept state")
	}
	if err := r.Send(ctx, Isolations, Message{MessageID: "iso-da1"}); err != nil || len(r.Messages(Isolations)) != 1 {
		t.Fatalf("after Reset the old MessageID is still seen: %v", err)
	}
}

func TestRecorderValidates(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	for _, tc := range []struct {
		queue string
		msg   Message
		want  string
	}{
		{"", Message{MessageID: "m"}, "empty queue"},
		{Alerts, Message{}, "no MessageID"},
		{Alerts, Message{MessageID: "m", Properties: map[string]any{"x": []int{1}}}, "unsupported type"},
	} {
		if err := r.Send(t.Context(), tc.queue, tc.msg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Send(%q, %+v) = %v, want %q", tc.queue, tc.msg, err, tc.want)
		}
	}
	// A batch with one invalid message records nothing.
	if err := r.Send(t.Context(), Alerts, Message{MessageID: "ok"}, Message{}); err == nil {
		t.Fatal("invalid batch accepted")
	}
	if len(r.Messages(Alerts)) != 0 {
		t.Fatal("part of an invalid batch was recorded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.Send(ctx, Alerts, Message{MessageID: "m"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
}

func TestRecorderFailureInjection(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := NewRecorder()
	unavailable := errors.New("service bus unavailable")
	r.FailNext(2, unavailable)
	for i := range 2 {
		if err := r.Send(ctx, Alerts, Message{MessageID: "a"}, Message{MessageID: "b"}); !errors.Is(err, unavailable) {
			t.Fatalf("call %d: %v, want injected failure", i, err)
		}
	}
	if len(r.Messages(Alerts)) != 0 {
		t.Fatal("a failed batch was recorded")
	}
	if err := r.Send(ctx, Alerts, Message{MessageID: "a"}, Message{MessageID: "b"}); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if len(r.Messages(Alerts)) != 2 || r.Duplicates(Alerts) != 0 {
		t.Fatal("the retried batch was not recorded whole, or failed sends were remembered for dedup")
	}
	r.FailWith(func(q string, _ []Message) error {
		if q == Notifications {
			return unavailable
		}
		return nil
	})
	if err := r.Send(ctx, Notifications, Message{MessageID: "n"}); !errors.Is(err, unavailable) {
		t.Fatal(err)
	}
	if err := r.Send(ctx, Isolations, Message{MessageID: "i"}); err != nil {
		t.Fatal(err)
	}
	r.FailWith(nil)
	if err := r.Send(ctx, Notifications, Message{MessageID: "n"}); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			// Every message is sent twice from different goroutines.
			if err := r.Send(t.Context(), Alerts, Message{MessageID: fmt.Sprintf("m%d", i%25)}); err != nil {
				t.Error(err)
			}
			_ = r.Messages(Alerts)
		})
	}
	wg.Wait()
	if n := len(r.Messages(Alerts)); n != 25 || r.Duplicates(Alerts) != 25 {
		t.Fatalf("kept %d, dropped %d; want 25 and 25", n, r.Duplicates(Alerts))
	}
}
