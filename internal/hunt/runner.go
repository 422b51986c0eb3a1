package hunt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"golang.org/x/time/rate"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Querier runs one hunting query over the last period and returns the raw
// response body (any of the shapes ParseResults reads).
//
// Adapters (written by the composition root):
//   - Graph runHuntingQuery: send {"Query": query, "Timespan": ISODuration(period)}.
//   - MDE advancedqueries/run has no timespan: send ScopeQuery(query, period),
//     which adds `| where Timestamp > ago(period)` after every source table,
//     so the window means the same as Graph's Timespan whether or not the
//     query filters Timestamp itself.
type Querier interface {
	Run(ctx context.Context, query string, period time.Duration) (json.RawMessage, error)
}

// Limiter paces hunting calls; *rate.Limiter implements it.
type Limiter interface {
	Wait(ctx context.Context) error
}

var _ Limiter = (*rate.Limiter)(nil)

// Defaults of RunnerOptions.
const (
	// DefaultCallsPerMinute is the advanced hunting quota (45 calls/min).
	DefaultCallsPerMinute = 45
	// DefaultCPUBudget leaves 2 of the 10 minutes of hourly hunting CPU
	// quota to the analysts using the portal.
	DefaultCPUBudget            = 8 * time.Minute
	DefaultMaxRunsPerInvocation = 10
	// DefaultQueryTimeout bounds one query (the service stops at 200 s).
	DefaultQueryTimeout = 4 * time.Minute
	// DefaultLease is how long a "running" claim holds its slot before
	// another instance may take it over (the claimant is presumed dead).
	DefaultLease     = 15 * time.Minute
	DefaultRetryBase = time.Minute
	DefaultRetryMax  = time.Hour
)

// RunnerOptions configures NewRunner. Zero values mean the defaults.
type RunnerOptions struct {
	Catalog Catalog
	// API is the API the Querier talks to (APIGraph by default); hunts that
	// fail Check for it are never run.
	API     string
	Querier Querier
	Store   store.Backend
	// Limiter paces calls; default DefaultCallsPerMinute per minute, burst 1.
	// It is per process; the service's 429 covers the tenant.
	Limiter Limiter
	// CPUBudget is the hunting CPU (Stats "total cpu", else the execution
	// or wall time) all instances may spend per clock hour; once spent,
	// due hunts are skipped until the next hour. Negative: no budget.
	CPUBudget time.Duration
	// MaxRunsPerInvocation bounds the queries of one RunDue (the rest run
	// at the next invocation). Negative: no bound.
	MaxRunsPerInvocation int
	QueryTimeout         time.Duration
	Lease                time.Duration
	// RetryBase and RetryMax shape the exponential backoff after a
	// transient failure (capped at the hunt frequency, stretched to the
	// service's Retry-After).
	RetryBase time.Duration
	RetryMax  time.Duration
	// Instance names this process in claims (default host-pid).
	Instance string
	// Publish, when set, is called with each scheduled run's report that has
	// new rows, before the slot is marked done. An error fails the run: the
	// slot is retried and its findings count as new again, so a crash or a
	// failed send between the query and the notification loses nothing
	// (publishers use deterministic message ids, so a replay is dropped as
	// a duplicate downstream).
	Publish func(ctx context.Context, rep RunReport) error
	// Clock measures run durations (default time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
}

// RunReport is the outcome of one hunt run.
type RunReport struct {
	HuntID   string
	Name     string
	Severity string
	// Slot is the scheduled slot (start of the frequency interval) for
	// scheduled runs, the request time for on-demand runs.
	Slot   time.Time
	RanAt  time.Time
	Period time.Duration
	Manual bool
	// Triggered says the trigger (operator, threshold) matched TotalRows.
	Triggered bool
	TotalRows int
	// NewRows are the rows never reported before (empty unless Triggered).
	NewRows  []map[string]any
	Columns  []string
	Stats    *Stats
	Duration time.Duration
	// Err is set when the run failed; NextRetry says when it is retried.
	Err       error
	NextRetry time.Time
	// Skipped is set (with a reason) when the hunt was due but not run.
	Skipped string
}

// Errors of RunOne.
var (
	ErrUnknownHunt = errors.New("unknown hunt")
	ErrNotRunnable = errors.New("hunt is not runnable")
)

// Runner runs the catalog's hunts. It is safe for concurrent use, and any
// number of Runners (processes) may share one store.
type Runner struct {
	o        RunnerOptions
	cat      Catalog
	problems map[string][]Problem
	// scheduled are the enabled, runnable hunts.
	scheduled []Hunt
	log       *slog.Logger
}

// NewRunner checks every hunt against the API and prepares the schedule.
// Hunts with problems are excluded (see Excluded), not fatal.
func NewRunner(o RunnerOptions) (*Runner, error) {
	if o.Querier == nil {
		return nil, errors.New("creating hunt runner: no Querier")
	}
	if o.Store == nil {
		return nil, errors.New("creating hunt runner: no Store")
	}
	if o.API == "" {
		o.API = APIGraph
	}
	if !contains(APIs, o.API) {
		return nil, fmt.Errorf("creating hunt runner: unknown API %q", o.API)
	}
	if o.Limiter == nil {
		o.Limiter = rate.NewLimiter(rate.Every(time.Minute/DefaultCallsPerMinute), 1)
	}
	if o.CPUBudget == 0 {
		o.CPUBudget = DefaultCPUBudget
	}
	if o.MaxRunsPerInvocation == 0 {
		o.MaxRunsPerInvocation = DefaultMaxRunsPerInvocation
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Lease <= o.QueryTimeout {
		return nil, fmt.Errorf("creating hunt runner: lease %v must be longer than the query timeout %v", o.Lease, o.QueryTimeout)
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Instance == "" {
		host, _ := os.Hostname()
		o.Instance = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{o: o, cat: o.Catalog, problems: map[string][]Problem{}, log: o.Logger}
	for _, h := range o.Catalog.Hunts {
		ps := Check(h, o.API)
		if len(ps) > 0 {
			r.problems[h.ID] = ps
		}
		if !Runnable(ps) {
			r.log.Warn("hunt excluded", slog.String("hunt_id", h.ID), slog.String("file", h.File),
				slog.String("reason", firstErrors(ps)))
			continue
		}
		if h.Enabled {
			r.scheduled = append(r.scheduled, h)
		}
	}
	return r, nil
}

// Hunts returns the enabled, runnable hunts RunDue schedules.
func (r *Runner) Hunts() []Hunt { return append([]Hunt(nil), r.scheduled...) }

// Excluded returns the hunts that cannot run through the API, with their
// problems.
func (r *Runner) Excluded() map[string][]Problem {
	out := map[string][]Problem{}
	for id, ps := range r.problems {
		if !Runnable(ps) {
			out[id] = ps
		}
	}
	return out
}

// State returns the stored schedule state of a hunt.
func (r *Runner) State(ctx context.Context, huntID string) (HuntState, error) {
	if _, ok := r.cat.Get(huntID); !ok {
		return HuntState{}, fmt.Errorf("%w: %q", ErrUnknownHunt, huntID)
	}
	return loadState(ctx, r.o.Store, huntID)
}

// candidate is a due hunt waiting for its turn.
type candidate struct {
	h     Hunt
	st    HuntState
	slot  time.Time
	claim *claim // existing claim to take over (nil: insert)
	etag  string
}

// RunDue runs every enabled hunt whose current slot (now truncated to its
// frequency) has not run yet, in order of oldest last success. Each slot is
// claimed in the store first (insert-if-absent, or an ETag-guarded takeover
// of a failed claim whose retry time has come or of a running claim older
// than the lease), so two instances never both run it. A failing hunt is
// recorded with its error and retry time and does not stop the others; a
// hunt in backoff is not due. Hunts skipped for the CPU budget or the
// per-invocation cap are reported with Skipped. The error is only the
// context's.
func (r *Runner) RunDue(ctx context.Context, now time.Time) ([]RunReport, error) {
	now = now.UTC()
	var reports []RunReport
	var cands []candidate
	for _, h := range r.scheduled {
		if err := ctx.Err(); err != nil {
			return reports, err
		}
		c, due, err := r.due(ctx, h, now)
		if err != nil {
			rep := newReport(h, now, c.slot)
			rep.Err = err
			reports = append(reports, rep)
			r.logReport(rep)
			continue
		}
		if due {
			cands = append(cands, c)
		}
	}
	sort.SliceStable(cands, func(a, b int) bool {
		if !cands[a].st.LastSuccess.Equal(cands[b].st.LastSuccess) {
			return cands[a].st.LastSuccess.Before(cands[b].st.LastSuccess)
		}
		return cands[a].h.ID < cands[b].h.ID
	})
	runs := 0
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return reports, err
		}
		if r.o.MaxRunsPerInvocation > 0 && runs >= r.o.MaxRunsPerInvocation {
			rep := newReport(c.h, now, c.slot)
			rep.Skipped = fmt.Sprintf("%d runs per invocation reached; runs at the next invocation", r.o.MaxRunsPerInvocation)
			reports = append(reports, rep)
			r.logReport(rep)
			continue
		}
		if reason, err := r.budgetSpent(ctx, now); err != nil || reason != "" {
			rep := newReport(c.h, now, c.slot)
			rep.Skipped, rep.Err = reason, err
			reports = append(reports, rep)
			r.logReport(rep)
			continue
		}
		cl, etag, ok, err := r.claimSlot(ctx, c, now)
		if err != nil {
			rep := newReport(c.h, now, c.slot)
			rep.Err = err
			reports = append(reports, rep)
			r.logReport(rep)
			continue
		}
		if !ok {
			r.log.Debug("hunt slot claimed by another instance", slog.String("hunt_id", c.h.ID), slog.Time("slot", c.slot))
			continue
		}
		runs++
		rep, waitErr := r.execute(ctx, c.h, c.slot, now, false)
		if r.o.Publish != nil && waitErr == nil && rep.Err == nil && len(rep.NewRows) > 0 {
			if err := r.o.Publish(ctx, rep); err != nil {
				rep.Err = fmt.Errorf("publishing findings of hunt %s: %w", c.h.ID, err)
			}
		}
		r.finish(ctx, c, cl, etag, &rep, waitErr, now)
		reports = append(reports, rep)
		r.logReport(rep)
		if waitErr != nil {
			return reports, waitErr
		}
	}
	if runs > 0 {
		r.cleanupBudget(ctx, now)
	}
	return reports, ctx.Err()
}

// due reads a hunt's state and claim for the current slot.
func (r *Runner) due(ctx context.Context, h Hunt, now time.Time) (candidate, bool, error) {
	c := candidate{h: h, slot: now.Truncate(h.Frequency)}
	st, err := loadState(ctx, r.o.Store, h.ID)
	if err != nil {
		return c, false, err
	}
	c.st = st
	if st.NextRetry.After(now) {
		return c, false, nil
	}
	var cl claim
	etag, err := store.GetJSON(ctx, r.o.Store, TableHunts, h.ID, slotKey(c.slot), &cl)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return c, true, nil
	case err != nil:
		return c, false, fmt.Errorf("reading hunt claim %s: %w", h.ID, err)
	}
	c.claim, c.etag = &cl, etag
	switch cl.Status {
	case claimDone:
		return c, false, nil
	case claimFailed:
		return c, !cl.NextRetry.After(now), nil
	default: // running
		return c, now.Sub(cl.ClaimedAt) > r.o.Lease, nil
	}
}

// claimSlot takes the slot: insert-if-absent, or an ETag-guarded takeover.
// ok is false when another instance got it first.
func (r *Runner) claimSlot(ctx context.Context, c candidate, now time.Time) (claim, string, bool, error) {
	cl := claim{Slot: c.slot, Owner: r.o.Instance, Status: claimRunning, Attempt: 1, ClaimedAt: now}
	if c.claim != nil {
		cl.Attempt = c.claim.Attempt + 1
	}
	e, err := entityOf(c.h.ID, slotKey(c.slot), cl, c.etag)
	if err != nil {
		return cl, "", false, err
	}
	var out store.Entity
	if c.claim == nil {
		out, err = r.o.Store.Insert(ctx, TableHunts, e)
		if errors.Is(err, store.ErrExists) {
			return cl, "", false, nil
		}
	} else {
		out, err = r.o.Store.Update(ctx, TableHunts, e)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return cl, "", false, nil
		}
	}
	if err != nil {
		return cl, "", false, fmt.Errorf("claiming hunt slot %s %s: %w", c.h.ID, slotKey(c.slot), err)
	}
	return cl, out.ETag, true, nil
}

func (r *Runner) budgetSpent(ctx context.Context, now time.Time) (string, error) {
	if r.o.CPUBudget < 0 {
		return "", nil
	}
	spent, err := spentBudget(ctx, r.o.Store, now.Truncate(time.Hour))
	if err != nil {
		return "", err
	}
	if spent >= r.o.CPUBudget {
		return fmt.Sprintf("hunting CPU budget spent (%v of %v this hour)", spent, r.o.CPUBudget), nil
	}
	return "", nil
}

func newReport(h Hunt, now, slot time.Time) RunReport {
	return RunReport{HuntID: h.ID, Name: h.Name, Severity: h.Severity, Slot: slot, RanAt: now, Period: h.Period}
}

// execute runs the query and keeps the new rows. The second result is the
// limiter's error (the context ended before the call could be made).
func (r *Runner) execute(ctx context.Context, h Hunt, slot, now time.Time, manual bool) (RunReport, error) {
	rep := newReport(h, now, slot)
	rep.Manual = manual
	if err := r.o.Limiter.Wait(ctx); err != nil {
		rep.Err = fmt.Errorf("waiting for the hunting rate limit: %w", err)
		return rep, rep.Err
	}
	qctx, cancel := context.WithTimeout(ctx, r.o.QueryTimeout)
	start := r.o.Clock()
	raw, err := r.o.Querier.Run(qctx, h.Query, h.Period)
	cancel()
	rep.Duration = r.o.Clock().Sub(start)
	if err != nil {
		rep.Err = fmt.Errorf("running hunt %s: %w", h.ID, err)
		return rep, nil
	}
	res, err := ParseResults(raw)
	cost := rep.Duration
	if err == nil && res.Stats.Cost() > 0 {
		cost = res.Stats.Cost()
	}
	if r.o.CPUBudget >= 0 {
		if berr := addBudget(ctx, r.o.Store, now.Truncate(time.Hour), cost); berr != nil {
			r.log.Warn("hunting cpu not recorded", slog.String("hunt_id", h.ID), slog.String("error", berr.Error()))
		}
	}
	if err != nil {
		rep.Err = fmt.Errorf("running hunt %s: %w", h.ID, err)
		return rep, nil
	}
	rep.Columns = res.ColumnNames()
	rep.TotalRows = len(res.Rows)
	rep.Stats = res.Stats
	rep.Triggered = h.Triggered(rep.TotalRows)
	if !rep.Triggered {
		return rep, nil
	}
	newRows, err := r.dedupe(ctx, h, res, slot, now, manual)
	if err != nil {
		rep.Err = fmt.Errorf("recording findings of hunt %s: %w", h.ID, err)
		return rep, nil
	}
	rep.NewRows = newRows
	return rep, nil
}

// dedupe records each row's fingerprint (insert-if-absent) and returns the
// rows never reported before. A fingerprint first recorded by the same
// scheduled slot counts as new again: that slot's earlier attempt failed or
// crashed before it could report.
func (r *Runner) dedupe(ctx context.Context, h Hunt, res *Results, slot, now time.Time, manual bool) ([]map[string]any, error) {
	var out []map[string]any
	seen := map[string]bool{}
	for _, row := range res.Rows {
		fp := Fingerprint(h, res.Columns, row)
		if seen[fp] {
			continue
		}
		seen[fp] = true
		f := finding{FirstSeen: now, LastSeen: now, Slot: slot, Manual: manual}
		e, err := entityOf(h.ID, fp, f, "")
		if err != nil {
			return nil, err
		}
		_, err = r.o.Store.Insert(ctx, TableFindings, e)
		if err == nil {
			out = append(out, row)
			continue
		}
		if !errors.Is(err, store.ErrExists) {
			return nil, err
		}
		var old finding
		oldETag, err := store.GetJSON(ctx, r.o.Store, TableFindings, h.ID, fp, &old)
		if errors.Is(err, store.ErrNotFound) {
			continue // expired between the insert and the read: was reported
		}
		if err != nil {
			return nil, err
		}
		if !manual && !old.Manual && old.Slot.Equal(slot) {
			out = append(out, row)
			continue
		}
		// Refresh LastSeen now and then, so a finding that keeps matching
		// (an aggregate over a sliding window) does not expire and return.
		if now.Sub(old.LastSeen) > h.Period/2 {
			old.LastSeen = now
			ne, err := entityOf(h.ID, fp, old, oldETag)
			if err != nil {
				return nil, err
			}
			if _, err := r.o.Store.Update(ctx, TableFindings, ne); err != nil &&
				!errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
	}
	return out, nil
}

// finish records the run in the claim and the hunt state.
func (r *Runner) finish(ctx context.Context, c candidate, cl claim, etag string, rep *RunReport, waitErr error, now time.Time) {
	st := c.st
	st.HuntID = c.h.ID
	st.LastAttempt = now
	switch {
	case waitErr != nil:
		// Never called the API: give the slot back at once, no failure
		// counted.
		cl.Status, cl.NextRetry, cl.Error = claimFailed, now, rep.Err.Error()
	case rep.Err != nil:
		st.Failures++
		delay := r.backoff(c.h, st.Failures, rep.Err, c.slot, now)
		rep.NextRetry = now.Add(delay)
		st.NextRetry, st.LastError = rep.NextRetry, truncate(rep.Err.Error(), 1000)
		cl.Status, cl.NextRetry, cl.Error = claimFailed, rep.NextRetry, truncate(rep.Err.Error(), 1000)
	default:
		st.LastSlot, st.LastSuccess = c.slot, now
		st.Failures, st.NextRetry, st.LastError = 0, time.Time{}, ""
		st.LastTotalRows, st.LastNewRows = rep.TotalRows, len(rep.NewRows)
		cl.Status, cl.NextRetry, cl.Error = claimDone, time.Time{}, ""
		if now.Sub(st.LastCleanup) >= min(c.h.Period, 24*time.Hour) {
			if err := r.cleanup(ctx, c.h, now); err != nil {
				r.log.Warn("hunt cleanup failed", slog.String("hunt_id", c.h.ID), slog.String("error", err.Error()))
			} else {
				st.LastCleanup = now
			}
		}
	}
	cl.FinishedAt = now
	// Record even when the invocation context has ended: the run happened.
	wctx := context.WithoutCancel(ctx)
	if e, err := entityOf(c.h.ID, slotKey(c.slot), cl, etag); err == nil {
		if _, err := r.o.Store.Update(wctx, TableHunts, e); err != nil {
			r.log.Warn("hunt claim not updated", slog.String("hunt_id", c.h.ID), slog.String("error", err.Error()))
		}
	}
	if waitErr == nil {
		if err := saveState(wctx, r.o.Store, st); err != nil {
			r.log.Warn("hunt state not saved", slog.String("hunt_id", c.h.ID), slog.String("error", err.Error()))
		}
	}
}

// backoff returns the delay before retrying a failed hunt: the next slot for
// a permanent error (bad query, forbidden), otherwise RetryBase doubled per
// consecutive failure, capped at min(RetryMax, frequency), and never shorter
// than the service's Retry-After.
func (r *Runner) backoff(h Hunt, failures int, err error, slot, now time.Time) time.Duration {
	if permanent(err) {
		if next := slot.Add(h.Frequency).Sub(now); next > 0 {
			return next
		}
		return h.Frequency
	}
	limit := min(r.o.RetryMax, h.Frequency)
	delay := r.o.RetryBase
	for i := 1; i < failures && delay < limit; i++ {
		delay *= 2
	}
	delay = min(delay, limit)
	if ra := retryAfter(err); ra > delay {
		delay = ra
	}
	return delay
}

// permanent reports a failure that a retry in the same slot cannot fix:
// a 4xx other than 408/429 from the service, or an argument refused before
// sending.
func permanent(err error) bool {
	if errors.Is(err, mde.ErrInvalidArgument) {
		return true
	}
	status := 0
	var me *mde.Error
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &me):
		status = me.StatusCode
	case errors.As(err, &re):
		status = re.StatusCode
	}
	return status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout
}

// retryAfter extracts the service's Retry-After from an error, if any.
func retryAfter(err error) time.Duration {
	var me *mde.Error
	if errors.As(err, &me) && me.RetryAfter > 0 {
		return me.RetryAfter
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.RawResponse != nil {
		if secs, err := strconv.Atoi(strings.TrimSpace(re.RawResponse.Header.Get("Retry-After"))); err == nil && secs > 0 {
			return time.Duration(secs) * time.Second
		}
	}
	return 0
}

// cleanup removes findings not seen for 2×period and claims older than
// max(2×frequency, 24h).
func (r *Runner) cleanup(ctx context.Context, h Hunt, now time.Time) error {
	ents, err := r.o.Store.List(ctx, TableFindings, h.ID)
	if err != nil {
		return fmt.Errorf("listing findings: %w", err)
	}
	ttl := 2 * h.Period
	for _, e := range ents {
		var f finding
		if json.Unmarshal(e.Data, &f) == nil && now.Sub(f.LastSeen) <= ttl {
			continue
		}
		if err := r.o.Store.Delete(ctx, TableFindings, h.ID, e.RowKey, e.ETag); err != nil &&
			!errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("deleting finding: %w", err)
		}
	}
	ents, err = r.o.Store.List(ctx, TableHunts, h.ID)
	if err != nil {
		return fmt.Errorf("listing claims: %w", err)
	}
	keep := max(2*h.Frequency, 24*time.Hour)
	for _, e := range ents {
		if !strings.HasPrefix(e.RowKey, slotPrefix) {
			continue
		}
		slot, err := time.Parse(slotLayout, strings.TrimPrefix(e.RowKey, slotPrefix))
		if err != nil || now.Sub(slot) <= keep {
			continue
		}
		if err := r.o.Store.Delete(ctx, TableHunts, h.ID, e.RowKey, e.ETag); err != nil &&
			!errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("deleting claim: %w", err)
		}
	}
	return nil
}

// cleanupBudget removes CPU records older than two days.
func (r *Runner) cleanupBudget(ctx context.Context, now time.Time) {
	ents, err := r.o.Store.List(ctx, TableHunts, budgetPartition)
	if err != nil {
		return
	}
	for _, e := range ents {
		hour, err := time.Parse(budgetLayout, e.RowKey)
		if err == nil && now.Sub(hour) > 48*time.Hour {
			_ = r.o.Store.Delete(ctx, TableHunts, budgetPartition, e.RowKey, e.ETag)
		}
	}
}

// RunOne runs one hunt now, whatever its schedule and enabled flag (for
// the on-demand HTTP function). Findings are de-duplicated with the
// scheduled runs; the schedule state is not changed. The error is
// ErrUnknownHunt, ErrNotRunnable, or the run's error (also in the report).
// A spent CPU budget gives a report with Skipped and no error.
func (r *Runner) RunOne(ctx context.Context, huntID string, now time.Time) (RunReport, error) {
	now = now.UTC()
	h, ok := r.cat.Get(huntID)
	if !ok {
		return RunReport{HuntID: huntID}, fmt.Errorf("%w: %q", ErrUnknownHunt, huntID)
	}
	if ps := r.problems[h.ID]; !Runnable(ps) {
		return newReport(h, now, now), fmt.Errorf("%w: %s: %s", ErrNotRunnable, h.ID, firstErrors(ps))
	}
	if reason, err := r.budgetSpent(ctx, now); err != nil || reason != "" {
		rep := newReport(h, now, now)
		rep.Manual, rep.Skipped, rep.Err = true, reason, err
		r.logReport(rep)
		return rep, err
	}
	rep, _ := r.execute(ctx, h, now, now, true)
	r.logReport(rep)
	return rep, rep.Err
}

func (r *Runner) logReport(rep RunReport) {
	attrs := []any{
		slog.String("hunt_id", rep.HuntID), slog.Time("slot", rep.Slot), slog.Bool("manual", rep.Manual),
	}
	switch {
	case rep.Skipped != "":
		r.log.Info("hunt skipped", append(attrs, slog.String("outcome", "skipped"), slog.String("reason", rep.Skipped))...)
	case rep.Err != nil:
		r.log.Warn("hunt failed", append(attrs, slog.String("outcome", "failed"), slog.String("error", rep.Err.Error()),
			slog.Time("next_retry", rep.NextRetry))...)
	default:
		r.log.Info("hunt ran", append(attrs, slog.String("outcome", "succeeded"), slog.Int("rows", rep.TotalRows),
			slog.Int("new_rows", len(rep.NewRows)), slog.Bool("triggered", rep.Triggered),
			slog.Int64("duration_ms", rep.Duration.Milliseconds()))...)
	}
}

func firstErrors(ps []Problem) string {
	var msgs []string
	for _, p := range ps {
		if !p.Warning {
			msgs = append(msgs, p.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
