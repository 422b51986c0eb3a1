package queue

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

func ptr[T any](v T) *T { return &v }

func TestBuildMessage(t *testing.T) {
	t.Parallel()
	paris := time.FixedZone("CET", 3600)
	at := time.Date(2025, 1, 15, 11, 5, 0, 0, paris)
	tests := []struct {
		name string
		in   Message
		want *azservicebus.Message
	}{
		{
			name: "minimal: default content type, nothing else set",
			in:   Message{MessageID: "alert-da1", Body: []byte(`{"id":"da1"}`)},
			want: &azservicebus.Message{
				MessageID:   ptr("alert-da1"),
				ContentType: ptr("application/json"),
				Body:        []byte(`{"id":"da1"}`),
			},
		},
		{
			name: "every field",
			in: Message{
				MessageID: "iso-da1", CorrelationID: "da1", SessionID: "machine-1",
				ContentType: "text/plain", Subject: "isolate", Body: []byte("hello"),
				Properties:           map[string]any{"alertId": "da1", "attempt": 2, "dryRun": false},
				ScheduledEnqueueTime: at,
			},
			want: &azservicebus.Message{
				MessageID: ptr("iso-da1"), CorrelationID: ptr("da1"), SessionID: ptr("machine-1"),
				ContentType: ptr("text/plain"), Subject: ptr("isolate"), Body: []byte("hello"),
				ApplicationProperties: map[string]any{"alertId": "da1", "attempt": 2, "dryRun": false},
				ScheduledEnqueueTime:  ptr(time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)),
			},
		},
		{
			name: "empty properties map is left out",
			in:   Message{MessageID: "m", Properties: map[string]any{}},
			want: &azservicebus.Message{MessageID: ptr("m"), ContentType: ptr("application/json")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := BuildMessage(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("BuildMessage =\n%#v\nwant\n%#v", got, tc.want)
			}
			if got.ScheduledEnqueueTime != nil && got.ScheduledEnqueueTime.Location() != time.UTC {
				t.Fatal("scheduled time is not UTC")
			}
		})
	}
}

func TestBuildMessageCopiesProperties(t *testing.T) {
	t.Parallel()
	props := map[string]any{"a": "1"}
	got, err := BuildMessage(Message{MessageID: "m", Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	props["a"] = "changed"
	if got.ApplicationProperties["a"] != "1" {
		t.Fatal("BuildMessage shares the caller's properties map")
	}
}

func TestBuildMessageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Message
		want string
	}{
		{"no message id", Message{Body: []byte("{}")}, "no MessageID"},
		{"long message id", Message{MessageID: strings.Repeat("x", 129)}, "longer than 128"},
		{"long session id", Message{MessageID: "m", SessionID: strings.Repeat("s", 129)}, "SessionID"},
		{"map property", Message{MessageID: "m", Properties: map[string]any{"nested": map[string]any{}}}, `"nested" has unsupported type`},
		{"nil property", Message{MessageID: "m", Properties: map[string]any{"n": nil}}, "unsupported type"},
		{"empty property name", Message{MessageID: "m", Properties: map[string]any{"": "x"}}, "empty name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := BuildMessage(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("BuildMessage error = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := BuildMessage(Message{MessageID: strings.Repeat("é", 128)}); err != nil {
		t.Fatalf("128 multi-byte characters refused: %v", err)
	}
}
