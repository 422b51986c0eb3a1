package mde

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Defaults for ClientOptions.
const (
	DefaultBaseURL = "https://api.securitycenter.microsoft.com"
	DefaultScope   = "https://api.securitycenter.microsoft.com/.default"

	moduleName    = "mdeflow/mde"
	moduleVersion = "v0.1.0"
)

// ClientOptions configures a Client. The zero value (or nil) gives the global
// commercial endpoint, the documented token scope and no client-side quota.
type ClientOptions struct {
	azcore.ClientOptions
	// BaseURL is the API root without /api, e.g. https://eu.api.security.microsoft.com.
	BaseURL string
	// Scope is the token scope; DefaultScope unless set.
	Scope string
	// Limiter keeps calls under the tenant quotas; nil means no client-side limit.
	Limiter *Limiter
	// Logger receives the client's own warnings; nil discards them.
	Logger *slog.Logger
}

// Client calls the Defender for Endpoint API. It is safe for concurrent use.
type Client struct {
	pl   runtime.Pipeline
	base *url.URL // scheme://host[/prefix], no trailing slash
	log  *slog.Logger
}

// NewClient builds a client on an azcore pipeline: bearer token from cred,
// the SDK retry policy (408, 429, 5xx; honours Retry-After) and, when
// opts.Limiter is set, a per-try quota wait.
func NewClient(cred azcore.TokenCredential, opts *ClientOptions) (*Client, error) {
	if cred == nil {
		return nil, errors.New("creating MDE client: nil credential")
	}
	o := ClientOptions{}
	if opts != nil {
		o = *opts
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.Scope == "" {
		o.Scope = DefaultScope
	}
	base, err := parseBaseURL(o.BaseURL, "/api")
	if err != nil {
		return nil, fmt.Errorf("creating MDE client: %w", err)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	pl := NewPipeline(moduleName, cred, []string{o.Scope}, o.Limiter, &o.ClientOptions)
	return &Client{pl: pl, base: base, log: lg}, nil
}

// NewPipeline builds the azcore pipeline shared by the MDE and Graph
// clients: the SDK retry policy with the status codes the services throttle
// and fail with, then per try the bearer-token policy and the quota wait
// (when limiter is non-nil).
func NewPipeline(module string, cred azcore.TokenCredential, scopes []string, limiter *Limiter, co *azcore.ClientOptions) runtime.Pipeline {
	c := policy.ClientOptions{}
	if co != nil {
		c = *co
	}
	if c.Retry.StatusCodes == nil {
		c.Retry.StatusCodes = []int{
			http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		}
	}
	// The quota wait sits after the bearer policy, right before the wire:
	// requests that queued behind a token fetch would otherwise reach the
	// service in a clump, above the rate the limiter let through.
	perRetry := []policy.Policy{runtime.NewBearerTokenPolicy(cred, scopes, nil)}
	if limiter != nil {
		perRetry = append(perRetry, &quotaPolicy{limiter: limiter})
	}
	return runtime.NewPipeline(module, moduleVersion, runtime.PipelineOptions{
		PerRetry: perRetry,
		// Query parameters are OData expressions with ids, not secrets; keeping
		// them makes retry logs useful.
		AllowedQueryParameters: []string{"$filter", "$top", "$skip", "$expand", "$orderby", "$skiptoken"},
		AllowedHeaders:         []string{"Retry-After", "retry-after-ms"},
	}, &c)
}

// quotaPolicy waits on the family's limiter before every try and pauses the
// family when the service throttles anyway.
type quotaPolicy struct{ limiter *Limiter }

type familyKey struct{}

// WithFamily tags ctx with the quota family of the request about to be sent.
func WithFamily(ctx context.Context, f Family) context.Context {
	return context.WithValue(ctx, familyKey{}, f)
}

func (p *quotaPolicy) Do(req *policy.Request) (*http.Response, error) {
	f, _ := req.Raw().Context().Value(familyKey{}).(Family)
	if f != "" {
		if err := p.limiter.Wait(req.Raw().Context(), f); err != nil {
			return nil, err
		}
	}
	resp, err := req.Next()
	if err == nil && resp.StatusCode == http.StatusTooManyRequests && f != "" {
		d := retryAfter(resp.Header)
		if d == 0 {
			d = time.Second
		}
		p.limiter.Pause(f, d)
	}
	return resp, err
}

// parseBaseURL checks an https API root and strips a trailing apiSuffix
// ("/api" for MDE) so that both forms of the setting work.
func parseBaseURL(raw, apiSuffix string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing base URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want https://host[/path]", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("base URL %q: must not carry a query, fragment or user info", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if apiSuffix != "" {
		u.Path = strings.TrimSuffix(u.Path, apiSuffix)
	}
	u.RawPath = ""
	return u, nil
}

// endpoint joins the base with escaped path segments and an OData query.
// Ids must have been validated already; escaping is a second line of defence.
func (c *Client) endpoint(q query, segments ...string) string {
	return joinURL(c.base, q, append([]string{"api"}, segments...)...)
}

func joinURL(base *url.URL, q query, segments ...string) string {
	var b strings.Builder
	b.WriteString(base.Scheme)
	b.WriteString("://")
	b.WriteString(base.Host)
	b.WriteString(base.EscapedPath())
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if enc := q.encode(); enc != "" {
		b.WriteByte('?')
		b.WriteString(enc)
	}
	return b.String()
}

// query is an ordered list of OData query options.
type query [][2]string

func (q query) add(k, v string) query { return append(q, [2]string{k, v}) }

// encode writes "$filter=a%20eq%20'b'": literal "$" names (what the docs and
// every client send), %20 for spaces, and OData punctuation (' ( ) , : /)
// left readable. Everything that could end or alter the query (& = + # %
// ; and non-ASCII) is percent-encoded.
func (q query) encode() string {
	parts := make([]string, 0, len(q))
	for _, kv := range q {
		parts = append(parts, kv[0]+"="+escapeQueryValue(kv[1]))
	}
	return strings.Join(parts, "&")
}

func escapeQueryValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~'(),:/*!@$", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// odataString quotes s as an OData string literal.
func odataString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// odataTime formats t as an unquoted OData DateTimeOffset in UTC.
func odataTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.9999999Z")
}

// send runs one request through the pipeline. body (if non-nil) is sent as
// JSON; out (if non-nil) receives the decoded 2xx answer; raw (if non-nil)
// receives the undecoded body.
func (c *Client) send(ctx context.Context, op string, fam Family, method, u string, body any, want []int, out any, raw *json.RawMessage) error {
	return Send(WithFamily(ctx, fam), c.pl, op, method, u, body, want, out, raw)
}

// Send is the request helper shared with the Graph client. A response whose
// status is not in want becomes an *Error.
func Send(ctx context.Context, pl runtime.Pipeline, op, method, u string, body any, want []int, out any, raw *json.RawMessage) error {
	req, err := runtime.NewRequest(ctx, method, u)
	if err != nil {
		return err
	}
	req.Raw().Header.Set("Accept", "application/json")
	if body != nil {
		if err := runtime.MarshalAsJSON(req, body); err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
	}
	resp, err := pl.Do(req)
	if err != nil {
		return err
	}
	if !runtime.HasStatusCode(resp, want...) {
		return NewResponseError(op, resp)
	}
	defer resp.Body.Close()
	if out == nil && raw == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	b, err := runtime.Payload(resp)
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if raw != nil {
		if !json.Valid(b) {
			return fmt.Errorf("decoding response: %w", errInvalidJSON)
		}
		*raw = append(json.RawMessage(nil), b...)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decoding response: %w", err)
		}
	}
	return nil
}

var errInvalidJSON = errors.New("response is not valid JSON")

// RouteAzcoreLog sends the Azure SDK's log events (requests, responses,
// retries, token acquisition) to logger: retries and auth at Info, response
// errors at Warn, requests/responses at Debug. azcore redacts the
// Authorization header and query values not allowed explicitly. A nil logger
// switches SDK logging off. It sets a process-wide hook: call it from main.
func RouteAzcoreLog(logger *slog.Logger) {
	if logger == nil {
		azlog.SetListener(nil)
		return
	}
	azlog.SetEvents(azlog.EventRequest, azlog.EventResponse, azlog.EventResponseError,
		azlog.EventRetryPolicy, azidentity.EventAuthentication)
	azlog.SetListener(func(ev azlog.Event, msg string) {
		lvl := slog.LevelDebug
		switch ev {
		case azlog.EventResponseError:
			lvl = slog.LevelWarn
		case azlog.EventRetryPolicy:
			// "=====> Try=1" on every request: Debug; actual retries stand out
			// through the response errors at Warn.
			lvl = slog.LevelDebug
		case azidentity.EventAuthentication:
			lvl = slog.LevelInfo
		}
		if !logger.Enabled(context.Background(), lvl) {
			return
		}
		logger.Log(context.Background(), lvl, "azure sdk", slog.String("sdk_event", string(ev)), slog.String("sdk_message", msg))
	})
}
