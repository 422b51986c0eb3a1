package sim

import (
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestMDEAuthorization(t *testing.T) {
	const scanOnly = "5ca90000-0000-4000-8000-000000000001"
	s, clk := startSim(t, Options{Apps: []App{
		{ClientID: DefaultClientID, ClientSecret: DefaultClientSecret, Roles: AllRoles},
		{ClientID: scanOnly, ClientSecret: "scan", Roles: []string{RoleMachineScan, RoleAlertRead}},
	}})
	good := mdeToken(t, s)
	scanTok := secretToken(t, s, scanOnly, "scan", AudienceSecurity+"/.default")
	graphTok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	expired, err := s.MintToken(AudienceSecurityCenter, AllRoles, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Same claims, signed by a key the simulator does not know.
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(good, claims); err != nil {
		t.Fatal(err)
	}
	forgedTok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	forgedTok.Header["kid"] = s.pki.kid
	forged, err := forgedTok.SignedString(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)

	isolate := map[string]any{"Comment": "x"}
	tests := []struct {
		name    string
		method  string
		path    string
		token   string
		body    any
		status  int
		code    string
		message string
	}{
		{"no token", "GET", "/api/alerts", "", nil, 401, "Unauthorized", "Authorization header is missing"},
		{"expired", "GET", "/api/alerts", expired, nil, 401, "Unauthorized", "expired"},
		{"forged signature", "GET", "/api/alerts", forged, nil, 401, "Unauthorized", ""},
		{"alg none", "GET", "/api/alerts", noneTok, nil, 401, "Unauthorized", ""},
		{"garbage", "GET", "/api/alerts", "abc.def.ghi", nil, 401, "Unauthorized", ""},
		{"graph token on MDE", "GET", "/api/alerts", graphTok, nil, 403, "Forbidden", "audience"},
		{"scan app reads alerts", "GET", "/api/alerts", scanTok, nil, 200, "", ""},
		{"scan app cannot isolate", "POST", "/api/machines/" + SampleHotMachineID + "/isolate", scanTok, isolate, 403, "Forbidden",
			"The application does not have any of the required application permissions (Machine.Isolate) to access the resource."},
		{"scan app cannot read machines", "GET", "/api/machines", scanTok, nil, 403, "Forbidden", "Machine.Read.All, Machine.ReadWrite.All"},
		{"scan app cannot hunt", "POST", "/api/advancedqueries/run", scanTok, map[string]any{"Query": "DeviceInfo"}, 403, "Forbidden", "AdvancedQuery.Read.All"},
		{"scan app can scan", "POST", "/api/machines/" + SampleHotMachineID + "/runAntiVirusScan", scanTok, map[string]any{"Comment": "x", "ScanType": "Quick"}, 201, "", ""},
		{"good token isolates", "POST", "/api/machines/" + SampleHotMachineID + "/isolate", good, isolate, 201, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, s, tt.method, tt.path, tt.token, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.code == "" {
				return
			}
			if r.errCode(t) != tt.code {
				t.Errorf("code %s, want %s", r.errCode(t), tt.code)
			}
			if !strings.Contains(string(r.body), tt.message) {
				t.Errorf("body %s lacks %q", r.body, tt.message)
			}
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// A real token expires on the simulator clock after 3599 s.
	clk.Advance(tokenLifetime + time.Second)
	if r := call(t, s, "GET", "/api/alerts", good, nil); r.status != 401 {
		t.Errorf("token after its lifetime: %d", r.status)
	}
}
