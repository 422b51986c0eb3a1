package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/store"
)

// Store tables used by the Dispatcher.
const (
	// TableDeliveries holds one row per (notification, channel):
	// PartitionKey = store.EscapeKey(notification id), RowKey = channel
	// name. A row with RowKey "_grouped" marks a notification folded into a
	// group.
	TableDeliveries = "deliveries"
	// TableGroups holds one row per open or closing group:
	// PartitionKey = store.EscapeKey(group key), RowKey "group".
	TableGroups = "notifygroups"

	groupRowKey  = "group"
	foldedRowKey = "_grouped"
)

// Delivery states stored in TableDeliveries.
const (
	StateSending  = "sending"  // claimed; a send is (or was) in flight
	StateSent     = "sent"     // delivered: never sent again
	StateFailed   = "failed"   // transient failure: the next Deliver retries
	StateRejected = "rejected" // permanent failure: not retried
	StateFolded   = "folded"   // (marker row) folded into a group
)

// Per-channel results in a Report.
const (
	DeliverySent           = "sent"
	DeliveryAlreadySent    = "alreadySent"
	DeliveryFailed         = "failed"     // transient, will be retried
	DeliveryRejected       = "rejected"   // permanent
	DeliveryInProgress     = "inProgress" // another invocation holds the claim
	DeliveryUnknownChannel = "unknownChannel"
)

// slog attribute keys.
const (
	logNotificationID = "notification_id"
	logChannel        = "channel"
	logKind           = "kind"
	logOutcome        = "outcome"
	logDuration       = "duration_ms"
	logGroupKey       = "group_key"
)

// Defaults of the Dispatcher.
const (
	// DefaultSendingLease is how long a "sending" claim keeps other
	// invocations away. A claim older than this is considered abandoned (the
	// process died mid-send) and is taken over: the channel may then
	// receive the notification twice, recognisable by its id/Message-ID.
	DefaultSendingLease = 2 * time.Minute
	// DefaultClaimWait is how long a delivery waits for another delivery's
	// send of the same notification to the same channel to finish before it
	// reports the channel "in progress" (see DispatcherOptions.ClaimWait).
	DefaultClaimWait = 2 * time.Second
	// maxFoldedStored caps the folded alerts listed in a group record; the
	// count keeps growing beyond it.
	maxFoldedStored    = 200
	bookkeepingTimeout = 10 * time.Second
)

// DispatcherOptions configure NewDispatcher.
type DispatcherOptions struct {
	// Channels by name (the names notifications and policies use).
	Channels map[string]Channel
	// Default channels for a notification that names none.
	Default []string
	// Store keeps the per-channel delivery state and the groups.
	Store store.Backend
	// Render options (portal base, product name).
	Render RenderOptions
	// GroupWindow folds alert notifications with the same GroupKey: the
	// first is sent at once, later ones within the window are recorded and
	// sent as one digest when the window has closed. 0 disables grouping.
	GroupWindow time.Duration
	// SendingLease, default DefaultSendingLease.
	SendingLease time.Duration
	// ClaimWait is how long a delivery that finds the channel claimed by
	// another live delivery (a copy of the same message on another
	// instance, usually) waits for that send to finish, so that it can
	// answer "already sent" instead of failing and being redelivered at
	// once, over and over, until its maximum delivery count. Default
	// DefaultClaimWait; negative: do not wait. Measured on the real clock.
	ClaimWait time.Duration
	// Clock, default time.Now.
	Clock func() time.Time
	// Logger, default discards.
	Logger *slog.Logger
}

// Dispatcher delivers notifications to channels exactly once per channel
// (as far as the channel's own acknowledgement allows), retrying only the
// channels that failed. It keeps no state in memory: every decision is made
// from the store, so it works in a stateless, timer-less Functions
// invocation and across instances.
type Dispatcher struct {
	channels map[string]Channel
	defaults []string
	store    store.Backend
	render   RenderOptions
	window   time.Duration
	lease    time.Duration
	wait     time.Duration
	clock    func() time.Time
	log      *slog.Logger
}

// NewDispatcher validates the options, collecting every problem.
func NewDispatcher(o DispatcherOptions) (*Dispatcher, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("notify: no store"))
	}
	if len(o.Channels) == 0 {
		errs = append(errs, errors.New("notify: no channels"))
	}
	for name, ch := range o.Channels {
		if err := ValidateChannelName(name); err != nil {
			errs = append(errs, err)
		}
		if ch == nil {
			errs = append(errs, fmt.Errorf("notify: channel %q is nil", name))
		}
	}
	for _, name := range o.Default {
		if _, ok := o.Channels[name]; !ok {
			errs = append(errs, fmt.Errorf("notify: default channel %q is not configured", oneLine(name, 64)))
		}
	}
	if err := o.Render.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.GroupWindow < 0 {
		errs = append(errs, errors.New("notify: negative group window"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.SendingLease <= 0 {
		o.SendingLease = DefaultSendingLease
	}
	switch {
	case o.ClaimWait == 0:
		o.ClaimWait = DefaultClaimWait
	case o.ClaimWait < 0:
		o.ClaimWait = 0
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	chans := make(map[string]Channel, len(o.Channels))
	for k, v := range o.Channels {
		chans[k] = v
	}
	return &Dispatcher{
		channels: chans, defaults: slices.Clone(o.Default), store: o.Store, render: o.Render.withDefaults(),
		window: o.GroupWindow, lease: o.SendingLease, wait: o.ClaimWait, clock: o.Clock, log: o.Logger,
	}, nil
}

// Report says what Deliver did.
type Report struct {
	NotificationID string
	Kind           string
	Channels       []ChannelReport
	// Folded is set when the notification was recorded in a group instead
	// of being sent; it will be counted in the group's digest.
	Folded   bool
	GroupKey string
	// Digests are the group digests this call sent (a window that had
	// closed was flushed first).
	Digests []Report
	// RetryAfter is the longest Retry-After a channel asked for.
	RetryAfter time.Duration
}

// ChannelReport is the result for one channel.
type ChannelReport struct {
	Channel  string
	Status   string
	Attempts int
	Err      error
	Duration time.Duration
}

// DeliveryError is returned by Deliver when at least one channel did not
// get the notification. It matches ErrTransient when any failure can be
// retried (the queue should redeliver; channels already served are not
// sent again), and ErrPermanent otherwise.
type DeliveryError struct {
	NotificationID string
	// Failed lists "channel: error" for every failed channel.
	Failed     []string
	Transient  bool
	RetryAfter time.Duration
	errs       []error
}

func (e *DeliveryError) Error() string {
	class := "permanently"
	if e.Transient {
		class = "transiently"
	}
	return fmt.Sprintf("delivering notification %s %s failed: %s", oneLine(e.NotificationID, 128), class, strings.Join(e.Failed, "; "))
}

// Is makes errors.Is(err, ErrTransient/ErrPermanent) follow Transient.
func (e *DeliveryError) Is(target error) bool {
	switch target {
	case ErrTransient:
		return e.Transient
	case ErrPermanent:
		return !e.Transient
	}
	return false
}

// Unwrap returns the errors of the deciding class only, so errors.Is and
// RetryAfter see consistent information.
func (e *DeliveryError) Unwrap() []error { return e.errs }

// deliveryRecord is the JSON document of a TableDeliveries row.
type deliveryRecord struct {
	NotificationID string    `json:"notificationId"`
	Channel        string    `json:"channel"`
	Kind           string    `json:"kind,omitempty"`
	State          string    `json:"state"`
	Attempts       int       `json:"attempts,omitempty"`
	LastError      string    `json:"lastError,omitempty"`
	ClaimedAt      time.Time `json:"claimedAt,omitzero"`
	SentAt         time.Time `json:"sentAt,omitzero"`
	UpdatedAt      time.Time `json:"updatedAt"`
	GroupKey       string    `json:"groupKey,omitempty"`
	GroupLead      string    `json:"groupLead,omitempty"`

	// ClaimedBy, ClaimSequence, ClaimEnqueued and ClaimDelivery are the
	// queue message and delivery count that took the claim (see
	// WithAttempt).
	ClaimedBy     string    `json:"claimedBy,omitempty"`
	ClaimSequence int64     `json:"claimSequence,omitempty"`
	ClaimEnqueued time.Time `json:"claimEnqueued,omitzero"`
	ClaimDelivery int       `json:"claimDelivery,omitempty"`
}

// Attempt identifies the queue delivery that runs a Deliver call.
type Attempt struct {
	MessageID string
	// SequenceNumber and EnqueuedTime tell the enqueued message from
	// another copy with the same MessageID (sent twice, outside duplicate
	// detection, and possibly delivered to another instance at the same
	// time): the queue keeps both across redeliveries of one message.
	SequenceNumber int64
	EnqueuedTime   time.Time
	DeliveryCount  int // 1 on the first delivery
}

type attemptKey struct{}

// WithAttempt returns a context telling Deliver which queue delivery runs
// it. A "sending" claim taken by an earlier delivery of the same message is
// then abandoned at once rather than after the sending lease: the queue
// delivers a message again only once the earlier delivery's lock is gone
// (its invocation failed, or the process died mid-send), while without this
// the redeliveries would all find the claim "in progress" and the message
// would reach its maximum delivery count long before the lease ends.
func WithAttempt(ctx context.Context, a Attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

func attemptOf(ctx context.Context) Attempt {
	a, _ := ctx.Value(attemptKey{}).(Attempt)
	return a
}

// abandonedBy reports whether a "sending" claim was left by an earlier
// delivery of the message now being delivered: the same enqueued message
// (id, sequence number and enqueued time), not merely the same id. A copy
// with the same id is another message, whose delivery may well be alive
// (its first delivery sent and a second copy's redelivery must not send
// again).
func (r deliveryRecord) abandonedBy(a Attempt) bool {
	return a.MessageID != "" && r.ClaimedBy == a.MessageID && a.DeliveryCount > r.ClaimDelivery &&
		r.ClaimSequence == a.SequenceNumber && r.ClaimEnqueued.Equal(a.EnqueuedTime)
}

// Targets returns the channels a notification goes to: its own Channels,
// else its decision's, else the defaults; duplicates removed.
func (d *Dispatcher) Targets(n pipeline.Notification) []string {
	names := n.Channels
	if len(names) == 0 && n.Decision != nil {
		names = n.Decision.Channels
	}
	if len(names) == 0 {
		names = d.defaults
	}
	var out []string
	for _, c := range names {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// Deliver renders n once and sends it to every target channel that has not
// received it yet (per-channel state in the store: insert-if-absent
// "sending", then "sent"). It returns a *DeliveryError when a channel
// failed: transient when any failure can be retried, so the queue
// redelivers and only the failed channels are tried again; permanent when
// nothing can help (unknown channel, rejected by the channel). With
// grouping on, an alert notification may be folded into its group instead
// (Report.Folded); see docs/notifiers/README.md.
func (d *Dispatcher) Deliver(ctx context.Context, n pipeline.Notification) (Report, error) {
	rep := Report{NotificationID: n.ID, Kind: n.Kind, GroupKey: n.GroupKey}
	if strings.TrimSpace(n.ID) == "" {
		return rep, Permanent(errors.New("notification has no id"))
	}
	if n.CreatedAt.IsZero() {
		n.CreatedAt = d.clock().UTC()
	}
	targets := d.Targets(n)
	if len(targets) == 0 {
		return rep, Permanent(fmt.Errorf("notification %s names no channel and there is no default", oneLine(n.ID, 128)))
	}
	if d.groupable(n) {
		folded, err := d.group(ctx, n, targets, &rep)
		if err != nil {
			return rep, err
		}
		if folded {
			rep.Folded = true
			d.log.InfoContext(ctx, "notification folded into group", logNotificationID, n.ID, logKind, n.Kind,
				logGroupKey, n.GroupKey, logOutcome, StateFolded)
			return rep, nil
		}
	}
	return d.deliverNow(ctx, n, targets, rep)
}

// deliverNow renders and sends to every target, without grouping.
func (d *Dispatcher) deliverNow(ctx context.Context, n pipeline.Notification, targets []string, rep Report) (Report, error) {
	r, err := Render(n, d.render)
	if err != nil {
		return rep, err
	}
	for _, name := range targets {
		rep.Channels = append(rep.Channels, d.deliverTo(ctx, n, r, name))
	}
	return rep, d.result(n.ID, &rep)
}

// result turns the channel reports into Deliver's error.
func (d *Dispatcher) result(id string, rep *Report) error {
	var transient, permanent []error
	var tFailed, pFailed []string
	for _, c := range rep.Channels {
		if c.Err == nil {
			continue
		}
		line := c.Channel + ": " + c.Err.Error()
		if IsTransient(c.Err) {
			transient = append(transient, c.Err)
			tFailed = append(tFailed, line)
		} else {
			permanent = append(permanent, c.Err)
			pFailed = append(pFailed, line)
		}
	}
	if ra, ok := RetryAfter(errors.Join(transient...)); ok {
		rep.RetryAfter = ra
	}
	switch {
	case len(transient) > 0:
		return &DeliveryError{NotificationID: id, Failed: append(tFailed, pFailed...), Transient: true, RetryAfter: rep.RetryAfter, errs: transient}
	case len(permanent) > 0:
		return &DeliveryError{NotificationID: id, Failed: pFailed, errs: permanent}
	}
	return nil
}

// deliverTo sends n to one channel unless the store says it already has it.
func (d *Dispatcher) deliverTo(ctx context.Context, n pipeline.Notification, r Rendered, name string) ChannelReport {
	cr := ChannelReport{Channel: name}
	ch, ok := d.channels[name]
	if !ok {
		cr.Status = DeliveryUnknownChannel
		cr.Err = Permanent(fmt.Errorf("unknown channel %q", oneLine(name, 64)))
		d.log.ErrorContext(ctx, "unknown notification channel", logNotificationID, n.ID, logChannel, oneLine(name, 64))
		return cr
	}
	pk := store.EscapeKey(n.ID)
	rec, etag, done := d.claim(ctx, n, pk, name, &cr)
	if done {
		return cr
	}
	cr.Attempts = rec.Attempts

	start := d.clock()
	err := ch.Send(ctx, n, r)
	cr.Duration = d.clock().Sub(start)

	// Bookkeeping must survive a cancelled invocation context.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	now := d.clock().UTC()
	rec.UpdatedAt = now
	attrs := []any{logNotificationID, n.ID, logChannel, name, logKind, n.Kind, "attempt", rec.Attempts, logDuration, cr.Duration.Milliseconds()}
	switch {
	case err == nil:
		cr.Status = DeliverySent
		rec.State, rec.SentAt, rec.LastError = StateSent, now, ""
		// Upsert: "sent" is the truth even if a stale-lease takeover
		// changed the row meanwhile.
		if _, serr := d.store.Upsert(bctx, TableDeliveries, d.entity(pk, name, rec, "")); serr != nil {
			d.log.ErrorContext(ctx, "notification sent but not recorded; a retry after the lease may send it again",
				append(attrs, "error", serr.Error())...)
		}
		d.log.InfoContext(ctx, "notification delivered", append(attrs, logOutcome, DeliverySent)...)
	case IsTransient(err):
		err = classifyContext(err)
		cr.Status, cr.Err = DeliveryFailed, Transient(err)
		rec.State, rec.LastError = StateFailed, oneLine(err.Error(), 500)
		if _, serr := d.store.Update(bctx, TableDeliveries, d.entity(pk, name, rec, etag)); serr != nil && !errors.Is(serr, store.ErrConflict) {
			d.log.WarnContext(ctx, "recording failed delivery", append(attrs, "error", serr.Error())...)
		}
		d.log.WarnContext(ctx, "notification delivery failed; will retry", append(attrs, logOutcome, DeliveryFailed, "error", rec.LastError)...)
	default:
		cr.Status, cr.Err = DeliveryRejected, err
		rec.State, rec.LastError = StateRejected, oneLine(err.Error(), 500)
		if _, serr := d.store.Upsert(bctx, TableDeliveries, d.entity(pk, name, rec, "")); serr != nil {
			d.log.WarnContext(ctx, "recording rejected delivery", append(attrs, "error", serr.Error())...)
		}
		d.log.ErrorContext(ctx, "notification rejected by channel", append(attrs, logOutcome, DeliveryRejected, "error", rec.LastError)...)
	}
	return cr
}

// claim takes the (notification, channel) row for a send. done is true when
// no send must happen, with cr filled in.
func (d *Dispatcher) claim(ctx context.Context, n pipeline.Notification, pk, name string, cr *ChannelReport) (rec deliveryRecord, etag string, done bool) {
	at := attemptOf(ctx)
	waited := false
	for range 5 {
		now := d.clock().UTC()
		e, err := d.store.Get(ctx, TableDeliveries, pk, name)
		if errors.Is(err, store.ErrNotFound) {
			rec = deliveryRecord{NotificationID: n.ID, Channel: name, Kind: n.Kind, State: StateSending, Attempts: 1, ClaimedAt: now, UpdatedAt: now,
				ClaimedBy: at.MessageID, ClaimSequence: at.SequenceNumber, ClaimEnqueued: at.EnqueuedTime, ClaimDelivery: at.DeliveryCount}
			ne, err := d.store.Insert(ctx, TableDeliveries, d.entity(pk, name, rec, ""))
			if errors.Is(err, store.ErrExists) {
				continue
			}
			if err != nil {
				cr.Status, cr.Err = DeliveryFailed, Transient(fmt.Errorf("claiming delivery: %w", err))
				return rec, "", true
			}
			return rec, ne.ETag, false
		}
		if err != nil {
			cr.Status, cr.Err = DeliveryFailed, Transient(fmt.Errorf("reading delivery state: %w", err))
			return rec, "", true
		}
		rec = deliveryRecord{}
		if jerr := json.Unmarshal(e.Data, &rec); jerr != nil {
			rec = deliveryRecord{NotificationID: n.ID, Channel: name, State: StateFailed}
		}
		cr.Attempts = rec.Attempts
		switch rec.State {
		case StateSent:
			cr.Status = DeliveryAlreadySent
			return rec, "", true
		case StateRejected:
			cr.Status, cr.Err = DeliveryRejected, Permanent(fmt.Errorf("rejected earlier: %s", rec.LastError))
			return rec, "", true
		case StateSending:
			if now.Sub(rec.ClaimedAt) < d.lease && !rec.abandonedBy(at) {
				if !waited && d.wait > 0 {
					// Another delivery is sending: usually a copy of this
					// message on another instance, done in milliseconds.
					waited = true
					d.awaitClaim(ctx, pk, name, e.ETag)
					continue
				}
				cr.Status = DeliveryInProgress
				cr.Err = Transient(fmt.Errorf("another delivery to %s is in progress since %s", name, rec.ClaimedAt.Format(time.RFC3339)))
				return rec, "", true
			}
			d.log.WarnContext(ctx, "taking over an abandoned delivery claim", logNotificationID, n.ID, logChannel, name)
		}
		rec.NotificationID, rec.Channel, rec.Kind = n.ID, name, n.Kind
		rec.State, rec.ClaimedAt, rec.UpdatedAt = StateSending, now, now
		rec.ClaimedBy, rec.ClaimSequence, rec.ClaimEnqueued, rec.ClaimDelivery = at.MessageID, at.SequenceNumber, at.EnqueuedTime, at.DeliveryCount
		rec.Attempts++
		ne, err := d.store.Update(ctx, TableDeliveries, d.entity(pk, name, rec, e.ETag))
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			cr.Status, cr.Err = DeliveryFailed, Transient(fmt.Errorf("claiming delivery: %w", err))
			return rec, "", true
		}
		return rec, ne.ETag, false
	}
	cr.Status = DeliveryInProgress
	cr.Err = Transient(fmt.Errorf("delivery state of %s keeps changing", name))
	return rec, "", true
}

// awaitClaim waits, at most d.wait on the real clock, until the
// (notification, channel) row another delivery holds changes (its ETag
// moves: sent, failed, or taken over) or disappears.
func (d *Dispatcher) awaitClaim(ctx context.Context, pk, name, etag string) {
	deadline := time.Now().Add(d.wait)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		e, err := d.store.Get(ctx, TableDeliveries, pk, name)
		if err != nil || e.ETag != etag {
			return
		}
	}
}

func (d *Dispatcher) entity(pk, rk string, v any, etag string) store.Entity {
	data, _ := json.Marshal(v) // plain structs: cannot fail
	return store.Entity{PartitionKey: pk, RowKey: rk, Data: data, ETag: etag}
}

// DeliveryState returns the stored state of a notification on a channel
// ("" when it was never attempted). For tests and the status endpoint.
func (d *Dispatcher) DeliveryState(ctx context.Context, notificationID, channel string) (string, error) {
	e, err := d.store.Get(ctx, TableDeliveries, store.EscapeKey(notificationID), channel)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var rec deliveryRecord
	if err := json.Unmarshal(e.Data, &rec); err != nil {
		return "", fmt.Errorf("decoding delivery state: %w", err)
	}
	return rec.State, nil
}
