package main

import (
	"context"
	"crypto/sha1" // #nosec G505 -- deterministic ids for made-up test data
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	enrichalert "github.com/mdeflow/mdeflow/functions/EnrichAlert"
	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/localhost"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Rule ids of the built-in policy (policy.Default), which the end-to-end
// tests run with.
const (
	ruleHighIsolate  = "high-severity-isolate"
	ruleNotifyOthers = "notify-others"
)

// e2eMachine is machine number i of a synthetic tenant: a 40-hex id derived
// from i, a unique host name, a platform that supports Full isolation, and
// the "protected" tag when asked.
func e2eMachine(i int, now time.Time, protected bool) mde.Machine {
	sum := sha1.Sum([]byte(fmt.Sprintf("mdeflow-e2e/machine/%d", i))) // #nosec G401 -- test ids
	platforms := []struct {
		os, version string
		build       int64
	}{
		{"Windows11", "23H2", 22631}, {"Windows10", "22H2", 19045}, {"Windows11", "24H2", 26100},
		{"WindowsServer2022", "21H2", 20348}, {"Linux", "Ubuntu 22.04", 0},
	}
	p := platforms[i%len(platforms)]
	var build *int64
	if p.build > 0 {
		b := p.build
		build = &b
	}
	first, last := now.Add(-90*24*time.Hour).Truncate(time.Second), now.Add(-5*time.Minute).Truncate(time.Second)
	tags := []string{}
	group := "Workstations"
	if protected {
		tags = append(tags, policy.ProtectedTag, "tier0")
		group = "Tier0-Servers"
	}
	name := fmt.Sprintf("ws-e2e-%03d.corp.example.com", i)
	if protected {
		name = fmt.Sprintf("srv-e2e-%03d.corp.example.com", i)
	}
	return mde.Machine{
		ID:               hex.EncodeToString(sum[:]),
		ComputerDNSName:  name,
		FirstSeen:        &first,
		LastSeen:         &last,
		OSPlatform:       p.os,
		OSProcessor:      "x64",
		OSArchitecture:   "64-bit",
		Version:          p.version,
		OSBuild:          build,
		LastIPAddress:    fmt.Sprintf("10.50.%d.%d", i/250, i%250+1),
		HealthStatus:     "Active",
		OnboardingStatus: "Onboarded",
		RbacGroupName:    &group,
		MachineTags:      tags,
	}
}

// e2eAlert is alert number seq of a synthetic tenant, on machine m, with an
// id shaped like Defender's (da<18 digits>_<digits>).
func e2eAlert(seq int, m mde.Machine, severity string, created time.Time) mde.Alert {
	sum := sha1.Sum([]byte(fmt.Sprintf("mdeflow-e2e/alert/%d", seq))) // #nosec G401 -- test ids
	id := fmt.Sprintf("da%018d_%d", 638800000000000000+uint64(seq)*7919, binary.BigEndian.Uint32(sum[:4])>>1)
	created = created.UTC().Truncate(time.Millisecond)
	first, last, upd := created.Add(-2*time.Minute), created.Add(-time.Minute), created.Add(2*time.Second)
	titles := map[string][]string{
		mde.SeverityHigh:          {"Ransomware behavior detected", "Suspicious access to LSASS service", "Credential dumping activity"},
		mde.SeverityMedium:        {"Suspicious PowerShell command line", "Suspicious scheduled task", "Anomalous remote logon"},
		mde.SeverityLow:           {"Suspicious 'net.exe' usage", "Unusual file download", "Possible port scan"},
		mde.SeverityInformational: {"Test alert", "Potentially unwanted application", "Suspicious URL clicked"},
	}[severity]
	return mde.Alert{
		ID:                id,
		Severity:          severity,
		Status:            "New",
		DetectionSource:   "WindowsDefenderAtp",
		DetectorID:        fmt.Sprintf("00000000-0000-4000-8000-%012d", seq%len(titles)),
		Category:          "SuspiciousActivity",
		Title:             titles[seq%len(titles)],
		Description:       fmt.Sprintf("Synthetic alert %d of the end-to-end tests.", seq),
		AlertCreationTime: &created,
		FirstEventTime:    &first,
		LastEventTime:     &last,
		LastUpdateTime:    &upd,
		MachineID:         m.ID,
		ComputerDNSName:   m.ComputerDNSName,
		RbacGroupName:     m.RbacGroupName,
		AadTenantID:       sim.DefaultTenantID,
		MitreTechniques:   []string{"T1059.001"},
		Comments:          []mde.AlertComment{},
		Evidence:          []mde.Evidence{},
	}
}

// e2eExpect is what a run must have done, derived from the tenant data
// alone (never from what the handler recorded).
type e2eExpect struct {
	// Machines of the tenant, by id.
	Machines map[string]mde.Machine
	// Alerts that must be processed exactly once, by id.
	Alerts map[string]mde.Alert
	// Ignored alerts must leave no trace (no decision, no notification).
	Ignored map[string]mde.Alert
}

func newExpect(machines []mde.Machine) *e2eExpect {
	x := &e2eExpect{Machines: map[string]mde.Machine{}, Alerts: map[string]mde.Alert{}, Ignored: map[string]mde.Alert{}}
	for _, m := range machines {
		x.Machines[m.ID] = m
	}
	return x
}

func (x *e2eExpect) process(as ...mde.Alert) {
	for _, a := range as {
		x.Alerts[a.ID] = a
	}
}

func (x *e2eExpect) ignore(as ...mde.Alert) {
	for _, a := range as {
		x.Ignored[a.ID] = a
	}
}

func (x *e2eExpect) protected(machineID string) bool {
	for _, tag := range x.Machines[machineID].MachineTags {
		if strings.EqualFold(tag, policy.ProtectedTag) {
			return true
		}
	}
	return false
}

// dueMachines are the machines the built-in policy must isolate: a High
// alert among the processed ones, and not protected.
func (x *e2eExpect) dueMachines() map[string]bool {
	due := map[string]bool{}
	for _, a := range x.Alerts {
		if a.Severity == mde.SeverityHigh && !x.protected(a.MachineID) {
			due[a.MachineID] = true
		}
	}
	return due
}

// notifications maps each expected notification id to its alert: a High
// alert becomes an isolation request whose outcome is notified
// ("n-iso-iso-<id>"), any other alert is notified as such ("n-alert-<id>").
func (x *e2eExpect) notifications() map[string]string {
	out := map[string]string{}
	for id, a := range x.Alerts {
		if a.Severity == mde.SeverityHigh {
			out["n-iso-iso-"+id] = id
		} else {
			out["n-alert-"+id] = id
		}
	}
	return out
}

// e2eReport is what verifyE2E counted.
type e2eReport struct {
	Decisions, Requests, Notifications int
	DueMachines, IsolatedMachines      int
	// ReportedIsolated counts the due machines whose isolation request
	// outcome says "succeeded" (followed to the final state).
	ReportedIsolated int
	// Guards counts request outcomes by kind/guard.
	Guards map[string]int
	// Reclaimed are deliveries whose claim was taken more than once (a
	// retry after a crash or a failure): the outbox channel is idempotent
	// (an existing file means delivered), other channels would have been
	// called again.
	Reclaimed []string
	// ExtraIsolateCalls are isolate POSTs beyond the accepted one (rejected
	// as ActiveRequestAlreadyExists), per machine.
	ExtraIsolateCalls map[string]int
	// TempLeftovers are temporary files of interrupted outbox writes.
	TempLeftovers int
	Stats         string
}

// deliveryRow mirrors the JSON of a notify.TableDeliveries row.
type deliveryRow struct {
	NotificationID string `json:"notificationId"`
	Channel        string `json:"channel"`
	State          string `json:"state"`
	Attempts       int    `json:"attempts"`
	LastError      string `json:"lastError"`
}

// verifyE2E checks a finished run, each fact from its own source of truth:
// the host (queues, dead letters), the handler's store (decisions, requests,
// deliveries, dead-letter log), the outbox folder, and the simulator
// (isolate calls, machine actions). It stops the host (to open the store).
func verifyE2E(t *testing.T, ctx context.Context, st *stack, x *e2eExpect) e2eReport {
	t.Helper()
	rep := e2eReport{Guards: map[string]int{}, ExtraIsolateCalls: map[string]int{}}

	// (d) Nothing in flight, nothing dead-lettered, as the host sees it.
	stats := st.Host.Stats()
	if stats.Running != 0 {
		t.Errorf("host: %d invocations still running", stats.Running)
	}
	var qs []string
	for _, q := range stats.Queues {
		qs = append(qs, fmt.Sprintf("%s(completed=%d abandoned=%d dups=%d)", q.Name, q.Completed, q.Abandoned, q.Duplicates))
		if q.Active != 0 || q.Scheduled != 0 || q.InFlight != 0 || q.DeadLettered != 0 {
			t.Errorf("queue %s: active=%d scheduled=%d inFlight=%d deadLettered=%d, want all 0",
				q.Name, q.Active, q.Scheduled, q.InFlight, q.DeadLettered)
		}
	}
	sort.Strings(qs)
	rep.Stats = fmt.Sprintf("invocations=%d failures=%d restarts=%d %s", stats.Invocations, stats.Failures, stats.Restarts, strings.Join(qs, " "))
	for _, q := range []string{queue.Alerts, queue.Isolations, queue.Actions, queue.Notifications} {
		for _, dl := range st.Host.DeadLetters(q) {
			t.Errorf("dead letter on %s: message %s after %d deliveries: %s: %s", q, dl.MessageID, dl.DeliveryCount,
				dl.DeadLetterReason, dl.DeadLetterErrorDescription)
		}
	}

	if err := st.StopHost(ctx); err != nil {
		t.Fatalf("stopping the host: %v", err)
	}
	db, err := store.OpenBolt(st.Settings["MDEFLOW_STORE_PATH"])
	if err != nil {
		t.Fatalf("opening the handler's store: %v", err)
	}
	defer db.Close()

	// The handler's own dead-letter log (permanent errors).
	checkNoDeadLetters(t, ctx, db)

	// (a) One decision per alert, by the policy the severity calls for.
	rep.Decisions = checkDecisions(t, ctx, db, x)

	// (d) Every isolation request finished; one request per High alert.
	reqs, err := db.List(ctx, isolatemachine.RequestTable, "")
	if err != nil {
		t.Fatal(err)
	}
	rep.Requests = len(reqs)
	requested := map[string]bool{}
	succeeded := map[string][]string{} // machine -> requests whose isolation succeeded
	for _, e := range reqs {
		var rs isolatemachine.RequestState
		if err := json.Unmarshal(e.Data, &rs); err != nil {
			t.Fatalf("request %s: %v", e.PartitionKey, err)
		}
		requested[rs.Request.RequestID] = true
		if rs.State != isolatemachine.StateDone || rs.Outcome == nil {
			t.Errorf("request %s is in state %q (outcome %+v), want %q", rs.Request.RequestID, rs.State, rs.Outcome, isolatemachine.StateDone)
			continue
		}
		kind := rs.Outcome.Kind
		if rs.Outcome.Guard != "" {
			kind += "/" + rs.Outcome.Guard
		}
		rep.Guards[kind]++
		if _, iso := rs.Request.Decision.Has(pipeline.ActionIsolate); iso && rs.Outcome.Kind == pipeline.OutcomeSucceeded {
			rep.ReportedIsolated++
			succeeded[rs.Request.MachineID] = append(succeeded[rs.Request.MachineID], rs.Request.RequestID)
		}
	}
	for id, a := range x.Alerts {
		if want := a.Severity == mde.SeverityHigh; requested["iso-"+id] != want {
			t.Errorf("alert %s (%s): isolation request present=%v, want %v", id, a.Severity, requested["iso-"+id], want)
		}
	}

	// (c) Every notification in the outbox once, and recorded as sent once.
	want := x.notifications()
	entries, err := os.ReadDir(st.Settings["MDEFLOW_OUTBOX_DIR"])
	if err != nil {
		t.Fatalf("reading the outbox: %v", err)
	}
	got := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			// A process killed mid-write leaves its temporary file: harmless
			// as long as nothing takes it for a message.
			if strings.HasSuffix(name, ".eml") {
				t.Errorf("outbox holds a leftover temporary file %s: a pickup relay matching *.eml would send it", name)
			}
			rep.TempLeftovers++
			continue
		}
		id, ok := strings.CutSuffix(name, ".eml")
		if !ok {
			t.Errorf("unexpected file in the outbox: %s", name)
			continue
		}
		got[id] = true
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected notification in the outbox: %s", name)
		}
	}
	rep.Notifications = len(got)
	for id := range want {
		if !got[id] {
			t.Errorf("notification %s.eml is missing from the outbox", id)
		}
	}
	rows, err := db.List(ctx, notify.TableDeliveries, "")
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]int{}
	for _, e := range rows {
		var d deliveryRow
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("delivery %s/%s: %v", e.PartitionKey, e.RowKey, err)
		}
		if _, ok := want[d.NotificationID]; !ok {
			t.Errorf("delivery record for unexpected notification %s (%s)", d.NotificationID, d.State)
			continue
		}
		if d.Channel != "outbox" || d.State != notify.StateSent {
			t.Errorf("delivery of %s to %s is %q (%s), want outbox/sent", d.NotificationID, d.Channel, d.State, d.LastError)
			continue
		}
		sent[d.NotificationID]++
		if d.Attempts > 1 {
			rep.Reclaimed = append(rep.Reclaimed, fmt.Sprintf("%s(%d)", d.NotificationID, d.Attempts))
		}
	}
	for id := range want {
		if sent[id] != 1 {
			t.Errorf("notification %s has %d sent delivery records, want 1", id, sent[id])
		}
	}
	sort.Strings(rep.Reclaimed)

	// (b) One accepted isolate call per machine due isolation, none elsewhere.
	due := x.dueMachines()
	rep.DueMachines = len(due)
	for id := range x.Machines {
		total, accepted := st.Sim.IsolateCalls(id)
		switch {
		case due[id] && accepted != 1:
			t.Errorf("machine %s is due isolation: %d isolate calls accepted (of %d), want 1", id, accepted, total)
		case due[id]:
			rep.IsolatedMachines++
			// The request that isolated it followed the action to its end
			// and says so (outcome, audit, notification).
			if len(succeeded[id]) != 1 {
				t.Errorf("machine %s was isolated, but %d requests report the isolation as succeeded (%v), want 1",
					id, len(succeeded[id]), succeeded[id])
			}
			if total > accepted {
				rep.ExtraIsolateCalls[id] = total - accepted
			}
		case total != 0:
			t.Errorf("machine %s must not be isolated (protected=%v): %d isolate calls", id, x.protected(id), total)
		}
	}
	for _, a := range st.Sim.Actions() {
		if a.Type == mde.ActionTypeIsolate && !due[a.MachineID] {
			t.Errorf("isolate action %s on machine %s, which is not due isolation", a.ID, a.MachineID)
		}
	}
	return rep
}

// pipelineBusy reports whether the host still has work: an invocation in
// progress or a message on a consumed queue.
func pipelineBusy(s localhost.Stats) bool {
	if s.Running > 0 {
		return true
	}
	for _, q := range s.Queues {
		if q.Consumed && q.Active+q.Scheduled+q.InFlight > 0 {
			return true
		}
	}
	return false
}

// waitHandlerRunning waits until the host has launched a handler after
// launches and it answers.
func waitHandlerRunning(ctx context.Context, st *stack, launches int) error {
	for {
		s := st.Host.Stats()
		if s.Launches > launches && s.HandlerState == "Running" {
			return nil
		}
		if err := st.Host.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the handler restart (state %s, launches %d): %w", s.HandlerState, s.Launches, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkDecisions checks that every expected alert has exactly one decision,
// by the rule its severity calls for and on its own machine, and that no
// ignored or unknown alert was decided. It returns the number of decisions.
func checkDecisions(t *testing.T, ctx context.Context, db store.Backend, x *e2eExpect) int {
	t.Helper()
	decisions, err := db.List(ctx, enrichalert.DecisionTable, "")
	if err != nil {
		t.Fatal(err)
	}
	decided := map[string]int{}
	for _, e := range decisions {
		var r enrichalert.Record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			t.Fatalf("decision %s: %v", e.PartitionKey, err)
		}
		id := r.Decision.AlertID
		if e.PartitionKey != store.EscapeKey(id) || e.RowKey != store.EscapeKey(id) {
			t.Errorf("decision of %s stored under %s/%s", id, e.PartitionKey, e.RowKey)
		}
		decided[id]++
		a, ok := x.Alerts[id]
		switch {
		case x.Ignored[id].ID != "":
			t.Errorf("alert %s was processed but lies before checkpoint-overlap and must not be", id)
			continue
		case !ok:
			t.Errorf("decision for unknown alert %s", id)
			continue
		}
		want := ruleNotifyOthers
		if a.Severity == mde.SeverityHigh {
			want = ruleHighIsolate
		}
		if r.Decision.RuleID != want || r.Decision.MachineID != a.MachineID {
			t.Errorf("alert %s (%s on %s): decision rule %q machine %s, want rule %q", id, a.Severity, a.MachineID,
				r.Decision.RuleID, r.Decision.MachineID, want)
		}
	}
	for id := range x.Alerts {
		if decided[id] != 1 {
			t.Errorf("alert %s has %d decisions, want 1", id, decided[id])
		}
	}
	return len(decisions)
}

// checkNoDeadLetters fails the test for every entry of the handler's own
// dead-letter log (permanent errors).
func checkNoDeadLetters(t *testing.T, ctx context.Context, db store.Backend) {
	t.Helper()
	dls, err := db.List(ctx, fn.DeadLetterTable, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dls {
		t.Errorf("dead-letter log: %s", e.Data)
	}
}
