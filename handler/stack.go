package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mdeflow/mdeflow/internal/localhost"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
)

// stackOptions configure a local run of the whole system: the simulated
// tenant, the local Functions host, and the handler process it launches.
type stackOptions struct {
	Tenant  *sim.Tenant // nil: the built-in sample tenant
	Source  string      // mde or graph
	Policy  string      // policy file; empty: built-in
	Hunts   string      // hunt catalog folder, relative to the checkout
	DryRun  bool
	Handler string // handler executable; empty: this binary
	// Settings are extra or overriding app settings.
	Settings map[string]string
	Keep     bool
	// HandlerOutput also receives the handler's output (the log file always does).
	HandlerOutput io.Writer
	// Sim tweaks the simulator's options (faults, action step).
	Sim func(*sim.Options)
	// Host tweaks the local host's options.
	Host func(*localhost.Options)
}

// stack is a running local system.
type stack struct {
	Dir      string
	Root     string
	Sim      *sim.Server
	Host     *localhost.Host
	Tenant   *sim.Tenant
	Settings map[string]string
	// FunctionKey and MasterKey authorize HTTP calls to the local host.
	FunctionKey, MasterKey string

	keep        bool
	log         *os.File // the handler's own output, one JSON line per log record
	hostLog     *os.File // the local host's log
	hostStopped bool
	closed      bool
}

// startStack starts the simulator, assembles the app folder like `make
// app`, and starts the local host, which launches the handler as a
// separate process and waits for it to answer.
func startStack(ctx context.Context, o stackOptions) (_ *stack, err error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mdeflow-demo-")
	if err != nil {
		return nil, err
	}
	st := &stack{Dir: dir, Root: root, keep: o.Keep}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()

	// The simulated tenant (Entra + Defender + Graph) on loopback TLS.
	now := time.Now().UTC()
	st.Tenant = o.Tenant
	if st.Tenant == nil {
		st.Tenant = sim.SampleTenant(now)
	}
	so := sim.Options{Tenant: st.Tenant, ActionStep: 500 * time.Millisecond}
	if o.Sim != nil {
		o.Sim(&so)
	}
	if st.Sim, err = sim.New(so); err != nil {
		return nil, err
	}
	if err := st.Sim.Start(); err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "sim-ca.pem")
	if err := os.WriteFile(caFile, st.Sim.CACertPEM(), 0o600); err != nil {
		return nil, err
	}
	// The first poll looks back far enough to see every seeded alert
	// (replayed exports keep their original, possibly old, timestamps).
	lookback := 2 * time.Hour
	for _, a := range st.Tenant.Alerts {
		if a.AlertCreationTime != nil && now.Sub(*a.AlertCreationTime) >= lookback {
			lookback = now.Sub(*a.AlertCreationTime) + time.Hour
		}
	}

	// The app folder, as `make app` assembles it, with the handler binary.
	appDir := filepath.Join(dir, "app")
	exe := o.Handler
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if err := stageApp(root, appDir, exe); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	hostURL := "http://127.0.0.1:" + strconv.Itoa(port)
	st.MasterKey, st.FunctionKey = randomKey(), randomKey()
	policyFile := o.Policy
	if policyFile != "" {
		if policyFile, err = filepath.Abs(policyFile); err != nil {
			return nil, err
		}
	}
	hunts := o.Hunts
	if hunts == "" {
		hunts = "examples/hunts"
	}
	if !filepath.IsAbs(hunts) {
		hunts = filepath.Join(root, hunts)
	}
	source := o.Source
	if source == "" {
		source = "mde"
	}
	st.Settings = map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom",
		// The trigger bindings name this connection; the local host only
		// checks that it is defined (the handler sends through the host).
		"ServiceBusConnection":           "Endpoint=sb://localhost/;SharedAccessKeyName=local;SharedAccessKey=local",
		"MDEFLOW_QUEUE":                  "local",
		"MDEFLOW_LOCAL_QUEUE_URL":        hostURL,
		"MDEFLOW_LOCAL_MASTER_KEY":       st.MasterKey,
		"MDEFLOW_CLOUD":                  "custom",
		"MDEFLOW_MDE_BASE_URL":           st.Sim.URL(),
		"MDEFLOW_GRAPH_BASE_URL":         st.Sim.URL() + "/v1.0",
		"MDEFLOW_MDE_SCOPE":              "https://api.securitycenter.microsoft.com/.default",
		"MDEFLOW_GRAPH_SCOPE":            "https://graph.microsoft.com/.default",
		"MDEFLOW_AUTHORITY_HOST":         st.Sim.AuthorityHost(),
		"MDEFLOW_EXTRA_CA_FILE":          caFile,
		"MDEFLOW_CREDENTIAL":             "secret",
		"AZURE_TENANT_ID":                st.Sim.TenantID(),
		"AZURE_CLIENT_ID":                sim.DefaultClientID,
		"AZURE_CLIENT_SECRET":            sim.DefaultClientSecret,
		"MDEFLOW_ALERT_SOURCE":           source,
		"MDEFLOW_POLL_SCHEDULE":          "0 0 0 1 1 *", // fired by hand, not by the clock
		"MDEFLOW_HUNT_SCHEDULE":          "0 0 0 1 1 *",
		"MDEFLOW_POLL_LOOKBACK":          lookback.Round(time.Second).String(),
		"MDEFLOW_STORE":                  "embedded",
		"MDEFLOW_STORE_PATH":             filepath.Join(dir, "state.db"),
		"MDEFLOW_OUTBOX_DIR":             filepath.Join(dir, "outbox"),
		"MDEFLOW_NOTIFY_CHANNELS":        "outbox",
		"MDEFLOW_ACTION_FOLLOW_INTERVAL": "1s",
		"MDEFLOW_HUNT_DIR":               hunts,
		"MDEFLOW_POLICY_FILE":            policyFile,
		"MDEFLOW_DRY_RUN":                strconv.FormatBool(o.DryRun),
		"MDEFLOW_APPROVAL_SECRET":        randomKey() + randomKey(),
		"MDEFLOW_PUBLIC_BASE_URL":        hostURL,
		"MDEFLOW_LOG_LEVEL":              "info",
	}
	for k, v := range o.Settings {
		st.Settings[k] = v
	}
	if st.log, err = os.Create(filepath.Join(dir, "handler.log")); err != nil {
		return nil, err
	}
	if st.hostLog, err = os.Create(filepath.Join(dir, "host.log")); err != nil {
		return nil, err
	}
	var handlerOut io.Writer = st.log
	if o.HandlerOutput != nil {
		handlerOut = io.MultiWriter(st.log, o.HandlerOutput)
	}
	ho := localhost.Options{
		AppRoot: appDir, Settings: st.Settings, Addr: "127.0.0.1:" + strconv.Itoa(port),
		MasterKey: st.MasterKey, FunctionKey: st.FunctionKey, DisableTimers: true,
		Logger: slog.New(slog.NewJSONHandler(st.hostLog, nil)), HandlerOutput: handlerOut,
	}
	if o.Host != nil {
		o.Host(&ho)
	}
	if st.Host, err = localhost.New(ho); err != nil {
		return nil, err
	}
	if err := st.Host.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the local host: %w (handler log: %s)", err, st.LogPath())
	}
	return st, nil
}

// Settle waits until the pipeline has nothing left to do now: no
// invocation running and no active or in-flight message, with the scheduled
// messages unchanged for longer than the follow-up back-off. What is left
// scheduled then waits for a person (approval expiries) or for later.
func (st *stack) Settle(ctx context.Context) error {
	const quiet = 12 * time.Second // > the demo's longest follow-up interval
	var lastScheduled = -1
	var since time.Time
	for {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := st.Host.WaitIdle(wctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		stats := st.Host.Stats()
		busy, scheduled := stats.Running > 0, 0
		for _, q := range stats.Queues {
			busy = busy || q.Active > 0 || q.InFlight > 0
			scheduled += q.Scheduled
		}
		switch {
		case busy || scheduled != lastScheduled:
			lastScheduled, since = scheduled, time.Now()
		case time.Since(since) >= quiet:
			return nil
		}
	}
}

// LogPath is the handler's log file.
func (st *stack) LogPath() string { return filepath.Join(st.Dir, "handler.log") }

// StopHost stops the local host (and so the handler process, which
// releases the embedded store's file lock).
func (st *stack) StopHost(ctx context.Context) error {
	if st.hostStopped || st.Host == nil {
		return nil
	}
	st.hostStopped = true
	return st.Host.Stop(ctx)
}

// Close stops everything and removes the folder unless kept.
func (st *stack) Close() {
	if st.closed {
		return
	}
	st.closed = true
	_ = st.StopHost(context.Background())
	if st.Sim != nil {
		st.Sim.Close()
	}
	if st.log != nil {
		st.log.Close()
	}
	if st.hostLog != nil {
		st.hostLog.Close()
	}
	if !st.keep {
		os.RemoveAll(st.Dir)
	}
}

// Collect stops the host and counts what happened from the state the
// handler left, the host's dead-letter queues and the simulator.
func (st *stack) Collect(ctx context.Context) (demoResult, error) {
	res := demoResult{Dir: st.Dir}
	for _, q := range []string{queue.Alerts, queue.Isolations, queue.Actions, queue.Notifications} {
		res.DeadLettered += len(st.Host.DeadLetters(q))
	}
	if err := st.StopHost(ctx); err != nil {
		return res, err
	}
	db, err := store.OpenBolt(st.Settings["MDEFLOW_STORE_PATH"])
	if err != nil {
		return res, err
	}
	defer db.Close()
	if err := countDemo(ctx, db, st.Settings["MDEFLOW_OUTBOX_DIR"], &res); err != nil {
		return res, err
	}
	for _, m := range st.Tenant.Machines {
		total, accepted := st.Sim.IsolateCalls(m.ID)
		res.IsolateCalls += total
		res.AcceptedCalls += accepted
	}
	return res, nil
}

// stageApp assembles the app folder like `make app`, pointing host.json at exe.
func stageApp(root, appDir, exe string) error {
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return err
	}
	var host map[string]any
	if err := json.Unmarshal(raw, &host); err != nil {
		return fmt.Errorf("host.json: %w", err)
	}
	ch, _ := host["customHandler"].(map[string]any)
	desc, _ := ch["description"].(map[string]any)
	if desc == nil {
		return errors.New("host.json has no customHandler.description")
	}
	desc["defaultExecutablePath"] = exe
	out, _ := json.MarshalIndent(host, "", "  ")
	if err := os.WriteFile(filepath.Join(appDir, "host.json"), out, 0o644); err != nil {
		return err
	}
	fns, err := filepath.Glob(filepath.Join(root, "functions", "*", "function.json"))
	if err != nil {
		return err
	}
	for _, f := range fns {
		name := filepath.Base(filepath.Dir(f))
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(appDir, name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(appDir, name, "function.json"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomKey() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
