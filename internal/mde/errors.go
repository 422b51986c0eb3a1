package mde

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Stable error codes carried by Error.Code. The service's own code is kept in
// Error.RawCode; Code is normalised so that callers can switch on it without
// knowing which spelling a given endpoint used ("429" vs "TooManyRequests",
// "NotFound" vs "ResourceNotFound", a 400 whose only hint is its message).
const (
	// 400-class codes documented in common-errors.md (and one observed one).
	CodeBadRequest                 = "BadRequest"
	CodeODataError                 = "ODataError"
	CodeInvalidInput               = "InvalidInput"
	CodeInvalidRequestBody         = "InvalidRequestBody"
	CodeMissingRequiredParameter   = "MissingRequiredParameter"
	CodeOsPlatformNotSupported     = "OsPlatformNotSupported"
	CodeClientVersionNotSupported  = "ClientVersionNotSupported"
	CodeActiveRequestAlreadyExists = "ActiveRequestAlreadyExists"
	CodeMaximumBatchSizeExceeded   = "MaximumBatchSizeExceeded"
	// CodeQueryResultTooLarge is a 400 from advanced hunting whose result
	// exceeded the size limit (the service sends only a message).
	CodeQueryResultTooLarge = "QueryResultTooLarge"

	CodeUnauthorized     = "Unauthorized"     // 401
	CodeForbidden        = "Forbidden"        // 403 (DisabledFeature, DisallowedOperation keep their RawCode)
	CodeResourceNotFound = "ResourceNotFound" // 404 (NotFound, ResourceNotFound, Request_ResourceNotFound ...)
	CodeTimeout          = "Timeout"          // 408
	CodeThrottled        = "TooManyRequests"  // 429, or body code "429"/"TooManyRequests"
	CodeServerError      = "ServerError"      // any 5xx
	// CodeRequestFailed is any other non-success status (405, 409, ...).
	CodeRequestFailed = "RequestFailed"
)

// known400 are service codes on a 400 that are kept verbatim.
var known400 = map[string]string{
	strings.ToLower(CodeODataError):                 CodeODataError,
	strings.ToLower(CodeInvalidInput):               CodeInvalidInput,
	strings.ToLower(CodeInvalidRequestBody):         CodeInvalidRequestBody,
	strings.ToLower(CodeMissingRequiredParameter):   CodeMissingRequiredParameter,
	strings.ToLower(CodeOsPlatformNotSupported):     CodeOsPlatformNotSupported,
	strings.ToLower(CodeClientVersionNotSupported):  CodeClientVersionNotSupported,
	strings.ToLower(CodeActiveRequestAlreadyExists): CodeActiveRequestAlreadyExists,
	strings.ToLower(CodeMaximumBatchSizeExceeded):   CodeMaximumBatchSizeExceeded,
}

// Error is a non-success answer from the Defender (or Graph) API.
type Error struct {
	StatusCode int
	// Code is one of the Code* constants.
	Code string
	// RawCode is error.code exactly as the service sent it ("" when the body had none).
	RawCode string
	Message string
	// Target is the service's correlation id (error.target, or Graph's innerError.request-id).
	Target string
	// RetryAfter is the Retry-After the service asked for (0 when absent).
	RetryAfter time.Duration
	// Op names the client operation, e.g. "IsolateMachine".
	Op string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "HTTP %d %s", e.StatusCode, e.Code)
	if e.RawCode != "" && e.RawCode != e.Code {
		fmt.Fprintf(&b, " (%s)", e.RawCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " [retry after %s]", e.RetryAfter)
	}
	if e.Target != "" {
		fmt.Fprintf(&b, " [target %s]", e.Target)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *Error) Is(target error) bool {
	s, ok := target.(sentinel)
	if !ok {
		return false
	}
	if s.code != "" && e.Code == s.code {
		return true
	}
	return s.status != 0 && e.StatusCode == s.status
}

// sentinel is an immutable comparison value for errors.Is.
type sentinel struct {
	code   string
	status int
	text   string
}

func (s sentinel) Error() string { return s.text }

// Sentinels for errors.Is. A sentinel with a status matches every Error with
// that status, whatever its code.
var (
	ErrActiveRequestAlreadyExists error = sentinel{code: CodeActiveRequestAlreadyExists, text: "mde: action already in progress"}
	ErrOsPlatformNotSupported     error = sentinel{code: CodeOsPlatformNotSupported, text: "mde: OS platform not supported"}
	ErrNotFound                   error = sentinel{code: CodeResourceNotFound, status: http.StatusNotFound, text: "mde: not found"}
	ErrUnauthorized               error = sentinel{code: CodeUnauthorized, status: http.StatusUnauthorized, text: "mde: unauthorized"}
	ErrForbidden                  error = sentinel{code: CodeForbidden, status: http.StatusForbidden, text: "mde: forbidden"}
	ErrThrottled                  error = sentinel{code: CodeThrottled, status: http.StatusTooManyRequests, text: "mde: throttled"}
	ErrBadRequest                 error = sentinel{status: http.StatusBadRequest, text: "mde: bad request"}
	ErrServerError                error = sentinel{code: CodeServerError, text: "mde: server error"}
	ErrQueryResultTooLarge        error = sentinel{code: CodeQueryResultTooLarge, text: "mde: query result too large"}
)

const maxErrorBody = 64 << 10

// NewResponseError builds an *Error from a non-success response, reading (and
// closing) at most 64 KiB of its body. It understands the MDE body
// {"error":{"code","message","target"}} and Graph's variant with
// innerError.request-id. Exported so that the Graph client shares one error type.
func NewResponseError(op string, resp *http.Response) *Error {
	e := &Error{Op: op, StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header)}
	if resp.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		var env struct {
			Error struct {
				Code       string `json:"code"`
				Message    string `json:"message"`
				Target     string `json:"target"`
				InnerError struct {
					RequestID string `json:"request-id"`
				} `json:"innerError"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &env) == nil {
			e.RawCode = env.Error.Code
			e.Message = truncate(env.Error.Message, 1024)
			e.Target = env.Error.Target
			if e.Target == "" {
				e.Target = env.Error.InnerError.RequestID
			}
		}
	}
	e.Code = normaliseCode(e.StatusCode, e.RawCode, e.Message)
	return e
}

func normaliseCode(status int, raw, msg string) string {
	lraw := strings.ToLower(raw)
	switch {
	case status == http.StatusTooManyRequests || raw == "429" || lraw == "toomanyrequests":
		return CodeThrottled
	case status >= 500:
		return CodeServerError
	case status == http.StatusUnauthorized:
		return CodeUnauthorized
	case status == http.StatusForbidden:
		return CodeForbidden
	case status == http.StatusNotFound:
		return CodeResourceNotFound
	case status == http.StatusRequestTimeout:
		return CodeTimeout
	case status == http.StatusBadRequest:
		if c, ok := known400[lraw]; ok {
			return c
		}
		lmsg := strings.ToLower(msg)
		switch {
		// Several action pages document only the message for a duplicate action.
		case strings.Contains(lmsg, "already in progress"):
			return CodeActiveRequestAlreadyExists
		case strings.Contains(lmsg, "exceeded the allowed result size"):
			return CodeQueryResultTooLarge
		}
		return CodeBadRequest
	}
	return CodeRequestFailed
}

// retryAfter parses Retry-After (seconds or HTTP date) and retry-after-ms.
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// IsTransient is the one place that classifies an error as worth retrying
// later (true: throttling, 5xx, 408, network failures, deadlines, token
// endpoint outages) or permanent (false: other 4xx, invalid ids, bad input,
// undecodable responses). Callers map true to "let Service Bus redeliver" and
// false to "dead-letter with the reason".
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var me *Error
	if errors.As(err, &me) {
		return statusTransient(me.StatusCode)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return statusTransient(re.StatusCode)
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		// No response means the token endpoint could not be reached.
		return afe.RawResponse == nil || statusTransient(afe.RawResponse.StatusCode)
	}
	var iid *InvalidIDError
	if errors.As(err, &iid) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The invocation ran out of time or the host is stopping: the message
		// must come back, so this is transient.
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// A certificate the client does not trust is a configuration problem,
	// not an outage, even though it arrives as a *url.Error.
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &he) || errors.As(err, &cie) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

func statusTransient(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500
}

// ErrInvalidArgument marks a call refused before any request was sent
// because an argument (id, enum, comment) was invalid. It is permanent.
var ErrInvalidArgument = errors.New("invalid argument")

// Is lets errors.Is(err, ErrInvalidArgument) match id validation failures.
func (e *InvalidIDError) Is(target error) bool { return target == ErrInvalidArgument }

// invalidArg wraps a validation failure so that it matches ErrInvalidArgument.
func invalidArg(err error) error {
	if err == nil || errors.Is(err, ErrInvalidArgument) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
}
