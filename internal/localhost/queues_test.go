package localhost

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the broker.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestBroker(maxDelivery int, dup time.Duration) (*broker, *fakeClock) {
	clock := &fakeClock{t: time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)}
	b := newBroker(maxDelivery, dup, 14*24*time.Hour, 256*1024)
	b.now = clock.now
	return b, clock
}

func receiveNow(t *testing.T, b *broker, q string) delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, err := b.receive(ctx, q)
	if err != nil {
		t.Fatalf("receive %s: %v", q, err)
	}
	return d
}

func nothingToReceive(t *testing.T, b *broker, q string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if d, err := b.receive(ctx, q); err == nil {
		t.Fatalf("received %q (seq %d), want nothing", d.msg.Body, d.msg.seq)
	}
}

func TestBrokerPeekLockRedeliveryAndDeadLetter(t *testing.T) {
	t.Parallel()
	b, _ := newTestBroker(3, 10*time.Minute)
	b.declare("work", true, false)
	if _, err := b.send("WORK", []Message{{MessageID: "m1", Body: []byte("one")}, {MessageID: "m2", Body: []byte("two")}}, false); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("handler answered 500")
	for want := 1; want <= 3; want++ {
		d := receiveNow(t, b, "work")
		if string(d.msg.Body) != "one" || d.msg.deliveryCount != want || d.msg.seq != 1 || d.token == "" {
			t.Fatalf("delivery %d = body %q count %d seq %d", want, d.msg.Body, d.msg.deliveryCount, d.msg.seq)
		}
		if want == 1 {
			// While m1 is locked, m2 is deliverable (no sessions).
			d2 := receiveNow(t, b, "work")
			if string(d2.msg.Body) != "two" {
				t.Fatalf("second delivery = %q", d2.msg.Body)
			}
			b.settle(d2, nil, false)
		}
		b.settle(d, failure, false)
	}
	nothingToReceive(t, b, "work")
	dl, _ := b.deadLetters("work")
	if len(dl) != 1 || dl[0].DeadLetterReason != ReasonMaxDeliveryCount || dl[0].DeliveryCount != 3 ||
		!strings.Contains(dl[0].DeadLetterErrorDescription, "handler answered 500") || dl[0].MessageID != "m1" {
		t.Fatalf("dead letters = %+v", dl)
	}
	st := b.stats()[0]
	if st.Completed != 1 || st.Abandoned != 3 || st.DeadLettered != 1 || st.Active != 0 || st.InFlight != 0 {
		t.Errorf("stats = %+v", st)
	}

	if err := b.resubmit("work", 1); err != nil {
		t.Fatal(err)
	}
	d := receiveNow(t, b, "work")
	if d.msg.MessageID != "m1" || d.msg.deliveryCount != 1 || d.msg.seq != 3 {
		t.Errorf("resubmitted = id %s count %d seq %d", d.msg.MessageID, d.msg.deliveryCount, d.msg.seq)
	}
	if err := b.resubmit("work", 1); !errors.Is(err, ErrMessageNotFound) {
		t.Errorf("second resubmit error = %v", err)
	}
}

func TestBrokerAbandonKeepsOrder(t *testing.T) {
	t.Parallel()
	b, _ := newTestBroker(10, 0)
	b.declare("q", true, false)
	for _, body := range []string{"a", "b", "c"} {
		if _, err := b.send("q", []Message{{Body: []byte(body)}}, false); err != nil {
			t.Fatal(err)
		}
	}
	da := receiveNow(t, b, "q")
	db := receiveNow(t, b, "q")
	b.settle(db, errors.New("x"), false)
	b.settle(da, errors.New("x"), false)
	var got []string
	for range 3 {
		d := receiveNow(t, b, "q")
		got = append(got, string(d.msg.Body))
		b.settle(d, nil, false)
	}
	if strings.Join(got, "") != "abc" {
		t.Errorf("redelivery order = %v, want a b c (sequence order)", got)
	}
}

func TestBrokerDuplicateDetection(t *testing.T) {
	t.Parallel()
	b, clock := newTestBroker(10, 10*time.Minute)
	b.declare("q", true, false)
	send := func(id string) {
		t.Helper()
		if _, err := b.send("q", []Message{{MessageID: id, Body: []byte(id)}}, false); err != nil {
			t.Fatal(err)
		}
	}
	send("alert-1")
	send("alert-1") // dropped
	clock.add(9 * time.Minute)
	send("alert-1") // still within the window (counted from the first send)
	clock.add(2 * time.Minute)
	send("alert-1") // window passed: accepted
	send("alert-2")
	st := b.stats()[0]
	if st.Active != 3 || st.Duplicates != 2 {
		t.Errorf("active %d duplicates %d, want 3 and 2", st.Active, st.Duplicates)
	}

	off, _ := newTestBroker(10, -1)
	off.declare("q", true, false)
	for range 2 {
		if _, err := off.send("q", []Message{{MessageID: "same"}}, false); err != nil {
			t.Fatal(err)
		}
	}
	if st := off.stats()[0]; st.Active != 2 {
		t.Errorf("without duplicate detection active = %d, want 2", st.Active)
	}
}

func TestBrokerSessions(t *testing.T) {
	t.Parallel()
	b, _ := newTestBroker(10, 0)
	b.declare("s", true, true)
	if _, err := b.send("s", []Message{{Body: []byte("no session")}}, false); !errors.Is(err, ErrMessageInvalid) || !strings.Contains(err.Error(), "SessionId") {
		t.Fatalf("send without session id: %v", err)
	}
	msgs := []Message{
		{SessionID: "A", Body: []byte("A1")}, {SessionID: "A", Body: []byte("A2")}, {SessionID: "B", Body: []byte("B1")},
	}
	if _, err := b.send("s", msgs, false); err != nil {
		t.Fatal(err)
	}
	a1 := receiveNow(t, b, "s")
	b1 := receiveNow(t, b, "s") // A is locked: B1 comes next, not A2
	if string(a1.msg.Body) != "A1" || string(b1.msg.Body) != "B1" {
		t.Fatalf("got %q then %q", a1.msg.Body, b1.msg.Body)
	}
	nothingToReceive(t, b, "s")
	b.settle(a1, errors.New("retry me"), false)
	again := receiveNow(t, b, "s")
	if string(again.msg.Body) != "A1" || again.msg.deliveryCount != 2 {
		t.Fatalf("after abandon got %q count %d, want A1 again", again.msg.Body, again.msg.deliveryCount)
	}
	b.settle(again, nil, false)
	if a2 := receiveNow(t, b, "s"); string(a2.msg.Body) != "A2" {
		t.Fatalf("got %q, want A2", a2.msg.Body)
	}
}

func TestBrokerScheduledMessages(t *testing.T) {
	t.Parallel()
	b := newBroker(10, 0, 0, 0)
	b.declare("q", true, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { b.runScheduler(ctx); close(done) }()
	at := time.Now().Add(300 * time.Millisecond)
	if _, err := b.send("q", []Message{{Body: []byte("later"), ScheduledEnqueueTime: at}, {Body: []byte("now")}}, false); err != nil {
		t.Fatal(err)
	}
	if st := b.stats()[0]; st.Scheduled != 1 || st.Active != 1 {
		t.Fatalf("stats = %+v", st)
	}
	first := receiveNow(t, b, "q")
	second := receiveNow(t, b, "q")
	if string(first.msg.Body) != "now" || string(second.msg.Body) != "later" {
		t.Fatalf("order = %q, %q", first.msg.Body, second.msg.Body)
	}
	if second.msg.enqueued.Before(at) || second.msg.seq != 1 {
		t.Errorf("scheduled message enqueued %s (want >= %s), seq %d (assigned when scheduled)", second.msg.enqueued, at, second.msg.seq)
	}
	cancel()
	<-done
}

func TestBrokerValidation(t *testing.T) {
	t.Parallel()
	b := newBroker(10, 0, 0, 1024)
	b.declare("q", false, false)
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{"too big", Message{Body: make([]byte, 2000)}, "exceeds the maximum size"},
		{"nested property", Message{Properties: map[string]any{"x": map[string]any{"y": 1}}}, "only primitive types"},
		{"long id", Message{MessageID: strings.Repeat("x", 129)}, "MessageId longer"},
	}
	for _, tt := range tests {
		if _, err := b.send("q", []Message{tt.msg}, false); !errors.Is(err, ErrMessageInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v", tt.name, err)
		}
	}
	if _, err := b.send("q", []Message{{Properties: map[string]any{"n": json.Number("5"), "s": "x", "b": true}}}, false); err != nil {
		t.Errorf("primitive properties rejected: %v", err)
	}
	if _, err := b.send("nope", []Message{{}}, false); !errors.Is(err, ErrQueueNotFound) {
		t.Errorf("unknown queue error = %v", err)
	}
	// A batch is atomic: one bad message rejects all.
	if _, err := b.send("q", []Message{{Body: []byte("ok")}, {Body: make([]byte, 2000)}}, false); err == nil {
		t.Error("batch with an oversized message accepted")
	}
	if st := b.stats()[0]; st.Active != 1 {
		t.Errorf("active = %d, want 1 (only the earlier valid send)", st.Active)
	}
}

func TestBrokerExplicitDeadLetter(t *testing.T) {
	t.Parallel()
	b, _ := newTestBroker(10, 0)
	b.declare("q", true, false)
	seq, err := b.deadLetter("q", Message{MessageID: "poison", Body: []byte("{}")}, "InvalidAlert", "alert id fails validation")
	if err != nil {
		t.Fatal(err)
	}
	dl, _ := b.deadLetters("q")
	if len(dl) != 1 || dl[0].SequenceNumber != seq || dl[0].DeadLetterReason != "InvalidAlert" || dl[0].DeadLetterErrorDescription != "alert id fails validation" {
		t.Errorf("dead letters = %+v", dl)
	}
	if !b.idle() {
		t.Error("a dead-lettered message must not keep the queue busy")
	}
}
