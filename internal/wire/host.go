package wire

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HostRequest is the invocation request body the host sends (§2.1):
// {"Data":{...},"Metadata":{...}}. Values are already encoded (EncodeValue).
type HostRequest struct {
	Data     map[string]json.RawMessage
	Metadata map[string]json.RawMessage
}

// Body returns the compact JSON body, without HTML escaping, as Newtonsoft
// writes it. Nil maps are written as {}.
func (r HostRequest) Body() ([]byte, error) {
	env := struct {
		Data     map[string]json.RawMessage `json:"Data"`
		Metadata map[string]json.RawMessage `json:"Metadata"`
	}{r.Data, r.Metadata}
	if env.Data == nil {
		env.Data = map[string]json.RawMessage{}
	}
	if env.Metadata == nil {
		env.Metadata = map[string]json.RawMessage{}
	}
	b, err := marshalNoEscape(env)
	if err != nil {
		return nil, fmt.Errorf("encoding host request: %w", err)
	}
	return b, nil
}

// DefaultHostVersion is the host version the local host reports.
const DefaultHostVersion = "4.1037.0.0"

// NewInvocationRequest builds the POST the host sends to invoke function
// (§2.1): path "/<function>" under baseURL ("http://127.0.0.1:<port>"),
// Content-Type "application/json; charset=utf-8", the invocation id and host
// version headers, and the User-Agent. With chunked true the body has no
// Content-Length (as the real host's ObjectContent, [inferred]).
func NewInvocationRequest(ctx context.Context, baseURL, function, invocationID, hostVersion string, req HostRequest, chunked bool) (*http.Request, error) {
	if function == "" || strings.ContainsAny(function, "/?#") {
		return nil, fmt.Errorf("building invocation request: invalid function name %q", function)
	}
	if hostVersion == "" {
		hostVersion = DefaultHostVersion
	}
	body, err := req.Body()
	if err != nil {
		return nil, err
	}
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length: net/http sends chunked
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+"/"+url.PathEscape(function), rd)
	if err != nil {
		return nil, fmt.Errorf("building invocation request: %w", err)
	}
	if chunked {
		hr.ContentLength = -1
	}
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	hr.Header.Set(HeaderInvocationID, invocationID)
	hr.Header.Set(HeaderHostVersion, hostVersion)
	hr.Header.Set("User-Agent", "Azure-Functions-Host/"+hostVersion)
	return hr, nil
}

// sysObject is the host's SystemBindingData as it appears in Metadata.sys.
func sysObject(sys Sys) (json.RawMessage, error) {
	return marshalNoEscape(struct {
		MethodName string
		UtcNow     string
		RandGuid   string
	}{sys.MethodName, newtonsoftTime(sys.UtcNow, true), sys.RandGuid})
}

func retryObject(rc *RetryContext) (json.RawMessage, error) {
	ex := bytes.TrimSpace(rc.Exception)
	if len(ex) == 0 {
		ex = []byte("null")
	}
	if !json.Valid(ex) {
		return nil, errors.New("encoding RetryContext: Exception is not valid JSON")
	}
	return marshalNoEscape(struct {
		RetryCount    int
		MaxRetryCount int
		Exception     json.RawMessage
	}{rc.RetryCount, rc.MaxRetryCount, ex})
}

// baseMetadata returns Metadata with sys (and RetryContext when rc != nil).
func baseMetadata(sys Sys, rc *RetryContext) (map[string]json.RawMessage, error) {
	md := map[string]json.RawMessage{}
	s, err := sysObject(sys)
	if err != nil {
		return nil, fmt.Errorf("encoding sys: %w", err)
	}
	md["sys"] = s
	if rc != nil {
		r, err := retryObject(rc)
		if err != nil {
			return nil, err
		}
		md["RetryContext"] = r
	}
	return md, nil
}

// putMeta encodes v under key following the host's rules: null values are
// omitted and keys ending with "trigger" (any case) are dropped (§2.1).
func putMeta(md map[string]json.RawMessage, key string, v any) error {
	if strings.HasSuffix(strings.ToLower(key), "trigger") {
		return nil
	}
	enc, err := EncodeValue(v)
	if err != nil {
		return fmt.Errorf("encoding metadata %s: %w", key, err)
	}
	if enc == nil {
		return nil
	}
	md[key] = enc
	return nil
}

// optString is nil for an empty string: the host omits null properties, and
// Go cannot tell "" from unset.
func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// TimerPayload builds the timer trigger request (§2.3): Data[binding] is
// the TimerInfo object (dates in Newtonsoft's full-precision form with the
// offset; ScheduleStatus null when useMonitor is false or info has none);
// Metadata holds sys and, with a retry policy, RetryContext.
func TimerPayload(binding string, info TimerInfo, useMonitor bool, sys Sys, retry *RetryContext) (HostRequest, error) {
	type status struct{ Last, Next, LastUpdated string }
	obj := struct {
		Schedule       struct{ AdjustForDST bool }
		ScheduleStatus *status
		IsPastDue      bool
	}{Schedule: info.Schedule, IsPastDue: info.IsPastDue}
	if useMonitor && info.ScheduleStatus != nil {
		st := info.ScheduleStatus
		obj.ScheduleStatus = &status{newtonsoftTime(st.Last, false), newtonsoftTime(st.Next, false), newtonsoftTime(st.LastUpdated, false)}
	}
	data, err := marshalNoEscape(obj)
	if err != nil {
		return HostRequest{}, fmt.Errorf("encoding timer payload: %w", err)
	}
	md, err := baseMetadata(sys, retry)
	if err != nil {
		return HostRequest{}, fmt.Errorf("encoding timer payload: %w", err)
	}
	return HostRequest{Data: map[string]json.RawMessage{binding: data}, Metadata: md}, nil
}

// LocalServiceBusNamespace is the namespace the local host reports in
// Metadata.Client.
const LocalServiceBusNamespace = "localhost.servicebus.windows.net"

// maxDateTimeOffset is DateTimeOffset.MaxValue, Service Bus's ExpiresAt for
// messages without a time to live.
var maxDateTimeOffset = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// ServiceBusPayload builds a Service Bus trigger request for one message
// (extension 5.x, §2.3).
//
// Data[binding]: dataType "" or "string" → the body as a double-encoded
// string (the body must be valid UTF-8, as the extension decodes strictly);
// "binary" → base64. Metadata: DeliveryCount and SequenceNumber as number
// text; string properties double-encoded and absent when empty; ExpiresAt /
// EnqueuedTime as DateTimeOffset and ExpiresAtUtc / EnqueuedTimeUtc as
// DateTime (seconds precision); ApplicationProperties and its alias
// UserProperties as objects (always present); the settlement objects
// (MessageReceiver, MessageSession, MessageActions, SessionActions,
// ReceiveActions) as {}; Client; sys. A zero ExpiresAt means no TTL
// (DateTimeOffset.MaxValue); a zero EnqueuedTime takes sys.UtcNow.
//
// In string mode, a body that is a JSON object adds one key per top-level
// property (Utility.ApplyBindingData): arrays and nulls skipped, objects
// kept, scalars cast to .NET strings ("42", "True"; ISO date strings become
// "MM/dd/yyyy HH:mm:ss" [inferred from Newtonsoft's DateParseHandling]).
// These keys overwrite system keys case-insensitively (keeping the system
// key's spelling, [inferred]) and are dropped when they end with "trigger".
func ServiceBusPayload(binding string, m ServiceBusMessage, dataType string, sys Sys) (HostRequest, error) {
	var data json.RawMessage
	var err error
	binary := false
	switch strings.ToLower(dataType) {
	case "", "string":
		if !utf8.Valid(m.Body) {
			return HostRequest{}, errors.New("encoding service bus payload: body is not valid UTF-8 (the extension would fail the message; use dataType binary)")
		}
		data, err = EncodeValue(string(m.Body))
	case "binary":
		binary = true
		data, err = EncodeValue(m.Body)
		if data == nil && err == nil {
			data = json.RawMessage(`""`)
		}
	default:
		return HostRequest{}, fmt.Errorf("encoding service bus payload: unsupported dataType %q", dataType)
	}
	if err != nil {
		return HostRequest{}, fmt.Errorf("encoding service bus payload: %w", err)
	}

	md, err := baseMetadata(sys, nil)
	if err != nil {
		return HostRequest{}, fmt.Errorf("encoding service bus payload: %w", err)
	}
	enq := m.EnqueuedTime
	if enq.IsZero() {
		enq = sys.UtcNow
	}
	enq = enq.UTC()
	exp := m.ExpiresAt
	if exp.IsZero() {
		exp = maxDateTimeOffset
	}
	exp = exp.UTC()
	props := m.ApplicationProperties
	if props == nil {
		props = map[string]any{}
	}
	empty := json.RawMessage(`{}`)
	client := map[string]any{
		"FullyQualifiedNamespace": LocalServiceBusNamespace,
		"Identifier":              "local-" + sys.RandGuid,
		"IsClosed":                false,
		"TransportType":           0,
	}
	entries := []struct {
		key string
		val any
	}{
		{"MessageReceiver", empty}, {"MessageSession", empty}, {"MessageActions", empty},
		{"SessionActions", empty}, {"ReceiveActions", empty}, {"Client", client},
		{"DeliveryCount", m.DeliveryCount},
		{"DeadLetterSource", optString(m.DeadLetterSource)},
		{"LockToken", optString(m.LockToken)},
		{"ExpiresAtUtc", DateTime(exp)},
		{"ExpiresAt", DateTimeOffset(exp)},
		{"EnqueuedTimeUtc", DateTime(enq)},
		{"EnqueuedTime", DateTimeOffset(enq)},
		{"MessageId", optString(m.MessageID)},
		{"ContentType", optString(m.ContentType)},
		{"ReplyTo", optString(m.ReplyTo)},
		{"SequenceNumber", m.SequenceNumber},
		{"To", optString(m.To)},
		{"Subject", optString(m.Subject)},
		{"Label", optString(m.Subject)},
		{"CorrelationId", optString(m.CorrelationID)},
		{"SessionId", optString(m.SessionID)},
		{"ReplyToSessionId", optString(m.ReplyToSessionID)},
		{"PartitionKey", optString(m.PartitionKey)},
		{"TransactionPartitionKey", optString(m.TransactionPartitionKey)},
		{"ApplicationProperties", props},
		{"UserProperties", props},
	}
	for _, e := range entries {
		if err := putMeta(md, e.key, e.val); err != nil {
			return HostRequest{}, fmt.Errorf("encoding service bus payload: %w", err)
		}
	}
	if !binary {
		if err := applyBindingData(md, m.Body); err != nil {
			return HostRequest{}, fmt.Errorf("encoding service bus payload: %w", err)
		}
	}
	return HostRequest{Data: map[string]json.RawMessage{binding: data}, Metadata: md}, nil
}

// isoDate matches the strings Newtonsoft's reader turns into DateTime.
var isoDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})?$`)

// propertyCast is the (string) cast ApplyBindingData applies to a scalar
// body property: dotNetString, except that strings Newtonsoft's reader
// parses as dates come out in invariant-culture DateTime form, UTC clock
// time [inferred].
func propertyCast(v json.RawMessage) string {
	s := dotNetString(v)
	if len(v) == 0 || v[0] != '"' || !isoDate.MatchString(s) {
		return s
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format("01/02/2006 15:04:05")
	}
	if t, err := time.Parse("2006-01-02T15:04:05.9999999", s); err == nil {
		return t.Format("01/02/2006 15:04:05")
	}
	return s
}

// applyBindingData mirrors Utility.ApplyBindingData for a string trigger
// value: a JSON-object body adds its top-level properties to the metadata.
func applyBindingData(md map[string]json.RawMessage, body []byte) error {
	b := bytes.TrimSpace(body)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil
	}
	var props map[string]json.RawMessage
	if json.Unmarshal(b, &props) != nil {
		return nil // the host swallows parse errors
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := bytes.TrimSpace(props[k])
		if isNull(v) || v[0] == '[' {
			continue
		}
		var val any
		if v[0] == '{' {
			val = json.RawMessage(v)
		} else {
			val = propertyCast(v)
		}
		key := k
		for existing := range md {
			if strings.EqualFold(existing, k) {
				key = existing
				break
			}
		}
		if err := putMeta(md, key, val); err != nil {
			return err
		}
	}
	return nil
}

// IncomingHTTP is the client request the local host received for an HTTP
// trigger (payload mode).
type IncomingHTTP struct {
	URL       string      // full URL: scheme://host/path?query
	Method    string      // default GET
	Header    http.Header // as received; Host is added from URL when missing
	Body      []byte
	Params    map[string]string // route values
	AuthLevel string            // "", "Function", "Admin", ... ("" = anonymous)
	KeyID     string            // name of the key used, with AuthLevel
}

// claimsIdentity is a serialised ClaimsIdentity (§2.3).
type claimsIdentity struct {
	AuthenticationType *string
	IsAuthenticated    bool
	Actor              *string
	BootstrapContext   *string
	Claims             []claimJSON
	Label              *string
	Name               *string
	NameClaimType      string
	RoleClaimType      string
}

type claimJSON struct {
	Issuer         string
	OriginalIssuer string
	Properties     map[string]string
	Type           string
	Value          string
	ValueType      string
}

const (
	nameClaimType = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	roleClaimType = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	xsdString     = "http://www.w3.org/2001/XMLSchema#string"
)

// HTTPPayload builds an HTTP trigger request in payload mode (§2.3).
// Data[binding] is the GetRequestAsJObject object: Url, Method, Query
// (repeated keys joined with ","), Headers (arrays of strings), Params,
// Identities, and Body only when the body is not empty (base64 for
// application/octet-stream and multipart/*). Metadata holds one key per
// query parameter except "code", the route parameters, Query, Headers
// (single strings) and sys.
func HTTPPayload(binding string, in IncomingHTTP, sys Sys) (HostRequest, error) {
	u, err := url.Parse(in.URL)
	if err != nil || u.Host == "" {
		return HostRequest{}, fmt.Errorf("encoding http payload: invalid URL %q", in.URL)
	}
	method := in.Method
	if method == "" {
		method = http.MethodGet
	}
	hdr := in.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if hdr.Get("Host") == "" {
		hdr.Set("Host", u.Host)
	}
	if len(in.Body) > 0 && hdr.Get("Content-Length") == "" {
		hdr.Set("Content-Length", strconv.Itoa(len(in.Body)))
	}
	query := map[string]string{}
	for k, vs := range u.Query() {
		query[k] = strings.Join(vs, ",")
	}
	params := in.Params
	if params == nil {
		params = map[string]string{}
	}
	headersArr := map[string][]string{}
	headersOne := map[string]string{}
	for k, vs := range hdr {
		headersArr[k] = vs
		headersOne[k] = strings.Join(vs, ",")
	}

	id := claimsIdentity{Claims: []claimJSON{}, NameClaimType: nameClaimType, RoleClaimType: roleClaimType}
	if in.AuthLevel != "" {
		at := AuthLevelIdentityType
		id.AuthenticationType = &at
		id.IsAuthenticated = true
		claim := func(typ, val string) claimJSON {
			return claimJSON{Issuer: "LOCAL AUTHORITY", OriginalIssuer: "LOCAL AUTHORITY", Properties: map[string]string{}, Type: typ, Value: val, ValueType: xsdString}
		}
		id.Claims = append(id.Claims, claim(ClaimAuthLevel, in.AuthLevel))
		if in.KeyID != "" {
			id.Claims = append(id.Claims, claim(ClaimKeyID, in.KeyID))
		}
	}

	req := struct {
		URL        string            `json:"Url"`
		Method     string            `json:"Method"`
		Query      map[string]string `json:"Query"`
		Headers    map[string][]string
		Params     map[string]string
		Identities []claimsIdentity
		Body       *string `json:",omitempty"`
	}{u.String(), method, query, headersArr, params, []claimsIdentity{id}, nil}
	if len(in.Body) > 0 {
		var s string
		if isBase64MediaType(hdr.Get("Content-Type")) {
			s = base64.StdEncoding.EncodeToString(in.Body)
		} else {
			s = string(in.Body)
		}
		req.Body = &s
	}
	data, err := marshalNoEscape(req)
	if err != nil {
		return HostRequest{}, fmt.Errorf("encoding http payload: %w", err)
	}

	md, err := baseMetadata(sys, nil)
	if err != nil {
		return HostRequest{}, fmt.Errorf("encoding http payload: %w", err)
	}
	for k, v := range query {
		if strings.EqualFold(k, "code") {
			continue
		}
		if err := putMeta(md, k, v); err != nil {
			return HostRequest{}, fmt.Errorf("encoding http payload: %w", err)
		}
	}
	for k, v := range params {
		if err := putMeta(md, k, v); err != nil {
			return HostRequest{}, fmt.Errorf("encoding http payload: %w", err)
		}
	}
	if err := putMeta(md, "Query", query); err != nil {
		return HostRequest{}, fmt.Errorf("encoding http payload: %w", err)
	}
	if err := putMeta(md, "Headers", headersOne); err != nil {
		return HostRequest{}, fmt.Errorf("encoding http payload: %w", err)
	}
	return HostRequest{Data: map[string]json.RawMessage{binding: data}, Metadata: md}, nil
}

// ---- Responses ----

// HostResponse is a handler answer as the host reads it (§3.1).
type HostResponse struct {
	Outputs     map[string]json.RawMessage // binding names case-sensitive
	Logs        []string
	ReturnValue json.RawMessage // nil when absent or null
}

// Errors ParseHostResponse reports, one per way the real host fails.
var (
	ErrHandlerStatus      = errors.New("handler answered a non-2xx status: the host fails the invocation and discards the body")
	ErrHandlerContentType = errors.New("handler answered a non-JSON content type: the host fails the invocation")
	ErrHandlerEmptyBody   = errors.New("handler answered an empty body: this would hang the real host until functionTimeout")
	ErrHandlerBody        = errors.New("handler answered an unreadable body: the host fails the invocation")
)

// ParseHostResponse reads a handler answer with the host's rules (§3.1):
// non-2xx status, a content type other than application/json or text/json,
// an empty (or null) body and invalid JSON are errors (wrapping the Err*
// values above); top-level keys match case-insensitively; unknown keys are
// ignored. Logs entries that are not strings are kept as their JSON text.
func ParseHostResponse(status int, contentType string, body []byte) (HostResponse, error) {
	var hr HostResponse
	if status < 200 || status > 299 {
		return hr, fmt.Errorf("%w (status %d, body %.200q)", ErrHandlerStatus, status, body)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || (mt != "application/json" && mt != "text/json") {
		return hr, fmt.Errorf("%w (Content-Type %q)", ErrHandlerContentType, contentType)
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return hr, ErrHandlerEmptyBody
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return hr, fmt.Errorf("%w: %v", ErrHandlerBody, err)
	}
	get := func(name string) json.RawMessage {
		var found json.RawMessage
		for k, v := range top {
			if strings.EqualFold(k, name) {
				found = v // duplicates: unspecified which wins, as with Newtonsoft
			}
		}
		if isNull(found) {
			return nil
		}
		return found
	}
	if v := get("Outputs"); v != nil {
		if err := json.Unmarshal(v, &hr.Outputs); err != nil {
			return hr, fmt.Errorf("%w: Outputs: %v", ErrHandlerBody, err)
		}
	}
	if hr.Outputs == nil {
		hr.Outputs = map[string]json.RawMessage{}
	}
	if v := get("Logs"); v != nil {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return hr, fmt.Errorf("%w: Logs: %v", ErrHandlerBody, err)
		}
		for _, it := range items {
			it = bytes.TrimSpace(it)
			switch {
			case isNull(it):
				hr.Logs = append(hr.Logs, "")
			case it[0] == '{' || it[0] == '[':
				return hr, fmt.Errorf("%w: Logs holds a JSON %s", ErrHandlerBody, kind(it))
			default:
				hr.Logs = append(hr.Logs, dotNetString(it))
			}
		}
	}
	if v := get("ReturnValue"); v != nil {
		hr.ReturnValue = append(json.RawMessage(nil), v...)
	}
	return hr, nil
}

// HTTPOut is an http output binding value as the host turns it into the
// client response.
type HTTPOut struct {
	StatusCode int
	Headers    map[string]string
	Body       []byte
}

// ErrHTTPOutputFormat is the host's "Failed while trying to Deserialize to
// httpOutputBindingResponse. Output is not in expected format".
var ErrHTTPOutputFormat = errors.New("failed while trying to deserialize to httpOutputBindingResponse: output is not in expected format")

// ParseHTTPOutput reads an http output value (§3.2): a JSON object or a
// string containing one; fields case-insensitive; statusCode a number or
// numeric string (default 200; "status" is ignored as by the real host);
// header values turned to strings; body: string as is, object or array as
// indented JSON, other scalars as their text, absent → empty.
func ParseHTTPOutput(raw json.RawMessage) (HTTPOut, error) {
	out := HTTPOut{StatusCode: http.StatusOK, Headers: map[string]string{}}
	b := bytes.TrimSpace(raw)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return out, fmt.Errorf("%w: %v", ErrHTTPOutputFormat, err)
		}
		b = bytes.TrimSpace([]byte(s))
	}
	if len(b) == 0 || b[0] != '{' {
		return out, ErrHTTPOutputFormat
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return out, fmt.Errorf("%w: %v", ErrHTTPOutputFormat, err)
	}
	get := func(name string) json.RawMessage {
		for k, v := range obj {
			if strings.EqualFold(k, name) && !isNull(v) {
				return bytes.TrimSpace(v)
			}
		}
		return nil
	}
	if v := get("statusCode"); v != nil {
		s, err := scalarText(v, "statusCode")
		if err == nil {
			out.StatusCode, err = strconv.Atoi(s)
		}
		if err != nil || out.StatusCode < 100 || out.StatusCode > 999 {
			return out, fmt.Errorf("%w: invalid statusCode %s", ErrHTTPOutputFormat, v)
		}
	}
	if v := get("headers"); v != nil {
		var h map[string]json.RawMessage
		if err := json.Unmarshal(v, &h); err != nil {
			return out, fmt.Errorf("%w: headers: %v", ErrHTTPOutputFormat, err)
		}
		for k, hv := range h {
			hv = bytes.TrimSpace(hv)
			if isNull(hv) {
				if strings.EqualFold(k, "Content-Type") {
					return out, fmt.Errorf("%w: content-type header is null", ErrHTTPOutputFormat)
				}
				continue
			}
			out.Headers[k] = tokenText(hv)
		}
	}
	if v := get("body"); v != nil {
		out.Body = []byte(tokenText(v))
	}
	return out, nil
}

// tokenText is JToken.ToString(): strings as is, objects and arrays as
// indented JSON, booleans "True"/"False", numbers their text.
func tokenText(v json.RawMessage) string {
	if len(v) > 0 && (v[0] == '{' || v[0] == '[') {
		var buf bytes.Buffer
		if json.Indent(&buf, v, "", "  ") == nil {
			return buf.String()
		}
	}
	return dotNetString(v)
}

// ServiceBusOutputMessages returns the message bodies the host sends for a
// Service Bus output value (§3.2, §3.3). null → no message; an array → one
// message per non-null element; a string that looks like a JSON object or
// array is parsed first (so a JSON-array string is split too); objects are
// re-serialised indented; strings stay as they are; booleans become
// "True"/"False". The base64 trap: unless dataType is "binary", a string
// output that .NET can base64-decode ("test", "order123") becomes bytes and
// the message body is the literal text "System.Byte[]".
func ServiceBusOutputMessages(raw json.RawMessage, dataType string) ([][]byte, error) {
	b := bytes.TrimSpace(raw)
	if isNull(b) {
		return nil, nil
	}
	if !json.Valid(b) {
		return nil, errors.New("reading service bus output: invalid JSON")
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("reading service bus output: %w", err)
		}
		if !strings.EqualFold(dataType, "binary") && LooksLikeBase64(s) {
			return [][]byte{[]byte("System.Byte[]")}, nil
		}
		t := strings.TrimSpace(s)
		if len(t) >= 2 && ((t[0] == '{' && t[len(t)-1] == '}') || (t[0] == '[' && t[len(t)-1] == ']')) && json.Valid([]byte(t)) {
			b = []byte(t)
		} else {
			return [][]byte{[]byte(s)}, nil
		}
	}
	if b[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, fmt.Errorf("reading service bus output: %w", err)
		}
		var out [][]byte
		for _, it := range items {
			it = bytes.TrimSpace(it)
			if isNull(it) {
				continue
			}
			out = append(out, []byte(tokenText(it)))
		}
		return out, nil
	}
	return [][]byte{[]byte(tokenText(b))}, nil
}

// EffectiveOutputs returns the outputs the host binds (§3.1): Outputs, plus,
// when the function has no "$return" binding and ReturnValue is a JSON
// object, ReturnValue's properties copied over them
// (WorkerFunctionInvoker.HandleOutputDictionary).
func (r HostResponse) EffectiveOutputs(hasReturnBinding bool) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(r.Outputs))
	for k, v := range r.Outputs {
		out[k] = v
	}
	rv := bytes.TrimSpace(r.ReturnValue)
	if hasReturnBinding || len(rv) == 0 || rv[0] != '{' {
		return out
	}
	var props map[string]json.RawMessage
	if json.Unmarshal(rv, &props) != nil {
		return out
	}
	for k, v := range props {
		out[k] = v
	}
	return out
}

// ParseHTTPReturn reads ReturnValue for an http binding named "$return".
// Unlike a named http output it goes through the generic conversion first
// (§3.2): a string that .NET can base64-decode becomes the raw body bytes
// with status 200 (host issue #8352: clients got garbage); a string holding
// a JSON object and an object are read as by ParseHTTPOutput; any other
// string or scalar is a 200 with that text as body [inferred].
func ParseHTTPReturn(raw json.RawMessage) (HTTPOut, error) {
	b := bytes.TrimSpace(raw)
	if isNull(b) {
		return HTTPOut{StatusCode: http.StatusOK, Headers: map[string]string{}}, nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return HTTPOut{}, fmt.Errorf("%w: %v", ErrHTTPOutputFormat, err)
		}
		if dec, ok := dotNetBase64(s); ok {
			return HTTPOut{StatusCode: http.StatusOK, Headers: map[string]string{}, Body: dec}, nil
		}
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") && json.Valid([]byte(t)) {
			return ParseHTTPOutput(json.RawMessage(t))
		}
		return HTTPOut{StatusCode: http.StatusOK, Headers: map[string]string{}, Body: []byte(s)}, nil
	}
	if b[0] == '{' {
		return ParseHTTPOutput(b)
	}
	return HTTPOut{StatusCode: http.StatusOK, Headers: map[string]string{}, Body: []byte(tokenText(b))}, nil
}

// OutputBinding is a declared output binding of a function (function.json).
type OutputBinding struct {
	Name, Type, DataType string
}

// UndeclaredOutputs returns, sorted, the Outputs keys that match no declared
// output binding. The host ignores them silently (binding names are
// case-sensitive), so a harness should warn about each (§7).
func UndeclaredOutputs(outputs map[string]json.RawMessage, declared []OutputBinding) []string {
	known := make(map[string]bool, len(declared))
	for _, b := range declared {
		known[b.Name] = true
	}
	var out []string
	for k := range outputs {
		if !known[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
