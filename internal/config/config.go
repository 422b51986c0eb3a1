// Package config reads mdeflow's settings from the environment (Azure
// Functions app settings), validates them all at once, and describes them so
// the README table and local.settings.json.example cannot drift.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Setting describes one app setting.
type Setting struct {
	Name    string
	Default string
	Meaning string
	// Secret settings are never printed.
	Secret bool
	// Example is written to local.settings.json.example (Default when empty).
	Example string
}

// Settings is every setting mdeflow reads, in README order.
var Settings = []Setting{
	{Name: "FUNCTIONS_WORKER_RUNTIME", Default: "custom", Meaning: "Functions runtime; must be `custom` for a custom handler."},
	{Name: "AzureWebJobsStorage", Meaning: "Storage account the Functions host needs for timer locks (and, by default, mdeflow's tables).", Secret: true, Example: "UseDevelopmentStorage=true"},
	{Name: "ServiceBusConnection", Meaning: "Service Bus connection string used by the trigger bindings and by mdeflow's sender. Prefer the identity-based form below.", Secret: true, Example: ""},
	{Name: "ServiceBusConnection__fullyQualifiedNamespace", Meaning: "Service Bus namespace for identity-based connections (`<ns>.servicebus.windows.net`); needs *Azure Service Bus Data Sender* and *Data Receiver* roles.", Example: "mdeflow-ns.servicebus.windows.net"},
	{Name: "MDEFLOW_QUEUE", Default: "servicebus", Meaning: "`servicebus` (Azure) or `local` (the project's local host; set by `demo` and `localhost`)."},
	{Name: "MDEFLOW_LOCAL_QUEUE_URL", Meaning: "Base URL of the local host's queue endpoint (local runs only)."},
	{Name: "MDEFLOW_LOCAL_MASTER_KEY", Meaning: "Key for the local host's admin endpoint (local runs only).", Secret: true},
	{Name: "MDEFLOW_CLOUD", Default: "commercial", Meaning: "Cloud profile: `commercial`, `gcc`, `gcchigh`, `dod` or `custom`."},
	{Name: "MDEFLOW_REGION", Meaning: "Optional regional MDE host for `commercial`: `us`, `eu`, `uk`, `au`, `swa`."},
	{Name: "MDEFLOW_MDE_BASE_URL", Meaning: "MDE API base URL; overrides the cloud profile (required for `custom`)."},
	{Name: "MDEFLOW_MDE_SCOPE", Meaning: "Token scope for the MDE API (default from the profile, `https://api.securitycenter.microsoft.com/.default`)."},
	{Name: "MDEFLOW_GRAPH_BASE_URL", Meaning: "Microsoft Graph base URL; overrides the cloud profile."},
	{Name: "MDEFLOW_GRAPH_SCOPE", Meaning: "Token scope for Microsoft Graph (default from the profile, `https://graph.microsoft.com/.default`)."},
	{Name: "MDEFLOW_AUTHORITY_HOST", Meaning: "Entra ID authority host; overrides the cloud profile."},
	{Name: "MDEFLOW_CREDENTIAL", Default: "default", Meaning: "Credential: `secret`, `certificate`, `managedidentity`, `workloadidentity` or `default` (DefaultAzureCredential)."},
	{Name: "AZURE_TENANT_ID", Meaning: "Entra tenant id (secret, certificate, workload identity).", Example: "00000000-0000-0000-0000-000000000000"},
	{Name: "AZURE_CLIENT_ID", Meaning: "App registration (or user-assigned identity) client id.", Example: "00000000-0000-0000-0000-000000000000"},
	{Name: "AZURE_CLIENT_SECRET", Meaning: "Client secret (credential `secret`). Prefer a certificate or a managed identity.", Secret: true},
	{Name: "AZURE_CLIENT_CERTIFICATE_PATH", Meaning: "PEM or PFX file with the certificate and key (credential `certificate`)."},
	{Name: "AZURE_CLIENT_CERTIFICATE_PASSWORD", Meaning: "Password of the PFX file, if any.", Secret: true},
	{Name: "MDEFLOW_EXTRA_CA_FILE", Meaning: "Extra CA certificate (PEM) to trust; only for the local simulator."},
	{Name: "MDEFLOW_ALERT_SOURCE", Default: "mde", Meaning: "Where OnNewAlert lists alerts: `mde` (`/api/alerts`) or `graph` (`security/alerts_v2`)."},
	{Name: "MDEFLOW_POLL_SCHEDULE", Default: "0 */1 * * * *", Meaning: "NCRONTAB schedule of OnNewAlert (6 fields). The function.json reads it, so it must be set in the app."},
	{Name: "MDEFLOW_POLL_OVERLAP", Default: "10m", Meaning: "Overlap window: each poll looks back this far before the checkpoint, so alerts that become visible late are not missed."},
	{Name: "MDEFLOW_POLL_LOOKBACK", Default: "1h", Meaning: "How far back the first poll looks when there is no checkpoint."},
	{Name: "MDEFLOW_POLICY_FILE", Meaning: "Response policy (YAML). Empty means the built-in default: High -> isolate (Full) and notify; else notify; `protected` tag never isolated."},
	{Name: "MDEFLOW_DRY_RUN", Default: "false", Meaning: "Global dry run: decide and notify \"would isolate\", call no action API."},
	{Name: "MDEFLOW_ISOLATION_CAP", Meaning: "Overrides the policy's isolation cap (built-in policy: 10 per hour): most isolations per window. Once tripped, nothing more is isolated until a reset."},
	{Name: "MDEFLOW_ISOLATION_CAP_WINDOW", Default: "1h", Meaning: "Rolling window of MDEFLOW_ISOLATION_CAP."},
	{Name: "MDEFLOW_APPROVAL_SECRET", Meaning: "HMAC key (>= 32 bytes) that signs approval links. Required when a rule asks for approval.", Secret: true},
	{Name: "MDEFLOW_PUBLIC_BASE_URL", Meaning: "Public base URL of the Function App, for approval links (`https://<app>.azurewebsites.net`)."},
	{Name: "MDEFLOW_ACTION_FOLLOW_INTERVAL", Default: "30s", Meaning: "How long to wait before checking a machine action again (a scheduled message, not a wait inside an invocation)."},
	{Name: "MDEFLOW_ACTION_FOLLOW_TIMEOUT", Default: "2h", Meaning: "Give up following a machine action after this long and report it as timed out."},
	{Name: "MDEFLOW_STORE", Default: "tables", Meaning: "State backend: `tables` (Azure Table Storage) or `embedded` (a local file)."},
	{Name: "MDEFLOW_STORE_PATH", Default: ".mdeflow/state.db", Meaning: "File of the embedded store."},
	{Name: "MDEFLOW_TABLES_CONNECTION", Meaning: "Table Storage connection string (defaults to AzureWebJobsStorage).", Secret: true},
	{Name: "MDEFLOW_TABLES_ENDPOINT", Meaning: "Table endpoint for identity-based access (`https://<acct>.table.core.windows.net`); needs *Storage Table Data Contributor*."},
	{Name: "MDEFLOW_TABLE_PREFIX", Default: "mdeflow", Meaning: "Prefix of mdeflow's table names."},
	{Name: "MDEFLOW_INSTANCES", Default: "1", Meaning: "Maximum Function App instances; each instance uses 1/N of the Defender API quotas."},
	{Name: "MDEFLOW_MDE_CALLS_PER_MINUTE", Default: "100", Meaning: "Client-side quota per API family (alerts, machines, actions), per minute, for the whole app."},
	{Name: "MDEFLOW_MDE_CALLS_PER_HOUR", Default: "1500", Meaning: "Client-side quota per API family, per hour, for the whole app."},
	{Name: "MDEFLOW_HUNT_CALLS_PER_MINUTE", Default: "45", Meaning: "Client-side quota of hunting queries per minute, for the whole app."},
	{Name: "MDEFLOW_HUNT_DIR", Default: "hunts", Meaning: "Folder of hunt files (Sentinel YAML), relative to the app root."},
	{Name: "MDEFLOW_HUNT_SCHEDULE", Default: "0 */5 * * * *", Meaning: "NCRONTAB schedule of ScheduledHunt; each hunt runs when due by its own frequency."},
	{Name: "MDEFLOW_HUNT_API", Default: "graph", Meaning: "`graph` (security/runHuntingQuery) or `mde` (api/advancedqueries/run, being retired)."},
	{Name: "MDEFLOW_NOTIFY_CHANNELS", Default: "outbox", Meaning: "Default channels: any of `outbox`, `smtp`, `graphmail`, `teams`, `webhook` (comma separated)."},
	{Name: "MDEFLOW_OUTBOX_DIR", Default: ".mdeflow/outbox", Meaning: "Folder where the outbox channel writes .eml files."},
	{Name: "MDEFLOW_MAIL_FROM", Default: "mdeflow@example.com", Meaning: "Sender address (and the Graph mailbox for `graphmail`)."},
	{Name: "MDEFLOW_MAIL_TO", Default: "soc@example.com", Meaning: "Recipients, comma separated."},
	{Name: "MDEFLOW_SMTP_HOST", Meaning: "SMTP server host (channel `smtp`)."},
	{Name: "MDEFLOW_SMTP_PORT", Default: "587", Meaning: "SMTP port (587 for STARTTLS, 465 for implicit TLS)."},
	{Name: "MDEFLOW_SMTP_SECURITY", Default: "starttls", Meaning: "`starttls` (required before authentication) or `tls` (implicit TLS, SMTPS)."},
	{Name: "MDEFLOW_SMTP_AUTH", Default: "plain", Meaning: "SMTP authentication: `plain` or `login` (Office 365)."},
	{Name: "MDEFLOW_SMTP_USERNAME", Meaning: "SMTP user."},
	{Name: "MDEFLOW_SMTP_PASSWORD", Meaning: "SMTP password.", Secret: true},
	{Name: "MDEFLOW_TEAMS_WEBHOOK_URL", Meaning: "Teams Workflows webhook URL (channel `teams`).", Secret: true},
	{Name: "MDEFLOW_WEBHOOK_URL", Meaning: "Generic JSON webhook URL (channel `webhook`)."},
	{Name: "MDEFLOW_WEBHOOK_SECRET", Meaning: "HMAC-SHA256 key for the webhook signature header.", Secret: true},
	{Name: "MDEFLOW_NOTIFY_GROUP_WINDOW", Default: "0s", Meaning: "Group notifications of one incident within this window (0 disables)."},
	{Name: "MDEFLOW_PORTAL_BASE_URL", Default: "https://security.microsoft.com", Meaning: "Defender portal base for links in notifications."},
	{Name: "MDEFLOW_INVOCATION_TIMEOUT", Default: "4m", Meaning: "Deadline of one invocation; keep it below host.json functionTimeout."},
	{Name: "MDEFLOW_LOG_LEVEL", Default: "info", Meaning: "`debug`, `info`, `warn` or `error`. Logs are JSON on stdout."},
}

// Getenv looks a setting up; an empty value means unset.
type Getenv func(string) string

// Env wraps a getenv with defaults from Settings.
type Env struct{ get Getenv }

// NewEnv returns an Env reading from get (os.Getenv when nil).
func NewEnv(get Getenv) Env {
	if get == nil {
		get = os.Getenv
	}
	return Env{get: get}
}

// Raw returns the value without defaults.
func (e Env) Raw(name string) string { return strings.TrimSpace(e.get(name)) }

// Str returns the value or the setting's default.
func (e Env) Str(name string) string {
	if v := e.Raw(name); v != "" {
		return v
	}
	for _, s := range Settings {
		if s.Name == name {
			return s.Default
		}
	}
	return ""
}

// shown is how a setting's value appears in a problem: a Secret setting's
// value never does (problems end up in the host log), and a URL's query,
// which often carries a signature or a token, is cut off.
func shown(name, v string) string {
	for _, s := range Settings {
		if s.Name == name && s.Secret {
			return "the value (hidden: secret setting)"
		}
	}
	if i := strings.IndexByte(v, '?'); i >= 0 {
		v = v[:i] + "?…"
	}
	return strconv.Quote(v)
}

// Problems collects validation errors, each naming its setting.
type Problems struct{ errs []error }

// Add records a problem with a setting.
func (p *Problems) Add(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("setting %s: %s", name, fmt.Sprintf(format, args...)))
}

// Err joins every problem, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Duration parses a duration setting.
func (e Env) Duration(p *Problems, name string) time.Duration {
	v := e.Str(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.Add(name, "%s is not a duration like 30s, 10m or 1h", shown(name, v))
		return 0
	}
	return d
}

// Int parses a non-negative integer setting.
func (e Env) Int(p *Problems, name string) int {
	v := e.Str(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.Add(name, "%s is not a non-negative whole number", shown(name, v))
		return 0
	}
	return n
}

// Bool parses a boolean setting.
func (e Env) Bool(p *Problems, name string) bool {
	v := e.Str(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.Add(name, "%s is not true or false", shown(name, v))
	}
	return b
}

// OneOf checks an enumerated setting.
func (e Env) OneOf(p *Problems, name string, allowed ...string) string {
	v := strings.ToLower(e.Str(name))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.Add(name, "%s is not one of %s", shown(name, v), strings.Join(allowed, ", "))
	return v
}

// URL checks an optional absolute URL setting (https unless allowHTTP).
func (e Env) URL(p *Problems, name string, allowHTTP bool) string {
	v := e.Str(name)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(allowHTTP && u.Scheme == "http")) {
		p.Add(name, "%s is not an absolute https URL", shown(name, v))
		return ""
	}
	return strings.TrimRight(v, "/")
}

// List splits a comma separated setting.
func (e Env) List(name string) []string {
	var out []string
	for _, f := range strings.Split(e.Str(name), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
