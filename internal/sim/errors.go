package sim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Content types observed on the real service (defender-api.md §6.4).
const (
	contentTypeOData = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
	contentTypeGraph = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
	contentTypeError = "application/json; charset=utf-8"
)

// apiError is an MDE error response: {"error":{"code","message","target"}}.
type apiError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // sets Retry-After (seconds, rounded up) when > 0
	NoBody     bool          // 405 on action paths answers with an empty body
	Allow      string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errBadRequest(code, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: msg}
}

func errNotFound(msg string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "ResourceNotFound", Message: msg}
}

func errOData(msg string) *apiError { return errBadRequest("ODataError", msg) }

// retryAfterSeconds renders d as the whole seconds a client must wait (at least 1).
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// writeMDEError writes the documented MDE error body (common-errors.md) with a
// fresh correlation id as target.
func writeMDEError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	if e.NoBody {
		w.WriteHeader(e.Status)
		return
	}
	h.Set("Content-Type", contentTypeError)
	w.WriteHeader(e.Status)
	body := map[string]any{"error": map[string]any{
		"code":    e.Code,
		"message": e.Message,
		"target":  uuid.NewString(),
	}}
	_ = json.NewEncoder(w).Encode(body)
}

// writeGraphError writes a Microsoft Graph error body:
// {"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}.
func writeGraphError(w http.ResponseWriter, r *http.Request, now time.Time, e *apiError) {
	h := w.Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	h.Set("Content-Type", contentTypeError)
	reqID := uuid.NewString()
	h.Set("request-id", reqID)
	w.WriteHeader(e.Status)
	body := map[string]any{"error": map[string]any{
		"code":    e.Code,
		"message": e.Message,
		"innerError": map[string]any{
			"date":              now.UTC().Format("2006-01-02T15:04:05"),
			"request-id":        reqID,
			"client-request-id": r.Header.Get("client-request-id"),
		},
	}}
	_ = json.NewEncoder(w).Encode(body)
}

// writeOData writes a successful MDE/Graph payload with the OData headers of
// the real service.
func writeOData(w http.ResponseWriter, status int, contentType string, v any) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
