package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BEGIN receiver snippet (docs/notifiers/webhook.md shows this function verbatim)

// verifyMdeflowSignature checks the X-Mdeflow-Signature header of an mdeflow
// webhook: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>".
// Use the raw request body, before any JSON decoding.
func verifyMdeflowSignature(secret []byte, header string, body []byte, now time.Time) bool {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	// Reject old or future timestamps (replay protection).
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// END receiver snippet

// TestWebhookDocSnippetIsVerbatim pins that docs/notifiers/webhook.md shows
// exactly the verification code that TestWebhookSignedPayload runs.
func TestWebhookDocSnippetIsVerbatim(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("webhookdoc_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(src), "// BEGIN receiver snippet (docs/notifiers/webhook.md shows this function verbatim)\n\n")
	snippet, _, ok := strings.Cut(rest, "\n// END receiver snippet")
	if !ok {
		t.Fatal("snippet markers not found")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "notifiers", "webhook.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), strings.TrimSpace(snippet)) {
		t.Errorf("docs/notifiers/webhook.md does not contain the current verifyMdeflowSignature; copy it from webhookdoc_test.go")
	}
}

func TestWebhookDocSnippetAgreesWithSigner(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef")
	now := time.Unix(1714564800, 0)
	body := []byte(`{"schema":"mdeflow.notification/v1"}`)
	sig := SignWebhook(secret, now, body)
	tests := []struct {
		name   string
		header string
		body   []byte
		at     time.Time
		want   bool
	}{
		{"valid", sig, body, now, true},
		{"rotated secrets: two v1 values", sig + ",v1=" + strings.Repeat("0", 64), body, now, true},
		{"body changed", sig, []byte(`{"schema":"x"}`), now, false},
		{"too old", sig, body, now.Add(6 * time.Minute), false},
		{"no timestamp", strings.SplitN(sig, ",", 2)[1], body, now, false},
		{"garbage", "nonsense", body, now, false},
	}
	for _, tc := range tests {
		got := verifyMdeflowSignature(secret, tc.header, tc.body, tc.at)
		if got != tc.want {
			t.Errorf("%s: snippet = %v, want %v", tc.name, got, tc.want)
		}
		if lib := VerifyWebhookSignature(secret, tc.header, tc.body, tc.at, 5*time.Minute) == nil; lib != tc.want {
			t.Errorf("%s: VerifyWebhookSignature = %v, want %v", tc.name, lib, tc.want)
		}
	}
}
