package mde

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func resp(status int, body string, hdr ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func TestNewResponseErrorClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		body       string
		hdr        []string
		code       string
		is         []error
		isNot      []error
		transient  bool
		retryAfter time.Duration
	}{
		{"duplicate action", 400, `{"error":{"code":"ActiveRequestAlreadyExists","message":"Action is already in progress","target":"x"}}`, nil,
			CodeActiveRequestAlreadyExists, []error{ErrActiveRequestAlreadyExists, ErrBadRequest}, []error{ErrNotFound}, false, 0},
		{"duplicate by message", 400, `{"error":{"code":"BadRequest","message":"Action is already in progress"}}`, nil,
			CodeActiveRequestAlreadyExists, []error{ErrActiveRequestAlreadyExists}, nil, false, 0},
		{"os not supported", 400, `{"error":{"code":"OsPlatformNotSupported","message":"OS Platform Linux isn't supported"}}`, nil,
			CodeOsPlatformNotSupported, []error{ErrOsPlatformNotSupported, ErrBadRequest}, []error{ErrActiveRequestAlreadyExists}, false, 0},
		{"missing parameter", 400, `{"error":{"code":"MissingRequiredParameter","message":"Parameter Comment is missing"}}`, nil,
			CodeMissingRequiredParameter, []error{ErrBadRequest}, nil, false, 0},
		{"result too large", 400, `{"error":{"code":"BadRequest","message":"Query execution has exceeded the allowed result size. Optimize your query"}}`, nil,
			CodeQueryResultTooLarge, []error{ErrQueryResultTooLarge}, nil, false, 0},
		{"unknown 400 code", 400, `{"error":{"code":"SomethingNew","message":"x"}}`, nil,
			CodeBadRequest, []error{ErrBadRequest}, nil, false, 0},
		{"unauthorized", 401, `{"error":{"code":"Unauthorized","message":"expired"}}`, nil,
			CodeUnauthorized, []error{ErrUnauthorized}, nil, false, 0},
		{"forbidden", 403, `{"error":{"code":"Forbidden","message":"no role"}}`, nil,
			CodeForbidden, []error{ErrForbidden}, nil, false, 0},
		{"disabled feature keeps raw code", 403, `{"error":{"code":"DisabledFeature","message":"off"}}`, nil,
			CodeForbidden, []error{ErrForbidden}, nil, false, 0},
		{"not found", 404, `{"error":{"code":"ResourceNotFound","message":"Machine x was not found"}}`, nil,
			CodeResourceNotFound, []error{ErrNotFound}, []error{ErrForbidden}, false, 0},
		{"graph not found", 404, `{"error":{"code":"Request_ResourceNotFound","message":"no user","innerError":{"request-id":"rid-1"}}}`, nil,
			CodeResourceNotFound, []error{ErrNotFound}, nil, false, 0},
		{"method not allowed empty body", 405, ``, []string{"Allow", "POST"},
			CodeRequestFailed, nil, []error{ErrBadRequest}, false, 0},
		{"request timeout", 408, ``, nil, CodeTimeout, nil, nil, true, 0},
		{"throttled", 429, `{"error":{"code":"TooManyRequests","message":"slow down"}}`, []string{"Retry-After", "37"},
			CodeThrottled, []error{ErrThrottled}, nil, true, 37 * time.Second},
		{"hunting throttled code 429", 429, `{"error":{"code":"429","message":"API calls quota exceeded! maximum allowed 45 per 00:01:00"}}`, []string{"Retry-After", "5"},
			CodeThrottled, []error{ErrThrottled}, nil, true, 5 * time.Second},
		{"retry-after-ms", 429, `{}`, []string{"retry-after-ms", "250"}, CodeThrottled, []error{ErrThrottled}, nil, true, 250 * time.Millisecond},
		{"server error no body", 500, ``, nil, CodeServerError, []error{ErrServerError}, nil, true, 0},
		{"bad gateway html", 502, `<html>bad gateway</html>`, nil, CodeServerError, []error{ErrServerError}, nil, true, 0},
		{"unavailable", 503, `{"error":{"code":"ServiceUnavailable"}}`, nil, CodeServerError, nil, nil, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := NewResponseError("Op", resp(tt.status, tt.body, tt.hdr...))
			if e.Code != tt.code {
				t.Errorf("code = %q, want %q", e.Code, tt.code)
			}
			wrapped := fmt.Errorf("doing thing: %w", e)
			for _, s := range tt.is {
				if !errors.Is(wrapped, s) {
					t.Errorf("errors.Is(%v) = false", s)
				}
			}
			for _, s := range tt.isNot {
				if errors.Is(wrapped, s) {
					t.Errorf("errors.Is(%v) = true", s)
				}
			}
			if got := IsTransient(wrapped); got != tt.transient {
				t.Errorf("IsTransient = %v, want %v", got, tt.transient)
			}
			if e.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.retryAfter)
			}
		})
	}
	e := NewResponseError("GetUser", resp(404, `{"error":{"code":"Request_ResourceNotFound","message":"m","innerError":{"request-id":"rid-1"}}}`))
	if e.Target != "rid-1" || e.RawCode != "Request_ResourceNotFound" {
		t.Errorf("graph error = %#v", e)
	}
	if !strings.Contains(e.Error(), "GetUser: HTTP 404 ResourceNotFound (Request_ResourceNotFound): m") {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestIsTransientNonHTTPErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"cancelled", context.Canceled, true},
		{"conn refused", &url.Error{Op: "Get", URL: "https://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected eof", io.ErrUnexpectedEOF, true},
		{"dns", &net.DNSError{Err: "no such host", Name: "x"}, true},
		{"untrusted cert", &url.Error{Op: "Get", URL: "https://x", Err: x509.UnknownAuthorityError{}}, false},
		{"invalid id", fmt.Errorf("isolating machine: %w", &InvalidIDError{Kind: "machine", Value: "../x"}), false},
		{"invalid argument", invalidArg(errors.New("bad")), false},
		{"token endpoint 500", &azidentity.AuthenticationFailedError{RawResponse: &http.Response{StatusCode: 500}}, true},
		{"token endpoint 401", &azidentity.AuthenticationFailedError{RawResponse: &http.Response{StatusCode: 401}}, false},
		{"token endpoint unreachable", &azidentity.AuthenticationFailedError{}, true},
		{"plain", errors.New("decoding response: invalid character"), false},
	}
	for _, tt := range tests {
		if got := IsTransient(tt.err); got != tt.want {
			t.Errorf("%s: IsTransient = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Through the pipeline: a persistent 503 is retried by the SDK policy and
// ends as a transient *Error; a 404 is not retried.
func TestRetryPolicyThroughClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		wantCalls int32
		transient bool
	}{
		{503, 4, true}, // 1 try + 3 retries
		{404, 1, false},
		{400, 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				writeJSON(w, tt.status, `{"error":{"code":"X","message":"m"}}`)
			}), nil)
			_, err := c.GetAlert(context.Background(), alertA, false)
			if calls.Load() != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls.Load(), tt.wantCalls)
			}
			if IsTransient(err) != tt.transient {
				t.Errorf("IsTransient(%v) = %v", err, !tt.transient)
			}
			if !strings.HasPrefix(err.Error(), "getting alert "+alertA+": GetAlert: HTTP ") {
				t.Errorf("message = %q", err)
			}
		})
	}
}
