package sim

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func TestStorm429(t *testing.T) {
	s, clk := startSim(t, Options{Faults: Faults{Storm429: Window{From: testStart.Add(time.Minute), To: testStart.Add(time.Minute + 90*time.Second)}}})
	tok := mdeToken(t, s)
	if r := call(t, s, "GET", "/api/machines?$top=1", tok, nil); r.status != 200 {
		t.Fatalf("before storm: %d", r.status)
	}
	clk.Advance(time.Minute + 30*time.Second)
	for _, p := range []string{"/api/machines", "/api/alerts", "/v1.0/security/alerts_v2"} {
		r := call(t, s, "GET", p, tok, nil)
		if r.status != 429 || r.header.Get("Retry-After") != "60" {
			t.Errorf("%s in storm: %d Retry-After=%q", p, r.status, r.header.Get("Retry-After"))
		}
	}
	// The token endpoint is never faulted.
	_ = secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	clk.Advance(time.Minute)
	if r := call(t, s, "GET", "/api/machines?$top=1", tok, nil); r.status != 200 {
		t.Errorf("after storm: %d", r.status)
	}
	if s.Throttled() != 3 {
		t.Errorf("Throttled = %d, want 3", s.Throttled())
	}
}

func TestErrorRateIsSeeded(t *testing.T) {
	run := func() []int {
		s, _ := startSim(t, Options{Faults: Faults{ErrorRate: 0.5, Seed: 7}, DisableQuotas: true})
		tok := mdeToken(t, s)
		var out []int
		for i := 0; i < 20; i++ {
			out = append(out, call(t, s, "GET", "/api/machines?$top=1", tok, nil).status)
		}
		return out
	}
	a, b := run(), run()
	fails := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different outcomes: %v vs %v", a, b)
		}
		if a[i] >= 500 {
			fails++
		}
	}
	if fails == 0 || fails == len(a) {
		t.Errorf("ErrorRate 0.5 gave %d failures out of %d: %v", fails, len(a), a)
	}
}

// A lost response after the isolate was accepted: azcore's retry policy
// resends the POST and meets ActiveRequestAlreadyExists. This is the case
// mdeflow's isolate handler must treat as "already requested".
func TestPostCommitFaultWithAzcoreRetry(t *testing.T) {
	s, _ := startSim(t, Options{Faults: Faults{PostCommitErrorRate: 1}})
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), DefaultClientID, DefaultClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	pl := runtime.NewPipeline("simtest", "v0", runtime.PipelineOptions{
		PerRetry: []policy.Policy{runtime.NewBearerTokenPolicy(cred, []string{AudienceSecurityCenter + "/.default"}, nil)},
	}, &policy.ClientOptions{Transport: s.HTTPClient(), Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}})
	req, err := runtime.NewRequest(context.Background(), http.MethodPost, s.URL()+"/api/machines/"+SampleHotMachineID+"/isolate")
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.MarshalAsJSON(req, map[string]string{"Comment": "x", "IsolationType": "Full"}); err != nil {
		t.Fatal(err)
	}
	res, err := pl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rerr := runtime.NewResponseError(res)
	var ae *azcore.ResponseError
	if res.StatusCode != 400 || !asResponseError(rerr, &ae) || ae.ErrorCode != "ActiveRequestAlreadyExists" {
		t.Fatalf("final response %d %v", res.StatusCode, rerr)
	}
	total, accepted := s.IsolateCalls(SampleHotMachineID)
	if total != 2 || accepted != 1 || len(s.Actions()) != 1 {
		t.Errorf("IsolateCalls = %d/%d, actions %d; want 2/1 and 1 action", total, accepted, len(s.Actions()))
	}
}

func TestLatency(t *testing.T) {
	s, _ := startSim(t, Options{Faults: Faults{Latency: 150 * time.Millisecond}})
	tok := mdeToken(t, s)
	start := time.Now()
	if r := call(t, s, "GET", "/api/machines?$top=1", tok, nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("call took %v with 150ms latency", d)
	}
}
