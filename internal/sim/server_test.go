package sim

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/mdeflow/mdeflow/internal/mde"
)

// Handler works behind httptest.NewTLSServer: links and the token endpoint
// follow the request host, and tokens verify whatever the listener.
func TestHandlerWithHTTPTest(t *testing.T) {
	s, err := New(Options{Clock: NewManualClock(testStart).Now, Tenant: SampleTenant(testStart)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(s.Handler())
	defer ts.Close()
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), DefaultClientID, DefaultClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: ts.URL + "/"}, Transport: ts.Client()},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{AudienceSecurityCenter + "/.default"}})
	if err != nil {
		t.Fatalf("GetToken through httptest: %v", err)
	}
	req := httptest.NewRequest("GET", ts.URL+"/api/machines?$top=1", nil)
	req.RequestURI = ""
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := resp{status: res.StatusCode}
	if r.status != 200 {
		t.Fatalf("GET machines via httptest: %d", r.status)
	}
	if s.Calls("/api/machines") != 1 || s.Calls("/api/v1.0/machines") != 1 {
		t.Errorf("Calls = %d", s.Calls("/api/machines"))
	}
}

func TestNewValidatesOptions(t *testing.T) {
	_, _, certPEM := newAppCert(t, "x")
	tests := map[string]Options{
		"tenant not a GUID":     {TenantID: "contoso.onmicrosoft.com"},
		"client id not a GUID":  {Apps: []App{{ClientID: "app", ClientSecret: "s"}}},
		"duplicate client id":   {Apps: []App{{ClientID: DefaultClientID, ClientSecret: "a"}, {ClientID: DefaultClientID, ClientSecret: "b"}}},
		"no credential":         {Apps: []App{{ClientID: DefaultClientID}}},
		"certificate not a PEM": {Apps: []App{{ClientID: DefaultClientID, CertificatePEM: []byte("nope")}}},
		"bad machine id":        {Tenant: &Tenant{Machines: []mde.Machine{{ID: "../x"}}}},
	}
	for name, opts := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := New(opts); err == nil {
				t.Error("New accepted invalid options")
			}
		})
	}
	s, err := New(Options{Apps: []App{{ClientID: DefaultClientID, CertificatePEM: certPEM}}})
	if err != nil {
		t.Fatalf("certificate-only app: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
}
