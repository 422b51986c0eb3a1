package localhost

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule yields the occurrences of a timer trigger. Next returns the first
// occurrence strictly after t, or the zero time when there is none.
type Schedule interface {
	Next(t time.Time) time.Time
}

// ncrontabParser accepts the six-field NCRONTAB form the Functions host uses
// ({second} {minute} {hour} {day} {month} {day-of-week}, names allowed) and,
// as an extension the real host does not have, "@every"-style descriptors.
var ncrontabParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a timerTrigger schedule: an NCRONTAB expression or a
// TimeSpan ("hh:mm:ss", allowed on App Service plans), evaluated in loc (UTC
// unless WEBSITE_TIME_ZONE says otherwise). It returns a warning text for
// inputs the local host accepts but the Azure host would not.
func ParseSchedule(expr string, loc *time.Location) (Schedule, string, error) {
	if loc == nil {
		loc = time.UTC
	}
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, "", fmt.Errorf("parsing schedule: empty")
	}
	if !strings.ContainsAny(expr, " \t") && strings.Contains(expr, ":") {
		d, err := parseTimeSpan(expr)
		if err != nil {
			return nil, "", fmt.Errorf("parsing schedule %q as TimeSpan: %w", expr, err)
		}
		if d <= 0 {
			return nil, "", fmt.Errorf("parsing schedule %q: TimeSpan must be positive", expr)
		}
		return constantSchedule{every: d}, "", nil
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, "", fmt.Errorf("parsing schedule %q: a time-zone prefix is not NCRONTAB; set WEBSITE_TIME_ZONE instead", expr)
	}
	warn := ""
	if strings.HasPrefix(expr, "@") {
		warn = fmt.Sprintf("schedule %q uses a cron descriptor: the Azure Functions host only accepts six-field NCRONTAB expressions", expr)
		s, err := ncrontabParser.Parse(expr)
		if err != nil {
			return nil, "", fmt.Errorf("parsing schedule %q: %w", expr, err)
		}
		if spec, ok := s.(*cron.SpecSchedule); ok {
			spec.Location = loc
		}
		return s, warn, nil
	}
	fields := strings.Fields(expr)
	if len(fields) != 6 {
		return nil, "", fmt.Errorf("parsing schedule %q: NCRONTAB needs 6 fields ({second} {minute} {hour} {day} {month} {day-of-week}), got %d", expr, len(fields))
	}
	parse := func(f []string) (*cron.SpecSchedule, error) {
		s, err := ncrontabParser.Parse(strings.Join(f, " "))
		if err != nil {
			return nil, fmt.Errorf("parsing schedule %q: %w", expr, err)
		}
		spec := s.(*cron.SpecSchedule) // six fields always give a SpecSchedule
		spec.Location = loc
		return spec, nil
	}
	full, err := parse(fields)
	if err != nil {
		return nil, "", err
	}
	star := func(f string) bool { return f == "*" || f == "?" }
	if star(fields[3]) || star(fields[5]) {
		return full, "", nil
	}
	// Both day fields are restricted. Vixie cron (and robfig/cron) fire when
	// either matches; NCRONTAB requires both (CrontabSchedule checks the
	// day-of-week after the day-of-month). Walk the day-of-month schedule and
	// keep occurrences whose weekday the day-of-week schedule accepts.
	domOnly := append([]string(nil), fields...)
	domOnly[5] = "*"
	dowOnly := append([]string(nil), fields...)
	dowOnly[3] = "*"
	ds, err := parse(domOnly)
	if err != nil {
		return nil, "", err
	}
	ws, err := parse(dowOnly)
	if err != nil {
		return nil, "", err
	}
	return bothDays{dom: ds, dow: ws}, "", nil
}

// constantSchedule is a TimeSpan schedule: one occurrence every interval.
type constantSchedule struct{ every time.Duration }

func (c constantSchedule) Next(t time.Time) time.Time { return t.Add(c.every) }

// bothDays intersects a day-of-month and a day-of-week schedule.
type bothDays struct{ dom, dow *cron.SpecSchedule }

func (b bothDays) Next(t time.Time) time.Time {
	// 28 years repeat the weekday/date pattern; 400 candidates per year is far
	// more than any six-field expression with a restricted day produces.
	for range 28 * 12 * 31 {
		c := b.dom.Next(t)
		if c.IsZero() {
			return c
		}
		if b.dow.Next(c.Add(-time.Second)).Equal(c) {
			return c
		}
		// Skip the rest of this day: the weekday cannot change within it.
		y, m, d := c.In(b.dom.Location).Date()
		t = time.Date(y, m, d, 23, 59, 59, 0, b.dom.Location)
	}
	return time.Time{}
}

// timeZone resolves WEBSITE_TIME_ZONE (an IANA name, as on Linux plans).
func timeZone(lookup func(string) (string, bool)) (*time.Location, error) {
	name, ok := lookup("WEBSITE_TIME_ZONE")
	if !ok || strings.TrimSpace(name) == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(strings.TrimSpace(name))
	if err != nil {
		return nil, fmt.Errorf("loading WEBSITE_TIME_ZONE %q (use an IANA name such as Europe/Berlin): %w", name, err)
	}
	return loc, nil
}
