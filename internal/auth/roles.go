package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Audiences a Requirement belongs to.
const (
	AudienceMDE   = "mde"
	AudienceGraph = "graph"
)

// Application roles (WindowsDefenderATP and Microsoft Graph), defender-api.md §1.5.
const (
	RoleAlertRead             = "Alert.Read.All"
	RoleAlertReadWrite        = "Alert.ReadWrite.All"
	RoleMachineRead           = "Machine.Read.All"
	RoleMachineReadWrite      = "Machine.ReadWrite.All"
	RoleMachineIsolate        = "Machine.Isolate"
	RoleMachineRestrict       = "Machine.RestrictExecution"
	RoleMachineScan           = "Machine.Scan"
	RoleMachineForensics      = "Machine.CollectForensics"
	RoleAdvancedQuery         = "AdvancedQuery.Read.All"
	RoleGraphAlertRead        = "SecurityAlert.Read.All"
	RoleGraphAlertReadWrite   = "SecurityAlert.ReadWrite.All"
	RoleGraphThreatHunting    = "ThreatHunting.Read.All"
	RoleGraphMailSend         = "Mail.Send"
	RoleMachineOffboard       = "Machine.Offboard"
	RoleMachineStopQuarantine = "Machine.StopAndQuarantine"
	RoleMachineLiveResponse   = "Machine.LiveResponse"
)

// Features says which capabilities are switched on; each needs roles.
type Features struct {
	PollAlerts       bool // list/get MDE alerts
	UpdateAlerts     bool // PATCH alerts (status, comment)
	MachineLookup    bool // get machine, find by name, follow machine actions
	Isolate          bool // isolate / release
	Restrict         bool // restrict / unrestrict code execution
	Scan             bool // antivirus scan
	CollectForensics bool // investigation package
	CancelActions    bool // cancel a pending machine action
	Tags             bool // add/remove machine tags
	MDEHunting       bool // POST /api/advancedqueries/run
	GraphHunting     bool // Graph runHuntingQuery
	GraphAlerts      bool // Graph alerts_v2
	SendMail         bool // Graph sendMail
}

// Requirement is one role a feature needs: any role of AnyOf satisfies it;
// Role is the least-privileged one to ask for.
type Requirement struct {
	Role     string
	AnyOf    []string
	Feature  string
	Audience string // AudienceMDE or AudienceGraph
}

// RequiredRoles lists the requirements of the enabled features, in a stable order.
func RequiredRoles(f Features) []Requirement {
	var r []Requirement
	add := func(on bool, feature, aud string, anyOf ...string) {
		if on {
			r = append(r, Requirement{Role: anyOf[0], AnyOf: anyOf, Feature: feature, Audience: aud})
		}
	}
	add(f.PollAlerts, "poll MDE alerts", AudienceMDE, RoleAlertRead, RoleAlertReadWrite)
	add(f.UpdateAlerts, "update MDE alerts", AudienceMDE, RoleAlertReadWrite)
	add(f.MachineLookup, "look up machines and follow machine actions", AudienceMDE, RoleMachineRead, RoleMachineReadWrite)
	add(f.Isolate, "isolate and release machines", AudienceMDE, RoleMachineIsolate)
	add(f.Restrict, "restrict code execution", AudienceMDE, RoleMachineRestrict)
	add(f.Scan, "run antivirus scans", AudienceMDE, RoleMachineScan)
	add(f.CollectForensics, "collect investigation packages", AudienceMDE, RoleMachineForensics)
	add(f.CancelActions, "cancel machine actions", AudienceMDE, RoleMachineIsolate, RoleMachineRestrict, RoleMachineScan,
		RoleMachineForensics, RoleMachineOffboard, RoleMachineStopQuarantine, RoleMachineLiveResponse)
	add(f.Tags, "tag machines", AudienceMDE, RoleMachineReadWrite)
	add(f.MDEHunting, "run MDE advanced hunting queries", AudienceMDE, RoleAdvancedQuery)
	add(f.GraphHunting, "run Graph hunting queries", AudienceGraph, RoleGraphThreatHunting)
	add(f.GraphAlerts, "read Graph security alerts", AudienceGraph, RoleGraphAlertRead, RoleGraphAlertReadWrite)
	add(f.SendMail, "send notification e-mail", AudienceGraph, RoleGraphMailSend)
	return r
}

// MissingRoles returns the requirements that none of have satisfies.
func MissingRoles(have []string, reqs []Requirement) []Requirement {
	var out []Requirement
	for _, req := range reqs {
		ok := false
		for _, want := range req.AnyOf {
			for _, h := range have {
				if strings.EqualFold(h, want) {
					ok = true
				}
			}
		}
		if !ok {
			out = append(out, req)
		}
	}
	return out
}

// Claims are the access-token claims the check reports.
type Claims struct {
	Audience  string
	TenantID  string
	AppID     string
	Roles     []string
	ExpiresAt time.Time
}

// ErrNotJWT means the string is not a three-part JWT with a JSON payload.
var ErrNotJWT = errors.New("token is not a JWT")

// TokenClaims decodes the payload of a JWT without verifying it (the token
// came from Entra over TLS; this is a diagnostic). Errors never quote the token.
func TokenClaims(token string) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrNotJWT, len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload is not base64url", ErrNotJWT)
	}
	var raw struct {
		Aud   json.RawMessage `json:"aud"`
		Tid   string          `json:"tid"`
		AppID string          `json:"appid"`
		Azp   string          `json:"azp"`
		Roles []string        `json:"roles"`
		Exp   json.Number     `json:"exp"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return Claims{}, fmt.Errorf("%w: payload is not a JSON object", ErrNotJWT)
	}
	c := Claims{TenantID: raw.Tid, AppID: raw.AppID, Roles: raw.Roles}
	if c.AppID == "" {
		c.AppID = raw.Azp
	}
	var aud string
	var auds []string
	if json.Unmarshal(raw.Aud, &aud) == nil {
		c.Audience = aud
	} else if json.Unmarshal(raw.Aud, &auds) == nil {
		c.Audience = strings.Join(auds, " ")
	}
	if f, err := raw.Exp.Float64(); err == nil && f > 0 {
		c.ExpiresAt = time.Unix(int64(f), 0).UTC()
	}
	return c, nil
}

// TokenRoles returns the "roles" claim of an access token (application
// permissions), decoding without verification.
func TokenRoles(token string) ([]string, error) {
	c, err := TokenClaims(token)
	if err != nil {
		return nil, err
	}
	return c.Roles, nil
}

// Scopes are the token scopes per audience (Profile.MDEScope, Profile.GraphScope).
type Scopes struct {
	MDE   string
	Graph string
}

// ErrMissingRoles is returned by Check when a required role is not granted.
var ErrMissingRoles = errors.New("required application roles missing")

// Check gets one token per audience the features need, and writes a report
// to w: the token's audience, tenant, app and roles, then each missing role
// with the feature that needs it. It returns an error wrapping
// ErrMissingRoles, or the token errors. The token itself is never written.
func Check(ctx context.Context, cred azcore.TokenCredential, scopes Scopes, features Features, w io.Writer) error {
	reqs := RequiredRoles(features)
	if len(reqs) == 0 {
		fmt.Fprintln(w, "No features enabled: no roles required.")
		return nil
	}
	byAud := map[string][]Requirement{}
	for _, r := range reqs {
		byAud[r.Audience] = append(byAud[r.Audience], r)
	}
	var errs []error
	missingTotal := 0
	for _, aud := range []string{AudienceMDE, AudienceGraph} {
		if len(byAud[aud]) == 0 {
			continue
		}
		scope := scopes.MDE
		label := "Defender for Endpoint API"
		if aud == AudienceGraph {
			scope, label = scopes.Graph, "Microsoft Graph"
		}
		fmt.Fprintf(w, "%s (scope %s)\n", label, scope)
		if scope == "" {
			fmt.Fprintln(w, "  ERROR  no scope configured")
			errs = append(errs, fmt.Errorf("checking %s roles: no scope configured", label))
			continue
		}
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			fmt.Fprintf(w, "  ERROR  getting a token: %v\n", err)
			errs = append(errs, fmt.Errorf("getting %s token: %w", label, err))
			continue
		}
		c, err := TokenClaims(tok.Token)
		if err != nil {
			fmt.Fprintf(w, "  ERROR  %v\n", err)
			errs = append(errs, fmt.Errorf("reading %s token: %w", label, err))
			continue
		}
		roles := append([]string(nil), c.Roles...)
		sort.Strings(roles)
		fmt.Fprintf(w, "  token  aud=%s tenant=%s app=%s expires=%s\n", c.Audience, c.TenantID, c.AppID, c.ExpiresAt.Format(time.RFC3339))
		if len(roles) == 0 {
			fmt.Fprintln(w, "  roles  (none: grant application permissions and admin consent)")
		} else {
			fmt.Fprintf(w, "  roles  %s\n", strings.Join(roles, ", "))
		}
		missing := MissingRoles(c.Roles, byAud[aud])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range byAud[aud] {
			status := "ok"
			for _, m := range missing {
				if m.Feature == r.Feature {
					status = "MISSING"
				}
			}
			alt := ""
			if len(r.AnyOf) > 1 {
				alt = " (" + strings.Join(r.AnyOf[1:], ", ") + " also accepted)"
			}
			fmt.Fprintf(tw, "  %s\t%s\tneeded to %s%s\n", status, r.Role, r.Feature, alt)
		}
		_ = tw.Flush()
		missingTotal += len(missing)
	}
	if missingTotal > 0 {
		fmt.Fprintf(w, "%d required role(s) missing: add them as application permissions to the app registration and grant admin consent.\n", missingTotal)
		errs = append(errs, fmt.Errorf("%d role(s): %w", missingTotal, ErrMissingRoles))
	}
	return errors.Join(errs...)
}
