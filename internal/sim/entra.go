package sim

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

var errNoCert = errors.New("no registered certificate has that thumbprint")

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

const (
	tokenLifetime       = 3599 * time.Second
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionSkew is the clock skew tolerated on client assertions.
	assertionSkew = 5 * time.Minute
)

// tokenIssuer is the "iss" of access tokens: the v1 issuer, as Entra uses for
// resources (like WindowsDefenderATP and Graph) that accept v1 tokens. It does
// not depend on the request host, so tokens work through any listener.
func (s *Server) tokenIssuer() string {
	return "https://sts.windows.net/" + s.tenantID + "/"
}

// serveEntra serves the Entra ID (login.microsoftonline.com) endpoints.
func (s *Server) serveEntra(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 2 {
		http.NotFound(w, r)
		return
	}
	tenant, rest := segs[0], strings.ToLower(strings.Join(segs[1:], "/"))
	switch rest {
	case "v2.0/.well-known/openid-configuration", ".well-known/openid-configuration":
		if !s.entraTenantOK(w, r, tenant) || !allowMethod(w, r, http.MethodGet) {
			return
		}
		s.serveOpenIDConfig(w, r, tenant, strings.HasPrefix(rest, "v2.0/"))
	case "discovery/v2.0/keys", "discovery/keys":
		if !s.entraTenantOK(w, r, tenant) || !allowMethod(w, r, http.MethodGet) {
			return
		}
		s.serveKeys(w)
	case "discovery/instance":
		if !allowMethod(w, r, http.MethodGet) {
			return
		}
		s.serveInstanceDiscovery(w, r)
	case "oauth2/v2.0/token", "oauth2/token":
		if !s.entraTenantOK(w, r, tenant) || !allowMethod(w, r, http.MethodPost) {
			return
		}
		s.serveToken(w, r, tenant, rest == "oauth2/v2.0/token")
	default:
		http.NotFound(w, r)
	}
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	w.WriteHeader(http.StatusMethodNotAllowed)
	return false
}

// entraTenantOK accepts the configured tenant id and, for discovery only,
// "common" and "organizations".
func (s *Server) entraTenantOK(w http.ResponseWriter, r *http.Request, tenant string) bool {
	if strings.EqualFold(tenant, s.tenantID) {
		return true
	}
	isToken := strings.Contains(strings.ToLower(r.URL.Path), "/oauth2/")
	if !isToken && (tenant == "common" || tenant == "organizations") {
		return true
	}
	if isToken && (tenant == "common" || tenant == "organizations") {
		writeAADError(w, s.now(), http.StatusBadRequest, "invalid_request", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. Use a tenant-specific endpoint for the client credentials flow.", "client", tenant))
		return false
	}
	writeAADError(w, s.now(), http.StatusBadRequest, "invalid_tenant", 90002,
		fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
	return false
}

func (s *Server) serveOpenIDConfig(w http.ResponseWriter, r *http.Request, tenant string, v2 bool) {
	base := baseURL(r)
	t := tenant
	if !strings.EqualFold(tenant, s.tenantID) {
		t = "{tenant}"
	} else {
		t = s.tenantID
	}
	cfg := map[string]any{
		"token_endpoint":                        base + "/" + t + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/" + t + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/" + t + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     base + "/oidc/userinfo",
		"authorization_endpoint":                base + "/" + t + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/" + t + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/" + t + "/oauth2/v2.0/logout",
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver"},
		"kerberos_endpoint":                     base + "/" + t + "/kerberos",
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
		"rbac_url":                              "https://pas.windows.net",
	}
	if !v2 {
		cfg["token_endpoint"] = base + "/" + t + "/oauth2/token"
		cfg["authorization_endpoint"] = base + "/" + t + "/oauth2/authorize"
		cfg["jwks_uri"] = base + "/common/discovery/keys"
		cfg["issuer"] = s.tokenIssuer()
	}
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) serveKeys(w http.ResponseWriter) {
	pub := s.pki.signKey.PublicKey
	key := map[string]any{
		"kty":    "RSA",
		"use":    "sig",
		"kid":    s.pki.kid,
		"x5t":    s.pki.kid,
		"n":      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"x5c":    []string{base64.StdEncoding.EncodeToString(s.pki.signCert.Raw)},
		"issuer": s.tokenIssuer(),
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{key}})
}

// serveInstanceDiscovery answers MSAL's /common/discovery/instance as Entra
// does for an authority it knows: the simulator host is its own only alias.
func (s *Server) serveInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	tenant := s.tenantID
	if auth := r.URL.Query().Get("authorization_endpoint"); auth != "" {
		if u, err := url.Parse(auth); err == nil {
			if segs := strings.Split(strings.Trim(u.Path, "/"), "/"); len(segs) > 0 && segs[0] != "" {
				tenant = segs[0]
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": baseURL(r) + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []any{map[string]any{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           []string{host},
		}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeAADError writes an Entra (AADSTS) OAuth error body.
func writeAADError(w http.ResponseWriter, now time.Time, status int, code string, aadsts int, msg string) {
	trace, corr := uuid.NewString(), uuid.NewString()
	ts := now.UTC().Format("2006-01-02 15:04:05Z")
	desc := fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, msg, trace, corr, ts)
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": desc,
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

// serveToken implements the client-credentials grant of the v2 endpoint
// (scope=<resource>/.default) and of the v1 endpoint (resource=<resource>).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tenant string, v2 bool) {
	now := s.Now()
	if err := r.ParseForm(); err != nil {
		writeAADError(w, now, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			writeAADError(w, now, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
			return
		}
		writeAADError(w, now, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	clientID := f.Get("client_id")
	if user, pass, ok := r.BasicAuth(); ok { // client_secret_basic
		clientID, _ = url.QueryUnescape(user)
		p, _ := url.QueryUnescape(pass)
		f.Set("client_secret", p)
	}
	if clientID == "" {
		writeAADError(w, now, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	app, ok := s.apps[strings.ToLower(clientID)]
	if !ok {
		writeAADError(w, now, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, s.tenantID))
		return
	}

	var audience string
	if v2 {
		raw := strings.TrimSpace(f.Get("scope"))
		if raw == "" {
			writeAADError(w, now, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
			return
		}
		// MSAL adds the OIDC scopes to every request; Entra ignores them
		// for client credentials. Exactly one resource/.default must remain.
		var resources []string
		for _, sc := range strings.Fields(raw) {
			switch sc {
			case "openid", "profile", "offline_access", "email":
				continue
			}
			resources = append(resources, sc)
		}
		if len(resources) != 1 || !strings.HasSuffix(resources[0], "/.default") {
			writeAADError(w, now, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", raw))
			return
		}
		scope := resources[0]
		audience = strings.TrimSuffix(scope, "/.default")
	} else {
		audience = strings.TrimRight(f.Get("resource"), "/")
		if audience == "" {
			writeAADError(w, now, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'resource'.")
			return
		}
	}
	audience = canonicalAudience(audience)
	if audience == "" {
		res := strings.Join(strings.Fields(f.Get("scope")), " ")
		if !v2 {
			res = f.Get("resource")
		}
		writeAADError(w, now, http.StatusBadRequest, "invalid_resource", 500011,
			fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", strings.TrimSuffix(res, "/.default"), s.tenantID))
		return
	}

	appidacr := "1"
	switch {
	case f.Get("client_assertion") != "" || f.Get("client_assertion_type") != "":
		if f.Get("client_assertion_type") != clientAssertionType {
			writeAADError(w, now, http.StatusBadRequest, "invalid_request", 50027, "JWT token is invalid or malformed: client_assertion_type must be "+clientAssertionType+".")
			return
		}
		tokenEndpoint := baseURL(r) + r.URL.Path
		if err := s.verifyAssertion(app, f.Get("client_assertion"), tokenEndpoint, tenant); err != nil {
			writeAADError(w, now, http.StatusUnauthorized, "invalid_client", err.aadsts, err.msg)
			return
		}
		appidacr = "2"
	case f.Get("client_secret") != "":
		if app.ClientSecret == "" || f.Get("client_secret") != app.ClientSecret {
			writeAADError(w, now, http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", app.ClientID))
			return
		}
	default:
		writeAADError(w, now, http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}

	tok, err := s.mintToken(app.ClientID, audience, app.Roles, appidacr, now, tokenLifetime)
	if err != nil {
		writeAADError(w, now, http.StatusInternalServerError, "temporarily_unavailable", 50000, "There was an error issuing a token.")
		return
	}
	if v2 {
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type":     "Bearer",
			"expires_in":     int(tokenLifetime / time.Second),
			"ext_expires_in": int(tokenLifetime / time.Second),
			"access_token":   tok,
		})
		return
	}
	exp := now.Add(tokenLifetime).Unix()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     fmt.Sprint(int(tokenLifetime / time.Second)),
		"ext_expires_in": fmt.Sprint(int(tokenLifetime / time.Second)),
		"expires_on":     fmt.Sprint(exp),
		"not_before":     fmt.Sprint(now.Unix()),
		"resource":       f.Get("resource"),
		"access_token":   tok,
	})
}

// canonicalAudience maps a requested resource to the "aud" Entra puts in the
// token, or "" if the resource is unknown to the simulated tenant.
func canonicalAudience(res string) string {
	switch strings.ToLower(strings.TrimRight(res, "/")) {
	case "https://api.securitycenter.microsoft.com":
		return AudienceSecurityCenter
	case "https://api.security.microsoft.com":
		return AudienceSecurity
	case "https://securitycenter.onmicrosoft.com/windowsatpservice":
		return AudienceWindowsATP
	case "https://graph.microsoft.com", graphAppID:
		return AudienceGraph
	}
	return ""
}

type assertionError struct {
	aadsts int
	msg    string
}

// verifyAssertion checks a private_key_jwt client assertion the way Entra
// does: a certificate registered on the app (by x5t / x5t#S256) signed it
// with RS256 or PS256, aud is the token endpoint, iss and sub are the client
// id, and exp/nbf bracket the wall clock.
func (s *Server) verifyAssertion(app *appReg, assertion, tokenEndpoint, tenant string) *assertionError {
	if len(app.certs) == 0 {
		return &assertionError{700027, fmt.Sprintf("Client assertion failed signature validation. The application '%s' has no certificate credentials.", app.ClientID)}
	}
	unverified, _, err := jwt.NewParser().ParseUnverified(assertion, jwt.MapClaims{})
	if err != nil {
		return &assertionError{50027, "JWT token is invalid or malformed."}
	}
	if alg := unverified.Method.Alg(); alg != "RS256" && alg != "PS256" {
		return &assertionError{50027, fmt.Sprintf("JWT token is invalid or malformed: the signing algorithm %s is not supported for client assertions.", alg)}
	}
	keyFound := false
	tok, err := jwt.Parse(assertion, func(t *jwt.Token) (any, error) {
		var thumb string
		var s256 bool
		if v, ok := t.Header["x5t#S256"].(string); ok {
			thumb, s256 = v, true
		} else if v, ok := t.Header["x5t"].(string); ok {
			thumb = v
		}
		for _, c := range app.certs {
			if thumb == "" || c.matchesThumbprint(thumb, s256) {
				keyFound = true
				return c.key, nil
			}
		}
		return nil, errNoCert
	},
		jwt.WithValidMethods([]string{"RS256", "PS256"}),
		jwt.WithTimeFunc(time.Now),
		jwt.WithLeeway(assertionSkew),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		switch {
		case !keyFound:
			return &assertionError{700027, fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.] Please visit the Azure Portal, Entra ID, App registrations, and find the app '%s'.", app.ClientID)}
		case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
			return &assertionError{700024, "Client assertion is not within its valid time range."}
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return &assertionError{50027, "JWT token is invalid or malformed: the exp claim is required."}
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			return &assertionError{7000274, "Client assertion failed signature validation."}
		}
		return &assertionError{50027, "JWT token is invalid or malformed."}
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	iss, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	if !strings.EqualFold(iss, app.ClientID) || !strings.EqualFold(sub, app.ClientID) {
		return &assertionError{700021, fmt.Sprintf("Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials. (iss=%q sub=%q)", iss, sub)}
	}
	auds, _ := claims.GetAudience()
	okAud := false
	for _, a := range auds {
		if strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(tokenEndpoint, "/")) {
			okAud = true
		}
	}
	if !okAud {
		return &assertionError{700212, fmt.Sprintf("The audience claim of the client assertion does not match the token endpoint %s (aud=%v).", tokenEndpoint, []string(auds))}
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		if iat, _ := claims.GetNotBefore(); iat != nil && exp.Sub(iat.Time) > 24*time.Hour {
			return &assertionError{700025, "Client assertion lifetime is too long."}
		}
	}
	return nil
}

// mintToken signs an access token like the ones Entra issues to apps.
func (s *Server) mintToken(clientID, audience string, roles []string, appidacr string, now time.Time, ttl time.Duration) (string, error) {
	oid := uuid.NewSHA1(uuid.NameSpaceOID, []byte("sim-sp/"+strings.ToLower(clientID))).String()
	claims := jwt.MapClaims{
		"aud":      audience,
		"iss":      s.tokenIssuer(),
		"iat":      now.Unix(),
		"nbf":      now.Unix(),
		"exp":      now.Add(ttl).Unix(),
		"aio":      "sim",
		"appid":    clientID,
		"appidacr": appidacr,
		"idp":      s.tokenIssuer(),
		"idtyp":    "app",
		"oid":      oid,
		"sub":      oid,
		"tid":      s.tenantID,
		"uti":      strings.ReplaceAll(uuid.NewString(), "-", "")[:22],
		"ver":      "1.0",
		"roles":    slices.Clone(roles),
	}
	if len(roles) == 0 {
		delete(claims, "roles")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = s.pki.kid
	t.Header["x5t"] = s.pki.kid
	signed, err := t.SignedString(s.pki.signKey)
	if err != nil {
		return "", fmt.Errorf("signing access token: %w", err)
	}
	return signed, nil
}

// MintToken signs an access token without going through the token endpoint,
// e.g. to test 401/403 paths: aud is the audience (use the Audience*
// constants), roles the "roles" claim, ttl the lifetime from the simulator
// clock (negative: already expired). The appid is DefaultClientID.
func (s *Server) MintToken(audience string, roles []string, ttl time.Duration) (string, error) {
	return s.mintToken(DefaultClientID, audience, roles, "1", s.Now(), ttl)
}

// principal is the verified identity behind an API call.
type principal struct {
	AppID string
	Roles []string
	Aud   string
}

// authError distinguishes 401 from 403 for the API surfaces.
type authError struct {
	status int
	msg    string
}

// verifyBearer checks the Authorization header of an API call: a Bearer JWT
// signed by the simulator, issued for this tenant and not expired (simulator
// clock). The audience is checked by the caller.
func (s *Server) verifyBearer(r *http.Request) (*principal, *authError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &authError{http.StatusUnauthorized, "Authorization header is missing"}
	}
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return nil, &authError{http.StatusUnauthorized, "Authorization header is invalid: expected 'Bearer <token>'"}
	}
	now := s.Now()
	tok, err := jwt.Parse(strings.TrimSpace(raw), func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != s.pki.kid {
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		return &s.pki.signKey.PublicKey, nil
	},
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(s.tokenIssuer()),
	)
	if err != nil {
		msg := "Invalid or expired authorization header"
		if strings.Contains(err.Error(), "expired") {
			msg = "Invalid or expired authorization header: the token is expired"
		}
		return nil, &authError{http.StatusUnauthorized, msg}
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	if tid, _ := claims["tid"].(string); !strings.EqualFold(tid, s.tenantID) {
		return nil, &authError{http.StatusUnauthorized, "Invalid or expired authorization header: wrong tenant"}
	}
	p := &principal{}
	p.AppID, _ = claims["appid"].(string)
	p.Aud, _ = claims["aud"].(string)
	if rs, ok := claims["roles"].([]any); ok {
		for _, r := range rs {
			if str, ok := r.(string); ok {
				p.Roles = append(p.Roles, str)
			}
		}
	}
	return p, nil
}

func (p *principal) hasAny(roles []string) bool {
	for _, want := range roles {
		if slices.Contains(p.Roles, want) {
			return true
		}
	}
	return false
}
