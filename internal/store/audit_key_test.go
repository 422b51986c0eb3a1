package store

import (
	"context"
	"testing"
	"time"
)

// Pins: an entry with a Key is recorded once however often it is replayed
// (a redelivered message must not double the audit).
func TestAuditKeyIsIdempotent(t *testing.T) {
	a := NewAudit(NewMemory())
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if _, err := a.Record(context.Background(), AuditEntry{Key: "iso-da1|isolate|accepted", At: at, MachineID: "m1", Action: "isolate", Outcome: "accepted"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Record(context.Background(), AuditEntry{Key: "iso-da1|isolate|succeeded", At: at.Add(time.Minute), MachineID: "m1", Action: "isolate", Outcome: "succeeded"}); err != nil {
		t.Fatal(err)
	}
	got, err := a.ListByMachine(context.Background(), "m1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Outcome != "accepted" || got[1].Outcome != "succeeded" {
		t.Fatalf("entries = %+v, want accepted then succeeded, once each", got)
	}
}
