package localhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Errors of the handler process.
var (
	// ErrHandlerExited means the handler exited with code 0; like the real
	// host, the local host does not restart it.
	ErrHandlerExited = errors.New("handler process exited with code 0 and is not restarted")
	// ErrHostStopped means the host was stopped or shut itself down.
	ErrHostStopped = errors.New("host is stopped")
	// ErrTooManyErrors is the shutdown after too many handler errors
	// ("Exceeded http worker restart retry count").
	ErrTooManyErrors = errors.New("exceeded http worker restart retry count; shutting down the Functions host")
)

// handlerProc is one launch of the handler.
type handlerProc struct {
	cmd      *exec.Cmd
	port     int
	workerID string
	started  time.Time
	done     chan struct{} // closed after the process exited and its output was read
	exitErr  error
	exitCode int

	mu sync.Mutex
	// why is set before the host kills the process on purpose: "timeout"
	// (function timeout, a deliberate restart), "kill" (KillHandler),
	// "stop" (host shutdown) or "ready" (readiness timeout).
	why string
}

func (p *handlerProc) baseURL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// kill kills the process (and its process group), recording why.
func (p *handlerProc) kill(why string) {
	p.mu.Lock()
	if p.why == "" {
		p.why = why
	}
	p.mu.Unlock()
	killProcess(p.cmd)
}

// drop stops handing p to new invocations (it was killed or exited);
// they wait for the next process instead.
func (s *supervisor) drop(p *handlerProc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != p {
		return
	}
	s.cur = nil
	select {
	case <-s.readyCh:
		s.readyCh = make(chan struct{})
	default:
	}
}

func (p *handlerProc) reason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.why
}

// supervisor launches the handler, checks readiness, restarts it and
// enforces the error limit, like HttpFunctionInvocationDispatcher.
type supervisor struct {
	app         *App
	log         *slog.Logger
	out         io.Writer // optional raw copy of the handler output
	outMu       sync.Mutex
	readyWait   time.Duration
	errorLimit  int // < 0: unlimited
	errorWindow time.Duration
	skipKills   bool // KillHandler kills do not count as errors
	hostVersion string
	extraEnv    []string

	mu       sync.Mutex
	cur      *handlerProc // ready process, nil while (re)starting
	starting *handlerProc // process being started
	readyCh  chan struct{}
	fatal    error // set once: ErrHandlerExited, ErrTooManyErrors (wrapped), ErrHostStopped
	fatalCh  chan struct{}
	errs     []time.Time
	launches int
	firstErr chan error // first readiness outcome, for Start
}

func newSupervisor(app *App, o *Options, log *slog.Logger) *supervisor {
	s := &supervisor{
		app:         app,
		log:         log,
		out:         o.HandlerOutput,
		readyWait:   o.ReadyTimeout,
		errorLimit:  o.HandlerErrorLimit,
		errorWindow: o.HandlerErrorWindow,
		skipKills:   o.ExcludeKillsFromErrorLimit,
		hostVersion: o.HostVersion,
		readyCh:     make(chan struct{}),
		fatalCh:     make(chan struct{}),
		firstErr:    make(chan error, 1),
	}
	if s.readyWait <= 0 {
		s.readyWait = app.Host.InitializationTimeout
	}
	if s.readyWait <= 0 {
		s.readyWait = defaultInitTimeout
	}
	if s.errorLimit == 0 {
		s.errorLimit = 3
	}
	if s.errorWindow <= 0 {
		s.errorWindow = 30 * time.Minute
	}
	return s
}

// run is the supervisor loop; it returns when ctx is cancelled or the host
// gives up. The current process is killed on return.
func (s *supervisor) run(ctx context.Context) {
	defer func() {
		s.setFatal(ErrHostStopped)
		s.reportFirst(ErrHostStopped)
	}()
	for ctx.Err() == nil {
		p, err := s.launch()
		if err != nil {
			if s.workerError(fmt.Errorf("starting handler: %w", err)) {
				return
			}
			continue
		}
		s.mu.Lock()
		s.starting = p
		s.mu.Unlock()
		err = s.waitReady(ctx, p)
		s.mu.Lock()
		s.starting = nil
		s.mu.Unlock()
		if ctx.Err() != nil {
			p.kill("stop")
			<-p.done
			return
		}
		if err != nil {
			p.kill("ready")
			<-p.done
			if s.workerError(err) {
				return
			}
			continue
		}
		s.log.Info("handler is ready", "pid", p.cmd.Process.Pid, "port", p.port, "worker_id", p.workerID,
			"startup_ms", time.Since(p.started).Milliseconds())
		s.mu.Lock()
		s.cur = p
		close(s.readyCh)
		s.mu.Unlock()
		s.reportFirst(nil)

		select {
		case <-ctx.Done():
			p.kill("stop")
			<-p.done
			s.unready()
			return
		case <-p.done:
		}
		s.unready()
		switch why := p.reason(); {
		case why == "timeout":
			s.log.Warn("handler restarted after a function timeout", "pid", p.cmd.Process.Pid)
			continue
		case why == "kill" && s.skipKills:
			s.log.Warn("handler was killed; restarting (not counted as an error)", "pid", p.cmd.Process.Pid)
			continue
		case p.exitCode == 0 && why == "":
			s.log.Error("handler exited with code 0; the host does not restart it", "pid", p.cmd.Process.Pid)
			s.setFatal(ErrHandlerExited)
			return
		}
		if s.workerError(fmt.Errorf("handler process %d exited: %v", p.cmd.Process.Pid, p.exitErr)) {
			return
		}
	}
}

func (s *supervisor) unready() {
	s.mu.Lock()
	s.cur = nil
	select {
	case <-s.readyCh:
		s.readyCh = make(chan struct{})
	default:
	}
	s.mu.Unlock()
}

// workerError records an error event and reports whether the host must
// shut down (the error count within the window reached the limit).
func (s *supervisor) workerError(err error) (shutdown bool) {
	now := time.Now()
	s.mu.Lock()
	kept := s.errs[:0]
	for _, t := range s.errs {
		if now.Sub(t) < s.errorWindow {
			kept = append(kept, t)
		}
	}
	s.errs = append(kept, now)
	n := len(s.errs)
	s.mu.Unlock()
	s.log.Error("handler error", "error", err.Error(), "errors_in_window", n)
	if s.errorLimit > 0 && n >= s.errorLimit {
		fatal := fmt.Errorf("%w (%d errors within %s; last: %v)", ErrTooManyErrors, n, s.errorWindow, err)
		s.log.Error("Exceeded http worker restart retry count. Shutting down Functions Host", "error", err.Error())
		s.setFatal(fatal)
		s.reportFirst(fatal)
		return true
	}
	return false
}

func (s *supervisor) setFatal(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fatal == nil {
		s.fatal = err
		close(s.fatalCh)
	}
}

func (s *supervisor) reportFirst(err error) {
	select {
	case s.firstErr <- err:
	default:
	}
}

// err returns why the handler is permanently unavailable, or nil.
func (s *supervisor) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// acquire waits for a ready handler.
func (s *supervisor) acquire(ctx context.Context) (*handlerProc, error) {
	for {
		s.mu.Lock()
		cur, ready, fatal := s.cur, s.readyCh, s.fatal
		s.mu.Unlock()
		if fatal != nil {
			return nil, fatal
		}
		if cur != nil {
			return cur, nil
		}
		select {
		case <-ready:
		case <-s.fatalCh:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the handler to be ready: %w", ctx.Err())
		}
	}
}

// restartAfterTimeout kills p so that the loop starts a new process; all
// in-flight invocations on p fail.
func (s *supervisor) restartAfterTimeout(p *handlerProc) {
	s.drop(p)
	p.kill("timeout")
}

// killCurrent kills the running (or starting) handler with SIGKILL.
func (s *supervisor) killCurrent() error {
	s.mu.Lock()
	p := s.cur
	if p == nil {
		p = s.starting
	}
	s.mu.Unlock()
	if p == nil {
		return errors.New("killing handler: no handler process is running")
	}
	s.log.Warn("killing handler process", "pid", p.cmd.Process.Pid)
	s.drop(p)
	p.kill("kill")
	return nil
}

// stats returns how often the handler was restarted (every launch after
// the first: after a crash, a kill, a readiness or a function timeout) and
// launched.
func (s *supervisor) stats() (restarts, launches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.launches-1, 0), s.launches
}

// launch starts one handler process as HttpWorkerProcess does.
func (s *supervisor) launch() (*handlerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	workerID := uuid.NewString()
	ctxEnv := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT":      strconv.Itoa(port),
		"FUNCTIONS_HTTPWORKER_PORT":         strconv.Itoa(port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID": workerID,
		"FUNCTIONS_HTTPWORKER_ID":           workerID,
		"FUNCTIONS_APP_ROOT_PATH":           s.app.Root,
		"FUNCTIONS_WORKER_RUNTIME":          "custom",
	}
	hd := s.app.Host.Handler
	exe, args := commandLine(hd, s.app.lookup, ctxEnv)
	cmd := exec.Command(exe, args...)
	cmd.Dir = hd.WorkingDirectory
	cmd.Env = mergeEnv(os.Environ(), s.app.Settings, ctxEnv)
	cmd.Stdout = &lineWriter{emit: s.stdoutLine}
	cmd.Stderr = &lineWriter{emit: s.stderrLine}
	cmd.WaitDelay = 2 * time.Second // do not hang on grandchildren holding the pipes
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launching %s: %w", exe, err)
	}
	p := &handlerProc{cmd: cmd, port: port, workerID: workerID, started: time.Now(), done: make(chan struct{})}
	s.mu.Lock()
	s.launches++
	s.mu.Unlock()
	// The configured arguments, not the expanded ones: %VAR% may hold secrets.
	s.log.Info("handler process started", "exe", exe, "arguments", hd.Arguments, "pid", cmd.Process.Pid, "port", port)
	go func() {
		err := cmd.Wait()
		s.drop(p)
		cmd.Stdout.(*lineWriter).flush()
		cmd.Stderr.(*lineWriter).flush()
		p.exitErr = err
		p.exitCode = cmd.ProcessState.ExitCode()
		if err == nil {
			p.exitErr = errors.New("exit status 0")
		}
		s.log.Info("handler process exited", "pid", cmd.Process.Pid, "exit_code", p.exitCode, "status", cmd.ProcessState.String())
		close(p.done)
	}()
	return p, nil
}

// waitReady pings GET / every 25 ms until any HTTP response, as
// DefaultHttpWorkerService.IsWorkerReady does.
func (s *supervisor) waitReady(ctx context.Context, p *handlerProc) error {
	deadline := time.Now().Add(s.readyWait)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("handler process exited during start-up: %v", p.exitErr)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		req, _ := http.NewRequestWithContext(actx, http.MethodGet, p.baseURL()+"/", nil)
		req.Header.Set("User-Agent", "Azure-Functions-Host/"+s.hostVersion)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			_ = resp.Body.Close()
			return nil
		}
		if !keepWaiting(err) {
			// Not a socket error: the host counts any other
			// HttpRequestException as "ready".
			s.log.Debug("readiness ping failed with a non-socket error; treating the handler as ready", "error", err.Error())
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("handler did not answer GET / on 127.0.0.1:%d within %s (initialization timeout)", p.port, s.readyWait)
		}
		select {
		case <-p.done:
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func keepWaiting(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func (s *supervisor) stdoutLine(line string) {
	s.log.Info(line, "source", "handler", "stream", "stdout")
	s.copyOut(line)
}

func (s *supervisor) stderrLine(line string) {
	if strings.Contains(strings.ToLower(line), "warn") {
		s.log.Warn(line, "source", "handler", "stream", "stderr")
	} else {
		s.log.Error(line, "source", "handler", "stream", "stderr")
	}
	s.copyOut(line)
}

func (s *supervisor) copyOut(line string) {
	if s.out == nil {
		return
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = io.WriteString(s.out, line+"\n")
}

// commandLine builds the executable and argv like DefaultWorkerProcessFactory:
// arguments (each expanded with the environment), the quoted worker path,
// the worker arguments; then %VAR% references to the process context
// variables are replaced, remaining %...% references are removed, and the
// string is split the way .NET splits ProcessStartInfo.Arguments.
func commandLine(hd HandlerDescription, lookup func(string) (string, bool), ctxEnv map[string]string) (string, []string) {
	expand := func(s string) string {
		return settingRefRE.ReplaceAllStringFunc(s, func(m string) string {
			if v, ok := lookup(m[1 : len(m)-1]); ok {
				return v
			}
			return m
		})
	}
	var b strings.Builder
	for _, a := range hd.Arguments {
		b.WriteString(" " + expand(a))
	}
	if hd.DefaultWorkerPath != "" {
		b.WriteString(` "` + hd.DefaultWorkerPath + `"`)
	}
	for _, a := range hd.WorkerArguments {
		b.WriteString(" " + expand(a))
	}
	line, exe := b.String(), hd.Executable
	for k, v := range ctxEnv {
		line = strings.ReplaceAll(line, "%"+k+"%", v)
		exe = strings.ReplaceAll(exe, "%"+k+"%", v)
	}
	line = unsetVarRE.ReplaceAllString(line, "")
	return exe, splitCommandLine(line)
}

var unsetVarRE = regexp.MustCompile(`%(.+?)%`)

// splitCommandLine splits a command line with the rules .NET applies on
// Unix (the Windows CommandLineToArgvW rules): whitespace separates, double
// quotes group, 2n backslashes before a quote give n backslashes and a
// quote toggle, 2n+1 give n backslashes and a literal quote.
func splitCommandLine(s string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			n := 0
			for i < len(s) && s[i] == '\\' {
				n++
				i++
			}
			if i < len(s) && s[i] == '"' {
				cur.WriteString(strings.Repeat(`\`, n/2))
				if n%2 == 1 {
					cur.WriteByte('"')
				} else {
					quoted = !quoted
				}
			} else {
				cur.WriteString(strings.Repeat(`\`, n))
				i--
			}
			inArg = true
		case c == '"':
			quoted = !quoted
			inArg = true
		case (c == ' ' || c == '\t') && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// mergeEnv overlays settings and then the context variables on base.
func mergeEnv(base []string, layers ...map[string]string) []string {
	idx := map[string]int{}
	out := make([]string, 0, len(base))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, layer := range layers {
		for k, v := range layer {
			if i, ok := idx[k]; ok {
				out[i] = k + "=" + v
				continue
			}
			idx[k] = len(out)
			out = append(out, k+"="+v)
		}
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineWriter splits a stream into lines (without the newline).
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

const maxLine = 1 << 20

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLine {
				w.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(strings.TrimSuffix(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}
