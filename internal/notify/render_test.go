package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

func TestGoldenAlert(t *testing.T) {
	n := loadNotification(t, "alert_notification.json")
	r, err := Render(n, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "alert.html", []byte(r.HTML))
	golden(t, "alert.txt", []byte(r.Text))
	msg, err := BuildMIME(`"mdeflow" <mdeflow@contoso.com>`, []string{"soc@contoso.com", "Duty Officer <duty@contoso.com>"}, r, MessageID(n.ID), fixedDate)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "alert.eml", msg)
	card, err := BuildTeamsPayload(n, r, "")
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, card, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden(t, "alert.teams.json", pretty.Bytes())
}

func TestRenderKinds(t *testing.T) {
	t.Parallel()
	base := loadNotification(t, "alert_notification.json")
	at := time.Date(2021, 1, 26, 21, 0, 0, 0, time.UTC)
	action := &mde.MachineAction{ID: "b2b1d2a4-0000-4000-8000-000000000001", Type: mde.ActionTypeIsolate, Status: mde.ActionSucceeded, Requestor: "mdeflow"}

	tests := []struct {
		name         string
		mutate       func(n *pipeline.Notification)
		subject      []string // substrings of the subject
		text, html   []string // substrings of the parts
		notText      []string
		wantApproval bool
	}{
		{
			name:    "alert",
			mutate:  func(n *pipeline.Notification) {},
			subject: []string{"[mdeflow] High alert: Suspicious PowerShell command line on cont-jonathan.contoso.com"},
			text:    []string{"Rule:", "notify-high-execution", "Policy version:", "2024-05-01.3", "https://security.microsoft.com/alerts/da637472900382838869_1364969609"},
			html:    []string{`href="https://security.microsoft.com/machines/111e6dd8c833c8a052ea231ec1b19adaf497b625"`, "Finance workstations"},
		},
		{
			name: "isolation succeeded",
			mutate: func(n *pipeline.Notification) {
				n.Kind = pipeline.NotifyIsolation
				n.Outcome = &pipeline.Outcome{Kind: pipeline.OutcomeSucceeded, ActionID: action.ID, Action: action, At: at}
			},
			subject: []string{"Isolation succeeded: cont-jonathan.contoso.com — Suspicious PowerShell"},
			text:    []string{"Final status:", "Succeeded", "Action type:", "Isolate", action.ID},
			html:    []string{"Final status", "Succeeded"},
		},
		{
			name: "isolation skipped by guard",
			mutate: func(n *pipeline.Notification) {
				n.Kind = pipeline.NotifyIsolation
				n.Outcome = &pipeline.Outcome{Kind: pipeline.OutcomeSkipped, Guard: "protected", Reason: "device group Tier0 is protected", At: at}
			},
			subject: []string{"Isolation skipped (protected)"},
			text:    []string{"Guard:", "protected", "device group Tier0 is protected"},
		},
		{
			name: "approval",
			mutate: func(n *pipeline.Notification) {
				n.Kind = pipeline.NotifyApproval
				n.Approval = &pipeline.Approval{RequestID: "iso-da637472900382838869_1364969609",
					ApproveURL: "https://func.example.net/api/approve?r=1&sig=x", DenyURL: "https://func.example.net/api/deny?r=1&sig=x",
					ExpiresAt: at.Add(time.Hour), OnExpiry: "deny"}
			},
			subject:      []string{"Approval needed: isolate cont-jonathan.contoso.com — Suspicious PowerShell command line"},
			text:         []string{"Approve: https://func.example.net/api/approve?r=1&sig=x", "Deny:    https://func.example.net/api/deny?r=1&sig=x", "2021-01-26T22:00:00Z", "Device group:", "Finance workstations", "Risk:", "Exposure:", "powershell.exe"},
			html:         []string{`href="https://func.example.net/api/approve?r=1&amp;sig=x"`, "Approve isolation", "Windows10"},
			wantApproval: true,
		},
		{
			name: "breaker",
			mutate: func(n *pipeline.Notification) {
				*n = pipeline.Notification{ID: "breaker-1", Kind: pipeline.NotifyBreaker, Text: "12 isolations in 1h exceeded the cap of 10.\nIsolations are paused until reset.", CreatedAt: at}
			},
			subject: []string{"[mdeflow] Isolation breaker tripped"},
			text:    []string{"    12 isolations in 1h exceeded the cap of 10.\n    Isolations are paused until reset."},
			html:    []string{"Isolations are paused until reset."},
		},
		{
			name: "hunt",
			mutate: func(n *pipeline.Notification) {
				*n = pipeline.Notification{ID: "hunt-1", Kind: pipeline.NotifyHunt, CreatedAt: at, Hunt: &pipeline.HuntDigest{
					HuntID: "h", Name: "Encoded PowerShell", Severity: "Medium", RunAt: at,
					Columns:   []string{"DeviceName", "ProcessCommandLine"},
					Rows:      []map[string]string{{"DeviceName": "pc1", "ProcessCommandLine": "powershell -enc AAA"}},
					TotalRows: 7, NewRows: 1}}
			},
			subject: []string{"[mdeflow] Hunt Encoded PowerShell: 1 new, 7 total rows"},
			text:    []string{"Showing 1 of 7 rows (1 new).", "DeviceName: pc1", "ProcessCommandLine: powershell -enc AAA"},
			html:    []string{"<th", "DeviceName", "powershell -enc AAA"},
		},
		{
			name: "unknown kind still renders",
			mutate: func(n *pipeline.Notification) {
				n.Kind = "somethingNew"
			},
			subject: []string{"Notification (somethingNew): Suspicious PowerShell command line"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := base
			tc.mutate(&n)
			r, err := Render(n, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.subject {
				if !strings.Contains(r.Subject, s) {
					t.Errorf("subject %q does not contain %q", r.Subject, s)
				}
			}
			for _, s := range tc.text {
				if !strings.Contains(r.Text, s) {
					t.Errorf("text does not contain %q:\n%s", s, r.Text)
				}
			}
			for _, s := range tc.html {
				if !strings.Contains(r.HTML, s) {
					t.Errorf("HTML does not contain %q", s)
				}
			}
			if got := r.Links.Approve != ""; got != tc.wantApproval {
				t.Errorf("approve link present = %v, want %v", got, tc.wantApproval)
			}
			if strings.ContainsAny(r.Subject, "\r\n") {
				t.Errorf("subject has a line break: %q", r.Subject)
			}
		})
	}
}

func TestPortalLinks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base, alertID, machineID string
		wantAlert, wantMachine         string
	}{
		{"commercial default", "", "da637472900382838869_1364969609", "111e6dd8c833c8a052ea231ec1b19adaf497b625",
			"https://security.microsoft.com/alerts/da637472900382838869_1364969609",
			"https://security.microsoft.com/machines/111e6dd8c833c8a052ea231ec1b19adaf497b625"},
		{"GCC High with trailing slash", "https://security.microsoft.us/", "da1_2", "111e6dd8c833c8a052ea231ec1b19adaf497b625",
			"https://security.microsoft.us/alerts/da1_2", "https://security.microsoft.us/machines/111e6dd8c833c8a052ea231ec1b19adaf497b625"},
		// A path-traversal alert id must not produce a link.
		{"traversal id", "", "../machines/x/isolate", "111e6dd8c833c8a052ea231ec1b19adaf497b625", "",
			"https://security.microsoft.com/machines/111e6dd8c833c8a052ea231ec1b19adaf497b625"},
		{"bad machine id", "", "da1_2", "not-a-machine/../../x", "https://security.microsoft.com/alerts/da1_2", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := pipeline.Notification{ID: "x", Kind: pipeline.NotifyAlert,
				Alert: &pipeline.AlertInfo{ID: tc.alertID, Title: "t"}, Machine: &pipeline.MachineInfo{ID: tc.machineID}}
			r, err := Render(n, RenderOptions{PortalBaseURL: tc.base})
			if err != nil {
				t.Fatal(err)
			}
			if r.Links.Alert != tc.wantAlert || r.Links.Machine != tc.wantMachine {
				t.Errorf("links = %+v, want alert %q machine %q", r.Links, tc.wantAlert, tc.wantMachine)
			}
			if (tc.wantAlert == "" || tc.wantMachine == "") && !strings.Contains(r.Text, "link withheld") {
				t.Errorf("text does not say a link was withheld:\n%s", r.Text)
			}
			for _, href := range hrefs(r.HTML) {
				if strings.Contains(href, "..") || (href != tc.wantAlert && href != tc.wantMachine) {
					t.Errorf("unexpected link %q in HTML", href)
				}
			}
		})
	}
}

func TestApprovalURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, link, base string
		ok               bool
	}{
		{"https", "https://f.example.net/api/approve?x=1", "", true},
		{"http without base", "http://f.example.net/api/approve", "", false},
		{"javascript", "javascript:alert(1)", "", false},
		{"data", "data:text/html,<script>", "", false},
		{"user info", "https://user:pw@f.example.net/a", "", false},
		{"CRLF", "https://f.example.net/a\r\nX: y", "", false},
		{"space", "https://f.example.net/a b", "", false},
		{"under local base", "http://localhost:7071/api/approve?x=1", "http://localhost:7071", true},
		{"outside base", "https://evil.example/api/approve", "http://localhost:7071", false},
		{"base prefix trick", "http://localhost:70710/api", "http://localhost:7071", false},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := approvalURL(tc.link, tc.base)
			if (err == nil) != tc.ok {
				t.Errorf("approvalURL(%q, %q) error = %v, want ok=%v", tc.link, tc.base, err, tc.ok)
			}
		})
	}
}

func TestApprovalWithBadLinksIsStillSent(t *testing.T) {
	t.Parallel()
	// Pins: an approval whose links fail validation must still reach the
	// approver (with a warning) instead of carrying a javascript: link.
	n := pipeline.Notification{ID: "a", Kind: pipeline.NotifyApproval,
		Approval: &pipeline.Approval{RequestID: "iso-1", ApproveURL: "javascript:alert(1)", DenyURL: "https://ok.example/deny"}}
	r, err := Render(n, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Links.Approve != "" || r.Links.Deny != "" {
		t.Errorf("links kept: %+v", r.Links)
	}
	if strings.Contains(r.HTML, "javascript:") || !strings.Contains(r.Text, "approval links withheld") {
		t.Errorf("bad link not withheld:\n%s", r.Text)
	}
}

func TestHuntTableIsCapped(t *testing.T) {
	t.Parallel()
	var rows []map[string]string
	for i := range 120 {
		rows = append(rows, map[string]string{"DeviceName": fmt.Sprintf("pc-%03d", i)})
	}
	n := pipeline.Notification{ID: "h", Kind: pipeline.NotifyHunt, Hunt: &pipeline.HuntDigest{Name: "big", Columns: []string{"DeviceName"}, Rows: rows, TotalRows: 5000, NewRows: 120}}
	r, err := Render(n, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(r.HTML, "pc-"); got != DefaultMaxTableRows {
		t.Errorf("HTML has %d rows, want %d", got, DefaultMaxTableRows)
	}
	if !strings.Contains(r.Text, "Showing 50 of 5000 rows (120 new).") || !strings.Contains(r.HTML, "Showing 50 of 5000 rows") {
		t.Errorf("total count missing:\n%s", r.Text)
	}
	if strings.Contains(r.Text, "pc-050") {
		t.Errorf("row 51 rendered")
	}
	r, err = Render(n, RenderOptions{MaxTableRows: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(r.Text, "DeviceName: pc-"); got != 5 {
		t.Errorf("MaxTableRows 5: %d rows", got)
	}
}

func TestRenderOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts RenderOptions
		ok   bool
	}{
		{"zero", RenderOptions{}, true},
		{"gcc high", RenderOptions{PortalBaseURL: "https://security.microsoft.us"}, true},
		{"http portal", RenderOptions{PortalBaseURL: "http://security.microsoft.com"}, false},
		{"portal with query", RenderOptions{PortalBaseURL: "https://security.microsoft.com/?tid=1"}, false},
		{"javascript portal", RenderOptions{PortalBaseURL: "javascript:alert(1)"}, false},
		{"local approval base", RenderOptions{ApprovalBaseURL: "http://localhost:7071"}, true},
		{"product with newline", RenderOptions{Product: "a\nb"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.opts.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := Render(pipeline.Notification{ID: "x"}, RenderOptions{PortalBaseURL: "ftp://x"}); err == nil || IsTransient(err) {
		t.Errorf("Render with an invalid portal base: err = %v, want a permanent error", err)
	}
}

func TestRenderPublicSampleAlerts(t *testing.T) {
	t.Parallel()
	// Acceptance corpus: the documented MDE alert example renders with
	// working links. Skipped when the shared data folder is absent.
	b := readPublicSample(t, "msdocs_mde_get-alerts_example2_response.json")
	var page struct {
		Value []mde.Alert `json:"value"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Value) == 0 {
		t.Fatal("no alerts in the sample")
	}
	for _, a := range page.Value {
		n := pipeline.Notification{ID: "n-" + a.ID, Kind: pipeline.NotifyAlert, Alert: pipeline.AlertInfoOf(&a),
			Machine: &pipeline.MachineInfo{ID: a.MachineID, ComputerDNSName: a.ComputerDNSName}}
		r, err := Render(n, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Links.Alert == "" || !strings.Contains(r.Subject, oneLine(a.Title, 40)[:10]) {
			t.Errorf("alert %s: links %+v subject %q", a.ID, r.Links, r.Subject)
		}
		if len(a.Evidence) > 0 && !strings.Contains(r.Text, "EVIDENCE") {
			t.Errorf("alert %s: evidence not rendered", a.ID)
		}
	}
}

// hrefs returns the href attribute values of an HTML document.
func hrefs(html string) []string {
	var out []string
	for _, part := range strings.Split(html, `href="`)[1:] {
		if i := strings.IndexByte(part, '"'); i >= 0 {
			out = append(out, part[:i])
		}
	}
	return out
}
