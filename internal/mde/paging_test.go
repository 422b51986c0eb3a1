package mde

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// alertStore serves n alerts with $top/$skip and an optional nextLink policy.
type alertStore struct {
	n        int
	nextLink func(r *http.Request, base string, skip, top int) string // "" for none
	dupEvery bool                                                     // repeat the last item of the previous page
	mu       sync.Mutex
	queries  []string
}

func (s *alertStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.queries = append(s.queries, r.URL.RawQuery)
	s.mu.Unlock()
	q := r.URL.Query()
	top, _ := strconv.Atoi(q.Get("$top"))
	skip, _ := strconv.Atoi(q.Get("$skip"))
	if tok := q.Get("$skiptoken"); tok != "" && tok != "loop" {
		skip, _ = strconv.Atoi(tok)
	}
	if top == 0 {
		top = 10
	}
	if s.dupEvery && skip > 0 {
		skip--
	}
	var page []Alert
	for i := skip; i < s.n && i < skip+top; i++ {
		page = append(page, Alert{ID: fmt.Sprintf("da%03d_1", i)})
	}
	body := map[string]any{"value": page}
	if s.nextLink != nil {
		if l := s.nextLink(r, "https://"+r.Host, skip, top); l != "" && skip+top < s.n {
			body["@odata.nextLink"] = l
		}
	}
	b, _ := json.Marshal(body)
	writeJSON(w, 200, string(b))
}

func ids(as []Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func wantIDs(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("da%03d_1", i))
	}
	return out
}

func TestListAlertsPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		store       *alertStore
		opts        ListAlertsOptions
		want        []string
		wantQueries []string
	}{
		{
			name:        "skip paging",
			store:       &alertStore{n: 25},
			opts:        ListAlertsOptions{PageSize: 10},
			want:        wantIDs(0, 25),
			wantQueries: []string{"$top=10", "$top=10&$skip=10", "$top=10&$skip=20"},
		},
		{
			name: "nextLink paging",
			store: &alertStore{n: 25, nextLink: func(r *http.Request, base string, skip, top int) string {
				return fmt.Sprintf("%s/api/alerts?$top=%d&$skiptoken=%d", base, top, skip+top)
			}},
			opts:        ListAlertsOptions{PageSize: 10},
			want:        wantIDs(0, 25),
			wantQueries: []string{"$top=10", "$top=10&$skiptoken=10", "$top=10&$skiptoken=20"},
		},
		{
			// Issue #8316: repeated nextLinks; the client falls back to $skip.
			name: "repeated nextLink falls back to skip",
			store: &alertStore{n: 25, nextLink: func(r *http.Request, base string, skip, top int) string {
				return base + "/api/alerts?$top=10&$skip=10&$skiptoken=loop"
			}},
			opts:        ListAlertsOptions{PageSize: 10},
			want:        wantIDs(0, 25),
			wantQueries: []string{"$top=10", "$top=10&$skip=10&$skiptoken=loop", "$top=10&$skip=20"},
		},
		{
			name: "malformed nextLink falls back to skip",
			store: &alertStore{n: 15, nextLink: func(r *http.Request, base string, skip, top int) string {
				return "%%not a url"
			}},
			opts:        ListAlertsOptions{PageSize: 10},
			want:        wantIDs(0, 15),
			wantQueries: []string{"$top=10", "$top=10&$skip=10"},
		},
		{
			name:        "top caps the total",
			store:       &alertStore{n: 25},
			opts:        ListAlertsOptions{PageSize: 10, Top: 15},
			want:        wantIDs(0, 15),
			wantQueries: []string{"$top=10", "$top=10&$skip=10"},
		},
		{
			name:        "small top is the page size",
			store:       &alertStore{n: 25},
			opts:        ListAlertsOptions{Top: 3, MaxResults: 100},
			want:        wantIDs(0, 3),
			wantQueries: []string{"$top=3"},
		},
		{
			name:        "overlapping pages are de-duplicated",
			store:       &alertStore{n: 12, dupEvery: true},
			opts:        ListAlertsOptions{PageSize: 5},
			want:        wantIDs(0, 12),
			wantQueries: []string{"$top=5", "$top=5&$skip=5", "$top=5&$skip=10"},
		},
		{
			name:        "empty",
			store:       &alertStore{n: 0},
			want:        nil,
			wantQueries: []string{"$top=1000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newTestClient(t, tt.store, nil)
			got, err := c.ListAlerts(context.Background(), &tt.opts)
			if err != nil {
				t.Fatalf("ListAlerts: %v", err)
			}
			if fmt.Sprint(ids(got)) != fmt.Sprint(tt.want) {
				t.Errorf("ids = %v\nwant  %v", ids(got), tt.want)
			}
			tt.store.mu.Lock()
			defer tt.store.mu.Unlock()
			if fmt.Sprint(tt.store.queries) != fmt.Sprint(tt.wantQueries) {
				t.Errorf("queries = %q\nwant    %q", tt.store.queries, tt.wantQueries)
			}
		})
	}
}

// The bearer token goes wherever a nextLink points, so links to another host
// (or outside /api/) must never be followed.
func TestListAlertsRefusesForeignNextLink(t *testing.T) {
	t.Parallel()
	var foreignHits atomic.Int32
	foreign := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignHits.Add(1)
		writeJSON(w, 200, `{"value":[]}`)
	}))
	defer foreign.Close()
	for _, link := range []string{
		foreign.URL + "/api/alerts?$skip=10",
		"http://127.0.0.1/api/alerts?$skip=10",
		"SAME/other/alerts?$skip=10",
		"SAME/api/../admin?$skip=10",
	} {
		t.Run(link, func(t *testing.T) {
			store := &alertStore{n: 25, nextLink: func(r *http.Request, base string, skip, top int) string {
				if len(link) > 4 && link[:4] == "SAME" {
					return base + link[4:]
				}
				return link
			}}
			c, _ := newTestClient(t, store, nil)
			got, err := c.ListAlerts(context.Background(), &ListAlertsOptions{PageSize: 10})
			if !errors.Is(err, ErrForeignNextLink) {
				t.Fatalf("err = %v, want ErrForeignNextLink", err)
			}
			if len(got) != 10 {
				t.Errorf("partial result = %d alerts, want the 10 of the first page", len(got))
			}
		})
	}
	if foreignHits.Load() != 0 {
		t.Fatalf("foreign host contacted %d times", foreignHits.Load())
	}
}
