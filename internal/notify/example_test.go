package notify_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/store"
)

// A redelivered notification is not sent again to a channel that has it.
func ExampleDispatcher_Deliver() {
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	outbox, err := notify.NewOutbox(notify.OutboxConfig{Dir: dir, From: "mdeflow@contoso.com", To: []string{"soc@contoso.com"}})
	if err != nil {
		panic(err)
	}
	d, err := notify.NewDispatcher(notify.DispatcherOptions{
		Channels: map[string]notify.Channel{"outbox": outbox},
		Default:  []string{"outbox"},
		Store:    store.NewMemory(),
	})
	if err != nil {
		panic(err)
	}
	n := pipeline.Notification{ID: "breaker-2024-05-01", Kind: pipeline.NotifyBreaker,
		Text: "Isolation cap reached: isolations are paused.", CreatedAt: time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)}
	for range 2 {
		rep, err := d.Deliver(context.Background(), n)
		fmt.Println(rep.Channels[0].Channel, rep.Channels[0].Status, err)
	}
	// Output:
	// outbox sent <nil>
	// outbox alreadySent <nil>
}

func ExampleRender() {
	incident := int64(1126093)
	n := pipeline.Notification{
		ID:   "notif-1",
		Kind: pipeline.NotifyAlert,
		Alert: &pipeline.AlertInfo{ID: "da637472900382838869_1364969609", Severity: "High", IncidentID: &incident,
			Title: "Suspicious command\r\nBcc: victim@evil.example"},
		Machine: &pipeline.MachineInfo{ID: "111e6dd8c833c8a052ea231ec1b19adaf497b625", ComputerDNSName: "pc1.contoso.com"},
	}
	r, err := notify.Render(n, notify.RenderOptions{PortalBaseURL: "https://security.microsoft.us"})
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Subject)
	fmt.Println(r.Links.Alert)
	// Output:
	// [mdeflow] High alert: Suspicious command\r\nBcc: victim@evil.example on pc1.contoso.com
	// https://security.microsoft.us/alerts/da637472900382838869_1364969609
}

func ExampleSignWebhook() {
	body := []byte(`{"schema":"mdeflow.notification/v1","id":"n1"}`)
	secret := []byte("0123456789abcdef")
	sent := time.Unix(1714554000, 0)
	header := notify.SignWebhook(secret, sent, body)
	fmt.Println(notify.VerifyWebhookSignature(secret, header, body, sent.Add(time.Minute), 0))
	// Output:
	// <nil>
}
