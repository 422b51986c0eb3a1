// Package localhost is a local stand-in for the Azure Functions host running
// a custom handler: it reads the app folder (host.json, one function.json per
// sub-folder, local.settings.json), launches the handler as a separate
// process the way the real host does, invokes it in payload mode (or
// forwarding mode) with the encoders of package wire, fires timers on their
// NCRONTAB schedules, runs in-memory Service Bus queues with peek-lock,
// redelivery, dead-lettering, duplicate detection, scheduled messages and
// sessions, and serves an HTTP front end like `func start` with key checks
// and an admin API.
//
// Behaviour follows /work/shared/reference/functions-custom-handler-protocol.md
// (§1 configuration and process lifecycle, §4 errors, timeouts and retries,
// §5 function.json, §7 harness spec).
//
// # Front end
//
// HTTP functions answer on /{routePrefix}/{route} (route defaults to the
// function name) after the method and the authLevel check: "function" and
// "admin" need the function key or the master key ("admin": master only) in
// the "code" query parameter or the x-functions-key header, else 401.
// Everything under /admin needs the master key:
//
//	GET  /admin/host/status                              handler state and counters
//	POST /admin/functions/{name}         {"input":"…"}   202; fires a timer, enqueues input for a queue trigger, POSTs it to an HTTP trigger
//	GET  /admin/queues                                   per queue: active, scheduled, inFlight, deadLettered, completed, …
//	POST /admin/queues/{queue}/messages  message|[…]     201; duplicates are dropped silently, as by Service Bus
//	GET  /admin/queues/{queue}/deadletters               the dead-letter sub-queue
//	POST /admin/queues/{queue}/deadletters message|[…]   201; dead-letters directly (needs deadLetterReason)
//	POST /admin/queues/{queue}/deadletters/{seq}/resubmit 204; back to the queue as a new message
//
// A message is {"messageId","correlationId","sessionId","contentType",
// "subject","body" (string),"applicationProperties":{…},
// "scheduledEnqueueTimeUtc" (RFC 3339 or "")}; unknown fields are rejected.
package localhost

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Options configure a Host. Zero values mean the documented defaults.
type Options struct {
	// AppRoot is the function app folder (host.json, function folders).
	AppRoot string
	// Settings are app settings; they override local.settings.json Values
	// and are passed to the handler's environment.
	Settings map[string]string
	// IgnoreLocalSettings skips AppRoot/local.settings.json.
	IgnoreLocalSettings bool

	// Addr is the front-end listen address (default "127.0.0.1:0"; use
	// "127.0.0.1:7071" for the func start port).
	Addr string
	// FunctionKey and MasterKey are the keys the front end accepts; empty
	// keys are generated (see Keys). The master key also opens /admin.
	FunctionKey, MasterKey string

	// Logger receives host and handler logs (handler stdout at Info, stderr
	// at Error, or Warn when the line contains "warn"). Nil discards.
	Logger *slog.Logger
	// HandlerOutput, when set, receives every handler output line verbatim.
	HandlerOutput io.Writer

	// DisableTimers turns off automatic timer firing (runOnStartup
	// included); Invoke and the admin API still fire timers.
	DisableTimers bool

	// MaxDeliveryCount is the queues' MaxDeliveryCount (default 10).
	MaxDeliveryCount int
	// DuplicateDetectionWindow is the duplicate detection history (default
	// 10 minutes; negative disables duplicate detection).
	DuplicateDetectionWindow time.Duration
	// MessageTimeToLive is the queues' default message TTL (default 14
	// days; negative means none).
	MessageTimeToLive time.Duration
	// MaxMessageSize bounds a message (body plus properties), default
	// 256 KiB as on the Standard tier; negative disables the check.
	MaxMessageSize int
	// Queues declares queues beyond those named in function.json files.
	// Sending to an undeclared queue fails as on Azure (entity not found).
	Queues []string

	// ReadyTimeout bounds the readiness ping loop (default: host.json
	// customHandler.initializationTimeout, else 30 s).
	ReadyTimeout time.Duration
	// FunctionTimeout overrides host.json functionTimeout when non-zero;
	// negative means unbounded.
	FunctionTimeout time.Duration
	// HandlerErrorLimit is how many handler errors (crash, readiness
	// timeout) within HandlerErrorWindow shut the host down (default 3, as
	// the real host; negative: never).
	HandlerErrorLimit  int
	HandlerErrorWindow time.Duration // default 30 minutes
	// ExcludeKillsFromErrorLimit makes KillHandler kills restart the
	// handler without counting as errors (crash tests).
	ExcludeKillsFromErrorLimit bool

	// HostVersion is reported in X-Azure-Functions-HostVersion and the
	// User-Agent (default wire.DefaultHostVersion).
	HostVersion string
	// ChunkedRequests sends invocation bodies without Content-Length, as
	// the real host probably does ([inferred] in the protocol notes).
	ChunkedRequests bool
	// TimerStatus seeds the schedule monitor, as if read from storage: a
	// Next in the past at start-up fires the timer once with IsPastDue.
	TimerStatus map[string]wire.ScheduleStatus
}

// Stats is a snapshot of the host.
type Stats struct {
	Queues       []QueueStats `json:"queues"`
	Running      int          `json:"running"`     // invocations in progress
	Invocations  int64        `json:"invocations"` // finished invocations (each attempt)
	Failures     int64        `json:"failures"`
	Restarts     int          `json:"restarts"` // handler restarts
	Launches     int          `json:"launches"` // handler processes started
	HandlerState string       `json:"handlerState"`
}

// Host is a running local Functions host.
type Host struct {
	opts   Options
	app    *App
	log    *slog.Logger
	broker *broker
	sup    *supervisor
	client *http.Client // to the handler; never follows redirects
	timers map[string]*timerState

	funcTimeout time.Duration
	fnKey       string
	masterKey   string

	mu          sync.Mutex
	started     bool
	stopped     bool
	ln          net.Listener
	srv         *http.Server
	life        context.Context // cancelled by Stop after draining
	cancelLife  context.CancelFunc
	intake      context.Context // cancelled first by Stop: no new work
	stopIntake  context.CancelFunc
	running     int // invocations in progress
	busy        int // invocations plus timer firings (retry waits included)
	invocations int64
	failures    int64
	wg          sync.WaitGroup
}

// New reads the app folder and prepares a host; nothing runs until Start.
func New(opts Options) (*Host, error) {
	if opts.AppRoot == "" {
		return nil, errors.New("creating local host: Options.AppRoot is empty")
	}
	app, err := LoadApp(opts.AppRoot, opts.Settings, !opts.IgnoreLocalSettings)
	if err != nil {
		return nil, fmt.Errorf("loading function app: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.HostVersion == "" {
		opts.HostVersion = wire.DefaultHostVersion
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	maxDelivery := opts.MaxDeliveryCount
	if maxDelivery <= 0 {
		maxDelivery = 10
	}
	dup := opts.DuplicateDetectionWindow
	if dup == 0 {
		dup = 10 * time.Minute
	}
	ttl := opts.MessageTimeToLive
	if ttl == 0 {
		ttl = 14 * 24 * time.Hour
	}
	size := opts.MaxMessageSize
	if size == 0 {
		size = 256 * 1024
	}
	h := &Host{
		opts:      opts,
		app:       app,
		log:       log,
		broker:    newBroker(maxDelivery, dup, max(ttl, 0), max(size, 0)),
		timers:    map[string]*timerState{},
		fnKey:     opts.FunctionKey,
		masterKey: opts.MasterKey,
	}
	h.broker.onDrop = func(q string, m *brokerMsg, why string) {
		log.Warn("message dropped", "queue", q, "message_id", m.MessageID, "sequence_number", m.seq, "reason", why)
	}
	if h.fnKey == "" {
		h.fnKey = randomKey()
	}
	if h.masterKey == "" {
		h.masterKey = randomKey()
	}
	h.funcTimeout = app.Host.FunctionTimeout
	if opts.FunctionTimeout > 0 {
		h.funcTimeout = opts.FunctionTimeout
	} else if opts.FunctionTimeout < 0 {
		h.funcTimeout = 0
	}
	h.sup = newSupervisor(app, &h.opts, log)
	h.client = &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, q := range opts.Queues {
		if !queueNameRE.MatchString(q) {
			return nil, fmt.Errorf("creating local host: queue name %q is not a valid Service Bus entity name", q)
		}
		h.broker.declare(q, false, false)
	}
	for _, f := range app.Functions {
		for _, b := range f.Bindings {
			switch b.Type {
			case TypeServiceBusTrigger:
				h.broker.declare(b.QueueName, !f.Disabled, b.IsSessionsEnabled)
			case TypeServiceBus:
				h.broker.declare(b.QueueName, false, false)
			}
		}
		if f.Trigger.Type == TypeTimerTrigger {
			ts := &timerState{fn: f}
			if st, ok := opts.TimerStatus[f.Name]; ok {
				ts.status = st
				ts.seeded = true
			}
			h.timers[f.Name] = ts
		}
	}
	for _, w := range app.Warnings {
		log.Warn(w)
	}
	return h, nil
}

func randomKey() string {
	b := make([]byte, 30)
	_, _ = rand.Read(b)
	return strings.TrimRight(base64.URLEncoding.EncodeToString(b), "=")
}

// App returns the parsed function app.
func (h *Host) App() *App { return h.app }

// Keys returns the function key and the master key the front end accepts.
func (h *Host) Keys() (functionKey, masterKey string) { return h.fnKey, h.masterKey }

// URL returns the front end's base URL ("http://127.0.0.1:port"), or ""
// before Start.
func (h *Host) URL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return ""
	}
	return "http://" + h.ln.Addr().String()
}

// Start launches the handler, waits until it answers its readiness ping (or
// the host gives up after too many errors), then starts the front end,
// queue consumers and timers. ctx bounds the start-up only; call Stop to
// shut the host down.
func (h *Host) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return errors.New("starting local host: already started")
	}
	h.started = true
	ln, err := net.Listen("tcp", h.opts.Addr)
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("starting local host: listening on %s: %w", h.opts.Addr, err)
	}
	h.ln = ln
	h.life, h.cancelLife = context.WithCancel(context.WithoutCancel(ctx))
	h.intake, h.stopIntake = context.WithCancel(h.life)
	h.srv = &http.Server{Handler: h.routes(), ReadHeaderTimeout: 30 * time.Second, BaseContext: func(net.Listener) context.Context { return h.life }}
	h.mu.Unlock()

	h.goFn(func() { h.sup.run(h.life) })
	h.goFn(func() { h.broker.runScheduler(h.life) })
	h.goFn(func() {
		// A host that gave up takes no more work (queues stop receiving).
		select {
		case <-h.sup.fatalCh:
			h.stopIntake()
			h.broker.notify()
		case <-h.life.Done():
		}
	})

	select {
	case err = <-h.sup.firstErr:
	case <-ctx.Done():
		err = fmt.Errorf("waiting for the handler to be ready: %w", ctx.Err())
	}
	if err != nil {
		_ = h.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("starting local host: %w", err)
	}

	h.goFn(func() {
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("front end stopped", "error", err.Error())
		}
	})
	for _, f := range h.app.Functions {
		if f.Disabled {
			h.log.Info("function is disabled", "function", f.Name)
			continue
		}
		switch f.Trigger.Type {
		case TypeServiceBusTrigger:
			h.goFn(func() { h.consume(f) })
		case TypeTimerTrigger:
			if !h.opts.DisableTimers {
				h.goFn(func() { h.runTimer(f) })
			}
		}
	}
	h.logFunctions()
	return nil
}

func (h *Host) goFn(f func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
}

func (h *Host) logFunctions() {
	base := h.URL()
	for _, f := range h.app.Functions {
		t := f.Trigger
		attrs := []any{"function", f.Name, "trigger", t.Type}
		switch t.Type {
		case TypeHTTPTrigger:
			methods := "ALL"
			if len(t.Methods) > 0 {
				methods = strings.Join(t.Methods, ",")
			}
			attrs = append(attrs, "methods", methods, "url", base+h.routePath(f), "auth_level", t.AuthLevel)
		case TypeTimerTrigger:
			attrs = append(attrs, "schedule", t.Schedule)
		case TypeServiceBusTrigger:
			attrs = append(attrs, "queue", t.QueueName, "sessions", t.IsSessionsEnabled)
		}
		if f.Disabled {
			attrs = append(attrs, "disabled", true)
		}
		h.log.Info("function loaded", attrs...)
	}
}

// Stop stops taking new work, waits (bounded by ctx) for running
// invocations, then kills the handler and ends every goroutine. Messages
// still locked go back to their queue.
func (h *Host) Stop(ctx context.Context) error {
	h.mu.Lock()
	if !h.started || h.stopped {
		h.mu.Unlock()
		return nil
	}
	h.stopped = true
	srv := h.srv
	h.mu.Unlock()

	h.stopIntake()
	var errs []error
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("shutting down the front end: %w", err))
		_ = srv.Close()
	}
	for {
		ch := h.broker.waitCh()
		h.mu.Lock()
		n := h.busy
		h.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("waiting for %d running invocation(s): %w", n, ctx.Err()))
		}
		break
	}
	h.cancelLife()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		errs = append(errs, errors.New("stopping local host: goroutines did not end within 10s"))
	}
	h.client.CloseIdleConnections()
	return errors.Join(errs...)
}

// Err returns why the host can no longer run functions (the handler exited
// with code 0, the error limit was reached, or the host was stopped), or nil.
func (h *Host) Err() error { return h.sup.err() }

// Done is closed when the host can no longer run functions (see Err).
func (h *Host) Done() <-chan struct{} { return h.sup.fatalCh }

// Enqueue sends one message to a local queue (as a Service Bus sender
// would: duplicates within the detection window are dropped silently).
func (h *Host) Enqueue(queueName string, m Message) error {
	_, err := h.broker.send(queueName, []Message{m}, false)
	if err != nil {
		return fmt.Errorf("enqueueing to %s: %w", queueName, err)
	}
	return nil
}

// Send implements queue.Sender on the local queues (one atomic batch).
func (h *Host) Send(ctx context.Context, queueName string, msgs ...Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sending to %s: %w", queueName, err)
	}
	if _, err := h.broker.send(queueName, msgs, false); err != nil {
		return fmt.Errorf("sending to %s: %w", queueName, err)
	}
	return nil
}

var _ queue.Sender = (*Host)(nil)

// DeadLetters returns the dead-letter sub-queue of a queue (nil for an
// unknown queue).
func (h *Host) DeadLetters(queueName string) []DeadLetter {
	d, _ := h.broker.deadLetters(queueName)
	return d
}

// DeadLetter puts m straight into the queue's dead-letter sub-queue with
// the given reason and description and returns its sequence number.
func (h *Host) DeadLetter(queueName string, m Message, reason, description string) (int64, error) {
	seq, err := h.broker.deadLetter(queueName, m, reason, description)
	if err != nil {
		return 0, fmt.Errorf("dead-lettering to %s: %w", queueName, err)
	}
	return seq, nil
}

// KillHandler kills the handler process with SIGKILL, as a crash would; the
// host restarts it (a kill is a non-zero exit).
func (h *Host) KillHandler() error { return h.sup.killCurrent() }

// Restarts returns how many times the handler was restarted.
func (h *Host) Restarts() int {
	r, _ := h.sup.stats()
	return r
}

// Stats returns a snapshot of queues, invocations and the handler.
func (h *Host) Stats() Stats {
	r, l := h.sup.stats()
	h.mu.Lock()
	s := Stats{Running: h.running, Invocations: h.invocations, Failures: h.failures, Restarts: r, Launches: l}
	h.mu.Unlock()
	s.Queues = h.broker.stats()
	s.HandlerState = h.handlerState()
	return s
}

func (h *Host) handlerState() string {
	if err := h.sup.err(); err != nil {
		switch {
		case errors.Is(err, ErrHostStopped):
			return "Stopped"
		case errors.Is(err, ErrHandlerExited):
			return "Exited"
		}
		return "Error"
	}
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	if h.sup.cur != nil {
		return "Running"
	}
	return "Initializing"
}

// WaitIdle returns when no invocation runs and every queue that triggers a
// function has no active, scheduled or in-flight message. Queues nothing
// consumes are not waited for. It fails if the host can no longer run
// functions.
func (h *Host) WaitIdle(ctx context.Context) error {
	for {
		ch := h.broker.waitCh()
		if err := h.sup.err(); err != nil {
			return fmt.Errorf("waiting for idle: %w", err)
		}
		h.mu.Lock()
		n := h.busy
		h.mu.Unlock()
		if n == 0 && h.broker.idle() {
			return nil
		}
		select {
		case <-ch:
		case <-h.sup.fatalCh:
		case <-ctx.Done():
			return fmt.Errorf("waiting for idle (%d running, queues %s): %w", n, h.queueSummary(), ctx.Err())
		}
	}
}

func (h *Host) queueSummary() string {
	var parts []string
	for _, q := range h.broker.stats() {
		if q.Active+q.Scheduled+q.InFlight > 0 {
			parts = append(parts, fmt.Sprintf("%s active=%d scheduled=%d inflight=%d", q.Name, q.Active, q.Scheduled, q.InFlight))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, "; ")
}

// Invoke runs a function once, like the admin API: a timer fires now (with
// its retry policy) and Invoke returns the outcome; for a Service Bus
// trigger input is enqueued as a message body (use WaitIdle to wait for
// its processing); an HTTP trigger receives a POST with input as body and
// Invoke returns the invocation outcome (not the HTTP status).
func (h *Host) Invoke(ctx context.Context, function, input string) error {
	f := h.app.Function(function)
	if f == nil {
		return fmt.Errorf("invoking %s: no such function", function)
	}
	if err := h.checkStarted(); err != nil {
		return fmt.Errorf("invoking %s: %w", function, err)
	}
	switch f.Trigger.Type {
	case TypeTimerTrigger:
		return h.fireTimer(ctx, f, false, time.Time{}, "manual")
	case TypeServiceBusTrigger:
		return h.Enqueue(f.Trigger.QueueName, Message{Body: []byte(input)})
	default:
		u := h.URL() + h.routePath(f)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(input))
		if err != nil {
			return fmt.Errorf("invoking %s: %w", function, err)
		}
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		req.ContentLength = int64(len(input))
		_, err = h.invokeHTTP(ctx, f, req, []byte(input), nil, authAdmin, "master")
		return err
	}
}

func (h *Host) checkStarted() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.started {
		return errors.New("host is not started")
	}
	if h.stopped {
		return ErrHostStopped
	}
	return nil
}
