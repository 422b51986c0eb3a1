package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	huntWindow   = 30 * 24 * time.Hour // "only data from the last 30 days"
	huntMaxRows  = 100000              // results are capped at 100,000 rows
	huntMaxBytes = 124 << 20           // over 124 MB → 400
)

// knownHuntTables are advanced-hunting tables that exist even when the
// tenant has no rows for them (an unknown name is a semantic error).
var knownHuntTables = map[string]bool{
	"AlertInfo": true, "AlertEvidence": true, "BehaviorInfo": true, "BehaviorEntities": true,
	"CloudAppEvents": true, "DeviceEvents": true, "DeviceFileCertificateInfo": true,
	"DeviceFileEvents": true, "DeviceImageLoadEvents": true, "DeviceInfo": true,
	"DeviceLogonEvents": true, "DeviceNetworkEvents": true, "DeviceNetworkInfo": true,
	"DeviceProcessEvents": true, "DeviceRegistryEvents": true, "DeviceTvmSoftwareInventory": true,
	"DeviceTvmSoftwareVulnerabilities": true, "EmailAttachmentInfo": true, "EmailEvents": true,
	"EmailPostDeliveryEvents": true, "EmailUrlInfo": true, "IdentityDirectoryEvents": true,
	"IdentityInfo": true, "IdentityLogonEvents": true, "IdentityQueryEvents": true, "UrlClickEvents": true,
}

// huntResult is a query answer before it is shaped for MDE or Graph.
type huntResult struct {
	cols []Column
	rows []map[string]any
	took time.Duration
}

// hunt answers a query with Tenant.Hunt or the built-in KQL subset over
// HuntRows restricted to rows whose Timestamp lies in [now-window, now].
func (s *Server) hunt(query string, window time.Duration) (*huntResult, *HuntError) {
	started := time.Now()
	s.mu.Lock()
	now := s.now()
	hook := s.huntHook
	tables := make(map[string][]map[string]any, len(s.huntRows))
	for name, rows := range s.huntRows {
		var in []map[string]any
		for _, r := range rows {
			if ts, ok := kqlNorm(r["Timestamp"]).(time.Time); ok {
				if ts.Before(now.Add(-window)) || ts.After(now) {
					continue
				}
			} else if str, ok := r["Timestamp"].(string); ok {
				if ts, ok := parseODataTime(str); ok && (ts.Before(now.Add(-window)) || ts.After(now)) {
					continue
				}
			}
			in = append(in, r)
		}
		tables[name] = in
	}
	s.mu.Unlock()

	var cols []Column
	var rows []map[string]any
	if hook != nil {
		c, r, err := hook(query, now)
		if err != nil {
			var he *HuntError
			if errors.As(err, &he) {
				return nil, he
			}
			return nil, &HuntError{Status: http.StatusBadRequest, Code: "BadRequest", Message: err.Error()}
		}
		cols, rows = c, r
		if cols == nil {
			cols = inferSchema(defaultColumns(rows), rows)
		}
	} else {
		tab, err := runKQL(query, now, tables, knownHuntTables)
		if err != nil {
			var he *HuntError
			if errors.As(err, &he) {
				return nil, he
			}
			return nil, &HuntError{Status: http.StatusBadRequest, Code: "BadRequest", Message: err.Error()}
		}
		cols, rows = inferSchema(tab.cols, tab.rows), tab.rows
	}
	if len(rows) > huntMaxRows {
		rows = rows[:huntMaxRows]
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		out[i] = renderRow(r)
	}
	return &huntResult{cols: cols, rows: out, took: time.Since(started)}, nil
}

// inferSchema types each column from its values.
func inferSchema(names []string, rows []map[string]any) []Column {
	cols := make([]Column, 0, len(names))
	for _, n := range names {
		typ := ""
		for _, r := range rows {
			t := kustoType(n, r[n])
			if t == "" {
				continue
			}
			if typ == "" {
				typ = t
			} else if typ != t {
				typ = "Dynamic"
			}
		}
		if typ == "" {
			typ = "String"
		}
		cols = append(cols, Column{Name: n, Type: typ})
	}
	return cols
}

func kustoType(name string, v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		return "DateTime"
	case time.Duration:
		return "TimeSpan"
	case string:
		if name == "Timestamp" || strings.HasSuffix(name, "Time") {
			if _, ok := parseODataTime(x); ok {
				return "DateTime"
			}
		}
		return "String"
	case bool:
		return "Boolean"
	case int32:
		return "Int32"
	case int, int64, uint32:
		return "Int64"
	case float32:
		return "Double"
	case float64:
		if x == float64(int64(x)) {
			return "Int64"
		}
		return "Double"
	case json.Number:
		if strings.ContainsAny(x.String(), ".eE") {
			return "Double"
		}
		return "Int64"
	}
	return "Dynamic"
}

// renderRow makes a row JSON-ready: times as ISO-8601 UTC with 7 fractional
// digits at most, durations as Kusto timespans, integral floats as integers.
func renderRow(r map[string]any) map[string]any {
	out := make(map[string]any, len(r))
	for k, v := range r {
		switch x := v.(type) {
		case time.Time:
			out[k] = x.UTC().Format("2006-01-02T15:04:05.9999999Z")
		case time.Duration:
			out[k] = fmtTimespan(x)
		case float64:
			if x == float64(int64(x)) && (x < 1e15 && x > -1e15) {
				out[k] = int64(x)
			} else {
				out[k] = x
			}
		default:
			out[k] = v
		}
	}
	return out
}

// runAdvancedQuery is POST /api/advancedqueries/run.
func (s *Server) runAdvancedQuery(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	body, e := jsonBody(r)
	if e != nil {
		return e
	}
	query, e := requiredString(body, "Query")
	if e != nil {
		return e
	}
	res, he := s.hunt(query, huntWindow)
	if he != nil {
		return &apiError{Status: he.Status, Code: he.Code, Message: he.Message}
	}
	schema := make([]map[string]any, len(res.cols))
	for i, c := range res.cols {
		schema[i] = map[string]any{"Name": c.Name, "Type": c.Type}
	}
	payload := orderedObject{
		{"Stats", huntStats(res)},
		{"Schema", schema},
		{"Results", res.rows},
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return &apiError{Status: http.StatusInternalServerError, Code: "InternalServerError"}
	}
	if len(b) > huntMaxBytes {
		return errBadRequest("BadRequest", "Query execution has exceeded the allowed result size. Optimize your query by limiting the number of results and try again")
	}
	writeOData(w, http.StatusOK, contentTypeOData, json.RawMessage(b))
	return nil
}

func huntStats(res *huntResult) map[string]any {
	cpu := fmtTimespan(res.took)
	size := 0
	for _, r := range res.rows {
		if b, err := json.Marshal(r); err == nil {
			size += len(b)
		}
	}
	return map[string]any{
		"ExecutionTime": res.took.Seconds(),
		"resource_usage": map[string]any{
			"cache": map[string]any{
				"memory": map[string]any{"hits": len(res.rows), "misses": 0, "total": len(res.rows)},
				"disk":   map[string]any{"hits": 0, "misses": 0, "total": 0},
			},
			"cpu":    map[string]any{"user": cpu, "kernel": "00:00:00", "total cpu": cpu},
			"memory": map[string]any{"peak_per_node": 1 << 20},
		},
		"dataset_statistics": []any{map[string]any{"table_row_count": len(res.rows), "table_size": size}},
	}
}

var isoDurRe = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// parseISODuration reads the ISO-8601 durations Graph's Timespan takes
// (P30D, PT12H, P1DT6H30M). It returns false for anything else.
func parseISODuration(v string) (time.Duration, bool) {
	m := isoDurRe.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(v)))
	if m == nil || v == "P" || v == "PT" {
		return 0, false
	}
	var d time.Duration
	units := []time.Duration{24 * time.Hour, time.Hour, time.Minute}
	for i, u := range units {
		if m[i+1] != "" {
			n, err := strconv.Atoi(m[i+1])
			if err != nil {
				return 0, false
			}
			d += time.Duration(n) * u
		}
	}
	if m[4] != "" {
		f, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			return 0, false
		}
		d += time.Duration(f * float64(time.Second))
	}
	return d, d > 0
}

// graphRunHuntingQuery is POST /v1.0/security/runHuntingQuery.
func (s *Server) graphRunHuntingQuery(w http.ResponseWriter, r *http.Request) *apiError {
	body, e := jsonBody(r)
	if e != nil {
		return graphBadRequest(e.Message)
	}
	var query, timespan string
	for k, v := range body {
		sv, _ := v.(string)
		switch strings.ToLower(k) {
		case "query":
			query = sv
		case "timespan":
			timespan = sv
		default:
			return graphBadRequest(fmt.Sprintf("The property '%s' does not exist on type 'microsoft.graph.security.runHuntingQuery'.", k))
		}
	}
	if strings.TrimSpace(query) == "" {
		return graphBadRequest("The Query parameter is required.")
	}
	window := huntWindow
	if timespan != "" {
		d, ok := parseISODuration(timespan)
		if !ok {
			return graphBadRequest(fmt.Sprintf("Timespan '%s' is not a valid ISO-8601 duration.", timespan))
		}
		window = d
	}
	res, he := s.hunt(query, window)
	if he != nil {
		return &apiError{Status: he.Status, Code: he.Code, Message: he.Message}
	}
	schema := make([]map[string]any, len(res.cols))
	for i, c := range res.cols {
		schema[i] = map[string]any{"name": c.Name, "type": c.Type}
	}
	writeOData(w, http.StatusOK, contentTypeGraph, orderedObject{
		{"@odata.context", baseURL(r) + "/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"},
		{"schema", schema},
		{"results", res.rows},
	})
	return nil
}

func graphBadRequest(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "BadRequest", Message: msg}
}
