package wire

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServerTimerSmoke(t *testing.T) {
	s := NewServer(&ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var got TimerInfo
	s.Handle("CleanupTimer", func(ctx context.Context, inv *Invocation) (Result, error) {
		var err error
		got, err = inv.Timer("myTimer")
		inv.Log("ran")
		return Result{}, err
	})
	body := `{"Data":{"myTimer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{"sys":{"MethodName":"CleanupTimer","UtcNow":"2025-01-15T10:05:00.0214567Z","RandGuid":"x"}}}`
	req := httptest.NewRequest(http.MethodPost, "/CleanupTimer", strings.NewReader(body))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != `{"Outputs":{},"Logs":["ran"],"ReturnValue":null}` {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if !got.IsPastDue || !got.Schedule.AdjustForDST || got.ScheduleStatus != nil {
		t.Fatalf("timer %+v", got)
	}
}
