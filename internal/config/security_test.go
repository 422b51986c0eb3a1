package config

import (
	"strings"
	"testing"
)

// A setting marked Secret is never printed: its value must not appear in
// the validation problems that serve writes to the host log (and
// Application Insights) and that `check` prints.
func TestSecretSettingValuesAreNotEchoedInProblems(t *testing.T) {
	const sig = "sig=Zm9vYmFyc2VjcmV0c2lnbmF0dXJlMTIz"
	tests := []struct {
		name, value string
	}{
		{"http instead of https", "http://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers&" + sig},
		{"pasted with quotes", `"https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?` + sig + `"`},
		{"no scheme", "prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?" + sig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := NewEnv(func(k string) string {
				if k == "MDEFLOW_TEAMS_WEBHOOK_URL" {
					return tc.value
				}
				return ""
			})
			p := &Problems{}
			if got := env.URL(p, "MDEFLOW_TEAMS_WEBHOOK_URL", false); got != "" {
				t.Fatalf("URL accepted %q", got)
			}
			err := p.Err()
			if err == nil {
				t.Fatal("want a problem for an invalid URL")
			}
			if strings.Contains(err.Error(), "Zm9vYmFyc2VjcmV0c2lnbmF0dXJlMTIz") {
				t.Fatalf("problem leaks the secret webhook URL: %v", err)
			}
			if !strings.Contains(err.Error(), "MDEFLOW_TEAMS_WEBHOOK_URL") {
				t.Fatalf("problem does not name the setting: %v", err)
			}
		})
	}
}
