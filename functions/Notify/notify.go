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
	"slices"

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
	// Configured are the channels this deployment has set up.
	Configured []string
	Logger     *slog.Logger
}

// mailOnly keeps the mail channels of chans, or all configured mail
// channels when chans names none.
func (f *Function) mailOnly(chans []string) []string {
	var out []string
	for _, c := range chans {
		if c == "outbox" || slices.Contains(mailChannels, c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		out = f.Resolve([]string{"email"})
	}
	return out
}

// mailChannels are the channels that deliver e-mail, in preference order.
var mailChannels = []string{"smtp", "graphmail"}

// Resolve maps the channel names a policy uses to configured channels:
// "email" means every configured mail channel (or the outbox when none is
// set up); a channel that is not configured is left out with a warning. An
// empty result means the deployment's default channels, so a notification
// is never dropped for want of a channel.
func (f *Function) Resolve(names []string) []string {
	configured := map[string]bool{}
	for _, c := range f.Configured {
		configured[c] = true
	}
	var out []string
	seen := map[string]bool{}
	add := func(c string) {
		if configured[c] && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for _, n := range names {
		if n == "email" {
			before := len(out)
			for _, m := range mailChannels {
				add(m)
			}
			if len(out) == before {
				add("outbox")
			}
			continue
		}
		if !configured[n] {
			f.Logger.Warn("notification channel not configured; using the others or the defaults", "channel", n)
			continue
		}
		add(n)
	}
	return out
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
	n.Channels = f.Resolve(n.Channels)
	if len(n.Recipients) > 0 {
		// Named recipients (the approvers) get it by e-mail only: the
		// approval links must not reach a wider channel.
		n.Channels = f.mailOnly(n.Channels)
		if len(n.Channels) == 0 {
			return fn.Permanentf("notification %s names recipients but no mail channel (outbox, smtp, graphmail) is configured", n.ID)
		}
	}
	// A claim left by an earlier delivery of this message (its process died
	// mid-send) is taken over at once, not after the sending lease; one of
	// another copy of it (same id, sent twice) is not.
	ctx = notify.WithAttempt(ctx, notify.Attempt{MessageID: msg.MessageID, SequenceNumber: msg.SequenceNumber,
		EnqueuedTime: msg.EnqueuedTime, DeliveryCount: msg.DeliveryCount})
	rep, err := f.Deliverer.Deliver(ctx, n)
	if err != nil {
		if errors.Is(err, notify.ErrPermanent) && !errors.Is(err, notify.ErrTransient) {
			// Nothing left that a retry could deliver (e.g. an unknown
			// channel): dead-letter with the reason now.
			return fn.Permanent(err)
		}
		return err
	}
	f.Logger.Info("notification delivered", fn.KeyNotifyID, n.ID, "report", rep)
	return nil
}
