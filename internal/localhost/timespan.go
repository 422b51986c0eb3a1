package localhost

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseTimeSpan parses a .NET TimeSpan in the invariant "c" format the
// Functions host reads from host.json and function.json:
// [-]d | [-][d.]hh:mm[:ss[.fffffff]]. A bare integer is a number of days, as
// in .NET ("10" is ten days, not ten seconds).
func parseTimeSpan(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("parsing TimeSpan %q: empty", in)
	}
	neg := false
	if strings.HasPrefix(s, "-") {
		neg = true
		s = s[1:]
	}
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("parsing TimeSpan %q: %s (want [d.]hh:mm:ss)", in, why)
	}
	var d time.Duration
	if !strings.Contains(s, ":") {
		days, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad("not a number of days")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		parts := strings.Split(s, ":")
		if len(parts) > 3 {
			return bad("too many ':'")
		}
		head := parts[0]
		var days uint64
		if i := strings.IndexByte(head, '.'); i >= 0 {
			v, err := strconv.ParseUint(head[:i], 10, 32)
			if err != nil {
				return bad("bad day count")
			}
			days, head = v, head[i+1:]
		}
		hours, err := strconv.ParseUint(head, 10, 8)
		if err != nil || hours > 23 {
			return bad("hours must be 0-23")
		}
		minutes, err := strconv.ParseUint(parts[1], 10, 8)
		if err != nil || minutes > 59 {
			return bad("minutes must be 0-59")
		}
		var secs, frac time.Duration
		if len(parts) == 3 {
			sec := parts[2]
			if i := strings.IndexByte(sec, '.'); i >= 0 {
				f := sec[i+1:]
				if f == "" || len(f) > 7 {
					return bad("fraction must have 1-7 digits")
				}
				v, err := strconv.ParseUint(f, 10, 32)
				if err != nil {
					return bad("bad fraction")
				}
				// 7 digits are ticks of 100 ns.
				frac = time.Duration(v) * 100 * time.Nanosecond
				for n := len(f); n < 7; n++ {
					frac *= 10
				}
				sec = sec[:i]
			}
			v, err := strconv.ParseUint(sec, 10, 8)
			if err != nil || v > 59 {
				return bad("seconds must be 0-59")
			}
			secs = time.Duration(v) * time.Second
		}
		d = time.Duration(days)*24*time.Hour + time.Duration(hours)*time.Hour +
			time.Duration(minutes)*time.Minute + secs + frac
	}
	if neg {
		d = -d
	}
	return d, nil
}

// formatTimeSpan writes d the way .NET prints a TimeSpan ("c" format).
func formatTimeSpan(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	d -= s * time.Second
	out := sign
	if days > 0 {
		out += fmt.Sprintf("%d.", days)
	}
	out += fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	if ticks := d / 100; ticks > 0 {
		out += fmt.Sprintf(".%07d", ticks)
	}
	return out
}
