package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// LocalSender feeds the local Functions host (cmd "localhost"): it POSTs
// messages to {baseURL}/admin/queues/{queue}/messages with the host's
// master key in x-functions-key, and expects 201 Created.
type LocalSender struct {
	baseURL   string
	masterKey string
	client    *http.Client
}

var _ Sender = (*LocalSender)(nil)

// NewLocalSender returns a sender to the local host at baseURL (e.g.
// http://127.0.0.1:7071). A nil client means one with a 30 s timeout.
//
//	s := queue.NewLocalSender("http://127.0.0.1:7071", masterKey, nil)
func NewLocalSender(baseURL, masterKey string, client *http.Client) *LocalSender {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &LocalSender{baseURL: strings.TrimRight(baseURL, "/"), masterKey: masterKey, client: client}
}

// LocalMessage is the wire form of one message on the local host's admin
// queue endpoint (a JSON array of these is the request body).
type LocalMessage struct {
	MessageID     string `json:"messageId"`
	CorrelationID string `json:"correlationId,omitempty"`
	SessionID     string `json:"sessionId,omitempty"`
	ContentType   string `json:"contentType"`
	Subject       string `json:"subject,omitempty"`
	// Body is the message body as UTF-8 text.
	Body                  string         `json:"body"`
	ApplicationProperties map[string]any `json:"applicationProperties"`
	// ScheduledEnqueueTimeUTC is RFC 3339 in UTC, omitted when not scheduled.
	ScheduledEnqueueTimeUTC string `json:"scheduledEnqueueTimeUtc,omitempty"`
}

var localQueueRE = regexp.MustCompile(`^[a-z0-9-]{1,50}$`)

// ToLocalMessage maps m onto the local host's wire form. The body must be
// valid UTF-8 (the local host carries bodies as text).
func ToLocalMessage(m Message) (LocalMessage, error) {
	if err := ValidateMessage(m); err != nil {
		return LocalMessage{}, err
	}
	if !utf8.Valid(m.Body) {
		return LocalMessage{}, fmt.Errorf("invalid message %q: body is not UTF-8 text", m.MessageID)
	}
	lm := LocalMessage{
		MessageID: m.MessageID, CorrelationID: m.CorrelationID, SessionID: m.SessionID,
		ContentType: m.ContentType, Subject: m.Subject, Body: string(m.Body),
		ApplicationProperties: map[string]any{},
	}
	if lm.ContentType == "" {
		lm.ContentType = DefaultContentType
	}
	for k, v := range m.Properties {
		if t, ok := v.(time.Time); ok {
			v = t.UTC().Format(time.RFC3339Nano)
		}
		lm.ApplicationProperties[k] = v
	}
	if !m.ScheduledEnqueueTime.IsZero() {
		lm.ScheduledEnqueueTimeUTC = m.ScheduledEnqueueTime.UTC().Format(time.RFC3339Nano)
	}
	return lm, nil
}

// Send implements Sender. Queue names must match [a-z0-9-]{1,50}.
//
//	err := s.Send(ctx, queue.Alerts, queue.Message{MessageID: "alert-" + id, Body: body})
func (s *LocalSender) Send(ctx context.Context, queue string, msgs ...Message) error {
	if !localQueueRE.MatchString(queue) {
		return fmt.Errorf("sending to local queue %q: invalid queue name (want [a-z0-9-]{1,50})", queue)
	}
	if len(msgs) == 0 {
		return nil
	}
	wire := make([]LocalMessage, len(msgs))
	for i, m := range msgs {
		lm, err := ToLocalMessage(m)
		if err != nil {
			return fmt.Errorf("sending to local queue %s: %w", queue, err)
		}
		wire[i] = lm
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return fmt.Errorf("sending to local queue %s: encoding: %w", queue, err)
	}
	u, err := url.Parse(s.baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("sending to local queue %s: base URL %q is not an http(s) URL", queue, s.baseURL)
	}
	u = u.JoinPath("admin", "queues", queue, "messages")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sending to local queue %s: %w", queue, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-functions-key", s.masterKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("sending %d messages to local queue %s: %w", len(msgs), queue, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode != http.StatusCreated {
		return &LocalStatusError{Queue: queue, StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(snippet))}
	}
	return nil
}

// LocalStatusError is a non-201 answer of the local host.
type LocalStatusError struct {
	Queue      string
	StatusCode int
	Body       string // at most 512 bytes
}

func (e *LocalStatusError) Error() string {
	return fmt.Sprintf("sending to local queue %s: host answered %d: %q", e.Queue, e.StatusCode, e.Body)
}

// Temporary reports whether a retry may succeed (5xx, 429, 408).
func (e *LocalStatusError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}

// ErrLocalUnauthorized matches a 401/403 from the local host (wrong master key).
var ErrLocalUnauthorized = errors.New("local host refused the master key")

// Is lets errors.Is(err, ErrLocalUnauthorized) match 401 and 403.
func (e *LocalStatusError) Is(target error) bool {
	return target == ErrLocalUnauthorized && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)
}
