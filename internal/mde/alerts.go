package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Alert status, classification and determination values accepted by
// PATCH /api/alerts/{id} (update-alert.md, alerts.md).
const (
	StatusNew        = "New"
	StatusInProgress = "InProgress"
	StatusResolved   = "Resolved"

	ClassificationTruePositive                  = "TruePositive"
	ClassificationInformationalExpectedActivity = "InformationalExpectedActivity"
	ClassificationFalsePositive                 = "FalsePositive"
)

// determinations maps each classification to its valid determinations. Both
// spellings of the two contested values are accepted (ConfirmedUserActivity /
// ConfirmedActivity, Clean / NotMalicious: defender-api.md §2.4) and sent as
// given.
var determinations = map[string][]string{
	ClassificationTruePositive: {"MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser",
		"Malware", "Phishing", "UnwantedSoftware", "Other"},
	ClassificationInformationalExpectedActivity: {"SecurityTesting", "LineOfBusinessApplication",
		"ConfirmedUserActivity", "ConfirmedActivity", "Other"},
	ClassificationFalsePositive: {"Clean", "NotMalicious", "InsufficientData", "Other"},
}

// ListAlertsOptions selects alerts for ListAlerts.
type ListAlertsOptions struct {
	// Filter is a raw OData $filter expression, ANDed with the time bounds
	// below. It is the caller's text: never build it from alert data.
	Filter string
	// CreatedAfter adds "alertCreationTime gt …" when non-zero.
	CreatedAfter time.Time
	// UpdatedAfter adds "lastUpdateTime gt …" when non-zero.
	UpdatedAfter time.Time
	// Top caps the number of alerts returned, like OData $top over the whole
	// list. 0 means no cap.
	Top int
	// PageSize is the $top of each request (default 1000, max 10000).
	PageSize int
	// ExpandEvidence adds $expand=evidence.
	ExpandEvidence bool
	// OrderBy is a raw $orderby, e.g. "alertCreationTime asc".
	OrderBy string
	// MaxResults is a safety cap on the number of alerts returned; with Top
	// the smaller non-zero value wins.
	MaxResults int
}

// ListAlerts returns the alerts matching opts, following pages.
func (c *Client) ListAlerts(ctx context.Context, opts *ListAlertsOptions) ([]Alert, error) {
	o := ListAlertsOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Top < 0 || o.PageSize < 0 || o.MaxResults < 0 {
		return nil, fmt.Errorf("listing alerts: %w", invalidArg(errors.New("negative Top, PageSize or MaxResults")))
	}
	var conds []string
	if f := strings.TrimSpace(o.Filter); f != "" {
		conds = append(conds, "("+f+")")
	}
	if !o.CreatedAfter.IsZero() {
		conds = append(conds, "alertCreationTime gt "+odataTime(o.CreatedAfter))
	}
	if !o.UpdatedAfter.IsZero() {
		conds = append(conds, "lastUpdateTime gt "+odataTime(o.UpdatedAfter))
	}
	var q query
	if len(conds) > 0 {
		q = q.add("$filter", strings.Join(conds, " and "))
	}
	if o.OrderBy != "" {
		q = q.add("$orderby", o.OrderBy)
	}
	if o.ExpandEvidence {
		q = q.add("$expand", "evidence")
	}
	limit := o.Top
	if o.MaxResults > 0 && (limit == 0 || o.MaxResults < limit) {
		limit = o.MaxResults
	}
	alerts, err := list(ctx, c, listSpec[Alert]{
		op: "ListAlerts", fam: FamilyAlerts, segments: []string{"alerts"}, q: q,
		pageSize: o.PageSize, limit: limit, key: func(a Alert) string { return a.ID },
	})
	if err != nil {
		return alerts, fmt.Errorf("listing alerts: %w", err)
	}
	return alerts, nil
}

// GetAlert fetches one alert; errors.Is(err, ErrNotFound) when it does not exist.
func (c *Client) GetAlert(ctx context.Context, id string, expandEvidence bool) (*Alert, error) {
	if err := ValidateAlertID(id); err != nil {
		return nil, fmt.Errorf("getting alert: %w", err)
	}
	var q query
	if expandEvidence {
		q = q.add("$expand", "evidence")
	}
	var a Alert
	if err := c.send(ctx, "GetAlert", FamilyAlerts, http.MethodGet, c.endpoint(q, "alerts", id), nil, []int{http.StatusOK}, &a, nil); err != nil {
		return nil, fmt.Errorf("getting alert %s: %w", id, err)
	}
	return &a, nil
}

// AlertUpdate is the body of PATCH /api/alerts/{id}. Empty fields are left
// unchanged. Enum values are matched case-insensitively and sent in their
// canonical spelling.
type AlertUpdate struct {
	Status         string
	AssignedTo     string
	Classification string
	Determination  string
	Comment        string
}

// alertUpdateBody is the wire form: lower camelCase, as the docs' example and
// the connector send it.
type alertUpdateBody struct {
	Status         string `json:"status,omitempty"`
	AssignedTo     string `json:"assignedTo,omitempty"`
	Classification string `json:"classification,omitempty"`
	Determination  string `json:"determination,omitempty"`
	Comment        string `json:"comment,omitempty"`
}

// Validate checks the enums and their combination and returns the wire body.
func (u AlertUpdate) validate() (alertUpdateBody, error) {
	var errs []error
	b := alertUpdateBody{AssignedTo: u.AssignedTo, Comment: u.Comment}
	if u.Status != "" {
		s, ok := canonical(u.Status, StatusNew, StatusInProgress, StatusResolved)
		if !ok {
			errs = append(errs, fmt.Errorf("status %q: want New, InProgress or Resolved", u.Status))
		}
		b.Status = s
	}
	if u.Classification != "" {
		s, ok := canonical(u.Classification, ClassificationTruePositive,
			ClassificationInformationalExpectedActivity, ClassificationFalsePositive)
		if !ok {
			errs = append(errs, fmt.Errorf("classification %q: want TruePositive, InformationalExpectedActivity or FalsePositive", u.Classification))
		}
		b.Classification = s
	}
	if u.Determination != "" {
		var allowed []string
		if b.Classification != "" && len(errs) == 0 {
			allowed = determinations[b.Classification]
		} else {
			for _, c := range []string{ClassificationTruePositive, ClassificationInformationalExpectedActivity, ClassificationFalsePositive} {
				allowed = append(allowed, determinations[c]...)
			}
		}
		s, ok := canonical(u.Determination, allowed...)
		if !ok {
			if b.Classification != "" {
				errs = append(errs, fmt.Errorf("determination %q is not valid with classification %s (want one of %s)",
					u.Determination, b.Classification, strings.Join(allowed, ", ")))
			} else {
				errs = append(errs, fmt.Errorf("determination %q is not a known value", u.Determination))
			}
		}
		b.Determination = s
	}
	if strings.ContainsAny(u.AssignedTo, "\r\n\x00") || len(u.AssignedTo) > 256 {
		errs = append(errs, errors.New("assignedTo: control characters or longer than 256"))
	}
	if b == (alertUpdateBody{}) {
		errs = append(errs, errors.New("nothing to update"))
	}
	return b, errors.Join(errs...)
}

func canonical(v string, allowed ...string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a, true
		}
	}
	return v, false
}

// UpdateAlert patches an alert and returns the updated entity.
func (c *Client) UpdateAlert(ctx context.Context, id string, u AlertUpdate) (*Alert, error) {
	if err := ValidateAlertID(id); err != nil {
		return nil, fmt.Errorf("updating alert: %w", err)
	}
	body, err := u.validate()
	if err != nil {
		return nil, fmt.Errorf("updating alert %s: %w", id, invalidArg(err))
	}
	var a Alert
	if err := c.send(ctx, "UpdateAlert", FamilyAlerts, http.MethodPatch, c.endpoint(nil, "alerts", id), body, []int{http.StatusOK}, &a, nil); err != nil {
		return nil, fmt.Errorf("updating alert %s: %w", id, err)
	}
	return &a, nil
}
