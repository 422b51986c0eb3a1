package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

func TestProfileByName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, region              string
		wantMDE, wantAuth, wantGr string
		wantScope                 string
		wantErr                   string
	}{
		{"", "", "https://api.securitycenter.microsoft.com", authorityPublic, "https://graph.microsoft.com/v1.0", "https://api.securitycenter.microsoft.com/.default", ""},
		{"Commercial", "EU", "https://eu.api.security.microsoft.com", authorityPublic, "https://graph.microsoft.com/v1.0", "https://api.securitycenter.microsoft.com/.default", ""},
		{"commercial", "swa", "https://swa.api.security.microsoft.com", authorityPublic, "https://graph.microsoft.com/v1.0", "https://api.securitycenter.microsoft.com/.default", ""},
		{"gcc", "", "https://api-gcc.securitycenter.microsoft.us", authorityPublic, "https://graph.microsoft.com/v1.0", "https://api-gcc.securitycenter.microsoft.us/.default", ""},
		{"gcchigh", "", "https://api-gov.securitycenter.microsoft.us", authorityUSGov, "https://graph.microsoft.us/v1.0", "https://api-gov.securitycenter.microsoft.us/.default", ""},
		{"dod", "", "https://api-gov.securitycenter.microsoft.us", authorityUSGov, "https://dod-graph.microsoft.us/v1.0", "https://api-gov.securitycenter.microsoft.us/.default", ""},
		{"commercial", "jp", "", "", "", "", "unknown region"},
		{"gcc", "us", "", "", "", "", "no regional hosts"},
		{"china", "", "", "", "", "", "unknown cloud profile"},
		{"custom", "", "", "", "", "", "CustomProfile"},
	}
	for _, tt := range tests {
		p, err := ProfileByName(tt.name, tt.region)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ProfileByName(%q,%q) err = %v, want %q", tt.name, tt.region, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ProfileByName(%q,%q): %v", tt.name, tt.region, err)
			continue
		}
		if p.MDEBaseURL != tt.wantMDE || p.AuthorityHost != tt.wantAuth || p.GraphBaseURL != tt.wantGr || p.MDEScope != tt.wantScope {
			t.Errorf("ProfileByName(%q,%q) = %+v", tt.name, tt.region, p)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("built-in profile invalid: %v", err)
		}
		if !KnownAuthority(p.AuthorityHost) {
			t.Errorf("built-in authority %s not known", p.AuthorityHost)
		}
	}
}

func TestCustomProfile(t *testing.T) {
	t.Parallel()
	p, err := CustomProfile("https://127.0.0.1:8443/", "", "https://127.0.0.1:8443", "https://127.0.0.1:8443/v1.0", "https://graph.microsoft.com/.default")
	if err != nil {
		t.Fatal(err)
	}
	if p.MDEScope != "https://127.0.0.1:8443/.default" || p.AuthorityHost != "https://127.0.0.1:8443/" || p.MDEBaseURL != "https://127.0.0.1:8443" {
		t.Errorf("profile = %+v", p)
	}
	if KnownAuthority(p.AuthorityHost) {
		t.Error("custom authority reported as known")
	}
	_, err = CustomProfile("http://insecure", "scope", "", "", "")
	for _, want := range []string{"MDEBaseURL", "AuthorityHost: missing", "GraphBaseURL: missing", "MDEScope"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want mention of %q", err, want)
		}
	}
}

func TestNewCredentialSettings(t *testing.T) {
	t.Setenv("AZURE_TENANT_ID", "")
	t.Setenv("AZURE_CLIENT_ID", "")
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "")
	certPath := writeCert(t)
	tests := []struct {
		name    string
		cfg     CredentialConfig
		wantErr []string // empty: success
	}{
		{"secret ok", CredentialConfig{Kind: "secret", TenantID: "t", ClientID: "c", ClientSecret: "s"}, nil},
		{"default kind is secret", CredentialConfig{TenantID: "t", ClientID: "c"}, []string{"secret credential", "ClientSecret"}},
		{"secret missing all", CredentialConfig{Kind: "Secret"}, []string{"TenantID", "ClientID", "ClientSecret"}},
		{"certificate missing path", CredentialConfig{Kind: "certificate", TenantID: "t", ClientID: "c"}, []string{"CertificatePath"}},
		{"certificate unreadable", CredentialConfig{Kind: "certificate", TenantID: "t", ClientID: "c", CertificatePath: "/nonexistent.pem"}, []string{"reading CertificatePath"}},
		{"certificate ok", CredentialConfig{Kind: "certificate", TenantID: "t", ClientID: "c", CertificatePath: certPath, AuthorityHost: "https://127.0.0.1:1/"}, nil},
		{"certificate garbage", CredentialConfig{Kind: "certificate", TenantID: "t", ClientID: "c", CertificatePath: writeFile(t, "x.pem", "not a cert")}, []string{"parsing CertificatePath"}},
		{"managed identity system", CredentialConfig{Kind: "managedidentity"}, nil},
		{"managed identity user", CredentialConfig{Kind: "managedidentity", ManagedIdentityClientID: "abc"}, nil},
		{"workload identity missing", CredentialConfig{Kind: "workloadidentity"}, []string{"TenantID (or AZURE_TENANT_ID)", "ClientID (or AZURE_CLIENT_ID)", "FederatedTokenFile"}},
		{"workload identity ok", CredentialConfig{Kind: "workloadidentity", TenantID: "t", ClientID: "c", FederatedTokenFile: writeFile(t, "tok", "eyJ")}, nil},
		{"default", CredentialConfig{Kind: "default"}, nil},
		{"unknown kind", CredentialConfig{Kind: "password"}, []string{"credential kind \"password\""}},
		{"http authority", CredentialConfig{Kind: "secret", TenantID: "t", ClientID: "c", ClientSecret: "s", AuthorityHost: "http://login"}, []string{"AuthorityHost"}},
		{"bad extra CA", CredentialConfig{Kind: "secret", TenantID: "t", ClientID: "c", ClientSecret: "s", ExtraCAFile: writeFile(t, "ca.pem", "nope")}, []string{"no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred, err := NewCredential(tt.cfg)
			if len(tt.wantErr) == 0 {
				if err != nil || cred == nil {
					t.Fatalf("NewCredential: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("NewCredential succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want mention of %q", err, w)
				}
			}
			if tt.cfg.ClientSecret != "" && strings.Contains(err.Error(), tt.cfg.ClientSecret+"\"") {
				t.Error("secret in error")
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCert writes a self-signed certificate with its RSA key as PEM and
// returns the path.
func writeCert(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mdeflow-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, key)})
	return writeFile(t, "cert.pem", b.String())
}

func mustPKCS8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestHTTPClientWithExtraCA(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	p := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	hc, err := HTTPClientWithExtraCA(p)
	if err != nil || hc == nil {
		t.Fatalf("HTTPClientWithExtraCA: %v", err)
	}
	if _, err := HTTPClientWithExtraCA(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("missing file accepted")
	}
}

// jwt builds an unsigned token with the given claims.
func jwt(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + ".sig"
}

func TestTokenClaimsAndRoles(t *testing.T) {
	t.Parallel()
	tok := jwt(map[string]any{"aud": "https://api.securitycenter.microsoft.com", "tid": "tenant", "appid": "app",
		"roles": []string{"Alert.Read.All", "Machine.Isolate"}, "exp": 1767225600})
	c, err := TokenClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Audience != "https://api.securitycenter.microsoft.com" || c.TenantID != "tenant" || c.AppID != "app" ||
		len(c.Roles) != 2 || !c.ExpiresAt.Equal(time.Unix(1767225600, 0)) {
		t.Errorf("claims = %+v", c)
	}
	roles, err := TokenRoles(jwt(map[string]any{"aud": []string{"a", "b"}, "azp": "x"}))
	if err != nil || roles != nil {
		t.Errorf("no roles: %v %v", roles, err)
	}
	secretish := "header.c2VjcmV0LXBheWxvYWQ.signature-material"
	for _, bad := range []string{"", "abc", "a.b", "a.!!!.c", secretish, "a." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c"} {
		_, err := TokenRoles(bad)
		if !errors.Is(err, ErrNotJWT) {
			t.Errorf("TokenRoles(%q) err = %v", bad, err)
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error quotes the token: %v", err)
		}
	}
}

func TestRequiredAndMissingRoles(t *testing.T) {
	t.Parallel()
	all := Features{PollAlerts: true, UpdateAlerts: true, MachineLookup: true, Isolate: true, Restrict: true, Scan: true,
		CollectForensics: true, CancelActions: true, Tags: true, MDEHunting: true, GraphHunting: true, GraphAlerts: true, SendMail: true}
	if n := len(RequiredRoles(all)); n != 13 {
		t.Fatalf("RequiredRoles(all) = %d requirements", n)
	}
	if n := len(RequiredRoles(Features{})); n != 0 {
		t.Fatalf("RequiredRoles(none) = %d", n)
	}
	tests := []struct {
		name     string
		features Features
		have     []string
		missing  []string // roles
	}{
		{"read via readwrite", Features{PollAlerts: true, MachineLookup: true}, []string{"Alert.ReadWrite.All", "Machine.ReadWrite.All"}, nil},
		{"update needs readwrite", Features{UpdateAlerts: true}, []string{"Alert.Read.All"}, []string{"Alert.ReadWrite.All"}},
		{"tags need machine readwrite", Features{Tags: true}, []string{"Machine.Read.All"}, []string{"Machine.ReadWrite.All"}},
		{"isolate", Features{Isolate: true, Scan: true}, []string{"Machine.Scan"}, []string{"Machine.Isolate"}},
		{"cancel any action role", Features{CancelActions: true}, []string{"Machine.Scan"}, nil},
		{"graph", Features{GraphHunting: true, GraphAlerts: true, SendMail: true}, []string{"SecurityAlert.ReadWrite.All"}, []string{"ThreatHunting.Read.All", "Mail.Send"}},
		{"case-insensitive", Features{MDEHunting: true}, []string{"advancedquery.read.all"}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, m := range MissingRoles(tt.have, RequiredRoles(tt.features)) {
			got = append(got, m.Role)
			if m.Feature == "" || m.Audience == "" {
				t.Errorf("%s: requirement without feature/audience: %+v", tt.name, m)
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.missing, ",") {
			t.Errorf("%s: missing = %v, want %v", tt.name, got, tt.missing)
		}
	}
}

// scopeCred is a fake credential issuing a JWT per scope.
type scopeCred struct {
	tokens map[string]string
	err    error
}

var _ azcore.TokenCredential = (*scopeCred)(nil)

func (s *scopeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if s.err != nil {
		return azcore.AccessToken{}, s.err
	}
	return azcore.AccessToken{Token: s.tokens[o.Scopes[0]], ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestCheckReport(t *testing.T) {
	t.Parallel()
	scopes := Scopes{MDE: "https://api.securitycenter.microsoft.com/.default", Graph: "https://graph.microsoft.com/.default"}
	mdeTok := jwt(map[string]any{"aud": "https://api.securitycenter.microsoft.com", "tid": "t1", "appid": "a1", "exp": 1767225600,
		"roles": []string{"Alert.ReadWrite.All", "Machine.Read.All"}})
	grTok := jwt(map[string]any{"aud": "https://graph.microsoft.com", "tid": "t1", "appid": "a1", "exp": 1767225600, "roles": []string{"Mail.Send"}})
	cred := &scopeCred{tokens: map[string]string{scopes.MDE: mdeTok, scopes.Graph: grTok}}

	var out bytes.Buffer
	err := Check(context.Background(), cred, scopes, Features{PollAlerts: true, Isolate: true, MachineLookup: true, SendMail: true, GraphHunting: true}, &out)
	if !errors.Is(err, ErrMissingRoles) {
		t.Fatalf("err = %v, want ErrMissingRoles", err)
	}
	report := out.String()
	for _, want := range []string{
		"Defender for Endpoint API (scope https://api.securitycenter.microsoft.com/.default)",
		"roles  Alert.ReadWrite.All, Machine.Read.All",
		"MISSING  Machine.Isolate",
		"needed to isolate and release machines",
		"ok       Alert.Read.All    needed to poll MDE alerts (Alert.ReadWrite.All also accepted)",
		"Microsoft Graph (scope https://graph.microsoft.com/.default)",
		"MISSING  ThreatHunting.Read.All",
		"2 required role(s) missing",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, mdeTok) || strings.Contains(report, strings.Split(mdeTok, ".")[1]) {
		t.Fatal("report contains the token")
	}

	out.Reset()
	if err := Check(context.Background(), cred, scopes, Features{PollAlerts: true}, &out); err != nil {
		t.Fatalf("satisfied check: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "Microsoft Graph") {
		t.Error("graph token fetched although no graph feature is on")
	}

	out.Reset()
	failing := &scopeCred{err: errors.New("AADSTS7000215: Invalid client secret provided")}
	err = Check(context.Background(), failing, scopes, Features{PollAlerts: true}, &out)
	if err == nil || errors.Is(err, ErrMissingRoles) || !strings.Contains(out.String(), "ERROR  getting a token") {
		t.Fatalf("token failure: err = %v, report:\n%s", err, out.String())
	}
}
