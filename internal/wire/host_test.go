package wire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"testing"
	"time"
)

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("invalid JSON %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func keys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// compareMaps checks want and got hold the same keys with JSON-equal
// values, skipping the keys in skip.
func compareMaps(t *testing.T, what string, got, want map[string]json.RawMessage, skip ...string) {
	t.Helper()
	skipped := map[string]bool{}
	for _, k := range skip {
		skipped[k] = true
	}
	for k, w := range want {
		if skipped[k] {
			continue
		}
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: key %q missing", what, k)
			continue
		}
		if !jsonEqual(t, g, w) {
			t.Errorf("%s[%q] = %s, want %s", what, k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !skipped[k] {
			t.Errorf("%s: unexpected key %q = %s", what, k, got[k])
		}
	}
}

// The §2.2 table, host side.
func TestEncodeValue(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 15, 10, 5, 0, 123456700, time.UTC)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"string", "hello", `"\"hello\""`},
		{"JSON body string", `{"a":1}`, `"\"{\\\"a\\\":1}\""`},
		{"int", 4, `"4"`},
		{"int64", int64(17), `"17"`},
		{"bool", true, `"true"`},
		{"string slice (batch)", []string{"m1", "m2"}, `"[\"m1\",\"m2\"]"`},
		{"map", map[string]string{"k": "v"}, `{"k":"v"}`},
		{"struct", struct{ Tenant string }{"contoso"}, `{"Tenant":"contoso"}`},
		{"bytes", []byte("hello"), `"aGVsbG8="`},
		{"DateTime", DateTime(at), `"2025-01-15T10:05:00"`},
		{"DateTimeOffset", DateTimeOffset(at), `"2025-01-15T10:05:00+00:00"`},
		{"time.Time", at, `"2025-01-15T10:05:00+00:00"`},
		{"raw object", json.RawMessage(`{ "a" : 1 }`), `{"a":1}`},
		{"raw number", json.RawMessage(`5`), `"5"`},
		{"no HTML escaping", "<a&b>", `"\"<a&b>\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EncodeValue(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("EncodeValue(%#v) = %s, want %s", tt.v, got, tt.want)
			}
		})
	}
	var nilMap map[string]string
	var nilPtr *int
	for _, v := range []any{nil, nilMap, nilPtr, json.RawMessage("null")} {
		if got, err := EncodeValue(v); got != nil || err != nil {
			t.Errorf("EncodeValue(%#v) = %s, %v; want omitted", v, got, err)
		}
	}
	if _, err := EncodeValue(make(chan int)); err == nil {
		t.Error("EncodeValue(chan) succeeded")
	}
}

func TestTimerPayloadMatchesReference(t *testing.T) {
	t.Parallel()
	want := loadRequest(t, "request_timer.json")
	info := TimerInfo{ScheduleStatus: &ScheduleStatus{
		Last:        mustTime(t, "2025-01-15T10:00:00.0123456Z"),
		Next:        mustTime(t, "2025-01-15T10:05:00Z"),
		LastUpdated: mustTime(t, "2025-01-15T10:00:00.0123456Z"),
	}}
	info.Schedule.AdjustForDST = true
	sys := Sys{MethodName: "CleanupTimer", UtcNow: mustTime(t, "2025-01-15T10:05:00.0214567Z"), RandGuid: "0f5c6a52-9d7e-4f3b-a9a4-6b1d2c3e4f50"}
	got, err := TimerPayload("myTimer", info, true, sys, nil)
	if err != nil {
		t.Fatal(err)
	}
	compareMaps(t, "Data", got.Data, want.Data)
	compareMaps(t, "Metadata", got.Metadata, want.Metadata)
	// Exact text of the dates, not only their value.
	if !bytes.Contains(got.Data["myTimer"], []byte(`"Last":"2025-01-15T10:00:00.0123456+00:00","Next":"2025-01-15T10:05:00+00:00"`)) {
		t.Errorf("timer dates not in the host's form: %s", got.Data["myTimer"])
	}
	if !bytes.Contains(got.Metadata["sys"], []byte(`"UtcNow":"2025-01-15T10:05:00.0214567Z"`)) {
		t.Errorf("sys not in the host's form: %s", got.Metadata["sys"])
	}
}

func TestServiceBusPayloadMatchesReference(t *testing.T) {
	t.Parallel()
	want := loadRequest(t, "request_servicebus.json")
	m := ServiceBusMessage{
		Body:                  []byte(`{"orderId":42,"sku":"A-1"}`),
		MessageID:             "order-42",
		ContentType:           "application/json",
		LockToken:             "8b6f4e2a-1111-2222-3333-444455556666",
		DeliveryCount:         1,
		SequenceNumber:        17,
		EnqueuedTime:          mustTime(t, "2025-01-15T10:05:00.75Z"), // fractions dropped on the wire
		ExpiresAt:             mustTime(t, "2025-01-29T10:05:00Z"),
		ApplicationProperties: map[string]any{"tenant": "contoso"},
	}
	sys := Sys{MethodName: "ProcessOrder", UtcNow: mustTime(t, "2025-01-15T10:05:00.1234567Z"), RandGuid: "3e0c..."}
	got, err := ServiceBusPayload("msg", m, "", sys)
	if err != nil {
		t.Fatal(err)
	}
	// Client names the namespace, which is local here.
	compareMaps(t, "Metadata", got.Metadata, want.Metadata, "Client")
	if string(got.Data["msg"]) != string(want.Data["msg"]) {
		t.Errorf("Data.msg = %s, want %s", got.Data["msg"], want.Data["msg"])
	}
	var client map[string]json.RawMessage
	if err := json.Unmarshal(got.Metadata["Client"], &client); err != nil {
		t.Fatal(err)
	}
	var wantClient map[string]json.RawMessage
	_ = json.Unmarshal(want.Metadata["Client"], &wantClient)
	if !reflect.DeepEqual(keys(client), keys(wantClient)) {
		t.Errorf("Client keys = %v, want %v", keys(client), keys(wantClient))
	}
}

func TestHTTPPayloadMatchesReference(t *testing.T) {
	t.Parallel()
	want := loadRequest(t, "request_http.json")
	in := IncomingHTTP{
		URL:    "http://localhost:7071/api/order?name=bob",
		Method: "POST",
		Header: http.Header{"Accept": {"*/*"}, "Content-Type": {"application/json"}},
		Body:   []byte(`{"id":1005,"color":"black"}`),
	}
	sys := Sys{MethodName: "order", UtcNow: mustTime(t, "2025-01-15T10:05:00.1Z"), RandGuid: "..."}
	got, err := HTTPPayload("req", in, sys)
	if err != nil {
		t.Fatal(err)
	}
	var gotReq, wantReq map[string]json.RawMessage
	if err := json.Unmarshal(got.Data["req"], &gotReq); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(want.Data["req"], &wantReq)
	// The reference shortens Identities; check the meaningful fields below.
	compareMaps(t, "Data.req", gotReq, wantReq, "Identities")
	var ids []map[string]any
	if err := json.Unmarshal(gotReq["Identities"], &ids); err != nil || len(ids) != 1 {
		t.Fatalf("Identities = %s, %v", gotReq["Identities"], err)
	}
	if ids[0]["AuthenticationType"] != nil || ids[0]["IsAuthenticated"] != false || len(ids[0]["Claims"].([]any)) != 0 {
		t.Errorf("anonymous identity = %v", ids[0])
	}
	// The reference's Metadata.Headers omits Content-Length; the host copies
	// every request header, so it is present here.
	var gotHdr, wantHdr map[string]json.RawMessage
	_ = json.Unmarshal(got.Metadata["Headers"], &gotHdr)
	_ = json.Unmarshal(want.Metadata["Headers"], &wantHdr)
	compareMaps(t, "Metadata.Headers", gotHdr, wantHdr, "Content-Length")
	compareMaps(t, "Metadata", got.Metadata, want.Metadata, "Headers")
}

func TestServiceBusPayloadRules(t *testing.T) {
	t.Parallel()
	sys := Sys{MethodName: "F", UtcNow: time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC), RandGuid: "g"}
	tests := []struct {
		name     string
		msg      ServiceBusMessage
		dataType string
		check    func(t *testing.T, r HostRequest)
		wantErr  bool
	}{
		{
			name: "null properties absent, settlement objects empty, no TTL is MaxValue",
			msg:  ServiceBusMessage{Body: []byte("plain"), MessageID: "m"},
			check: func(t *testing.T, r HostRequest) {
				for _, k := range []string{"CorrelationId", "SessionId", "Subject", "Label", "ReplyTo", "To", "PartitionKey", "DeadLetterSource", "LockToken", "TransactionPartitionKey", "ReplyToSessionId", "RetryContext"} {
					if v, ok := r.Metadata[k]; ok {
						t.Errorf("Metadata[%s] = %s, want absent", k, v)
					}
				}
				for _, k := range []string{"MessageReceiver", "MessageSession", "MessageActions", "SessionActions", "ReceiveActions", "ApplicationProperties", "UserProperties"} {
					if string(r.Metadata[k]) != "{}" {
						t.Errorf("Metadata[%s] = %s, want {}", k, r.Metadata[k])
					}
				}
				if string(r.Metadata["ExpiresAt"]) != `"9999-12-31T23:59:59+00:00"` || string(r.Metadata["ExpiresAtUtc"]) != `"9999-12-31T23:59:59"` {
					t.Errorf("ExpiresAt = %s / %s", r.Metadata["ExpiresAt"], r.Metadata["ExpiresAtUtc"])
				}
				if string(r.Metadata["EnqueuedTime"]) != `"2025-01-15T10:05:00+00:00"` {
					t.Errorf("EnqueuedTime = %s, want sys.UtcNow", r.Metadata["EnqueuedTime"])
				}
				if string(r.Data["b"]) != `"\"plain\""` {
					t.Errorf("Data = %s", r.Data["b"])
				}
			},
		},
		{
			name: "Subject also as Label",
			msg:  ServiceBusMessage{Body: []byte("x"), Subject: "alert"},
			check: func(t *testing.T, r HostRequest) {
				if string(r.Metadata["Subject"]) != `"\"alert\""` || string(r.Metadata["Label"]) != `"\"alert\""` {
					t.Errorf("Subject/Label = %s / %s", r.Metadata["Subject"], r.Metadata["Label"])
				}
			},
		},
		{
			name: "body properties: scalars as strings, objects kept, arrays and nulls skipped, trigger suffix dropped, system key overwritten",
			msg: ServiceBusMessage{
				Body:      []byte(`{"MessageId":"spoof","n":5,"ok":true,"f":1.5,"obj":{"a":[1]},"arr":[1,2],"nil":null,"myTrigger":"x","at":"2025-01-15T10:05:00Z"}`),
				MessageID: "real",
			},
			check: func(t *testing.T, r HostRequest) {
				want := map[string]string{
					"MessageId": `"\"spoof\""`, "n": `"\"5\""`, "ok": `"\"True\""`, "f": `"\"1.5\""`,
					"obj": `{"a":[1]}`, "at": `"\"01/15/2025 10:05:00\""`,
				}
				for k, w := range want {
					if string(r.Metadata[k]) != w {
						t.Errorf("Metadata[%s] = %s, want %s", k, r.Metadata[k], w)
					}
				}
				for _, k := range []string{"arr", "nil", "myTrigger"} {
					if _, ok := r.Metadata[k]; ok {
						t.Errorf("Metadata[%s] present, want skipped", k)
					}
				}
			},
		},
		{
			name: "case-insensitive overwrite keeps the system spelling",
			msg:  ServiceBusMessage{Body: []byte(`{"messageid":"spoof"}`), MessageID: "real"},
			check: func(t *testing.T, r HostRequest) {
				if string(r.Metadata["MessageId"]) != `"\"spoof\""` {
					t.Errorf("MessageId = %s", r.Metadata["MessageId"])
				}
				if _, ok := r.Metadata["messageid"]; ok {
					t.Error("separate lower-case key added")
				}
			},
		},
		{
			name:     "binary: base64 data, no body properties",
			msg:      ServiceBusMessage{Body: []byte(`{"orderId":42}`)},
			dataType: "binary",
			check: func(t *testing.T, r HostRequest) {
				if string(r.Data["b"]) != `"eyJvcmRlcklkIjo0Mn0="` {
					t.Errorf("Data = %s", r.Data["b"])
				}
				if _, ok := r.Metadata["orderId"]; ok {
					t.Error("body property added in binary mode")
				}
			},
		},
		{name: "invalid UTF-8 in string mode", msg: ServiceBusMessage{Body: []byte{0xff, 0xfe}}, wantErr: true},
		{name: "unknown dataType", msg: ServiceBusMessage{Body: []byte("x")}, dataType: "stream", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := ServiceBusPayload("b", tt.msg, tt.dataType, sys)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil {
				tt.check(t, r)
			}
		})
	}
}

func TestHTTPPayloadRules(t *testing.T) {
	t.Parallel()
	sys := Sys{MethodName: "F", UtcNow: time.Date(2025, 1, 15, 10, 5, 0, 0, time.UTC)}
	r, err := HTTPPayload("req", IncomingHTTP{
		URL:    "https://example.test/api/items/7?tag=a&tag=b&code=SECRET",
		Header: http.Header{"X-Multi": {"1", "2"}},
		Params: map[string]string{"id": "7"},
	}, sys)
	if err != nil {
		t.Fatal(err)
	}
	var req map[string]json.RawMessage
	if err := json.Unmarshal(r.Data["req"], &req); err != nil {
		t.Fatal(err)
	}
	if _, ok := req["Body"]; ok {
		t.Error("Body present for an empty request body")
	}
	if string(req["Method"]) != `"GET"` {
		t.Errorf("Method = %s", req["Method"])
	}
	if !jsonEqual(t, req["Query"], json.RawMessage(`{"tag":"a,b","code":"SECRET"}`)) {
		t.Errorf("Query = %s", req["Query"])
	}
	if !jsonEqual(t, req["Params"], json.RawMessage(`{"id":"7"}`)) {
		t.Errorf("Params = %s", req["Params"])
	}
	if _, ok := r.Metadata["code"]; ok {
		t.Error("Metadata holds the function key (code)")
	}
	if string(r.Metadata["tag"]) != `"\"a,b\""` || string(r.Metadata["id"]) != `"\"7\""` {
		t.Errorf("Metadata tag/id = %s / %s", r.Metadata["tag"], r.Metadata["id"])
	}
	var hdr map[string]string
	if err := json.Unmarshal(r.Metadata["Headers"], &hdr); err != nil || hdr["X-Multi"] != "1,2" || hdr["Host"] != "example.test" {
		t.Errorf("Metadata.Headers = %s, %v", r.Metadata["Headers"], err)
	}
	if _, err := HTTPPayload("req", IncomingHTTP{URL: "/relative"}, sys); err == nil {
		t.Error("relative URL accepted")
	}
}
