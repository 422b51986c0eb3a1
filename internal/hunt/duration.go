package hunt

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads the durations found in hunt files: Sentinel's "5m",
// "1h", "1d", "14d" (also compound "1d12h", "90s"), and ISO-8601 "PT1H",
// "P1D", "P1DT12H", "P2W". Months and years are refused (their length is not
// fixed). Zero and negative durations are refused: a hunt period of zero
// makes no sense.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("parsing duration: empty")
	}
	var d time.Duration
	var err error
	if in[0] == 'P' || in[0] == 'p' {
		d, err = parseISODuration(in)
	} else {
		d, err = parseShortDuration(in)
	}
	if err != nil {
		return 0, fmt.Errorf("parsing duration %q: %w", s, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("parsing duration %q: must be positive", s)
	}
	return d, nil
}

var shortUnits = map[string]time.Duration{
	"ms": time.Millisecond,
	"s":  time.Second,
	"m":  time.Minute,
	"h":  time.Hour,
	"d":  24 * time.Hour,
	"w":  7 * 24 * time.Hour,
}

// parseShortDuration reads one or more <number><unit> groups.
func parseShortDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := strings.ToLower(s)
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("expected a number at %q", rest)
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
			j++
		}
		unit, ok := shortUnits[rest[:j]]
		if !ok {
			return 0, fmt.Errorf("unknown unit %q (use ms, s, m, h, d or w)", rest[:j])
		}
		rest = rest[j:]
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", num)
		}
		if v > float64(1<<62)/float64(unit) {
			return 0, fmt.Errorf("too large")
		}
		total += time.Duration(v * float64(unit))
	}
	return total, nil
}

// parseISODuration reads P[nW][nD][T[nH][nM][nS]].
func parseISODuration(s string) (time.Duration, error) {
	rest := strings.ToUpper(s[1:])
	if rest == "" {
		return 0, fmt.Errorf("no components")
	}
	var total time.Duration
	inTime := false
	seen := 0
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, fmt.Errorf("repeated T")
			}
			inTime = true
			rest = rest[1:]
			if rest == "" {
				return 0, fmt.Errorf("T without components")
			}
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.' || rest[i] == ',') {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("expected <number><designator> at %q", rest)
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(rest[:i], ",", "."), 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", rest[:i])
		}
		var unit time.Duration
		switch c := rest[i]; {
		case !inTime && c == 'W':
			unit = 7 * 24 * time.Hour
		case !inTime && c == 'D':
			unit = 24 * time.Hour
		case !inTime && (c == 'Y' || c == 'M'):
			return 0, fmt.Errorf("years and months have no fixed length")
		case inTime && c == 'H':
			unit = time.Hour
		case inTime && c == 'M':
			unit = time.Minute
		case inTime && c == 'S':
			unit = time.Second
		default:
			return 0, fmt.Errorf("unexpected designator %q", string(c))
		}
		if v > float64(1<<62)/float64(unit) {
			return 0, fmt.Errorf("too large")
		}
		total += time.Duration(v * float64(unit))
		seen++
		rest = rest[i+1:]
	}
	if seen == 0 {
		return 0, fmt.Errorf("no components")
	}
	return total, nil
}

// ISODuration formats d as an ISO-8601 duration ("P1D", "PT1H", "P1DT12H"),
// the form Microsoft Graph runHuntingQuery takes as Timespan. Fractions of
// a second are rounded up (the API takes whole numbers).
func ISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	var b strings.Builder
	b.WriteString("P")
	day := 24 * time.Hour
	if days := d / day; days > 0 {
		fmt.Fprintf(&b, "%dD", days)
		d -= days * day
	}
	if d == 0 {
		return b.String()
	}
	b.WriteString("T")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	if d > 0 {
		fmt.Fprintf(&b, "%dS", d/time.Second)
	}
	return b.String()
}

// KQLTimespan formats d as a KQL timespan literal ("1d", "90m", "30s"),
// using the largest unit that divides it exactly.
func KQLTimespan(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d <= 0:
		return "0s"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
}

// humanDuration prints a duration the way hunt files write them ("1d",
// "1h", "90m"), for messages and the check output.
func humanDuration(d time.Duration) string { return KQLTimespan(d) }
