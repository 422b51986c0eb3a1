package localhost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mdeflow/mdeflow/internal/queue"
)

// Message is a message sent to a local queue; it is the pipeline's
// queue.Message, so the host can stand in for a queue.Sender.
type Message = queue.Message

// Queue errors.
var (
	ErrQueueNotFound   = errors.New("queue not found")
	ErrMessageInvalid  = errors.New("message rejected")
	ErrMessageNotFound = errors.New("dead-lettered message not found")
)

// Dead-letter reasons set by the broker.
const (
	ReasonMaxDeliveryCount = "MaxDeliveryCountExceeded"
)

// DeadLetter is a message in a queue's dead-letter sub-queue.
type DeadLetter struct {
	Queue                      string         `json:"queue"`
	SequenceNumber             int64          `json:"sequenceNumber"`
	MessageID                  string         `json:"messageId"`
	CorrelationID              string         `json:"correlationId,omitempty"`
	SessionID                  string         `json:"sessionId,omitempty"`
	ContentType                string         `json:"contentType,omitempty"`
	Subject                    string         `json:"subject,omitempty"`
	Body                       []byte         `json:"-"`
	ApplicationProperties      map[string]any `json:"applicationProperties,omitempty"`
	DeliveryCount              int            `json:"deliveryCount"`
	EnqueuedTime               time.Time      `json:"enqueuedTime"`
	DeadLetteredAt             time.Time      `json:"deadLetteredAt"`
	DeadLetterReason           string         `json:"deadLetterReason"`
	DeadLetterErrorDescription string         `json:"deadLetterErrorDescription"`
}

// QueueStats counts the messages of one queue.
type QueueStats struct {
	Name         string `json:"queue"`
	Active       int    `json:"active"`
	Scheduled    int    `json:"scheduled"`
	InFlight     int    `json:"inFlight"`
	DeadLettered int    `json:"deadLettered"`
	Completed    int64  `json:"completed"`
	Abandoned    int64  `json:"abandoned"`
	Duplicates   int64  `json:"duplicatesDropped"`
	Sessions     bool   `json:"sessions,omitempty"`
	Consumed     bool   `json:"consumed"` // a function is triggered by it
}

// brokerMsg is a message inside the broker.
type brokerMsg struct {
	Message
	seq           int64
	enqueued      time.Time
	expiresAt     time.Time
	deliveryCount int
	lockToken     string
	lastError     string
}

// delivery is a locked message handed to a consumer.
type delivery struct {
	queue string
	token string
	msg   brokerMsg // snapshot (Body and Properties are not mutated by the broker)
}

type queueState struct {
	name      string
	sessions  bool
	consumed  bool
	seq       int64
	active    []*brokerMsg // ordered by seq
	scheduled []*brokerMsg
	inflight  map[string]*brokerMsg // by lock token
	locked    map[string]bool       // sessions with a message in flight
	dead      []*DeadLetter
	dups      map[string]time.Time // message id -> first send

	completed, abandoned, duplicates int64
}

// broker is an in-memory Service Bus namespace with peek-lock semantics.
type broker struct {
	maxDelivery int
	dupWindow   time.Duration // <= 0: no duplicate detection
	ttl         time.Duration
	maxSize     int
	now         func() time.Time
	onDrop      func(queue string, m *brokerMsg, why string)

	mu      sync.Mutex
	queues  map[string]*queueState
	changed chan struct{}
}

func newBroker(maxDelivery int, dupWindow, ttl time.Duration, maxSize int) *broker {
	return &broker{
		maxDelivery: maxDelivery, dupWindow: dupWindow, ttl: ttl, maxSize: maxSize,
		now:     time.Now,
		queues:  map[string]*queueState{},
		changed: make(chan struct{}),
	}
}

// declare creates the queue if needed. Queue names are case-insensitive in
// Service Bus.
func (b *broker) declare(name string, consumed, sessions bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := strings.ToLower(name)
	q := b.queues[key]
	if q == nil {
		q = &queueState{name: name, inflight: map[string]*brokerMsg{}, locked: map[string]bool{}, dups: map[string]time.Time{}}
		b.queues[key] = q
	}
	q.consumed = q.consumed || consumed
	q.sessions = q.sessions || sessions
}

// notifyLocked wakes every waiter; b.mu must be held.
func (b *broker) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *broker) notify() {
	b.mu.Lock()
	b.notifyLocked()
	b.mu.Unlock()
}

// waitCh returns the channel closed at the next change.
func (b *broker) waitCh() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *broker) queue(name string) (*queueState, error) {
	q := b.queues[strings.ToLower(name)]
	if q == nil {
		return nil, fmt.Errorf("%w: %q", ErrQueueNotFound, name)
	}
	return q, nil
}

// send enqueues msgs atomically: all are validated first. Duplicates (same
// MessageID within the detection window) are dropped silently, as Service
// Bus does; the result says how many were accepted.
func (b *broker) send(name string, msgs []Message, skipDupCheck bool) (accepted int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, err := b.queue(name)
	if err != nil {
		return 0, err
	}
	for i, m := range msgs {
		if err := b.validate(q, m); err != nil {
			return 0, fmt.Errorf("message %d: %w", i, err)
		}
	}
	now := b.now()
	for id, t := range q.dups {
		if now.Sub(t) >= b.dupWindow {
			delete(q.dups, id)
		}
	}
	for _, m := range msgs {
		if m.MessageID == "" {
			m.MessageID = strings.ReplaceAll(uuid.NewString(), "-", "")
		} else if b.dupWindow > 0 && !skipDupCheck {
			if _, seen := q.dups[m.MessageID]; seen {
				q.duplicates++
				continue
			}
			q.dups[m.MessageID] = now
		}
		m.Body = slices.Clone(m.Body)
		m.Properties = maps.Clone(m.Properties)
		q.seq++
		bm := &brokerMsg{Message: m, seq: q.seq}
		if m.ScheduledEnqueueTime.After(now) {
			q.scheduled = append(q.scheduled, bm)
		} else {
			b.activate(q, bm, now)
		}
		accepted++
	}
	b.notifyLocked()
	return accepted, nil
}

func (b *broker) validate(q *queueState, m Message) error {
	if q.sessions && m.SessionID == "" {
		return fmt.Errorf("%w: queue %q requires sessions and the SessionId was not set", ErrMessageInvalid, q.name)
	}
	if len(m.MessageID) > 128 {
		return fmt.Errorf("%w: MessageId longer than 128 characters", ErrMessageInvalid)
	}
	if len(m.SessionID) > 128 {
		return fmt.Errorf("%w: SessionId longer than 128 characters", ErrMessageInvalid)
	}
	size := len(m.Body)
	for k, v := range m.Properties {
		size += len(k) + len(fmt.Sprint(v))
		switch v.(type) {
		case string, bool, int, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, time.Time, time.Duration, uuid.UUID, []byte, nil:
		default:
			if _, ok := v.(interface{ Int64() (int64, error) }); !ok { // json.Number
				return fmt.Errorf("%w: application property %q has type %T; only primitive types are allowed", ErrMessageInvalid, k, v)
			}
		}
	}
	if b.maxSize > 0 && size > b.maxSize {
		return fmt.Errorf("%w: message of %d bytes exceeds the maximum size of %d bytes", ErrMessageInvalid, size, b.maxSize)
	}
	return nil
}

func (b *broker) activate(q *queueState, m *brokerMsg, now time.Time) {
	m.enqueued = now
	if b.ttl > 0 {
		m.expiresAt = now.Add(b.ttl)
	}
	b.insertActive(q, m)
}

func (b *broker) insertActive(q *queueState, m *brokerMsg) {
	i := sort.Search(len(q.active), func(i int) bool { return q.active[i].seq > m.seq })
	q.active = slices.Insert(q.active, i, m)
}

// activateDue moves due scheduled messages to the active list and returns
// the next activation time (zero when none).
func (b *broker) activateDue() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	var next time.Time
	moved := false
	for _, q := range b.queues {
		kept := q.scheduled[:0]
		for _, m := range q.scheduled {
			if !m.ScheduledEnqueueTime.After(now) {
				b.activate(q, m, now)
				moved = true
				continue
			}
			kept = append(kept, m)
			if next.IsZero() || m.ScheduledEnqueueTime.Before(next) {
				next = m.ScheduledEnqueueTime
			}
		}
		clear(q.scheduled[len(kept):])
		q.scheduled = kept
	}
	if moved {
		b.notifyLocked()
	}
	return next
}

// runScheduler activates scheduled messages on time until ctx ends.
func (b *broker) runScheduler(ctx context.Context) {
	for {
		ch := b.waitCh()
		next := b.activateDue()
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-ch:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// receive locks the first deliverable message of the queue, waiting until
// there is one.
func (b *broker) receive(ctx context.Context, name string) (delivery, error) {
	for {
		b.mu.Lock()
		q, err := b.queue(name)
		if err != nil {
			b.mu.Unlock()
			return delivery{}, err
		}
		if d, ok := b.pickLocked(q); ok {
			b.notifyLocked()
			b.mu.Unlock()
			return d, nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return delivery{}, ctx.Err()
		case <-ch:
		}
	}
}

func (b *broker) pickLocked(q *queueState) (delivery, bool) {
	now := b.now()
	for i := 0; i < len(q.active); i++ {
		m := q.active[i]
		if !m.expiresAt.IsZero() && now.After(m.expiresAt) {
			// Default queues do not dead-letter on expiration: the message is dropped.
			q.active = slices.Delete(q.active, i, i+1)
			i--
			if b.onDrop != nil {
				b.onDrop(q.name, m, "time to live expired")
			}
			continue
		}
		if q.sessions && q.locked[m.SessionID] {
			continue
		}
		q.active = slices.Delete(q.active, i, i+1)
		m.deliveryCount++
		m.lockToken = uuid.NewString()
		q.inflight[m.lockToken] = m
		if q.sessions {
			q.locked[m.SessionID] = true
		}
		return delivery{queue: q.name, token: m.lockToken, msg: *m}, true
	}
	return delivery{}, false
}

// settle ends a delivery: complete on success; otherwise abandon (the
// message becomes available again) or, when its DeliveryCount reached the
// maximum, dead-letter it. With release the lock is dropped without
// settling (host shutdown).
func (b *broker) settle(d delivery, invokeErr error, release bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[strings.ToLower(d.queue)]
	if q == nil {
		return
	}
	m := q.inflight[d.token]
	if m == nil {
		return
	}
	delete(q.inflight, d.token)
	if q.sessions {
		delete(q.locked, m.SessionID)
	}
	m.lockToken = ""
	defer b.notifyLocked()
	switch {
	case release:
		b.insertActive(q, m)
	case invokeErr == nil:
		q.completed++
	case m.deliveryCount >= b.maxDelivery:
		m.lastError = invokeErr.Error()
		q.abandoned++
		q.dead = append(q.dead, deadLetterOf(q.name, m, ReasonMaxDeliveryCount,
			fmt.Sprintf("Message could not be consumed after %d delivery attempts. Last error: %s", m.deliveryCount, m.lastError), b.now()))
	default:
		m.lastError = invokeErr.Error()
		q.abandoned++
		b.insertActive(q, m)
	}
}

func deadLetterOf(queueName string, m *brokerMsg, reason, desc string, now time.Time) *DeadLetter {
	return &DeadLetter{
		Queue: queueName, SequenceNumber: m.seq, MessageID: m.MessageID, CorrelationID: m.CorrelationID,
		SessionID: m.SessionID, ContentType: m.ContentType, Subject: m.Subject, Body: m.Body,
		ApplicationProperties: m.Properties, DeliveryCount: m.deliveryCount, EnqueuedTime: m.enqueued,
		DeadLetteredAt: now, DeadLetterReason: reason, DeadLetterErrorDescription: desc,
	}
}

// deadLetter puts m directly into the dead-letter sub-queue.
func (b *broker) deadLetter(name string, m Message, reason, desc string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, err := b.queue(name)
	if err != nil {
		return 0, err
	}
	if m.MessageID == "" {
		m.MessageID = strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	m.Body = slices.Clone(m.Body)
	m.Properties = maps.Clone(m.Properties)
	q.seq++
	now := b.now()
	q.dead = append(q.dead, deadLetterOf(q.name, &brokerMsg{Message: m, seq: q.seq, enqueued: now}, reason, desc, now))
	b.notifyLocked()
	return q.seq, nil
}

func (b *broker) deadLetters(name string) ([]DeadLetter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, err := b.queue(name)
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, 0, len(q.dead))
	for _, d := range q.dead {
		c := *d
		c.Body = slices.Clone(d.Body)
		c.ApplicationProperties = maps.Clone(d.ApplicationProperties)
		out = append(out, c)
	}
	return out, nil
}

// resubmit moves a dead-lettered message back to its queue as a new
// message (new sequence number, DeliveryCount 0). Unlike a clone sent to
// Azure within the duplicate-detection window, it is never dropped as a
// duplicate.
func (b *broker) resubmit(name string, seq int64) error {
	b.mu.Lock()
	q, err := b.queue(name)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	i := slices.IndexFunc(q.dead, func(d *DeadLetter) bool { return d.SequenceNumber == seq })
	if i < 0 {
		b.mu.Unlock()
		return fmt.Errorf("%w: queue %q sequence number %d", ErrMessageNotFound, name, seq)
	}
	d := q.dead[i]
	q.dead = slices.Delete(q.dead, i, i+1)
	b.mu.Unlock()
	_, err = b.send(name, []Message{{
		MessageID: d.MessageID, CorrelationID: d.CorrelationID, SessionID: d.SessionID, ContentType: d.ContentType,
		Subject: d.Subject, Body: d.Body, Properties: d.ApplicationProperties,
	}}, true)
	if err != nil {
		b.mu.Lock()
		q.dead = slices.Insert(q.dead, min(i, len(q.dead)), d)
		b.mu.Unlock()
	}
	return err
}

func (b *broker) stats() []QueueStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]QueueStats, 0, len(b.queues))
	for _, q := range b.queues {
		out = append(out, QueueStats{
			Name: q.name, Active: len(q.active), Scheduled: len(q.scheduled), InFlight: len(q.inflight),
			DeadLettered: len(q.dead), Completed: q.completed, Abandoned: q.abandoned, Duplicates: q.duplicates,
			Sessions: q.sessions, Consumed: q.consumed,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// idle reports whether every consumed queue has nothing active, scheduled
// or in flight.
func (b *broker) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range b.queues {
		if q.consumed && len(q.active)+len(q.scheduled)+len(q.inflight) > 0 {
			return false
		}
	}
	return true
}

// bodyText returns the body as a string for JSON output and whether it is
// valid UTF-8.
func bodyText(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), true
	}
	return "", false
}
