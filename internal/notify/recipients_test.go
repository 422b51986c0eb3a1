package notify

import (
	"context"
	"os"
	"strings"
	"testing"
)

// Pins: a notification's own recipients replace the channel's list, and an
// invalid one is dropped, never widened to the configured recipients.
func TestRecipientsReplaceConfiguredOnes(t *testing.T) {
	dir := t.TempDir()
	o, err := NewOutbox(OutboxConfig{Dir: dir, From: "mdeflow@example.com", To: []string{"soc@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	n := loadNotification(t, "alert_notification.json")
	r, err := Render(n, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.ID, n.Recipients = "n-approval-1", []string{"approver@example.com", "Evil <x@evil.example>\r\nBcc: y@evil.example"}
	if err := o.Send(context.Background(), n, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(o.Path(n.ID))
	if err != nil {
		t.Fatal(err)
	}
	head := string(b[:strings.Index(string(b), "\r\n\r\n")])
	if !strings.Contains(head, "approver@example.com") || strings.Contains(head, "soc@example.com") || strings.Contains(head, "evil") {
		t.Fatalf("headers:\n%s", head)
	}
}
