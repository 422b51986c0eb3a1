package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/sim"
)

// Pins (issue 6): a hunt-raised device alert goes through the alerts queue,
// the policy and the guards, and reaches IsolateMachine, which isolates the
// device; the hunt's digest is notified. The tenant has the sample hunting
// data but no Defender alerts, so every isolation comes from a hunt.
func TestHuntRaisedAlertIsIsolatedThroughPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tn := sim.SampleTenant(time.Now().UTC())
	tn.Alerts = nil
	st, err := startStack(ctx, stackOptions{Tenant: tn, Handler: handlerBin})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Host.Invoke(ctx, "ScheduledHunt", ""); err != nil {
		t.Fatal(err)
	}
	if err := st.Host.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := st.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.summary())
	if res.Alerts == 0 {
		t.Fatal("no hunt raised an alert")
	}
	isolated := 0
	for _, o := range res.Outcomes {
		if !strings.HasPrefix(o.Alert, "hunt-") {
			t.Errorf("decision for %s: only hunt alerts exist in this tenant", o.Alert)
		}
		if strings.HasPrefix(o.Outcome, "isolated") {
			isolated++
		}
		if o.Outcome == "notify only" && strings.HasPrefix(o.Title, "High") {
			t.Errorf("High hunt alert %s never reached IsolateMachine", o.Alert)
		}
	}
	if isolated == 0 || res.AcceptedCalls != isolated {
		t.Fatalf("isolations from hunt alerts: %d (accepted calls %d)", isolated, res.AcceptedCalls)
	}
	if res.Notified <= res.Alerts {
		t.Fatalf("notified %d for %d alerts: the hunt digests are missing", res.Notified, res.Alerts)
	}
}
