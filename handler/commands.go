package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/auth"
	"github.com/mdeflow/mdeflow/internal/config"
	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/localhost"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	mpolicy "github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/termsafe"
)

// cmdLocalhost runs the local Functions host on an app folder, like
// `func start`: timers fire on their schedules, queues deliver, HTTP
// functions answer on /api/....
func cmdLocalhost(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("localhost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	appDir := fs.String("app", "dist/app", "app folder (make app)")
	addr := fs.String("addr", "127.0.0.1:7071", "listen address")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	masterKey, functionKey := getenv("MDEFLOW_LOCAL_MASTER_KEY"), getenv("MDEFLOW_LOCAL_FUNCTION_KEY")
	if masterKey == "" {
		masterKey = randomKey()
	}
	if functionKey == "" {
		functionKey = randomKey()
	}
	settings := map[string]string{"MDEFLOW_QUEUE": "local", "MDEFLOW_LOCAL_QUEUE_URL": "http://" + *addr,
		"MDEFLOW_LOCAL_MASTER_KEY": masterKey}
	// Local defaults for what neither the app folder's local.settings.json
	// nor the environment sets: the bindings' Service Bus connection must be
	// defined (the local host does not use it) and state goes to a file.
	local, err := localSettings(filepath.Join(*appDir, "local.settings.json"))
	if err != nil {
		return err
	}
	for k, v := range map[string]string{
		"ServiceBusConnection":    "Endpoint=sb://localhost/;SharedAccessKeyName=local;SharedAccessKey=local",
		"MDEFLOW_STORE":           "embedded",
		"MDEFLOW_POLL_SCHEDULE":   "0 */1 * * * *",
		"MDEFLOW_HUNT_SCHEDULE":   "0 */5 * * * *",
		"MDEFLOW_NOTIFY_CHANNELS": "outbox",
	} {
		if local[k] == "" && getenv(k) == "" {
			settings[k] = v
		}
	}
	log := newLogger(stdout, "info")
	host, err := localhost.New(localhost.Options{AppRoot: *appDir, Settings: settings, Addr: *addr, MasterKey: masterKey,
		FunctionKey: functionKey, Logger: log}) // the host's log carries the handler's lines once
	if err != nil {
		return err
	}
	if err := host.Start(ctx); err != nil {
		return err
	}
	// Local development keys (set MDEFLOW_LOCAL_FUNCTION_KEY and
	// MDEFLOW_LOCAL_MASTER_KEY to choose them).
	fmt.Fprintf(stderr, "local host on http://%s\n  function key (x-functions-key or ?code=): %s\n  master key (admin functions, /admin): %s\n",
		*addr, functionKey, masterKey)
	<-ctx.Done()
	return host.Stop(context.Background())
}

// localSettings reads the Values of a local.settings.json (none when the
// file does not exist).
func localSettings(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f struct {
		Values map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Values, nil
}

// cmdSim runs the simulator until interrupted.
func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alerts := fs.String("alerts", "", "seed from an alerts file instead of the sample tenant")
	caOut := fs.String("ca", "sim-ca.pem", "where to write the simulator's CA certificate")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	opts := sim.Options{Logger: slog.New(slog.NewJSONHandler(stdout, nil))}
	if *alerts != "" {
		t, err := sim.LoadAlertsFile(*alerts)
		if err != nil {
			return err
		}
		opts.Tenant = t
	}
	sv, err := sim.New(opts)
	if err != nil {
		return err
	}
	if err := sv.Start(); err != nil {
		return err
	}
	defer sv.Close()
	if err := os.WriteFile(*caOut, sv.CACertPEM(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "simulator on %s\n  MDEFLOW_CLOUD=custom MDEFLOW_MDE_BASE_URL=%s MDEFLOW_GRAPH_BASE_URL=%s/v1.0 MDEFLOW_AUTHORITY_HOST=%s\n  MDEFLOW_EXTRA_CA_FILE=%s MDEFLOW_CREDENTIAL=secret AZURE_TENANT_ID=%s AZURE_CLIENT_ID=%s AZURE_CLIENT_SECRET=%s\n",
		sv.URL(), sv.URL(), sv.URL(), sv.AuthorityHost(), *caOut, sv.TenantID(), sim.DefaultClientID, sim.DefaultClientSecret)
	sig, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	<-sig.Done()
	return nil
}

// cmdCheck validates settings, the policy and the hunt catalog, and reports
// every API role an enabled feature needs and the token lacks.
func cmdCheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	offline := fs.Bool("offline", false, "do not fetch tokens (settings, policy and hunts only)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	s, err := loadSettings(getenv)
	if err != nil {
		fmt.Fprintf(stdout, "settings: PROBLEMS\n%v\n", err)
		return errors.New("check failed")
	}
	fmt.Fprintln(stdout, "settings: ok")
	var problems []error
	pol := mpolicy.Default()
	var polErr error
	if s.PolicyFile != "" {
		pol, polErr = mpolicy.Load(s.PolicyFile)
		if polErr != nil {
			problems = append(problems, polErr)
			fmt.Fprintf(stdout, "policy %s: PROBLEMS\n%v\n", s.PolicyFile, polErr)
		} else {
			fmt.Fprintf(stdout, "policy %s: ok (version %s, %d rules)\n", s.PolicyFile, pol.Version, len(pol.Rules))
		}
	} else {
		fmt.Fprintln(stdout, "policy: built-in default (High -> isolate Full + notify; else notify; tag protected never isolated)")
	}
	if _, err := os.Stat(s.HuntDir); err == nil {
		if err := hunt.RunCheck(stdout, s.HuntDir, s.HuntAPI); err != nil {
			problems = append(problems, err)
		}
	}
	if !*offline {
		prof, err := profileOf(s)
		if err != nil {
			return err
		}
		cred, _, err := credential(s, prof)
		if err != nil {
			return err
		}
		if polErr != nil {
			return polErr
		}
		feats := featuresOf(s, pol)
		if err := auth.Check(ctx, cred, auth.Scopes{MDE: prof.MDEScope, Graph: prof.GraphScope}, feats, stdout); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check found %d problem(s)", len(problems))
	}
	return nil
}

// featuresOf says which features the settings and the policy enable, for
// the role check: least privilege means asking only for what is used.
func featuresOf(s *Settings, p *mpolicy.Policy) auth.Features {
	f := auth.Features{
		PollAlerts:    s.AlertSource == "mde",
		GraphAlerts:   s.AlertSource == "graph",
		MachineLookup: true,
		MDEHunting:    s.HuntAPI == "mde",
		GraphHunting:  s.HuntAPI == "graph",
		SendMail:      slices.Contains(s.Channels, "graphmail"),
	}
	for _, r := range p.Rules {
		for _, a := range r.Actions {
			switch a.Type {
			case pipeline.ActionIsolate:
				f.Isolate = !s.DryRun
			case pipeline.ActionRestrict:
				f.Restrict = true
			case pipeline.ActionAVScan:
				f.Scan = true
			case pipeline.ActionCollectPackage:
				f.CollectForensics = true
			case pipeline.ActionTag:
				f.Tags = true
			case pipeline.ActionUpdateAlert:
				f.UpdateAlerts = true
			}
		}
	}
	return f
}

// cmdPolicy: policy check FILE | policy test --alert FILE [--machine FILE] [--policy FILE].
func cmdPolicy(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"policy check FILE | policy test --alert FILE [--machine FILE] [--policy FILE]"}
	}
	switch args[0] {
	case "check":
		if len(args) != 2 {
			return usageError{"policy check FILE"}
		}
		return mpolicy.RunCheck(stdout, args[1])
	case "test":
		fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
		alert := fs.String("alert", "", "alert JSON (one alert, an MDE list page or a Graph alerts_v2 page)")
		machine := fs.String("machine", "", "machine JSON (optional)")
		pfile := fs.String("policy", "", "policy file (default: built-in)")
		if err := fs.Parse(args[1:]); err != nil {
			return flagError(err)
		}
		if *alert == "" {
			return usageError{"policy test needs --alert FILE"}
		}
		p := mpolicy.Default()
		if *pfile != "" {
			var err error
			if p, err = mpolicy.Load(*pfile); err != nil {
				return err
			}
		}
		return mpolicy.RunTest(stdout, p, *alert, *machine, time.Now().UTC())
	default:
		return usageError{fmt.Sprintf("unknown policy command %q", args[0])}
	}
}

// cmdHunts: hunts check DIR.
func cmdHunts(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 2 || args[0] != "check" {
		return usageError{"hunts check DIR"}
	}
	api := config.NewEnv(getenv).Str("MDEFLOW_HUNT_API")
	return hunt.RunCheck(stdout, args[1], api)
}

// cmdDeadLetters lists the dead-letter log, or sends entries back to their
// queue with a new message id (the original id stays dropped as duplicate).
func cmdDeadLetters(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "resubmit") {
		return usageError{"deadletters list | resubmit [--id MESSAGEID] | resubmit --queue Q --seq N"}
	}
	fs := flag.NewFlagSet("deadletters", flag.ContinueOnError)
	id := fs.String("id", "", "only this message id (mdeflow's dead-letter log)")
	qname := fs.String("queue", "", "with --seq: the queue whose broker dead-letter queue holds the message")
	seq := fs.Int64("seq", 0, "with --queue: the sequence number of the broker dead letter to send back")
	if err := fs.Parse(args[1:]); err != nil {
		return flagError(err)
	}
	s, err := loadSettings(getenv)
	if err != nil {
		return fmt.Errorf("invalid settings:\n%w", err)
	}
	app, err := buildApp(ctx, s, newLogger(io.Discard, "error"), "")
	if err != nil {
		return err
	}
	defer app.Close()
	log := store.NewDeadLetterLog(app.Store)
	all, err := log.List(ctx, "")
	if err != nil {
		return err
	}
	var dls []store.DeadLetter
	for _, d := range all {
		if *id == "" || d.MessageID == *id {
			dls = append(dls, d)
		}
	}
	broker, _ := app.Queue.(queue.DeadLetterQueue)
	if args[0] == "list" {
		fmt.Fprintln(stdout, "mdeflow dead-letter log (permanent errors):")
		for _, d := range dls {
			fmt.Fprint(stdout, deadLetterLine(d))
		}
		fmt.Fprintf(stdout, "%d dead letter(s)\n", len(dls))
		if broker == nil {
			return nil
		}
		fmt.Fprintln(stdout, "broker dead-letter queues (deliveries exhausted):")
		total := 0
		for _, q := range []string{queue.Alerts, queue.Isolations, queue.Actions, queue.Notifications} {
			bl, err := broker.ListDeadLetters(ctx, q, 100)
			if err != nil {
				return err
			}
			for _, d := range bl {
				fmt.Fprintf(stdout, "%s  %-13s seq=%-6d %-40s %s: %s\n", d.EnqueuedTime.Format(time.RFC3339), q, d.SequenceNumber,
					termsafe.String(d.MessageID, 128), termsafe.String(d.Reason, 60), oneLine(d.Description))
			}
			total += len(bl)
		}
		fmt.Fprintf(stdout, "%d broker dead letter(s); send one back with: deadletters resubmit --queue Q --seq N\n", total)
		return nil
	}
	if *qname != "" || *seq != 0 {
		if broker == nil || *qname == "" || *seq <= 0 {
			return usageError{"resubmit --queue Q --seq N needs both, and a queue backend with a dead-letter queue"}
		}
		if err := broker.ResubmitDeadLetter(ctx, *qname, *seq); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dead letter %d sent back to %s\n", *seq, *qname)
		return nil
	}
	n := 0
	for _, d := range dls {
		if !d.Pending() {
			continue
		}
		msg := queue.Message{MessageID: fmt.Sprintf("%s-resubmit-%d", d.MessageID, time.Now().Unix()), CorrelationID: d.MessageID,
			ContentType: "application/json", Body: []byte(d.Body)}
		if err := app.Queue.Send(ctx, d.Queue, msg); err != nil {
			return fmt.Errorf("resubmitting %s: %w", d.MessageID, err)
		}
		if err := log.MarkResubmitted(ctx, d.Queue, d.MessageID, "cli"); err != nil {
			return err
		}
		n++
	}
	fmt.Fprintf(stdout, "%d message(s) sent back\n", n)
	return nil
}

// deadLetterLine is one line of "deadletters list". The message id is the
// sender's and the error quotes the message: both are made terminal-safe.
func deadLetterLine(d store.DeadLetter) string {
	state := ""
	if !d.Pending() {
		state = " (resubmitted)"
	}
	return fmt.Sprintf("%s  %-13s %-40s %s: %s%s\n", d.At.Format(time.RFC3339), termsafe.String(d.Queue, 40), termsafe.String(d.MessageID, 128),
		termsafe.String(d.Function, 40), oneLine(d.Error), state)
}

// oneLine is an error or description, terminal-safe and capped.
func oneLine(s string) string { return termsafe.String(s, 160) }

// cmdSettings prints every setting as a README table or as
// local.settings.json.example.
func cmdSettings(args []string, stdout io.Writer) error {
	mode := "--markdown"
	if len(args) > 0 {
		mode = args[0]
	}
	switch mode {
	case "--markdown":
		_, err := io.WriteString(stdout, settingsMarkdown())
		return err
	case "--example":
		_, err := io.WriteString(stdout, settingsExample())
		return err
	}
	return usageError{"settings [--markdown | --example]"}
}

func settingsMarkdown() string {
	var b strings.Builder
	b.WriteString("| Setting | Default | Meaning |\n|---|---|---|\n")
	for _, s := range config.Settings {
		def := s.Default
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, strings.ReplaceAll(s.Meaning, "|", "\\|"))
	}
	return b.String()
}

func settingsExample() string {
	vals := map[string]string{}
	for _, s := range config.Settings {
		v := s.Example
		if v == "" && !s.Secret {
			v = s.Default
		}
		vals[s.Name] = v
	}
	var b strings.Builder
	b.WriteString("{\n  \"IsEncrypted\": false,\n  \"Values\": {\n")
	for i, s := range config.Settings {
		k, _ := json.Marshal(s.Name)
		v, _ := json.Marshal(vals[s.Name])
		sep := ","
		if i == len(config.Settings)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    %s: %s%s\n", k, v, sep)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// flagError maps a flag parsing error: -h/--help is not an error.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return usageError{err.Error()}
}
