package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error classes. Every error a Channel or the Dispatcher returns matches
// exactly one of them with errors.Is: ErrTransient means "retry later" (the
// queue should redeliver), ErrPermanent means "retrying will not help"
// (record it and dead-letter with the reason).
var (
	ErrTransient = errors.New("notify: transient delivery failure")
	ErrPermanent = errors.New("notify: permanent delivery failure")
)

// Transient marks err as transient (retry later).
func Transient(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrTransient) || errors.Is(err, ErrPermanent) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}

// Permanent marks err as permanent (do not retry).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrTransient) || errors.Is(err, ErrPermanent) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// IsTransient reports whether err should be retried. Unclassified errors
// (network failures, cancelled contexts) count as transient: a notification
// is never dropped because its failure was not understood.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrTransient) {
		return true
	}
	return !errors.Is(err, ErrPermanent)
}

// StatusError is returned by the HTTP channels for a non-2xx answer. It
// matches ErrTransient for 408, 425, 429 and 5xx, and ErrPermanent for every
// other status (other 4xx; 1xx/3xx are unexpected because redirects are not
// followed).
type StatusError struct {
	Channel    string
	StatusCode int
	// RetryAfter is the server's Retry-After, zero when absent. The channel
	// does not sleep: the caller (the queue) schedules the redelivery.
	RetryAfter time.Duration
	// Body is the start of the response body, control characters removed.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s: HTTP %d %s", e.Channel, e.StatusCode, http.StatusText(e.StatusCode))
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Is makes errors.Is(err, ErrTransient) / errors.Is(err, ErrPermanent) work.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrTransient:
		return TransientStatus(e.StatusCode)
	case ErrPermanent:
		return !TransientStatus(e.StatusCode)
	}
	return false
}

// TransientStatus reports whether an HTTP status is worth retrying.
func TransientStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return true
	case code >= 500:
		return true
	}
	return false
}

// RetryAfter returns the longest Retry-After carried by err (a *StatusError
// or an errors.Join of several). ok is false when none was given.
func RetryAfter(err error) (d time.Duration, ok bool) {
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if se, isSE := e.(*StatusError); isSE && se.RetryAfter > 0 {
			if se.RetryAfter > d {
				d = se.RetryAfter
			}
			ok = true
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return d, ok
}

// parseRetryAfter reads a Retry-After header: delta-seconds or an HTTP date.
// Values are capped at one hour so a hostile server cannot park the queue.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > 3600 {
			secs = 3600
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	if d > time.Hour {
		d = time.Hour
	}
	return d
}

// classifyContext turns context and deadline errors into transient errors.
func classifyContext(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Transient(err)
	}
	return err
}
