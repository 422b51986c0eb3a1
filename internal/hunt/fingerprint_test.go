package hunt

import (
	"encoding/json"
	"testing"
)

func TestFingerprint(t *testing.T) {
	t.Parallel()
	cols := []Column{{"Timestamp", "DateTime"}, {"DeviceId", "String"}, {"FileName", "String"}, {"ReportId", "Int64"}}
	base := map[string]any{
		"Timestamp": "2025-03-01T09:12:01.1Z", "DeviceId": devA, "FileName": "procdump.exe", "ReportId": json.Number("42"),
	}
	with := func(mut func(map[string]any)) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		mut(m)
		return m
	}
	h := Hunt{}
	fp := Fingerprint(h, cols, base)
	if len(fp) != 64 {
		t.Fatalf("fingerprint %q is not hex SHA-256", fp)
	}
	same := []struct {
		name string
		row  map[string]any
		h    Hunt
	}{
		// The same event from another API: more fractional digits, other zone.
		{"timestamp spelling", with(func(m map[string]any) { m["Timestamp"] = "2025-03-01T10:12:01.1000000+01:00" }), h},
		{"number as float", with(func(m map[string]any) { m["ReportId"] = float64(42) }), h},
		{"number with exponent", with(func(m map[string]any) { m["ReportId"] = json.Number("4.2e1") }), h},
		{"aggregate column ignored", with(func(m map[string]any) { m["count_"] = json.Number("9") }), h},
		{"LastSeen ignored", with(func(m map[string]any) { m["LastSeen"] = "2025-03-01T09:30:00Z" }), h},
		{"hunt volatile column", with(func(m map[string]any) { m["AgeMinutes"] = json.Number("12") }), Hunt{VolatileColumns: []string{"AgeMinutes"}}},
		{"fingerprint columns only", with(func(m map[string]any) { m["FileName"] = "other.exe" }), Hunt{FingerprintColumns: []string{"DeviceId", "ReportId", "Timestamp"}}},
	}
	for _, tc := range same {
		want := fp
		if len(tc.h.FingerprintColumns) > 0 {
			want = Fingerprint(tc.h, cols, base)
		}
		if got := Fingerprint(tc.h, cols, tc.row); got != want {
			t.Errorf("%s: fingerprint differs", tc.name)
		}
	}
	different := map[string]map[string]any{
		"other time":        with(func(m map[string]any) { m["Timestamp"] = "2025-03-01T09:12:01.2Z" }),
		"other device":      with(func(m map[string]any) { m["DeviceId"] = devB }),
		"other report":      with(func(m map[string]any) { m["ReportId"] = json.Number("43") }),
		"extra column":      with(func(m map[string]any) { m["Extra"] = "x" }),
		"null vs empty":     with(func(m map[string]any) { m["FileName"] = nil }),
		"string vs number":  with(func(m map[string]any) { m["ReportId"] = "42" }),
		"name/value border": with(func(m map[string]any) { delete(m, "FileName"); m["FileNam"] = "eprocdump.exe" }),
	}
	for name, row := range different {
		if Fingerprint(h, cols, row) == fp {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	// A schema column missing from a row hashes like null.
	withNull := map[string]any{"SHA1": nil}
	for k, v := range base {
		withNull[k] = v
	}
	cols2 := append(append([]Column{}, cols...), Column{"SHA1", "String"})
	if Fingerprint(h, cols2, base) != Fingerprint(h, cols2, withNull) {
		t.Error("missing and null columns hash differently")
	}
	// Dynamic values hash the same whatever the key order of the source.
	a := map[string]any{"AdditionalFields": map[string]any{"a": json.Number("1"), "b": "x"}}
	b := map[string]any{"AdditionalFields": map[string]any{"b": "x", "a": json.Number("1")}}
	if Fingerprint(h, nil, a) != Fingerprint(h, nil, b) {
		t.Error("dynamic value fingerprint depends on key order")
	}
}

func TestIsVolatileColumn(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"count_": true, "dcount_DeviceId": true, "max_Timestamp": true, "make_set_FileName": true,
		"FirstSeen": true, "Timestamp": false, "DeviceId": false, "ReportId": false, "Counter": false,
	} {
		if got := IsVolatileColumn(name); got != want {
			t.Errorf("IsVolatileColumn(%q) = %v", name, got)
		}
	}
}
