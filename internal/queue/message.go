package queue

import (
	"errors"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// DefaultContentType is the ContentType of a Message that sets none.
const DefaultContentType = "application/json"

// Service Bus limits on message identifiers.
const (
	MaxMessageIDLen = 128
	MaxSessionIDLen = 128
)

// ValidateMessage checks what Service Bus would refuse, or what would make
// duplicate detection useless, before anything is sent: a MessageID is
// required (at most 128 characters), a SessionID at most 128 characters,
// and application properties must be scalars (string, bool, integer,
// float, time.Time).
func ValidateMessage(m Message) error {
	var errs []error
	switch {
	case m.MessageID == "":
		errs = append(errs, errors.New("message has no MessageID (required: it drives duplicate detection)"))
	case utf8.RuneCountInString(m.MessageID) > MaxMessageIDLen:
		errs = append(errs, fmt.Errorf("MessageID %.40q... is longer than %d characters", m.MessageID, MaxMessageIDLen))
	}
	if utf8.RuneCountInString(m.SessionID) > MaxSessionIDLen {
		errs = append(errs, fmt.Errorf("SessionID %.40q... is longer than %d characters", m.SessionID, MaxSessionIDLen))
	}
	for k, v := range m.Properties {
		if k == "" {
			errs = append(errs, errors.New("application property with an empty name"))
		}
		switch v.(type) {
		case string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Time:
		default:
			errs = append(errs, fmt.Errorf("application property %q has unsupported type %T", k, v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid message %q: %w", m.MessageID, err)
	}
	return nil
}

// BuildMessage maps m onto an azservicebus.Message: MessageID (required),
// CorrelationID, SessionID and Subject when set, ContentType (default
// application/json), ApplicationProperties (a copy) when any,
// ScheduledEnqueueTime (UTC) when non-zero, and Body.
//
//	sbm, err := queue.BuildMessage(queue.Message{MessageID: "iso-" + alertID, Body: body})
func BuildMessage(m Message) (*azservicebus.Message, error) {
	if err := ValidateMessage(m); err != nil {
		return nil, err
	}
	ct := m.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	out := &azservicebus.Message{
		MessageID:   &m.MessageID,
		ContentType: &ct,
		Body:        m.Body,
	}
	if m.CorrelationID != "" {
		out.CorrelationID = &m.CorrelationID
	}
	if m.SessionID != "" {
		out.SessionID = &m.SessionID
	}
	if m.Subject != "" {
		out.Subject = &m.Subject
	}
	if len(m.Properties) > 0 {
		out.ApplicationProperties = maps.Clone(m.Properties)
	}
	if !m.ScheduledEnqueueTime.IsZero() {
		t := m.ScheduledEnqueueTime.UTC()
		out.ScheduledEnqueueTime = &t
	}
	return out, nil
}

// cloneMessage deep-copies m so a recorder or a retry never sees the
// caller's later changes.
func cloneMessage(m Message) Message {
	if m.Body != nil {
		m.Body = append([]byte(nil), m.Body...)
	}
	if m.Properties != nil {
		m.Properties = maps.Clone(m.Properties)
	}
	return m
}
