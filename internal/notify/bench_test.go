package notify

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// BenchmarkRenderAndMIME measures rendering one alert notification (HTML
// and text, every field escaped) and building its e-mail.
func BenchmarkRenderAndMIME(b *testing.B) {
	raw, err := os.ReadFile("testdata/alert_notification.json")
	if err != nil {
		b.Fatal(err)
	}
	var n pipeline.Notification
	if err := json.Unmarshal(raw, &n); err != nil {
		b.Fatal(err)
	}
	date := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		r, err := Render(n, RenderOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := BuildMIME("mdeflow@example.com", []string{"soc@example.com"}, r, MessageID(n.ID), date); err != nil {
			b.Fatal(err)
		}
	}
}
