package notify

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestOutboxWritesOnceAtomically(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox")
	ob, err := NewOutbox(OutboxConfig{Dir: dir, From: "mdeflow@contoso.com", To: []string{"soc@contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	n := loadNotification(t, "alert_notification.json")
	r, _ := Render(n, RenderOptions{})
	if err := ob.Send(context.Background(), n, r); err != nil {
		t.Fatal(err)
	}
	path := ob.Path(n.ID)
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := parseMIME(t, first)
	if p.Header.Get("Message-ID") != MessageID(n.ID) || p.Subject != r.Subject {
		t.Errorf("headers %v", p.Header)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	// A second send (redelivery) with different content must not rewrite.
	r2 := r
	r2.Subject = "changed"
	if err := ob.Send(context.Background(), n, r2); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	again, _ := os.ReadFile(path)
	if string(again) != string(first) || !st.ModTime().Equal(old) {
		t.Error("existing .eml was rewritten")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries (temporary files left?)", len(entries))
	}
}

func TestOutboxConcurrentSendsWriteOneFile(t *testing.T) {
	t.Parallel()
	ob, err := NewOutbox(OutboxConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	n := loadNotification(t, "alert_notification.json")
	r, _ := Render(n, RenderOptions{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := ob.Send(context.Background(), n, r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	entries, _ := os.ReadDir(filepath.Dir(ob.Path(n.ID)))
	if len(entries) != 1 {
		t.Errorf("%d entries", len(entries))
	}
}

func TestOutboxFileNamesStayInside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ob, err := NewOutbox(OutboxConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../../etc/passwd", `..\..\x`, "/abs", ".hidden", "a:b*c?", "", "ü"} {
		p := ob.Path(id)
		if filepath.Dir(p) != dir {
			t.Errorf("id %q maps to %q outside %q", id, p, dir)
		}
		if base := filepath.Base(p); base[0] == '.' {
			t.Errorf("id %q maps to hidden file %q", id, base)
		}
	}
	if ob.Path("a/b") == ob.Path("a=2Fb") {
		// "=" is itself escaped, so the mapping stays injective
		t.Error("file names collide")
	}
}
