package wire

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// loadRequest reads a testdata request the way the server decodes a body.
func loadRequest(t *testing.T, name string) HostRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	return HostRequest(env)
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestFixtureTimer(t *testing.T) {
	t.Parallel()
	inv := NewInvocation("CleanupTimer", "id-1", loadRequest(t, "request_timer.json"), nil)
	ti, err := inv.Timer("myTimer")
	if err != nil {
		t.Fatal(err)
	}
	if !ti.Schedule.AdjustForDST || ti.IsPastDue || ti.ScheduleStatus == nil {
		t.Fatalf("timer = %+v", ti)
	}
	st := ti.ScheduleStatus
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"Last", st.Last, mustTime(t, "2025-01-15T10:00:00.0123456Z")},
		{"Next", st.Next, mustTime(t, "2025-01-15T10:05:00Z")},
		{"LastUpdated", st.LastUpdated, mustTime(t, "2025-01-15T10:00:00.0123456Z")},
	} {
		if !c.got.Equal(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	wantSys := Sys{MethodName: "CleanupTimer", UtcNow: mustTime(t, "2025-01-15T10:05:00.0214567Z"), RandGuid: "0f5c6a52-9d7e-4f3b-a9a4-6b1d2c3e4f50"}
	if inv.Sys != wantSys {
		t.Errorf("sys = %+v, want %+v", inv.Sys, wantSys)
	}
	if inv.Retry != nil {
		t.Errorf("retry = %+v, want nil", inv.Retry)
	}
}

func TestFixtureServiceBus(t *testing.T) {
	t.Parallel()
	want := ServiceBusMessage{
		Body:                  []byte(`{"orderId":42,"sku":"A-1"}`),
		MessageID:             "order-42",
		ContentType:           "application/json",
		LockToken:             "8b6f4e2a-1111-2222-3333-444455556666",
		DeliveryCount:         1,
		SequenceNumber:        17,
		EnqueuedTime:          mustTime(t, "2025-01-15T10:05:00Z"),
		ExpiresAt:             mustTime(t, "2025-01-29T10:05:00Z"),
		ApplicationProperties: map[string]any{"tenant": "contoso"},
	}
	// Both the host's double encoding and the single-encoded fixture shape
	// (KarlGW/azfunc, docs) must give the same message.
	for _, file := range []string{"request_servicebus.json", "request_servicebus_single.json"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			inv := NewInvocation("ProcessOrder", "id-2", loadRequest(t, file), nil)
			got, err := inv.ServiceBus("msg")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("message =\n%+v\nwant\n%+v", got, want)
			}
			if inv.Sys.MethodName != "ProcessOrder" {
				t.Errorf("sys = %+v", inv.Sys)
			}
			var order struct {
				OrderID int    `json:"orderId"`
				SKU     string `json:"sku"`
			}
			if err := json.Unmarshal(got.Body, &order); err != nil || order.OrderID != 42 || order.SKU != "A-1" {
				t.Errorf("body %q -> %+v, %v", got.Body, order, err)
			}
			if s, err := inv.MetadataString("sku"); err != nil || s != "A-1" {
				t.Errorf("Metadata sku = %q, %v", s, err)
			}
		})
	}
}

func TestFixtureHTTP(t *testing.T) {
	t.Parallel()
	inv := NewInvocation("order", "id-3", loadRequest(t, "request_http.json"), nil)
	got, err := inv.HTTP("req")
	if err != nil {
		t.Fatal(err)
	}
	want := HTTPRequest{
		URL:    "http://localhost:7071/api/order?name=bob",
		Method: "POST",
		Query:  map[string]string{"name": "bob"},
		Headers: http.Header{
			"Accept": {"*/*"}, "Host": {"localhost:7071"},
			"Content-Type": {"application/json"}, "Content-Length": {"27"},
		},
		Params:     map[string]string{},
		Body:       []byte(`{"id":1005,"color":"black"}`),
		HasBody:    true,
		Identities: []Identity{{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("request =\n%+v\nwant\n%+v", got, want)
	}
	if got.AuthLevel() != "" {
		t.Errorf("AuthLevel = %q, want anonymous", got.AuthLevel())
	}
	if s, err := inv.MetadataString("name"); err != nil || s != "bob" {
		t.Errorf("Metadata name = %q, %v", s, err)
	}
}
