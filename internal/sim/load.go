package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

const maxAlertsFile = 64 << 20

// LoadAlertsFile seeds a tenant from a file of alerts:
//
//   - the MDE list-alerts shape {"value":[...]} or a bare array of MDE
//     alerts; machines are synthesized from machineId, computerDnsName and
//     rbacGroupName;
//   - the Graph alerts_v2 list shape (recognized by "createdDateTime" or an
//     @odata.type of microsoft.graph.security.alert): the raw Graph alerts
//     are kept for the Graph endpoint and MDE alerts are derived (machine id
//     from deviceEvidence.mdeDeviceId, enums mapped back to MDE spelling),
//     with machines built from the deviceEvidence.
//
// The tenant id is the alerts' aadTenantId/tenantId when it is a GUID. An
// AlertInfo hunting table is derived from the alerts.
func LoadAlertsFile(path string) (*Tenant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading alerts file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAlertsFile+1))
	if err != nil {
		return nil, fmt.Errorf("loading alerts file %s: %w", path, err)
	}
	if len(b) > maxAlertsFile {
		return nil, fmt.Errorf("loading alerts file %s: larger than %d bytes", path, maxAlertsFile)
	}
	t, err := ParseAlerts(b)
	if err != nil {
		return nil, fmt.Errorf("loading alerts file %s: %w", path, err)
	}
	return t, nil
}

// ParseAlerts is LoadAlertsFile on bytes.
func ParseAlerts(b []byte) (*Tenant, error) {
	b = bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))
	var items []json.RawMessage
	switch {
	case len(b) > 0 && b[0] == '[':
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, fmt.Errorf("parsing alerts array: %w", err)
		}
	case len(b) > 0 && b[0] == '{':
		var env struct {
			Value *[]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			return nil, fmt.Errorf("parsing alerts list: %w", err)
		}
		if env.Value == nil {
			return nil, fmt.Errorf("parsing alerts list: no \"value\" array")
		}
		items = *env.Value
	default:
		return nil, fmt.Errorf("parsing alerts: expected a JSON array or an object with \"value\"")
	}
	if len(items) == 0 {
		return &Tenant{ID: DefaultTenantID, HuntRows: map[string][]map[string]any{}}, nil
	}
	if isGraphAlert(items[0]) {
		return parseGraphAlerts(items)
	}
	return parseMDEAlerts(items)
}

func isGraphAlert(raw json.RawMessage) bool {
	var head map[string]json.RawMessage
	if json.Unmarshal(raw, &head) != nil {
		return false
	}
	if _, ok := head["createdDateTime"]; ok {
		return true
	}
	var typ string
	_ = json.Unmarshal(head["@odata.type"], &typ)
	return strings.Contains(typ, "microsoft.graph.security.alert")
}

func parseMDEAlerts(items []json.RawMessage) (*Tenant, error) {
	t := &Tenant{HuntRows: map[string][]map[string]any{}}
	machines := map[string]*mde.Machine{}
	var order []string
	for i, raw := range items {
		var a mde.Alert
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("parsing alert %d: %w", i, err)
		}
		if err := mde.ValidateAlertID(a.ID); err != nil {
			return nil, fmt.Errorf("parsing alert %d: %w", i, err)
		}
		if a.MachineID != "" {
			if err := mde.ValidateMachineID(a.MachineID); err != nil {
				return nil, fmt.Errorf("parsing alert %s: %w", a.ID, err)
			}
			k := strings.ToLower(a.MachineID)
			m, ok := machines[k]
			if !ok {
				mm := machineFromAlert(a)
				m = &mm
				machines[k] = m
				order = append(order, k)
			}
			widenSeen(m, a.AlertCreationTime)
		}
		if t.ID == "" && guidRe.MatchString(a.AadTenantID) {
			t.ID = a.AadTenantID
		}
		t.Alerts = append(t.Alerts, a)
	}
	for _, k := range order {
		t.Machines = append(t.Machines, *machines[k])
	}
	if t.ID == "" {
		t.ID = DefaultTenantID
	}
	t.HuntRows["AlertInfo"] = alertInfoRows(t.Alerts)
	return t, nil
}

func widenSeen(m *mde.Machine, at *time.Time) {
	if at == nil {
		return
	}
	if m.FirstSeen == nil || at.Before(*m.FirstSeen) {
		v := *at
		m.FirstSeen = &v
	}
	if m.LastSeen == nil || at.After(*m.LastSeen) {
		v := *at
		m.LastSeen = &v
	}
}

type graphFile struct {
	SHA1     *string `json:"sha1"`
	SHA256   *string `json:"sha256"`
	FileName *string `json:"fileName"`
	FilePath *string `json:"filePath"`
}

type graphUser struct {
	AccountName       *string `json:"accountName"`
	DomainName        *string `json:"domainName"`
	UserSid           *string `json:"userSid"`
	AzureAdUserID     *string `json:"azureAdUserId"`
	UserPrincipalName *string `json:"userPrincipalName"`
}

type graphEvidenceIn struct {
	Type            string     `json:"@odata.type"`
	CreatedDateTime *time.Time `json:"createdDateTime"`
	DetectionStatus *string    `json:"detectionStatus"`
	MdeDeviceID     string     `json:"mdeDeviceId"`
	// deviceEvidence
	DeviceDNSName     string          `json:"deviceDnsName"`
	AzureAdDeviceID   *string         `json:"azureAdDeviceId"`
	FirstSeenDateTime *time.Time      `json:"firstSeenDateTime"`
	OSPlatform        string          `json:"osPlatform"`
	OSBuild           *int64          `json:"osBuild"`
	Version           string          `json:"version"`
	HealthStatus      string          `json:"healthStatus"`
	RiskScore         string          `json:"riskScore"`
	RbacGroupID       mde.FlexString  `json:"rbacGroupId"`
	RbacGroupName     *string         `json:"rbacGroupName"`
	OnboardingStatus  string          `json:"onboardingStatus"`
	IPInterfaces      []string        `json:"ipInterfaces"`
	Tags              []string        `json:"tags"`
	LoggedOnUsers     json.RawMessage `json:"loggedOnUsers"`
	// file / process
	FileDetails                   *graphFile `json:"fileDetails"`
	ImageFile                     *graphFile `json:"imageFile"`
	ParentProcessImageFile        *graphFile `json:"parentProcessImageFile"`
	ProcessID                     *int64     `json:"processId"`
	ParentProcessID               *int64     `json:"parentProcessId"`
	ProcessCommandLine            *string    `json:"processCommandLine"`
	ProcessCreationDateTime       *time.Time `json:"processCreationDateTime"`
	ParentProcessCreationDateTime *time.Time `json:"parentProcessCreationDateTime"`
	UserAccount                   *graphUser `json:"userAccount"`
	// ip / url / registry
	IPAddress         *string `json:"ipAddress"`
	URL               *string `json:"url"`
	RegistryKey       *string `json:"registryKey"`
	RegistryHive      *string `json:"registryHive"`
	RegistryValue     *string `json:"registryValue"`
	RegistryValueName *string `json:"registryValueName"`
	RegistryValueType *string `json:"registryValueType"`
}

type graphAlertIn struct {
	ID                    string          `json:"id"`
	IncidentID            json.RawMessage `json:"incidentId"`
	Status                string          `json:"status"`
	Severity              string          `json:"severity"`
	Classification        string          `json:"classification"`
	Determination         string          `json:"determination"`
	DetectionSource       string          `json:"detectionSource"`
	DetectorID            string          `json:"detectorId"`
	TenantID              string          `json:"tenantId"`
	Title                 string          `json:"title"`
	Description           string          `json:"description"`
	Category              string          `json:"category"`
	AssignedTo            *string         `json:"assignedTo"`
	ThreatDisplayName     *string         `json:"threatDisplayName"`
	ThreatFamilyName      *string         `json:"threatFamilyName"`
	MitreTechniques       []string        `json:"mitreTechniques"`
	CreatedDateTime       *time.Time      `json:"createdDateTime"`
	LastUpdateDateTime    *time.Time      `json:"lastUpdateDateTime"`
	ResolvedDateTime      *time.Time      `json:"resolvedDateTime"`
	FirstActivityDateTime *time.Time      `json:"firstActivityDateTime"`
	LastActivityDateTime  *time.Time      `json:"lastActivityDateTime"`
	Comments              []struct {
		Comment              string     `json:"comment"`
		CreatedByDisplayName string     `json:"createdByDisplayName"`
		CreatedDateTime      *time.Time `json:"createdDateTime"`
	} `json:"comments"`
	Evidence []graphEvidenceIn `json:"evidence"`
}

func parseGraphAlerts(items []json.RawMessage) (*Tenant, error) {
	t := &Tenant{HuntRows: map[string][]map[string]any{}}
	machines := map[string]*mde.Machine{}
	var order []string
	for i, raw := range items {
		var g graphAlertIn
		if err := json.Unmarshal(raw, &g); err != nil {
			return nil, fmt.Errorf("parsing graph alert %d: %w", i, err)
		}
		if err := mde.ValidateAlertID(g.ID); err != nil {
			return nil, fmt.Errorf("parsing graph alert %d: %w", i, err)
		}
		a, m := graphToMDE(g)
		if a.MachineID != "" {
			if err := mde.ValidateMachineID(a.MachineID); err != nil {
				return nil, fmt.Errorf("parsing graph alert %s: %w", g.ID, err)
			}
			k := strings.ToLower(a.MachineID)
			if _, ok := machines[k]; !ok {
				if m == nil {
					mm := machineFromAlert(a)
					m = &mm
				}
				machines[k] = m
				order = append(order, k)
			}
			widenSeen(machines[k], a.AlertCreationTime)
		}
		if t.ID == "" && guidRe.MatchString(g.TenantID) {
			t.ID = g.TenantID
		}
		t.Alerts = append(t.Alerts, a)
		t.GraphAlerts = append(t.GraphAlerts, append(json.RawMessage(nil), raw...))
	}
	for _, k := range order {
		t.Machines = append(t.Machines, *machines[k])
	}
	if t.ID == "" {
		t.ID = DefaultTenantID
	}
	t.HuntRows["AlertInfo"] = alertInfoRows(t.Alerts)
	return t, nil
}

func mdeEnum(g string) *string {
	if g == "" || g == "unknown" || g == "unknownFutureValue" {
		return nil
	}
	v := upperFirst(g)
	return &v
}

// graphToMDE derives the MDE alert (and the machine, from deviceEvidence)
// from an alerts_v2 entity.
func graphToMDE(g graphAlertIn) (mde.Alert, *mde.Machine) {
	a := mde.Alert{
		ID:                g.ID,
		AssignedTo:        g.AssignedTo,
		Severity:          mde.SeverityUnSpecified,
		Status:            "Unknown",
		Classification:    mdeEnum(g.Classification),
		Determination:     mdeEnum(g.Determination),
		DetectionSource:   mdeDetectionSource(g.DetectionSource),
		DetectorID:        g.DetectorID,
		Category:          g.Category,
		ThreatFamilyName:  g.ThreatFamilyName,
		ThreatName:        g.ThreatDisplayName,
		Title:             g.Title,
		Description:       g.Description,
		AlertCreationTime: g.CreatedDateTime,
		FirstEventTime:    g.FirstActivityDateTime,
		LastEventTime:     g.LastActivityDateTime,
		LastUpdateTime:    g.LastUpdateDateTime,
		ResolvedTime:      g.ResolvedDateTime,
		AadTenantID:       g.TenantID,
		MitreTechniques:   g.MitreTechniques,
		Comments:          []mde.AlertComment{},
		Evidence:          []mde.Evidence{},
	}
	if sev := mdeEnum(g.Severity); sev != nil {
		a.Severity = *sev
	}
	if st := mdeEnum(g.Status); st != nil {
		a.Status = *st
	}
	var inc string
	if json.Unmarshal(g.IncidentID, &inc) != nil {
		inc = string(g.IncidentID)
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(inc), 10, 64); err == nil {
		a.IncidentID = &n
	}
	for _, c := range g.Comments {
		a.Comments = append(a.Comments, mde.AlertComment{Comment: c.Comment, CreatedBy: c.CreatedByDisplayName, CreatedTime: c.CreatedDateTime})
	}
	var machine *mde.Machine
	for _, ev := range g.Evidence {
		if a.MachineID == "" && ev.MdeDeviceID != "" {
			a.MachineID = ev.MdeDeviceID
		}
		switch {
		case strings.HasSuffix(ev.Type, ".deviceEvidence"):
			if ev.MdeDeviceID == "" {
				continue
			}
			a.MachineID = ev.MdeDeviceID
			a.ComputerDNSName = ev.DeviceDNSName
			a.RbacGroupName = ev.RbacGroupName
			if machine == nil {
				machine = machineFromDeviceEvidence(ev)
			}
		case strings.HasSuffix(ev.Type, ".fileEvidence"):
			e := mde.Evidence{EntityType: "File", EvidenceCreationTime: ev.CreatedDateTime, DetectionStatus: mdeEnum(deref0(ev.DetectionStatus))}
			if f := ev.FileDetails; f != nil {
				e.FileName, e.FilePath, e.Sha1, e.Sha256 = f.FileName, f.FilePath, f.SHA1, f.SHA256
			}
			a.Evidence = append(a.Evidence, e)
		case strings.HasSuffix(ev.Type, ".processEvidence"):
			e := mde.Evidence{EntityType: "Process", EvidenceCreationTime: ev.CreatedDateTime, DetectionStatus: mdeEnum(deref0(ev.DetectionStatus)),
				ProcessID: ev.ProcessID, ParentProcessID: ev.ParentProcessID, ProcessCommandLine: ev.ProcessCommandLine,
				ProcessCreationTime: ev.ProcessCreationDateTime, ParentProcessCreationTime: ev.ParentProcessCreationDateTime}
			if f := ev.ImageFile; f != nil {
				e.FileName, e.FilePath, e.Sha1, e.Sha256 = f.FileName, f.FilePath, f.SHA1, f.SHA256
			}
			if f := ev.ParentProcessImageFile; f != nil {
				e.ParentProcessFileName, e.ParentProcessFilePath = f.FileName, f.FilePath
			}
			if u := ev.UserAccount; u != nil {
				e.AccountName, e.DomainName, e.UserSid, e.AadUserID, e.UserPrincipalName = u.AccountName, u.DomainName, u.UserSid, u.AzureAdUserID, u.UserPrincipalName
			}
			a.Evidence = append(a.Evidence, e)
		case strings.HasSuffix(ev.Type, ".userEvidence"):
			e := mde.Evidence{EntityType: "User", EvidenceCreationTime: ev.CreatedDateTime}
			if u := ev.UserAccount; u != nil {
				e.AccountName, e.DomainName, e.UserSid, e.AadUserID, e.UserPrincipalName = u.AccountName, u.DomainName, u.UserSid, u.AzureAdUserID, u.UserPrincipalName
			}
			a.Evidence = append(a.Evidence, e)
		case strings.HasSuffix(ev.Type, ".ipEvidence"):
			a.Evidence = append(a.Evidence, mde.Evidence{EntityType: "Ip", EvidenceCreationTime: ev.CreatedDateTime, IPAddress: ev.IPAddress})
		case strings.HasSuffix(ev.Type, ".urlEvidence"):
			a.Evidence = append(a.Evidence, mde.Evidence{EntityType: "Url", EvidenceCreationTime: ev.CreatedDateTime, URL: ev.URL})
		case strings.HasSuffix(ev.Type, ".registryKeyEvidence"), strings.HasSuffix(ev.Type, ".registryValueEvidence"):
			a.Evidence = append(a.Evidence, mde.Evidence{EntityType: "Registry", EvidenceCreationTime: ev.CreatedDateTime,
				RegistryKey: ev.RegistryKey, RegistryHive: ev.RegistryHive, RegistryValue: ev.RegistryValue,
				RegistryValueName: ev.RegistryValueName, RegistryValueType: ev.RegistryValueType})
		}
	}
	if machine != nil && a.ComputerDNSName == "" {
		a.ComputerDNSName = machine.ComputerDNSName
	}
	return a, machine
}

func deref0(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func machineFromDeviceEvidence(ev graphEvidenceIn) *mde.Machine {
	m := &mde.Machine{
		ID:               ev.MdeDeviceID,
		ComputerDNSName:  ev.DeviceDNSName,
		FirstSeen:        ev.FirstSeenDateTime,
		OSPlatform:       ev.OSPlatform,
		OSBuild:          ev.OSBuild,
		Version:          ev.Version,
		HealthStatus:     upperFirst(ev.HealthStatus),
		OnboardingStatus: upperFirst(ev.OnboardingStatus),
		RbacGroupID:      ev.RbacGroupID,
		RbacGroupName:    ev.RbacGroupName,
		RiskScore:        mdeEnum(ev.RiskScore),
		AadDeviceID:      ev.AzureAdDeviceID,
		IsAadJoined:      ev.AzureAdDeviceID != nil,
		MachineTags:      append([]string{}, ev.Tags...),
	}
	if m.OSPlatform == "" {
		m.OSPlatform = "Windows10"
	}
	if m.HealthStatus == "" {
		m.HealthStatus = "Unknown"
	}
	if m.RiskScore == nil {
		m.RiskScore = ptr("None")
	}
	ips := append([]string{}, ev.IPInterfaces...)
	sort.Strings(ips)
	for _, ip := range ips {
		m.IPAddresses = append(m.IPAddresses, mde.IPAddress{IPAddress: ip, Type: "Ethernet", OperationalStatus: "Up"})
	}
	if len(ips) > 0 {
		m.LastIPAddress = ips[0]
	}
	return m
}
