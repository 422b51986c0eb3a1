package simcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/hunt"
	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/sim"
	"github.com/mdeflow/mdeflow/internal/store"
)

// simQuerier posts to the simulator as the lead's adapters do: MDE with
// the period folded into the query (hunt.ScopeQuery), Graph with Timespan.
type simQuerier struct {
	api    string
	base   string
	token  string
	client *http.Client
	sent   []string
}

func (q *simQuerier) Run(ctx context.Context, query string, period time.Duration) (json.RawMessage, error) {
	var url string
	body := map[string]string{}
	switch q.api {
	case hunt.APIMDE:
		url = q.base + "/api/advancedqueries/run"
		body["Query"] = hunt.ScopeQuery(query, period)
	default:
		url = q.base + "/v1.0/security/runHuntingQuery"
		body["Query"], body["Timespan"] = query, hunt.ISODuration(period)
	}
	q.sent = append(q.sent, body["Query"])
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+q.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := q.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hunting query: %d %s", resp.StatusCode, raw)
	}
	return raw, nil
}

func TestExampleHuntsAgainstSimulator(t *testing.T) {
	cat, err := hunt.LoadDir(filepath.Join("..", "..", "..", "examples", "hunts"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Unsupported) > 0 {
		t.Fatalf("unsupported example files: %+v", cat.Unsupported)
	}
	now := time.Now().UTC()
	for _, api := range []string{hunt.APIMDE, hunt.APIGraph} {
		t.Run(api, func(t *testing.T) {
			srv, err := sim.New(sim.Options{Clock: func() time.Time { return now }, DisableQuotas: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			aud, role := sim.AudienceSecurityCenter, sim.RoleAdvancedQuery
			if api == hunt.APIGraph {
				aud, role = sim.AudienceGraph, sim.RoleGraphHunting
			}
			token, err := srv.MintToken(aud, []string{role}, 3*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			q := &simQuerier{api: api, base: srv.URL(), token: token, client: srv.HTTPClient()}
			st := store.NewMemory()
			defer st.Close()
			r, err := hunt.NewRunner(hunt.RunnerOptions{Catalog: cat, API: api, Querier: q, Store: st, CPUBudget: -1})
			if err != nil {
				t.Fatal(err)
			}
			if ex := r.Excluded(); len(ex) > 0 {
				t.Fatalf("examples excluded for %s: %v", api, ex)
			}
			reps, err := r.RunDue(context.Background(), now)
			if err != nil {
				t.Fatal(err)
			}
			devices := map[string][]string{}
			for _, rep := range reps {
				if rep.Err != nil || rep.Skipped != "" {
					t.Fatalf("%s: err %v skipped %q (queries sent: %q)", rep.HuntID, rep.Err, rep.Skipped, q.sent)
				}
				for _, row := range rep.NewRows {
					devices[rep.HuntID] = append(devices[rep.HuntID], row["DeviceName"].(string))
				}
				sort.Strings(devices[rep.HuntID])
			}
			// The sample tenant: procdump (and a renamed copy) on lsass on two
			// workstations, ntdsutil IFM on dc01 (the older "Backup" run is
			// outside the 1-day period), comsvcs MiniDump on one host.
			if got := devices["mdeflow-lsass-procdump"]; len(got) != 2 {
				t.Errorf("lsass hunt devices = %q", got)
			}
			if got := devices["mdeflow-ntdsutil-ifm"]; len(got) != 1 || !strings.HasPrefix(got[0], "dc01") {
				t.Errorf("ntdsutil hunt devices = %q", got)
			}
			if got := devices["mdeflow-comsvcs-minidump"]; len(got) != 1 {
				t.Errorf("comsvcs hunt devices = %q", got)
			}
			for _, rep := range reps {
				h, _ := cat.Get(rep.HuntID)
				if d := hunt.Digest(rep, h.MaxRowsInDigest); d == nil || d.NewRows != len(rep.NewRows) {
					t.Errorf("%s: digest %+v", rep.HuntID, d)
				}
				msgs, skipped := hunt.DeviceAlerts(h, rep, now)
				if h.OnHits.RaiseAlerts == nil {
					if len(msgs) != 0 {
						t.Errorf("%s raised alerts without raiseAlerts", h.ID)
					}
					continue
				}
				if len(msgs) != 2 || len(skipped) != 0 {
					t.Errorf("%s: %d alerts, skipped %v", h.ID, len(msgs), skipped)
				}
				for _, m := range msgs {
					b, _ := json.Marshal(m)
					back, err := pipeline.ParseAlertMessage(b)
					if err != nil {
						t.Fatal(err)
					}
					if _, ok := srv.Machine(back.MachineID); !ok {
						t.Errorf("alert for unknown machine %s", back.MachineID)
					}
					if back.Alert.Severity != mde.SeverityHigh || len(back.Alert.Evidence) == 0 {
						t.Errorf("alert = %+v", back.Alert)
					}
				}
			}
			// An hour later every hunt is due again; the ntdsutil hunt (1-day
			// period) sees its event again but reports it no more.
			later := now.Add(time.Hour)
			srv.SetClock(func() time.Time { return later })
			reps, err = r.RunDue(context.Background(), later)
			if err != nil {
				t.Fatal(err)
			}
			for _, rep := range reps {
				if rep.Err != nil || len(rep.NewRows) != 0 {
					t.Errorf("%s an hour later: err %v, %d new rows", rep.HuntID, rep.Err, len(rep.NewRows))
				}
			}
		})
	}
}
