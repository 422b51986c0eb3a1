package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxDeadLetterBody is how much of a dead-lettered body is kept.
const MaxDeadLetterBody = 64 << 10

// DeadLetter is a message the pipeline gave up on, kept so an operator can
// see why and resubmit it.
type DeadLetter struct {
	Queue     string `json:"queue"`
	Function  string `json:"function,omitempty"`
	MessageID string `json:"messageId"`
	// Reason is a short stable code ("invalidMessage", "machineNotFound"...);
	// Error the full error text.
	Reason        string `json:"reason"`
	Error         string `json:"error,omitempty"`
	Body          string `json:"body,omitempty"`
	BodyTruncated bool   `json:"bodyTruncated,omitempty"`
	DeliveryCount int    `json:"deliveryCount,omitempty"`
	Count         int    `json:"count"` // times recorded
	// At is when it was last recorded, FirstAt the first time.
	At      time.Time `json:"at"`
	FirstAt time.Time `json:"firstAt,omitzero"`
	// Resubmitted, ResubmittedAt and ResubmittedBy are set by
	// MarkResubmitted and cleared when the message is dead-lettered again.
	Resubmitted   bool      `json:"resubmitted,omitempty"`
	ResubmittedAt time.Time `json:"resubmittedAt,omitzero"`
	ResubmittedBy string    `json:"resubmittedBy,omitempty"`
}

// Pending reports whether the dead letter was not resubmitted since it was
// last recorded.
func (d DeadLetter) Pending() bool { return !d.Resubmitted && d.ResubmittedAt.IsZero() }

// DeadLetterLog records dead-lettered messages in table "deadletters":
// partition EscapeKey(queue), row EscapeKey(messageID). Recording the same
// message again (a redelivery, or a resubmission that failed again)
// updates one record and counts.
type DeadLetterLog struct {
	b Backend
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewDeadLetterLog returns the dead-letter helper on b.
//
//	dl := store.NewDeadLetterLog(b)
func NewDeadLetterLog(b Backend) *DeadLetterLog { return &DeadLetterLog{b: b} }

// Record stores (or updates) the dead letter of d.Queue/d.MessageID with
// its reason and body (valid UTF-8, cut to MaxDeadLetterBody) and returns
// the stored record.
//
//	_, err := dl.Record(ctx, store.DeadLetter{Queue: "isolations", MessageID: id, Reason: "invalidMessage", Error: err.Error(), Body: string(body)})
func (l *DeadLetterLog) Record(ctx context.Context, d DeadLetter) (DeadLetter, error) {
	if d.Queue == "" || d.MessageID == "" {
		return DeadLetter{}, errors.New("recording dead letter: queue and message id are required")
	}
	now := clock(l.Now)
	body, cut := truncateUTF8(strings.ToValidUTF8(d.Body, "\uFFFD"), MaxDeadLetterBody)
	out, err := Modify(ctx, l.b, TableDeadLetters, EscapeKey(d.Queue), EscapeKey(d.MessageID), func(cur *DeadLetter, exists bool) error {
		first := now
		if exists && !cur.FirstAt.IsZero() {
			first = cur.FirstAt
		}
		count := 1
		if exists {
			count = cur.Count + 1
		}
		*cur = DeadLetter{
			Queue: d.Queue, Function: d.Function, MessageID: d.MessageID, Reason: d.Reason, Error: d.Error,
			Body: body, BodyTruncated: cut || d.BodyTruncated, DeliveryCount: d.DeliveryCount,
			Count: count, At: now, FirstAt: first,
		}
		return nil
	})
	if err != nil {
		return DeadLetter{}, fmt.Errorf("recording dead letter %s/%s: %w", d.Queue, d.MessageID, err)
	}
	return out, nil
}

// Get returns one dead letter, or ErrNotFound.
//
//	d, err := dl.Get(ctx, "isolations", messageID)
func (l *DeadLetterLog) Get(ctx context.Context, queue, messageID string) (DeadLetter, error) {
	var d DeadLetter
	if _, err := GetJSON(ctx, l.b, TableDeadLetters, EscapeKey(queue), EscapeKey(messageID), &d); err != nil {
		return DeadLetter{}, fmt.Errorf("getting dead letter %s/%s: %w", queue, messageID, err)
	}
	return d, nil
}

// List returns the dead letters of a queue ("" for every queue), most
// recently recorded first.
//
//	all, err := dl.List(ctx, "")
func (l *DeadLetterLog) List(ctx context.Context, queue string) ([]DeadLetter, error) {
	pk := ""
	if queue != "" {
		pk = EscapeKey(queue)
	}
	ents, err := l.b.List(ctx, TableDeadLetters, pk)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(ents))
	for _, e := range ents {
		var d DeadLetter
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, fmt.Errorf("listing dead letters: decoding %s/%s: %w", e.PartitionKey, e.RowKey, err)
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, nil
}

// MarkResubmitted notes that an operator (by) sent the message again.
// ErrNotFound when there is no such dead letter.
//
//	err := dl.MarkResubmitted(ctx, "isolations", messageID, "alice@contoso.com")
func (l *DeadLetterLog) MarkResubmitted(ctx context.Context, queue, messageID, by string) error {
	now := clock(l.Now)
	_, err := Modify(ctx, l.b, TableDeadLetters, EscapeKey(queue), EscapeKey(messageID), func(cur *DeadLetter, exists bool) error {
		if !exists {
			return ErrNotFound
		}
		cur.Resubmitted, cur.ResubmittedAt, cur.ResubmittedBy = true, now, by
		return nil
	})
	if err != nil {
		return fmt.Errorf("marking dead letter %s/%s resubmitted: %w", queue, messageID, err)
	}
	return nil
}

// truncateUTF8 cuts s to at most max bytes on a rune boundary.
func truncateUTF8(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}
