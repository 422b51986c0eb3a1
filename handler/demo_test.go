package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/testutil"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/sim"
)

// handlerBin is the handler built once for the end-to-end tests, so that
// the local host launches it as a separate process exactly as host.json
// describes.
var handlerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mdeflow-handler-test-")
	if err != nil {
		panic(err)
	}
	handlerBin = filepath.Join(dir, "handler")
	cmd := exec.Command("go", "build", "-o", handlerBin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building the handler: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func publicData(t *testing.T, name string) string { return testutil.PublicData(t, name) }

func demo(t *testing.T, o demoOptions) demoResult {
	t.Helper()
	o.Handler = handlerBin
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Source == "" {
		o.Source = "mde"
	}
	if o.Hunts == "" {
		o.Hunts = "examples/hunts"
	}
	var out bytes.Buffer
	res, err := runDemo(context.Background(), o, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("%s%s", out.String(), res.summary())
	return res
}

// expected derives the outcome of the default policy from the tenant's
// data: every High alert on an unprotected machine leads to one isolation
// per machine; the other High alerts are skipped; every alert notifies.
func expected(tn *sim.Tenant) (alerts, isolated, skipped int) {
	machines := map[string]mde.Machine{}
	for _, m := range tn.Machines {
		machines[m.ID] = m
	}
	isolatedMachines := map[string]bool{}
	high := 0
	for _, a := range tn.Alerts {
		if a.Severity != mde.SeverityHigh {
			continue
		}
		high++
		protected := false
		for _, tag := range machines[a.MachineID].MachineTags {
			if strings.EqualFold(tag, "protected") {
				protected = true
			}
		}
		if !protected {
			isolatedMachines[a.MachineID] = true
		}
	}
	return len(tn.Alerts), len(isolatedMachines), high - len(isolatedMachines)
}

// The main job: the sample tenant through the local host, the wire
// protocol and the handler process; several High alerts on one machine
// lead to one isolate call; a protected server is never isolated.
func TestDemoSampleTenantEndToEnd(t *testing.T) {
	res := demo(t, demoOptions{})
	alerts, isolated, skipped := expected(sim.SampleTenant(time.Now()))
	if res.Alerts != alerts || res.Isolated != isolated || res.Skipped != skipped || res.Notified != alerts || res.DeadLettered != 0 {
		t.Fatalf("got %s; want alerts=%d isolated=%d skipped=%d notified=%d deadlettered=0",
			res.summary(), alerts, isolated, skipped, alerts)
	}
	if res.IsolateCalls != isolated || res.AcceptedCalls != isolated {
		t.Fatalf("isolate calls %d (accepted %d), want exactly one per isolated machine (%d)", res.IsolateCalls, res.AcceptedCalls, isolated)
	}
	// A second run starts from clean state and decides the same.
	again := demo(t, demoOptions{})
	if again.summary() != res.summary() {
		t.Fatalf("second run %s differs from first %s", again.summary(), res.summary())
	}
}

func TestDemoReplaysPublicMDEAlert(t *testing.T) {
	res := demo(t, demoOptions{Alerts: publicData(t, "msdocs_mde_get-alerts_example2_response.json")})
	if res.Alerts != 1 || res.Notified != 1 || res.DeadLettered != 0 {
		t.Fatalf("got %s, want alerts=1 notified=1", res.summary())
	}
}

func TestDemoGraphSourceWithPublicGraphAlert(t *testing.T) {
	res := demo(t, demoOptions{Source: "graph", Alerts: publicData(t, "graphdocs_security_list-alerts_v2_response.json")})
	if res.Alerts != 1 || res.Notified != 1 || res.DeadLettered != 0 {
		t.Fatalf("got %s, want alerts=1 notified=1", res.summary())
	}
}

func TestDemoDryRunIsolatesNothing(t *testing.T) {
	res := demo(t, demoOptions{DryRun: true})
	if res.IsolateCalls != 0 || res.Isolated != 0 {
		t.Fatalf("dry run made %d isolate calls (%s)", res.IsolateCalls, res.summary())
	}
	if res.Skipped == 0 {
		t.Fatalf("dry run should report would-isolate outcomes as skipped: %s", res.summary())
	}
}
