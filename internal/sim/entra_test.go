package sim

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"
)

func TestClientSecretCredentialGetsToken(t *testing.T) {
	s, _ := startSim(t, Options{})
	tests := []struct {
		scope   string
		wantAud string
	}{
		{"https://api.securitycenter.microsoft.com/.default", AudienceSecurityCenter},
		{"https://api.security.microsoft.com/.default", AudienceSecurity},
		{"https://securitycenter.onmicrosoft.com/windowsatpservice/.default", AudienceWindowsATP},
		{"https://graph.microsoft.com/.default", AudienceGraph},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			tok := secretToken(t, s, DefaultClientID, DefaultClientSecret, tt.scope)
			claims := jwt.MapClaims{}
			parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return &s.pki.signKey.PublicKey, nil },
				jwt.WithTimeFunc(func() time.Time { return testStart }))
			if err != nil || !parsed.Valid {
				t.Fatalf("token does not verify with the sim key: %v", err)
			}
			if parsed.Method.Alg() != "RS256" {
				t.Errorf("alg = %s, want RS256", parsed.Method.Alg())
			}
			if claims["aud"] != tt.wantAud {
				t.Errorf("aud = %v, want %s", claims["aud"], tt.wantAud)
			}
			if claims["tid"] != s.TenantID() || claims["appid"] != DefaultClientID {
				t.Errorf("tid/appid = %v/%v", claims["tid"], claims["appid"])
			}
			roles, _ := claims["roles"].([]any)
			if len(roles) != len(AllRoles) {
				t.Errorf("roles = %v, want %v", roles, AllRoles)
			}
			exp, _ := claims.GetExpirationTime()
			if got := exp.Sub(testStart); got != tokenLifetime {
				t.Errorf("exp - now = %v, want %v (sim clock)", got, tokenLifetime)
			}
		})
	}
}

func TestClientCertificateCredentialGetsToken(t *testing.T) {
	const clientID = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b"
	cert, key, certPEM := newAppCert(t, "mdeflow-test")
	s, _ := startSim(t, Options{Apps: []App{{ClientID: clientID, CertificatePEM: certPEM, Roles: []string{RoleMachineIsolate}}}})

	for _, sendChain := range []bool{false, true} {
		cred, err := azidentity.NewClientCertificateCredential(s.TenantID(), clientID, []*x509Certificate{cert}, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true, SendCertificateChain: sendChain})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{AudienceSecurityCenter + "/.default"}})
		if err != nil {
			t.Fatalf("GetToken (x5c=%v): %v", sendChain, err)
		}
		claims := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(tok.Token, claims); err != nil {
			t.Fatal(err)
		}
		if claims["appid"] != clientID || claims["appidacr"] != "2" {
			t.Errorf("appid/appidacr = %v/%v, want %s/2", claims["appid"], claims["appidacr"], clientID)
		}
	}

	// A certificate the app did not register is refused through azidentity too.
	other, otherKey, _ := newAppCert(t, "intruder")
	cred, err := azidentity.NewClientCertificateCredential(s.TenantID(), clientID, []*x509Certificate{other}, otherKey,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{AudienceSecurityCenter + "/.default"}})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Fatalf("GetToken with an unregistered certificate: err = %v, want AADSTS700027", err)
	}
}

func TestWrongSecretIsRefused(t *testing.T) {
	s, _ := startSim(t, Options{})
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), DefaultClientID, "wrong",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{AudienceSecurityCenter + "/.default"}})
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("err = %v, want AADSTS7000215", err)
	}
	if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "client_secret=wrong") {
		t.Errorf("the error echoes the secret: %v", err)
	}
}

// postToken posts a raw token request.
func postToken(t *testing.T, s *Server, tenant string, form url.Values) resp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var r resp
	r.status, r.header = res.StatusCode, res.Header
	buf := new(strings.Builder)
	_, _ = bufCopy(buf, res.Body)
	r.body = []byte(buf.String())
	return r
}

func TestTokenEndpointErrors(t *testing.T) {
	const certApp = "11112222-3333-4444-5555-666677778888"
	cert, key, certPEM := newAppCert(t, "assertion")
	s, _ := startSim(t, Options{Apps: []App{
		{ClientID: DefaultClientID, ClientSecret: DefaultClientSecret, Roles: AllRoles},
		{ClientID: certApp, CertificatePEM: certPEM, Roles: []string{RoleAlertRead}},
	}})
	endpoint := s.URL() + "/" + s.TenantID() + "/oauth2/v2.0/token"
	assertion := func(alg jwt.SigningMethod, k *rsa.PrivateKey, claims jwt.MapClaims, thumb bool) string {
		tok := jwt.NewWithClaims(alg, claims)
		if thumb {
			sum := sha256.Sum256(cert.Raw)
			tok.Header["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
		}
		out, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"aud": endpoint, "iss": certApp, "sub": certApp, "jti": "1",
			"nbf": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix()}
	}
	_, otherKey, _ := newAppCert(t, "other")
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "scope": {AudienceSecurityCenter + "/.default"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	withClaims := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := good()
		mut(c)
		return c
	}
	tests := []struct {
		name       string
		tenant     string
		form       url.Values
		wantStatus int
		wantError  string
		wantAADSTS string
	}{
		{"secret ok", "", form("client_id", DefaultClientID, "client_secret", DefaultClientSecret), 200, "", ""},
		{"wrong secret", "", form("client_id", DefaultClientID, "client_secret", "nope"), 401, "invalid_client", "AADSTS7000215"},
		{"unknown app", "", form("client_id", "99999999-9999-9999-9999-999999999999", "client_secret", "x"), 400, "unauthorized_client", "AADSTS700016"},
		{"unknown tenant", "00000000-0000-0000-0000-000000000001", form("client_id", DefaultClientID, "client_secret", DefaultClientSecret), 400, "invalid_tenant", "AADSTS90002"},
		{"scope without .default", "", form("client_id", DefaultClientID, "client_secret", DefaultClientSecret, "scope", "https://api.securitycenter.microsoft.com/Alert.Read.All"), 400, "invalid_scope", "AADSTS1002012"},
		{"unknown resource", "", form("client_id", DefaultClientID, "client_secret", DefaultClientSecret, "scope", "https://vault.azure.net/.default"), 400, "invalid_resource", "AADSTS500011"},
		{"wrong grant", "", form("client_id", DefaultClientID, "client_secret", DefaultClientSecret, "grant_type", "password"), 400, "unsupported_grant_type", "AADSTS70003"},
		{"no credential", "", form("client_id", DefaultClientID), 401, "invalid_client", "AADSTS7000218"},
		{"assertion PS256 ok", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, key, good(), true)), 200, "", ""},
		{"assertion RS256 ok", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodRS256, key, good(), false)), 200, "", ""},
		{"assertion signed by another key", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, otherKey, good(), true)), 401, "invalid_client", "AADSTS7000274"},
		{"assertion wrong aud", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, key, withClaims(func(c jwt.MapClaims) { c["aud"] = "https://login.microsoftonline.com/x/oauth2/v2.0/token" }), true)), 401, "invalid_client", "AADSTS700212"},
		{"assertion wrong iss", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, key, withClaims(func(c jwt.MapClaims) { c["iss"] = DefaultClientID }), true)), 401, "invalid_client", "AADSTS700021"},
		{"assertion expired", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, key, withClaims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), true)), 401, "invalid_client", "AADSTS700024"},
		{"assertion without exp", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, key, withClaims(func(c jwt.MapClaims) { delete(c, "exp") }), true)), 401, "invalid_client", "AADSTS50027"},
		{"assertion HS256", "", form("client_id", certApp, "client_assertion_type", clientAssertionType, "client_assertion", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good()).SignedString([]byte("k"))
			return s
		}()), 401, "invalid_client", "AADSTS50027"},
		{"assertion for secret-only app", "", form("client_id", DefaultClientID, "client_assertion_type", clientAssertionType, "client_assertion", assertion(jwt.SigningMethodPS256, key, good(), true)), 401, "invalid_client", "AADSTS700027"},
		{"secret for cert-only app", "", form("client_id", certApp, "client_secret", "x"), 401, "invalid_client", "AADSTS7000215"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant := tt.tenant
			if tenant == "" {
				tenant = s.TenantID()
			}
			r := postToken(t, s, tenant, tt.form)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
			m := r.json(t)
			if tt.wantError == "" {
				if m["token_type"] != "Bearer" || m["access_token"] == "" || m["expires_in"].(jsonNumber).String() != "3599" || m["ext_expires_in"] == nil {
					t.Errorf("token response = %v", m)
				}
				return
			}
			if m["error"] != tt.wantError {
				t.Errorf("error = %v, want %s", m["error"], tt.wantError)
			}
			if d, _ := m["error_description"].(string); !strings.HasPrefix(d, tt.wantAADSTS+":") || !strings.Contains(d, "Trace ID:") {
				t.Errorf("error_description = %q, want prefix %s:", d, tt.wantAADSTS)
			}
			if m["trace_id"] == nil || m["correlation_id"] == nil || m["error_codes"] == nil {
				t.Errorf("AADSTS body lacks trace_id/correlation_id/error_codes: %v", m)
			}
		})
	}
}

func TestDiscoveryDocuments(t *testing.T) {
	s, _ := startSim(t, Options{})
	r := call(t, s, "GET", "/"+s.TenantID()+"/v2.0/.well-known/openid-configuration", "", nil)
	if r.status != 200 {
		t.Fatalf("openid-configuration: %d %s", r.status, r.body)
	}
	cfg := r.json(t)
	base := s.URL() + "/" + s.TenantID()
	for k, want := range map[string]string{
		"issuer":                 base + "/v2.0",
		"token_endpoint":         base + "/oauth2/v2.0/token",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize",
		"jwks_uri":               base + "/discovery/v2.0/keys",
	} {
		if cfg[k] != want {
			t.Errorf("%s = %v, want %s", k, cfg[k], want)
		}
	}
	keys := call(t, s, "GET", "/"+s.TenantID()+"/discovery/v2.0/keys", "", nil).json(t)
	ks, _ := keys["keys"].([]any)
	if len(ks) != 1 || ks[0].(map[string]any)["kid"] != s.pki.kid || ks[0].(map[string]any)["kty"] != "RSA" {
		t.Errorf("jwks = %v", keys)
	}
	inst := call(t, s, "GET", "/common/discovery/instance?api-version=1.1&authorization_endpoint="+url.QueryEscape(base+"/oauth2/v2.0/authorize"), "", nil)
	if inst.status != 200 || !strings.Contains(string(inst.body), "tenant_discovery_endpoint") {
		t.Errorf("instance discovery: %d %s", inst.status, inst.body)
	}
}
