package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/store"
)

func newTestDispatcher(t *testing.T, st store.Backend, clock *testClock, window time.Duration, chans ...*recordingChannel) *Dispatcher {
	t.Helper()
	m := map[string]Channel{}
	var names []string
	for _, c := range chans {
		m[c.name] = c
		names = append(names, c.name)
	}
	d, err := NewDispatcher(DispatcherOptions{Channels: m, Default: names, Store: st, GroupWindow: window, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func statuses(rep Report) string {
	var s []string
	for _, c := range rep.Channels {
		s = append(s, c.Channel+"="+c.Status)
	}
	return strings.Join(s, " ")
}

func TestDeliverRetriesOnlyTheFailedChannel(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	email := &recordingChannel{name: "email"}
	teams := &recordingChannel{name: "teams", errs: []error{
		&StatusError{Channel: "teams", StatusCode: 503},
		&StatusError{Channel: "teams", StatusCode: 429, RetryAfter: 5 * time.Second},
	}}
	hook := &recordingChannel{name: "webhook"}
	d := newTestDispatcher(t, store.NewMemory(), clock, 0, email, teams, hook)
	n := loadNotification(t, "alert_notification.json")
	n.Channels, n.Decision.Channels = nil, nil // use the defaults: all three

	want := []struct {
		statuses string
		err      bool
		ra       time.Duration
	}{
		{"email=sent teams=failed webhook=sent", true, 0},
		{"email=alreadySent teams=failed webhook=alreadySent", true, 5 * time.Second},
		{"email=alreadySent teams=sent webhook=alreadySent", false, 0},
	}
	for i, w := range want {
		rep, err := d.Deliver(context.Background(), n)
		if got := statuses(rep); got != w.statuses {
			t.Errorf("call %d: %s, want %s", i+1, got, w.statuses)
		}
		if (err != nil) != w.err {
			t.Fatalf("call %d: err = %v", i+1, err)
		}
		if err != nil {
			if !errors.Is(err, ErrTransient) || errors.Is(err, ErrPermanent) {
				t.Errorf("call %d: %v is not (only) transient", i+1, err)
			}
			var de *DeliveryError
			if !errors.As(err, &de) || len(de.Failed) != 1 || !strings.HasPrefix(de.Failed[0], "teams: ") {
				t.Errorf("call %d: DeliveryError %+v", i+1, de)
			}
		}
		if rep.RetryAfter != w.ra {
			t.Errorf("call %d: RetryAfter %v, want %v", i+1, rep.RetryAfter, w.ra)
		}
		clock.Advance(time.Second)
	}
	if len(email.sent()) != 1 || len(hook.sent()) != 1 || email.calls() != 1 || hook.calls() != 1 {
		t.Errorf("email %d/%d webhook %d/%d, want exactly one message each", len(email.sent()), email.calls(), len(hook.sent()), hook.calls())
	}
	if len(teams.sent()) != 1 || teams.calls() != 3 {
		t.Errorf("teams got %d messages in %d calls, want 1 in 3", len(teams.sent()), teams.calls())
	}
	for _, ch := range []string{"email", "teams", "webhook"} {
		if st, err := d.DeliveryState(context.Background(), n.ID, ch); err != nil || st != StateSent {
			t.Errorf("%s state %q, %v", ch, st, err)
		}
	}
	// A fourth redelivery sends nothing.
	rep, err := d.Deliver(context.Background(), n)
	if err != nil || statuses(rep) != "email=alreadySent teams=alreadySent webhook=alreadySent" {
		t.Errorf("fourth: %s %v", statuses(rep), err)
	}
}

func TestDeliverPermanentFailures(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	ok := &recordingChannel{name: "ok"}
	bad := &recordingChannel{name: "bad", errs: []error{&StatusError{Channel: "bad", StatusCode: 400}}}
	flaky := &recordingChannel{name: "flaky", errs: []error{errors.New("connection reset")}}
	d := newTestDispatcher(t, store.NewMemory(), clock, 0, ok, bad, flaky)
	n := pipeline.Notification{ID: "n-perm", Kind: pipeline.NotifyBreaker, Text: "x", Channels: []string{"ok", "bad", "flaky", "nope"}}

	rep, err := d.Deliver(context.Background(), n)
	if statuses(rep) != "ok=sent bad=rejected flaky=failed nope=unknownChannel" {
		t.Errorf("first: %s", statuses(rep))
	}
	// A transient failure wins: the queue must redeliver.
	if !errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), `unknown channel "nope"`) {
		t.Errorf("first err = %v", err)
	}
	rep, err = d.Deliver(context.Background(), n)
	if statuses(rep) != "ok=alreadySent bad=rejected flaky=sent nope=unknownChannel" {
		t.Errorf("second: %s", statuses(rep))
	}
	// Only permanent failures left: dead-letter with the reason.
	if !errors.Is(err, ErrPermanent) || errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("second err = %v", err)
	}
	if bad.calls() != 1 {
		t.Errorf("rejected channel called %d times, want 1", bad.calls())
	}
}

func TestDeliverRejectsNotificationsWithoutIDOrChannels(t *testing.T) {
	t.Parallel()
	d := newTestDispatcher(t, store.NewMemory(), &testClock{now: fixedDate}, 0, &recordingChannel{name: "a"})
	if _, err := d.Deliver(context.Background(), pipeline.Notification{Kind: "alert"}); !errors.Is(err, ErrPermanent) {
		t.Errorf("no id: %v", err)
	}
	d2, err := NewDispatcher(DispatcherOptions{Channels: map[string]Channel{"a": &recordingChannel{name: "a"}}, Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Deliver(context.Background(), pipeline.Notification{ID: "x"}); !errors.Is(err, ErrPermanent) {
		t.Errorf("no channels: %v", err)
	}
}

func TestDeliverConcurrentInvocationsSendOnce(t *testing.T) {
	t.Parallel()
	// Pins: two instances handling the same queue message at the same time
	// (peek-lock expiry) must not both send.
	st := store.NewMemory()
	clock := &testClock{now: fixedDate}
	release := make(chan struct{})
	var entered atomic.Int32
	slow := &recordingChannel{name: "slow", hook: func() {
		entered.Add(1)
		<-release
	}}
	fast := &recordingChannel{name: "fast"}
	d := newTestDispatcher(t, st, clock, 0, slow, fast)
	n := loadNotification(t, "alert_notification.json")
	n.Channels = []string{"slow", "fast"}

	var wg sync.WaitGroup
	errs := make([]error, 6)
	wg.Go(func() { _, errs[0] = d.Deliver(context.Background(), n) })
	deadline := time.Now().Add(10 * time.Second)
	for entered.Load() == 0 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the first send never started")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < len(errs); i++ {
		wg.Go(func() { _, errs[i] = d.Deliver(context.Background(), n) })
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if slow.calls() != 1 || fast.calls() != 1 {
		t.Errorf("slow called %d times, fast %d, want 1 each", slow.calls(), fast.calls())
	}
	if errs[0] != nil {
		t.Errorf("the first invocation failed: %v", errs[0])
	}
	for i, err := range errs[1:] {
		// the others saw the claim (transient "in progress"), or ran after
		// the first finished (nil: already sent)
		if err != nil && (!errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "in progress")) {
			t.Errorf("invocation %d: %v", i+1, err)
		}
	}
	rep, err := d.Deliver(context.Background(), n)
	if err != nil || statuses(rep) != "slow=alreadySent fast=alreadySent" {
		t.Errorf("after: %s %v", statuses(rep), err)
	}
}

func TestDeliverTakesOverAnAbandonedClaim(t *testing.T) {
	t.Parallel()
	// Pins: a process that died between "sending" and "sent" must not
	// block the channel forever.
	st := store.NewMemory()
	clock := &testClock{now: fixedDate}
	ch := &recordingChannel{name: "email"}
	d := newTestDispatcher(t, st, clock, 0, ch)
	n := pipeline.Notification{ID: "n-crash", Kind: pipeline.NotifyBreaker, Text: "x"}
	rec := deliveryRecord{NotificationID: n.ID, Channel: "email", State: StateSending, Attempts: 1, ClaimedAt: fixedDate}
	data, _ := json.Marshal(rec)
	if _, err := st.Insert(context.Background(), TableDeliveries, store.Entity{PartitionKey: store.EscapeKey(n.ID), RowKey: "email", Data: data}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	rep, err := d.Deliver(context.Background(), n)
	if !errors.Is(err, ErrTransient) || statuses(rep) != "email=inProgress" || ch.calls() != 0 {
		t.Fatalf("within lease: %s %v calls=%d", statuses(rep), err, ch.calls())
	}
	clock.Advance(DefaultSendingLease)
	rep, err = d.Deliver(context.Background(), n)
	if err != nil || statuses(rep) != "email=sent" || ch.calls() != 1 || rep.Channels[0].Attempts != 2 {
		t.Fatalf("after lease: %s %v calls=%d attempts=%d", statuses(rep), err, ch.calls(), rep.Channels[0].Attempts)
	}
}

// faultyStore fails every call while down is set.
type faultyStore struct {
	store.Backend
	down atomic.Bool
}

var _ store.Backend = (*faultyStore)(nil)

var errStoreDown = errors.New("store unavailable")

func (f *faultyStore) Get(ctx context.Context, table, pk, rk string) (store.Entity, error) {
	if f.down.Load() {
		return store.Entity{}, errStoreDown
	}
	return f.Backend.Get(ctx, table, pk, rk)
}

func (f *faultyStore) List(ctx context.Context, table, pk string) ([]store.Entity, error) {
	if f.down.Load() {
		return nil, errStoreDown
	}
	return f.Backend.List(ctx, table, pk)
}

func TestDeliverStoreDownSendsNothing(t *testing.T) {
	t.Parallel()
	st := &faultyStore{Backend: store.NewMemory()}
	st.down.Store(true)
	ch := &recordingChannel{name: "email"}
	d := newTestDispatcher(t, st, &testClock{now: fixedDate}, time.Minute, ch)
	for _, kind := range []string{pipeline.NotifyAlert, pipeline.NotifyBreaker} {
		n := pipeline.Notification{ID: "n-" + kind, Kind: kind, GroupKey: "incident-1"}
		if _, err := d.Deliver(context.Background(), n); !errors.Is(err, ErrTransient) {
			t.Errorf("%s: err = %v, want transient", kind, err)
		}
	}
	if ch.calls() != 0 {
		t.Errorf("sent %d times without delivery state", ch.calls())
	}
}

func TestNewDispatcherValidates(t *testing.T) {
	t.Parallel()
	_, err := NewDispatcher(DispatcherOptions{
		Channels: map[string]Channel{"ok": &recordingChannel{name: "ok"}, "bad/name": &recordingChannel{name: "x"}, "_grouped": &recordingChannel{}},
		Default:  []string{"ok", "missing"},
		Render:   RenderOptions{PortalBaseURL: "http://portal.example"},
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"no store", `"bad/name"`, `"_grouped"`, `"missing"`, "portal base URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func alertInIncident(id string, incident int64, title string, at time.Time) pipeline.Notification {
	return pipeline.Notification{
		ID: "notif-" + id, Kind: pipeline.NotifyAlert, GroupKey: fmt.Sprintf("incident-%d", incident), CreatedAt: at,
		Alert:   &pipeline.AlertInfo{ID: id, Title: title, Severity: "Medium", IncidentID: &incident},
		Machine: &pipeline.MachineInfo{ID: "111e6dd8c833c8a052ea231ec1b19adaf497b625", ComputerDNSName: "pc1.contoso.com"},
	}
}

func TestGroupingFoldsAndFlushes(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	email := &recordingChannel{name: "email"}
	teams := &recordingChannel{name: "teams"}
	d := newTestDispatcher(t, store.NewMemory(), clock, 10*time.Minute, email, teams)
	ctx := context.Background()

	lead := alertInIncident("da1_1", 7, "First alert", clock.Now())
	rep, err := d.Deliver(ctx, lead)
	if err != nil || rep.Folded || statuses(rep) != "email=sent teams=sent" {
		t.Fatalf("lead: %s folded=%v %v", statuses(rep), rep.Folded, err)
	}
	for i, title := range []string{"Second <b>alert</b>", "Third alert"} {
		clock.Advance(time.Minute)
		n := alertInIncident(fmt.Sprintf("da1_%d", i+2), 7, title, clock.Now())
		rep, err := d.Deliver(ctx, n)
		if err != nil || !rep.Folded || len(rep.Channels) != 0 {
			t.Fatalf("follower %d: folded=%v %s %v", i, rep.Folded, statuses(rep), err)
		}
		// a redelivery of a folded notification stays folded, once
		rep, err = d.Deliver(ctx, n)
		if err != nil || !rep.Folded {
			t.Fatalf("follower %d redelivered: folded=%v %v", i, rep.Folded, err)
		}
	}
	// Another incident and other kinds are not affected.
	other := alertInIncident("da2_1", 8, "Other incident", clock.Now())
	if rep, err := d.Deliver(ctx, other); err != nil || rep.Folded {
		t.Fatalf("other incident folded: %v %v", rep.Folded, err)
	}
	appr := lead
	appr.ID, appr.Kind = "approval-1", pipeline.NotifyApproval
	if rep, err := d.Deliver(ctx, appr); err != nil || rep.Folded {
		t.Fatalf("approval folded: %v %v", rep.Folded, err)
	}
	if got := len(email.sent()); got != 3 {
		t.Fatalf("email got %d, want lead + other incident + approval", got)
	}

	// Before the window closes, FlushGroups does nothing.
	if reps, err := d.FlushGroups(ctx, clock.Now()); err != nil || len(reps) != 0 {
		t.Fatalf("early flush: %d %v", len(reps), err)
	}
	clock.Advance(10 * time.Minute)
	reps, err := d.FlushGroups(ctx, clock.Now())
	if err != nil || len(reps) != 1 {
		t.Fatalf("flush: %d reports, %v", len(reps), err)
	}
	if statuses(reps[0]) != "email=sent teams=sent" || reps[0].NotificationID != "digest-notif-da1_1" {
		t.Errorf("digest report %+v", reps[0])
	}
	digests := email.sent()[3:]
	if len(digests) != 1 || digests[0].Kind != KindGroupDigest {
		t.Fatalf("email digests: %+v", digests)
	}
	r, err := Render(digests[0], RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2 more alerts for incident 7", "Second <b>alert</b>", "Third alert"} {
		if !strings.Contains(r.Subject+r.Text, want) {
			t.Errorf("digest does not contain %q:\n%s\n%s", want, r.Subject, r.Text)
		}
	}
	if !strings.Contains(r.HTML, "Second &lt;b&gt;alert&lt;/b&gt;") {
		t.Error("digest HTML does not escape folded titles")
	}
	if reps, err := d.FlushGroups(ctx, clock.Now()); err != nil || len(reps) != 0 {
		t.Errorf("second flush: %d %v", len(reps), err)
	}
	if len(teams.sent()) != 4 {
		t.Errorf("teams got %d, want 4", len(teams.sent()))
	}
}

func TestGroupingNextNotificationAfterWindowFlushes(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	email := &recordingChannel{name: "email"}
	d := newTestDispatcher(t, store.NewMemory(), clock, 5*time.Minute, email)
	ctx := context.Background()
	mustDeliver := func(n pipeline.Notification) Report {
		t.Helper()
		rep, err := d.Deliver(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	mustDeliver(alertInIncident("a1", 9, "one", clock.Now()))
	clock.Advance(time.Minute)
	if !mustDeliver(alertInIncident("a2", 9, "two", clock.Now())).Folded {
		t.Fatal("a2 not folded")
	}
	clock.Advance(5 * time.Minute)
	rep := mustDeliver(alertInIncident("a3", 9, "three", clock.Now()))
	if rep.Folded || len(rep.Digests) != 1 || statuses(rep) != "email=sent" {
		t.Fatalf("a3: folded=%v digests=%d %s", rep.Folded, len(rep.Digests), statuses(rep))
	}
	// a3 leads a new window
	clock.Advance(time.Minute)
	if !mustDeliver(alertInIncident("a4", 9, "four", clock.Now())).Folded {
		t.Error("a4 not folded into the new group")
	}
	var kinds []string
	for _, n := range email.sent() {
		kinds = append(kinds, n.ID)
	}
	if strings.Join(kinds, ",") != "notif-a1,digest-notif-a1,notif-a3" {
		t.Errorf("sent %v", kinds)
	}
}

func TestGroupingLeadRedeliveryIsNotFolded(t *testing.T) {
	t.Parallel()
	// Pins: the lead's failed channel is retried on redelivery within the
	// window instead of the lead being folded into its own group.
	clock := &testClock{now: fixedDate}
	ok := &recordingChannel{name: "ok"}
	flaky := &recordingChannel{name: "flaky", errs: []error{&StatusError{StatusCode: 502}}}
	d := newTestDispatcher(t, store.NewMemory(), clock, 10*time.Minute, ok, flaky)
	lead := alertInIncident("l1", 3, "lead", clock.Now())
	if _, err := d.Deliver(context.Background(), lead); !errors.Is(err, ErrTransient) {
		t.Fatalf("first: %v", err)
	}
	clock.Advance(time.Minute)
	rep, err := d.Deliver(context.Background(), lead)
	if err != nil || rep.Folded || statuses(rep) != "ok=alreadySent flaky=sent" {
		t.Fatalf("redelivery: %s folded=%v %v", statuses(rep), rep.Folded, err)
	}
}

func TestGroupingDigestRetriedAfterTransientFailure(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	ok := &recordingChannel{name: "ok"}
	flaky := &recordingChannel{name: "flaky"}
	d := newTestDispatcher(t, store.NewMemory(), clock, time.Minute, ok, flaky)
	ctx := context.Background()
	if _, err := d.Deliver(ctx, alertInIncident("g1", 4, "one", clock.Now())); err != nil {
		t.Fatal(err)
	}
	if rep, _ := d.Deliver(ctx, alertInIncident("g2", 4, "two", clock.Now())); !rep.Folded {
		t.Fatal("not folded")
	}
	flaky.mu.Lock()
	flaky.errs = []error{nil, errors.New("timeout")} // call 1 was the lead; the digest (call 2) fails
	flaky.mu.Unlock()
	clock.Advance(2 * time.Minute)
	if _, err := d.FlushGroups(ctx, clock.Now()); !errors.Is(err, ErrTransient) {
		t.Fatalf("flush err = %v", err)
	}
	reps, err := d.FlushGroups(ctx, clock.Now())
	if err != nil || len(reps) != 1 || statuses(reps[0]) != "ok=alreadySent flaky=sent" {
		t.Fatalf("retry: %v %v", reps, err)
	}
	if len(ok.sent()) != 2 || len(flaky.sent()) != 2 {
		t.Errorf("ok %d flaky %d, want 2 each (lead + digest)", len(ok.sent()), len(flaky.sent()))
	}
}

func TestGroupingDisabledWithZeroWindow(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	ch := &recordingChannel{name: "email"}
	d := newTestDispatcher(t, store.NewMemory(), clock, 0, ch)
	for i := range 3 {
		rep, err := d.Deliver(context.Background(), alertInIncident(fmt.Sprint("z", i), 5, "t", clock.Now()))
		if err != nil || rep.Folded {
			t.Fatalf("%d: folded=%v %v", i, rep.Folded, err)
		}
	}
	if len(ch.sent()) != 3 {
		t.Errorf("sent %d", len(ch.sent()))
	}
	if reps, err := d.FlushGroups(context.Background(), clock.Now()); reps != nil || err != nil {
		t.Errorf("FlushGroups with grouping off: %v %v", reps, err)
	}
}

// Pins (found by the handler crash test): the process died mid-send and
// left the claim "sending". The next delivery of the same queue message
// takes the claim over at once and sends; a delivery of another message
// still respects the lease.
func TestRedeliveryTakesOverClaimLeftByCrash(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	st := store.NewMemory()
	email := &recordingChannel{name: "email"}
	d := newTestDispatcher(t, st, clock, 0, email)
	n := loadNotification(t, "alert_notification.json")
	n.Channels, n.Decision.Channels, n.GroupKey = nil, nil, ""
	left := deliveryRecord{NotificationID: n.ID, Channel: "email", Kind: n.Kind, State: StateSending, Attempts: 1,
		ClaimedAt: fixedDate, UpdatedAt: fixedDate, ClaimedBy: "n-msg", ClaimDelivery: 1}
	if _, err := store.UpsertJSON(context.Background(), st, TableDeliveries, store.EscapeKey(n.ID), "email", left); err != nil {
		t.Fatal(err)
	}
	other := WithAttempt(context.Background(), Attempt{MessageID: "another-msg", DeliveryCount: 1})
	if _, err := d.Deliver(other, n); err == nil || len(email.sent()) != 0 {
		t.Fatalf("another message sent during the lease: err=%v sent=%d", err, len(email.sent()))
	}
	again := WithAttempt(context.Background(), Attempt{MessageID: "n-msg", DeliveryCount: 2})
	if _, err := d.Deliver(again, n); err != nil {
		t.Fatalf("redelivery of the same message: %v", err)
	}
	if len(email.sent()) != 1 {
		t.Fatalf("sent %d times, want once", len(email.sent()))
	}
}

// Pins (found by the two-instance test): two copies of one notification
// delivered to two instances at once, while the first send is still
// running, reach the channel once; the second waits and reports it sent.
func TestConcurrentCopiesSendOnce(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: fixedDate}
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	hook := &recordingChannel{name: "webhook", hook: func() { started <- struct{}{}; <-release }}
	d := newTestDispatcher(t, store.NewMemory(), clock, 0, hook)
	n := loadNotification(t, "alert_notification.json")
	n.Channels, n.Decision.Channels, n.GroupKey = nil, nil, ""
	errs := make(chan error, 2)
	for i := int64(1); i <= 2; i++ {
		ctx := WithAttempt(context.Background(), Attempt{MessageID: n.ID, SequenceNumber: i, DeliveryCount: 1})
		go func() { _, err := d.Deliver(ctx, n); errs <- err }()
		if i == 1 {
			<-started // the first send is under way
		}
	}
	time.Sleep(100 * time.Millisecond) // the second copy finds the claim
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("deliver: %v", err)
		}
	}
	if got := hook.calls(); got != 1 {
		t.Fatalf("channel called %d times, want 1", got)
	}
}
