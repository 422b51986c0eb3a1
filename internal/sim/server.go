package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// Defaults used when Options leaves a field empty.
const (
	// DefaultTenantID is the Entra tenant id of the simulator when neither
	// Options.TenantID nor Tenant.ID is set.
	DefaultTenantID = "4d1f2c3b-5a69-4e7d-8c0b-1f2e3d4c5b6a"
	// DefaultClientID and DefaultClientSecret form the app registered when
	// Options.Apps is empty; it holds every role in AllRoles.
	DefaultClientID     = "7b3e9d2a-1c4f-4a8b-9e6d-0f5a2b7c8d91"
	DefaultClientSecret = "sim-client-secret-not-a-real-secret"

	defaultActionStep = 2 * time.Second
	maxMDEPage        = 10000
	maxGraphPage      = 2000
)

// MDE (WindowsDefenderATP) application roles, defender-api.md §1.5.
const (
	RoleAlertRead             = "Alert.Read.All"
	RoleAlertReadWrite        = "Alert.ReadWrite.All"
	RoleMachineRead           = "Machine.Read.All"
	RoleMachineReadWrite      = "Machine.ReadWrite.All"
	RoleMachineIsolate        = "Machine.Isolate"
	RoleMachineRestrict       = "Machine.RestrictExecution"
	RoleMachineScan           = "Machine.Scan"
	RoleMachineForensics      = "Machine.CollectForensics"
	RoleMachineOffboard       = "Machine.Offboard"
	RoleMachineStopQuarantine = "Machine.StopAndQuarantine"
	RoleMachineLiveResponse   = "Machine.LiveResponse"
	RoleAdvancedQuery         = "AdvancedQuery.Read.All"
)

// Microsoft Graph application roles used by mdeflow.
const (
	RoleGraphAlertRead      = "SecurityAlert.Read.All"
	RoleGraphAlertReadWrite = "SecurityAlert.ReadWrite.All"
	RoleGraphHunting        = "ThreatHunting.Read.All"
	RoleGraphMailSend       = "Mail.Send"
)

// AllRoles lists every role the simulator checks; the default app holds them all.
var AllRoles = []string{
	RoleAlertRead, RoleAlertReadWrite, RoleMachineRead, RoleMachineReadWrite,
	RoleMachineIsolate, RoleMachineRestrict, RoleMachineScan, RoleMachineForensics,
	RoleAdvancedQuery, RoleGraphAlertRead, RoleGraphHunting, RoleGraphMailSend,
}

// Resource audiences. Tokens for the MDE API may carry any of the first three
// (defender-api.md §1.2); Graph tokens carry GraphAudience or the Graph app id.
const (
	AudienceSecurityCenter = "https://api.securitycenter.microsoft.com"
	AudienceSecurity       = "https://api.security.microsoft.com"
	AudienceWindowsATP     = "https://securitycenter.onmicrosoft.com/windowsatpservice"
	AudienceGraph          = "https://graph.microsoft.com"
	graphAppID             = "00000003-0000-0000-c000-000000000000"
)

// App is an Entra app registration that may ask the token endpoint for tokens
// with the client-credentials grant.
type App struct {
	ClientID     string
	ClientSecret string // empty: the app has no secret credential
	// CertificatePEM holds the public certificate(s) (PEM, RSA keys) whose
	// private key signs client assertions. Empty: no certificate credential.
	CertificatePEM []byte
	// Roles are the application permissions granted (and consented) to the
	// app; they appear in the "roles" claim of every token it gets.
	Roles []string
}

// Window is an interval on the simulator clock; the zero Window is empty.
type Window struct {
	From, To time.Time
}

func (w Window) contains(t time.Time) bool {
	return !w.From.IsZero() && !t.Before(w.From) && t.Before(w.To)
}

// Faults injects failures into the MDE and Graph APIs (never into the token
// endpoint). Random choices come from a PRNG seeded with Seed, so a test run
// is reproducible as long as the calls arrive in the same order.
type Faults struct {
	// ErrorRate is the fraction of API calls answered with a 5xx (500, 502,
	// 503 or 504) before anything is done.
	ErrorRate float64
	// PostCommitErrorRate is the fraction of successful state-changing calls
	// (action POSTs, tags, cancel, alert PATCH, sendMail) whose change is kept
	// but whose response is replaced by a 503: the "lost response" case where
	// a client retry meets ActiveRequestAlreadyExists.
	PostCommitErrorRate float64
	// Latency delays every API response.
	Latency time.Duration
	// Storm429 is a window (on the simulator clock) during which every API
	// call gets 429 with a Retry-After that points at the end of the window.
	Storm429 Window
	// FailActions makes new machine actions end Failed instead of Succeeded.
	FailActions bool
	// TimeoutActions makes new machine actions stay Pending until
	// Options.ActionTimeout has passed, then end TimeOut.
	TimeoutActions bool
	// Seed seeds the PRNG used for ErrorRate and PostCommitErrorRate.
	Seed int64
}

// Options configures a Server. The zero value gives the sample tenant, the
// default app (DefaultClientID/DefaultClientSecret with AllRoles), quotas on,
// and the wall clock.
type Options struct {
	// Tenant is the seed data; nil means SampleTenant(Clock()).
	Tenant *Tenant
	// TenantID is the Entra tenant; default Tenant.ID, then DefaultTenantID.
	TenantID string
	// Apps are the registered applications; empty means the default app.
	Apps []App
	// ActionStep is the time each Pending→InProgress→final step takes (default 2s).
	ActionStep time.Duration
	// ActionTimeout is how long a Faults.TimeoutActions action stays Pending
	// before it ends TimeOut (default 10×ActionStep).
	ActionTimeout time.Duration
	// Clock is the simulator's notion of now (default time.Now). Action
	// progress, quotas, storms and access-token lifetimes follow it; client
	// assertions are checked against the wall clock because MSAL signs them
	// with time.Now.
	Clock func() time.Time
	// DisableQuotas turns the per-API rate limits of defender-api.md §6.1 off.
	DisableQuotas bool
	// PageSize is the MDE list page size when $top is absent (default and
	// maximum 10000); a smaller value makes lists emit @odata.nextLink sooner.
	PageSize int
	// GraphPageSize is the alerts_v2 page size when $top is absent (default
	// and maximum 2000).
	GraphPageSize int
	// Faults injects failures.
	Faults Faults
	// Logger receives one debug line per request (never tokens or secrets).
	Logger *slog.Logger
}

// SentMessage is one Graph sendMail call the simulator accepted.
type SentMessage struct {
	Mailbox string          // the {id|userPrincipalName} of the URL path
	Body    json.RawMessage // the request body as sent: {"message":{...},"saveToSentItems":...}
}

// Server is the simulator. Use Start for a TLS listener on 127.0.0.1 or
// Handler with httptest. All methods are safe for concurrent use.
type Server struct {
	opts     Options
	tenantID string
	apps     map[string]*appReg
	pki      *pki
	log      *slog.Logger
	handler  http.Handler

	mu          sync.Mutex
	clock       func() time.Time
	faults      Faults
	rng         *rand.Rand
	alerts      []*mde.Alert
	alertIdx    map[string]*mde.Alert
	machines    []*mde.Machine
	machineIdx  map[string]*mde.Machine // lower-case id
	actions     []*actionRec
	actionIdx   map[string]*actionRec // lower-case GUID
	graphRaw    map[string]json.RawMessage
	huntRows    map[string][]map[string]any
	huntHook    HuntFunc
	quotas      *quotas
	calls       map[string]int
	isoTotal    map[string]int
	isoAccepted map[string]int
	throttled   int
	sent        []SentMessage

	srv *http.Server
	ln  net.Listener
	url string
}

type appReg struct {
	App
	certs []appCert
}

// New builds a simulator from opts. It generates the CA, the TLS certificate
// and the token signing key; call Start to listen.
func New(opts Options) (*Server, error) {
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	if opts.ActionStep <= 0 {
		opts.ActionStep = defaultActionStep
	}
	if opts.ActionTimeout <= 0 {
		opts.ActionTimeout = 10 * opts.ActionStep
	}
	if opts.PageSize <= 0 || opts.PageSize > maxMDEPage {
		opts.PageSize = maxMDEPage
	}
	if opts.GraphPageSize <= 0 || opts.GraphPageSize > maxGraphPage {
		opts.GraphPageSize = maxGraphPage
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tenant := opts.Tenant
	if tenant == nil {
		tenant = SampleTenant(clock())
	}
	tenantID := opts.TenantID
	if tenantID == "" {
		tenantID = tenant.ID
	}
	if tenantID == "" {
		tenantID = DefaultTenantID
	}
	if !guidRe.MatchString(tenantID) {
		return nil, fmt.Errorf("creating simulator: tenant id %q is not a GUID", tenantID)
	}

	apps := opts.Apps
	if len(apps) == 0 {
		apps = []App{{ClientID: DefaultClientID, ClientSecret: DefaultClientSecret, Roles: AllRoles}}
	}
	regs := make(map[string]*appReg, len(apps))
	for _, a := range apps {
		key := strings.ToLower(a.ClientID)
		if !guidRe.MatchString(a.ClientID) {
			return nil, fmt.Errorf("creating simulator: client id %q is not a GUID", a.ClientID)
		}
		if _, dup := regs[key]; dup {
			return nil, fmt.Errorf("creating simulator: client id %s registered twice", a.ClientID)
		}
		reg := &appReg{App: a}
		if len(a.CertificatePEM) > 0 {
			certs, err := parseAppCerts(a.CertificatePEM)
			if err != nil {
				return nil, fmt.Errorf("creating simulator: app %s: %w", a.ClientID, err)
			}
			reg.certs = certs
		}
		if a.ClientSecret == "" && len(reg.certs) == 0 {
			return nil, fmt.Errorf("creating simulator: app %s has neither a secret nor a certificate", a.ClientID)
		}
		regs[key] = reg
	}

	p, err := newPKI(time.Now())
	if err != nil {
		return nil, fmt.Errorf("creating simulator: %w", err)
	}

	s := &Server{
		opts:        opts,
		tenantID:    tenantID,
		apps:        regs,
		pki:         p,
		log:         logger,
		clock:       clock,
		faults:      opts.Faults,
		rng:         rand.New(rand.NewPCG(uint64(opts.Faults.Seed), 0x6d6465666c6f77)),
		alertIdx:    map[string]*mde.Alert{},
		machineIdx:  map[string]*mde.Machine{},
		actionIdx:   map[string]*actionRec{},
		graphRaw:    map[string]json.RawMessage{},
		huntRows:    map[string][]map[string]any{},
		huntHook:    tenant.Hunt,
		quotas:      newQuotas(),
		calls:       map[string]int{},
		isoTotal:    map[string]int{},
		isoAccepted: map[string]int{},
	}
	for i := range tenant.Machines {
		m := cloneMachine(tenant.Machines[i])
		if err := s.addMachineLocked(m); err != nil {
			return nil, fmt.Errorf("creating simulator: %w", err)
		}
	}
	for i := range tenant.Alerts {
		if err := s.addAlertLocked(tenant.Alerts[i]); err != nil {
			return nil, fmt.Errorf("creating simulator: %w", err)
		}
	}
	for _, raw := range tenant.GraphAlerts {
		var head struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
			return nil, fmt.Errorf("creating simulator: graph alert without id")
		}
		s.graphRaw[head.ID] = append(json.RawMessage(nil), raw...)
	}
	for table, rows := range tenant.HuntRows {
		s.huntRows[table] = rows
	}
	s.handler = s.middleware(http.HandlerFunc(s.route))
	return s, nil
}

// Start listens on 127.0.0.1 on a free port with TLS (certificate signed by
// the simulator CA, see CertPool) and serves in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		return errors.New("starting simulator: already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("starting simulator: %w", err)
	}
	tlsLn := tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{s.pki.tlsCert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	})
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.url = "https://" + ln.Addr().String()
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("simulator stopped", "error", err)
		}
	}()
	return nil
}

// URL is the base URL after Start, e.g. https://127.0.0.1:41234 (no trailing
// slash). It serves the Entra endpoints (/{tenant}/...), the MDE API (/api/...)
// and Graph (/v1.0/...).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// AuthorityHost is URL()+"/", the value for azcore cloud.Configuration's
// ActiveDirectoryAuthorityHost.
func (s *Server) AuthorityHost() string { return s.URL() + "/" }

// TenantID is the Entra tenant the simulator serves.
func (s *Server) TenantID() string { return s.tenantID }

// CertPool trusts the simulator CA (and nothing else).
func (s *Server) CertPool() *x509.CertPool { return s.pki.pool.Clone() }

// CACertPEM is the simulator CA certificate in PEM form.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.pki.caPEM...) }

// HTTPClient returns a client that trusts only the simulator CA.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		},
	}
}

// Handler serves the simulator without a listener, e.g. for
// httptest.NewTLSServer. URLs in responses are built from the request's Host.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the listener started by Start and closes open connections.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
}

// now reads the simulator clock; callers may hold s.mu.
func (s *Server) now() time.Time {
	return s.clock().UTC()
}

// Now is the simulator's current time.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// SetClock replaces the clock (nil restores time.Now).
func (s *Server) SetClock(clock func() time.Time) {
	if clock == nil {
		clock = time.Now
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = clock
}

// SetFaults replaces the fault configuration; the PRNG is reseeded from f.Seed.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.rng = rand.New(rand.NewPCG(uint64(f.Seed), 0x6d6465666c6f77))
}

// statusRecorder remembers the status code for logs and counters.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// middleware counts calls and 429s and logs one line per request.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		path := normalizePath(r.URL.Path)
		s.mu.Lock()
		s.calls[path]++
		s.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusTooManyRequests {
			s.mu.Lock()
			s.throttled++
			s.mu.Unlock()
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "sim request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.Int64("duration_ms", time.Since(start).Milliseconds()))
	})
}

// normalizePath maps /api/v1.0/x to /api/x so both spellings count together.
func normalizePath(p string) string {
	if strings.HasPrefix(p, "/api/v1.0/") {
		return "/api/" + strings.TrimPrefix(p, "/api/v1.0/")
	}
	return p
}

// route dispatches to the Entra, MDE or Graph surface.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/api" || strings.HasPrefix(p, "/api/"):
		s.serveMDE(w, r)
	case strings.HasPrefix(strings.ToLower(p), "/v1.0/"):
		s.serveGraph(w, r)
	default:
		s.serveEntra(w, r)
	}
}

// baseURL is scheme://host of the request, used to build links.
func baseURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// readBody reads at most 4 MiB of the request body.
func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, 4<<20))
}

// --- observability for tests ---

// Calls is the number of requests received for path (any method, any
// outcome). /api/v1.0/x counts as /api/x.
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[normalizePath(path)]
}

// Throttled is the number of 429 responses sent (quota and storm).
func (s *Server) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// IsolateCalls reports the isolate POSTs that reached the handler for the
// machine (total, including rejected ones) and how many created an action.
func (s *Server) IsolateCalls(machineID string) (total, accepted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(machineID)
	return s.isoTotal[k], s.isoAccepted[k]
}

// Actions returns every machine action in creation order, with the status
// as of now.
func (s *Server) Actions() []mde.MachineAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]mde.MachineAction, 0, len(s.actions))
	for _, a := range s.actions {
		out = append(out, a.view(now))
	}
	return out
}

// Alert returns the current state of an alert (with evidence).
func (s *Server) Alert(id string) (mde.Alert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alertIdx[id]
	if !ok {
		return mde.Alert{}, false
	}
	return cloneAlert(*a), true
}

// Machine returns the current state of a machine by id.
func (s *Server) Machine(id string) (mde.Machine, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.machineIdx[strings.ToLower(id)]
	if !ok {
		return mde.Machine{}, false
	}
	return cloneMachine(*m), true
}

// Isolated reports whether the machine is isolated as of now: its latest
// succeeded Isolate/Unisolate action was an Isolate.
func (s *Server) Isolated(machineID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isolatedLocked(strings.ToLower(machineID), s.now())
}

// AddAlert makes an alert visible from now on (e.g. one that shows up late).
// An unknown machineId gets a synthesized machine. An existing id is replaced.
func (s *Server) AddAlert(a mde.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addAlertLocked(a)
}

// AddMachine adds or replaces a machine.
func (s *Server) AddMachine(m mde.Machine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addMachineLocked(cloneMachine(m))
}

// SentMail returns the request bodies of the accepted sendMail calls.
func (s *Server) SentMail() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]json.RawMessage, len(s.sent))
	for i, m := range s.sent {
		out[i] = append(json.RawMessage(nil), m.Body...)
	}
	return out
}

// SentMessages returns the accepted sendMail calls with their mailbox.
func (s *Server) SentMessages() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SentMessage, len(s.sent))
	for i, m := range s.sent {
		out[i] = SentMessage{Mailbox: m.Mailbox, Body: append(json.RawMessage(nil), m.Body...)}
	}
	return out
}

func (s *Server) addMachineLocked(m mde.Machine) error {
	if err := mde.ValidateMachineID(m.ID); err != nil {
		return fmt.Errorf("adding machine: %w", err)
	}
	if m.MachineTags == nil {
		m.MachineTags = []string{}
	}
	k := strings.ToLower(m.ID)
	if old, ok := s.machineIdx[k]; ok {
		*old = m
		return nil
	}
	p := &m
	s.machines = append(s.machines, p)
	s.machineIdx[k] = p
	return nil
}

func (s *Server) addAlertLocked(a mde.Alert) error {
	if err := mde.ValidateAlertID(a.ID); err != nil {
		return fmt.Errorf("adding alert: %w", err)
	}
	a = cloneAlert(a)
	if a.Evidence == nil {
		a.Evidence = []mde.Evidence{}
	}
	if a.Comments == nil {
		a.Comments = []mde.AlertComment{}
	}
	if a.MitreTechniques == nil {
		a.MitreTechniques = []string{}
	}
	if a.MachineID != "" {
		if _, ok := s.machineIdx[strings.ToLower(a.MachineID)]; !ok {
			if err := s.addMachineLocked(machineFromAlert(a)); err != nil {
				return fmt.Errorf("adding alert %s: %w", a.ID, err)
			}
		}
	}
	if old, ok := s.alertIdx[a.ID]; ok {
		*old = a
		return nil
	}
	p := &a
	s.alerts = append(s.alerts, p)
	s.alertIdx[a.ID] = p
	return nil
}

// cloneAlert deep-copies an alert through JSON so callers never share slices
// or pointers with the simulator state.
func cloneAlert(a mde.Alert) mde.Alert {
	var out mde.Alert
	b, err := json.Marshal(a)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		return a
	}
	return out
}

func cloneMachine(m mde.Machine) mde.Machine {
	var out mde.Machine
	b, err := json.Marshal(m)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		return m
	}
	return out
}
