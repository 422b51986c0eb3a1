package hunt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// volatilePrefixes are the column-name prefixes KQL gives to aggregation
// results (summarize count(), max(Timestamp), make_set(...) ...). Their
// values grow or shift as overlapping windows slide over the same events, so
// they are left out of the fingerprint.
var volatilePrefixes = []string{
	"count_", "countif_", "dcount_", "dcountif_", "sum_", "sumif_", "avg_", "avgif_",
	"min_", "max_", "minif_", "maxif_", "make_set_", "make_list_", "make_bag_",
	"percentile_", "percentiles_", "stdev_", "variance_", "take_any_",
}

// volatileNames are column names hunting queries commonly give to
// aggregates over the window.
var volatileNames = map[string]bool{
	"Count": true, "TotalCount": true, "EventCount": true,
	"FirstSeen": true, "LastSeen": true, "FirstTimestamp": true, "LastTimestamp": true,
}

// IsVolatileColumn reports whether a column is left out of fingerprints by
// default: KQL aggregation outputs (count_, dcount_, max_..., make_set_...)
// and the names Count, TotalCount, EventCount, FirstSeen, LastSeen,
// FirstTimestamp, LastTimestamp.
func IsVolatileColumn(name string) bool {
	return volatileNames[name] || hasPrefix(name, volatilePrefixes)
}

// Fingerprint identifies a result row of hunt h, so that the same event
// returned by two overlapping runs is reported once. It is the SHA-256 (hex)
// over the sorted column=value pairs of:
//
//   - h.FingerprintColumns when the hunt lists them (mdeflow.fingerprintColumns);
//   - otherwise every column of the row except the volatile ones
//     (IsVolatileColumn) and h.VolatileColumns (mdeflow.volatileColumns).
//
// Event columns such as Timestamp, DeviceId and ReportId are kept, so an
// event is identified by what it is, not by when it was fetched. Values are
// canonicalised first: DateTime values are re-formatted in UTC (the APIs
// differ in trailing zeros), numbers are written in shortest form, dynamic
// values as JSON with sorted keys, null and a missing column alike. A query
// that computes a column from now() (ago(), datetime_diff with now()) must
// list it in mdeflow.volatileColumns.
func Fingerprint(h Hunt, columns []Column, row map[string]any) string {
	types := make(map[string]string, len(columns))
	for _, c := range columns {
		types[c.Name] = c.Type
	}
	var names []string
	if len(h.FingerprintColumns) > 0 {
		names = append(names, h.FingerprintColumns...)
	} else {
		skip := map[string]bool{}
		for _, v := range h.VolatileColumns {
			skip[v] = true
		}
		// The schema's columns and the row's keys: a column the row
		// leaves out hashes like a null one.
		for _, c := range columns {
			if !skip[c.Name] && !IsVolatileColumn(c.Name) {
				names = append(names, c.Name)
			}
		}
		for name := range row {
			if _, inSchema := types[name]; !inSchema && !skip[name] && !IsVolatileColumn(name) {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	hash := sha256.New()
	var lenBuf [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(lenBuf[:], uint64(len(s)))
		hash.Write(lenBuf[:])
		hash.Write([]byte(s))
	}
	prev := ""
	for i, name := range names {
		if i > 0 && name == prev {
			continue
		}
		prev = name
		write(name)
		write(canonicalValue(row[name], types[name]))
	}
	return hex.EncodeToString(hash.Sum(nil))
}

// canonicalValue renders a cell so that equal values from different
// responses hash alike. The first byte tags the kind.
func canonicalValue(v any, typ string) string {
	switch x := v.(type) {
	case nil:
		return "n"
	case string:
		if isDateType(typ) {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return "t" + t.UTC().Format(time.RFC3339Nano)
			}
		}
		return "s" + x
	case bool:
		return "b" + strconv.FormatBool(x)
	case json.Number:
		return "d" + canonicalNumber(string(x))
	case float64:
		return "d" + canonicalNumber(strconv.FormatFloat(x, 'g', -1, 64))
	case int, int64, int32:
		return "d" + fmt.Sprint(x)
	default:
		b, err := json.Marshal(x) // maps marshal with sorted keys
		if err != nil {
			return "x" + fmt.Sprintf("%v", x)
		}
		return "j" + string(b)
	}
}

func isDateType(typ string) bool {
	return strings.EqualFold(typ, "DateTime") || strings.EqualFold(typ, "datetime")
}

func canonicalNumber(s string) string {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return strconv.FormatInt(i, 10)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f == float64(int64(f)) && f < 1e15 && f > -1e15 {
			return strconv.FormatInt(int64(f), 10)
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return s
}
