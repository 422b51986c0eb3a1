package hunt

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkFingerprint measures fingerprinting one typical
// DeviceProcessEvents row (done for every row of every run).
func BenchmarkFingerprint(b *testing.B) {
	h := Hunt{ID: "lsass"}
	cols := []Column{{"Timestamp", "DateTime"}, {"DeviceId", "String"}, {"DeviceName", "String"}, {"FileName", "String"},
		{"ProcessCommandLine", "String"}, {"SHA256", "String"}, {"ReportId", "Int64"}}
	row := map[string]any{"Timestamp": time.Now().UTC().Format(time.RFC3339Nano), "DeviceId": "3f9c2a1b7d4e6f8091a2b3c4d5e6f708192a3b4c",
		"DeviceName": "ws-fin-0142.corp.example.com", "FileName": "procdump64.exe", "ProcessCommandLine": "procdump64.exe -accepteula -ma lsass.exe c:\\temp\\l.dmp",
		"SHA256": fmt.Sprintf("%064d", 7), "ReportId": 12345}
	b.ReportAllocs()
	for b.Loop() {
		if Fingerprint(h, cols, row) == "" {
			b.Fatal("empty")
		}
	}
}
