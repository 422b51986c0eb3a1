package queue

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// DeadLettered is a message the broker itself dead-lettered: it failed
// MaxDeliveryCount deliveries (a transient error that never cleared) or
// expired. mdeflow's own dead-letter log (permanent errors) is in the store.
type DeadLettered struct {
	Queue          string    `json:"queue"`
	SequenceNumber int64     `json:"sequenceNumber"`
	MessageID      string    `json:"messageId"`
	CorrelationID  string    `json:"correlationId,omitempty"`
	ContentType    string    `json:"contentType,omitempty"`
	Reason         string    `json:"deadLetterReason"`
	Description    string    `json:"deadLetterErrorDescription"`
	DeliveryCount  int       `json:"deliveryCount"`
	EnqueuedTime   time.Time `json:"enqueuedTime"`
	Body           []byte    `json:"-"`
}

// DeadLetterQueue lists a queue's dead-letter sub-queue and sends a
// dead-lettered message back to its queue.
type DeadLetterQueue interface {
	ListDeadLetters(ctx context.Context, queue string, max int) ([]DeadLettered, error)
	ResubmitDeadLetter(ctx context.Context, queue string, sequenceNumber int64) error
}

var (
	_ DeadLetterQueue = (*LocalSender)(nil)
	_ DeadLetterQueue = (*ServiceBusSender)(nil)
)

// ErrDeadLetterNotFound is returned when no dead letter has the sequence number.
var ErrDeadLetterNotFound = errors.New("no dead-lettered message with that sequence number")

// ListDeadLetters reads the local host's dead-letter queue
// (GET /admin/queues/{queue}/deadletters).
func (s *LocalSender) ListDeadLetters(ctx context.Context, queue string, max int) ([]DeadLettered, error) {
	if !localQueueRE.MatchString(queue) {
		return nil, fmt.Errorf("listing dead letters: invalid queue name %q", queue)
	}
	var raw []struct {
		DeadLettered
		Body       *string `json:"body"`
		BodyBase64 *string `json:"bodyBase64"`
	}
	if err := s.admin(ctx, http.MethodGet, "/admin/queues/"+url.PathEscape(queue)+"/deadletters", http.StatusOK, &raw); err != nil {
		return nil, fmt.Errorf("listing dead letters of %s: %w", queue, err)
	}
	out := make([]DeadLettered, 0, len(raw))
	for _, r := range raw {
		d := r.DeadLettered
		switch {
		case r.Body != nil:
			d.Body = []byte(*r.Body)
		case r.BodyBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*r.BodyBase64)
			if err != nil {
				return nil, fmt.Errorf("listing dead letters of %s: body of %d: %w", queue, d.SequenceNumber, err)
			}
			d.Body = b
		}
		out = append(out, d)
		if max > 0 && len(out) == max {
			break
		}
	}
	return out, nil
}

// ResubmitDeadLetter asks the local host to move a dead letter back.
func (s *LocalSender) ResubmitDeadLetter(ctx context.Context, queue string, seq int64) error {
	if !localQueueRE.MatchString(queue) {
		return fmt.Errorf("resubmitting dead letter: invalid queue name %q", queue)
	}
	p := "/admin/queues/" + url.PathEscape(queue) + "/deadletters/" + strconv.FormatInt(seq, 10) + "/resubmit"
	if err := s.admin(ctx, http.MethodPost, p, http.StatusNoContent, nil); err != nil {
		return fmt.Errorf("resubmitting dead letter %d of %s: %w", seq, queue, err)
	}
	return nil
}

func (s *LocalSender) admin(ctx context.Context, method, path string, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.baseURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("x-functions-key", s.masterKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode == http.StatusNotFound && method == http.MethodPost {
		return ErrDeadLetterNotFound
	}
	if resp.StatusCode != want {
		if len(body) > 512 {
			body = body[:512]
		}
		return &LocalStatusError{StatusCode: resp.StatusCode, Body: string(body)}
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// ListDeadLetters peeks the queue's dead-letter sub-queue ($deadletterqueue)
// without locking anything.
func (s *ServiceBusSender) ListDeadLetters(ctx context.Context, queue string, max int) ([]DeadLettered, error) {
	if s.client == nil {
		return nil, errors.New("listing dead letters: no service bus client")
	}
	if !entityNameRE.MatchString(queue) {
		return nil, fmt.Errorf("listing dead letters: invalid queue name %q", queue)
	}
	if max <= 0 {
		max = 100
	}
	r, err := s.client.NewReceiverForQueue(queue, &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
	if err != nil {
		return nil, fmt.Errorf("opening dead-letter queue of %s: %w", queue, err)
	}
	defer r.Close(context.WithoutCancel(ctx))
	msgs, err := r.PeekMessages(ctx, max, nil)
	if err != nil {
		return nil, fmt.Errorf("peeking dead-letter queue of %s: %w", queue, err)
	}
	out := make([]DeadLettered, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, deadLetteredOf(queue, m))
	}
	return out, nil
}

// ResubmitDeadLetter receives the dead letter with that sequence number,
// sends a copy to its queue (with a new MessageID, so duplicate detection
// does not drop it) and then completes the dead letter. Other messages it
// receives on the way are abandoned untouched.
func (s *ServiceBusSender) ResubmitDeadLetter(ctx context.Context, queue string, seq int64) error {
	if s.client == nil {
		return errors.New("resubmitting dead letter: no service bus client")
	}
	if !entityNameRE.MatchString(queue) {
		return fmt.Errorf("resubmitting dead letter: invalid queue name %q", queue)
	}
	r, err := s.client.NewReceiverForQueue(queue, &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
	if err != nil {
		return fmt.Errorf("opening dead-letter queue of %s: %w", queue, err)
	}
	defer r.Close(context.WithoutCancel(ctx))
	for range 20 {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msgs, err := r.ReceiveMessages(rctx, 50, nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("receiving from dead-letter queue of %s: %w", queue, err)
		}
		if len(msgs) == 0 {
			break
		}
		var found *azservicebus.ReceivedMessage
		for _, m := range msgs {
			if m.SequenceNumber != nil && *m.SequenceNumber == seq && found == nil {
				found = m
				continue
			}
			_ = r.AbandonMessage(ctx, m, nil)
		}
		if found == nil {
			continue
		}
		copyMsg := Message{MessageID: fmt.Sprintf("%s-resubmit-%d", found.MessageID, time.Now().Unix()),
			Body: found.Body, Properties: found.ApplicationProperties}
		if found.CorrelationID != nil {
			copyMsg.CorrelationID = *found.CorrelationID
		}
		if found.ContentType != nil {
			copyMsg.ContentType = *found.ContentType
		}
		if err := s.Send(ctx, queue, copyMsg); err != nil {
			_ = r.AbandonMessage(ctx, found, nil)
			return fmt.Errorf("resubmitting %s to %s: %w", found.MessageID, queue, err)
		}
		return r.CompleteMessage(ctx, found, nil)
	}
	return ErrDeadLetterNotFound
}

// deadLetteredOf maps a received dead letter.
func deadLetteredOf(queue string, m *azservicebus.ReceivedMessage) DeadLettered {
	d := DeadLettered{Queue: queue, MessageID: m.MessageID, Body: m.Body, DeliveryCount: int(m.DeliveryCount)}
	if m.SequenceNumber != nil {
		d.SequenceNumber = *m.SequenceNumber
	}
	if m.CorrelationID != nil {
		d.CorrelationID = *m.CorrelationID
	}
	if m.ContentType != nil {
		d.ContentType = *m.ContentType
	}
	if m.DeadLetterReason != nil {
		d.Reason = *m.DeadLetterReason
	}
	if m.DeadLetterErrorDescription != nil {
		d.Description = *m.DeadLetterErrorDescription
	}
	if m.EnqueuedTime != nil {
		d.EnqueuedTime = *m.EnqueuedTime
	}
	return d
}
