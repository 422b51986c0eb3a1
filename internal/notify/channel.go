package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Channel delivers one rendered notification. Send must be safe to call
// again for the same notification (the Dispatcher guarantees it calls Send
// at most once per notification and channel unless the previous attempt
// failed or was interrupted). Errors are classified: errors.Is(err,
// ErrPermanent) means retrying will not help; anything else is retried.
type Channel interface {
	Name() string
	Send(ctx context.Context, n pipeline.Notification, r Rendered) error
}

// Compile-time checks that every channel implements Channel.
var (
	_ Channel = (*Outbox)(nil)
	_ Channel = (*SMTP)(nil)
	_ Channel = (*GraphMail)(nil)
	_ Channel = (*Teams)(nil)
	_ Channel = (*Webhook)(nil)
)

// channelNameRe is the shape of a channel name. It is also a store row key,
// so it must not contain '/', '\\', '#', '?' or control characters; it
// starts with a letter so it never collides with the Dispatcher's own
// "_grouped" marker row.
var channelNameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

// ValidateChannelName checks a channel name.
func ValidateChannelName(name string) error {
	if !channelNameRe.MatchString(name) {
		return fmt.Errorf("invalid channel name %q: want a letter then up to 63 letters, digits, '.', '_' or '-'", oneLine(name, 80))
	}
	return nil
}

// DefaultHTTPTimeout bounds one HTTP delivery when the caller's context has
// no earlier deadline.
const DefaultHTTPTimeout = 30 * time.Second

// newHTTPClient returns a client that never follows redirects (a redirect
// would carry a signed body or a secret URL to another host) and has a
// timeout.
func newHTTPClient(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{
		Timeout: DefaultHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// validateEndpoint accepts https URLs, and http only on a loopback host (for
// tests and local runs).
func validateEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("endpoint URL does not parse")
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		return nil, errors.New("endpoint URL must be https (http only on loopback)")
	}
	if u.User != nil {
		return nil, errors.New("endpoint URL must not carry user info")
	}
	return u, nil
}

// postJSON posts body and maps the answer: 2xx nil, otherwise *StatusError
// (transient for 408/425/429/5xx with Retry-After, permanent for the rest).
// Transport errors are transient. The URL never appears in errors: webhook
// URLs carry secrets (Teams Workflows URLs hold a SAS signature).
func postJSON(ctx context.Context, client *http.Client, channel, endpoint string, body []byte, headers http.Header, now func() time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("%s: building request: %w", channel, redactURLError(err)))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "mdeflow-notify/1")
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Transient(fmt.Errorf("%s: posting: %w", channel, redactURLError(err)))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &StatusError{
		Channel:    channel,
		StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now()),
		Body:       oneLine(string(snippet), 300),
	}
}

// redactURLError drops the URL from a *url.Error (it may hold a secret).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// recipientsOf returns the notification's own recipients (valid bare
// addresses only) when it names any, else the channel's configured ones.
func recipientsOf(n pipeline.Notification, configured []string) []string {
	var out []string
	for _, r := range n.Recipients {
		if a, err := mail.ParseAddress(r); err == nil && a.Name == "" && a.Address == r {
			out = append(out, r)
		}
	}
	if len(n.Recipients) > 0 {
		return out // named recipients never fall back to the wider list
	}
	return append([]string(nil), configured...)
}
