package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	enrichalert "github.com/mdeflow/mdeflow/functions/EnrichAlert"
	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
	"github.com/mdeflow/mdeflow/internal/termsafe"
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
	// PendingApproval are isolations waiting for an approver.
	PendingApproval             int
	IsolateCalls, AcceptedCalls int
	Outcomes                    []outcomeLine
	Dir                         string
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
		return flagError(err)
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
	var tenant *sim.Tenant
	if o.Alerts != "" {
		if tenant, err = sim.LoadAlertsFile(o.Alerts); err != nil {
			return res, fmt.Errorf("--alerts: %w", err)
		}
	}
	var handlerOut io.Writer
	if o.Verbose {
		handlerOut = stdout
	}
	st, err := startStack(ctx, stackOptions{Tenant: tenant, Source: o.Source, Policy: o.Policy, Hunts: o.Hunts,
		DryRun: o.DryRun, Handler: o.Handler, Settings: o.Settings, Keep: o.Keep, HandlerOutput: handlerOut})
	if err != nil {
		return res, err
	}
	defer st.Close()
	fmt.Fprintf(stdout, "mdeflow demo: starting from clean state in %s\n", st.Dir)
	fmt.Fprintf(stdout, "simulator: %s (%d alerts, %d machines)\n", st.Sim.URL(), len(st.Tenant.Alerts), len(st.Tenant.Machines))
	fmt.Fprintf(stdout, "local host: %s (handler process launched per host.json)\n", st.Host.URL())

	// One poll, then let the queues drain: enrich -> isolate -> follow -> notify.
	if err := st.Host.Invoke(ctx, "OnNewAlert", ""); err != nil {
		return res, fmt.Errorf("firing OnNewAlert: %w", err)
	}
	if o.RunHunts {
		if err := st.Host.Invoke(ctx, "ScheduledHunt", ""); err != nil {
			return res, fmt.Errorf("firing ScheduledHunt: %w", err)
		}
	}
	if err := st.Settle(ctx); err != nil {
		st.keep = true
		return res, fmt.Errorf("waiting for the pipeline to finish: %w (kept for inspection: %s, handler log %s)", err, st.Dir, st.LogPath())
	}
	res, err = st.Collect(ctx)
	if err != nil {
		st.keep = true
		return res, fmt.Errorf("%w (kept for inspection: %s)", err, st.Dir)
	}
	printOutcomes(stdout, res)
	if o.Keep {
		fmt.Fprintf(stdout, "kept: %s (state.db, outbox/*.eml, handler.log, host.log)\n", st.Dir)
	}
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
		case pipeline.OutcomePendingApproval:
			res.PendingApproval++
			desc = "waiting for approval"
			if rs.Approval != nil {
				desc += " (approve: " + rs.Approval.ApproveURL + ")"
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
		// Titles and outcome reasons come from the (replayed) alerts.
		fmt.Fprintf(w, "  %-34s %-12s %-62s -> %s\n", termsafe.String(l.Alert, 130), termsafe.String(l.Rule, 64), termsafe.String(l.Title, 60), termsafe.String(l.Outcome, 0))
	}
	fmt.Fprintf(w, "isolate calls to Defender: %d (accepted %d)\n", res.IsolateCalls, res.AcceptedCalls)
	if res.PendingApproval > 0 {
		fmt.Fprintf(w, "waiting for approval: %d (the approval e-mails in the outbox carry the links; run with --keep to read them)\n", res.PendingApproval)
	}
}
