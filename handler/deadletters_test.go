package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/queue"
	"github.com/mdeflow/mdeflow/internal/sim"
)

// Pins (issue 4): a message the broker dead-lettered is listed with its
// reason and can be sent back, and then goes through the pipeline.
func TestBrokerDeadLetterListedAndResubmitted(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tn := sim.SampleTenant(time.Now().UTC())
	alert := tn.Alerts[0]
	tn.Alerts = tn.Alerts[:1]
	st, err := startStack(ctx, stackOptions{Tenant: tn, Handler: handlerBin})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	body, _ := json.Marshal(pipeline.AlertMessage{ID: alert.ID, MachineID: alert.MachineID})
	if _, err := st.Host.DeadLetter(queue.Alerts, queue.Message{MessageID: "alert-" + alert.ID, ContentType: "application/json", Body: body},
		"MaxDeliveryCountExceeded", "the handler failed 10 times"); err != nil {
		t.Fatal(err)
	}
	dlq := queue.NewLocalSender(st.Host.URL(), st.MasterKey, nil)
	got, err := dlq.ListDeadLetters(ctx, queue.Alerts, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Reason != "MaxDeliveryCountExceeded" || string(got[0].Body) != string(body) {
		t.Fatalf("dead letters = %+v", got)
	}
	if err := dlq.ResubmitDeadLetter(ctx, queue.Alerts, got[0].SequenceNumber); err != nil {
		t.Fatal(err)
	}
	if err := dlq.ResubmitDeadLetter(ctx, queue.Alerts, got[0].SequenceNumber); err == nil {
		t.Fatal("resubmitting the same dead letter twice succeeded")
	}
	if err := st.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := st.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Alerts != 1 || res.DeadLettered != 0 || res.Notified != 1 {
		t.Fatalf("after resubmit: %s", res.summary())
	}
}
