package auth_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mdeflow/mdeflow/internal/auth"
	"github.com/mdeflow/mdeflow/internal/sim"
)

// The check subcommand against the simulator's token endpoint: a fully
// consented app passes for both audiences; an app lacking roles gets a report
// naming each missing role and the feature that needs it.
func TestSimCheck(t *testing.T) {
	const partial = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
	s, err := sim.New(sim.Options{Apps: []sim.App{
		{ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret, Roles: sim.AllRoles},
		{ClientID: partial, ClientSecret: "partial-secret", Roles: []string{sim.RoleAlertRead, sim.RoleMachineRead, sim.RoleGraphMailSend}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := auth.CustomProfile(s.URL(), "https://api.securitycenter.microsoft.com/.default", s.AuthorityHost(),
		s.URL()+"/v1.0", "https://graph.microsoft.com/.default")
	if err != nil {
		t.Fatal(err)
	}
	scopes := auth.Scopes{MDE: p.MDEScope, Graph: p.GraphScope}
	all := auth.Features{PollAlerts: true, UpdateAlerts: true, MachineLookup: true, Isolate: true, Restrict: true, Scan: true,
		CollectForensics: true, CancelActions: true, Tags: true, MDEHunting: true, GraphHunting: true, GraphAlerts: true, SendMail: true}
	for _, tt := range []struct {
		clientID, secret string
		wantMissing      []string
	}{
		{sim.DefaultClientID, sim.DefaultClientSecret, nil},
		{partial, "partial-secret", []string{"Alert.ReadWrite.All", "Machine.Isolate", "Machine.RestrictExecution", "Machine.Scan",
			"Machine.CollectForensics", "Machine.Isolate", "Machine.ReadWrite.All", "AdvancedQuery.Read.All", "ThreatHunting.Read.All", "SecurityAlert.Read.All"}},
	} {
		c, err := auth.NewCredential(auth.CredentialConfig{Kind: auth.KindSecret, TenantID: s.TenantID(), ClientID: tt.clientID,
			ClientSecret: tt.secret, AuthorityHost: p.AuthorityHost, Transport: s.HTTPClient()})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = auth.Check(context.Background(), c, scopes, all, &out)
		report := out.String()
		if len(tt.wantMissing) == 0 {
			if err != nil || strings.Contains(report, "MISSING") {
				t.Errorf("%s: %v\n%s", tt.clientID, err, report)
			}
			continue
		}
		if !errors.Is(err, auth.ErrMissingRoles) {
			t.Errorf("%s: err = %v", tt.clientID, err)
		}
		for _, role := range tt.wantMissing { // Machine.Isolate twice: isolation and cancel
			if !strings.Contains(report, "MISSING  "+role) {
				t.Errorf("%s: report lacks missing %s:\n%s", tt.clientID, role, report)
			}
		}
		if strings.Count(report, "MISSING") != len(tt.wantMissing) {
			t.Errorf("%s: %d MISSING lines, want %d:\n%s", tt.clientID, strings.Count(report, "MISSING"), len(tt.wantMissing), report)
		}
	}
}
