package queue

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Recorder is a Sender for other packages' tests: it records what was
// sent, per queue, and behaves like a queue with duplicate detection: a
// message whose MessageID the queue already has is dropped silently (Send
// still succeeds) and counted. Messages are validated like the real
// senders do. Safe for concurrent use.
//
//	rec := queue.NewRecorder()
//	fn := NewEnrichAlert(rec, ...)
//	... rec.Messages(queue.Isolations)
type Recorder struct {
	mu     sync.Mutex
	queues map[string][]Message
	seen   map[string]map[string]bool
	dups   map[string]int
	calls  int
	fail   func(queue string, msgs []Message) error
}

var _ Sender = (*Recorder)(nil)

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{queues: map[string][]Message{}, seen: map[string]map[string]bool{}, dups: map[string]int{}}
}

// FailWith installs a failure injector: when fn returns an error, Send
// returns it and records nothing of that call (a batch is all or nothing).
// nil removes it.
//
//	rec.FailWith(func(q string, _ []queue.Message) error { if q == queue.Notifications { return errBoom }; return nil })
func (r *Recorder) FailWith(fn func(queue string, msgs []Message) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fn
}

// FailNext makes the next n Send calls fail with err, then succeeds again.
//
//	rec.FailNext(1, errors.New("service bus unavailable"))
func (r *Recorder) FailNext(n int, err error) {
	left := n
	r.FailWith(func(string, []Message) error {
		// Called with r.mu held.
		if left <= 0 {
			return nil
		}
		left--
		return err
	})
}

// Send implements Sender.
func (r *Recorder) Send(ctx context.Context, queue string, msgs ...Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if queue == "" {
		return fmt.Errorf("sending: empty queue name")
	}
	copies := make([]Message, len(msgs))
	for i, m := range msgs {
		if err := ValidateMessage(m); err != nil {
			return fmt.Errorf("sending to queue %s: %w", queue, err)
		}
		copies[i] = cloneMessage(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		if err := r.fail(queue, copies); err != nil {
			return err
		}
	}
	seen := r.seen[queue]
	if seen == nil {
		seen = map[string]bool{}
		r.seen[queue] = seen
	}
	for _, m := range copies {
		if seen[m.MessageID] {
			r.dups[queue]++
			continue
		}
		seen[m.MessageID] = true
		r.queues[queue] = append(r.queues[queue], m)
	}
	return nil
}

// Messages returns copies of the messages accepted on queue, in send order.
func (r *Recorder) Messages(queue string) []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Message, len(r.queues[queue]))
	for i, m := range r.queues[queue] {
		out[i] = cloneMessage(m)
	}
	return out
}

// Queues returns the names of the queues that accepted messages, sorted.
func (r *Recorder) Queues() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.queues))
	for q := range r.queues {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// Duplicates returns how many messages duplicate detection dropped on queue.
func (r *Recorder) Duplicates(queue string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dups[queue]
}

// Calls returns how many times Send reached the recorder (failed calls
// included, invalid ones not).
func (r *Recorder) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// Reset forgets every message, MessageID and count (the failure injector
// stays).
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queues = map[string][]Message{}
	r.seen = map[string]map[string]bool{}
	r.dups = map[string]int{}
	r.calls = 0
}
