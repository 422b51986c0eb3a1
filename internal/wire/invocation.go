package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Sys is Metadata.sys, added by the host to every invocation.
type Sys struct {
	MethodName string
	UtcNow     time.Time
	RandGuid   string
}

// RetryContext is Metadata.RetryContext, present when a function-level retry
// policy is active (§4).
type RetryContext struct {
	RetryCount    int
	MaxRetryCount int
	Exception     json.RawMessage
}

// Invocation is one decoded "POST /<Function>" request.
//
// Sys is informational only: a Service Bus body with a top-level "sys"
// property replaces Metadata.sys on the host (§2.3), so do not base
// decisions on it.
type Invocation struct {
	Function string // from the URL path
	ID       string // X-Azure-Functions-InvocationId
	Data     map[string]json.RawMessage
	Metadata map[string]json.RawMessage
	Sys      Sys
	Retry    *RetryContext // nil without a retry policy
	Logger   *slog.Logger  // carries the function and invocation_id attributes

	mu   sync.Mutex
	logs []string
}

// Log appends msg to the Logs of the response; the host writes each entry to
// the function's log at Information level (§3.1). Entries are lost when the
// invocation fails (non-2xx answers are discarded), so log failures with
// Logger as well.
func (inv *Invocation) Log(msg string) {
	inv.mu.Lock()
	inv.logs = append(inv.logs, msg)
	inv.mu.Unlock()
}

// Logs returns a copy of the entries added with Log.
func (inv *Invocation) Logs() []string {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return append([]string(nil), inv.logs...)
}

// Value returns Data[binding] (exact name first, then a unique
// case-insensitive match). Missing values wrap ErrMissing.
func (inv *Invocation) Value(binding string) (json.RawMessage, error) {
	v, ok := lookup(inv.Data, binding)
	if !ok || isNull(v) {
		return nil, fmt.Errorf("reading binding %q: %w", binding, ErrMissing)
	}
	return v, nil
}

// Bind decodes Data[binding] into v, peeling the host's string encoding.
func (inv *Invocation) Bind(binding string, v any) error {
	raw, err := inv.Value(binding)
	if err != nil {
		return err
	}
	if err := DecodeJSON(raw, v); err != nil {
		return fmt.Errorf("reading binding %q: %w", binding, err)
	}
	return nil
}

// MetadataString returns Metadata[key] decoded with DecodeString.
func (inv *Invocation) MetadataString(key string) (string, error) {
	v, ok := lookup(inv.Metadata, key)
	if !ok {
		return "", fmt.Errorf("reading metadata %q: %w", key, ErrMissing)
	}
	return DecodeString(v)
}

// object decodes raw (possibly string-encoded) as a JSON object.
func object(raw json.RawMessage) (map[string]json.RawMessage, error) {
	v := unwrap(raw)
	if len(v) == 0 || v[0] != '{' {
		return nil, fmt.Errorf("expected a JSON object, got a JSON %s", kind(v))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// ---- Timer ----

// TimerInfo is the timer trigger value (§2.3).
type TimerInfo struct {
	Schedule struct {
		AdjustForDST bool
	}
	ScheduleStatus *ScheduleStatus // nil when useMonitor is false
	IsPastDue      bool
}

// ScheduleStatus is the monitor state of a timer (useMonitor true).
type ScheduleStatus struct {
	Last, Next, LastUpdated time.Time // UTC
}

// Timer decodes Data[binding] as a timer trigger value.
func (inv *Invocation) Timer(binding string) (TimerInfo, error) {
	raw, err := inv.Value(binding)
	if err != nil {
		return TimerInfo{}, err
	}
	ti, err := decodeTimer(raw)
	if err != nil {
		return TimerInfo{}, fmt.Errorf("reading timer %q: %w", binding, err)
	}
	return ti, nil
}

func decodeTimer(raw json.RawMessage) (TimerInfo, error) {
	var ti TimerInfo
	m, err := object(raw)
	if err != nil {
		return ti, err
	}
	if v, ok := lookup(m, "Schedule"); ok && !isNull(v) {
		sm, err := object(v)
		if err != nil {
			return ti, fmt.Errorf("decoding Schedule: %w", err)
		}
		if a, ok := lookup(sm, "AdjustForDST"); ok && !isNull(a) {
			if ti.Schedule.AdjustForDST, err = DecodeBool(a); err != nil {
				return ti, fmt.Errorf("decoding Schedule.AdjustForDST: %w", err)
			}
		}
	}
	if v, ok := lookup(m, "ScheduleStatus"); ok && !isNull(v) {
		sm, err := object(v)
		if err != nil {
			return ti, fmt.Errorf("decoding ScheduleStatus: %w", err)
		}
		st := &ScheduleStatus{}
		for _, f := range []struct {
			name string
			dst  *time.Time
		}{{"Last", &st.Last}, {"Next", &st.Next}, {"LastUpdated", &st.LastUpdated}} {
			if t, ok := lookup(sm, f.name); ok && !isNull(t) {
				tm, err := DecodeTime(t)
				if err != nil {
					return ti, fmt.Errorf("decoding ScheduleStatus.%s: %w", f.name, err)
				}
				*f.dst = tm.UTC()
			}
		}
		ti.ScheduleStatus = st
	}
	if v, ok := lookup(m, "IsPastDue"); ok && !isNull(v) {
		if ti.IsPastDue, err = DecodeBool(v); err != nil {
			return ti, fmt.Errorf("decoding IsPastDue: %w", err)
		}
	}
	return ti, nil
}

// ---- Service Bus ----

// ServiceBusMessage is a Service Bus trigger value with its metadata (§2.3).
type ServiceBusMessage struct {
	// Body is the message body: the double-encoded string unwrapped to its
	// raw bytes (a single-encoded string is accepted too); with dataType
	// binary (ServiceBusBinary) the base64 text decoded.
	Body []byte

	MessageID, CorrelationID, SessionID, ContentType, Subject, LockToken, DeadLetterSource, ReplyTo, To, PartitionKey string
	ReplyToSessionID, TransactionPartitionKey                                                                         string

	DeliveryCount  int
	SequenceNumber int64

	EnqueuedTime, ExpiresAt time.Time // UTC

	// ApplicationProperties decoded with encoding/json defaults (numbers are
	// float64).
	ApplicationProperties map[string]any

	// Shadowed lists the system keys whose metadata value was replaced by a
	// same-named top-level property of the JSON body. The host adds one
	// metadata key per top-level body property and lets it overwrite system
	// keys (§2.3, Utility.ApplyBindingData): a body {"MessageId":"x"} makes
	// Metadata.MessageId "x". When the body has such a property and the
	// metadata value equals what the body would have produced, the value
	// cannot be trusted: the key is listed here and the field is taken from
	// the backcompat alias when that is intact (Label for Subject,
	// UserProperties for ApplicationProperties, the *Utc forms for the
	// dates), else left zero. Keys are compared case-insensitively.
	Shadowed []string
}

// ServiceBus decodes Data[binding] and the invocation metadata as a Service
// Bus trigger message whose binding has no dataType (or dataType string).
func (inv *Invocation) ServiceBus(binding string) (ServiceBusMessage, error) {
	return inv.serviceBus(binding, false)
}

// ServiceBusBinary is ServiceBus for a binding declared with
// "dataType": "binary": the body arrives as base64.
func (inv *Invocation) ServiceBusBinary(binding string) (ServiceBusMessage, error) {
	return inv.serviceBus(binding, true)
}

func (inv *Invocation) serviceBus(binding string, binary bool) (ServiceBusMessage, error) {
	var m ServiceBusMessage
	raw, err := inv.Value(binding)
	if err != nil {
		return m, err
	}
	if binary {
		m.Body, err = decodeBinaryBody(raw)
	} else {
		m.Body, err = decodeTextBody(raw)
	}
	if err != nil {
		return m, fmt.Errorf("reading service bus message %q: %w", binding, err)
	}
	if err := m.readMetadata(inv.Metadata); err != nil {
		return m, fmt.Errorf("reading service bus message %q: %w", binding, err)
	}
	return m, nil
}

// decodeTextBody returns the message body of a string trigger value. The
// host sends JsonConvert.SerializeObject(body) as a JSON string, so the wire
// value is a JSON string whose content is a JSON string literal; peel both.
// A single-encoded string is taken as the body text, and a non-string value
// (docs examples show objects) as its JSON text.
func decodeTextBody(raw json.RawMessage) ([]byte, error) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 || b[0] != '"' {
		return append([]byte(nil), b...), nil
	}
	var s1 string
	if err := json.Unmarshal(b, &s1); err != nil {
		return nil, fmt.Errorf("decoding body: %w", err)
	}
	if len(s1) >= 2 && s1[0] == '"' && s1[len(s1)-1] == '"' {
		var s2 string
		if json.Unmarshal([]byte(s1), &s2) == nil {
			return []byte(s2), nil
		}
	}
	return []byte(s1), nil
}

// decodeBinaryBody decodes a dataType binary trigger value (base64 text,
// tolerating one extra level of string encoding).
func decodeBinaryBody(raw json.RawMessage) ([]byte, error) {
	s, err := DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding binary body: %w", err)
	}
	out, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("decoding binary body: %w", err)
	}
	return out, nil
}

// bodyProperties returns what the host's ApplyBindingData would add to the
// metadata for body: each non-array, non-null top-level property, scalars
// cast to .NET strings, objects kept. It returns nil when body is not a JSON
// object.
func bodyProperties(body []byte) map[string]json.RawMessage {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	var props map[string]json.RawMessage
	if json.Unmarshal(b, &props) != nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(props))
	for k, v := range props {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || v[0] == '[' || isNull(v) {
			continue
		}
		out[k] = v // objects compared as objects, scalars through dotNetString
	}
	return out
}

// dotNetString is the (string) cast Newtonsoft applies to a scalar JValue:
// strings as is, booleans "True"/"False", numbers their text.
func dotNetString(v json.RawMessage) string {
	switch {
	case len(v) == 0:
		return ""
	case v[0] == '"':
		var s string
		_ = json.Unmarshal(v, &s)
		return s
	case bytes.Equal(v, []byte("true")):
		return "True"
	case bytes.Equal(v, []byte("false")):
		return "False"
	default:
		return string(v)
	}
}

// shadowedBy reports whether metadata value meta for a system key equals the
// value that the same-named body property would have written.
func shadowedBy(meta, prop json.RawMessage) bool {
	if prop[0] == '{' {
		var a, b any
		if json.Unmarshal(unwrap(meta), &a) != nil || json.Unmarshal(prop, &b) != nil {
			return false
		}
		return reflect.DeepEqual(a, b)
	}
	s, err := DecodeString(meta)
	if err != nil {
		return false
	}
	if prop[0] == 't' || prop[0] == 'f' {
		return strings.EqualFold(s, dotNetString(prop))
	}
	return s == dotNetString(prop) || s == propertyCast(prop)
}

func (m *ServiceBusMessage) readMetadata(md map[string]json.RawMessage) error {
	props := bodyProperties(m.Body)
	// get returns the metadata value for the first key present, or nil
	// when absent or shadowed by a body property.
	get := func(keys ...string) json.RawMessage {
		for _, k := range keys {
			v, ok := lookup(md, k)
			if !ok || isNull(v) {
				continue
			}
			for pk, pv := range props {
				if !strings.EqualFold(pk, k) {
					continue
				}
				if _, separate := md[pk]; pk != k && separate {
					continue // a case-sensitive host kept both keys
				}
				if shadowedBy(v, pv) {
					m.Shadowed = append(m.Shadowed, k)
					v = nil
					break
				}
			}
			if v != nil {
				return v
			}
		}
		return nil
	}
	var errs []error
	str := func(dst *string, keys ...string) {
		if v := get(keys...); v != nil {
			s, err := DecodeString(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("decoding metadata %s: %w", keys[0], err))
				return
			}
			*dst = s
		}
	}
	str(&m.MessageID, "MessageId")
	str(&m.CorrelationID, "CorrelationId")
	str(&m.SessionID, "SessionId")
	str(&m.ContentType, "ContentType")
	str(&m.Subject, "Subject", "Label")
	str(&m.LockToken, "LockToken")
	str(&m.DeadLetterSource, "DeadLetterSource")
	str(&m.ReplyTo, "ReplyTo")
	str(&m.To, "To")
	str(&m.PartitionKey, "PartitionKey")
	str(&m.ReplyToSessionID, "ReplyToSessionId")
	str(&m.TransactionPartitionKey, "TransactionPartitionKey")
	if v := get("DeliveryCount"); v != nil {
		n, err := DecodeInt(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("decoding metadata DeliveryCount: %w", err))
		}
		m.DeliveryCount = n
	}
	if v := get("SequenceNumber"); v != nil {
		n, err := DecodeInt64(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("decoding metadata SequenceNumber: %w", err))
		}
		m.SequenceNumber = n
	}
	tm := func(dst *time.Time, keys ...string) {
		if v := get(keys...); v != nil {
			t, err := DecodeTime(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("decoding metadata %s: %w", keys[0], err))
				return
			}
			*dst = t.UTC()
		}
	}
	// The DateTimeOffset forms carry a zone; the *Utc forms are zone-less.
	tm(&m.EnqueuedTime, "EnqueuedTime", "EnqueuedTimeUtc")
	tm(&m.ExpiresAt, "ExpiresAt", "ExpiresAtUtc")
	if v := get("ApplicationProperties", "UserProperties"); v != nil {
		if err := DecodeJSON(v, &m.ApplicationProperties); err != nil {
			errs = append(errs, fmt.Errorf("decoding metadata ApplicationProperties: %w", err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// ---- HTTP ----

// HTTPRequest is the HTTP trigger value in payload mode (§2.3), built by the
// host's GetRequestAsJObject.
type HTTPRequest struct {
	URL, Method string
	Query       map[string]string
	Headers     http.Header // canonical keys
	Params      map[string]string
	// Body is the request body. The host sends it only when the request had
	// Content-Length > 0 (HasBody reports whether it was present); for
	// application/octet-stream and multipart/* it arrives as base64 and is
	// decoded here.
	Body       []byte
	HasBody    bool
	Identities []Identity
}

// Identity is a serialised ClaimsIdentity.
type Identity struct {
	AuthenticationType string
	IsAuthenticated    bool
	Name               string
	Claims             []Claim
}

// Claim is one claim of an Identity.
type Claim struct {
	Type, Value, ValueType, Issuer string
}

// Claim types the host uses for key-based authorisation.
const (
	AuthLevelIdentityType = "WebJobsAuthLevel"
	ClaimAuthLevel        = "http://schemas.microsoft.com/2017/07/functions/claims/authlevel"
	ClaimKeyID            = "http://schemas.microsoft.com/2017/07/functions/claims/keyid"
)

// AuthLevel returns the authorisation level the host granted the caller
// ("Function", "Admin", ...) from the WebJobsAuthLevel identity, "" if none.
func (r HTTPRequest) AuthLevel() string { return r.authClaim(ClaimAuthLevel) }

// KeyID returns the name of the key the caller used, "" if none.
func (r HTTPRequest) KeyID() string { return r.authClaim(ClaimKeyID) }

func (r HTTPRequest) authClaim(typ string) string {
	for _, id := range r.Identities {
		if !strings.EqualFold(id.AuthenticationType, AuthLevelIdentityType) {
			continue
		}
		for _, c := range id.Claims {
			if strings.EqualFold(c.Type, typ) {
				return c.Value
			}
		}
	}
	return ""
}

// HTTP decodes Data[binding] as an HTTP trigger request.
func (inv *Invocation) HTTP(binding string) (HTTPRequest, error) {
	raw, err := inv.Value(binding)
	if err != nil {
		return HTTPRequest{}, err
	}
	r, err := decodeHTTP(raw)
	if err != nil {
		return HTTPRequest{}, fmt.Errorf("reading http request %q: %w", binding, err)
	}
	return r, nil
}

func decodeHTTP(raw json.RawMessage) (HTTPRequest, error) {
	var r HTTPRequest
	m, err := object(raw)
	if err != nil {
		return r, err
	}
	var errs []error
	str := func(key string) string {
		v, ok := lookup(m, key)
		if !ok || isNull(v) {
			return ""
		}
		s, err := DecodeString(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("decoding %s: %w", key, err))
		}
		return s
	}
	r.URL = str("Url")
	r.Method = str("Method")
	if r.Query, err = stringMap(m, "Query"); err != nil {
		errs = append(errs, err)
	}
	if r.Params, err = stringMap(m, "Params"); err != nil {
		errs = append(errs, err)
	}
	if r.Headers, err = headerMap(m, "Headers"); err != nil {
		errs = append(errs, err)
	}
	if v, ok := lookup(m, "Identities"); ok && !isNull(v) {
		if err := decodeIdentities(v, &r.Identities); err != nil {
			errs = append(errs, fmt.Errorf("decoding Identities: %w", err))
		}
	}
	if v, ok := lookup(m, "Body"); ok && !isNull(v) {
		r.HasBody = true
		b := bytes.TrimSpace(v)
		if b[0] == '"' {
			var s string
			if err := json.Unmarshal(b, &s); err != nil {
				errs = append(errs, fmt.Errorf("decoding Body: %w", err))
			}
			r.Body = []byte(s)
			if isBase64MediaType(r.Headers.Get("Content-Type")) {
				if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
					r.Body = dec
				}
			}
		} else {
			// Not what the host sends; keep the JSON text of an object.
			r.Body = append([]byte(nil), b...)
		}
	}
	if len(errs) > 0 {
		return r, errors.Join(errs...)
	}
	return r, nil
}

// isBase64MediaType reports whether the host sends a body of this content
// type as bytes (base64): application/octet-stream and multipart/*.
func isBase64MediaType(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(ct))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	return ct == "application/octet-stream" || strings.HasPrefix(ct, "multipart/")
}

// stringMap reads an object of scalars (also accepted as JSON text in a
// string, the pre-2020 form) into a map of strings.
func stringMap(m map[string]json.RawMessage, key string) (map[string]string, error) {
	out := map[string]string{}
	v, ok := lookup(m, key)
	if !ok || isNull(v) {
		return out, nil
	}
	obj, err := object(v)
	if err != nil {
		return out, fmt.Errorf("decoding %s: %w", key, err)
	}
	for k, val := range obj {
		if isNull(val) {
			continue
		}
		s, err := DecodeString(val)
		if err != nil {
			return out, fmt.Errorf("decoding %s[%q]: %w", key, k, err)
		}
		out[k] = s
	}
	return out, nil
}

// headerMap reads the Headers object: values are arrays of strings (Data
// form) or single strings (Metadata form).
func headerMap(m map[string]json.RawMessage, key string) (http.Header, error) {
	h := http.Header{}
	v, ok := lookup(m, key)
	if !ok || isNull(v) {
		return h, nil
	}
	obj, err := object(v)
	if err != nil {
		return h, fmt.Errorf("decoding %s: %w", key, err)
	}
	for k, val := range obj {
		val = bytes.TrimSpace(val)
		if isNull(val) {
			continue
		}
		if val[0] == '[' {
			var vs []string
			if err := json.Unmarshal(val, &vs); err != nil {
				return h, fmt.Errorf("decoding %s[%q]: %w", key, k, err)
			}
			for _, s := range vs {
				h.Add(k, s)
			}
			continue
		}
		s, err := DecodeString(val)
		if err != nil {
			return h, fmt.Errorf("decoding %s[%q]: %w", key, k, err)
		}
		h.Add(k, s)
	}
	return h, nil
}

func decodeIdentities(raw json.RawMessage, dst *[]Identity) error {
	var ids []struct {
		AuthenticationType *string
		IsAuthenticated    bool
		Name               *string
		Claims             []struct {
			Type, Value, ValueType, Issuer *string
		}
	}
	if err := json.Unmarshal(unwrap(raw), &ids); err != nil {
		return err
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	for _, id := range ids {
		out := Identity{
			AuthenticationType: deref(id.AuthenticationType),
			IsAuthenticated:    id.IsAuthenticated,
			Name:               deref(id.Name),
		}
		for _, c := range id.Claims {
			out.Claims = append(out.Claims, Claim{Type: deref(c.Type), Value: deref(c.Value), ValueType: deref(c.ValueType), Issuer: deref(c.Issuer)})
		}
		*dst = append(*dst, out)
	}
	return nil
}

// ---- Metadata: sys, RetryContext ----

func decodeSys(raw json.RawMessage) (Sys, error) {
	var s Sys
	m, err := object(raw)
	if err != nil {
		return s, fmt.Errorf("decoding sys: %w", err)
	}
	if v, ok := lookup(m, "MethodName"); ok && !isNull(v) {
		if s.MethodName, err = DecodeString(v); err != nil {
			return s, fmt.Errorf("decoding sys.MethodName: %w", err)
		}
	}
	if v, ok := lookup(m, "UtcNow"); ok && !isNull(v) {
		if s.UtcNow, err = DecodeTime(v); err != nil {
			return s, fmt.Errorf("decoding sys.UtcNow: %w", err)
		}
		s.UtcNow = s.UtcNow.UTC()
	}
	if v, ok := lookup(m, "RandGuid"); ok && !isNull(v) {
		if s.RandGuid, err = DecodeString(v); err != nil {
			return s, fmt.Errorf("decoding sys.RandGuid: %w", err)
		}
	}
	return s, nil
}

func decodeRetry(raw json.RawMessage) (*RetryContext, error) {
	m, err := object(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding RetryContext: %w", err)
	}
	rc := &RetryContext{}
	if v, ok := lookup(m, "RetryCount"); ok && !isNull(v) {
		if rc.RetryCount, err = DecodeInt(v); err != nil {
			return nil, fmt.Errorf("decoding RetryContext.RetryCount: %w", err)
		}
	}
	if v, ok := lookup(m, "MaxRetryCount"); ok && !isNull(v) {
		if rc.MaxRetryCount, err = DecodeInt(v); err != nil {
			return nil, fmt.Errorf("decoding RetryContext.MaxRetryCount: %w", err)
		}
	}
	if v, ok := lookup(m, "Exception"); ok && !isNull(v) {
		rc.Exception = append(json.RawMessage(nil), bytes.TrimSpace(v)...)
	}
	return rc, nil
}
