package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	isolatemachine "github.com/mdeflow/mdeflow/functions/IsolateMachine"
	"github.com/mdeflow/mdeflow/internal/localhost"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/policy"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
)

// twoInstancesPolicy is the built-in policy (same rule ids, protected tag
// and cap) with a second notification channel: a webhook, which, unlike
// the outbox (an existing .eml means delivered), is not idempotent, so a
// notification sent by both instances reaches the receiver twice.
const twoInstancesPolicy = `# handler/twoinstances_test.go: the seed flow, notified by e-mail and webhook.
version: e2e-two-instances-1
dryRun: false

protected:
  tags: [protected]

cap:
  maxIsolations: 10
  window: 1h

defaults:
  isolationType: Full
  channels: [email, webhook]

rules:
  - id: high-severity-isolate
    name: Isolate the machine of a high-severity alert
    match:
      severity: [High]
    actions:
      - isolate: {type: Full}
      - notify: {}

  - id: notify-others
    name: Notify every other alert
    actions:
      - notify: {}
`

// twoInstancesCap is the policy's isolation cap; the tenant has fewer
// machines due isolation, so the breaker must stay closed.
const twoInstancesCap = 10

// azuriteAccountKey is Azurite's well-known development account key
// (public and documented, not a secret).
const azuriteAccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

func azuriteTablesConnection(endpoint string) string {
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteAccountKey +
		";TableEndpoint=" + endpoint + ";"
}

// twoInstancesTenant: 10 machines, machine 9 tagged protected, 30 alerts.
// Machines 0-5 get three High alerts each, machines 6 and 7 one, the
// protected machine two High and one Low, machine 8 only alerts below High;
// the rest are Medium, Low and Informational alerts spread over 0-7. So 8
// machines are due isolation, each by several alerts on one of them.
func twoInstancesTenant(now time.Time) (*sim.Tenant, *e2eExpect) {
	const protectedMachine = 9
	tn := &sim.Tenant{ID: sim.DefaultTenantID}
	for i := range 10 {
		tn.Machines = append(tn.Machines, e2eMachine(400+i, now, i == protectedMachine))
	}
	add := func(machine int, severity string) {
		seq := 4000 + len(tn.Alerts)
		created := now.Add(-time.Duration(len(tn.Alerts)+1) * 37 * time.Second)
		tn.Alerts = append(tn.Alerts, e2eAlert(seq, tn.Machines[machine], severity, created))
	}
	for m := range 6 {
		for range 3 {
			add(m, mde.SeverityHigh)
		}
	}
	add(6, mde.SeverityHigh)
	add(7, mde.SeverityHigh)
	add(protectedMachine, mde.SeverityHigh)
	add(protectedMachine, mde.SeverityHigh)
	add(protectedMachine, mde.SeverityLow)
	add(8, mde.SeverityMedium)
	add(8, mde.SeverityLow)
	add(8, mde.SeverityInformational)
	others := []string{mde.SeverityMedium, mde.SeverityLow, mde.SeverityInformational}
	for i := 0; len(tn.Alerts) < 30; i++ {
		add(i%8, others[i%len(others)])
	}
	x := newExpect(tn.Machines)
	x.process(tn.Alerts...)
	return tn, x
}

// webhookReceiver counts the webhook deliveries per notification id,
// checking each signature. It answers after delay, as a real receiver
// would (a send is not instantaneous: the other instance may meet it in
// flight).
type webhookReceiver struct {
	secret []byte
	delay  time.Duration
	mu     sync.Mutex
	got    map[string]int
	bad    []string
}

func (wr *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	id := r.Header.Get(notify.HeaderNotificationID)
	time.Sleep(wr.delay)
	wr.mu.Lock()
	defer wr.mu.Unlock()
	switch {
	case err != nil:
		wr.bad = append(wr.bad, fmt.Sprintf("%s: reading body: %v", id, err))
	case r.Method != http.MethodPost:
		wr.bad = append(wr.bad, fmt.Sprintf("%s: method %s", id, r.Method))
	default:
		if err := notify.VerifyWebhookSignature(wr.secret, r.Header.Get(notify.HeaderSignature), body, time.Now(), 0); err != nil {
			wr.bad = append(wr.bad, fmt.Sprintf("%s: %v", id, err))
		}
		var p notify.WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil || p.ID != id {
			wr.bad = append(wr.bad, fmt.Sprintf("%s: payload id %q (%v)", id, p.ID, err))
		}
		wr.got[id]++
	}
	w.WriteHeader(http.StatusNoContent)
}

func (wr *webhookReceiver) counts() map[string]int {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return maps.Clone(wr.got)
}

// instance is one scaled-out instance: a local host with its handler.
type instance struct {
	Name    string
	Host    *localhost.Host
	LogPath string
	Stop    func(context.Context) error
}

// startSecondInstance starts another local host on st's app settings (same
// simulator, store, outbox, policy, secrets), with its own app folder,
// port, keys, queues and handler process, as a second Function App
// instance would have.
func startSecondInstance(ctx context.Context, st *stack, name string) (*instance, error) {
	appDir := filepath.Join(st.Dir, "app-"+name)
	if err := stageApp(st.Root, appDir, handlerBin); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	master, fnKey := randomKey(), randomKey()
	settings := maps.Clone(st.Settings)
	settings["MDEFLOW_LOCAL_QUEUE_URL"] = "http://" + addr
	settings["MDEFLOW_LOCAL_MASTER_KEY"] = master
	settings["MDEFLOW_PUBLIC_BASE_URL"] = "http://" + addr
	// The handler's own output and the host's log, apart.
	logPath := filepath.Join(st.Dir, "handler-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	hostLog, err := os.Create(filepath.Join(st.Dir, "host-"+name+".log"))
	if err != nil {
		logFile.Close()
		return nil, err
	}
	closeLogs := func() { logFile.Close(); hostLog.Close() }
	h, err := localhost.New(localhost.Options{
		AppRoot: appDir, Settings: settings, Addr: addr, MasterKey: master, FunctionKey: fnKey, DisableTimers: true,
		Logger: slog.New(slog.NewJSONHandler(hostLog, nil)), HandlerOutput: logFile,
	})
	if err != nil {
		closeLogs()
		return nil, err
	}
	var once sync.Once
	var stopErr error
	in := &instance{Name: name, Host: h, LogPath: logPath, Stop: func(ctx context.Context) error {
		once.Do(func() { stopErr = h.Stop(ctx); closeLogs() })
		return stopErr
	}}
	if err := h.Start(ctx); err != nil {
		_ = in.Stop(context.Background())
		return nil, fmt.Errorf("starting the local host %s: %w (handler log: %s)", name, err, logPath)
	}
	return in, nil
}

// Issue 4: two handler instances given the same messages at the same time
// never both isolate and never both notify.
//
// One simulator, two local hosts (each its own queues and handler process)
// whose handlers share their state in Azure Table Storage (Azurite) and
// their outbox folder, as two scaled-out instances of one Function App do.
// Every alert message is sent to both instances' alerts queues at once, so
// each alert is processed twice in parallel, once per instance: what
// at-least-once delivery looks like when a message is delivered again to
// another instance while the first still works on it. Each instance then
// runs the whole pipeline for its copy (isolation request, follow-up,
// notification), against the same store.
//
// Each fact is checked from its own source: the simulator (isolate calls),
// the shared tables (decisions, requests, audit, breaker, deliveries,
// dead-letter log), the outbox folder, a webhook receiver in the test (the
// outbox is idempotent by file name, a webhook is not), and both hosts
// (queues, dead letters). Machine actions take 2 x 200 ms and the webhook
// answers in 100 ms, so that one instance meets the other's isolation
// already done and its notification send in flight: the two double sends
// this test found (a second isolate call once the first had succeeded; a
// copy's redelivery taking over the other instance's live delivery claim)
// showed in 3-4 of 10 runs and in every run respectively.
func TestTwoInstancesSameMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with two local hosts; skipped with -short")
	}
	endpoint := os.Getenv("AZURITE_TABLE_ENDPOINT")
	if endpoint == "" {
		t.Skip("AZURITE_TABLE_ENDPOINT is not set: the two instances share Azure Table Storage; run `make test` " +
			"(it starts Azurite), or `./scripts/azurite.sh start && eval \"$(./scripts/azurite.sh env)\"` first")
	}
	now := time.Now().UTC()
	tn, x := twoInstancesTenant(now)
	due := x.dueMachines()
	if len(due) >= twoInstancesCap {
		t.Fatalf("test data: %d machines due isolation would trip the cap of %d", len(due), twoInstancesCap)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The shared store: a table prefix of this run's own, dropped at the end.
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "twoi" + hex.EncodeToString(rnd[:])
	conn := azuriteTablesConnection(endpoint)
	db, err := store.NewTables(store.TablesConfig{ConnectionString: conn, TablePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := db.DropTables(cctx); err != nil {
			t.Errorf("dropping the tables %s*: %v", prefix, err)
		}
	})

	// The webhook receiver: an independent count of what was sent.
	secret := randomKey()
	wh := &webhookReceiver{secret: []byte(secret), delay: 100 * time.Millisecond, got: map[string]int{}}
	whSrv := httptest.NewServer(wh)
	t.Cleanup(whSrv.Close)

	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(twoInstancesPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := startStack(ctx, stackOptions{
		Tenant:  tn,
		Handler: handlerBin,
		Policy:  policyFile,
		Settings: map[string]string{
			"MDEFLOW_STORE":                  "tables",
			"MDEFLOW_TABLES_CONNECTION":      conn,
			"MDEFLOW_TABLE_PREFIX":           prefix,
			"MDEFLOW_INSTANCES":              "2",
			"MDEFLOW_MDE_CALLS_PER_MINUTE":   "100000",
			"MDEFLOW_MDE_CALLS_PER_HOUR":     "6000000",
			"MDEFLOW_ACTION_FOLLOW_INTERVAL": "250ms",
			"MDEFLOW_NOTIFY_CHANNELS":        "outbox,webhook",
			"MDEFLOW_WEBHOOK_URL":            whSrv.URL + "/hook",
			"MDEFLOW_WEBHOOK_SECRET":         secret,
		},
		Sim: func(o *sim.Options) { o.DisableQuotas = true; o.ActionStep = 200 * time.Millisecond },
	})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	a := &instance{Name: "a", Host: st.Host, LogPath: st.LogPath(), Stop: st.StopHost}
	t.Cleanup(func() {
		if t.Failed() {
			st.keep = true
			t.Logf("kept the run folder (outbox; instance a: handler.log, host.log; instance b: handler-b.log, host-b.log): %s; the tables %s* are dropped",
				st.Dir, prefix)
		}
		st.Close()
	})
	b, err := startSecondInstance(ctx, st, "b")
	if err != nil {
		t.Fatalf("starting the second instance: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	instances := []*instance{a, b}

	// Every alert message to both instances at the same moment.
	type alertMsg struct {
		ID        string `json:"id"`
		MachineID string `json:"machineId"`
	}
	gate := make(chan struct{})
	var wg sync.WaitGroup
	sendErrs := make(chan error, 2*len(tn.Alerts))
	for _, al := range tn.Alerts {
		body, err := json.Marshal(alertMsg{ID: al.ID, MachineID: al.MachineID})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				sendErrs <- in.Host.Send(ctx, queue.Alerts, queue.Message{MessageID: "alert-" + al.ID,
					ContentType: "application/json", Body: body})
			}()
		}
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	close(sendErrs)
	for err := range sendErrs {
		if err != nil {
			t.Fatalf("sending an alert message: %v", err)
		}
	}
	for _, in := range instances {
		if err := in.Host.WaitIdle(ctx); err != nil {
			t.Fatalf("instance %s: waiting for the pipeline: %v (handler log: %s)", in.Name, err, in.LogPath)
		}
	}
	elapsed := time.Since(start)

	// (1) Each instance: nothing in flight, every alert processed, nothing
	// dead-lettered, as its host sees it.
	var hostLines []string
	for _, in := range instances {
		s := in.Host.Stats()
		if s.Running != 0 {
			t.Errorf("instance %s: %d invocations still running", in.Name, s.Running)
		}
		var qs []string
		for _, q := range s.Queues {
			if q.Active != 0 || q.Scheduled != 0 || q.InFlight != 0 || q.DeadLettered != 0 {
				t.Errorf("instance %s: queue %s: active=%d scheduled=%d inFlight=%d deadLettered=%d, want all 0",
					in.Name, q.Name, q.Active, q.Scheduled, q.InFlight, q.DeadLettered)
			}
			if q.Name == queue.Alerts && q.Completed != int64(len(tn.Alerts)) {
				t.Errorf("instance %s: %d alert messages completed, want %d (each instance gets every alert)", in.Name, q.Completed, len(tn.Alerts))
			}
			qs = append(qs, fmt.Sprintf("%s(completed=%d abandoned=%d)", q.Name, q.Completed, q.Abandoned))
		}
		sort.Strings(qs)
		hostLines = append(hostLines, fmt.Sprintf("%s: invocations=%d failures=%d %s", in.Name, s.Invocations, s.Failures, strings.Join(qs, " ")))
		for _, qn := range []string{queue.Alerts, queue.Isolations, queue.Actions, queue.Notifications} {
			for _, dl := range in.Host.DeadLetters(qn) {
				t.Errorf("instance %s: dead letter on %s: message %s after %d deliveries: %s: %s", in.Name, qn, dl.MessageID,
					dl.DeliveryCount, dl.DeadLetterReason, dl.DeadLetterErrorDescription)
			}
		}
	}
	for _, in := range instances {
		if err := in.Stop(ctx); err != nil {
			t.Errorf("stopping instance %s: %v", in.Name, err)
		}
	}

	rep := verifyTwoInstances(t, ctx, st, db, x, wh)
	t.Logf("%d alerts (%d High) on %d machines, %d due isolation; sent to both instances at once; idle after %s",
		len(tn.Alerts), countHigh(tn.Alerts), len(tn.Machines), len(due), elapsed.Round(10*time.Millisecond))
	t.Logf("decisions=%d requests=%d (outcomes %s) notifications=%d (.eml %d, webhook posts %d) breaker count=%d",
		rep.Decisions, rep.Requests, sortedCounts(rep.Outcomes), rep.Notifications, rep.EmlFiles, rep.WebhookPosts, rep.BreakerCount)
	t.Logf("isolate calls: accepted %d on %d machines due; refused as already pending: %v", rep.Accepted, len(due), rep.ExtraIsolateCalls)
	for _, l := range hostLines {
		t.Logf("host %s", l)
	}
	// How often the instances really met: work the other instance had
	// already done, or was doing.
	for _, in := range instances {
		var parts []string
		for _, m := range []string{
			"alert decided",
			"alert already decided; re-dispatching the recorded decision",
			"isolation accepted",
			"an isolation is already pending in Defender; following it",
			"resuming the isolation an earlier delivery started",
			"request already accepted; re-scheduling the follow-up",
			"another delivery of this request isolated the machine meanwhile; following its action",
			"request already finished; re-sending its outcome",
			"taking over an abandoned delivery claim",
		} {
			parts = append(parts, fmt.Sprintf("%q=%d", m, countLog(t, in.LogPath, m)))
		}
		t.Logf("instance %s log: %s", in.Name, strings.Join(parts, " "))
	}
}

func countHigh(as []mde.Alert) int {
	n := 0
	for _, a := range as {
		if a.Severity == mde.SeverityHigh {
			n++
		}
	}
	return n
}

// twoInstancesReport is what verifyTwoInstances counted.
type twoInstancesReport struct {
	Decisions, Requests, Notifications, EmlFiles, WebhookPosts int
	Accepted, BreakerCount                                     int
	Outcomes                                                   map[string]int
	ExtraIsolateCalls                                          map[string]int
}

// verifyTwoInstances checks the run from the shared store, the outbox
// folder, the webhook receiver and the simulator, each against what the
// tenant data calls for.
func verifyTwoInstances(t *testing.T, ctx context.Context, st *stack, db *store.TablesBackend, x *e2eExpect, wh *webhookReceiver) twoInstancesReport {
	t.Helper()
	rep := twoInstancesReport{Outcomes: map[string]int{}, ExtraIsolateCalls: map[string]int{}}
	due := x.dueMachines()

	// The handler's dead-letter log (permanent errors) is empty.
	checkNoDeadLetters(t, ctx, db)

	// Exactly one decision per alert, by the rule its severity calls for.
	rep.Decisions = checkDecisions(t, ctx, db, x)

	// One isolation request per High alert, every one done; per machine due
	// isolation exactly one request reports the isolation succeeded, the
	// others were skipped (another request holds the machine's lock); the
	// protected machine's requests were skipped as protected.
	reqs, err := db.List(ctx, isolatemachine.RequestTable, "")
	if err != nil {
		t.Fatal(err)
	}
	rep.Requests = len(reqs)
	requested := map[string]bool{}
	succeeded := map[string][]string{}
	for _, e := range reqs {
		var rs isolatemachine.RequestState
		if err := json.Unmarshal(e.Data, &rs); err != nil {
			t.Fatalf("request %s: %v", e.PartitionKey, err)
		}
		id := rs.Request.RequestID
		requested[id] = true
		if rs.State != isolatemachine.StateDone || rs.Outcome == nil {
			t.Errorf("request %s is in state %q (outcome %+v), want %q", id, rs.State, rs.Outcome, isolatemachine.StateDone)
			continue
		}
		kind := rs.Outcome.Kind
		if rs.Outcome.Guard != "" {
			kind += "/" + rs.Outcome.Guard
		}
		rep.Outcomes[kind]++
		m := rs.Request.MachineID
		switch {
		case rs.Outcome.Kind == pipeline.OutcomeSucceeded:
			succeeded[m] = append(succeeded[m], id)
		case rs.Outcome.Kind == pipeline.OutcomeSkipped && (due[m] || x.protected(m)):
		default:
			t.Errorf("request %s (machine %s, due=%v protected=%v): outcome %s (%s)", id, m, due[m], x.protected(m), kind, rs.Outcome.Reason)
		}
		if x.protected(m) && rs.Outcome.Kind == pipeline.OutcomeSkipped && rs.Outcome.Guard != policy.GuardProtected {
			t.Errorf("request %s on the protected machine was skipped by guard %q, want %q", id, rs.Outcome.Guard, policy.GuardProtected)
		}
	}
	for id, a := range x.Alerts {
		if want := a.Severity == mde.SeverityHigh; requested["iso-"+id] != want {
			t.Errorf("alert %s (%s): isolation request present=%v, want %v", id, a.Severity, requested["iso-"+id], want)
		}
	}
	for m := range x.Machines {
		if want := map[bool]int{true: 1}[due[m]]; len(succeeded[m]) != want {
			t.Errorf("machine %s (due=%v): %d requests report the isolation succeeded (%v), want %d", m, due[m], len(succeeded[m]), succeeded[m], want)
		}
	}

	// The audit: one accepted isolation per machine due, none elsewhere.
	audit, err := store.NewAudit(db).ListAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acceptedAudit := map[string][]string{}
	for _, e := range audit {
		if e.Action == pipeline.ActionIsolate && e.Outcome == pipeline.OutcomeAccepted {
			acceptedAudit[e.MachineID] = append(acceptedAudit[e.MachineID], e.RequestID)
		}
	}
	for m := range x.Machines {
		if want := map[bool]int{true: 1}[due[m]]; len(acceptedAudit[m]) != want {
			t.Errorf("machine %s (due=%v): audit has %d accepted isolations %v, want %d", m, due[m], len(acceptedAudit[m]), acceptedAudit[m], want)
		}
	}

	// The isolation cap counted each isolation once and stayed closed.
	bs, err := policy.NewBreaker(db, twoInstancesCap, time.Hour).State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep.BreakerCount = len(bs.Entries)
	if bs.Open() || len(bs.Entries) != len(due) {
		t.Errorf("breaker: state %s with %d isolations counted, want closed with %d (one per machine due)", bs.State, len(bs.Entries), len(due))
	}

	// Each notification delivered once per channel: one .eml in the
	// shared outbox, one webhook POST, one "sent" row per channel claimed
	// once.
	want := x.notifications()
	rep.Notifications = len(want)
	entries, err := os.ReadDir(st.Settings["MDEFLOW_OUTBOX_DIR"])
	if err != nil {
		t.Fatalf("reading the outbox: %v", err)
	}
	eml := map[string]int{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".eml")
		if !ok || strings.HasPrefix(id, ".tmp-") {
			t.Errorf("unexpected file in the outbox: %s", e.Name())
			continue
		}
		eml[id]++
		rep.EmlFiles++
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected notification in the outbox: %s", e.Name())
		}
	}
	posts := wh.counts()
	for id, n := range posts {
		rep.WebhookPosts += n
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected notification %q posted to the webhook %d times", id, n)
		}
	}
	wh.mu.Lock()
	for _, b := range wh.bad {
		t.Errorf("webhook receiver: %s", b)
	}
	wh.mu.Unlock()
	rows, err := db.List(ctx, notify.TableDeliveries, "")
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]map[string]deliveryRow{}
	for _, e := range rows {
		var d deliveryRow
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("delivery %s/%s: %v", e.PartitionKey, e.RowKey, err)
		}
		if _, ok := want[d.NotificationID]; !ok {
			t.Errorf("delivery record for unexpected notification %s (%s to %s)", d.NotificationID, d.State, d.Channel)
			continue
		}
		if sent[d.NotificationID] == nil {
			sent[d.NotificationID] = map[string]deliveryRow{}
		}
		sent[d.NotificationID][d.Channel] = d
	}
	for id := range want {
		if eml[id] != 1 {
			t.Errorf("notification %s: %d .eml files in the outbox, want 1", id, eml[id])
		}
		if posts[id] != 1 {
			t.Errorf("notification %s: posted %d times to the webhook, want 1", id, posts[id])
		}
		for _, ch := range []string{"outbox", "webhook"} {
			d, ok := sent[id][ch]
			switch {
			case !ok:
				t.Errorf("notification %s: no delivery record for %s", id, ch)
			case d.State != notify.StateSent || d.Attempts != 1:
				t.Errorf("notification %s to %s: state %q after %d claims (%s), want sent after 1", id, ch, d.State, d.Attempts, d.LastError)
			}
		}
		if len(sent[id]) != 2 {
			t.Errorf("notification %s: delivery records for %d channels, want 2 (outbox, webhook)", id, len(sent[id]))
		}
	}

	// The simulator: one accepted isolate call per machine due, none on
	// the others.
	for id := range x.Machines {
		total, accepted := st.Sim.IsolateCalls(id)
		rep.Accepted += accepted
		switch {
		case due[id] && accepted != 1:
			t.Errorf("machine %s is due isolation: %d isolate calls accepted (of %d), want 1; its isolations: %s",
				id, accepted, total, describeIsolations(st.Sim.Actions(), id))
		case due[id] && total > accepted:
			rep.ExtraIsolateCalls[id] = total - accepted
		case !due[id] && total != 0:
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

// describeIsolations lists a machine's isolate actions in the simulator:
// when they were created, their status, and the comment naming the alert.
func describeIsolations(acts []mde.MachineAction, machineID string) string {
	var out []string
	for _, a := range acts {
		if a.MachineID != machineID || a.Type != mde.ActionTypeIsolate {
			continue
		}
		created := "?"
		if a.CreationDateTimeUtc != nil {
			created = a.CreationDateTimeUtc.Format("15:04:05.000")
		}
		out = append(out, fmt.Sprintf("[%s created %s %s %q]", a.ID, created, a.Status, a.RequestorComment))
	}
	return strings.Join(out, " ")
}
