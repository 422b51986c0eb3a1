package hunt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/store"
)

// event is one simulated DeviceProcessEvents row.
type event struct {
	at      time.Time
	device  string
	file    string
	cmd     string
	report  int64
	cpuSecs int // Stats "total cpu" to return with the response
}

// fakeHunting answers like advanced hunting over a list of events: a query
// sees the events of the last period before the fake's clock. It counts
// calls and can fail queries by hunt query text.
type fakeHunting struct {
	mu     sync.Mutex
	now    time.Time
	events []event
	calls  map[string]int
	fail   map[string]error // query substring -> error
	delay  time.Duration
	cpu    time.Duration
}

func newFakeHunting(now time.Time) *fakeHunting {
	return &fakeHunting{now: now, calls: map[string]int{}, fail: map[string]error{}}
}

func (f *fakeHunting) setNow(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

func (f *fakeHunting) add(evs ...event) {
	f.mu.Lock()
	f.events = append(f.events, evs...)
	f.mu.Unlock()
}

func (f *fakeHunting) count(querySubstr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for q, c := range f.calls {
		if strings.Contains(q, querySubstr) {
			n += c
		}
	}
	return n
}

func (f *fakeHunting) Run(ctx context.Context, query string, period time.Duration) (json.RawMessage, error) {
	f.mu.Lock()
	f.calls[query]++
	delay := f.delay
	var failErr error
	for sub, err := range f.fail {
		if strings.Contains(query, sub) {
			failErr = err
		}
	}
	now := f.now
	var rows []map[string]any
	for _, e := range f.events {
		if e.at.After(now.Add(-period)) && !e.at.After(now) && strings.Contains(query, e.file) {
			rows = append(rows, map[string]any{
				"Timestamp": e.at.Format(time.RFC3339Nano), "DeviceId": e.device,
				"DeviceName": "host-" + e.device[:4] + ".contoso.local", "FileName": e.file,
				"ProcessCommandLine": e.cmd, "ReportId": e.report,
			})
		}
	}
	cpu := f.cpu
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if failErr != nil {
		return nil, failErr
	}
	body := map[string]any{
		"Schema": []map[string]string{
			{"Name": "Timestamp", "Type": "DateTime"}, {"Name": "DeviceId", "Type": "String"},
			{"Name": "DeviceName", "Type": "String"}, {"Name": "FileName", "Type": "String"},
			{"Name": "ProcessCommandLine", "Type": "String"}, {"Name": "ReportId", "Type": "Int64"},
		},
		"Results": rows,
	}
	if rows == nil {
		body["Results"] = []any{}
	}
	if cpu > 0 {
		h, m, s := int(cpu.Hours()), int(cpu.Minutes())%60, int(cpu.Seconds())%60
		body["Stats"] = map[string]any{"ExecutionTime": 1.5,
			"resource_usage": map[string]any{"cpu": map[string]any{"total cpu": fmt.Sprintf("%02d:%02d:%02d.0000000", h, m, s)}}}
	}
	return json.Marshal(body)
}

var _ Querier = (*fakeHunting)(nil)

// countingLimiter counts waits and can fail them.
type countingLimiter struct {
	n    atomic.Int64
	fail error
}

func (l *countingLimiter) Wait(ctx context.Context) error {
	l.n.Add(1)
	if l.fail != nil {
		return l.fail
	}
	return ctx.Err()
}

var _ Limiter = (*countingLimiter)(nil)

const (
	devA = "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c"
	devB = "10cbf9182d4e95660362f65cfa67c7731f62fdb3"
)

func testHunt(id, file string, freq, period time.Duration) Hunt {
	return Hunt{
		ID: id, Name: "Hunt " + id, Severity: "High", Enabled: true,
		Query:     fmt.Sprintf("DeviceProcessEvents | where FileName =~ %q", file),
		Frequency: freq, Period: period, TriggerOperator: "gt",
		Tactics: []string{"Credential Access"}, RelevantTechniques: []string{"T1003.001"},
		OnHits: OnHits{Notify: true, RaiseAlerts: &RaiseAlerts{DeviceIDColumn: "DeviceId", DeviceNameColumn: "DeviceName"}},
	}
}

func newTestRunner(t *testing.T, st store.Backend, q Querier, opts RunnerOptions, hunts ...Hunt) *Runner {
	t.Helper()
	opts.Catalog = Catalog{Hunts: hunts}
	opts.Querier, opts.Store = q, st
	if opts.API == "" {
		opts.API = APIMDE
	}
	if opts.Limiter == nil {
		opts.Limiter = &countingLimiter{}
	}
	r, err := NewRunner(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ex := r.Excluded(); len(ex) > 0 {
		t.Fatalf("hunts excluded: %v", ex)
	}
	return r
}

func reportFor(t *testing.T, reps []RunReport, id string) RunReport {
	t.Helper()
	for _, r := range reps {
		if r.HuntID == id {
			return r
		}
	}
	t.Fatalf("no report for %s in %+v", id, reps)
	return RunReport{}
}

func reportIDs(reps []RunReport) []string {
	var ids []string
	for _, r := range reps {
		ids = append(ids, r.HuntID)
	}
	sort.Strings(ids)
	return ids
}

func commandLines(rows []map[string]any) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r["ProcessCommandLine"].(string))
	}
	sort.Strings(out)
	return out
}

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// TestRunDueOverlappingPeriodsReportOnlyNewRows pins the de-duplication: a
// hunt every 15 minutes over the last hour sees each event four times but
// reports it once.
func TestRunDueOverlappingPeriodsReportOnlyNewRows(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	fh := newFakeHunting(t0)
	h := testHunt("lsass", "procdump64.exe", 15*time.Minute, time.Hour)
	r := newTestRunner(t, st, fh, RunnerOptions{}, h)
	ctx := context.Background()

	fh.add(event{at: t0.Add(-40 * time.Minute), device: devA, file: "procdump64.exe", cmd: "procdump64.exe -ma lsass.exe a.dmp", report: 1},
		event{at: t0.Add(-10 * time.Minute), device: devB, file: "procdump64.exe", cmd: "procdump64.exe -ma lsass.exe b.dmp", report: 2})

	reps, err := r.RunDue(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	rep := reportFor(t, reps, "lsass")
	if rep.Err != nil || !rep.Triggered || rep.TotalRows != 2 || len(rep.NewRows) != 2 {
		t.Fatalf("run 1: %+v", rep)
	}
	if !rep.Slot.Equal(t0) || rep.Period != time.Hour {
		t.Errorf("slot %v period %v", rep.Slot, rep.Period)
	}

	// Same slot again: already done, nothing runs.
	reps, _ = r.RunDue(ctx, t0.Add(5*time.Minute))
	if len(reps) != 0 || fh.count("procdump64") != 1 {
		t.Fatalf("same slot ran again: %+v (calls %d)", reps, fh.count("procdump64"))
	}

	// Next slot: the window overlaps; one new event.
	t1 := t0.Add(15 * time.Minute)
	fh.setNow(t1)
	fh.add(event{at: t1.Add(-time.Minute), device: devA, file: "procdump64.exe", cmd: "procdump64.exe -ma lsass.exe c.dmp", report: 3})
	reps, _ = r.RunDue(ctx, t1)
	rep = reportFor(t, reps, "lsass")
	if rep.TotalRows != 3 {
		t.Fatalf("run 2 total rows = %d", rep.TotalRows)
	}
	if got := commandLines(rep.NewRows); len(got) != 1 || got[0] != "procdump64.exe -ma lsass.exe c.dmp" {
		t.Errorf("run 2 new rows = %q, want only c.dmp", got)
	}
	if d := Digest(rep, 0); d == nil || d.NewRows != 1 || d.TotalRows != 3 || len(d.Rows) != 1 {
		t.Errorf("digest = %+v", d)
	}

	// Third slot: nothing new, so no digest.
	t2 := t0.Add(30 * time.Minute)
	fh.setNow(t2)
	reps, _ = r.RunDue(ctx, t2)
	rep = reportFor(t, reps, "lsass")
	if rep.TotalRows != 2 || len(rep.NewRows) != 0 || Digest(rep, 0) != nil {
		t.Errorf("run 3: total %d new %d", rep.TotalRows, len(rep.NewRows))
	}
	state, err := r.State(ctx, "lsass")
	if err != nil {
		t.Fatal(err)
	}
	if !state.LastSlot.Equal(t2) || state.Failures != 0 || state.LastTotalRows != 2 || state.LastNewRows != 0 {
		t.Errorf("state = %+v", state)
	}
}

// TestRunDueFailingHuntDoesNotBlockOthers pins that a throttled hunt is
// recorded with its retry time, the others still run, and the throttled
// one is retried in the same slot once its time has come.
func TestRunDueFailingHuntDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	fh := newFakeHunting(t0)
	throttled := testHunt("a-throttled", "mimikatz.exe", time.Hour, time.Hour)
	broken := testHunt("b-broken", "rubeus.exe", time.Hour, time.Hour)
	ok := testHunt("c-ok", "ntdsutil.exe", time.Hour, time.Hour)
	fh.add(event{at: t0.Add(-time.Minute), device: devA, file: "mimikatz.exe", cmd: "mimikatz.exe sekurlsa::logonpasswords", report: 1},
		event{at: t0.Add(-time.Minute), device: devB, file: "ntdsutil.exe", cmd: "ntdsutil \"ac i ntds\" ifm", report: 2},
		event{at: t0.Add(-time.Minute), device: devB, file: "rubeus.exe", cmd: "rubeus.exe kerberoast", report: 3})
	fh.fail["mimikatz"] = &mde.Error{StatusCode: http.StatusTooManyRequests, Code: mde.CodeThrottled, RetryAfter: 90 * time.Second,
		Message: "API calls quota exceeded! maximum allowed 45 per 00:01:00"}
	fh.fail["rubeus"] = &mde.Error{StatusCode: http.StatusBadRequest, Code: mde.CodeBadRequest, Message: "Syntax error"}
	r := newTestRunner(t, st, fh, RunnerOptions{}, throttled, broken, ok)
	ctx := context.Background()

	reps, err := r.RunDue(ctx, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	a, b, c := reportFor(t, reps, "a-throttled"), reportFor(t, reps, "b-broken"), reportFor(t, reps, "c-ok")
	var me *mde.Error
	if !errors.As(a.Err, &me) || me.StatusCode != 429 {
		t.Fatalf("throttled report err = %v", a.Err)
	}
	if want := now.Add(90 * time.Second); !a.NextRetry.Equal(want) {
		t.Errorf("throttled next retry = %v, want Retry-After %v", a.NextRetry, want)
	}
	if want := t0.Add(time.Hour); b.Err == nil || !b.NextRetry.Equal(want) {
		t.Errorf("permanent failure: err %v next retry %v, want the next slot %v", b.Err, b.NextRetry, want)
	}
	if c.Err != nil || len(c.NewRows) != 1 {
		t.Errorf("healthy hunt: %+v", c)
	}
	state, _ := r.State(ctx, "a-throttled")
	if state.Failures != 1 || !strings.Contains(state.LastError, "quota exceeded") {
		t.Errorf("throttled state = %+v", state)
	}

	// 30 s later: the throttled hunt is still backing off; nothing runs.
	reps, _ = r.RunDue(ctx, now.Add(30*time.Second))
	if len(reps) != 0 {
		t.Errorf("ran during backoff: %v", reportIDs(reps))
	}

	// After Retry-After, the quota is back: same slot, attempt 2.
	delete(fh.fail, "mimikatz")
	reps, _ = r.RunDue(ctx, now.Add(2*time.Minute))
	if ids := reportIDs(reps); len(ids) != 1 || ids[0] != "a-throttled" {
		t.Fatalf("retry reports = %v, want only a-throttled", ids)
	}
	a = reps[0]
	if a.Err != nil || !a.Slot.Equal(t0) || len(a.NewRows) != 1 {
		t.Errorf("retry: %+v", a)
	}
	state, _ = r.State(ctx, "a-throttled")
	if state.Failures != 0 || state.LastError != "" || !state.NextRetry.IsZero() {
		t.Errorf("state after success = %+v", state)
	}
	var cl claim
	if _, err := store.GetJSON(ctx, st, TableHunts, "a-throttled", slotKey(t0), &cl); err != nil || cl.Attempt != 2 || cl.Status != claimDone {
		t.Errorf("claim = %+v, %v", cl, err)
	}

	// The permanently failing hunt waits for the next slot.
	delete(fh.fail, "rubeus")
	fh.setNow(t0.Add(time.Hour))
	fh.add(event{at: t0.Add(59 * time.Minute), device: devB, file: "rubeus.exe", cmd: "rubeus.exe asktgt", report: 4})
	reps, _ = r.RunDue(ctx, t0.Add(time.Hour))
	b = reportFor(t, reps, "b-broken")
	if b.Err != nil || len(b.NewRows) != 1 {
		t.Errorf("broken hunt next slot: %+v", b)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	r := &Runner{o: RunnerOptions{RetryBase: time.Minute, RetryMax: time.Hour}}
	h := Hunt{Frequency: 20 * time.Minute}
	transient := errors.New("connection reset")
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 20 * time.Minute, 20 * time.Minute}
	for i, w := range want {
		if got := r.backoff(h, i+1, transient, t0, t0); got != w {
			t.Errorf("failure %d: backoff %v, want %v", i+1, got, w)
		}
	}
	if got := r.backoff(h, 1, &mde.Error{StatusCode: 429, RetryAfter: 45 * time.Minute}, t0, t0); got != 45*time.Minute {
		t.Errorf("Retry-After not honoured: %v", got)
	}
	if got := r.backoff(h, 1, &mde.Error{StatusCode: 403}, t0, t0.Add(5*time.Minute)); got != 15*time.Minute {
		t.Errorf("permanent error: %v, want until the next slot", got)
	}
}

// TestRunDueTwoRunnersOneSlot pins the claim: runners sharing a store run
// a slot once, however many race for it.
func TestRunDueTwoRunnersOneSlot(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	fh := newFakeHunting(t0)
	fh.delay = 20 * time.Millisecond
	fh.add(event{at: t0.Add(-time.Minute), device: devA, file: "procdump.exe", cmd: "procdump.exe -ma lsass.exe", report: 7})
	h := testHunt("lsass", "procdump.exe", time.Hour, time.Hour)
	const n = 6
	runners := make([]*Runner, n)
	for i := range runners {
		runners[i] = newTestRunner(t, st, fh, RunnerOptions{Instance: fmt.Sprintf("instance-%d", i)}, h)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []RunReport
	start := make(chan struct{})
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			reps, err := r.RunDue(context.Background(), t0.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, reps...)
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if calls := fh.count("procdump"); calls != 1 {
		t.Errorf("%d queries for one slot, want 1", calls)
	}
	if len(all) != 1 || len(all[0].NewRows) != 1 {
		t.Errorf("reports = %+v", all)
	}
}

func TestRunDueTakesOverStaleClaim(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	ctx := context.Background()
	fh := newFakeHunting(t0)
	h := testHunt("lsass", "procdump.exe", time.Hour, time.Hour)
	r := newTestRunner(t, st, fh, RunnerOptions{Lease: 15 * time.Minute, QueryTimeout: time.Minute}, h)
	// Another instance claimed the slot and died.
	e, _ := entityOf("lsass", slotKey(t0), claim{Slot: t0, Owner: "dead", Status: claimRunning, Attempt: 1, ClaimedAt: t0}, "")
	if _, err := st.Insert(ctx, TableHunts, e); err != nil {
		t.Fatal(err)
	}
	if reps, _ := r.RunDue(ctx, t0.Add(10*time.Minute)); len(reps) != 0 {
		t.Fatalf("ran a slot another instance holds: %+v", reps)
	}
	reps, _ := r.RunDue(ctx, t0.Add(16*time.Minute))
	if len(reps) != 1 || reps[0].Err != nil {
		t.Fatalf("stale claim not taken over: %+v", reps)
	}
}

// TestRunDueCrashBeforeRecordReportsAgain pins at-least-once within a slot:
// findings recorded by an attempt that failed are reported by the retry.
func TestRunDueCrashBeforeRecordReportsAgain(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	defer mem.Close()
	st := &flakyStore{Backend: mem, failFindingsAfter: 1}
	fh := newFakeHunting(t0)
	fh.add(event{at: t0.Add(-2 * time.Minute), device: devA, file: "procdump.exe", cmd: "one", report: 1},
		event{at: t0.Add(-time.Minute), device: devA, file: "procdump.exe", cmd: "two", report: 2})
	h := testHunt("lsass", "procdump.exe", time.Hour, time.Hour)
	r := newTestRunner(t, st, fh, RunnerOptions{}, h)
	ctx := context.Background()
	reps, _ := r.RunDue(ctx, t0)
	if len(reps) != 1 || reps[0].Err == nil || len(reps[0].NewRows) != 0 {
		t.Fatalf("first attempt: %+v", reps)
	}
	st.failFindingsAfter = -1
	reps, _ = r.RunDue(ctx, reps[0].NextRetry)
	if len(reps) != 1 || reps[0].Err != nil {
		t.Fatalf("retry: %+v", reps)
	}
	if got := commandLines(reps[0].NewRows); len(got) != 2 {
		t.Errorf("retry new rows = %q, want both (the first was recorded but never reported)", got)
	}
}

// flakyStore fails Insert into "findings" after a number of successes
// (negative: never).
type flakyStore struct {
	store.Backend
	mu                sync.Mutex
	failFindingsAfter int
}

func (f *flakyStore) Insert(ctx context.Context, table string, e store.Entity) (store.Entity, error) {
	f.mu.Lock()
	if table == TableFindings && f.failFindingsAfter >= 0 {
		if f.failFindingsAfter == 0 {
			f.mu.Unlock()
			return store.Entity{}, errors.New("table service unavailable")
		}
		f.failFindingsAfter--
	}
	f.mu.Unlock()
	return f.Backend.Insert(ctx, table, e)
}

func TestRunDueCPUBudgetAndMaxRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hunts := []Hunt{
		testHunt("h1", "a.exe", time.Hour, time.Hour), testHunt("h2", "b.exe", time.Hour, time.Hour),
		testHunt("h3", "c.exe", time.Hour, time.Hour),
	}
	t.Run("budget", func(t *testing.T) {
		st := store.NewMemory()
		defer st.Close()
		fh := newFakeHunting(t0)
		fh.cpu = 5 * time.Minute
		r := newTestRunner(t, st, fh, RunnerOptions{CPUBudget: 8 * time.Minute}, hunts...)
		reps, err := r.RunDue(ctx, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if a, b, c := reportFor(t, reps, "h1"), reportFor(t, reps, "h2"), reportFor(t, reps, "h3"); a.Skipped != "" || b.Skipped != "" ||
			!strings.Contains(c.Skipped, "CPU budget spent") || c.Stats != nil {
			t.Errorf("skipped: %q %q %q", a.Skipped, b.Skipped, c.Skipped)
		}
		if a := reportFor(t, reps, "h1"); a.Stats == nil || a.Stats.CPU != 5*time.Minute {
			t.Errorf("stats = %+v", a.Stats)
		}
		// The next hour has a fresh budget; h3 (never succeeded) goes first.
		reps, _ = r.RunDue(ctx, t0.Add(time.Hour+time.Minute))
		if reps[0].HuntID != "h3" || reps[0].Skipped != "" {
			t.Errorf("next hour first report = %+v", reps[0])
		}
	})
	t.Run("max runs", func(t *testing.T) {
		st := store.NewMemory()
		defer st.Close()
		fh := newFakeHunting(t0)
		r := newTestRunner(t, st, fh, RunnerOptions{MaxRunsPerInvocation: 2, CPUBudget: -1}, hunts...)
		reps, _ := r.RunDue(ctx, t0.Add(time.Minute))
		if c := reportFor(t, reps, "h3"); !strings.Contains(c.Skipped, "runs per invocation") {
			t.Errorf("h3 skipped = %q", c.Skipped)
		}
		reps, _ = r.RunDue(ctx, t0.Add(2*time.Minute))
		if ids := reportIDs(reps); len(ids) != 1 || ids[0] != "h3" {
			t.Errorf("second invocation ran %v, want h3", ids)
		}
	})
}

func TestRunDueTriggerThreshold(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	ctx := context.Background()
	fh := newFakeHunting(t0)
	h := testHunt("burst", "net.exe", 15*time.Minute, time.Hour)
	h.TriggerThreshold = 2
	r := newTestRunner(t, st, fh, RunnerOptions{}, h)
	fh.add(event{at: t0.Add(-3 * time.Minute), device: devA, file: "net.exe", cmd: "net group", report: 1},
		event{at: t0.Add(-2 * time.Minute), device: devA, file: "net.exe", cmd: "net user", report: 2})
	reps, _ := r.RunDue(ctx, t0)
	if rep := reps[0]; rep.Triggered || rep.TotalRows != 2 || len(rep.NewRows) != 0 || Digest(rep, 0) != nil {
		t.Fatalf("below threshold: %+v", rep)
	}
	// Crossing the threshold reports every row, the earlier ones included:
	// rows of untriggered runs are not recorded as reported.
	t1 := t0.Add(15 * time.Minute)
	fh.setNow(t1)
	fh.add(event{at: t1.Add(-time.Minute), device: devA, file: "net.exe", cmd: "net localgroup", report: 3})
	reps, _ = r.RunDue(ctx, t1)
	if rep := reps[0]; !rep.Triggered || len(rep.NewRows) != 3 {
		t.Errorf("above threshold: triggered %v new %d", rep.Triggered, len(rep.NewRows))
	}
}

func TestRunDueLimiterCancelReleasesSlot(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	fh := newFakeHunting(t0)
	lim := &countingLimiter{fail: context.DeadlineExceeded}
	h := testHunt("lsass", "procdump.exe", time.Hour, time.Hour)
	r := newTestRunner(t, st, fh, RunnerOptions{Limiter: lim}, h)
	ctx := context.Background()
	if _, err := r.RunDue(ctx, t0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunDue err = %v", err)
	}
	if fh.count("procdump") != 0 {
		t.Fatal("queried without the limiter's permission")
	}
	lim.fail = nil
	reps, err := r.RunDue(ctx, t0.Add(time.Second))
	if err != nil || len(reps) != 1 || reps[0].Err != nil {
		t.Fatalf("slot not released: %+v %v", reps, err)
	}
	if st, _ := r.State(ctx, "lsass"); st.Failures != 0 {
		t.Errorf("a limiter wait counted as a failure: %+v", st)
	}
}

func TestRunOne(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	ctx := context.Background()
	fh := newFakeHunting(t0)
	fh.add(event{at: t0.Add(-time.Minute), device: devA, file: "procdump.exe", cmd: "procdump -ma lsass", report: 1})
	scheduled := testHunt("lsass", "procdump.exe", time.Hour, time.Hour)
	disabled := testHunt("off", "procdump.exe", time.Hour, time.Hour)
	disabled.Enabled = false
	graphOnly := testHunt("graph-only", "x", time.Hour, time.Hour)
	graphOnly.Query = "AlertInfo | where Title has 'Log4j'"
	r, err := NewRunner(RunnerOptions{Catalog: Catalog{Hunts: []Hunt{scheduled, disabled, graphOnly}}, API: APIMDE,
		Querier: fh, Store: st, Limiter: &countingLimiter{}})
	if err != nil {
		t.Fatal(err)
	}
	if ex := r.Excluded(); len(ex) != 1 || ex["graph-only"] == nil {
		t.Errorf("excluded = %v", ex)
	}
	if hs := r.Hunts(); len(hs) != 1 || hs[0].ID != "lsass" {
		t.Errorf("scheduled hunts = %v", hs)
	}
	if _, err := r.RunOne(ctx, "nope", t0); !errors.Is(err, ErrUnknownHunt) {
		t.Errorf("unknown hunt err = %v", err)
	}
	if _, err := r.RunOne(ctx, "graph-only", t0); !errors.Is(err, ErrNotRunnable) || !strings.Contains(err.Error(), "AlertInfo") {
		t.Errorf("not runnable err = %v", err)
	}
	rep, err := r.RunOne(ctx, "off", t0)
	if err != nil || !rep.Manual || len(rep.NewRows) != 1 {
		t.Errorf("disabled hunt on demand: %+v %v", rep, err)
	}
	// On demand twice: the second sees nothing new.
	rep, _ = r.RunOne(ctx, "lsass", t0)
	rep2, _ := r.RunOne(ctx, "lsass", t0.Add(time.Second))
	if len(rep.NewRows) != 1 || len(rep2.NewRows) != 0 {
		t.Errorf("on-demand dedupe: %d then %d", len(rep.NewRows), len(rep2.NewRows))
	}
	// The schedule is untouched by on-demand runs, and dedupes against them.
	reps, _ := r.RunDue(ctx, t0.Add(time.Minute))
	if len(reps) != 1 || reps[0].Err != nil || len(reps[0].NewRows) != 0 {
		t.Errorf("scheduled after on-demand: %+v", reps)
	}
	fh.fail["procdump"] = &mde.Error{StatusCode: 500, Code: mde.CodeServerError}
	if rep, err := r.RunOne(ctx, "lsass", t0.Add(2*time.Minute)); err == nil || rep.Err == nil {
		t.Errorf("failing on-demand run: %v", err)
	}
}

func TestCleanupExpiresFindingsAndClaims(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	ctx := context.Background()
	fh := newFakeHunting(t0)
	h := testHunt("lsass", "procdump.exe", time.Hour, time.Hour)
	r := newTestRunner(t, st, fh, RunnerOptions{}, h)
	fh.add(event{at: t0.Add(-time.Minute), device: devA, file: "procdump.exe", cmd: "old", report: 1})
	if _, err := r.RunDue(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if ents, _ := st.List(ctx, TableFindings, "lsass"); len(ents) != 1 {
		t.Fatalf("findings after run = %d", len(ents))
	}
	// Two days later the finding (2×period) and the claim (24h) expire.
	later := t0.Add(48 * time.Hour)
	fh.setNow(later)
	if _, err := r.RunDue(ctx, later); err != nil {
		t.Fatal(err)
	}
	if ents, _ := st.List(ctx, TableFindings, "lsass"); len(ents) != 0 {
		t.Errorf("findings not expired: %d", len(ents))
	}
	ents, _ := st.List(ctx, TableHunts, "lsass")
	var keys []string
	for _, e := range ents {
		keys = append(keys, e.RowKey)
	}
	if want := []string{slotKey(later), stateRow}; strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("hunt rows = %q, want %q", keys, want)
	}
}

func TestNewRunnerValidation(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	fh := newFakeHunting(t0)
	tests := []struct {
		name string
		o    RunnerOptions
	}{
		{"no querier", RunnerOptions{Store: st}},
		{"no store", RunnerOptions{Querier: fh}},
		{"bad api", RunnerOptions{Querier: fh, Store: st, API: "splunk"}},
		{"lease shorter than query timeout", RunnerOptions{Querier: fh, Store: st, Lease: time.Minute, QueryTimeout: 2 * time.Minute}},
	}
	for _, tc := range tests {
		if _, err := NewRunner(tc.o); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	r, err := NewRunner(RunnerOptions{Querier: fh, Store: st})
	if err != nil || r.o.API != APIGraph || r.o.CPUBudget != DefaultCPUBudget || r.o.MaxRunsPerInvocation != DefaultMaxRunsPerInvocation {
		t.Errorf("defaults: %+v %v", r.o, err)
	}
}

// TestRunDuePublishFailureRetriesSlot pins the publish hook: when sending
// the findings fails (or the process dies before it returns), the slot is
// not done, and its retry reports the same rows again, so none is lost.
func TestRunDuePublishFailureRetriesSlot(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	defer st.Close()
	fh := newFakeHunting(t0)
	fh.add(event{at: t0.Add(-5 * time.Minute), device: devA, file: "procdump64.exe", cmd: "procdump64.exe -ma lsass.exe a.dmp", report: 1})
	var published [][]string
	fail := true
	pub := func(_ context.Context, rep RunReport) error {
		if fail {
			return errors.New("queue unavailable")
		}
		published = append(published, commandLines(rep.NewRows))
		return nil
	}
	h := testHunt("lsass", "procdump64.exe", time.Hour, time.Hour)
	r := newTestRunner(t, st, fh, RunnerOptions{Publish: pub}, h)
	ctx := context.Background()
	reps, err := r.RunDue(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	rep := reportFor(t, reps, "lsass")
	if rep.Err == nil || rep.NextRetry.IsZero() || len(published) != 0 {
		t.Fatalf("failed publish: err=%v next=%v published=%v", rep.Err, rep.NextRetry, published)
	}
	fail = false
	retryAt := rep.NextRetry.Add(time.Second)
	fh.setNow(retryAt)
	reps, err = r.RunDue(ctx, retryAt)
	if err != nil {
		t.Fatal(err)
	}
	if rep := reportFor(t, reps, "lsass"); rep.Err != nil {
		t.Fatalf("retry: %v", rep.Err)
	}
	if len(published) != 1 || len(published[0]) != 1 || published[0][0] != "procdump64.exe -ma lsass.exe a.dmp" {
		t.Fatalf("published = %v, want the row once, on the retry", published)
	}
}
