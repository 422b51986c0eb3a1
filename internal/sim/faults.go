package sim

import (
	"context"
	"net/http"
	"time"
)

var serverErrors = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// preFault applies latency, the 429 storm and random 5xx before a call is
// handled. It returns the error to send, if any.
func (s *Server) preFault(ctx context.Context) *apiError {
	s.mu.Lock()
	f := s.faults
	now := s.now()
	var fail int
	if f.ErrorRate > 0 && s.rng.Float64() < f.ErrorRate {
		fail = serverErrors[s.rng.IntN(len(serverErrors))]
	}
	s.mu.Unlock()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if f.Storm429.contains(now) {
		return &apiError{
			Status:     http.StatusTooManyRequests,
			Code:       "TooManyRequests",
			Message:    "Too many requests. Retry after the time given in the Retry-After header.",
			RetryAfter: f.Storm429.To.Sub(now),
		}
	}
	if fail != 0 {
		return &apiError{Status: fail, Code: "InternalServerError", Message: ""}
	}
	return nil
}

// postCommitFault reports whether a completed state change should be answered
// with a 503 (the change is kept). Caller holds s.mu.
func (s *Server) postCommitFaultLocked() bool {
	return s.faults.PostCommitErrorRate > 0 && s.rng.Float64() < s.faults.PostCommitErrorRate
}

func errPostCommit() *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: "The service is temporarily unavailable."}
}
