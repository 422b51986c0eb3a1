package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mdeflow/mdeflow/internal/sim"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Pins: the README settings table and local.settings.json.example are
// generated from internal/config and must not drift from it.
func TestSettingsDocsInSync(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), settingsMarkdown()) {
		t.Error("README.md settings table is stale: regenerate with `go run ./handler settings --markdown`")
	}
	example, err := os.ReadFile("../local.settings.json.example")
	if err != nil {
		t.Fatal(err)
	}
	if string(example) != settingsExample() {
		t.Error("local.settings.json.example is stale: regenerate with `go run ./handler settings --example > local.settings.json.example`")
	}
}

// Pins: every function folder has a handler and every handler a folder.
func TestFunctionsMatchFolders(t *testing.T) {
	dirs, err := filepath.Glob("../functions/*/function.json")
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, d := range dirs {
		folders = append(folders, filepath.Base(filepath.Dir(d)))
	}
	names := functionNames()
	sort.Strings(folders)
	sort.Strings(names)
	if strings.Join(folders, ",") != strings.Join(names, ",") {
		t.Fatalf("function folders %v != served functions %v", folders, names)
	}
}

// Pins: a bad setting stops start-up with a message naming it, and every
// problem is reported at once.
func TestBadSettingsNameTheSetting(t *testing.T) {
	_, err := loadSettings(env(map[string]string{
		"MDEFLOW_QUEUE":                  "kafka",
		"MDEFLOW_POLL_OVERLAP":           "ten minutes",
		"MDEFLOW_STORE":                  "embedded",
		"MDEFLOW_APPROVAL_SECRET":        "short",
		"MDEFLOW_NOTIFY_CHANNELS":        "outbox,pager",
		"MDEFLOW_MDE_BASE_URL":           "http://api.securitycenter.microsoft.com",
		"MDEFLOW_ACTION_FOLLOW_INTERVAL": "0s",
	}))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, name := range []string{"MDEFLOW_QUEUE", "MDEFLOW_POLL_OVERLAP", "MDEFLOW_APPROVAL_SECRET",
		"MDEFLOW_NOTIFY_CHANNELS", "MDEFLOW_MDE_BASE_URL", "MDEFLOW_ACTION_FOLLOW_INTERVAL"} {
		if !strings.Contains(err.Error(), "setting "+name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestServeRefusesBadSettings(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"serve"}, env(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "7777",
		"MDEFLOW_QUEUE": "servicebus"}), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "setting ServiceBusConnection") {
		t.Fatalf("err = %v, want it to name ServiceBusConnection", err)
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, env(nil), &out, &out)
	var ue usageError
	if err == nil || !strings.Contains(out.String(), "usage:") || !asUsage(err, &ue) {
		t.Fatalf("err = %v, output %q", err, out.String())
	}
}

func asUsage(err error, ue *usageError) bool {
	u, ok := err.(usageError)
	*ue = u
	return ok
}

// Pins (issue 3): `check` decodes the token's roles and names every role
// that an enabled feature needs and the token lacks, with the feature.
func TestCheckReportsMissingIsolateRole(t *testing.T) {
	var roles []string
	for _, r := range sim.AllRoles {
		if r != "Machine.Isolate" {
			roles = append(roles, r)
		}
	}
	const clientID, secret = "11111111-2222-3333-4444-555555555555", "check-test-secret"
	sv, err := sim.New(sim.Options{Apps: []sim.App{{ClientID: clientID, ClientSecret: secret, Roles: roles}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sv.Start(); err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, sv.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"MDEFLOW_QUEUE": "local", "MDEFLOW_LOCAL_QUEUE_URL": "http://127.0.0.1:1", "MDEFLOW_LOCAL_MASTER_KEY": "k",
		"MDEFLOW_STORE": "embedded", "MDEFLOW_STORE_PATH": filepath.Join(dir, "s.db"),
		"MDEFLOW_CLOUD": "custom", "MDEFLOW_MDE_BASE_URL": sv.URL(), "MDEFLOW_GRAPH_BASE_URL": sv.URL() + "/v1.0",
		"MDEFLOW_MDE_SCOPE": "https://api.securitycenter.microsoft.com/.default", "MDEFLOW_GRAPH_SCOPE": "https://graph.microsoft.com/.default",
		"MDEFLOW_AUTHORITY_HOST": sv.AuthorityHost(), "MDEFLOW_EXTRA_CA_FILE": ca,
		"MDEFLOW_CREDENTIAL": "secret", "AZURE_TENANT_ID": sv.TenantID(), "AZURE_CLIENT_ID": clientID, "AZURE_CLIENT_SECRET": secret,
		"MDEFLOW_HUNT_DIR": filepath.Join(dir, "none"),
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"check"}, env(settings), &out, &out)
	t.Logf("check output:\n%s", out.String())
	if err == nil {
		t.Fatal("check passed with a token lacking Machine.Isolate")
	}
	if !strings.Contains(out.String(), "Machine.Isolate") || !strings.Contains(strings.ToLower(out.String()), "isolat") {
		t.Fatalf("output does not name the missing role and its feature:\n%s", out.String())
	}
	if strings.Contains(out.String(), secret) {
		t.Fatal("check printed the client secret")
	}
}
