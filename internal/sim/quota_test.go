package sim

import (
	"strconv"
	"testing"
	"time"
)

func TestQuotaPerMinute(t *testing.T) {
	s, clk := startSim(t, Options{})
	tok := mdeToken(t, s)
	for i := 0; i < 100; i++ {
		if r := call(t, s, "GET", "/api/alerts?$top=1", tok, nil); r.status != 200 {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
		clk.Advance(100 * time.Millisecond) // 100 calls over 10 s
	}
	r := call(t, s, "GET", "/api/alerts/x", tok, nil)
	if r.status != 429 || r.errCode(t) != "TooManyRequests" {
		t.Fatalf("101st call: %d %s", r.status, r.body)
	}
	if r.json(t)["error"].(map[string]any)["message"] != "API calls quota exceeded! maximum allowed 100 per 00:01:00" {
		t.Errorf("message %v", r.json(t)["error"])
	}
	// The oldest call was at +0 s, now is +10 s: retry in 50 s.
	if ra := r.header.Get("Retry-After"); ra != "50" {
		t.Errorf("Retry-After = %q, want 50", ra)
	}
	// Other families have their own window.
	if r := call(t, s, "GET", "/api/machines?$top=1", tok, nil); r.status != 200 {
		t.Errorf("machines while alerts throttled: %d", r.status)
	}
	clk.Advance(49 * time.Second)
	if r := call(t, s, "GET", "/api/alerts?$top=1", tok, nil); r.status != 429 {
		t.Errorf("after 49 s: %d, want 429", r.status)
	}
	clk.Advance(time.Second)
	if r := call(t, s, "GET", "/api/alerts?$top=1", tok, nil); r.status != 200 {
		t.Errorf("after Retry-After: %d %s", r.status, r.body)
	}
	if s.Throttled() != 2 {
		t.Errorf("Throttled() = %d, want 2", s.Throttled())
	}
}

func TestHuntingQuota(t *testing.T) {
	s, _ := startSim(t, Options{})
	tok := mdeToken(t, s)
	q := map[string]any{"Query": "DeviceInfo | take 1"}
	for i := 0; i < 45; i++ {
		if r := call(t, s, "POST", "/api/advancedqueries/run", tok, q); r.status != 200 {
			t.Fatalf("hunt %d: %d %s", i, r.status, r.body)
		}
	}
	r := call(t, s, "POST", "/api/advancedqueries/run", tok, q)
	if r.status != 429 {
		t.Fatalf("46th hunt: %d %s", r.status, r.body)
	}
	e := r.json(t)["error"].(map[string]any)
	if e["code"] != "429" || e["message"] != "API calls quota exceeded! maximum allowed 45 per 00:01:00" || !guidRe.MatchString(e["target"].(string)) {
		t.Errorf("429 body = %v", e)
	}
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 || n > 60 {
		t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
	}
}

func TestGraphHuntingQuota(t *testing.T) {
	s, clk := startSim(t, Options{})
	tok := secretToken(t, s, DefaultClientID, DefaultClientSecret, AudienceGraph+"/.default")
	q := map[string]any{"Query": "DeviceInfo | take 1"}
	for i := 0; i < 45; i++ {
		if r := call(t, s, "POST", "/v1.0/security/runHuntingQuery", tok, q); r.status != 200 {
			t.Fatalf("hunt %d: %d %s", i, r.status, r.body)
		}
	}
	r := call(t, s, "POST", "/v1.0/security/runHuntingQuery", tok, q)
	if r.status != 429 || r.errCode(t) != "TooManyRequests" || r.header.Get("Retry-After") != "60" {
		t.Fatalf("46th Graph hunt: %d Retry-After=%q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	// MDE hunting has its own window.
	if r := call(t, s, "POST", "/api/advancedqueries/run", mdeToken(t, s), q); r.status != 200 {
		t.Errorf("MDE hunt while Graph is throttled: %d", r.status)
	}
	clk.Advance(time.Minute)
	if r := call(t, s, "POST", "/v1.0/security/runHuntingQuery", tok, q); r.status != 200 {
		t.Errorf("after a minute: %d", r.status)
	}
}

func TestQuotaDisabled(t *testing.T) {
	s, _ := startSim(t, Options{DisableQuotas: true})
	tok := mdeToken(t, s)
	for i := 0; i < 60; i++ {
		if r := call(t, s, "POST", "/api/advancedqueries/run", tok, map[string]any{"Query": "DeviceInfo | take 1"}); r.status != 200 {
			t.Fatalf("hunt %d with quotas off: %d", i, r.status)
		}
	}
}

// The hourly windows, checked on the quota type to avoid 1,500 HTTP calls.
func TestQuotaHourlyWindow(t *testing.T) {
	tests := []struct {
		family  string
		perMin  int
		perHour int
		code    string
	}{
		{famAlerts, 100, 1500, "TooManyRequests"},
		{famActions, 100, 1500, "TooManyRequests"},
		{famHunting, 45, 1500, "429"},
	}
	for _, tt := range tests {
		t.Run(tt.family, func(t *testing.T) {
			q := newQuotas()
			now := testStart
			gap := time.Minute / time.Duration(tt.perMin-1) // stay under the minute limit
			for i := 0; i < tt.perHour; i++ {
				if e := q.take(tt.family, now); e != nil {
					t.Fatalf("call %d at %v: %v", i, now.Sub(testStart), e)
				}
				now = now.Add(gap)
			}
			e := q.take(tt.family, now)
			if e == nil || e.Code != tt.code || e.Message != "API calls quota exceeded! maximum allowed 1500 per 01:00:00" {
				t.Fatalf("call 1501 = %+v", e)
			}
			// Allowed again exactly when the first call leaves the hour.
			wait := e.RetryAfter
			if want := testStart.Add(time.Hour).Sub(now); wait != want {
				t.Errorf("RetryAfter = %v, want %v", wait, want)
			}
			if e := q.take(tt.family, now.Add(wait)); e != nil {
				t.Errorf("after RetryAfter: %v", e)
			}
		})
	}
}
