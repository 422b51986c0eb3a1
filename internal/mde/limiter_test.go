package mde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quotaServer enforces a sliding-window quota of n calls per window, like
// the service (defender-api.md §6), answering 429 with Retry-After: 1.
type quotaServer struct {
	n      int
	window time.Duration
	mu     sync.Mutex
	times  []time.Time
	ok     atomic.Int32
	thr    atomic.Int32
}

func (q *quotaServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	q.mu.Lock()
	kept := q.times[:0]
	for _, t := range q.times {
		if now.Sub(t) < q.window {
			kept = append(kept, t)
		}
	}
	q.times = kept
	if len(q.times) >= q.n {
		q.mu.Unlock()
		q.thr.Add(1)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, 429, `{"error":{"code":"TooManyRequests","message":"quota"}}`)
		return
	}
	q.times = append(q.times, now)
	q.mu.Unlock()
	q.ok.Add(1)
	writeJSON(w, 200, `{"id":"`+alertA+`"}`)
}

func burst(t *testing.T, clients []*Client, calls int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%len(clients)]
			if _, err := c.GetAlert(context.Background(), alertA, false); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call failed: %v", err)
	}
}

func TestLimiterBurstAboveQuotaGetsNo429(t *testing.T) {
	t.Parallel()
	// Windows of seconds (not minutes) keep the test short; they must still be
	// long against scheduling jitter under -race, or arrivals bunch up.
	const n, window, calls = 20, 2 * time.Second, 30
	rates := map[Family][]Rate{FamilyAlerts: {{n, window}, {1000, time.Hour}}}
	t.Run("one instance", func(t *testing.T) {
		t.Parallel()
		qs := &quotaServer{n: n, window: window}
		lim, err := NewLimiter(LimitsConfig{Rates: rates})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := newTestClient(t, qs, func(o *ClientOptions) { o.Limiter = lim })
		start := time.Now()
		burst(t, []*Client{c}, calls)
		if got := qs.thr.Load(); got != 0 {
			t.Errorf("server answered 429 %d times", got)
		}
		if qs.ok.Load() != calls {
			t.Errorf("ok = %d, want %d", qs.ok.Load(), calls)
		}
		// 30 calls at 18 per 2s (burst 1, then 8.5/s) cannot finish in under ~3.4s.
		if d := time.Since(start); d < 3*time.Second {
			t.Errorf("burst finished in %v: limiter did not hold back", d)
		}
	})
	t.Run("two instances share the quota", func(t *testing.T) {
		t.Parallel()
		qs := &quotaServer{n: n, window: window}
		srv := httptest.NewTLSServer(qs)
		defer srv.Close()
		var clients []*Client
		for range 2 {
			lim, err := NewLimiter(LimitsConfig{Instances: 2, Rates: rates})
			if err != nil {
				t.Fatal(err)
			}
			c, _ := newTestClient(t, http.NotFoundHandler(), func(o *ClientOptions) {
				o.Limiter = lim
				o.BaseURL = srv.URL
				o.Transport = pooledClient(srv)
			})
			clients = append(clients, c)
		}
		burst(t, clients, calls)
		if got := qs.thr.Load(); got != 0 {
			t.Errorf("server answered 429 %d times", got)
		}
	})
	t.Run("control: no limiter gets throttled", func(t *testing.T) {
		t.Parallel()
		qs := &quotaServer{n: n, window: window}
		c, _ := newTestClient(t, qs, nil)
		burst(t, []*Client{c}, calls)
		if qs.thr.Load() == 0 {
			t.Error("the quota server did not throttle an unlimited burst: the test above proves nothing")
		}
	})
}

func TestThrottledAnywayWaitsRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
	}{
		{"TooManyRequests", `{"error":{"code":"TooManyRequests","message":"slow"}}`},
		{"hunting code 429", `{"error":{"code":"429","message":"API calls quota exceeded! maximum allowed 45 per 00:01:00"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			var times [2]time.Time
			lim, _ := NewLimiter(LimitsConfig{})
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				if n <= 2 {
					times[n-1] = time.Now()
				}
				if n == 1 {
					w.Header().Set("Retry-After", "1")
					writeJSON(w, 429, tt.body)
					return
				}
				writeJSON(w, 200, `{"Schema":[],"Results":[]}`)
			}), func(o *ClientOptions) { o.Limiter = lim })
			raw, err := c.RunAdvancedQuery(context.Background(), "DeviceInfo | take 1")
			if err != nil {
				t.Fatalf("RunAdvancedQuery: %v", err)
			}
			if len(raw) == 0 || calls.Load() != 2 {
				t.Fatalf("calls = %d, raw = %s", calls.Load(), raw)
			}
			if gap := times[1].Sub(times[0]); gap < 950*time.Millisecond {
				t.Errorf("retried after %v, want >= Retry-After 1s", gap)
			}
		})
	}
	t.Run("retry-after beyond MaxRetryDelay is returned, not slept", func(t *testing.T) {
		t.Parallel()
		c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			writeJSON(w, 429, `{"error":{"code":"429","message":"maximum allowed 1500 per 01:00:00"}}`)
		}), nil)
		start := time.Now()
		_, err := c.RunAdvancedQuery(context.Background(), "x")
		var me *Error
		if !errors.As(err, &me) || me.RetryAfter != 120*time.Second || !IsTransient(err) || !errors.Is(err, ErrThrottled) {
			t.Fatalf("err = %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Error("client slept on a Retry-After beyond its cap")
		}
	})
}

func TestNewLimiterConfig(t *testing.T) {
	t.Parallel()
	l, err := NewLimiter(LimitsConfig{Instances: 4})
	if err != nil {
		t.Fatal(err)
	}
	// 100/min and 1500/h, 90% share, 4 instances.
	if got := fmt.Sprint(l.Rates(FamilyAlerts)); got != "[22/1m0s 337/1h0m0s]" {
		t.Errorf("alerts rates = %s", got)
	}
	if got := fmt.Sprint(l.Rates(FamilyHunting)); got != "[10/1m0s 337/1h0m0s]" {
		t.Errorf("hunting rates = %s", got)
	}
	l, _ = NewLimiter(LimitsConfig{Share: 1})
	if got := fmt.Sprint(l.Rates(FamilyPackageURI)); got != "[2/1m0s 120/1h0m0s]" {
		t.Errorf("packageUri rates = %s", got)
	}
	for _, bad := range []LimitsConfig{
		{Instances: -1},
		{Share: 1.5},
		{Share: -0.1},
		{Rates: map[Family][]Rate{FamilyAlerts: {{0, time.Minute}}}},
		{Rates: map[Family][]Rate{FamilyAlerts: {{5, 0}}}},
	} {
		if _, err := NewLimiter(bad); err == nil {
			t.Errorf("NewLimiter(%+v) accepted", bad)
		}
	}
	var nilLim *Limiter
	if err := nilLim.Wait(context.Background(), FamilyAlerts); err != nil {
		t.Errorf("nil limiter Wait = %v", err)
	}
}

func TestLimiterWaitDeadlineAndPause(t *testing.T) {
	t.Parallel()
	l, err := NewLimiter(LimitsConfig{Share: 1, Rates: map[Family][]Rate{"slow": {{1, time.Hour}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Wait(ctx, "slow"); err != nil {
		t.Fatalf("first wait: %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = l.Wait(dctx, "slow")
	if !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Fatalf("second wait = %v, want deadline exceeded", err)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Error("Wait slept although the deadline could not be met")
	}
	// Unknown families are not limited.
	if err := l.Wait(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	l.Pause(FamilyAlerts, 150*time.Millisecond)
	start = time.Now()
	if err := l.Wait(ctx, FamilyAlerts); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 140*time.Millisecond {
		t.Errorf("Wait after Pause returned in %v", d)
	}
}
