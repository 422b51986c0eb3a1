package sim

import (
	"fmt"
	"net/http"
	"time"
)

// API families with their own call quotas (defender-api.md §6.1). The
// simulator counts per tenant: the docs say so for hunting and are silent
// for the rest [GAP].
const (
	famAlerts   = "alerts"
	famMachines = "machines"
	famActions  = "actions"
	famHunting  = "hunting"
	// famGraphHunting is Graph runHuntingQuery, which documents the
	// advanced-hunting limits; it is counted apart from the MDE API.
	famGraphHunting = "graphHunting"
)

type limit struct {
	n      int
	window time.Duration
}

var familyLimits = map[string][]limit{
	famAlerts:       {{100, time.Minute}, {1500, time.Hour}},
	famMachines:     {{100, time.Minute}, {1500, time.Hour}},
	famActions:      {{100, time.Minute}, {1500, time.Hour}},
	famHunting:      {{45, time.Minute}, {1500, time.Hour}},
	famGraphHunting: {{45, time.Minute}, {1500, time.Hour}},
}

// quotas keeps the accepted call times per family (sliding windows). A call
// refused with 429 is not counted, so Retry-After is exact.
type quotas struct {
	hits map[string][]time.Time
}

func newQuotas() *quotas { return &quotas{hits: map[string][]time.Time{}} }

// take records a call at now, or returns the 429 to send. Caller holds s.mu.
func (q *quotas) take(family string, now time.Time) *apiError {
	lims := familyLimits[family]
	if len(lims) == 0 {
		return nil
	}
	longest := lims[len(lims)-1].window
	hs := q.hits[family]
	// Drop hits older than the longest window.
	cut := 0
	for cut < len(hs) && !hs[cut].After(now.Add(-longest)) {
		cut++
	}
	hs = hs[cut:]
	for _, l := range lims {
		from := now.Add(-l.window)
		first := -1
		n := 0
		for i, t := range hs {
			if t.After(from) {
				if first < 0 {
					first = i
				}
				n++
			}
		}
		if n >= l.n {
			// The call is allowed again once the (n-l.n+1)-th oldest hit in
			// the window leaves it.
			oldest := hs[first+n-l.n]
			wait := oldest.Add(l.window).Sub(now)
			if wait < time.Second {
				wait = time.Second
			}
			code := "TooManyRequests"
			if family == famHunting {
				code = "429" // observed on advancedqueries/run (issue #4616)
			}
			q.hits[family] = hs
			return &apiError{
				Status:     http.StatusTooManyRequests,
				Code:       code,
				Message:    fmt.Sprintf("API calls quota exceeded! maximum allowed %d per %s", l.n, fmtWindow(l.window)),
				RetryAfter: wait,
			}
		}
	}
	q.hits[family] = append(hs, now)
	return nil
}

// fmtWindow renders a window as .NET TimeSpan text: 00:01:00, 01:00:00.
func fmtWindow(d time.Duration) string {
	h := int(d / time.Hour)
	m := int(d % time.Hour / time.Minute)
	s := int(d % time.Minute / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}
