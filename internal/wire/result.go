package wire

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// Result is what a Func returns; the server writes it as the response
// envelope {"Outputs":{...},"Logs":[...],"ReturnValue":...} (§3.1).
//
// Outputs keys are output binding names (case-sensitive on the host side).
// Values follow §3.2: for an "http" output use HTTPResponse; for other
// outputs prefer objects (structs, maps) or arrays of them. A plain string
// that is valid base64 ("test", "order123", "") is turned into bytes by the
// host unless the binding has "dataType": "binary" (see LooksLikeBase64).
// ReturnValue is used only with a "$return" binding; keep it nil otherwise
// (a non-nil object would be merged into Outputs by the host).
type Result struct {
	Outputs     map[string]any
	Logs        []string
	ReturnValue any
}

// WithOutput returns r with Outputs[binding] = v (the map is copied).
func (r Result) WithOutput(binding string, v any) Result {
	out := make(map[string]any, len(r.Outputs)+1)
	for k, val := range r.Outputs {
		out[k] = val
	}
	out[binding] = v
	r.Outputs = out
	return r
}

// ReturnBinding is the binding name whose value travels in ReturnValue.
const ReturnBinding = "$return"

// HTTPResponse builds a Result answering an HTTP trigger through the http
// output binding named binding ("$return" puts it in ReturnValue). The body
// is always sent as a string, never an array (host issue #6575), and the
// status as statusCode (the host ignores "status", §3.2).
func HTTPResponse(binding string, status int, headers map[string]string, body string) Result {
	res := httpOutput{StatusCode: status, Headers: headers, Body: body}
	if binding == ReturnBinding {
		return Result{Outputs: map[string]any{}, ReturnValue: res}
	}
	return Result{Outputs: map[string]any{binding: res}}
}

// JSONHTTPResponse is HTTPResponse with body = the JSON encoding of v and
// Content-Type application/json. If v cannot be encoded the response is a
// 500 with a fixed JSON error body.
func JSONHTTPResponse(binding string, status int, v any) Result {
	hdr := map[string]string{"Content-Type": "application/json; charset=utf-8"}
	b, err := json.Marshal(v)
	if err != nil {
		return HTTPResponse(binding, 500, hdr, `{"error":"encoding response failed"}`)
	}
	return HTTPResponse(binding, status, hdr, string(b))
}

// httpOutput is the object the host's HttpOutputBindingResponse expects.
type httpOutput struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body"`
}

// LooksLikeBase64 reports whether the host would turn the output string s
// into bytes: .NET Convert.FromBase64String ignores whitespace, accepts the
// empty string and needs a multiple of 4 characters of [A-Za-z0-9+/] with
// at most two trailing "=" (§3.2). "test" and "order123" are such strings.
func LooksLikeBase64(s string) bool {
	_, ok := dotNetBase64(s)
	return ok
}

// dotNetBase64 decodes s the way Convert.FromBase64String does.
func dotNetBase64(s string) ([]byte, bool) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	b, err := base64.StdEncoding.DecodeString(clean)
	return b, err == nil
}
