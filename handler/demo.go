package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	enrichalert "github.com/mdeflow/mdeflow/functions/EnrichAlert"
	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/localhost"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
)

// demoOptions are the flags of the demo command.
type demoOptions struct {
	Alerts   string
	Source   string
	Policy   string
	Hunts    string
	RunHunts bool
	DryRun   bool
	Keep     bool
	Timeout  time.Duration
	Verbose  bool
	// Handler is the handler executable (default: this binary).
	Handler string
	// Settings are extra app settings (tests).
	Settings map[string]string
}

// demoResult is what a demo run counted.
type demoResult struct {
	Alerts, Isolated, Skipped, Notified, DeadLettered int
	IsolateCalls, AcceptedCalls                       int
	Outcomes                                          []outcomeLine
	Dir                                               string
}

type outcomeLine struct{ Alert, Machine, Title, Rule, Outcome string }

func (r demoResult) summary() string {
	return fmt.Sprintf("summary alerts=%d isolated=%d skipped=%d notified=%d deadlettered=%d",
		r.Alerts, r.Isolated, r.Skipped, r.Notified, r.DeadLettered)
}

func cmdDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demoOptions
	fs.StringVar(&o.Alerts, "alerts", "", "seed the simulator from an MDE list-alerts (or Graph alerts_v2) JSON file")
	fs.StringVar(&o.Source, "source", "mde", "alert source: mde or graph")
	fs.StringVar(&o.Policy, "policy", "", "response policy file (default: built-in)")
	fs.StringVar(&o.Hunts, "hunts", "examples/hunts", "hunt catalog folder")
	fs.BoolVar(&o.RunHunts, "hunt", false, "also run ScheduledHunt once")
	fs.BoolVar(&o.DryRun, "dry-run", false, "global dry run")
	fs.BoolVar(&o.Keep, "keep", false, "keep the working folder (state, outbox, logs)")
	fs.DurationVar(&o.Timeout, "timeout", 4*time.Minute, "give up after this long")
	fs.BoolVar(&o.Verbose, "v", false, "show the handler's logs")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if o.Source != "mde" && o.Source != "graph" {
		return usageError{"--source must be mde or graph"}
	}
	res, err := runDemo(ctx, o, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.summary())
	return nil
}

// repoRoot finds the folder with host.json and functions/ (the demo stages
// the app from the source tree, like `make app` does).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "host.json")) && fileExists(filepath.Join(dir, "functions")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo from the mdeflow checkout (host.json and functions/ not found)")
		}
		dir = parent
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func runDemo(ctx context.Context, o demoOptions, stdout io.Writer) (res demoResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	root, err := repoRoot()
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "mdeflow-demo-")
	if err != nil {
		return res, err
	}
	res.Dir = dir
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(stdout, "mdeflow demo: starting from clean state in %s\n", dir)

	// 1. The simulated tenant (Entra + Defender + Graph) on loopback TLS.
	now := time.Now().UTC()
	tenant := sim.SampleTenant(now)
	if o.Alerts != "" {
		tenant, err = sim.LoadAlertsFile(o.Alerts)
		if err != nil {
			return res, fmt.Errorf("--alerts: %w", err)
		}
	}
	// The first poll looks back far enough to see every seeded alert
	// (replayed exports keep their original, possibly old, timestamps).
	lookback := 2 * time.Hour
	for _, a := range tenant.Alerts {
		if a.AlertCreationTime != nil && now.Sub(*a.AlertCreationTime) >= lookback {
			lookback = now.Sub(*a.AlertCreationTime) + time.Hour
		}
	}
	sv, err := sim.New(sim.Options{Tenant: tenant, ActionStep: 500 * time.Millisecond})
	if err != nil {
		return res, err
	}
	if err := sv.Start(); err != nil {
		return res, err
	}
	defer sv.Close()
	caFile := filepath.Join(dir, "sim-ca.pem")
	if err := os.WriteFile(caFile, sv.CACertPEM(), 0o600); err != nil {
		return res, err
	}
	fmt.Fprintf(stdout, "simulator: %s (%d alerts, %d machines)\n", sv.URL(), len(tenant.Alerts), len(tenant.Machines))

	// 2. The app folder, as `make app` assembles it, with this binary as the
	// custom handler.
	appDir := filepath.Join(dir, "app")
	exe := o.Handler
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return res, err
		}
	}
	if err := stageApp(root, appDir, exe); err != nil {
		return res, err
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	hostURL := "http://127.0.0.1:" + strconv.Itoa(port)
	masterKey, functionKey := randomKey(), randomKey()
	policyFile := o.Policy
	if policyFile != "" {
		if policyFile, err = filepath.Abs(policyFile); err != nil {
			return res, err
		}
	}
	hunts := o.Hunts
	if !filepath.IsAbs(hunts) {
		hunts = filepath.Join(root, hunts)
	}
	settings := map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom",
		// The trigger bindings name this connection; the local host only
		// checks that it is defined (the handler sends through the host).
		"ServiceBusConnection":           "Endpoint=sb://localhost/;SharedAccessKeyName=local;SharedAccessKey=local",
		"MDEFLOW_QUEUE":                  "local",
		"MDEFLOW_LOCAL_QUEUE_URL":        hostURL,
		"MDEFLOW_LOCAL_MASTER_KEY":       masterKey,
		"MDEFLOW_CLOUD":                  "custom",
		"MDEFLOW_MDE_BASE_URL":           sv.URL(),
		"MDEFLOW_GRAPH_BASE_URL":         sv.URL() + "/v1.0",
		"MDEFLOW_MDE_SCOPE":              "https://api.securitycenter.microsoft.com/.default",
		"MDEFLOW_GRAPH_SCOPE":            "https://graph.microsoft.com/.default",
		"MDEFLOW_AUTHORITY_HOST":         sv.AuthorityHost(),
		"MDEFLOW_EXTRA_CA_FILE":          caFile,
		"MDEFLOW_CREDENTIAL":             "secret",
		"AZURE_TENANT_ID":                sv.TenantID(),
		"AZURE_CLIENT_ID":                sim.DefaultClientID,
		"AZURE_CLIENT_SECRET":            sim.DefaultClientSecret,
		"MDEFLOW_ALERT_SOURCE":           o.Source,
		"MDEFLOW_POLL_SCHEDULE":          "0 0 0 1 1 *", // fired by the demo, not by the clock
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
		settings[k] = v
	}
	logFile, err := os.Create(filepath.Join(dir, "handler.log"))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	var handlerOut io.Writer = logFile
	if o.Verbose {
		handlerOut = io.MultiWriter(logFile, stdout)
	}

	// 3. The local Functions host launches the handler as a separate process
	// and talks to it over the custom-handler wire protocol.
	host, err := localhost.New(localhost.Options{
		AppRoot: appDir, Settings: settings, Addr: "127.0.0.1:" + strconv.Itoa(port),
		MasterKey: masterKey, FunctionKey: functionKey, DisableTimers: true,
		Logger: slog.New(slog.NewJSONHandler(logFile, nil)), HandlerOutput: handlerOut,
	})
	if err != nil {
		return res, err
	}
	if err := host.Start(ctx); err != nil {
		return res, fmt.Errorf("starting the local host: %w (handler log: %s)", err, logFile.Name())
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = host.Stop(context.Background())
		}
	}()
	fmt.Fprintf(stdout, "local host: %s (handler process launched per host.json)\n", hostURL)

	// 4. One poll, then let the queues drain: enrich -> isolate -> follow -> notify.
	if err := host.Invoke(ctx, "OnNewAlert", ""); err != nil {
		return res, fmt.Errorf("firing OnNewAlert: %w", err)
	}
	if o.RunHunts {
		if err := host.Invoke(ctx, "ScheduledHunt", ""); err != nil {
			return res, fmt.Errorf("firing ScheduledHunt: %w", err)
		}
	}
	if err := host.WaitIdle(ctx); err != nil {
		return res, fmt.Errorf("waiting for the pipeline to finish: %w (handler log: %s)", err, logFile.Name())
	}
	for _, q := range []string{queue.Alerts, queue.Isolations, queue.Actions, queue.Notifications} {
		res.DeadLettered += len(host.DeadLetters(q))
	}
	if err := host.Stop(ctx); err != nil {
		return res, err
	}
	stopped = true

	// 5. Count what happened, from the state the handler left.
	st, err := store.OpenBolt(settings["MDEFLOW_STORE_PATH"])
	if err != nil {
		return res, err
	}
	defer st.Close()
	if err := countDemo(ctx, st, settings["MDEFLOW_OUTBOX_DIR"], &res); err != nil {
		return res, err
	}
	for _, m := range tenant.Machines {
		total, accepted := sv.IsolateCalls(m.ID)
		res.IsolateCalls += total
		res.AcceptedCalls += accepted
	}
	printOutcomes(stdout, res)
	return res, nil
}

func countDemo(ctx context.Context, st store.Backend, outbox string, res *demoResult) error {
	decisions, err := st.List(ctx, enrichalert.DecisionTable, "")
	if err != nil {
		return err
	}
	res.Alerts = len(decisions)
	byAlert := map[string]*outcomeLine{}
	for _, e := range decisions {
		var r enrichalert.Record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			return err
		}
		l := &outcomeLine{Alert: r.Decision.AlertID, Machine: r.Decision.MachineID, Rule: r.Decision.RuleID, Outcome: "notify only"}
		if r.Alert != nil {
			l.Title = r.Alert.Severity + " " + r.Alert.Title
		}
		byAlert[l.Alert] = l
	}
	reqs, err := st.List(ctx, isolatemachine.RequestTable, "")
	if err != nil {
		return err
	}
	for _, e := range reqs {
		var rs isolatemachine.RequestState
		if err := json.Unmarshal(e.Data, &rs); err != nil {
			return err
		}
		if rs.Outcome == nil {
			continue
		}
		desc := rs.Outcome.Kind
		switch rs.Outcome.Kind {
		case pipeline.OutcomeSucceeded:
			if _, iso := rs.Request.Decision.Has(pipeline.ActionIsolate); iso {
				res.Isolated++
				desc = "isolated (" + rs.Outcome.ActionStatus + ")"
			}
		case pipeline.OutcomeSkipped, pipeline.OutcomeDryRun, pipeline.OutcomeDenied, pipeline.OutcomeExpired:
			res.Skipped++
			desc = rs.Outcome.Kind + ": " + rs.Outcome.Reason
		default:
			desc = rs.Outcome.Kind + ": " + rs.Outcome.Reason
		}
		if l, ok := byAlert[rs.Request.AlertID]; ok {
			l.Outcome = desc
		}
	}
	dls, err := st.List(ctx, fn.DeadLetterTable, "")
	if err != nil {
		return err
	}
	res.DeadLettered += len(dls)
	files, err := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if err != nil {
		return err
	}
	res.Notified = len(files)
	for _, l := range byAlert {
		res.Outcomes = append(res.Outcomes, *l)
	}
	sort.Slice(res.Outcomes, func(i, j int) bool { return res.Outcomes[i].Alert < res.Outcomes[j].Alert })
	return nil
}

func printOutcomes(w io.Writer, res demoResult) {
	fmt.Fprintln(w, "decisions:")
	for _, l := range res.Outcomes {
		title := []rune(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, l.Title))
		if len(title) > 60 {
			title = append(title[:60], '…')
		}
		fmt.Fprintf(w, "  %-34s %-12s %-62s -> %s\n", l.Alert, l.Rule, string(title), l.Outcome)
	}
	fmt.Fprintf(w, "isolate calls to Defender: %d (accepted %d)\n", res.IsolateCalls, res.AcceptedCalls)
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
