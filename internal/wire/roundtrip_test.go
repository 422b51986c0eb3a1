package wire

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"
)

// roundTrip sends req through the real body encoding and the server's
// envelope decoding.
func roundTrip(t *testing.T, fn string, req HostRequest) *Invocation {
	t.Helper()
	body, err := req.Body()
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return NewInvocation(fn, "rt", HostRequest(env), nil)
}

func TestRoundTripTimer(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 15, 10, 0, 0, 12345600, time.UTC)
	sys := Sys{MethodName: "ScheduledHunt", UtcNow: at.Add(5 * time.Minute), RandGuid: "0f5c6a52-9d7e-4f3b-a9a4-6b1d2c3e4f50"}
	monitored := TimerInfo{IsPastDue: true, ScheduleStatus: &ScheduleStatus{Last: at, Next: at.Add(5 * time.Minute), LastUpdated: at}}
	monitored.Schedule.AdjustForDST = true
	tests := []struct {
		name       string
		info       TimerInfo
		useMonitor bool
		retry      *RetryContext
		want       TimerInfo
	}{
		{"monitor on", monitored, true, nil, monitored},
		{"monitor off: ScheduleStatus null", monitored, false, nil, TimerInfo{IsPastDue: true, Schedule: monitored.Schedule}},
		{"retry context", TimerInfo{}, false, &RetryContext{RetryCount: 1, MaxRetryCount: 3, Exception: json.RawMessage(`{"Message":"boom"}`)}, TimerInfo{}},
		{"retry context without exception", TimerInfo{}, false, &RetryContext{RetryCount: 2, MaxRetryCount: -1}, TimerInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := TimerPayload("myTimer", tt.info, tt.useMonitor, sys, tt.retry)
			if err != nil {
				t.Fatal(err)
			}
			inv := roundTrip(t, "ScheduledHunt", req)
			got, err := inv.Timer("myTimer")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("timer = %+v, want %+v", got, tt.want)
			}
			if inv.Sys != sys {
				t.Errorf("sys = %+v, want %+v", inv.Sys, sys)
			}
			switch {
			case tt.retry == nil && inv.Retry != nil:
				t.Errorf("retry = %+v, want nil", inv.Retry)
			case tt.retry != nil:
				if inv.Retry == nil || inv.Retry.RetryCount != tt.retry.RetryCount || inv.Retry.MaxRetryCount != tt.retry.MaxRetryCount || string(inv.Retry.Exception) != string(tt.retry.Exception) {
					t.Errorf("retry = %+v, want %+v", inv.Retry, tt.retry)
				}
			}
		})
	}
}

func TestRoundTripServiceBus(t *testing.T) {
	t.Parallel()
	sys := Sys{MethodName: "ProcessOrder", UtcNow: time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC), RandGuid: "g"}
	full := ServiceBusMessage{
		Body:                    []byte(`{"orderId":42,"sku":"A-1"}`),
		MessageID:               "order-42",
		CorrelationID:           "corr-1",
		SessionID:               "sess-1",
		ContentType:             "application/json",
		Subject:                 "order",
		LockToken:               "8b6f4e2a-1111-2222-3333-444455556666",
		DeadLetterSource:        "orders",
		ReplyTo:                 "replies",
		To:                      "orders",
		PartitionKey:            "sess-1",
		ReplyToSessionID:        "r-1",
		TransactionPartitionKey: "sess-1",
		DeliveryCount:           3,
		SequenceNumber:          1 << 40,
		EnqueuedTime:            time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC),
		ExpiresAt:               time.Date(2025, 1, 29, 10, 5, 0, 0, time.UTC),
		ApplicationProperties:   map[string]any{"tenant": "contoso", "n": float64(5)},
	}
	withBody := func(m ServiceBusMessage, body string) ServiceBusMessage {
		m.Body = []byte(body)
		return m
	}
	tests := []struct {
		name     string
		msg      ServiceBusMessage
		dataType string
		want     ServiceBusMessage
	}{
		{"reference example with every field", full, "", full},
		{"plain text body", withBody(full, "hello"), "", withBody(full, "hello")},
		{"quoted JSON string body", withBody(full, `"hello"`), "", withBody(full, `"hello"`)},
		{"number body", withBody(full, "42"), "", withBody(full, "42")},
		{"JSON array body", withBody(full, `[{"a":1}]`), "", withBody(full, `[{"a":1}]`)},
		{"empty body", withBody(full, ""), "", withBody(full, "")},
		{"html and unicode", withBody(full, `{"t":"<b>&é</b>"}`), "", withBody(full, `{"t":"<b>&é</b>"}`)},
		{"binary", withBody(full, "\x00\x01\xffbin"), "binary", withBody(full, "\x00\x01\xffbin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := ServiceBusPayload("msg", tt.msg, tt.dataType, sys)
			if err != nil {
				t.Fatal(err)
			}
			inv := roundTrip(t, "ProcessOrder", req)
			var got ServiceBusMessage
			if tt.dataType == "binary" {
				got, err = inv.ServiceBusBinary("msg")
			} else {
				got, err = inv.ServiceBus("msg")
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Body == nil {
				got.Body = []byte{}
			}
			if tt.want.Body == nil {
				tt.want.Body = []byte{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("message =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// A body property named like a system key overwrites it on the host
// (§2.3); the decoder must not hand the body's value out as MessageId.
func TestRoundTripServiceBusShadowedKeys(t *testing.T) {
	t.Parallel()
	sys := Sys{MethodName: "F", UtcNow: time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)}
	tests := []struct {
		name         string
		body         string
		wantID       string
		wantDelivery int
		wantShadowed []string
	}{
		{"spoofed MessageId", `{"MessageId":"evil"}`, "", 2, []string{"MessageId"}},
		{"spoofed lower case", `{"messageid":"evil","deliveryCount":9}`, "", 0, []string{"MessageId", "DeliveryCount"}},
		{"no collision", `{"orderId":42}`, "real", 2, nil},
		{"array property skipped by the host", `{"MessageId":["x"]}`, "real", 2, nil},
		// The UserProperties alias still holds the real properties.
		{"object property replaces ApplicationProperties, alias recovers them", `{"ApplicationProperties":{"tenant":"evil"}}`, "real", 2, []string{"ApplicationProperties"}},
		{"bool property cast to True", `{"SessionId":true}`, "real", 2, []string{"SessionId"}},
		{"date property (Newtonsoft date cast)", `{"EnqueuedTime":"2030-01-01T00:00:00Z"}`, "real", 2, []string{"EnqueuedTime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := ServiceBusPayload("msg", ServiceBusMessage{
				Body: []byte(tt.body), MessageID: "real", DeliveryCount: 2, SessionID: "s",
				ApplicationProperties: map[string]any{"tenant": "contoso"},
			}, "", sys)
			if err != nil {
				t.Fatal(err)
			}
			got, err := roundTrip(t, "F", req).ServiceBus("msg")
			if err != nil {
				t.Fatal(err)
			}
			if got.MessageID != tt.wantID || got.DeliveryCount != tt.wantDelivery {
				t.Errorf("MessageID, DeliveryCount = %q, %d; want %q, %d", got.MessageID, got.DeliveryCount, tt.wantID, tt.wantDelivery)
			}
			for _, k := range tt.wantShadowed {
				if k == "ApplicationProperties" && got.ApplicationProperties["tenant"] != "contoso" {
					t.Errorf("ApplicationProperties = %v, want the real ones from UserProperties", got.ApplicationProperties)
				}
				if k == "EnqueuedTime" && !got.EnqueuedTime.Equal(sys.UtcNow) {
					t.Errorf("EnqueuedTime = %v, want the real one from EnqueuedTimeUtc", got.EnqueuedTime)
				}
				if k == "SessionId" && got.SessionID != "" {
					t.Errorf("shadowed SessionId handed out: %q", got.SessionID)
				}
			}
			if !reflect.DeepEqual(got.Shadowed, tt.wantShadowed) {
				t.Errorf("Shadowed = %v, want %v", got.Shadowed, tt.wantShadowed)
			}
		})
	}
}

func TestRoundTripHTTP(t *testing.T) {
	t.Parallel()
	sys := Sys{MethodName: "Approve", UtcNow: time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)}
	tests := []struct {
		name string
		in   IncomingHTTP
		want HTTPRequest
		auth string
		key  string
	}{
		{
			name: "JSON body with function key",
			in: IncomingHTTP{
				URL: "http://localhost:7071/api/approve/r-1?by=alice", Method: "POST",
				Header:    http.Header{"Content-Type": {"application/json"}},
				Body:      []byte(`{"approve":true}`),
				Params:    map[string]string{"id": "r-1"},
				AuthLevel: "Function", KeyID: "default",
			},
			want: HTTPRequest{
				URL: "http://localhost:7071/api/approve/r-1?by=alice", Method: "POST",
				Query: map[string]string{"by": "alice"},
				Headers: http.Header{"Content-Type": {"application/json"}, "Host": {"localhost:7071"},
					"Content-Length": {"16"}},
				Params: map[string]string{"id": "r-1"},
				Body:   []byte(`{"approve":true}`), HasBody: true,
			},
			auth: "Function", key: "default",
		},
		{
			name: "octet-stream body travels as base64",
			in: IncomingHTTP{
				URL: "http://h/api/up", Method: "PUT",
				Header: http.Header{"Content-Type": {"application/octet-stream"}},
				Body:   []byte{0, 1, 2, 0xff},
			},
			want: HTTPRequest{
				URL: "http://h/api/up", Method: "PUT", Query: map[string]string{},
				Headers: http.Header{"Content-Type": {"application/octet-stream"}, "Host": {"h"}, "Content-Length": {"4"}},
				Params:  map[string]string{}, Body: []byte{0, 1, 2, 0xff}, HasBody: true,
			},
		},
		{
			name: "no body",
			in:   IncomingHTTP{URL: "http://h/api/x?a=1&a=2"},
			want: HTTPRequest{
				URL: "http://h/api/x?a=1&a=2", Method: "GET", Query: map[string]string{"a": "1,2"},
				Headers: http.Header{"Host": {"h"}}, Params: map[string]string{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := HTTPPayload("req", tt.in, sys)
			if err != nil {
				t.Fatal(err)
			}
			got, err := roundTrip(t, "Approve", req).HTTP("req")
			if err != nil {
				t.Fatal(err)
			}
			if got.AuthLevel() != tt.auth || got.KeyID() != tt.key {
				t.Errorf("AuthLevel, KeyID = %q, %q; want %q, %q", got.AuthLevel(), got.KeyID(), tt.auth, tt.key)
			}
			got.Identities = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("request =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
