// Package notifyfn is the Notify function (Service Bus, queue
// "notifications"): it renders a notification once and delivers it to each
// of its channels. Delivery state is kept per channel, so a retry after one
// channel failed never re-sends to the channels that already succeeded.
package notifyfn

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/mdeflow/mdeflow/internal/fn"
	"github.com/mdeflow/mdeflow/internal/notify"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/wire"
)

// Name is the function (folder) name.
const Name = "Notify"

// Deliverer delivers one notification to its channels.
type Deliverer interface {
	Deliver(ctx context.Context, n pipeline.Notification) (notify.Report, error)
}

// Function is Notify.
type Function struct {
	Deliverer Deliverer
	Logger    *slog.Logger
}

// Handle processes one notifications-queue message.
func (f *Function) Handle(ctx context.Context, _ *wire.Invocation, msg wire.ServiceBusMessage) error {
	var n pipeline.Notification
	if err := json.Unmarshal(msg.Body, &n); err != nil {
		return fn.Permanentf("decoding notification: %w", err)
	}
	if n.ID == "" || n.Kind == "" {
		return fn.Permanent(errors.New("notification has no id or kind"))
	}
	rep, err := f.Deliverer.Deliver(ctx, n)
	if err != nil {
		return err
	}
	f.Logger.Info("notification delivered", fn.KeyNotifyID, n.ID, "report", rep)
	return nil
}
