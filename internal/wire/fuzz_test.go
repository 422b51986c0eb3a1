package wire

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeData feeds arbitrary JSON as a Data value, as Metadata and as a
// whole request body: decoding hostile input must never panic, and the
// server must always answer JSON.
func FuzzDecodeData(f *testing.F) {
	seeds := []string{
		`"\"hello\""`, `"\"{\\\"a\\\":1}\""`, `"4"`, `"true"`, `"[\"m1\",\"m2\"]"`, `{"k":"v"}`, `"aGVsbG8="`,
		`{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}`,
		`{"Schedule":"x","ScheduleStatus":{"Last":5},"IsPastDue":"maybe"}`,
		`{"Url":"u","Method":"GET","Query":"{}","Headers":{"A":["1"],"B":"2","C":null},"Params":{},"Identities":[{"Claims":[{"Type":null}]}],"Body":{"x":1}}`,
		`{"Headers":{"A":[1]}}`, `{"Identities":"[]"}`, `null`, `""`, `"\""`, `[]`, `{}`, `1e999`, `"\"\\u0000\""`,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	for _, name := range []string{"request_timer.json", "request_servicebus.json", "request_servicebus_single.json", "request_http.json"} {
		b, err := readTestdata(name)
		if err == nil {
			f.Add(string(b))
		}
	}
	s := NewServer(&ServerOptions{Logger: discardLogger()})
	s.Handle("F", func(ctx context.Context, inv *Invocation) (Result, error) {
		for k := range inv.Data {
			_, _ = inv.Timer(k)
			_, _ = inv.ServiceBus(k)
			_, _ = inv.ServiceBusBinary(k)
			_, _ = inv.HTTP(k)
		}
		return Result{}, nil
	})
	f.Fuzz(func(t *testing.T, in string) {
		raw := json.RawMessage(in)
		_, _ = DecodeString(raw)
		_, _ = DecodeInt(raw)
		_, _ = DecodeInt64(raw)
		_, _ = DecodeBool(raw)
		_, _ = DecodeTime(raw)
		var v any
		_ = DecodeJSON(raw, &v)
		_, _ = ParseHTTPOutput(raw)
		_, _ = ServiceBusOutputMessages(raw, "")
		_, _ = ParseHostResponse(200, "application/json", raw)

		if json.Valid(raw) {
			md := map[string]json.RawMessage{
				"sys": raw, "RetryContext": raw, "DeliveryCount": raw, "MessageId": raw,
				"EnqueuedTime": raw, "ApplicationProperties": raw, "SequenceNumber": raw,
			}
			inv := NewInvocation("F", "id", HostRequest{Data: map[string]json.RawMessage{"b": raw}, Metadata: md}, nil)
			_, _ = inv.Timer("b")
			_, _ = inv.ServiceBus("b")
			_, _ = inv.ServiceBusBinary("b")
			_, _ = inv.HTTP("b")
			var target map[string]any
			_ = inv.Bind("b", &target)
		}

		// The whole input as a request body, and wrapped as a Data value.
		for _, body := range []string{in, `{"Data":{"b":` + in + `},"Metadata":{"sys":` + in + `}}`} {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("POST", "/F", strings.NewReader(body)))
			if !json.Valid(rec.Body.Bytes()) || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Fatalf("status %d, non-JSON answer %q", rec.Code, rec.Body)
			}
		}
	})
}

// FuzzServiceBusRoundTrip: any UTF-8 body the host encodes comes back
// byte for byte, and any string metadata survives the double encoding.
func FuzzServiceBusRoundTrip(f *testing.F) {
	for _, s := range []string{"", "hello", `"hello"`, `{"orderId":42,"sku":"A-1"}`, `[1,2]`, `42`, `null`, `"`, `\"`, "<&>", "é\u2028"} {
		f.Add(s, "id-1")
	}
	f.Fuzz(func(t *testing.T, body, id string) {
		if !utf8Valid(body) || !utf8Valid(id) {
			t.Skip()
		}
		req, err := ServiceBusPayload("msg", ServiceBusMessage{Body: []byte(body), MessageID: id, DeliveryCount: 1}, "", Sys{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := req.Body()
		if err != nil {
			t.Fatal(err)
		}
		var env envelope
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		m, err := NewInvocation("F", "", HostRequest(env), nil).ServiceBus("msg")
		if err != nil {
			t.Fatalf("decoding body %q: %v", body, err)
		}
		if string(m.Body) != body {
			t.Fatalf("body %q came back as %q", body, m.Body)
		}
		if len(m.Shadowed) == 0 && m.MessageID != id {
			t.Fatalf("MessageId %q came back as %q", id, m.MessageID)
		}
	})
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }
