package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/store"
)

// forEachBackend runs fn against memory, bolt and (when Azurite is
// running) Azure Table backends: the helpers must behave the same on all.
func forEachBackend(t *testing.T, fn func(t *testing.T, b store.Backend)) {
	t.Helper()
	makers := []struct {
		name string
		make func(t *testing.T) store.Backend
	}{
		{"memory", func(t *testing.T) store.Backend { return store.NewMemory() }},
		{"bolt", func(t *testing.T) store.Backend {
			b, err := store.OpenBolt(filepath.Join(t.TempDir(), "s.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}},
		{"tables", func(t *testing.T) store.Backend { return newAzuriteBackend(t) }},
	}
	for _, m := range makers {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			fn(t, m.make(t))
		})
	}
}

// fakeClock is a settable clock for the helpers' Now fields.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestJSONHelpers(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		ctx := t.Context()
		type state struct {
			Open  bool `json:"open"`
			Count int  `json:"count"`
		}
		var st state
		if _, err := store.GetJSON(ctx, b, "breaker", "global", "state", &st); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetJSON absent: %v", err)
		}
		etag, err := store.PutJSON(ctx, b, "breaker", "global", "state", state{Count: 1}, "")
		if err != nil || etag == "" {
			t.Fatalf("PutJSON create: %q, %v", etag, err)
		}
		_, err = store.PutJSON(ctx, b, "breaker", "global", "state", state{Count: 9}, "")
		if !errors.Is(err, store.ErrConflict) || !errors.Is(err, store.ErrExists) {
			t.Fatalf("PutJSON create of an existing entity: %v, want ErrConflict and ErrExists", err)
		}
		got, err := store.GetJSON(ctx, b, "breaker", "global", "state", &st)
		if err != nil || got != etag || st.Count != 1 {
			t.Fatalf("GetJSON = %+v %q %v", st, got, err)
		}
		etag2, err := store.PutJSON(ctx, b, "breaker", "global", "state", state{Open: true, Count: 2}, etag)
		if err != nil {
			t.Fatalf("PutJSON with current etag: %v", err)
		}
		if _, err := store.PutJSON(ctx, b, "breaker", "global", "state", state{}, etag); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("PutJSON with stale etag: %v", err)
		}
		if err := b.Delete(ctx, "breaker", "global", "state", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := store.PutJSON(ctx, b, "breaker", "global", "state", state{}, etag2); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("PutJSON after a concurrent delete: %v, want ErrConflict", err)
		}
		if _, err := store.UpsertJSON(ctx, b, "breaker", "global", "state", state{Count: 5}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.GetJSON(ctx, b, "breaker", "global", "state", &st); err != nil || st.Count != 5 {
			t.Fatalf("after UpsertJSON: %+v %v", st, err)
		}
	})
}

func TestModify(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		ctx := t.Context()
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := store.Modify(ctx, b, "counters", "isolations", "2025-01-15", func(c *int, _ bool) error {
					*c++
					return nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Modify: %v", err)
			}
		}
		var got int
		etag, err := store.GetJSON(ctx, b, "counters", "isolations", "2025-01-15", &got)
		if err != nil || got != n {
			t.Fatalf("counter = %d, %v; want %d", got, err, n)
		}

		// ErrNoChange: nothing written, the value read is returned.
		v, err := store.Modify(ctx, b, "counters", "isolations", "2025-01-15", func(c *int, exists bool) error {
			if !exists {
				t.Error("exists = false for a stored counter")
			}
			return store.ErrNoChange
		})
		if err != nil || v != n {
			t.Fatalf("Modify with ErrNoChange = %d, %v", v, err)
		}
		if again, _ := store.GetJSON(ctx, b, "counters", "isolations", "2025-01-15", &got); again != etag {
			t.Fatal("ErrNoChange wrote the entity")
		}
		boom := errors.New("boom")
		if _, err := store.Modify(ctx, b, "counters", "x", "y", func(*int, bool) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Modify did not return fn's error: %v", err)
		}
		if _, err := b.Get(ctx, "counters", "x", "y"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a failed Modify wrote: %v", err)
		}
	})
}

func TestCheckpoints(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		ctx := t.Context()
		cps := store.NewCheckpoints(b)
		name := "alerts-poll/tenant#1" // escaped inside
		got, etag, err := cps.GetCheckpoint(ctx, name)
		if err != nil || !got.IsZero() || etag != "" {
			t.Fatalf("unset checkpoint = %v %q %v", got, etag, err)
		}
		t1 := time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)
		if err := cps.AdvanceCheckpoint(ctx, name, t1, ""); err != nil {
			t.Fatal(err)
		}
		if err := cps.AdvanceCheckpoint(ctx, name, t1.Add(time.Hour), ""); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second create = %v, want ErrConflict", err)
		}
		got, etag, err = cps.GetCheckpoint(ctx, name)
		if err != nil || !got.Equal(t1) || etag == "" {
			t.Fatalf("checkpoint = %v %q %v", got, etag, err)
		}
		// Backwards: ignored.
		if err := cps.AdvanceCheckpoint(ctx, name, t1.Add(-time.Hour), etag); err != nil {
			t.Fatalf("advance backwards: %v", err)
		}
		if got, _, _ := cps.GetCheckpoint(ctx, name); !got.Equal(t1) {
			t.Fatalf("checkpoint moved backwards to %v", got)
		}
		t2 := t1.Add(5 * time.Minute)
		if err := cps.AdvanceCheckpoint(ctx, name, t2, etag); err != nil {
			t.Fatal(err)
		}
		if err := cps.AdvanceCheckpoint(ctx, name, t2.Add(time.Minute), etag); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("advance with stale etag = %v, want ErrConflict", err)
		}

		// Race: ten pollers read the same checkpoint and advance it; one wins.
		_, etag, _ = cps.GetCheckpoint(ctx, name)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				err := cps.AdvanceCheckpoint(ctx, name, t2.Add(time.Duration(i+1)*time.Second), etag)
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("racing advance: %v", err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d pollers advanced from the same read, want 1", wins.Load())
		}
	})
}

func TestClaims(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		ctx := t.Context()
		clk := &fakeClock{t: time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)}
		c := store.NewClaims(b)
		c.Now = clk.Now

		won, rec, err := c.Claim(ctx, "alert", "da638/1", "msg-1", map[string]string{"rule": "r1"})
		if err != nil || !won || rec.Owner != "msg-1" || rec.ETag == "" {
			t.Fatalf("first Claim = %v %+v %v", won, rec, err)
		}
		won, rec, err = c.Claim(ctx, "alert", "da638/1", "msg-2", nil)
		if err != nil || won || rec.Owner != "msg-1" || string(rec.Data) != `{"rule":"r1"}` {
			t.Fatalf("second owner's Claim = %v %+v %v", won, rec, err)
		}
		// Same owner (a redelivered message): still its claim.
		won, rec, err = c.Claim(ctx, "alert", "da638/1", "msg-1", nil)
		if err != nil || !won || rec.Owner != "msg-1" {
			t.Fatalf("same owner's Claim = %v %+v %v", won, rec, err)
		}
		// Kinds are separate.
		if won, _, err := c.Claim(ctx, "isolation", "da638/1", "msg-2", nil); err != nil || !won {
			t.Fatalf("Claim of another kind = %v %v", won, err)
		}
		if err := c.Release(ctx, "alert", "da638/1", "msg-2"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Release by a non-owner = %v, want ErrConflict", err)
		}
		if err := c.Release(ctx, "alert", "da638/1", "msg-1"); err != nil {
			t.Fatal(err)
		}
		if err := c.Release(ctx, "alert", "da638/1", "msg-1"); err != nil {
			t.Fatalf("second Release = %v, want nil", err)
		}
		if won, _, err := c.Claim(ctx, "alert", "da638/1", "msg-2", nil); err != nil || !won {
			t.Fatalf("Claim after Release = %v %v", won, err)
		}

		// Leases.
		won, _, err = c.ClaimFor(ctx, "hunt-run", "h1", "inv-1", time.Minute, nil)
		if err != nil || !won {
			t.Fatalf("ClaimFor = %v %v", won, err)
		}
		clk.Add(59 * time.Second)
		if won, rec, _ := c.ClaimFor(ctx, "hunt-run", "h1", "inv-2", time.Minute, nil); won || rec.Owner != "inv-1" {
			t.Fatalf("ClaimFor before expiry won=%v owner=%q", won, rec.Owner)
		}
		clk.Add(time.Second)
		won, rec, err = c.ClaimFor(ctx, "hunt-run", "h1", "inv-2", time.Minute, nil)
		if err != nil || !won || rec.Owner != "inv-2" {
			t.Fatalf("ClaimFor after expiry = %v %+v %v", won, rec, err)
		}
		if _, _, err := c.ClaimFor(ctx, "hunt-run", "h1", "inv-2", 0, nil); err == nil {
			t.Fatal("ClaimFor with ttl 0 accepted")
		}
		if _, _, err := c.Claim(ctx, "alert", "", "x", nil); err == nil {
			t.Fatal("Claim with an empty key accepted")
		}

		// 20 invocations race for one alert: exactly one wins.
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				won, _, err := c.Claim(ctx, "alert", "da-race", fmt.Sprintf("inv-%d", i), nil)
				if err != nil {
					t.Errorf("racing Claim: %v", err)
				}
				if won {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d invocations won the claim, want 1", wins.Load())
		}

		// 10 invocations race for one lapsed lease: exactly one takes it over.
		if _, _, err := c.ClaimFor(ctx, "lease", "l1", "old", time.Second, nil); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Hour)
		wins.Store(0)
		for i := range 10 {
			wg.Go(func() {
				won, _, err := c.ClaimFor(ctx, "lease", "l1", fmt.Sprintf("new-%d", i), time.Minute, nil)
				if err != nil {
					t.Errorf("racing takeover: %v", err)
				}
				if won {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d invocations took over the lapsed lease, want 1", wins.Load())
		}
	})
}

func TestAudit(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		ctx := t.Context()
		clk := &fakeClock{t: time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)}
		a := store.NewAudit(b)
		a.Now = clk.Now
		detail, _ := json.Marshal(map[string]string{"ruleId": "r1"})
		entries := []store.AuditEntry{
			{AlertID: "da1", MachineID: "m1", Action: "decision", Detail: detail},
			{AlertID: "da1", MachineID: "m1", Action: "isolate", Outcome: "accepted", Actor: "IsolateMachine"},
			{AlertID: "da2", MachineID: "m2", Action: "isolate", Outcome: "skipped", Reason: "protected"},
			{AlertID: "da3", Action: "notify", Outcome: "notified"},
			{Action: "breaker", Outcome: "tripped"},
			{AlertID: "da1", MachineID: "m1", Action: "isolate", Outcome: "succeeded", At: clk.Now().Add(time.Hour)},
		}
		for i, e := range entries {
			clk.Add(time.Second)
			got, err := a.Record(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID == "" || got.At.IsZero() {
				t.Fatalf("entry %d recorded without ID or At: %+v", i, got)
			}
		}
		if _, err := a.Record(ctx, store.AuditEntry{AlertID: "x"}); err == nil {
			t.Fatal("entry without action accepted")
		}
		m1, err := a.ListByMachine(ctx, "m1")
		if err != nil {
			t.Fatal(err)
		}
		if len(m1) != 3 || m1[0].Action != "decision" || m1[1].Outcome != "accepted" || m1[2].Outcome != "succeeded" {
			t.Fatalf("ListByMachine(m1) = %+v", m1)
		}
		if string(m1[0].Detail) != `{"ruleId":"r1"}` {
			t.Fatalf("detail = %s", m1[0].Detail)
		}
		all, err := a.ListAll(ctx)
		if err != nil || len(all) != len(entries) {
			t.Fatalf("ListAll = %d entries, %v", len(all), err)
		}
		for i := 1; i < len(all); i++ {
			if all[i].At.Before(all[i-1].At) {
				t.Fatalf("ListAll not in time order at %d: %v then %v", i, all[i-1].At, all[i].At)
			}
		}
		if all[len(all)-1].Outcome != "succeeded" {
			t.Fatalf("latest entry = %+v", all[len(all)-1])
		}
		da1, err := a.ListByAlert(ctx, "da1")
		if err != nil || len(da1) != 3 {
			t.Fatalf("ListByAlert(da1) = %d, %v", len(da1), err)
		}
		da3, _ := a.ListByAlert(ctx, "da3")
		if len(da3) != 1 || da3[0].Action != "notify" {
			t.Fatalf("ListByAlert(da3) = %+v", da3)
		}
	})
}

func TestAuditIDOrder(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)
	prev := ""
	for _, d := range []time.Duration{0, time.Nanosecond, time.Microsecond, time.Second, time.Hour, 24 * time.Hour * 400} {
		id := store.NewAuditID(t0.Add(d))
		if id <= prev {
			t.Fatalf("NewAuditID(%v) = %q does not sort after %q", t0.Add(d), id, prev)
		}
		if err := store.ValidateKey(id); err != nil {
			t.Fatal(err)
		}
		prev = id
	}
	if store.NewAuditID(t0) == store.NewAuditID(t0) {
		t.Fatal("two IDs for the same instant are equal")
	}
}

func TestDeadLetterLog(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b store.Backend) {
		ctx := t.Context()
		clk := &fakeClock{t: time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)}
		dl := store.NewDeadLetterLog(b)
		dl.Now = clk.Now
		first, err := dl.Record(ctx, store.DeadLetter{Queue: "isolations", MessageID: "iso-da1", Reason: "invalidMessage", Error: "bad machine id", Body: `{"machineId":"../x"}`, DeliveryCount: 1})
		if err != nil {
			t.Fatal(err)
		}
		if first.Count != 1 || !first.Pending() || !first.FirstAt.Equal(clk.Now()) {
			t.Fatalf("first record = %+v", first)
		}
		clk.Add(time.Minute)
		if err := dl.MarkResubmitted(ctx, "isolations", "iso-da1", "alice@contoso.com"); err != nil {
			t.Fatal(err)
		}
		got, err := dl.Get(ctx, "isolations", "iso-da1")
		if err != nil || got.Pending() || !got.Resubmitted || got.ResubmittedBy != "alice@contoso.com" {
			t.Fatalf("after MarkResubmitted: %+v %v", got, err)
		}
		clk.Add(time.Minute)
		again, err := dl.Record(ctx, store.DeadLetter{Queue: "isolations", MessageID: "iso-da1", Reason: "machineNotFound", Body: "{}"})
		if err != nil {
			t.Fatal(err)
		}
		if again.Resubmitted || again.Count != 2 || !again.FirstAt.Equal(first.FirstAt) || !again.At.Equal(clk.Now()) || !again.Pending() || again.Reason != "machineNotFound" {
			t.Fatalf("second record = %+v", again)
		}
		clk.Add(time.Minute)
		huge := strings.Repeat("é", store.MaxDeadLetterBody) + "\xff"
		big, err := dl.Record(ctx, store.DeadLetter{Queue: "notifications", MessageID: "n/1#2", Reason: "tooLarge", Body: huge})
		if err != nil {
			t.Fatal(err)
		}
		if !big.BodyTruncated || len(big.Body) > store.MaxDeadLetterBody || !strings.HasPrefix(huge, big.Body) {
			t.Fatalf("big body: truncated=%v len=%d", big.BodyTruncated, len(big.Body))
		}
		all, err := dl.List(ctx, "")
		if err != nil || len(all) != 2 || all[0].MessageID != "n/1#2" || all[1].MessageID != "iso-da1" {
			t.Fatalf("List all = %+v %v", all, err)
		}
		iso, err := dl.List(ctx, "isolations")
		if err != nil || len(iso) != 1 {
			t.Fatalf("List isolations = %d %v", len(iso), err)
		}
		if err := dl.MarkResubmitted(ctx, "isolations", "absent", "bob"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("MarkResubmitted of an absent letter = %v", err)
		}
		if _, err := dl.Record(ctx, store.DeadLetter{Queue: "isolations"}); err == nil {
			t.Fatal("dead letter without message id accepted")
		}
		if _, err := b.Get(ctx, store.TableDeadLetters, "isolations", "absent"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("MarkResubmitted of an absent letter created it: %v", err)
		}
	})
}

// TestDeadLetterReadsMinimalRecords pins that records written by other code
// with the minimal shape {queue,function,messageId,reason,body,
// deliveryCount,at,resubmitted} (internal/fn's dead letters share the table)
// are listed with their time and resubmission state.
func TestDeadLetterReadsMinimalRecords(t *testing.T) {
	t.Parallel()
	b := store.NewMemory()
	raw := `{"queue":"alerts","function":"EnrichAlert","messageId":"alert-da1","reason":"invalid","body":"{}","deliveryCount":3,"at":"2025-01-15T10:00:00Z","resubmitted":true}`
	if _, err := b.Insert(t.Context(), store.TableDeadLetters, store.Entity{PartitionKey: "alerts", RowKey: "alert-da1", Data: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	list, err := store.NewDeadLetterLog(b).List(t.Context(), "alerts")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	d := list[0]
	if d.Function != "EnrichAlert" || d.DeliveryCount != 3 || d.Pending() || !d.At.Equal(time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("decoded %+v", d)
	}
}
