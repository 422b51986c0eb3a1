package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Log attribute keys (house style: constants).
const (
	AttrFunction     = "function"
	AttrInvocationID = "invocation_id"
	AttrDurationMS   = "duration_ms"
	AttrOutcome      = "outcome"
)

// Request headers the host adds to every invocation (§2.1).
const (
	HeaderInvocationID = "X-Azure-Functions-InvocationId"
	HeaderHostVersion  = "X-Azure-Functions-HostVersion"
)

// Environment variables that carry the port the host expects (§1.3).
const (
	EnvPort       = "FUNCTIONS_CUSTOMHANDLER_PORT"
	EnvLegacyPort = "FUNCTIONS_HTTPWORKER_PORT"
)

// DefaultMaxBodyBytes caps an invocation request body.
const DefaultMaxBodyBytes = 16 << 20

// Func handles one invocation. A nil error answers 200 with the Result; an
// error answers 500, which makes the host fail the invocation (a Service Bus
// message is abandoned and redelivered). The host discards the body of a 500,
// so the server logs the error.
type Func func(ctx context.Context, inv *Invocation) (Result, error)

// ServerOptions configures a Server. A nil *ServerOptions means defaults.
type ServerOptions struct {
	// Logger receives server and invocation logs. Default: JSON to stdout
	// (the host logs stderr lines as errors).
	Logger *slog.Logger
	// InvocationTimeout, when > 0, bounds each invocation's context. Set it
	// below host.json functionTimeout: a timeout on the host side restarts
	// the whole handler process and fails every in-flight invocation (§4).
	// A Func that ignores its context is answered with 500 shortly after the
	// deadline; it keeps running in the background and its result is lost.
	InvocationTimeout time.Duration
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// ShutdownTimeout bounds the drain in Serve (default 30s).
	ShutdownTimeout time.Duration
}

// Server is the custom handler's HTTP server (payload mode).
type Server struct {
	logger          *slog.Logger
	timeout         time.Duration
	maxBody         int64
	shutdownTimeout time.Duration
	abandonGrace    time.Duration

	mu    sync.RWMutex
	funcs map[string]Func

	running sync.WaitGroup // Func goroutines, including abandoned ones
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a Server with no functions registered.
func NewServer(opts *ServerOptions) *Server {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	return &Server{
		logger:          o.Logger,
		timeout:         o.InvocationTimeout,
		maxBody:         o.MaxBodyBytes,
		shutdownTimeout: o.ShutdownTimeout,
		abandonGrace:    time.Second,
		funcs:           map[string]Func{},
	}
}

// Handle registers f for the function named function (the function folder
// name, matched case-sensitively as the host sends it). It panics on an
// empty name, a name containing "/", a nil f or a duplicate, like
// http.ServeMux.
func (s *Server) Handle(function string, f Func) {
	if function == "" || strings.Contains(function, "/") || f == nil {
		panic(fmt.Sprintf("wire: invalid registration for function %q", function))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.funcs[function]; dup {
		panic(fmt.Sprintf("wire: function %q registered twice", function))
	}
	s.funcs[function] = f
}

// Functions returns the registered function names.
func (s *Server) Functions() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.funcs))
	for k := range s.funcs {
		out = append(out, k)
	}
	return out
}

// envelope is the request body (§2.1). encoding/json matches the keys
// case-insensitively.
type envelope struct {
	Data     map[string]json.RawMessage
	Metadata map[string]json.RawMessage
}

// response is the answer body (§3.1).
type response struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// ServeHTTP implements the protocol: GET / is the readiness ping, POST
// /<Function> an invocation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.RLock()
	f, ok := s.funcs[name]
	s.mu.RUnlock()
	if !ok {
		s.logger.Warn("request for unknown function", AttrFunction, name, "method", r.Method)
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown function"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	s.invoke(w, r, name, f)
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request, name string, f Func) {
	start := time.Now()
	id := r.Header.Get(HeaderInvocationID)
	logger := s.logger.With(AttrFunction, name, AttrInvocationID, id)

	var env envelope
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err := dec.Decode(&env); err != nil && !errors.Is(err, io.EOF) {
		status := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			status = http.StatusRequestEntityTooLarge
		}
		logger.Error("decoding invocation request", "error", err, AttrOutcome, "bad_request")
		writeJSON(w, status, map[string]string{"error": "decoding invocation request: " + err.Error()})
		return
	}
	inv := NewInvocation(name, id, HostRequest(env), s.logger)

	res, err := s.run(r.Context(), f, inv)
	dur := time.Since(start).Milliseconds()
	if err != nil {
		logger.Error("invocation failed", "error", err, AttrOutcome, "failed", AttrDurationMS, dur)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error(), "Logs": nonNil(inv.Logs())})
		return
	}
	body, err := encodeResult(res, inv.Logs(), logger)
	if err != nil {
		logger.Error("encoding invocation result", "error", err, AttrOutcome, "failed", AttrDurationMS, dur)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "encoding invocation result: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	logger.Info("invocation succeeded", AttrOutcome, "succeeded", AttrDurationMS, dur)
}

// NewInvocation builds the Invocation the server passes to a Func from a
// decoded request: it reads Metadata.sys and Metadata.RetryContext (an
// unreadable one is logged and left zero) and sets Logger to logger with the
// function and invocation_id attributes (logger nil: discard). Tests of
// function code can pair it with TimerPayload, ServiceBusPayload and
// HTTPPayload to run a Func without HTTP.
func NewInvocation(function, id string, req HostRequest, logger *slog.Logger) *Invocation {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(AttrFunction, function, AttrInvocationID, id)
	inv := &Invocation{Function: function, ID: id, Data: req.Data, Metadata: req.Metadata, Logger: logger}
	if inv.Data == nil {
		inv.Data = map[string]json.RawMessage{}
	}
	if inv.Metadata == nil {
		inv.Metadata = map[string]json.RawMessage{}
	}
	if v, ok := lookup(inv.Metadata, "sys"); ok && !isNull(v) {
		sys, err := decodeSys(v)
		if err != nil {
			logger.Warn("ignoring unreadable Metadata.sys", "error", err)
		}
		inv.Sys = sys
	}
	if v, ok := lookup(inv.Metadata, "RetryContext"); ok && !isNull(v) {
		rc, err := decodeRetry(v)
		if err != nil {
			logger.Warn("ignoring unreadable Metadata.RetryContext", "error", err)
		}
		inv.Retry = rc
	}
	return inv
}

// errPanic marks an invocation that panicked.
var errPanic = errors.New("function panicked")

// run calls f in its own goroutine, recovering panics and enforcing the
// invocation timeout even when f ignores its context.
func (s *Server) run(parent context.Context, f Func, inv *Invocation) (Result, error) {
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, s.timeout)
	} else {
		ctx, cancel = context.WithCancel(parent)
	}
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				inv.Logger.Error("function panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				done <- outcome{err: fmt.Errorf("%w: %v", errPanic, p)}
			}
		}()
		res, err := f(ctx, inv)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
	}
	select {
	case o := <-done:
		return o.res, o.err
	case <-time.After(s.abandonGrace): // how long to wait for a Func after its context ended
		inv.Logger.Error("function did not return after its context ended; answering without it", "error", ctx.Err())
		return Result{}, fmt.Errorf("running function: %w", ctx.Err())
	}
}

// encodeResult marshals the response envelope: Outputs never null, Logs
// never null (entries from Invocation.Log first, then Result.Logs).
func encodeResult(res Result, invLogs []string, logger *slog.Logger) (body []byte, err error) {
	defer func() { // a panicking MarshalJSON must still give the host a 500
		if p := recover(); p != nil {
			body, err = nil, fmt.Errorf("%w while encoding the result: %v", errPanic, p)
		}
	}()
	out := response{Outputs: res.Outputs, Logs: append(invLogs, res.Logs...), ReturnValue: res.ReturnValue}
	if out.Outputs == nil {
		out.Outputs = map[string]any{}
	}
	out.Logs = nonNil(out.Logs)
	for k, v := range out.Outputs {
		if str, ok := v.(string); ok && LooksLikeBase64(str) {
			logger.Warn("output string looks like base64: the host turns it into bytes unless the binding has dataType binary", "binding", k)
		}
	}
	if str, ok := out.ReturnValue.(string); ok && LooksLikeBase64(str) {
		logger.Warn("ReturnValue string looks like base64: the host turns it into bytes unless the binding has dataType binary")
	}
	return json.Marshal(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeJSON writes v with an explicit JSON content type (Go would sniff
// text/plain, which the host rejects, §3.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":"encoding error response"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Serve serves on l until ctx is done, then shuts down gracefully: it stops
// accepting, lets in-flight invocations finish (bounded by
// ShutdownTimeout) and returns. A clean shutdown returns nil.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		// In-flight invocations must not see ctx's cancellation: drain them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.logger.Info("custom handler listening", "addr", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving custom handler: %w", err)
	case <-ctx.Done():
	}
	s.logger.Info("shutting down custom handler")
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	// Wait for abandoned Func goroutines too, within the same deadline.
	waited := make(chan struct{})
	go func() { s.running.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-sctx.Done():
		if err == nil {
			err = sctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("shutting down custom handler: %w", err)
	}
	return nil
}

// ListenAddr returns the address the host expects the handler on:
// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT, falling back to
// FUNCTIONS_HTTPWORKER_PORT. The host connects to the IPv4 loopback (§1.3).
func ListenAddr(getenv func(string) string) (string, error) {
	name := EnvPort
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		name = EnvLegacyPort
		v = strings.TrimSpace(getenv(name))
	}
	if v == "" {
		return "", fmt.Errorf("reading listen port: %s is not set (the Functions host sets it; set it yourself when running the handler alone)", EnvPort)
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("reading listen port: %s=%q is not a port number (1-65535)", name, v)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
