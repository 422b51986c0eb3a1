package localhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Binding types the local host implements. Type names are compared
// case-insensitively, as the host does.
const (
	TypeTimerTrigger      = "timerTrigger"
	TypeServiceBusTrigger = "serviceBusTrigger"
	TypeHTTPTrigger       = "httpTrigger"
	TypeHTTP              = "http"
	TypeServiceBus        = "serviceBus"
)

// Authorisation levels of an HTTP trigger.
const (
	AuthAnonymous = "anonymous"
	AuthFunction  = "function"
	AuthAdmin     = "admin"
)

const (
	defaultFunctionTimeout = 30 * time.Minute // dedicated plans and func start
	defaultRoutePrefix     = "api"
	defaultInitTimeout     = 30 * time.Second
	defaultSessions        = 8
	returnBinding          = "$return"
)

// App is a parsed function app folder: host.json, the functions (one per
// direct sub-folder holding a function.json) and the effective app settings.
type App struct {
	Root      string
	Host      HostConfig
	Functions []*Function // sorted by name
	// Settings are the effective app settings: local.settings.json Values
	// (unless the process environment already defines the name, as Core
	// Tools does) overridden by the settings passed to LoadApp.
	Settings map[string]string
	Location *time.Location // WEBSITE_TIME_ZONE, UTC by default
	// Warnings lists accepted inputs the Azure host would treat differently.
	Warnings []string
}

// HostConfig is the part of host.json the local host uses.
type HostConfig struct {
	Handler                     HandlerDescription
	EnableForwardingHTTPRequest bool
	// FunctionTimeout is 0 when unbounded ("-1").
	FunctionTimeout       time.Duration
	RoutePrefix           string // "api" unless extensions.http.routePrefix says otherwise
	MaxConcurrentCalls    int    // extensions.serviceBus.maxConcurrentCalls, 16 x cores by default
	MaxConcurrentSessions int    // extensions.serviceBus.maxConcurrentSessions, 8 by default
	// InitializationTimeout bounds the readiness ping loop (customHandler.initializationTimeout).
	InitializationTimeout time.Duration
	Retry                 *RetryPolicy // host-level default retry policy
}

// HandlerDescription is customHandler.description, resolved.
type HandlerDescription struct {
	// DefaultExecutablePath as configured; Executable is the resolved path
	// (relative to WorkerDirectory when such a file exists, otherwise the
	// name as given, to be found on PATH at launch).
	DefaultExecutablePath string
	Executable            string
	Arguments             []string
	DefaultWorkerPath     string
	WorkerArguments       []string
	WorkingDirectory      string // absolute
	WorkerDirectory       string // absolute
}

// RetryPolicy is a function-level (or host-level) retry policy.
type RetryPolicy struct {
	Strategy        string // fixedDelay or exponentialBackoff
	MaxRetryCount   int    // -1 retries forever
	DelayInterval   time.Duration
	MinimumInterval time.Duration
	MaximumInterval time.Duration
}

// delay returns the wait before retry number n (1-based).
func (p *RetryPolicy) delay(n int) time.Duration {
	if p.Strategy == "fixedDelay" {
		return p.DelayInterval
	}
	d := p.MinimumInterval
	for i := 1; i < n && d < p.MaximumInterval; i++ {
		d *= 2
	}
	return min(d, p.MaximumInterval)
}

// Function is one function of the app.
type Function struct {
	Name     string
	File     string // path of function.json
	Bindings []*Binding
	Trigger  *Binding
	Retry    *RetryPolicy
	Disabled bool

	schedule Schedule // timer trigger
	route    *routeTemplate
}

// Binding is one entry of function.json "bindings".
type Binding struct {
	Name      string
	Type      string // canonical spelling (see the Type* constants)
	Direction string // in, out or inout
	DataType  string // "", string or binary

	// timerTrigger
	Schedule     string // resolved (%AppSetting% replaced)
	RunOnStartup bool
	UseMonitor   bool

	// serviceBusTrigger and serviceBus output
	QueueName         string // resolved
	Connection        string
	IsSessionsEnabled bool

	// httpTrigger
	AuthLevel string
	Methods   []string // upper case; empty means all
	Route     string
}

// IsTrigger reports whether b is the trigger binding.
func (b *Binding) IsTrigger() bool { return strings.HasSuffix(strings.ToLower(b.Type), "trigger") }

// Outputs returns the output bindings (direction out or inout).
func (f *Function) Outputs() []*Binding {
	var out []*Binding
	for _, b := range f.Bindings {
		if b.Direction != "in" {
			out = append(out, b)
		}
	}
	return out
}

// HTTPOutput returns the http output binding, or nil.
func (f *Function) HTTPOutput() *Binding {
	for _, b := range f.Bindings {
		if b.Type == TypeHTTP && b.Direction != "in" {
			return b
		}
	}
	return nil
}

// forwardable reports whether the function qualifies for
// enableForwardingHttpRequest: exactly one httpTrigger and one http output.
func (f *Function) forwardable() bool {
	return len(f.Bindings) == 2 && f.Trigger.Type == TypeHTTPTrigger && f.HTTPOutput() != nil
}

// Function returns the function with the given name (case-insensitive, like
// the host), or nil.
func (a *App) Function(name string) *Function {
	for _, f := range a.Functions {
		if strings.EqualFold(f.Name, name) {
			return f
		}
	}
	return nil
}

// lookup reads an app setting: the effective settings first, then the
// process environment.
func (a *App) lookup(name string) (string, bool) {
	if v, ok := a.Settings[name]; ok {
		return v, true
	}
	return os.LookupEnv(name)
}

// ---- raw JSON shapes (encoding/json matches keys case-insensitively, as
// the host's IConfiguration binding does) ----

type hostJSON struct {
	Version         *string         `json:"version"`
	FunctionTimeout json.RawMessage `json:"functionTimeout"`
	CustomHandler   *handlerJSON    `json:"customHandler"`
	HTTPWorker      *handlerJSON    `json:"httpWorker"`
	Retry           *retryJSON      `json:"retry"`
	Extensions      struct {
		HTTP *struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
		ServiceBus *struct {
			MaxConcurrentCalls    *int  `json:"maxConcurrentCalls"`
			MaxConcurrentSessions *int  `json:"maxConcurrentSessions"`
			AutoCompleteMessages  *bool `json:"autoCompleteMessages"`
		} `json:"serviceBus"`
	} `json:"extensions"`
}

type handlerJSON struct {
	Description *struct {
		DefaultExecutablePath string   `json:"defaultExecutablePath"`
		Arguments             []string `json:"arguments"`
		DefaultWorkerPath     string   `json:"defaultWorkerPath"`
		WorkerArguments       []string `json:"workerArguments"`
		WorkingDirectory      string   `json:"workingDirectory"`
		WorkerDirectory       string   `json:"workerDirectory"`
	} `json:"description"`
	EnableForwardingHTTPRequest bool   `json:"enableForwardingHttpRequest"`
	InitializationTimeout       string `json:"initializationTimeout"`
}

type retryJSON struct {
	Strategy        string `json:"strategy"`
	MaxRetryCount   *int   `json:"maxRetryCount"`
	DelayInterval   string `json:"delayInterval"`
	MinimumInterval string `json:"minimumInterval"`
	MaximumInterval string `json:"maximumInterval"`
}

type functionJSON struct {
	Bindings []bindingJSON `json:"bindings"`
	Disabled bool          `json:"disabled"`
	Retry    *retryJSON    `json:"retry"`
}

type bindingJSON struct {
	Name                 string   `json:"name"`
	Type                 string   `json:"type"`
	Direction            string   `json:"direction"`
	DataType             string   `json:"dataType"`
	Schedule             string   `json:"schedule"`
	RunOnStartup         bool     `json:"runOnStartup"`
	UseMonitor           *bool    `json:"useMonitor"`
	QueueName            string   `json:"queueName"`
	TopicName            string   `json:"topicName"`
	Connection           string   `json:"connection"`
	IsSessionsEnabled    bool     `json:"isSessionsEnabled"`
	Cardinality          string   `json:"cardinality"`
	AutoCompleteMessages *bool    `json:"autoCompleteMessages"`
	AuthLevel            string   `json:"authLevel"`
	Methods              []string `json:"methods"`
	Route                string   `json:"route"`
}

type localSettingsJSON struct {
	IsEncrypted bool                       `json:"IsEncrypted"`
	Values      map[string]json.RawMessage `json:"Values"`
}

var (
	functionNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_\-]{0,127}$`)
	bindingNameRE  = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]{0,127}|\$return)$`)
	settingRefRE   = regexp.MustCompile(`%([^%\s]+)%`)
	queueNameRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._\-/]{0,258}[A-Za-z0-9])?$`)
)

var knownTypes = []string{TypeTimerTrigger, TypeServiceBusTrigger, TypeHTTPTrigger, TypeHTTP, TypeServiceBus}

var httpMethods = map[string]bool{"GET": true, "POST": true, "PUT": true, "DELETE": true, "HEAD": true, "PATCH": true, "OPTIONS": true, "TRACE": true}

// LoadApp reads the function app folder at root. settings override
// local.settings.json Values; readLocalSettings controls whether that file is
// read at all. Every problem found is reported, each naming its file.
func LoadApp(root string, settings map[string]string, readLocalSettings bool) (*App, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving app root %q: %w", root, err)
	}
	if st, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("reading app root: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("reading app root: %s is not a directory", abs)
	}
	app := &App{Root: abs, Settings: map[string]string{}}
	var errs []error

	if readLocalSettings {
		if err := app.readLocalSettings(); err != nil {
			errs = append(errs, err)
		}
	}
	for k, v := range settings {
		app.Settings[k] = v
	}
	loc, err := timeZone(app.lookup)
	if err != nil {
		errs = append(errs, err)
		loc = time.UTC
	}
	app.Location = loc

	if err := app.readHostJSON(); err != nil {
		errs = append(errs, err)
	}

	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("listing app root: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		file := filepath.Join(abs, e.Name(), "function.json")
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			continue // the host ignores folders without function.json
		}
		fn, err := app.readFunction(e.Name(), file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		app.Functions = append(app.Functions, fn)
	}
	sort.Slice(app.Functions, func(i, j int) bool { return app.Functions[i].Name < app.Functions[j].Name })
	if err := app.crossCheck(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return app, nil
}

func (a *App) readLocalSettings() error {
	file := filepath.Join(a.Root, "local.settings.json")
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	var ls localSettingsJSON
	if err := decodeJSON(data, &ls); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if ls.IsEncrypted {
		return fmt.Errorf("%s: IsEncrypted is true; the local host cannot decrypt values (func settings decrypt)", file)
	}
	var errs []error
	for k, raw := range ls.Values {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			errs = append(errs, fmt.Errorf("%s: Values.%s must be a string, got %s", file, k, raw))
			continue
		}
		if _, inEnv := os.LookupEnv(k); inEnv {
			continue // Core Tools keeps an already defined environment variable
		}
		a.Settings[k] = v
	}
	return errors.Join(errs...)
}

func (a *App) readHostJSON() error {
	file := filepath.Join(a.Root, "host.json")
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading host.json: %w", err)
	}
	var hj hostJSON
	if err := decodeJSON(data, &hj); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{file}, args...)...))
	}
	if hj.Version == nil {
		bad("the required 'version' property is missing (use \"2.0\")")
	} else if *hj.Version != "2.0" {
		bad("version %q is not supported (use \"2.0\")", *hj.Version)
	}

	h := &a.Host
	h.FunctionTimeout = defaultFunctionTimeout
	if len(hj.FunctionTimeout) > 0 && string(hj.FunctionTimeout) != "null" {
		var s string
		if err := json.Unmarshal(hj.FunctionTimeout, &s); err != nil {
			bad("functionTimeout must be a TimeSpan string such as \"00:10:00\", got %s", hj.FunctionTimeout)
		} else if d, err := parseTimeSpan(s); err != nil {
			bad("functionTimeout: %v", err)
		} else if d < 0 {
			h.FunctionTimeout = 0 // "-1": unbounded
		} else if d < time.Second {
			bad("functionTimeout %q must be at least 00:00:01", s)
		} else {
			h.FunctionTimeout = d
		}
	}

	ch := hj.CustomHandler
	if ch == nil {
		ch = hj.HTTPWorker
		if ch != nil {
			a.Warnings = append(a.Warnings, file+": the httpWorker section is deprecated; use customHandler")
		}
	} else if hj.HTTPWorker != nil {
		a.Warnings = append(a.Warnings, file+": both customHandler and httpWorker are present; customHandler wins")
	}
	switch {
	case ch == nil:
		bad("the customHandler section is missing")
	case ch.Description == nil:
		bad("customHandler.description is missing")
	default:
		d := ch.Description
		if strings.TrimSpace(d.DefaultExecutablePath) == "" {
			bad("customHandler.description.defaultExecutablePath cannot be empty")
		}
		hd := HandlerDescription{
			DefaultExecutablePath: d.DefaultExecutablePath,
			Arguments:             d.Arguments,
			DefaultWorkerPath:     a.expandEnv(d.DefaultWorkerPath),
			WorkerArguments:       d.WorkerArguments,
			WorkerDirectory:       a.Root,
			WorkingDirectory:      a.Root,
		}
		if d.WorkerDirectory != "" {
			hd.WorkerDirectory = a.resolve(d.WorkerDirectory)
		}
		if d.WorkingDirectory != "" {
			hd.WorkingDirectory = a.resolve(d.WorkingDirectory)
		}
		exe := a.expandEnv(d.DefaultExecutablePath)
		hd.Executable = exe
		if exe != "" && !filepath.IsAbs(exe) {
			full := filepath.Join(hd.WorkerDirectory, exe)
			if st, err := os.Stat(full); err == nil && !st.IsDir() {
				hd.Executable = full
			} else if _, err := exec.LookPath(exe); err != nil {
				bad("customHandler.description.defaultExecutablePath %q: no such file in %s and not found on PATH", exe, hd.WorkerDirectory)
			}
		} else if exe != "" {
			if _, err := os.Stat(exe); err != nil {
				bad("customHandler.description.defaultExecutablePath: %v", err)
			}
		}
		if st, err := os.Stat(hd.WorkingDirectory); err != nil || !st.IsDir() {
			bad("customHandler.description.workingDirectory %q is not a directory", hd.WorkingDirectory)
		}
		h.Handler = hd
		h.EnableForwardingHTTPRequest = ch.EnableForwardingHTTPRequest
		h.InitializationTimeout = defaultInitTimeout
		if ch.InitializationTimeout != "" {
			d, err := parseTimeSpan(ch.InitializationTimeout)
			if err != nil || d <= 0 {
				bad("customHandler.initializationTimeout %q must be a positive TimeSpan", ch.InitializationTimeout)
			} else {
				h.InitializationTimeout = d
			}
		}
	}

	h.RoutePrefix = defaultRoutePrefix
	if hj.Extensions.HTTP != nil && hj.Extensions.HTTP.RoutePrefix != nil {
		h.RoutePrefix = strings.Trim(*hj.Extensions.HTTP.RoutePrefix, "/")
		if h.RoutePrefix == "admin" || strings.HasPrefix(h.RoutePrefix, "admin/") {
			bad("extensions.http.routePrefix %q collides with the admin API", h.RoutePrefix)
		}
	}
	h.MaxConcurrentCalls = 16 * runtime.NumCPU()
	h.MaxConcurrentSessions = defaultSessions
	if sb := hj.Extensions.ServiceBus; sb != nil {
		if sb.MaxConcurrentCalls != nil {
			if *sb.MaxConcurrentCalls < 1 {
				bad("extensions.serviceBus.maxConcurrentCalls must be at least 1, got %d", *sb.MaxConcurrentCalls)
			} else {
				h.MaxConcurrentCalls = *sb.MaxConcurrentCalls
			}
		}
		if sb.MaxConcurrentSessions != nil {
			if *sb.MaxConcurrentSessions < 1 {
				bad("extensions.serviceBus.maxConcurrentSessions must be at least 1, got %d", *sb.MaxConcurrentSessions)
			} else {
				h.MaxConcurrentSessions = *sb.MaxConcurrentSessions
			}
		}
		if sb.AutoCompleteMessages != nil && !*sb.AutoCompleteMessages {
			bad("extensions.serviceBus.autoCompleteMessages false cannot work with a custom handler (its settlement objects arrive empty, so messages are never completed)")
		}
	}
	if hj.Retry != nil {
		p, err := parseRetry(hj.Retry)
		if err != nil {
			bad("retry: %v", err)
		}
		h.Retry = p
	}
	return errors.Join(errs...)
}

func (a *App) readFunction(name, file string) (*Function, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var fj functionJSON
	if err := decodeJSON(data, &fj); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{file}, args...)...))
	}
	if !functionNameRE.MatchString(name) {
		bad("function name %q is invalid (letters, digits, '_' and '-', starting with a letter)", name)
	}
	fn := &Function{Name: name, File: file, Disabled: fj.Disabled}
	if v, ok := a.lookup("AzureWebJobs." + name + ".Disabled"); ok && strings.EqualFold(strings.TrimSpace(v), "true") {
		fn.Disabled = true
	}
	if len(fj.Bindings) == 0 {
		bad("no bindings; a function needs exactly one trigger binding")
	}
	names := map[string]bool{}
	for i, bj := range fj.Bindings {
		b, err := a.parseBinding(bj)
		if err != nil {
			bad("bindings[%d] %q: %v", i, bj.Name, err)
			continue
		}
		key := strings.ToLower(b.Name)
		if names[key] {
			bad("multiple bindings are named %q; binding names must be unique", b.Name)
		}
		names[key] = true
		fn.Bindings = append(fn.Bindings, b)
		if b.IsTrigger() {
			if fn.Trigger != nil {
				bad("multiple trigger bindings (%s and %s); a function has exactly one", fn.Trigger.Name, b.Name)
				continue
			}
			fn.Trigger = b
		}
	}
	if fn.Trigger == nil && len(fj.Bindings) > 0 && len(errs) == 0 {
		bad("no trigger binding; a function needs exactly one trigger binding")
	}
	if fj.Retry != nil {
		p, err := parseRetry(fj.Retry)
		if err != nil {
			bad("retry: %v", err)
		}
		fn.Retry = p
	} else {
		fn.Retry = a.Host.Retry
	}
	if fn.Trigger == nil {
		return nil, errors.Join(errs...)
	}

	switch t := fn.Trigger; t.Type {
	case TypeTimerTrigger:
		s, warn, err := ParseSchedule(t.Schedule, a.Location)
		if err != nil {
			bad("binding %q: %v", t.Name, err)
		}
		if warn != "" {
			a.Warnings = append(a.Warnings, file+": "+warn)
		}
		fn.schedule = s
	case TypeHTTPTrigger:
		route := t.Route
		if route == "" {
			route = name
		}
		rt, err := parseRoute(route)
		if err != nil {
			bad("binding %q: route %q: %v", t.Name, route, err)
		}
		fn.route = rt
		outs := 0
		for _, b := range fn.Bindings {
			if b.Type == TypeHTTP && b.Direction != "in" {
				outs++
			}
		}
		if outs > 1 {
			bad("more than one http output binding")
		}
	}
	if fn.Trigger.Type != TypeTimerTrigger {
		// Retry policies are documented for Timer (and Event Hubs, Kafka,
		// Cosmos DB) only; Service Bus relies on redelivery.
		if fj.Retry != nil {
			a.Warnings = append(a.Warnings, fmt.Sprintf("%s: retry policies are not supported for %s triggers; the local host ignores it (Service Bus redelivers instead)", file, fn.Trigger.Type))
		}
		fn.Retry = nil
	}
	for _, b := range fn.Bindings {
		if b.Type == TypeHTTP && b.Direction != "in" && fn.Trigger.Type != TypeHTTPTrigger {
			bad("binding %q: an http output needs an httpTrigger", b.Name)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return fn, nil
}

func (a *App) parseBinding(bj bindingJSON) (*Binding, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	b := &Binding{
		Name:              bj.Name,
		Direction:         strings.ToLower(bj.Direction),
		DataType:          strings.ToLower(bj.DataType),
		RunOnStartup:      bj.RunOnStartup,
		UseMonitor:        bj.UseMonitor == nil || *bj.UseMonitor,
		Connection:        bj.Connection,
		IsSessionsEnabled: bj.IsSessionsEnabled,
		AuthLevel:         strings.ToLower(bj.AuthLevel),
		Route:             strings.Trim(bj.Route, "/"),
	}
	for _, t := range knownTypes {
		if strings.EqualFold(t, bj.Type) {
			b.Type = t
		}
	}
	switch {
	case bj.Type == "":
		bad("type is missing")
	case b.Type == "":
		bad("binding type %q is not supported by the local host (supported: %s)", bj.Type, strings.Join(knownTypes, ", "))
	}
	if !bindingNameRE.MatchString(b.Name) {
		bad("binding name %q is invalid (letters and digits, starting with a letter, or $return)", b.Name)
	}
	switch b.Direction {
	case "in", "out", "inout":
	case "":
		bad("direction is missing")
	default:
		bad("direction %q must be in, out or inout", bj.Direction)
	}
	switch b.DataType {
	case "", "string", "binary":
	default:
		bad("dataType %q is not supported (string or binary)", bj.DataType)
	}
	if b.IsTrigger() && b.Type != "" && b.Direction != "in" {
		bad("a %s must have direction in", b.Type)
	}
	if b.Name == returnBinding && b.Direction == "in" {
		bad("$return must be an output binding")
	}
	switch b.Type {
	case TypeTimerTrigger:
		s, err := a.resolveSettings(bj.Schedule)
		if err != nil {
			bad("schedule: %v", err)
		}
		b.Schedule = s
		if strings.TrimSpace(bj.Schedule) == "" {
			bad("schedule is missing")
		}
	case TypeServiceBusTrigger, TypeServiceBus:
		if bj.TopicName != "" {
			bad("topicName is not supported by the local host; use queueName")
		}
		q, err := a.resolveSettings(bj.QueueName)
		if err != nil {
			bad("queueName: %v", err)
		}
		b.QueueName = q
		switch {
		case strings.TrimSpace(bj.QueueName) == "":
			bad("queueName is missing")
		case err == nil && !queueNameRE.MatchString(q):
			bad("queueName %q is not a valid Service Bus entity name", q)
		}
		conn := b.Connection
		if conn == "" {
			conn = "AzureWebJobsServiceBus"
		}
		_, ok1 := a.lookup(conn)
		_, ok2 := a.lookup(conn + "__fullyQualifiedNamespace")
		if !ok1 && !ok2 {
			bad("connection app setting %q (or %s__fullyQualifiedNamespace) is not defined; the Azure host refuses to index the function without it", conn, conn)
		}
		if b.Type == TypeServiceBusTrigger {
			if bj.Cardinality != "" && !strings.EqualFold(bj.Cardinality, "one") {
				bad("cardinality %q is not supported by the local host (single messages only)", bj.Cardinality)
			}
			if bj.AutoCompleteMessages != nil && !*bj.AutoCompleteMessages {
				bad("autoCompleteMessages false cannot work with a custom handler (its settlement objects arrive empty)")
			}
		} else if b.IsSessionsEnabled {
			bad("isSessionsEnabled only applies to a serviceBusTrigger")
		}
	case TypeHTTPTrigger:
		switch b.AuthLevel {
		case "":
			b.AuthLevel = AuthFunction
		case AuthAnonymous, AuthFunction, AuthAdmin:
		default:
			bad("authLevel %q must be anonymous, function or admin", bj.AuthLevel)
		}
		for _, m := range bj.Methods {
			u := strings.ToUpper(strings.TrimSpace(m))
			if !httpMethods[u] {
				bad("method %q is not an HTTP method", m)
				continue
			}
			b.Methods = append(b.Methods, u)
		}
	}
	return b, errors.Join(errs...)
}

// crossCheck validates what spans functions: queues consumed with and
// without sessions.
func (a *App) crossCheck() error {
	sessions := map[string]*Function{}
	plain := map[string]*Function{}
	var errs []error
	for _, f := range a.Functions {
		if f.Trigger.Type != TypeServiceBusTrigger {
			continue
		}
		q := strings.ToLower(f.Trigger.QueueName)
		if f.Trigger.IsSessionsEnabled {
			sessions[q] = f
		} else {
			plain[q] = f
		}
		if s, p := sessions[q], plain[q]; s != nil && p != nil {
			errs = append(errs, fmt.Errorf("%s and %s: queue %q is consumed both with and without sessions", s.File, p.File, f.Trigger.QueueName))
		}
	}
	return errors.Join(errs...)
}

func parseRetry(rj *retryJSON) (*RetryPolicy, error) {
	p := &RetryPolicy{Strategy: rj.Strategy}
	var errs []error
	if rj.MaxRetryCount == nil {
		errs = append(errs, errors.New("maxRetryCount is missing"))
	} else {
		p.MaxRetryCount = *rj.MaxRetryCount
		if p.MaxRetryCount < -1 {
			errs = append(errs, fmt.Errorf("maxRetryCount %d must be -1 (forever) or more", p.MaxRetryCount))
		}
	}
	ts := func(field, v string) time.Duration {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is missing for strategy %s", field, rj.Strategy))
			return 0
		}
		d, err := parseTimeSpan(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s %q must be a TimeSpan such as 00:00:10", field, v))
		}
		return d
	}
	switch {
	case strings.EqualFold(rj.Strategy, "fixedDelay"):
		p.Strategy = "fixedDelay"
		p.DelayInterval = ts("delayInterval", rj.DelayInterval)
	case strings.EqualFold(rj.Strategy, "exponentialBackoff"):
		p.Strategy = "exponentialBackoff"
		p.MinimumInterval = ts("minimumInterval", rj.MinimumInterval)
		p.MaximumInterval = ts("maximumInterval", rj.MaximumInterval)
		if p.MaximumInterval < p.MinimumInterval {
			errs = append(errs, fmt.Errorf("maximumInterval %s is below minimumInterval %s", rj.MaximumInterval, rj.MinimumInterval))
		}
	default:
		errs = append(errs, fmt.Errorf("strategy %q must be fixedDelay or exponentialBackoff", rj.Strategy))
	}
	return p, errors.Join(errs...)
}

// resolveSettings replaces %Name% references with app settings, as binding
// expressions do; a reference to an undefined setting is an error.
func (a *App) resolveSettings(s string) (string, error) {
	var missing []string
	out := settingRefRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := a.lookup(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%q references app setting(s) %s that are not defined", s, strings.Join(missing, ", "))
	}
	return out, nil
}

// expandEnv mimics Environment.ExpandEnvironmentVariables: defined
// variables are replaced, undefined ones are left as written.
func (a *App) expandEnv(s string) string {
	return settingRefRE.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := a.lookup(m[1 : len(m)-1]); ok {
			return v
		}
		return m
	})
}

func (a *App) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(a.Root, p)
}

// decodeJSON decodes a JSON document, reporting syntax errors with a line
// number.
func decodeJSON(data []byte, v any) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM, common on Windows-edited files
	if err := json.Unmarshal(data, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
			return fmt.Errorf("invalid JSON at line %d: %w", line, err)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s has the wrong type: got JSON %s, want %s", te.Field, te.Value, te.Type)
		}
		return fmt.Errorf("decoding JSON: %w", err)
	}
	return nil
}
