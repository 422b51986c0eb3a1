// Package graph is the Microsoft Graph client of mdeflow: security alerts_v2
// (as an alternative alert source, mapped to the MDE entity), advanced
// hunting, and sendMail for notifications. It shares the MDE client's
// pipeline, error type and transient/permanent classification.
package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// Defaults for ClientOptions.
const (
	DefaultBaseURL = "https://graph.microsoft.com/v1.0"
	DefaultScope   = "https://graph.microsoft.com/.default"
)

// Quota families for an optional limiter. Graph publishes no per-API quota
// that mdeflow relies on, so these are unlimited unless configured in
// mde.LimitsConfig.Rates.
const (
	FamilyAlerts  mde.Family = "graphAlerts"
	FamilyHunting mde.Family = "graphHunting"
	FamilyMail    mde.Family = "graphMail"
)

// ClientOptions configures a Client; nil or the zero value means the public
// cloud endpoint and scope.
type ClientOptions struct {
	azcore.ClientOptions
	// BaseURL is the Graph root including the version, e.g. https://graph.microsoft.us/v1.0.
	BaseURL string
	// Scope is the token scope; DefaultScope unless set.
	Scope string
	// Limiter optionally spaces calls (see the Family constants).
	Limiter *mde.Limiter
	// Logger receives the client's own warnings; nil discards them.
	Logger *slog.Logger
}

// Client calls Microsoft Graph. It is safe for concurrent use.
type Client struct {
	pl   runtime.Pipeline
	base *url.URL
	log  *slog.Logger
}

// NewClient builds a Graph client on the same pipeline as the MDE client.
func NewClient(cred azcore.TokenCredential, opts *ClientOptions) (*Client, error) {
	if cred == nil {
		return nil, errors.New("creating Graph client: nil credential")
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
	base, err := url.Parse(strings.TrimRight(strings.TrimSpace(o.BaseURL), "/"))
	if err != nil {
		return nil, fmt.Errorf("creating Graph client: parsing base URL: %w", err)
	}
	if base.Scheme != "https" || base.Host == "" || base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, fmt.Errorf("creating Graph client: base URL %q: want https://host/version", o.BaseURL)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	pl := mde.NewPipeline("mdeflow/graph", cred, []string{o.Scope}, o.Limiter, &o.ClientOptions)
	return &Client{pl: pl, base: base, log: lg}, nil
}

// endpoint joins escaped path segments to the base and appends an encoded query.
func (c *Client) endpoint(q url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(c.base.Scheme + "://" + c.base.Host + c.base.EscapedPath())
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if len(q) > 0 {
		b.WriteByte('?')
		// Graph accepts %24 for "$"; spaces as %20.
		b.WriteString(strings.ReplaceAll(q.Encode(), "+", "%20"))
	}
	return b.String()
}

func (c *Client) send(ctx context.Context, op string, fam mde.Family, method, u string, body any, want []int, out any, raw *json.RawMessage) error {
	return mde.Send(mde.WithFamily(ctx, fam), c.pl, op, method, u, body, want, out, raw)
}

// IsTransient reports whether err is worth retrying later; it is
// mde.IsTransient, re-exported so Graph callers need not import mde.
func IsTransient(err error) bool { return mde.IsTransient(err) }
