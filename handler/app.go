package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	approval "github.com/mdeflow/mdeflow/functions/Approval"
	enrichalert "github.com/mdeflow/mdeflow/functions/EnrichAlert"
	flushdigests "github.com/mdeflow/mdeflow/functions/FlushDigests"
	followaction "github.com/mdeflow/mdeflow/functions/FollowAction"
	ingestalert "github.com/mdeflow/mdeflow/functions/IngestAlert"
	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	manualisolate "github.com/mdeflow/mdeflow/functions/ManualIsolate"
	manualrelease "github.com/mdeflow/mdeflow/functions/ManualRelease"
	notifyfn "github.com/mdeflow/mdeflow/functions/Notify"
	onnewalert "github.com/mdeflow/mdeflow/functions/OnNewAlert"
	resetbreaker "github.com/mdeflow/mdeflow/functions/ResetBreaker"
	runhunt "github.com/mdeflow/mdeflow/functions/RunHunt"
	scheduledhunt "github.com/mdeflow/mdeflow/functions/ScheduledHunt"
	"github.com/mdeflow/mdeflow/internal/auth"
	"github.com/mdeflow/mdeflow/internal/config"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/graph"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/notify"
	mpolicy "github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Settings is the validated configuration of a running handler.
type Settings struct {
	LogLevel          string
	Queue             string
	LocalQueueURL     string
	LocalMasterKey    string
	Cloud, Region     string
	MDEBaseURL        string
	MDEScope          string
	GraphBaseURL      string
	GraphScope        string
	AuthorityHost     string
	Credential        auth.CredentialConfig
	AlertSource       string
	PollOverlap       time.Duration
	PollLookback      time.Duration
	PolicyFile        string
	DryRun            bool
	Cap               int
	CapWindow         time.Duration
	ApprovalSecret    string
	PublicBaseURL     string
	FollowEvery       time.Duration
	FollowTimeout     time.Duration
	Store             string
	StorePath         string
	TablesConnection  string
	TablesEndpoint    string
	TablePrefix       string
	Instances         int
	MDEPerMinute      int
	MDEPerHour        int
	HuntPerMinute     int
	HuntDir           string
	HuntAPI           string
	Channels          []string
	OutboxDir         string
	MailFrom          string
	MailTo            []string
	SMTPHost          string
	SMTPPort          int
	SMTPUser, SMTPPwd string
	SMTPSecurity      string
	SMTPAuth          string
	TeamsURL          string
	WebhookURL        string
	WebhookSecret     string
	GroupWindow       time.Duration
	PortalBaseURL     string
	InvocationTimeout time.Duration
	ServiceBusConn    string
	ServiceBusFQNS    string

	getenv func(string) string
}

// loadSettings reads and validates every setting, reporting all problems.
func loadSettings(getenv func(string) string) (*Settings, error) {
	e := config.NewEnv(getenv)
	p := &config.Problems{}
	s := &Settings{
		LogLevel:          e.OneOf(p, "MDEFLOW_LOG_LEVEL", "debug", "info", "warn", "error"),
		Queue:             e.OneOf(p, "MDEFLOW_QUEUE", "servicebus", "local"),
		LocalQueueURL:     e.URL(p, "MDEFLOW_LOCAL_QUEUE_URL", true),
		LocalMasterKey:    e.Raw("MDEFLOW_LOCAL_MASTER_KEY"),
		Cloud:             e.OneOf(p, "MDEFLOW_CLOUD", "commercial", "gcc", "gcchigh", "dod", "custom"),
		Region:            e.Raw("MDEFLOW_REGION"),
		MDEBaseURL:        e.URL(p, "MDEFLOW_MDE_BASE_URL", false),
		MDEScope:          e.Raw("MDEFLOW_MDE_SCOPE"),
		GraphBaseURL:      e.URL(p, "MDEFLOW_GRAPH_BASE_URL", false),
		GraphScope:        e.Raw("MDEFLOW_GRAPH_SCOPE"),
		AuthorityHost:     e.URL(p, "MDEFLOW_AUTHORITY_HOST", false),
		AlertSource:       e.OneOf(p, "MDEFLOW_ALERT_SOURCE", "mde", "graph"),
		PollOverlap:       e.Duration(p, "MDEFLOW_POLL_OVERLAP"),
		PollLookback:      e.Duration(p, "MDEFLOW_POLL_LOOKBACK"),
		PolicyFile:        e.Raw("MDEFLOW_POLICY_FILE"),
		DryRun:            e.Bool(p, "MDEFLOW_DRY_RUN"),
		Cap:               -1,
		CapWindow:         e.Duration(p, "MDEFLOW_ISOLATION_CAP_WINDOW"),
		ApprovalSecret:    e.Raw("MDEFLOW_APPROVAL_SECRET"),
		PublicBaseURL:     e.URL(p, "MDEFLOW_PUBLIC_BASE_URL", true),
		FollowEvery:       e.Duration(p, "MDEFLOW_ACTION_FOLLOW_INTERVAL"),
		FollowTimeout:     e.Duration(p, "MDEFLOW_ACTION_FOLLOW_TIMEOUT"),
		Store:             e.OneOf(p, "MDEFLOW_STORE", "tables", "embedded"),
		StorePath:         e.Str("MDEFLOW_STORE_PATH"),
		TablesConnection:  e.Raw("MDEFLOW_TABLES_CONNECTION"),
		TablesEndpoint:    e.URL(p, "MDEFLOW_TABLES_ENDPOINT", true),
		TablePrefix:       e.Str("MDEFLOW_TABLE_PREFIX"),
		Instances:         e.Int(p, "MDEFLOW_INSTANCES"),
		MDEPerMinute:      e.Int(p, "MDEFLOW_MDE_CALLS_PER_MINUTE"),
		MDEPerHour:        e.Int(p, "MDEFLOW_MDE_CALLS_PER_HOUR"),
		HuntPerMinute:     e.Int(p, "MDEFLOW_HUNT_CALLS_PER_MINUTE"),
		HuntDir:           e.Str("MDEFLOW_HUNT_DIR"),
		HuntAPI:           e.OneOf(p, "MDEFLOW_HUNT_API", "graph", "mde"),
		Channels:          e.List("MDEFLOW_NOTIFY_CHANNELS"),
		OutboxDir:         e.Str("MDEFLOW_OUTBOX_DIR"),
		MailFrom:          e.Str("MDEFLOW_MAIL_FROM"),
		MailTo:            e.List("MDEFLOW_MAIL_TO"),
		SMTPHost:          e.Raw("MDEFLOW_SMTP_HOST"),
		SMTPPort:          e.Int(p, "MDEFLOW_SMTP_PORT"),
		SMTPUser:          e.Raw("MDEFLOW_SMTP_USERNAME"),
		SMTPSecurity:      e.OneOf(p, "MDEFLOW_SMTP_SECURITY", "starttls", "tls"),
		SMTPAuth:          e.OneOf(p, "MDEFLOW_SMTP_AUTH", "plain", "login"),
		SMTPPwd:           e.Raw("MDEFLOW_SMTP_PASSWORD"),
		TeamsURL:          e.URL(p, "MDEFLOW_TEAMS_WEBHOOK_URL", false),
		WebhookURL:        e.URL(p, "MDEFLOW_WEBHOOK_URL", true),
		WebhookSecret:     e.Raw("MDEFLOW_WEBHOOK_SECRET"),
		GroupWindow:       e.Duration(p, "MDEFLOW_NOTIFY_GROUP_WINDOW"),
		PortalBaseURL:     e.URL(p, "MDEFLOW_PORTAL_BASE_URL", false),
		InvocationTimeout: e.Duration(p, "MDEFLOW_INVOCATION_TIMEOUT"),
		ServiceBusConn:    e.Raw("ServiceBusConnection"),
		ServiceBusFQNS:    e.Raw("ServiceBusConnection__fullyQualifiedNamespace"),
	}
	s.getenv = e.Raw
	s.Credential = auth.CredentialConfig{
		Kind:                e.OneOf(p, "MDEFLOW_CREDENTIAL", "secret", "certificate", "managedidentity", "workloadidentity", "default"),
		TenantID:            e.Raw("AZURE_TENANT_ID"),
		ClientID:            e.Raw("AZURE_CLIENT_ID"),
		ClientSecret:        e.Raw("AZURE_CLIENT_SECRET"),
		CertificatePath:     e.Raw("AZURE_CLIENT_CERTIFICATE_PATH"),
		CertificatePassword: e.Raw("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
		ExtraCAFile:         e.Raw("MDEFLOW_EXTRA_CA_FILE"),
	}
	if e.Raw("MDEFLOW_ISOLATION_CAP") != "" {
		s.Cap = e.Int(p, "MDEFLOW_ISOLATION_CAP")
	}
	if s.Credential.Kind == "managedidentity" {
		s.Credential.ManagedIdentityClientID = s.Credential.ClientID
	}
	if s.Queue == "local" && (s.LocalQueueURL == "" || s.LocalMasterKey == "") {
		p.Add("MDEFLOW_LOCAL_QUEUE_URL", "required (with MDEFLOW_LOCAL_MASTER_KEY) when MDEFLOW_QUEUE is local")
	}
	if s.Queue == "servicebus" && s.ServiceBusConn == "" && s.ServiceBusFQNS == "" {
		p.Add("ServiceBusConnection", "set it (connection string) or ServiceBusConnection__fullyQualifiedNamespace")
	}
	if s.Store == "tables" && s.TablesConnection == "" && s.TablesEndpoint == "" {
		s.TablesConnection = e.Raw("AzureWebJobsStorage")
		if s.TablesConnection == "" {
			p.Add("MDEFLOW_TABLES_CONNECTION", "set it, MDEFLOW_TABLES_ENDPOINT or AzureWebJobsStorage when MDEFLOW_STORE is tables")
		}
	}
	if s.Cap > 0 && s.CapWindow <= 0 {
		p.Add("MDEFLOW_ISOLATION_CAP_WINDOW", "must be positive when MDEFLOW_ISOLATION_CAP is set")
	}
	if s.ApprovalSecret != "" && len(s.ApprovalSecret) < 32 {
		p.Add("MDEFLOW_APPROVAL_SECRET", "must be at least 32 characters")
	}
	if s.Instances < 1 {
		p.Add("MDEFLOW_INSTANCES", "must be at least 1")
	}
	if s.FollowEvery <= 0 {
		p.Add("MDEFLOW_ACTION_FOLLOW_INTERVAL", "must be positive")
	}
	if s.InvocationTimeout <= 0 {
		p.Add("MDEFLOW_INVOCATION_TIMEOUT", "must be positive")
	}
	for _, c := range s.Channels {
		switch c {
		case "outbox", "smtp", "graphmail", "teams", "webhook":
		default:
			p.Add("MDEFLOW_NOTIFY_CHANNELS", "unknown channel %q (outbox, smtp, graphmail, teams, webhook)", c)
		}
	}
	if slices.Contains(s.Channels, "smtp") && s.SMTPHost == "" {
		p.Add("MDEFLOW_SMTP_HOST", "required by the smtp channel")
	}
	if slices.Contains(s.Channels, "teams") && s.TeamsURL == "" {
		p.Add("MDEFLOW_TEAMS_WEBHOOK_URL", "required by the teams channel")
	}
	if slices.Contains(s.Channels, "webhook") && (s.WebhookURL == "" || len(s.WebhookSecret) < 16) {
		p.Add("MDEFLOW_WEBHOOK_URL", "the webhook channel needs MDEFLOW_WEBHOOK_URL and a MDEFLOW_WEBHOOK_SECRET of at least 16 characters")
	}
	return s, p.Err()
}

// App is everything the functions need, built once per process.
type App struct {
	S         *Settings
	Log       *slog.Logger
	Store     store.Backend
	Queue     queue.Sender
	MDE       *mde.Client
	Graph     *graph.Client
	Policy    *mpolicy.Policy
	Breaker   *mpolicy.Breaker
	Signer    *mpolicy.Signer
	Notifier  *notify.Dispatcher
	Hunts     *hunt.Runner
	Catalog   hunt.Catalog
	Publisher *scheduledhunt.Publisher
	closers   []func() error
}

// Close releases the app's resources.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}

// buildApp builds clients and state from settings. Every problem is reported
// at start-up with the setting that causes it.
func buildApp(ctx context.Context, s *Settings, log *slog.Logger, appRoot string) (*App, error) {
	a := &App{S: s, Log: log}
	ok := false
	defer func() {
		if !ok {
			_ = a.Close()
		}
	}()
	mde.RouteAzcoreLog(log)

	prof, err := profileOf(s)
	if err != nil {
		return nil, err
	}
	cred, transport, err := credential(s, prof)
	if err != nil {
		return nil, err
	}
	var co azcore.ClientOptions
	if transport != nil {
		co.Transport = transport
	}
	limiter, err := mde.NewLimiter(limitsOf(s))
	if err != nil {
		return nil, fmt.Errorf("settings MDEFLOW_*_CALLS_PER_*: %w", err)
	}
	a.MDE, err = mde.NewClient(cred, &mde.ClientOptions{ClientOptions: co, BaseURL: prof.MDEBaseURL, Scope: prof.MDEScope, Limiter: limiter, Logger: log})
	if err != nil {
		return nil, err
	}
	a.Graph, err = graph.NewClient(cred, &graph.ClientOptions{ClientOptions: co, BaseURL: prof.GraphBaseURL, Scope: prof.GraphScope, Limiter: limiter})
	if err != nil {
		return nil, err
	}

	switch s.Store {
	case "embedded":
		if err := os.MkdirAll(filepath.Dir(s.StorePath), 0o700); err != nil {
			return nil, fmt.Errorf("setting MDEFLOW_STORE_PATH: %w", err)
		}
		b, err := store.OpenBolt(s.StorePath)
		if err != nil {
			return nil, fmt.Errorf("setting MDEFLOW_STORE_PATH: %w", err)
		}
		a.Store = b
	default:
		tc := store.TablesConfig{ConnectionString: s.TablesConnection, Endpoint: s.TablesEndpoint, TablePrefix: s.TablePrefix}
		if s.TablesConnection == "" {
			tc.Credential = cred
		}
		b, err := store.NewTables(tc)
		if err != nil {
			return nil, fmt.Errorf("setting MDEFLOW_TABLES_CONNECTION: %w", err)
		}
		a.Store = b
	}
	a.closers = append(a.closers, a.Store.Close)

	switch s.Queue {
	case "local":
		a.Queue = queue.NewLocalSender(s.LocalQueueURL, s.LocalMasterKey, &http.Client{Timeout: 30 * time.Second})
	default:
		// The same settings the trigger bindings read: a connection string,
		// or ServiceBusConnection__fullyQualifiedNamespace with the
		// binding's __credential / __clientId (managed identity by default).
		sbc, err := queue.ServiceBusConfigFromSettings(s.getenv, "ServiceBusConnection")
		if err != nil {
			return nil, err
		}
		sb, err := queue.NewServiceBusSender(sbc)
		if err != nil {
			return nil, fmt.Errorf("setting ServiceBusConnection: %w", err)
		}
		a.Queue = sb
		a.closers = append(a.closers, func() error { return sb.Close(context.Background()) })
	}

	if s.PolicyFile != "" {
		a.Policy, err = mpolicy.Load(resolve(appRoot, s.PolicyFile))
		if err != nil {
			return nil, fmt.Errorf("setting MDEFLOW_POLICY_FILE: %w", err)
		}
	} else {
		a.Policy = mpolicy.Default()
	}
	var capN int
	var window time.Duration
	if c := a.Policy.Cap; c != nil {
		capN, window = c.MaxIsolations, c.Window
	}
	if s.Cap >= 0 {
		capN, window = s.Cap, s.CapWindow // explicit override
	}
	a.Breaker = mpolicy.NewBreaker(a.Store, capN, window)
	if s.ApprovalSecret != "" {
		a.Signer, err = mpolicy.NewSigner([]byte(s.ApprovalSecret), a.approvalTTL())
		if err != nil {
			return nil, fmt.Errorf("setting MDEFLOW_APPROVAL_SECRET: %w", err)
		}
	}

	channels, err := buildChannels(s, a.Graph, appRoot)
	if err != nil {
		return nil, err
	}
	a.Notifier, err = notify.NewDispatcher(notify.DispatcherOptions{Channels: channels, Default: s.Channels, Store: a.Store,
		Render: notify.RenderOptions{PortalBaseURL: s.PortalBaseURL, ApprovalBaseURL: s.PublicBaseURL}, GroupWindow: s.GroupWindow, Logger: log})
	if err != nil {
		return nil, err
	}

	cat, err := hunt.LoadDir(resolve(appRoot, s.HuntDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("setting MDEFLOW_HUNT_DIR: %w", err)
	}
	var q hunt.Querier = graphQuerier{a.Graph}
	if s.HuntAPI == "mde" {
		q = mdeQuerier{a.MDE}
	}
	a.Catalog = cat
	a.Publisher = &scheduledhunt.Publisher{Queue: a.Queue, Store: a.Store, Catalog: cat, Tagger: a.MDE, DryRun: s.DryRun || a.Policy.DryRun, Channels: s.Channels, MaxRows: 50, Logger: log.With(fn.KeyFunction, scheduledhunt.Name)}
	a.Hunts, err = hunt.NewRunner(hunt.RunnerOptions{Catalog: cat, Querier: q, Store: a.Store, API: s.HuntAPI, Logger: log,
		Publish: a.Publisher.Publish})
	if err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

func resolve(root, p string) string {
	if p == "" || filepath.IsAbs(p) || root == "" {
		return p
	}
	return filepath.Join(root, p)
}

// graphQuerier runs hunts through Graph security/runHuntingQuery.
type graphQuerier struct{ c *graph.Client }

func (g graphQuerier) Run(ctx context.Context, query string, period time.Duration) (json.RawMessage, error) {
	return g.c.RunHuntingQuery(ctx, query, hunt.ISODuration(period))
}

// mdeQuerier runs hunts through the MDE advanced queries API, which has no
// timespan parameter: the period is put into the query.
type mdeQuerier struct{ c *mde.Client }

func (m mdeQuerier) Run(ctx context.Context, query string, period time.Duration) (json.RawMessage, error) {
	return m.c.RunAdvancedQuery(ctx, hunt.ScopeQuery(query, period))
}

// alertLister adapts the configured alert source to OnNewAlert.
type alertLister struct {
	source string
	mde    *mde.Client
	graph  *graph.Client
}

func (l alertLister) ListAlertsCreatedSince(ctx context.Context, since time.Time) ([]mde.Alert, error) {
	if l.source == "graph" {
		v2, err := l.graph.ListAlertsV2(ctx, &graph.ListAlertsV2Options{CreatedAfter: since,
			Filter: "serviceSource eq 'microsoftDefenderForEndpoint'"})
		if err != nil {
			return nil, err
		}
		out := make([]mde.Alert, 0, len(v2))
		for _, g := range v2 {
			a, err := g.ToMDE()
			if err != nil {
				continue // not an MDE device alert
			}
			out = append(out, a)
		}
		return out, nil
	}
	return l.mde.ListAlerts(ctx, &mde.ListAlertsOptions{CreatedAfter: since, OrderBy: "alertCreationTime asc"})
}

// server registers every function on a wire server.
func (a *App) server() *wire.Server {
	s, log, now := a.S, a.Log, time.Now
	srv := wire.NewServer(&wire.ServerOptions{Logger: log, InvocationTimeout: s.InvocationTimeout})
	d := fn.Deps{Store: a.Store, Logger: log}
	onExpiry := "deny"
	if ap := a.Policy.Approval; ap != nil && ap.OnExpiry != "" {
		onExpiry = ap.OnExpiry
	}
	srv.Handle(onnewalert.Name, (&onnewalert.Function{Alerts: alertLister{s.AlertSource, a.MDE, a.Graph}, Store: a.Store, Queue: a.Queue,
		Overlap: s.PollOverlap, Lookback: s.PollLookback, Now: now, Logger: log.With(fn.KeyFunction, onnewalert.Name)}).Invoke)
	srv.Handle(ingestalert.Name, (&ingestalert.Function{Queue: a.Queue, Logger: log.With(fn.KeyFunction, ingestalert.Name)}).Invoke)
	enrich := &enrichalert.Function{Defender: a.MDE, Policy: a.Policy, Store: a.Store, Queue: a.Queue, Now: now,
		Logger: log.With(fn.KeyFunction, enrichalert.Name)}
	srv.Handle(enrichalert.Name, fn.ServiceBus(d, queue.Alerts, "msg", enrich.Handle))
	iso := &isolatemachine.Function{Defender: a.MDE, Policy: a.Policy, Breaker: a.Breaker, PublicBaseURL: s.PublicBaseURL,
		OnExpiry: onExpiry, GlobalDryRun: s.DryRun, Store: a.Store, Queue: a.Queue, FollowEvery: s.FollowEvery,
		FollowTimeout: s.FollowTimeout, Now: now, Logger: log.With(fn.KeyFunction, isolatemachine.Name)}
	if a.Signer != nil {
		iso.Approvals = a.Signer
	}
	srv.Handle(isolatemachine.Name, fn.ServiceBus(d, queue.Isolations, "msg", iso.Handle))
	follow := &followaction.Function{Defender: a.MDE, Store: a.Store, Queue: a.Queue, FollowEvery: s.FollowEvery,
		MaxEvery: 10 * s.FollowEvery, Now: now, Logger: log.With(fn.KeyFunction, followaction.Name)}
	srv.Handle(followaction.Name, fn.ServiceBus(d, queue.Actions, "msg", follow.Handle))
	nf := &notifyfn.Function{Deliverer: a.Notifier, Configured: s.Channels, Logger: log.With(fn.KeyFunction, notifyfn.Name)}
	srv.Handle(notifyfn.Name, fn.ServiceBus(d, queue.Notifications, "msg", nf.Handle))
	srv.Handle(flushdigests.Name, (&flushdigests.Function{Flusher: a.Notifier, Enabled: s.GroupWindow > 0, Now: now,
		Logger: log.With(fn.KeyFunction, flushdigests.Name)}).Invoke)
	srv.Handle(scheduledhunt.Name, (&scheduledhunt.Function{Runner: a.Hunts, Now: now,
		Logger: log.With(fn.KeyFunction, scheduledhunt.Name)}).Invoke)
	srv.Handle(runhunt.Name, (&runhunt.Function{Runner: a.Hunts, Publisher: a.Publisher, Now: now,
		Logger: log.With(fn.KeyFunction, runhunt.Name)}).Invoke)
	if a.Signer != nil {
		srv.Handle(approval.Name, (&approval.Function{Verifier: a.Signer, Store: a.Store, Queue: a.Queue, Now: now,
			Logger: log.With(fn.KeyFunction, approval.Name)}).Invoke)
	} else {
		srv.Handle(approval.Name, func(context.Context, *wire.Invocation) (wire.Result, error) {
			return wire.JSONHTTPResponse("res", http.StatusNotFound, map[string]string{"error": "approvals are not configured (MDEFLOW_APPROVAL_SECRET)"}), nil
		})
	}
	srv.Handle(manualisolate.Name, (&manualisolate.Function{Machines: a.MDE, Queue: a.Queue, PolicyVersion: a.Policy.Version,
		Channels: s.Channels, Now: now, Logger: log.With(fn.KeyFunction, manualisolate.Name)}).Invoke)
	srv.Handle(manualrelease.Name, (&manualrelease.Function{Defender: a.MDE, Store: a.Store, Queue: a.Queue, Policy: a.Policy, DryRun: s.DryRun,
		PolicyVersion: a.Policy.Version, Channels: s.Channels, Now: now, Logger: log.With(fn.KeyFunction, manualrelease.Name)}).Invoke)
	srv.Handle(resetbreaker.Name, (&resetbreaker.Function{Breaker: a.Breaker, Now: now,
		Logger: log.With(fn.KeyFunction, resetbreaker.Name)}).Invoke)
	return srv
}

// functionNames lists the functions the binary serves; a test checks it
// against the functions/ folders.
func functionNames() []string {
	return []string{onnewalert.Name, flushdigests.Name, ingestalert.Name, enrichalert.Name, isolatemachine.Name, followaction.Name, notifyfn.Name,
		scheduledhunt.Name, runhunt.Name, approval.Name, manualisolate.Name, manualrelease.Name, resetbreaker.Name}
}

// credential builds the token credential and, for the local simulator, a
// transport that trusts its CA.
func credential(s *Settings, prof auth.Profile) (azcore.TokenCredential, policy.Transporter, error) {
	cc := s.Credential
	cc.AuthorityHost = prof.AuthorityHost
	var transport policy.Transporter
	if cc.ExtraCAFile != "" {
		hc, err := auth.HTTPClientWithExtraCA(cc.ExtraCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("setting MDEFLOW_EXTRA_CA_FILE: %w", err)
		}
		transport = hc
		cc.Transport = hc
	}
	cred, err := auth.NewCredential(cc)
	if err != nil {
		return nil, nil, err
	}
	return cred, transport, nil
}

// limitsOf turns the quota settings into the client limiter's config.
func limitsOf(s *Settings) mde.LimitsConfig {
	std := []mde.Rate{{N: s.MDEPerMinute, Per: time.Minute}, {N: s.MDEPerHour, Per: time.Hour}}
	rates := mde.DefaultRates()
	rates[mde.FamilyAlerts], rates[mde.FamilyMachines], rates[mde.FamilyActions] = std, std, std
	rates[mde.FamilyHunting] = []mde.Rate{{N: s.HuntPerMinute, Per: time.Minute}, {N: 1500, Per: time.Hour}}
	return mde.LimitsConfig{Instances: s.Instances, Rates: rates}
}

// buildChannels sets up the configured notification channels.
func buildChannels(s *Settings, g *graph.Client, appRoot string) (map[string]notify.Channel, error) {
	channels := map[string]notify.Channel{}
	var errs []error
	add := func(name string, ch notify.Channel, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("channel %s: %w", name, err))
			return
		}
		channels[name] = ch
	}
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range s.Channels {
		switch c {
		case "outbox":
			ch, err := notify.NewOutbox(notify.OutboxConfig{Dir: resolve(appRoot, s.OutboxDir), From: s.MailFrom, To: s.MailTo})
			add(c, ch, err)
		case "smtp":
			ch, err := notify.NewSMTP(notify.SMTPConfig{Host: s.SMTPHost, Port: s.SMTPPort, Username: s.SMTPUser, Password: s.SMTPPwd,
				From: s.MailFrom, To: s.MailTo, Security: s.SMTPSecurity, Auth: s.SMTPAuth})
			add(c, ch, err)
		case "graphmail":
			ch, err := notify.NewGraphMail(notify.GraphMailConfig{Name: c, Sender: graphMailSender{g}, Mailbox: s.MailFrom, To: s.MailTo})
			add(c, ch, err)
		case "teams":
			ch, err := notify.NewTeams(notify.TeamsConfig{WebhookURL: s.TeamsURL, LinkBaseURL: s.PublicBaseURL, HTTPClient: hc})
			add(c, ch, err)
		case "webhook":
			ch, err := notify.NewWebhook(notify.WebhookConfig{URL: s.WebhookURL, Secret: []byte(s.WebhookSecret), HTTPClient: hc})
			add(c, ch, err)
		}
	}
	return channels, errors.Join(errs...)
}

// graphMailSender adapts the Graph client to the notify channel.
type graphMailSender struct{ c *graph.Client }

func (g graphMailSender) SendMail(ctx context.Context, mailbox string, m notify.MailMessage, save bool) error {
	return g.c.SendMail(ctx, mailbox, graph.Mail{Subject: m.Subject, HTMLBody: m.HTMLBody, TextBody: m.TextBody,
		To: m.To, CC: m.CC, InternetMessageID: m.InternetMessageID}, save)
}

// profileOf is the cloud profile with the URL settings applied.
func profileOf(s *Settings) (auth.Profile, error) {
	if s.Cloud == "custom" {
		p, err := auth.CustomProfile(s.MDEBaseURL, s.MDEScope, s.AuthorityHost, s.GraphBaseURL, s.GraphScope)
		if err != nil {
			return p, fmt.Errorf("settings MDEFLOW_MDE_BASE_URL, MDEFLOW_AUTHORITY_HOST, MDEFLOW_GRAPH_BASE_URL (custom cloud): %w", err)
		}
		return p, nil
	}
	p, err := auth.ProfileByName(s.Cloud, s.Region)
	if err != nil {
		return p, fmt.Errorf("settings MDEFLOW_CLOUD/MDEFLOW_REGION: %w", err)
	}
	if s.MDEBaseURL != "" {
		p.MDEBaseURL = s.MDEBaseURL
	}
	if s.MDEScope != "" {
		p.MDEScope = s.MDEScope
	}
	if s.GraphBaseURL != "" {
		p.GraphBaseURL = s.GraphBaseURL
	}
	if s.GraphScope != "" {
		p.GraphScope = s.GraphScope
	}
	if s.AuthorityHost != "" {
		p.AuthorityHost = s.AuthorityHost
	}
	return p, p.Validate()
}

// approvalTTL is how long approval links stay valid (policy, default 1h).
func (a *App) approvalTTL() time.Duration {
	if ap := a.Policy.Approval; ap != nil && ap.TTL > 0 {
		return ap.TTL
	}
	return time.Hour
}
