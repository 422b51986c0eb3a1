package mde

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Family groups the API calls that share one documented quota (defender-api.md §6.1).
type Family string

// Quota families used by the client.
const (
	FamilyAlerts     Family = "alerts"     // list/get/update alerts
	FamilyMachines   Family = "machines"   // list/get machines, tags
	FamilyActions    Family = "actions"    // isolate, scan, ..., list/get/cancel machine actions
	FamilyHunting    Family = "hunting"    // advancedqueries/run
	FamilyPackageURI Family = "packageUri" // machineactions/{id}/getPackageUri
)

// Rate is "N calls per Per".
type Rate struct {
	N   int
	Per time.Duration
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Per) }

// DefaultRates returns the documented per-tenant quotas.
func DefaultRates() map[Family][]Rate {
	std := []Rate{{100, time.Minute}, {1500, time.Hour}}
	return map[Family][]Rate{
		FamilyAlerts:     std,
		FamilyMachines:   std,
		FamilyActions:    std,
		FamilyHunting:    {{45, time.Minute}, {1500, time.Hour}},
		FamilyPackageURI: {{2, time.Minute}, {120, time.Hour}},
	}
}

// LimitsConfig configures a Limiter.
type LimitsConfig struct {
	// Instances is how many processes share the tenant's quota (Function App
	// instances). Each gets 1/Instances of it. 0 means 1.
	Instances int
	// Share is the fraction of each quota this application may use, in (0, 1].
	// 0 means 0.9: the margin absorbs request latency jitter and other tools
	// that use the same app registration.
	Share float64
	// Rates replaces the documented quotas of the families it names; other
	// families keep DefaultRates. A family with an empty slice is unlimited.
	Rates map[Family][]Rate
}

// Limiter keeps calls under the per-tenant quotas so that normal operation
// never sees a 429. It holds, for each family, one token bucket per quota
// window (per minute and per hour) and a call waits on all of them. A nil
// *Limiter does not limit.
//
// A token bucket with burst b and rate r lets through at most b + r·W calls
// in any window W, so each bucket is sized b = max(1, N/10), r = (N-b)/W to
// stay under a sliding-window quota of N per W (after Share and Instances).
type Limiter struct {
	families map[Family]*familyLimiter
}

type familyLimiter struct {
	rates []Rate // effective per-instance quota, for diagnostics
	lims  []*rate.Limiter

	mu          sync.Mutex
	pausedUntil time.Time
}

// NewLimiter builds a Limiter; cfg's zero value gives the documented quotas
// for a single instance.
func NewLimiter(cfg LimitsConfig) (*Limiter, error) {
	var errs []error
	if cfg.Instances < 0 {
		errs = append(errs, fmt.Errorf("instances must be >= 1, got %d", cfg.Instances))
	}
	if cfg.Instances == 0 {
		cfg.Instances = 1
	}
	if cfg.Share == 0 {
		cfg.Share = 0.9
	}
	if cfg.Share < 0 || cfg.Share > 1 || math.IsNaN(cfg.Share) {
		errs = append(errs, fmt.Errorf("share must be in (0, 1], got %v", cfg.Share))
	}
	rates := DefaultRates()
	for f, rs := range cfg.Rates {
		rates[f] = rs
	}
	l := &Limiter{families: make(map[Family]*familyLimiter, len(rates))}
	fams := make([]string, 0, len(rates))
	for f := range rates {
		fams = append(fams, string(f))
	}
	sort.Strings(fams) // deterministic error order
	for _, name := range fams {
		f := Family(name)
		fl := &familyLimiter{}
		for _, r := range rates[f] {
			if r.N <= 0 || r.Per <= 0 {
				errs = append(errs, fmt.Errorf("family %s: invalid rate %s", f, r))
				continue
			}
			eff := float64(r.N) * cfg.Share / float64(cfg.Instances)
			burst := int(math.Max(1, math.Floor(eff/10)))
			perSec := (eff - float64(burst)) / r.Per.Seconds()
			if perSec <= 0 {
				// Less than about two calls per window per instance: the
				// quota cannot be honoured exactly; refill slowly.
				perSec = eff / 2 / r.Per.Seconds()
			}
			fl.lims = append(fl.lims, rate.NewLimiter(rate.Limit(perSec), burst))
			fl.rates = append(fl.rates, Rate{N: int(math.Max(1, math.Floor(eff))), Per: r.Per})
		}
		l.families[f] = fl
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuring API quotas: %w", errors.Join(errs...))
	}
	return l, nil
}

// Rates returns the effective per-instance quotas of a family (for logs and
// the check subcommand).
func (l *Limiter) Rates(f Family) []Rate {
	if l == nil || l.families[f] == nil {
		return nil
	}
	return append([]Rate(nil), l.families[f].rates...)
}

// Wait blocks until a call of family f may be sent, or returns an error
// wrapping ctx's error (context.DeadlineExceeded when the wait would outlast
// the deadline, so the caller can give the message back for later).
func (l *Limiter) Wait(ctx context.Context, f Family) error {
	if l == nil {
		return nil
	}
	fl := l.families[f]
	if fl == nil || len(fl.lims) == 0 {
		return nil
	}
	fl.mu.Lock()
	until := fl.pausedUntil
	fl.mu.Unlock()
	if d := time.Until(until); d > 0 {
		if err := sleep(ctx, d); err != nil {
			return fmt.Errorf("waiting for %s quota after throttling: %w", f, err)
		}
	}
	// Reserve under the family lock with a "now" read inside it: rate.Limiter
	// mints extra tokens when reservations arrive with out-of-order times,
	// which concurrent callers reading the clock before the limiter's own lock
	// would produce.
	fl.mu.Lock()
	now := time.Now()
	res := make([]*rate.Reservation, 0, len(fl.lims))
	var delay time.Duration
	for _, lim := range fl.lims {
		r := lim.ReserveN(now, 1)
		if !r.OK() {
			fl.cancelLocked(res)
			fl.mu.Unlock()
			return fmt.Errorf("waiting for %s quota: burst exceeded", f)
		}
		res = append(res, r)
		delay = max(delay, r.DelayFrom(now))
	}
	if dl, ok := ctx.Deadline(); ok && delay > 0 && now.Add(delay).After(dl) {
		fl.cancelLocked(res)
		fl.mu.Unlock()
		return fmt.Errorf("waiting %s for %s quota: %w", delay.Round(time.Millisecond), f, context.DeadlineExceeded)
	}
	fl.mu.Unlock()
	if delay == 0 {
		return nil
	}
	if err := sleep(ctx, delay); err != nil {
		fl.mu.Lock()
		fl.cancelLocked(res)
		fl.mu.Unlock()
		return fmt.Errorf("waiting for %s quota: %w", f, err)
	}
	return nil
}

// cancelLocked gives back unused reservations; the time passed is read
// under fl.mu so that it is never older than the limiter's last update.
func (fl *familyLimiter) cancelLocked(res []*rate.Reservation) {
	now := time.Now()
	for _, r := range res {
		r.CancelAt(now)
	}
}

// Pause holds back every call of family f for d (used when the service
// throttles anyway, so that concurrent callers do not pile more 429s on).
func (l *Limiter) Pause(f Family, d time.Duration) {
	if l == nil || d <= 0 {
		return
	}
	fl := l.families[f]
	if fl == nil {
		return
	}
	until := time.Now().Add(d)
	fl.mu.Lock()
	if until.After(fl.pausedUntil) {
		fl.pausedUntil = until
	}
	fl.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
