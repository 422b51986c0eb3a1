package wire

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkServeServiceBusInvocation measures the handler side of one queue
// message: decode the host's envelope (double-encoded body, metadata),
// run a trivial function, encode the response. This is per-message overhead
// on top of the function's own work.
func BenchmarkServeServiceBusInvocation(b *testing.B) {
	body := []byte(`{"id":"da638765432109876543_-1029384756","machineId":"3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c","source":"poll"}`)
	req, err := ServiceBusPayload("msg", ServiceBusMessage{Body: body, MessageID: "alert-da638765432109876543_-1029384756",
		ContentType: "application/json", DeliveryCount: 1, SequenceNumber: 42, EnqueuedTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
		ApplicationProperties: map[string]any{"source": "poll"}}, "", Sys{MethodName: "EnrichAlert", UtcNow: time.Now(), RandGuid: "x"})
	if err != nil {
		b.Fatal(err)
	}
	payload, err := req.Body()
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(&ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv.Handle("EnrichAlert", func(ctx context.Context, inv *Invocation) (Result, error) {
		m, err := inv.ServiceBus("msg")
		if err != nil || len(m.Body) == 0 {
			b.Fatal("decode failed", err)
		}
		return Result{}, nil
	})
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/EnrichAlert", bytes.NewReader(payload))
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
