package hunt

import "strings"

// APIs a hunt can run through.
const (
	// APIMDE is POST https://api.securitycenter.microsoft.com/api/advancedqueries/run:
	// the endpoint (Device*) tables only, no timespan parameter.
	APIMDE = "mde"
	// APIGraph is POST https://graph.microsoft.com/v1.0/security/runHuntingQuery:
	// the whole Defender XDR schema, Timespan as ISO-8601.
	APIGraph = "graph"
	// APIXDR is POST https://api.security.microsoft.com/api/advancedhunting/run:
	// the whole Defender XDR schema (being retired in favour of Graph).
	APIXDR = "xdr"
)

// APIs lists the APIs Check knows, in the order they are suggested.
var APIs = []string{APIGraph, APIXDR, APIMDE}

// endpointTables are the Defender for Endpoint advanced hunting tables, the
// ones the MDE advancedqueries API serves. DeviceTvm* and
// DeviceBaselineCompliance* are matched by prefix.
var endpointTables = map[string]bool{
	"DeviceProcessEvents":       true,
	"DeviceNetworkEvents":       true,
	"DeviceFileEvents":          true,
	"DeviceRegistryEvents":      true,
	"DeviceLogonEvents":         true,
	"DeviceImageLoadEvents":     true,
	"DeviceEvents":              true,
	"DeviceInfo":                true,
	"DeviceNetworkInfo":         true,
	"DeviceFileCertificateInfo": true,
}

var endpointPrefixes = []string{"DeviceTvm", "DeviceBaselineCompliance"}

// xdrTables are the Defender XDR advanced hunting tables beyond the endpoint
// ones: reachable through Graph runHuntingQuery and the XDR API, not through
// the MDE advancedqueries API. ExposureGraph* is matched by prefix.
var xdrTables = map[string]bool{
	"AlertInfo":                    true,
	"AlertEvidence":                true,
	"BehaviorInfo":                 true,
	"BehaviorEntities":             true,
	"EmailEvents":                  true,
	"EmailAttachmentInfo":          true,
	"EmailUrlInfo":                 true,
	"EmailPostDeliveryEvents":      true,
	"UrlClickEvents":               true,
	"IdentityLogonEvents":          true,
	"IdentityQueryEvents":          true,
	"IdentityDirectoryEvents":      true,
	"IdentityEvents":               true,
	"IdentityInfo":                 true,
	"IdentityAccountInfo":          true,
	"CloudAppEvents":               true,
	"CloudAuditEvents":             true,
	"CloudProcessEvents":           true,
	"CloudStorageAggregatedEvents": true,
	"AADSignInEventsBeta":          true,
	"AADSpnSignInEventsBeta":       true,
	"EntraIdSignInEvents":          true,
	"EntraIdSpnSignInEvents":       true,
	"GraphApiAuditEvents":          true,
	"OAuthAppInfo":                 true,
	"MessageEvents":                true,
	"MessagePostDeliveryEvents":    true,
	"MessageUrlInfo":               true,
	"CampaignInfo":                 true,
	"DataSecurityEvents":           true,
	"DataSecurityBehaviors":        true,
	"AIAgentsInfo":                 true,
	"FileMaliciousContentInfo":     true,
	"DisruptionAndResponseEvents":  true,
}

var xdrPrefixes = []string{"ExposureGraph"}

// sentinelTables are well-known Microsoft Sentinel / Log Analytics tables
// that do not exist in Defender advanced hunting; used to explain why a
// table is refused (any table outside the allow-lists is refused).
var sentinelTables = map[string]bool{
	"SecurityEvent": true, "SigninLogs": true, "AADNonInteractiveUserSignInLogs": true,
	"AADServicePrincipalSignInLogs": true, "AADManagedIdentitySignInLogs": true,
	"AzureActivity": true, "CommonSecurityLog": true, "Syslog": true, "OfficeActivity": true,
	"SecurityAlert": true, "SecurityIncident": true, "AuditLogs": true, "Heartbeat": true,
	"Event": true, "WindowsEvent": true, "W3CIISLog": true, "AzureDiagnostics": true,
	"DnsEvents": true, "ThreatIntelligenceIndicator": true, "ThreatIntelIndicators": true,
	"BehaviorAnalytics": true, "Watchlist": true, "Anomalies": true, "Usage": true,
	"SecurityRecommendation": true, "AzureMetrics": true, "StorageBlobLogs": true,
	"AWSCloudTrail": true, "GCPAuditLogs": true, "ASimProcessEventLogs": true,
	"ASimNetworkSessionLogs": true, "ASimDnsActivityLogs": true, "ASimAuthenticationEventLogs": true,
	"Perf": true, "VMConnection": true, "SentinelHealth": true, "SentinelAudit": true,
	"UserPeerAnalytics": true, "UserAccessAnalytics": true, "LAQueryLogs": true,
	"IntuneAuditLogs": true, "IntuneDevices": true, "MicrosoftGraphActivityLogs": true,
	"AzureFirewallNetworkRule": true, "AzureFirewallApplicationRule": true,
}

// schemaAPIs returns the APIs that serve a table, or nil when the table is
// not in the Defender advanced hunting schema.
func schemaAPIs(table string) []string {
	if endpointTables[table] || hasPrefix(table, endpointPrefixes) {
		return []string{APIGraph, APIXDR, APIMDE}
	}
	if xdrTables[table] || hasPrefix(table, xdrPrefixes) {
		return []string{APIGraph, APIXDR}
	}
	return nil
}

// knownTable reports whether table is in the Defender hunting schema.
func knownTable(table string) bool { return schemaAPIs(table) != nil }

// hasTimestamp reports whether a table has the Timestamp column that
// ScopeQuery filters on (snapshot tables do not).
func hasTimestamp(table string) bool {
	if !knownTable(table) {
		return false
	}
	return !hasPrefix(table, []string{"DeviceTvm", "DeviceBaselineCompliance", "ExposureGraph"})
}

// tableCaseMatch returns the schema spelling of a table written with other
// case ("deviceprocessevents"), or "".
func tableCaseMatch(table string) string {
	for _, m := range []map[string]bool{endpointTables, xdrTables} {
		for name := range m {
			if strings.EqualFold(name, table) {
				return name
			}
		}
	}
	return ""
}

// wildcardAPIs returns the APIs that serve at least one table matching a
// union wildcard such as Device* or Email*.
func wildcardAPIs(pattern string) []string {
	prefix := strings.TrimSuffix(pattern, "*")
	for name := range endpointTables {
		if strings.HasPrefix(name, prefix) {
			return []string{APIGraph, APIXDR, APIMDE}
		}
	}
	for _, p := range endpointPrefixes {
		if strings.HasPrefix(p, prefix) || strings.HasPrefix(prefix, p) {
			return []string{APIGraph, APIXDR, APIMDE}
		}
	}
	for name := range xdrTables {
		if strings.HasPrefix(name, prefix) {
			return []string{APIGraph, APIXDR}
		}
	}
	for _, p := range xdrPrefixes {
		if strings.HasPrefix(p, prefix) || strings.HasPrefix(prefix, p) {
			return []string{APIGraph, APIXDR}
		}
	}
	return nil
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
