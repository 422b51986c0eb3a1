package mde

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/testutil"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// staticCred is a hand-written fake azcore.TokenCredential.
type staticCred struct {
	token string
	calls atomic.Int32
}

var _ azcore.TokenCredential = (*staticCred)(nil)

func (s *staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	s.calls.Add(1)
	return azcore.AccessToken{Token: s.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

const testToken = "test-token-not-a-secret-but-must-not-be-logged"

// newTestClient starts a TLS server with h and a client pointed at it with
// fast retries.
func newTestClient(t *testing.T, h http.Handler, mutate func(*ClientOptions)) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	opts := &ClientOptions{
		BaseURL: srv.URL,
		ClientOptions: azcore.ClientOptions{
			Transport: pooledClient(srv),
			Retry:     policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Second},
		},
	}
	if mutate != nil {
		mutate(opts)
	}
	c, err := NewClient(&staticCred{token: testToken}, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, srv
}

// publicData returns ../shared/data/public/<name> relative to the module
// root, skipping the test when the corpus is absent.
func publicData(t *testing.T, name string) string { return testutil.PublicData(t, name) }

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// pooledClient trusts srv like srv.Client() but keeps connections like the
// SDK's default transport (MaxIdleConnsPerHost 10), so that bursts do not
// pay a TLS handshake per request.
func pooledClient(srv *httptest.Server) *http.Client {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}
}
