package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/mdeflow/mdeflow/internal/wire"
)

// cmdServe is what the Functions host runs (host.json: handler serve).
func cmdServe(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	s, err := loadSettings(getenv)
	if err != nil {
		return fmt.Errorf("invalid settings (fix them in the app settings or local.settings.json):\n%w", err)
	}
	log := newLogger(stdout, s.LogLevel)
	addr, err := wire.ListenAddr(getenv)
	if err != nil {
		return err
	}
	root := getenv("FUNCTIONS_APP_ROOT_PATH")
	if root == "" {
		root, _ = os.Getwd()
	}
	app, err := buildApp(ctx, s, log, root)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	defer app.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	log.Info("mdeflow handler serving", "addr", addr, "functions", functionNames(), "policy_version", app.Policy.Version,
		"dry_run", s.DryRun, "store", s.Store, "queue", s.Queue, "alert_source", s.AlertSource)
	return app.server().Serve(ctx, l)
}
