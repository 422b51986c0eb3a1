package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/mdeflow/mdeflow/internal/mde"
)

type huntingBody struct {
	Query    string `json:"Query"`
	Timespan string `json:"Timespan,omitempty"`
}

// timespanRe accepts an ISO 8601 duration (P1D, PT12H, P30D) or an interval
// of two ISO 8601 date-times / a date-time and a duration separated by "/".
var timespanRe = regexp.MustCompile(`^(?:P(?:\d+[YMWD])*(?:T(?:\d+[HMS])+)?|[0-9T:.\-+Z]+/(?:[0-9T:.\-+Z]+|P[0-9YMWDTHS]+))$`)

const maxQueryLen = 100_000

// RunHuntingQuery runs KQL through POST /security/runHuntingQuery and returns
// the raw {schema, results} document. timespan is optional (an ISO 8601
// duration such as "P1D", or "start/end").
func (c *Client) RunHuntingQuery(ctx context.Context, query, timespan string) (json.RawMessage, error) {
	if strings.TrimSpace(query) == "" {
		return nil, fmt.Errorf("running Graph hunting query: %w: empty query", mde.ErrInvalidArgument)
	}
	if len(query) > maxQueryLen {
		return nil, fmt.Errorf("running Graph hunting query: %w: query longer than %d bytes", mde.ErrInvalidArgument, maxQueryLen)
	}
	if timespan != "" && (len(timespan) > 64 || timespan == "P" || !timespanRe.MatchString(timespan)) {
		return nil, fmt.Errorf("running Graph hunting query: %w: timespan %q is not an ISO 8601 duration or interval", mde.ErrInvalidArgument, timespan)
	}
	var raw json.RawMessage
	if err := c.send(ctx, "RunHuntingQuery", FamilyHunting, http.MethodPost, c.endpoint(nil, "security", "runHuntingQuery"),
		huntingBody{Query: query, Timespan: timespan}, []int{http.StatusOK}, nil, &raw); err != nil {
		return nil, fmt.Errorf("running Graph hunting query: %w", err)
	}
	return raw, nil
}
