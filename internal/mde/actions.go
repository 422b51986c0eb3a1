package mde

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// IsolationUnManagedDevice is the isolation type for "contain device" on
// unmanaged devices (isolate-machine.md).
const IsolationUnManagedDevice = "UnManagedDevice"

// Scan types for RunAntiVirusScan.
const (
	ScanQuick = "Quick"
	ScanFull  = "Full"
)

// Other machine action types that can appear in ListMachineActions.
const (
	ActionTypeOffboard              = "Offboard"
	ActionTypeLiveResponse          = "LiveResponse"
	ActionTypeStopAndQuarantineFile = "StopAndQuarantineFile"
)

const maxCommentLen = 4000

// checkComment enforces the documented "Comment is required".
func checkComment(comment string) error {
	if strings.TrimSpace(comment) == "" {
		return invalidArg(errors.New("comment is required"))
	}
	if utf8.RuneCountInString(comment) > maxCommentLen {
		return invalidArg(fmt.Errorf("comment longer than %d characters", maxCommentLen))
	}
	return nil
}

type commentBody struct {
	Comment string `json:"Comment"`
}

type isolateBody struct {
	Comment       string `json:"Comment"`
	IsolationType string `json:"IsolationType"`
}

type scanBody struct {
	Comment  string `json:"Comment"`
	ScanType string `json:"ScanType"`
}

// machineAction posts an action body to /api/machines/{id}/{path}. The
// service answers 201 with the new action (the docs allow it to answer with
// the pending one instead, so 200 is accepted too); a duplicate gives an
// error matching ErrActiveRequestAlreadyExists.
func (c *Client) machineAction(ctx context.Context, op, verb, id, path string, body any) (*MachineAction, error) {
	var a MachineAction
	err := c.send(ctx, op, FamilyActions, http.MethodPost, c.endpoint(nil, "machines", id, path), body,
		[]int{http.StatusCreated, http.StatusOK}, &a, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	return &a, nil
}

func precheck(verb, id, comment string) error {
	if err := ValidateMachineID(id); err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	if err := checkComment(comment); err != nil {
		return fmt.Errorf("%s %s: %w", verb, id, err)
	}
	return nil
}

// IsolateMachine isolates a device. isolationType is Full (the default when
// empty), Selective or UnManagedDevice.
func (c *Client) IsolateMachine(ctx context.Context, id, comment, isolationType string) (*MachineAction, error) {
	const verb = "isolating machine"
	if err := precheck(verb, id, comment); err != nil {
		return nil, err
	}
	if isolationType == "" {
		isolationType = IsolationFull
	}
	it, ok := canonical(isolationType, IsolationFull, IsolationSelective, IsolationUnManagedDevice)
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", verb, id, invalidArg(fmt.Errorf("isolation type %q: want Full, Selective or UnManagedDevice", isolationType)))
	}
	return c.machineAction(ctx, "IsolateMachine", verb, id, "isolate", isolateBody{Comment: comment, IsolationType: it})
}

// UnisolateMachine releases a device from isolation.
func (c *Client) UnisolateMachine(ctx context.Context, id, comment string) (*MachineAction, error) {
	const verb = "releasing machine from isolation"
	if err := precheck(verb, id, comment); err != nil {
		return nil, err
	}
	return c.machineAction(ctx, "UnisolateMachine", verb, id, "unisolate", commentBody{comment})
}

// RestrictCodeExecution restricts a device to Microsoft-signed code.
func (c *Client) RestrictCodeExecution(ctx context.Context, id, comment string) (*MachineAction, error) {
	const verb = "restricting code execution on machine"
	if err := precheck(verb, id, comment); err != nil {
		return nil, err
	}
	return c.machineAction(ctx, "RestrictCodeExecution", verb, id, "restrictCodeExecution", commentBody{comment})
}

// UnrestrictCodeExecution lifts the code execution restriction.
func (c *Client) UnrestrictCodeExecution(ctx context.Context, id, comment string) (*MachineAction, error) {
	const verb = "removing code execution restriction on machine"
	if err := precheck(verb, id, comment); err != nil {
		return nil, err
	}
	return c.machineAction(ctx, "UnrestrictCodeExecution", verb, id, "unrestrictCodeExecution", commentBody{comment})
}

// RunAntiVirusScan starts a Quick or Full Defender Antivirus scan.
func (c *Client) RunAntiVirusScan(ctx context.Context, id, comment, scanType string) (*MachineAction, error) {
	const verb = "starting antivirus scan on machine"
	if err := precheck(verb, id, comment); err != nil {
		return nil, err
	}
	st, ok := canonical(scanType, ScanQuick, ScanFull)
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", verb, id, invalidArg(fmt.Errorf("scan type %q: want Quick or Full", scanType)))
	}
	return c.machineAction(ctx, "RunAntiVirusScan", verb, id, "runAntiVirusScan", scanBody{Comment: comment, ScanType: st})
}

// CollectInvestigationPackage starts collecting the forensic package.
func (c *Client) CollectInvestigationPackage(ctx context.Context, id, comment string) (*MachineAction, error) {
	const verb = "collecting investigation package from machine"
	if err := precheck(verb, id, comment); err != nil {
		return nil, err
	}
	return c.machineAction(ctx, "CollectInvestigationPackage", verb, id, "collectInvestigationPackage", commentBody{comment})
}

// GetMachineAction fetches one machine action by its GUID.
func (c *Client) GetMachineAction(ctx context.Context, id string) (*MachineAction, error) {
	if err := ValidateActionID(id); err != nil {
		return nil, fmt.Errorf("getting machine action: %w", err)
	}
	var a MachineAction
	if err := c.send(ctx, "GetMachineAction", FamilyActions, http.MethodGet, c.endpoint(nil, "machineactions", id), nil, []int{http.StatusOK}, &a, nil); err != nil {
		return nil, fmt.Errorf("getting machine action %s: %w", id, err)
	}
	return &a, nil
}

// ListMachineActionsOptions filters ListMachineActions; empty fields do not filter.
type ListMachineActionsOptions struct {
	MachineID string
	Type      string // an ActionType* value
	Status    string // an Action* status value
	// Top caps the number of actions returned; 0 means no cap.
	Top int
}

var (
	actionTypes = []string{ActionTypeIsolate, ActionTypeUnisolate, ActionTypeRestrictCodeExecution,
		ActionTypeUnrestrictCodeExecution, ActionTypeRunAntiVirusScan, ActionTypeCollectInvestigationPackage,
		ActionTypeOffboard, ActionTypeLiveResponse, ActionTypeStopAndQuarantineFile}
	actionStatuses = []string{ActionPending, ActionInProgress, ActionSucceeded, ActionFailed, ActionTimeOut, ActionCancelled}
)

// ListMachineActions lists machine actions, newest pages first as the service returns them.
func (c *Client) ListMachineActions(ctx context.Context, opts *ListMachineActionsOptions) ([]MachineAction, error) {
	o := ListMachineActionsOptions{}
	if opts != nil {
		o = *opts
	}
	var conds []string
	var errs []error
	if o.MachineID != "" {
		if err := ValidateMachineID(o.MachineID); err != nil {
			errs = append(errs, err)
		}
		conds = append(conds, "machineId eq "+odataString(o.MachineID))
	}
	if o.Type != "" {
		t, ok := canonical(o.Type, actionTypes...)
		if !ok {
			errs = append(errs, fmt.Errorf("action type %q is not known", o.Type))
		}
		conds = append(conds, "type eq "+odataString(t))
	}
	if o.Status != "" {
		s, ok := canonical(o.Status, actionStatuses...)
		if !ok {
			errs = append(errs, fmt.Errorf("action status %q is not known", o.Status))
		}
		conds = append(conds, "status eq "+odataString(s))
	}
	if o.Top < 0 {
		errs = append(errs, errors.New("negative Top"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("listing machine actions: %w", invalidArg(errors.Join(errs...)))
	}
	var q query
	if len(conds) > 0 {
		q = q.add("$filter", strings.Join(conds, " and "))
	}
	as, err := list(ctx, c, listSpec[MachineAction]{
		op: "ListMachineActions", fam: FamilyActions, segments: []string{"machineactions"}, q: q,
		limit: o.Top, key: func(a MachineAction) string { return a.ID },
	})
	if err != nil {
		return as, fmt.Errorf("listing machine actions: %w", err)
	}
	return as, nil
}

// CancelMachineAction cancels an action that has not reached a final state.
func (c *Client) CancelMachineAction(ctx context.Context, id, comment string) (*MachineAction, error) {
	const verb = "cancelling machine action"
	if err := ValidateActionID(id); err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	if err := checkComment(comment); err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	var a MachineAction
	if err := c.send(ctx, "CancelMachineAction", FamilyActions, http.MethodPost, c.endpoint(nil, "machineactions", id, "cancel"),
		commentBody{comment}, []int{http.StatusOK}, &a, nil); err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	return &a, nil
}

// GetInvestigationPackageURI returns the short-lived download URL of a
// completed CollectInvestigationPackage action (quota: 2/min, 120/h). The URL
// is a credential: do not log it.
func (c *Client) GetInvestigationPackageURI(ctx context.Context, actionID string) (string, error) {
	if err := ValidateActionID(actionID); err != nil {
		return "", fmt.Errorf("getting investigation package URI: %w", err)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := c.send(ctx, "GetInvestigationPackageURI", FamilyPackageURI, http.MethodGet,
		c.endpoint(nil, "machineactions", actionID, "getPackageUri"), nil, []int{http.StatusOK}, &v, nil); err != nil {
		return "", fmt.Errorf("getting investigation package URI for action %s: %w", actionID, err)
	}
	return v.Value, nil
}

type queryBody struct {
	Query string `json:"Query"`
}

// maxQueryLen bounds a KQL text sent to advanced hunting.
const maxQueryLen = 100_000

// RunAdvancedQuery runs a KQL query (POST /api/advancedqueries/run) and
// returns the raw {Stats, Schema, Results} document for a hunting parser.
func (c *Client) RunAdvancedQuery(ctx context.Context, kql string) (json.RawMessage, error) {
	if strings.TrimSpace(kql) == "" {
		return nil, fmt.Errorf("running advanced query: %w", invalidArg(errors.New("empty query")))
	}
	if len(kql) > maxQueryLen {
		return nil, fmt.Errorf("running advanced query: %w", invalidArg(fmt.Errorf("query longer than %d bytes", maxQueryLen)))
	}
	var raw json.RawMessage
	if err := c.send(ctx, "RunAdvancedQuery", FamilyHunting, http.MethodPost, c.endpoint(nil, "advancedqueries", "run"),
		queryBody{Query: kql}, []int{http.StatusOK}, nil, &raw); err != nil {
		return nil, fmt.Errorf("running advanced query: %w", err)
	}
	return raw, nil
}
