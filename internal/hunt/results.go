package hunt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Column is one result column.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Stats is the execution cost reported by the XDR API (and by some MDE
// responses).
type Stats struct {
	// ExecutionTime is the wall time the service reports.
	ExecutionTime time.Duration
	// CPU is resource_usage.cpu["total cpu"].
	CPU time.Duration
}

// Cost is what a run spends of the hourly CPU quota: CPU when reported,
// else the execution time.
func (s *Stats) Cost() time.Duration {
	if s == nil {
		return 0
	}
	if s.CPU > 0 {
		return s.CPU
	}
	return s.ExecutionTime
}

// Results is a decoded advanced hunting response. Numbers are json.Number
// (ids and counts keep their precision); nested values are maps and slices.
type Results struct {
	Columns []Column
	Rows    []map[string]any
	Stats   *Stats
}

// ColumnNames returns the column names in schema order.
func (r *Results) ColumnNames() []string {
	names := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		names[i] = c.Name
	}
	return names
}

// maxRows bounds a response (the service caps at 100,000 rows).
const maxRows = 100_000

// ParseResults decodes the three advanced hunting response shapes:
//
//   - MDE advancedqueries: {"Schema":[{"Name","Type"}], "Results":[...]}
//   - XDR advancedhunting: the same plus "Stats" (ExecutionTime seconds,
//     resource_usage.cpu["total cpu"] as a .NET TimeSpan "hh:mm:ss.fffffff")
//   - Graph runHuntingQuery: {"schema":[{"name","type"}], "results":[...]}
//
// A response with neither schema nor results is an error. When the schema
// is missing, the columns are the sorted union of the row keys (type "").
func ParseResults(raw []byte) (*Results, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("decoding hunting response: %w", err)
	}
	schemaRaw := pick(top, "Schema", "schema")
	rowsRaw := pick(top, "Results", "results")
	if schemaRaw == nil && rowsRaw == nil {
		return nil, errors.New("decoding hunting response: no Schema/Results (not a hunting response)")
	}
	res := &Results{}
	if len(schemaRaw) > 0 && string(schemaRaw) != "null" {
		var cols []map[string]json.RawMessage
		if err := json.Unmarshal(schemaRaw, &cols); err != nil {
			return nil, fmt.Errorf("decoding hunting schema: %w", err)
		}
		for i, c := range cols {
			var col Column
			if err := unmarshalString(pick(c, "Name", "name"), &col.Name); err != nil || col.Name == "" {
				return nil, fmt.Errorf("decoding hunting schema: column %d has no name", i)
			}
			_ = unmarshalString(pick(c, "Type", "type"), &col.Type)
			res.Columns = append(res.Columns, col)
		}
	}
	if len(rowsRaw) > 0 && string(rowsRaw) != "null" {
		d := json.NewDecoder(bytes.NewReader(rowsRaw))
		d.UseNumber()
		if err := d.Decode(&res.Rows); err != nil {
			return nil, fmt.Errorf("decoding hunting rows: %w", err)
		}
		if len(res.Rows) > maxRows {
			return nil, fmt.Errorf("decoding hunting rows: %d rows, more than %d", len(res.Rows), maxRows)
		}
		for i, row := range res.Rows {
			if row == nil {
				return nil, fmt.Errorf("decoding hunting rows: row %d is not an object", i)
			}
		}
	}
	if len(res.Columns) == 0 && len(res.Rows) > 0 {
		set := map[string]bool{}
		for _, row := range res.Rows {
			for k := range row {
				set[k] = true
			}
		}
		for k := range set {
			res.Columns = append(res.Columns, Column{Name: k})
		}
		sort.Slice(res.Columns, func(a, b int) bool { return res.Columns[a].Name < res.Columns[b].Name })
	}
	if statsRaw := pick(top, "Stats", "stats"); len(statsRaw) > 0 && string(statsRaw) != "null" {
		st, err := parseStats(statsRaw)
		if err != nil {
			return nil, err
		}
		res.Stats = st
	}
	return res, nil
}

func pick(m map[string]json.RawMessage, keys ...string) json.RawMessage {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v
		}
	}
	return nil
}

func unmarshalString(raw json.RawMessage, s *string) error {
	if raw == nil {
		return errors.New("absent")
	}
	return json.Unmarshal(raw, s)
}

func parseStats(raw json.RawMessage) (*Stats, error) {
	var s struct {
		ExecutionTime json.Number `json:"ExecutionTime"`
		ResourceUsage struct {
			CPU map[string]json.RawMessage `json:"cpu"`
		} `json:"resource_usage"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("decoding hunting stats: %w", err)
	}
	st := &Stats{}
	if s.ExecutionTime != "" {
		secs, err := s.ExecutionTime.Float64()
		if err != nil || secs < 0 {
			return nil, fmt.Errorf("decoding hunting stats: bad ExecutionTime %q", s.ExecutionTime)
		}
		st.ExecutionTime = time.Duration(secs * float64(time.Second))
	}
	if v, ok := s.ResourceUsage.CPU["total cpu"]; ok {
		var ts string
		if err := json.Unmarshal(v, &ts); err != nil {
			return nil, fmt.Errorf("decoding hunting stats: total cpu: %w", err)
		}
		d, err := ParseTimeSpan(ts)
		if err != nil {
			return nil, fmt.Errorf("decoding hunting stats: total cpu: %w", err)
		}
		st.CPU = d
	}
	return st, nil
}

// ParseTimeSpan reads a .NET TimeSpan string: [-][d.]hh:mm:ss[.fffffff].
func ParseTimeSpan(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New("empty timespan")
	}
	neg := strings.HasPrefix(in, "-")
	in = strings.TrimPrefix(in, "-")
	var days int64
	parts := strings.Split(in, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("timespan %q is not [d.]hh:mm:ss[.f]", s)
	}
	hourPart := parts[0]
	if i := strings.IndexByte(hourPart, '.'); i >= 0 {
		d, err := strconv.ParseInt(hourPart[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("timespan %q: bad days", s)
		}
		days = d
		hourPart = hourPart[i+1:]
	}
	h, err1 := strconv.ParseInt(hourPart, 10, 64)
	m, err2 := strconv.ParseInt(parts[1], 10, 64)
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec >= 60 || days < 0 {
		return 0, fmt.Errorf("timespan %q is not [d.]hh:mm:ss[.f]", s)
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec*float64(time.Second))
	if neg {
		d = -d
	}
	return d, nil
}
