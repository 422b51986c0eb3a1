package wire

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The §3.4 response examples, read with the host's rules.
func TestParseHostResponseReferenceExamples(t *testing.T) {
	t.Parallel()
	t.Run("timer", func(t *testing.T) {
		t.Parallel()
		r, err := ParseHostResponse(200, "application/json", readFixture(t, "response_timer.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Outputs) != 0 || !reflect.DeepEqual(r.Logs, []string{"cleanup removed 12 rows"}) || r.ReturnValue != nil {
			t.Errorf("response = %+v", r)
		}
	})
	t.Run("service bus two messages", func(t *testing.T) {
		t.Parallel()
		r, err := ParseHostResponse(200, "application/json; charset=utf-8", readFixture(t, "response_servicebus.json"))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := ServiceBusOutputMessages(r.Outputs["outQueue"], "")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"{\n  \"orderId\": 42,\n  \"status\": \"accepted\"\n}", "{\n  \"orderId\": 42,\n  \"status\": \"audit\"\n}"}
		if len(msgs) != 2 || string(msgs[0]) != want[0] || string(msgs[1]) != want[1] {
			t.Errorf("messages = %q, want %q", msgs, want)
		}
	})
	t.Run("http res plus queue output", func(t *testing.T) {
		t.Parallel()
		r, err := ParseHostResponse(200, "application/json", readFixture(t, "response_http.json"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := ParseHTTPOutput(r.Outputs["res"])
		if err != nil {
			t.Fatal(err)
		}
		want := HTTPOut{StatusCode: 201, Headers: map[string]string{"Content-Type": "application/json", "Location": "/api/order/1005"}, Body: []byte(`{"id":1005,"state":"queued"}`)}
		if !reflect.DeepEqual(res, want) {
			t.Errorf("res = %+v, want %+v", res, want)
		}
		msgs, err := ServiceBusOutputMessages(r.Outputs["message"], "")
		if err != nil {
			t.Fatal(err)
		}
		// A JSON-object string is parsed and re-serialised indented.
		if len(msgs) != 1 || string(msgs[0]) != "{\n  \"id\": 1005\n}" {
			t.Errorf("message = %q", msgs)
		}
		if r.Logs[0] != "queued order 1005" {
			t.Errorf("logs = %q", r.Logs)
		}
	})
	t.Run("$return", func(t *testing.T) {
		t.Parallel()
		r, err := ParseHostResponse(200, "application/json", readFixture(t, "response_return.json"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := ParseHTTPOutput(r.ReturnValue)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 404 || string(res.Body) != "not found" {
			t.Errorf("res = %+v", res)
		}
		if r.Logs != nil {
			t.Errorf("logs = %#v, want none", r.Logs)
		}
	})
}

func TestParseHostResponseRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		ct      string
		body    string
		wantErr error
		check   func(t *testing.T, r HostResponse)
	}{
		{name: "500 discards body", status: 500, ct: "application/json", body: `{"Logs":["lost"]}`, wantErr: ErrHandlerStatus},
		{name: "404", status: 404, ct: "application/json", body: `{}`, wantErr: ErrHandlerStatus},
		{name: "text/plain (Go sniffing)", status: 200, ct: "text/plain; charset=utf-8", body: `{}`, wantErr: ErrHandlerContentType},
		{name: "missing content type", status: 200, ct: "", body: `{}`, wantErr: ErrHandlerContentType},
		{name: "empty body hangs the real host", status: 200, ct: "application/json", body: "", wantErr: ErrHandlerEmptyBody},
		{name: "null body hangs too", status: 200, ct: "application/json", body: " null ", wantErr: ErrHandlerEmptyBody},
		{name: "invalid JSON", status: 200, ct: "application/json", body: `{"Outputs":`, wantErr: ErrHandlerBody},
		{name: "array body", status: 200, ct: "application/json", body: `[]`, wantErr: ErrHandlerBody},
		{name: "Outputs not an object", status: 200, ct: "application/json", body: `{"Outputs":[1]}`, wantErr: ErrHandlerBody},
		{
			name: "text/json and unknown keys accepted", status: 200, ct: "text/json", body: `{"Whatever":1}`,
			check: func(t *testing.T, r HostResponse) {
				if r.Outputs == nil || len(r.Outputs) != 0 || r.Logs != nil || r.ReturnValue != nil {
					t.Errorf("response = %+v", r)
				}
			},
		},
		{
			name: "top-level keys case-insensitive, binding names case-sensitive", status: 204, ct: "application/json",
			body: `{"outputs":{"Res":{"statusCode":200}},"LOGS":["a",5,true,null],"returnvalue":"x"}`,
			check: func(t *testing.T, r HostResponse) {
				if _, ok := r.Outputs["Res"]; !ok {
					t.Errorf("Outputs = %v", r.Outputs)
				}
				if _, ok := r.Outputs["res"]; ok {
					t.Error("binding name matched case-insensitively")
				}
				if !reflect.DeepEqual(r.Logs, []string{"a", "5", "True", ""}) {
					t.Errorf("Logs = %q", r.Logs)
				}
				if string(r.ReturnValue) != `"x"` {
					t.Errorf("ReturnValue = %s", r.ReturnValue)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := ParseHostResponse(tt.status, tt.ct, []byte(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestParseHTTPOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		want    HTTPOut
		wantErr bool
	}{
		{"defaults", `{}`, HTTPOut{StatusCode: 200, Headers: map[string]string{}}, false},
		{"string containing an object", `"{\"statusCode\":202,\"body\":\"ok\"}"`, HTTPOut{StatusCode: 202, Headers: map[string]string{}, Body: []byte("ok")}, false},
		{"numeric string status", `{"statusCode":"418"}`, HTTPOut{StatusCode: 418, Headers: map[string]string{}}, false},
		{"status ignored", `{"status":500,"body":"x"}`, HTTPOut{StatusCode: 200, Headers: map[string]string{}, Body: []byte("x")}, false},
		{"case-insensitive fields", `{"StatusCode":201,"Headers":{"X-N":5,"X-B":true},"Body":"b"}`, HTTPOut{StatusCode: 201, Headers: map[string]string{"X-N": "5", "X-B": "True"}, Body: []byte("b")}, false},
		{"object body indented", `{"body":{"a":[1,2]}}`, HTTPOut{StatusCode: 200, Headers: map[string]string{}, Body: []byte("{\n  \"a\": [\n    1,\n    2\n  ]\n}")}, false},
		{"array body indented", `{"body":["x"]}`, HTTPOut{StatusCode: 200, Headers: map[string]string{}, Body: []byte("[\n  \"x\"\n]")}, false},
		{"bare string is not a response", `"not found"`, HTTPOut{}, true},
		{"array is not a response", `[{"statusCode":200}]`, HTTPOut{}, true},
		{"bad status", `{"statusCode":"abc"}`, HTTPOut{}, true},
		{"null content-type", `{"headers":{"content-type":null}}`, HTTPOut{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHTTPOutput(json.RawMessage(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, ErrHTTPOutputFormat) {
					t.Errorf("error %v does not wrap ErrHTTPOutputFormat", err)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestServiceBusOutputMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		raw      string
		dataType string
		want     []string
	}{
		{"base64 trap: test", `"test"`, "", []string{"System.Byte[]"}},
		{"base64 trap: order123", `"order123"`, "", []string{"System.Byte[]"}},
		{"base64 trap: empty string", `""`, "", []string{"System.Byte[]"}},
		{"binary dataType passes test through", `"test"`, "binary", []string{"test"}},
		{"not base64 (length)", `"order-42"`, "", []string{"order-42"}},
		{"not base64 (chars)", `"hello world!"`, "", []string{"hello world!"}},
		{"JSON-array string split", `"[\"a b\",{\"k\":1}]"`, "", []string{"a b", "{\n  \"k\": 1\n}"}},
		{"array of objects", `[{"a":1},{"b":2}]`, "", []string{"{\n  \"a\": 1\n}", "{\n  \"b\": 2\n}"}},
		{"array of scalars", `["x y",5,true,null]`, "", []string{"x y", "5", "True"}},
		{"object", `{"a":{"b":null}}`, "", []string{"{\n  \"a\": {\n    \"b\": null\n  }\n}"}},
		{"number", `42`, "", []string{"42"}},
		{"bool", `false`, "", []string{"False"}},
		{"null means no message", `null`, "", nil},
		{"broken JSON-looking string kept", `"{not json}"`, "", []string{"{not json}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ServiceBusOutputMessages(json.RawMessage(tt.raw), tt.dataType)
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, m := range got {
				gs = append(gs, string(m))
			}
			if !reflect.DeepEqual(gs, tt.want) {
				t.Errorf("messages = %q, want %q", gs, tt.want)
			}
		})
	}
	if _, err := ServiceBusOutputMessages(json.RawMessage(`{`), ""); err == nil {
		t.Error("invalid JSON accepted")
	}
}

func TestLooksLikeBase64(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"test": true, "order123": true, "abcd1234": true, "true": true, "": true,
		"aGVs bG8=": true, "aGVsbG8=\r\n": true, "ab==": true,
		"not found": true, "order-42": false, "hello": false, "a===": false, "ab=c": false, "{\"a\":1}": false,
	} {
		if got := LooksLikeBase64(s); got != want {
			t.Errorf("LooksLikeBase64(%q) = %v, want %v", s, got, want)
		}
	}
}

// Result helpers produce what ParseHTTPOutput (the host) reads back.
func TestHTTPResponseHelpers(t *testing.T) {
	t.Parallel()
	enc := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r := JSONHTTPResponse("res", 201, map[string]any{"ids": []int{1, 2}})
	out, err := ParseHTTPOutput(enc(r.Outputs["res"]))
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != 201 || string(out.Body) != `{"ids":[1,2]}` || !strings.HasPrefix(out.Headers["Content-Type"], "application/json") {
		t.Errorf("JSONHTTPResponse -> %+v", out)
	}
	r = HTTPResponse(ReturnBinding, 404, nil, "not found")
	if len(r.Outputs) != 0 {
		t.Errorf("$return outputs = %v", r.Outputs)
	}
	out, err = ParseHTTPOutput(enc(r.ReturnValue))
	if err != nil || out.StatusCode != 404 || string(out.Body) != "not found" {
		t.Errorf("$return -> %+v, %v", out, err)
	}
	r = JSONHTTPResponse("res", 200, make(chan int))
	out, _ = ParseHTTPOutput(enc(r.Outputs["res"]))
	if out.StatusCode != 500 {
		t.Errorf("unencodable value -> %+v", out)
	}
	r2 := r.WithOutput("message", map[string]int{"id": 1})
	if len(r.Outputs) != 1 || len(r2.Outputs) != 2 {
		t.Errorf("WithOutput changed the original or lost outputs: %v / %v", r.Outputs, r2.Outputs)
	}
}

func TestEffectiveOutputs(t *testing.T) {
	t.Parallel()
	r := HostResponse{
		Outputs:     map[string]json.RawMessage{"res": json.RawMessage(`{"statusCode":200}`), "q": json.RawMessage(`"a"`)},
		ReturnValue: json.RawMessage(`{"q":"from return","extra":1}`),
	}
	got := r.EffectiveOutputs(false)
	if string(got["q"]) != `"from return"` || string(got["extra"]) != `1` || string(got["res"]) != `{"statusCode":200}` {
		t.Errorf("merged outputs = %v", got)
	}
	if string(r.Outputs["q"]) != `"a"` {
		t.Error("EffectiveOutputs modified Outputs")
	}
	if got := r.EffectiveOutputs(true); len(got) != 2 || string(got["q"]) != `"a"` {
		t.Errorf("with $return binding = %v", got)
	}
}

func TestParseHTTPReturn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    string
		status int
		body   string
	}{
		{"object", `{"statusCode":404,"body":"not found"}`, 404, "not found"},
		{"object in a string", `"{\"statusCode\":201}"`, 201, ""},
		// Host issue #8352: a plain string that is valid base64 is decoded.
		{"base64 trap", `"test"`, 200, "\xb5\xeb\x2d"},
		{"plain string", `"not found."`, 200, "not found."},
		// .NET ignores whitespace: "not found" decodes as "notfound".
		{"spaces do not protect", `"not found"`, 200, "\x9e\x8b_\xa2\xe9\xdd"},
		{"number", `5`, 200, "5"},
		{"null", `null`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHTTPReturn(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if got.StatusCode != tt.status || string(got.Body) != tt.body {
				t.Errorf("got %d %q, want %d %q", got.StatusCode, got.Body, tt.status, tt.body)
			}
		})
	}
}

func TestUndeclaredOutputs(t *testing.T) {
	t.Parallel()
	outs := map[string]json.RawMessage{"res": nil, "Message": nil, "audit": nil}
	got := UndeclaredOutputs(outs, []OutputBinding{{Name: "res", Type: "http"}, {Name: "message", Type: "serviceBus"}})
	if !reflect.DeepEqual(got, []string{"Message", "audit"}) {
		t.Errorf("UndeclaredOutputs = %v", got)
	}
}
