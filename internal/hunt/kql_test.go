package hunt

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{
			name:  "simple",
			query: "DeviceProcessEvents\n| where FileName =~ \"ntdsutil.exe\"",
			want:  []string{"DeviceProcessEvents"},
		},
		{
			name: "parenthesised column is not a table",
			query: `DeviceProcessEvents
| where (FileName has_any ("procdump.exe") and ProcessCommandLine has "lsass") or
// DeviceFileEvents in a comment
(ProcessCommandLine has "lsass.exe")`,
			want: []string{"DeviceProcessEvents"},
		},
		{
			name:  "join with options and parenthesised operand",
			query: "AlertInfo | join kind=inner (AlertEvidence | where EntityType == 'Machine') on AlertId",
			want:  []string{"AlertEvidence", "AlertInfo"},
		},
		{
			name:  "join with bare operand and hint",
			query: "DeviceLogonEvents | join hint.strategy=broadcast kind=leftouter DeviceInfo on DeviceId",
			want:  []string{"DeviceInfo", "DeviceLogonEvents"},
		},
		{
			name:  "lookup",
			query: "DeviceNetworkEvents | lookup kind=leftouter (DeviceInfo | project DeviceId, OSPlatform) on DeviceId",
			want:  []string{"DeviceInfo", "DeviceNetworkEvents"},
		},
		{
			name:  "union list and wildcard",
			query: "union withsource=T isfuzzy=true DeviceProcessEvents, (DeviceFileEvents | take 1), Email*",
			want:  []string{"DeviceFileEvents", "DeviceProcessEvents", "Email*"},
		},
		{
			name:  "union operator after pipe",
			query: "DeviceEvents | union DeviceRegistryEvents | count",
			want:  []string{"DeviceEvents", "DeviceRegistryEvents"},
		},
		{
			name: "let-bound names are not tables",
			query: `let lookback = 7d;
let suspicious = dynamic(["a.exe", "b.exe"]);
let procs = DeviceProcessEvents | where Timestamp > ago(lookback);
let devs = materialize(DeviceInfo | summarize arg_max(Timestamp, *) by DeviceId);
procs | join kind=inner devs on DeviceId`,
			want: []string{"DeviceInfo", "DeviceProcessEvents"},
		},
		{
			name:  "in subquery and toscalar",
			query: "DeviceNetworkEvents | where DeviceId in ((DeviceInfo | where OSPlatform == 'Windows10' | project DeviceId)) | where x > toscalar(DeviceEvents | count)",
			want:  []string{"DeviceEvents", "DeviceInfo", "DeviceNetworkEvents"},
		},
		{
			name:  "strings hide table names",
			query: "DeviceProcessEvents | where ProcessCommandLine has @'SecurityEvent | where' or ProcessCommandLine has \"Syslog (x)\" or FileName == ```SigninLogs```",
			want:  []string{"DeviceProcessEvents"},
		},
		{
			name:  "quoted identifier",
			query: "['DeviceProcessEvents'] | take 1",
			want:  []string{"DeviceProcessEvents"},
		},
		{
			name:  "function body",
			query: "let f = (n:string) { DeviceFileEvents | where FileName == n };\nf('x.exe')",
			want:  []string{"DeviceFileEvents"},
		},
		{
			name:  "sentinel",
			query: "SecurityEvent | where EventID == 4624 | join (SigninLogs | where TimeGenerated > ago(1d)) on $left.Account == $right.UserPrincipalName",
			want:  []string{"SecurityEvent", "SigninLogs"},
		},
		{
			name:  "datatable and print are not tables",
			query: "datatable(a:string)['x'] | union (print y = 1)",
			want:  []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Tables(tc.query)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Tables() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestScopeQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, query, want string
	}{
		{
			name:  "statement start",
			query: "DeviceProcessEvents\n| where FileName =~ 'x'",
			want:  "DeviceProcessEvents | where Timestamp > ago(1h)\n| where FileName =~ 'x'",
		},
		{
			name:  "bare join operand gets parentheses",
			query: "DeviceLogonEvents | join kind=inner DeviceInfo on DeviceId",
			want:  "DeviceLogonEvents | where Timestamp > ago(1h) | join kind=inner (DeviceInfo | where Timestamp > ago(1h)) on DeviceId",
		},
		{
			name:  "parenthesised operand",
			query: "AlertInfo | join (AlertEvidence | where x) on AlertId",
			want:  "AlertInfo | where Timestamp > ago(1h) | join (AlertEvidence | where Timestamp > ago(1h) | where x) on AlertId",
		},
		{
			name:  "let value and let reference",
			query: "let p = DeviceProcessEvents;\np | take 1",
			want:  "let p = DeviceProcessEvents | where Timestamp > ago(1h);\np | take 1",
		},
		{
			name:  "union list, wildcard untouched",
			query: "union DeviceFileEvents, Device*",
			want:  "union (DeviceFileEvents | where Timestamp > ago(1h)), Device*",
		},
		{
			name:  "snapshot table untouched",
			query: "DeviceTvmSoftwareInventory | join DeviceInfo on DeviceId",
			want:  "DeviceTvmSoftwareInventory | join (DeviceInfo | where Timestamp > ago(1h)) on DeviceId",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ScopeQuery(tc.query, time.Hour)
			if got != tc.want {
				t.Errorf("ScopeQuery():\n got %q\nwant %q", got, tc.want)
			}
			// The rewritten query reads the same tables.
			if a, b := Tables(tc.query), Tables(got); !reflect.DeepEqual(a, b) {
				t.Errorf("tables changed: %q -> %q", a, b)
			}
		})
	}
	if got := ScopeQuery("DeviceEvents", 0); got != "DeviceEvents" {
		t.Errorf("ScopeQuery with no period = %q", got)
	}
}

func TestLexKQLIgnoresCommentsAndStrings(t *testing.T) {
	t.Parallel()
	q := "T // comment with 'quote\n| where a == \"x\\\"y\" and b == @'c''d' and c == h'secret'"
	var idents []string
	for _, tok := range lexKQL(q) {
		if tok.kind == tokIdent {
			idents = append(idents, tok.text)
		}
	}
	want := "T where a and b and c"
	if got := strings.Join(idents, " "); got != want {
		t.Errorf("identifiers = %q, want %q", got, want)
	}
}
