package localhost

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/wire"
)

// Authorisation levels granted to a caller, as the host names them in the
// WebJobsAuthLevel claim.
const (
	authNone     = ""
	authFunction = "Function"
	authAdmin    = "Admin"
)

// maxRequestBody is the host's default maxRequestBodySize (100 MB).
const maxRequestBody = 100 << 20

// maxAdminBody bounds admin API bodies.
const maxAdminBody = 8 << 20

// httpResult is what goes back to the client.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (h *Host) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/host/status", h.admin(h.handleStatus))
	mux.HandleFunc("POST /admin/functions/{name}", h.admin(h.handleAdminInvoke))
	mux.HandleFunc("GET /admin/queues", h.admin(h.handleQueues))
	mux.HandleFunc("POST /admin/queues/{queue}/messages", h.admin(h.handleEnqueue))
	mux.HandleFunc("GET /admin/queues/{queue}/deadletters", h.admin(h.handleDeadLetters))
	mux.HandleFunc("POST /admin/queues/{queue}/deadletters", h.admin(h.handleDeadLetter))
	mux.HandleFunc("POST /admin/queues/{queue}/deadletters/{seq}/resubmit", h.admin(h.handleResubmit))
	mux.HandleFunc("/admin/", h.admin(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	mux.HandleFunc("/", h.serveFunction)
	return mux
}

// ---- keys ----

// callerLevel returns the level granted by the key in the "code" query
// parameter or the x-functions-key header.
func (h *Host) callerLevel(r *http.Request) (level, keyID string) {
	key := r.Header.Get("x-functions-key")
	if key == "" {
		key = r.URL.Query().Get("code")
	}
	if key == "" {
		return authNone, ""
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(h.masterKey)) == 1 {
		return authAdmin, "master"
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(h.fnKey)) == 1 {
		return authFunction, "default"
	}
	return authNone, ""
}

func allowed(required, level string) bool {
	switch required {
	case AuthAnonymous:
		return true
	case AuthFunction:
		return level == authFunction || level == authAdmin
	default: // admin (and system levels)
		return level == authAdmin
	}
}

func (h *Host) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if lvl, _ := h.callerLevel(r); lvl != authAdmin {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next(w, r)
	}
}

// ---- function routes ----

// routePath is the front-end path of an HTTP function (the route template
// below the prefix).
func (h *Host) routePath(f *Function) string {
	route := f.Name
	if f.Trigger.Route != "" {
		route = f.Trigger.Route
	}
	p := "/" + strings.Trim(h.app.Host.RoutePrefix+"/"+route, "/")
	return strings.ReplaceAll(p, "//", "/")
}

// matchRoute finds the HTTP function for r; methodMismatch reports a route
// that matched with another method.
func (h *Host) matchRoute(r *http.Request) (f *Function, params map[string]string, methodMismatch bool) {
	raw := r.URL.EscapedPath()
	prefix := h.app.Host.RoutePrefix
	if prefix != "" {
		lp := "/" + strings.ToLower(prefix)
		lower := strings.ToLower(raw)
		if lower != lp && !strings.HasPrefix(lower, lp+"/") {
			return nil, nil, false
		}
		raw = raw[len(lp):]
	}
	raw = strings.Trim(raw, "/")
	var parts []string
	if raw != "" {
		for _, seg := range strings.Split(raw, "/") {
			s, err := url.PathUnescape(seg)
			if err != nil {
				return nil, nil, false
			}
			parts = append(parts, s)
		}
	}
	for _, fn := range h.httpFunctions() {
		p, ok := fn.route.match(parts)
		if !ok {
			continue
		}
		if len(fn.Trigger.Methods) > 0 && !containsFold(fn.Trigger.Methods, r.Method) {
			methodMismatch = true
			continue
		}
		return fn, p, false
	}
	return nil, nil, methodMismatch
}

// httpFunctions returns the HTTP-triggered functions in matching order.
func (h *Host) httpFunctions() []*Function {
	var fs []*Function
	for _, f := range h.app.Functions {
		if f.Trigger.Type == TypeHTTPTrigger && f.route != nil {
			fs = append(fs, f)
		}
	}
	sort.SliceStable(fs, func(i, j int) bool {
		li, pi := fs[i].route.precedence()
		lj, pj := fs[j].route.precedence()
		if li != lj {
			return li > lj
		}
		return pi > pj
	})
	return fs
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func (h *Host) serveFunction(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "Your Functions 4.0 app is up and running (mdeflow local host)\n")
		return
	}
	f, params, mismatch := h.matchRoute(r)
	if f == nil || f.Disabled {
		if mismatch {
			h.log.Debug("no HTTP function accepts this method", "method", r.Method, "path", r.URL.Path)
		}
		http.NotFound(w, r)
		return
	}
	level, keyID := h.callerLevel(r)
	if !allowed(f.Trigger.AuthLevel, level) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body []byte
	if r.ContentLength > maxRequestBody {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	if r.ContentLength > 0 {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body = b
	} else if r.ContentLength < 0 {
		h.log.Warn("request without Content-Length: the host passes no body to the handler", "function", f.Name)
	}
	res, err := h.invokeHTTP(r.Context(), f, r, body, params, level, keyID)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	for k, vs := range res.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(res.body)))
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
}

// invokeHTTP runs an HTTP function for request r (body already read; nil
// when the request had no Content-Length > 0).
func (h *Host) invokeHTTP(ctx context.Context, f *Function, r *http.Request, body []byte, params map[string]string, level, keyID string) (httpResult, error) {
	if h.app.Host.EnableForwardingHTTPRequest && f.forwardable() {
		return h.forward(ctx, f, r, body)
	}
	in := wire.IncomingHTTP{
		URL: requestURL(r), Method: r.Method, Header: r.Header.Clone(), Params: params,
		AuthLevel: level, KeyID: keyID,
	}
	if in.Header == nil {
		in.Header = http.Header{}
	}
	if r.Host != "" {
		in.Header.Set("Host", r.Host)
	}
	if len(body) > 0 {
		in.Body = body
	}
	res := httpResult{status: http.StatusOK, header: http.Header{}}
	hb := f.HTTPOutput()
	reason := "This function was programmatically called via the host APIs."
	err := h.track(f, reason, func(id string) error {
		return h.invokePayload(ctx, f, id, func(sys wire.Sys) (wire.HostRequest, error) {
			return wire.HTTPPayload(f.Trigger.Name, in, sys)
		}, func(resp wire.HostResponse) error {
			if hb == nil {
				return nil
			}
			var out wire.HTTPOut
			var err error
			if hb.Name == returnBinding {
				// ReturnValue goes through the generic conversion (base64 trap).
				out, err = wire.ParseHTTPReturn(resp.ReturnValue)
			} else {
				raw, ok := resp.Outputs[hb.Name]
				if !ok {
					// [inferred] the host answers 200 with {} when res is missing.
					h.log.Warn(fmt.Sprintf("no value for http output %q; answering 200 {}", hb.Name), "function", f.Name, "invocation_id", id)
					res.header.Set("Content-Type", "application/json; charset=utf-8")
					res.body = []byte("{}")
					return nil
				}
				out, err = wire.ParseHTTPOutput(raw)
			}
			if err != nil {
				return fmt.Errorf("http output %s: %w", hb.Name, err)
			}
			res.status = out.StatusCode
			for k, v := range out.Headers {
				res.header.Set(k, v)
			}
			if res.header.Get("Content-Type") == "" && len(out.Body) > 0 {
				res.header.Set("Content-Type", "text/plain; charset=utf-8")
			}
			res.body = out.Body
			return nil
		})
	})
	return res, err
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forward replays the client request to the handler (forwarding mode): same
// method, path with the route prefix and query, the client's headers plus
// the host's three, the body only when Content-Length > 0. The handler's
// answer goes back as is, redirects included.
func (h *Host) forward(ctx context.Context, f *Function, r *http.Request, body []byte) (httpResult, error) {
	var res httpResult
	err := h.track(f, "This HTTP request was forwarded to the custom handler.", func(id string) error {
		resp, rbody, err := h.roundTrip(ctx, f, id, func(ctx context.Context, p *handlerProc) (*http.Request, error) {
			var rd io.Reader
			if len(body) > 0 {
				rd = bytes.NewReader(body)
			}
			req, err := http.NewRequestWithContext(ctx, r.Method, p.baseURL()+r.URL.RequestURI(), rd)
			if err != nil {
				return nil, err
			}
			req.Header = r.Header.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			for _, k := range hopHeaders {
				req.Header.Del(k)
			}
			req.Host = r.Host
			req.ContentLength = int64(len(body))
			req.Header.Set(wire.HeaderInvocationID, id)
			req.Header.Set(wire.HeaderHostVersion, h.opts.HostVersion)
			req.Header.Set("User-Agent", "Azure-Functions-Host/"+h.opts.HostVersion)
			return req, nil
		})
		if err != nil {
			return err
		}
		res = httpResult{status: resp.StatusCode, header: resp.Header.Clone(), body: rbody}
		for _, k := range hopHeaders {
			res.header.Del(k)
		}
		res.header.Del("Content-Length")
		return nil
	})
	return res, err
}

func requestURL(r *http.Request) string {
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	return "http://" + host + r.URL.RequestURI()
}

// ---- admin API ----

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (h *Host) handleStatus(w http.ResponseWriter, _ *http.Request) {
	s := h.Stats()
	writeJSON(w, http.StatusOK, map[string]any{
		"state": s.HandlerState, "version": h.opts.HostVersion, "restarts": s.Restarts,
		"running": s.Running, "invocations": s.Invocations, "failures": s.Failures,
	})
}

// handleAdminInvoke is POST /admin/functions/{name} {"input":"..."}: 202,
// then a timer fires, a queue trigger gets input enqueued, an HTTP trigger
// receives it as a POST body.
func (h *Host) handleAdminInvoke(w http.ResponseWriter, r *http.Request) {
	f := h.app.Function(r.PathValue("name"))
	if f == nil {
		http.NotFound(w, r)
		return
	}
	var in struct {
		Input *string `json:"input"`
	}
	if err := decodeStrict(r.Body, &in); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	input := ""
	if in.Input != nil {
		input = *in.Input
	}
	switch f.Trigger.Type {
	case TypeServiceBusTrigger:
		if err := h.Enqueue(f.Trigger.QueueName, Message{Body: []byte(input)}); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
	default:
		h.goFn(func() {
			if err := h.Invoke(h.life, f.Name, input); err != nil {
				h.log.Error("admin invocation failed", "function", f.Name, "error", err.Error())
			}
		})
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Host) handleQueues(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.broker.stats())
}

// queueMessageJSON is one message of POST /admin/queues/{queue}/messages.
type queueMessageJSON struct {
	MessageID               string         `json:"messageId"`
	CorrelationID           string         `json:"correlationId"`
	SessionID               string         `json:"sessionId"`
	ContentType             string         `json:"contentType"`
	Subject                 string         `json:"subject"`
	Body                    string         `json:"body"`
	ApplicationProperties   map[string]any `json:"applicationProperties"`
	ScheduledEnqueueTimeUtc string         `json:"scheduledEnqueueTimeUtc"`
	// For POST .../deadletters only.
	DeadLetterReason           string `json:"deadLetterReason,omitempty"`
	DeadLetterErrorDescription string `json:"deadLetterErrorDescription,omitempty"`
}

func (q queueMessageJSON) message() (Message, error) {
	m := Message{
		MessageID: q.MessageID, CorrelationID: q.CorrelationID, SessionID: q.SessionID, ContentType: q.ContentType,
		Subject: q.Subject, Body: []byte(q.Body), Properties: q.ApplicationProperties,
	}
	if q.ScheduledEnqueueTimeUtc != "" {
		t, err := time.Parse(time.RFC3339Nano, q.ScheduledEnqueueTimeUtc)
		if err != nil {
			return m, fmt.Errorf("%w: scheduledEnqueueTimeUtc %q is not RFC 3339", ErrMessageInvalid, q.ScheduledEnqueueTimeUtc)
		}
		m.ScheduledEnqueueTime = t.UTC()
	}
	return m, nil
}

// readMessages reads one message object or an array of them.
func readMessages(r io.Reader) ([]queueMessageJSON, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxAdminBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if len(data) > maxAdminBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrMessageInvalid, maxAdminBody)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMessageInvalid)
	}
	var list []queueMessageJSON
	if data[0] == '[' {
		err = decodeStrict(bytes.NewReader(data), &list)
	} else {
		var one queueMessageJSON
		err = decodeStrict(bytes.NewReader(data), &one)
		list = []queueMessageJSON{one}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessageInvalid, err)
	}
	return list, nil
}

func (h *Host) handleEnqueue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	list, err := readMessages(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	msgs := make([]Message, 0, len(list))
	for _, q := range list {
		if q.DeadLetterReason != "" || q.DeadLetterErrorDescription != "" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: deadLetter fields belong to POST /admin/queues/{queue}/deadletters", ErrMessageInvalid))
			return
		}
		m, err := q.message()
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		msgs = append(msgs, m)
	}
	if _, err := h.broker.send(name, msgs, false); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	// Duplicates are dropped silently, as by Service Bus: the answer does
	// not tell them apart.
	writeJSON(w, http.StatusCreated, map[string]any{"queue": name, "count": len(msgs)})
}

// deadLetterJSON is a dead-lettered message in the admin API.
type deadLetterJSON struct {
	DeadLetter
	Body       *string `json:"body,omitempty"`
	BodyBase64 *string `json:"bodyBase64,omitempty"`
}

func (h *Host) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	dl, err := h.broker.deadLetters(r.PathValue("queue"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	out := make([]deadLetterJSON, 0, len(dl))
	for _, d := range dl {
		j := deadLetterJSON{DeadLetter: d}
		if s, ok := bodyText(d.Body); ok {
			j.Body = &s
		} else {
			b := base64.StdEncoding.EncodeToString(d.Body)
			j.BodyBase64 = &b
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Host) handleDeadLetter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	list, err := readMessages(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var seqs []int64
	for _, q := range list {
		m, err := q.message()
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if q.DeadLetterReason == "" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: deadLetterReason is required", ErrMessageInvalid))
			return
		}
		seq, err := h.broker.deadLetter(name, m, q.DeadLetterReason, q.DeadLetterErrorDescription)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		seqs = append(seqs, seq)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"queue": name, "sequenceNumbers": seqs})
}

func (h *Host) handleResubmit(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("sequence number %q is not a number", r.PathValue("seq")))
		return
	}
	if err := h.broker.resubmit(r.PathValue("queue"), seq); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrQueueNotFound), errors.Is(err, ErrMessageNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrMessageInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// decodeStrict decodes one JSON value, rejecting unknown fields (typos in
// test fixtures should fail loudly) and keeping numbers exact.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, maxAdminBody))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding JSON: %w", err)
	}
	if dec.More() {
		return errors.New("decoding JSON: trailing data after the value")
	}
	return nil
}
