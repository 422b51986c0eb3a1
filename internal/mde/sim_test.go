package mde_test

// Integration tests: the real azidentity credentials (through auth) and the
// MDE client against internal/sim over TLS.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mdeflow/mdeflow/internal/auth"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/sim"
)

const (
	hotMachine   = sim.SampleHotMachineID
	linuxMachine = sim.SampleLinuxMachineID
	hrMachine    = "e52f3bda632a5c3b99750751e4b2ea9c2a1bf550" // ws-hr-0077, Windows 10
	devMachine   = "9c59d6c21e3faaafad573805c7e0173f59c511d8" // ws-dev-0311
	mktMachine   = "0496cdaf10be5634a8689a31175b9473c152cc0a" // ws-mkt-0020
	salesMachine = "8fb15376209026e22386b69178356708ac5c3c32" // ws-sales-0410
)

func startSim(t *testing.T, opts sim.Options) *sim.Server {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatalf("sim.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("sim.Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func secretCred(t *testing.T, s *sim.Server, clientID, secret string) azcore.TokenCredential {
	t.Helper()
	cred, err := auth.NewCredential(auth.CredentialConfig{Kind: auth.KindSecret, TenantID: s.TenantID(),
		ClientID: clientID, ClientSecret: secret, AuthorityHost: s.AuthorityHost(), Transport: s.HTTPClient()})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return cred
}

func simClient(t *testing.T, s *sim.Server, cred azcore.TokenCredential, lim *mde.Limiter) *mde.Client {
	t.Helper()
	c, err := mde.NewClient(cred, &mde.ClientOptions{
		BaseURL: s.URL(),
		Limiter: lim,
		ClientOptions: azcore.ClientOptions{Transport: s.HTTPClient(),
			Retry: policy.RetryOptions{RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 3 * time.Second}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSimEveryOperation(t *testing.T) {
	clk := sim.NewManualClock(time.Now().UTC())
	tenant := sim.SampleTenant(clk.Now())
	s := startSim(t, sim.Options{Tenant: tenant, Clock: clk.Now})
	lim, err := mde.NewLimiter(mde.LimitsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := simClient(t, s, secretCred(t, s, sim.DefaultClientID, sim.DefaultClientSecret), lim)
	ctx := context.Background()

	t.Run("ListAlerts pages through all alerts", func(t *testing.T) {
		got, err := c.ListAlerts(ctx, &mde.ListAlertsOptions{PageSize: 10, ExpandEvidence: true, OrderBy: "alertCreationTime asc"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tenant.Alerts) {
			t.Fatalf("got %d alerts, want %d", len(got), len(tenant.Alerts))
		}
		for i := 1; i < len(got); i++ {
			if got[i].AlertCreationTime.Before(*got[i-1].AlertCreationTime) {
				t.Fatal("not ordered by alertCreationTime")
			}
		}
		withEvidence := 0
		for _, a := range got {
			if len(a.Evidence) > 0 {
				withEvidence++
			}
		}
		if withEvidence == 0 {
			t.Error("$expand=evidence returned no evidence")
		}
		cut := clk.Now().Add(-30 * time.Minute)
		want := 0
		for _, a := range tenant.Alerts {
			if a.AlertCreationTime.After(cut) {
				want++
			}
		}
		recent, err := c.ListAlerts(ctx, &mde.ListAlertsOptions{CreatedAfter: cut, Filter: "status ne 'Resolved' or status eq 'Resolved'"})
		if err != nil {
			t.Fatal(err)
		}
		if len(recent) != want || want == 0 {
			t.Errorf("CreatedAfter: got %d, want %d", len(recent), want)
		}
		top, err := c.ListAlerts(ctx, &mde.ListAlertsOptions{Top: 5})
		if err != nil || len(top) != 5 {
			t.Errorf("Top 5: %d, %v", len(top), err)
		}
	})

	var hotAlert string
	for _, a := range tenant.Alerts {
		if a.MachineID == hotMachine && a.Severity == mde.SeverityHigh {
			hotAlert = a.ID
			break
		}
	}
	t.Run("GetAlert and UpdateAlert", func(t *testing.T) {
		a, err := c.GetAlert(ctx, hotAlert, true)
		if err != nil {
			t.Fatal(err)
		}
		if a.MachineID != hotMachine || len(a.Evidence) == 0 {
			t.Errorf("alert = %s on %s with %d evidence", a.ID, a.MachineID, len(a.Evidence))
		}
		u, err := c.UpdateAlert(ctx, hotAlert, mde.AlertUpdate{Status: "InProgress", AssignedTo: "mdeflow@corp.example.com", Comment: "triaged by mdeflow"})
		if err != nil {
			t.Fatal(err)
		}
		if u.Status != "InProgress" || mde.Str(u.AssignedTo) != "mdeflow@corp.example.com" {
			t.Errorf("updated = %s / %s", u.Status, mde.Str(u.AssignedTo))
		}
		stored, _ := s.Alert(hotAlert)
		if !slices.ContainsFunc(stored.Comments, func(c mde.AlertComment) bool { return c.Comment == "triaged by mdeflow" }) {
			t.Error("comment not stored in the simulator")
		}
		if _, err := c.UpdateAlert(ctx, hotAlert, mde.AlertUpdate{Classification: "TruePositive", Determination: "Malware"}); err != nil {
			t.Errorf("classification: %v", err)
		}
		if _, err := c.GetAlert(ctx, "da000000000000000000_1", false); !errors.Is(err, mde.ErrNotFound) {
			t.Errorf("unknown alert: %v", err)
		}
	})

	t.Run("machines", func(t *testing.T) {
		m, err := c.GetMachine(ctx, hotMachine)
		if err != nil || !strings.HasPrefix(m.ComputerDNSName, "ws-fin-0142") {
			t.Fatalf("GetMachine: %v %+v", err, m)
		}
		for _, name := range []string{"ws-fin-0142", "WS-FIN-0142.corp.example.com"} {
			f, err := c.FindMachineByName(ctx, name)
			if err != nil || f.ID != hotMachine {
				t.Errorf("FindMachineByName(%s): %v", name, err)
			}
		}
		if _, err := c.FindMachineByName(ctx, "no-such-host"); !errors.Is(err, mde.ErrMachineNotFound) {
			t.Errorf("unknown name: %v", err)
		}
		vip, err := c.ListMachinesByTag(ctx, "vip")
		if err != nil || len(vip) != 2 {
			t.Errorf("ListMachinesByTag(vip) = %d, %v", len(vip), err)
		}
		tagged, err := c.AddMachineTag(ctx, hotMachine, "isolated-by-mdeflow")
		if err != nil || !slices.Contains(tagged.MachineTags, "isolated-by-mdeflow") {
			t.Fatalf("AddMachineTag: %v %v", err, tagged)
		}
		if byTag, _ := c.ListMachinesByTag(ctx, "isolated-by-mdeflow"); len(byTag) != 1 {
			t.Errorf("new tag lists %d machines", len(byTag))
		}
		untagged, err := c.RemoveMachineTag(ctx, hotMachine, "isolated-by-mdeflow")
		if err != nil || slices.Contains(untagged.MachineTags, "isolated-by-mdeflow") {
			t.Errorf("RemoveMachineTag: %v %v", err, untagged)
		}
		if _, err := c.GetMachine(ctx, strings.Repeat("0", 40)); !errors.Is(err, mde.ErrNotFound) {
			t.Errorf("unknown machine: %v", err)
		}
	})

	t.Run("isolation lifecycle", func(t *testing.T) {
		a, err := c.IsolateMachine(ctx, hotMachine, "isolated by mdeflow for "+hotAlert, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != mde.ActionPending || a.Type != mde.ActionTypeIsolate || a.MachineID != hotMachine {
			t.Errorf("action = %+v", a)
		}
		_, err = c.IsolateMachine(ctx, hotMachine, "again", "Full")
		if !errors.Is(err, mde.ErrActiveRequestAlreadyExists) || mde.IsTransient(err) {
			t.Errorf("duplicate isolate: %v", err)
		}
		got, err := c.GetMachineAction(ctx, a.ID)
		if err != nil || got.ID != a.ID {
			t.Errorf("GetMachineAction: %v", err)
		}
		list, err := c.ListMachineActions(ctx, &mde.ListMachineActionsOptions{MachineID: hotMachine, Type: mde.ActionTypeIsolate, Status: mde.ActionPending})
		if err != nil || !slices.ContainsFunc(list, func(x mde.MachineAction) bool { return x.ID == a.ID }) {
			t.Errorf("ListMachineActions: %v, %d", err, len(list))
		}
		cancelled, err := c.CancelMachineAction(ctx, a.ID, "false positive")
		if err != nil || cancelled.Status != mde.ActionCancelled {
			t.Errorf("CancelMachineAction: %v %+v", err, cancelled)
		}

		a, err = c.IsolateMachine(ctx, salesMachine, "isolate then release", "Selective")
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute) // the simulated action completes
		if done, _ := c.GetMachineAction(ctx, a.ID); done == nil || !mde.IsFinalActionStatus(done.Status) {
			t.Errorf("isolation not final after a minute: %+v", done)
		}
		if _, err := c.UnisolateMachine(ctx, salesMachine, "released"); err != nil {
			t.Errorf("UnisolateMachine: %v", err)
		}
		_, err = c.IsolateMachine(ctx, linuxMachine, "x", mde.IsolationSelective)
		if !errors.Is(err, mde.ErrOsPlatformNotSupported) {
			t.Errorf("selective isolation on Linux: %v", err)
		}
	})

	t.Run("other actions", func(t *testing.T) {
		if _, err := c.RestrictCodeExecution(ctx, hrMachine, "restrict"); err != nil {
			t.Errorf("RestrictCodeExecution: %v", err)
		}
		clk.Advance(time.Minute)
		if _, err := c.UnrestrictCodeExecution(ctx, hrMachine, "unrestrict"); err != nil {
			t.Errorf("UnrestrictCodeExecution: %v", err)
		}
		if _, err := c.RestrictCodeExecution(ctx, linuxMachine, "restrict"); !errors.Is(err, mde.ErrOsPlatformNotSupported) {
			t.Errorf("restrict on Linux: %v", err)
		}
		scan, err := c.RunAntiVirusScan(ctx, devMachine, "scan", "Quick")
		if err != nil || scan.Type != mde.ActionTypeRunAntiVirusScan {
			t.Errorf("RunAntiVirusScan: %v %+v", err, scan)
		}
		if _, err := c.CollectInvestigationPackage(ctx, mktMachine, "collect"); err != nil {
			t.Errorf("CollectInvestigationPackage: %v", err)
		}
		if _, err := c.CollectInvestigationPackage(ctx, mktMachine, "collect again"); !errors.Is(err, mde.ErrActiveRequestAlreadyExists) {
			t.Errorf("second collection: %v", err)
		}
		all, err := c.ListMachineActions(ctx, nil)
		if err != nil || len(all) != len(s.Actions()) {
			t.Errorf("ListMachineActions(nil) = %d, sim has %d (%v)", len(all), len(s.Actions()), err)
		}
	})

	t.Run("advanced hunting", func(t *testing.T) {
		raw, err := c.RunAdvancedQuery(ctx, "DeviceProcessEvents | take 2")
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Schema  []map[string]any
			Results []map[string]any
		}
		if err := json.Unmarshal(raw, &res); err != nil || len(res.Schema) == 0 || len(res.Results) != 2 {
			t.Errorf("hunting result: %v, %d columns, %d rows", err, len(res.Schema), len(res.Results))
		}
		if _, err := c.RunAdvancedQuery(ctx, "this is not | kql ((("); err == nil || mde.IsTransient(err) {
			t.Errorf("bad query: %v", err)
		}
	})
}

// writeAppCert creates an RSA certificate and key, returns the PEM of the
// certificate (for the simulator's app registration) and the path of a PEM
// file holding both (for auth.NewCredential).
func writeAppCert(t *testing.T) ([]byte, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "mdeflow-int"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pk, _ := x509.MarshalPKCS8PrivateKey(key)
	var b bytes.Buffer
	b.Write(certPEM)
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	p := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM, p
}

func TestSimCertificateCredentialAndRoles(t *testing.T) {
	const certApp = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b"
	certPEM, certPath := writeAppCert(t)
	s := startSim(t, sim.Options{Apps: []sim.App{
		{ClientID: certApp, CertificatePEM: certPEM, Roles: []string{sim.RoleAlertRead}},
	}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	// ExtraCAFile path (what a local run uses) instead of an injected transport.
	cred, err := auth.NewCredential(auth.CredentialConfig{Kind: auth.KindCertificate, TenantID: s.TenantID(), ClientID: certApp,
		CertificatePath: certPath, AuthorityHost: s.AuthorityHost(), ExtraCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	c := simClient(t, s, cred, nil)
	ctx := context.Background()
	alerts, err := c.ListAlerts(ctx, &mde.ListAlertsOptions{Top: 3})
	if err != nil || len(alerts) != 3 {
		t.Fatalf("ListAlerts with certificate credential: %d, %v", len(alerts), err)
	}
	// Alert.Read.All only: reading machines and updating alerts are forbidden, permanently.
	_, err = c.GetMachine(ctx, hotMachine)
	if !errors.Is(err, mde.ErrForbidden) || mde.IsTransient(err) {
		t.Errorf("GetMachine without Machine.Read.All: %v", err)
	}
	_, err = c.UpdateAlert(ctx, alerts[0].ID, mde.AlertUpdate{Comment: "x"})
	if !errors.Is(err, mde.ErrForbidden) {
		t.Errorf("UpdateAlert without Alert.ReadWrite.All: %v", err)
	}
	var report bytes.Buffer
	err = auth.Check(ctx, cred, auth.Scopes{MDE: mde.DefaultScope, Graph: "https://graph.microsoft.com/.default"},
		auth.Features{PollAlerts: true, UpdateAlerts: true, Isolate: true}, &report)
	if !errors.Is(err, auth.ErrMissingRoles) {
		t.Fatalf("Check: %v", err)
	}
	for _, want := range []string{"roles  Alert.Read.All", "MISSING  Alert.ReadWrite.All", "MISSING  Machine.Isolate", "app=" + certApp} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}
	// A wrong secret is a permanent token error.
	bad := simClient(t, s, secretCred(t, s, certApp, "wrong-secret"), nil)
	if _, err := bad.ListAlerts(ctx, nil); err == nil || mde.IsTransient(err) {
		t.Errorf("wrong secret: %v (transient=%v)", err, mde.IsTransient(err))
	}
}

// With the simulator's clock running 20× faster, the documented quotas
// (100/min, 1500/h) become 100 per 3s and 1500 per 3min; the limiter
// configured with the same ratio keeps a 120-call burst free of 429s.
func TestSimQuotaBurstWithLimiter(t *testing.T) {
	const warp = 20
	start := time.Now()
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return start.Add(time.Since(start) * warp)
	}
	lim, err := mde.NewLimiter(mde.LimitsConfig{Rates: map[mde.Family][]mde.Rate{
		mde.FamilyAlerts: {{N: 100, Per: time.Minute / warp}, {N: 1500, Per: time.Hour / warp}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	burst := func(t *testing.T, lim *mde.Limiter) (*sim.Server, int32) {
		s := startSim(t, sim.Options{Clock: clock})
		c := simClient(t, s, secretCred(t, s, sim.DefaultClientID, sim.DefaultClientSecret), lim)
		id := sim.SampleTenant(start).Alerts[0].ID
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range 120 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.GetAlert(context.Background(), id, false); err != nil {
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		return s, failed.Load()
	}
	s, failed := burst(t, lim)
	if n := s.Throttled(); n != 0 || failed != 0 {
		t.Errorf("with the limiter: %d 429s, %d failed calls", n, failed)
	}
	// Control: the same burst without a limiter is throttled (the warped
	// Retry-After exceeds the client's cap, so some calls fail), so the
	// assertion above is not vacuous.
	if s, _ := burst(t, nil); s.Throttled() == 0 {
		t.Error("without the limiter the simulator sent no 429: the quota is not exercised")
	}
}

// A lost response (the action is created, the answer is a 503) is retried
// by the pipeline and meets ActiveRequestAlreadyExists: the caller sees that
// sentinel, and ListMachineActions finds the one pending action to follow.
func TestSimLostResponseSurfacesAsAlreadyExists(t *testing.T) {
	clk := sim.NewManualClock(time.Now().UTC())
	s := startSim(t, sim.Options{Clock: clk.Now, Faults: sim.Faults{PostCommitErrorRate: 1, Seed: 7}})
	c := simClient(t, s, secretCred(t, s, sim.DefaultClientID, sim.DefaultClientSecret), nil)
	ctx := context.Background()
	_, err := c.IsolateMachine(ctx, hotMachine, "isolate", "Full")
	if !errors.Is(err, mde.ErrActiveRequestAlreadyExists) {
		t.Fatalf("err = %v, want ErrActiveRequestAlreadyExists after the retried lost response", err)
	}
	if total, accepted := s.IsolateCalls(hotMachine); total != 2 || accepted != 1 {
		t.Errorf("isolate calls total/accepted = %d/%d, want 2/1", total, accepted)
	}
	pending, err := c.ListMachineActions(ctx, &mde.ListMachineActionsOptions{MachineID: hotMachine, Type: mde.ActionTypeIsolate, Status: mde.ActionPending})
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending isolate actions = %d, %v", len(pending), err)
	}
}
