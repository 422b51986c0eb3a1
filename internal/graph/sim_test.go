package graph_test

// Integration tests: the Graph client with a real azidentity credential
// against internal/sim.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/mdeflow/mdeflow/internal/auth"
	"github.com/mdeflow/mdeflow/internal/graph"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/sim"
)

func startSim(t *testing.T, opts sim.Options) *sim.Server {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *sim.Server, clientID, secret string) *graph.Client {
	t.Helper()
	cred, err := auth.NewCredential(auth.CredentialConfig{Kind: auth.KindSecret, TenantID: s.TenantID(), ClientID: clientID,
		ClientSecret: secret, AuthorityHost: s.AuthorityHost(), Transport: s.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := graph.NewClient(cred, &graph.ClientOptions{BaseURL: s.URL() + "/v1.0",
		ClientOptions: azcore.ClientOptions{Transport: s.HTTPClient()}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSimGraph(t *testing.T) {
	clk := sim.NewManualClock(time.Now().UTC())
	tenant := sim.SampleTenant(clk.Now())
	s := startSim(t, sim.Options{Tenant: tenant, Clock: clk.Now, GraphPageSize: 10})
	c := client(t, s, sim.DefaultClientID, sim.DefaultClientSecret)
	ctx := context.Background()

	t.Run("alerts_v2 pages and maps to MDE", func(t *testing.T) {
		got, err := c.ListAlertsV2(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tenant.Alerts) {
			t.Fatalf("got %d alerts, want %d (nextLink paging)", len(got), len(tenant.Alerts))
		}
		byID := map[string]mde.Alert{}
		for _, a := range tenant.Alerts {
			byID[a.ID] = a
		}
		for _, g := range got {
			m, err := g.ToMDE()
			if err != nil {
				t.Fatalf("ToMDE(%s): %v", g.ID, err)
			}
			want, ok := byID[m.ID]
			if !ok {
				t.Errorf("alert %s not in the tenant", m.ID)
				continue
			}
			if m.MachineID != want.MachineID || m.Severity != want.Severity || m.Status != want.Status || m.Title != want.Title {
				t.Errorf("%s: mapped machine/severity/status/title = %s/%s/%s/%q, want %s/%s/%s/%q", m.ID,
					m.MachineID, m.Severity, m.Status, m.Title, want.MachineID, want.Severity, want.Status, want.Title)
			}
			if m.AlertCreationTime == nil || !m.AlertCreationTime.Equal(*want.AlertCreationTime) {
				t.Errorf("%s: creation time %v, want %v", m.ID, m.AlertCreationTime, want.AlertCreationTime)
			}
		}
		high := 0
		for _, a := range tenant.Alerts {
			if a.Severity == mde.SeverityHigh {
				high++
			}
		}
		hi, err := c.ListAlertsV2(ctx, &graph.ListAlertsV2Options{Filter: "severity eq 'high'", CreatedAfter: clk.Now().Add(-24 * time.Hour)})
		if err != nil || len(hi) != high {
			t.Errorf("high alerts = %d, want %d (%v)", len(hi), high, err)
		}
		top, err := c.ListAlertsV2(ctx, &graph.ListAlertsV2Options{Top: 3})
		if err != nil || len(top) != 3 {
			t.Errorf("Top 3 = %d, %v", len(top), err)
		}
	})

	t.Run("runHuntingQuery", func(t *testing.T) {
		raw, err := c.RunHuntingQuery(ctx, "DeviceProcessEvents | take 3", "P1D")
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Schema  []map[string]any `json:"schema"`
			Results []map[string]any `json:"results"`
		}
		if err := json.Unmarshal(raw, &res); err != nil || len(res.Results) != 3 || len(res.Schema) == 0 {
			t.Errorf("hunting: %v, %d rows", err, len(res.Results))
		}
	})

	t.Run("sendMail", func(t *testing.T) {
		err := c.SendMail(ctx, "mdeflow@corp.example.com", graph.Mail{
			Subject: "Isolated ws-fin-0142\r\n", HTMLBody: "<p>isolated</p>", To: []string{"soc@corp.example.com"},
			InternetMessageID: "<isolate-1@mdeflow>"}, false)
		if err != nil {
			t.Fatal(err)
		}
		sent := s.SentMessages()
		if len(sent) != 1 || sent[0].Mailbox != "mdeflow@corp.example.com" || !strings.Contains(string(sent[0].Body), `"subject":"Isolated ws-fin-0142"`) {
			t.Errorf("sent = %+v", sent)
		}
	})
}

func TestSimGraphForbidden(t *testing.T) {
	const app = "3c2b1a09-8f7e-4d6c-9b5a-493827160504"
	s := startSim(t, sim.Options{Apps: []sim.App{{ClientID: app, ClientSecret: "app-secret", Roles: []string{sim.RoleGraphAlertRead}}}})
	c := client(t, s, app, "app-secret")
	ctx := context.Background()
	if _, err := c.ListAlertsV2(ctx, &graph.ListAlertsV2Options{Top: 1}); err != nil {
		t.Fatalf("ListAlertsV2 with SecurityAlert.Read.All: %v", err)
	}
	err := c.SendMail(ctx, "mdeflow@corp.example.com", graph.Mail{Subject: "s", TextBody: "t", To: []string{"a@corp.example.com"}}, false)
	if !errors.Is(err, mde.ErrForbidden) || graph.IsTransient(err) {
		t.Errorf("sendMail without Mail.Send: %v", err)
	}
	_, err = c.RunHuntingQuery(ctx, "DeviceInfo | take 1", "")
	if !errors.Is(err, mde.ErrForbidden) {
		t.Errorf("hunting without ThreatHunting.Read.All: %v", err)
	}
}
