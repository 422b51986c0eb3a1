// Command handler is mdeflow: one Go custom-handler binary for Azure
// Functions, plus the tools around it (demo, local host, checks).
//
// Under the Functions host it serves every function on
// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT ("serve", the default when that
// variable is set). main is the only composition root: settings -> clients
// -> functions -> server, all in this package.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ue usageError
		fmt.Fprintln(os.Stderr, "mdeflow:", err)
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

const usage = `mdeflow: automated Microsoft Defender for Endpoint response on Azure Functions

usage: handler <command> [flags]

commands:
  serve                 serve the functions (what the Functions host runs; the default
                        when FUNCTIONS_CUSTOMHANDLER_PORT is set)
  demo                  run the whole pipeline on the built-in sample tenant through the
                        local host and the simulator; no Azure needed (about 30 s: the
                        client keeps within Defender's 100 calls/minute quotas)
                          --alerts FILE        seed from an MDE or Graph alerts page instead
                          --source mde|graph   alert source (default mde)
                          --policy FILE        response policy (default: built-in)
                          --hunt               also run ScheduledHunt once
                          --hunts DIR          hunt catalog (default examples/hunts)
                          --dry-run            decide and notify, isolate nothing
                          --keep               keep the working folder (state, outbox, logs)
                          --timeout D          give up after D (default 4m)
                          -v                   show the handler's logs
  localhost [--app DIR] [--addr HOST:PORT]
                        the local Functions host for an app folder built by make app
                        (like func start); settings from DIR/local.settings.json
  sim [--alerts FILE] [--ca FILE]
                        run the Defender/Entra/Graph simulator on loopback
  check [--offline]     validate settings, policy and hunts; report missing API roles
                        (--offline: no token requests)
  policy check FILE     validate a policy file
  policy test --alert FILE [--machine FILE] [--policy FILE]
                        show which rule fires and what would happen; calls nothing
  hunts check DIR       report which hunt files can run, and why not
  deadletters list | resubmit [--id ID] | resubmit --queue Q --seq N
                        list dead-lettered messages (mdeflow's log and the broker's
                        dead-letter queues), or send them back
  settings [--markdown | --example]
                        print every setting (README table / local.settings.json.example)
`

// run is main without the process: testable wiring.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	} else if getenv("FUNCTIONS_CUSTOMHANDLER_PORT") != "" || getenv("FUNCTIONS_HTTPWORKER_PORT") != "" {
		cmd = "serve"
	}
	switch cmd {
	case "serve":
		return cmdServe(ctx, args, getenv, stdout)
	case "demo":
		return cmdDemo(ctx, args, getenv, stdout, stderr)
	case "localhost":
		return cmdLocalhost(ctx, args, getenv, stdout, stderr)
	case "sim":
		return cmdSim(ctx, args, stdout, stderr)
	case "check":
		return cmdCheck(ctx, args, getenv, stdout)
	case "policy":
		return cmdPolicy(args, stdout)
	case "hunts":
		return cmdHunts(args, getenv, stdout)
	case "deadletters":
		return cmdDeadLetters(ctx, args, getenv, stdout)
	case "settings":
		return cmdSettings(args, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "":
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// newLogger is the JSON logger on stdout: the Functions host logs stderr
// lines as errors, so informational logs must not go there.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
