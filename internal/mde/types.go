// Package mde holds the Microsoft Defender for Endpoint entities, the id rules,
// and the API client. The entity types decode what the real service sends,
// tolerating the documented contradictions (see defender-api.md §10).
package mde

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Severity values of an MDE alert (alerts.md).
const (
	SeverityUnSpecified   = "UnSpecified"
	SeverityInformational = "Informational"
	SeverityLow           = "Low"
	SeverityMedium        = "Medium"
	SeverityHigh          = "High"
)

// Machine action statuses (machineaction.md).
const (
	ActionPending    = "Pending"
	ActionInProgress = "InProgress"
	ActionSucceeded  = "Succeeded"
	ActionFailed     = "Failed"
	ActionTimeOut    = "TimeOut"
	ActionCancelled  = "Cancelled"
)

// Machine action types.
const (
	ActionTypeIsolate                     = "Isolate"
	ActionTypeUnisolate                   = "Unisolate"
	ActionTypeRestrictCodeExecution       = "RestrictCodeExecution"
	ActionTypeUnrestrictCodeExecution     = "UnrestrictCodeExecution"
	ActionTypeRunAntiVirusScan            = "RunAntiVirusScan"
	ActionTypeCollectInvestigationPackage = "CollectInvestigationPackage"
)

// Isolation types accepted by POST /machines/{id}/isolate.
const (
	IsolationFull      = "Full"
	IsolationSelective = "Selective"
)

// IsFinalActionStatus reports whether a machine action status is terminal.
func IsFinalActionStatus(s string) bool {
	switch s {
	case ActionSucceeded, ActionFailed, ActionTimeOut, ActionCancelled:
		return true
	}
	return false
}

// Alert is the MDE alert entity (GET /api/alerts, alerts.md).
type Alert struct {
	ID                 string          `json:"id"`
	IncidentID         *int64          `json:"incidentId"`
	InvestigationID    *int64          `json:"investigationId"`
	AssignedTo         *string         `json:"assignedTo"`
	Severity           string          `json:"severity"`
	Status             string          `json:"status"`
	Classification     *string         `json:"classification"`
	Determination      *string         `json:"determination"`
	InvestigationState *string         `json:"investigationState"`
	DetectionSource    string          `json:"detectionSource"`
	DetectorID         string          `json:"detectorId,omitempty"`
	Category           string          `json:"category"`
	ThreatFamilyName   *string         `json:"threatFamilyName"`
	ThreatName         *string         `json:"threatName"`
	Title              string          `json:"title"`
	Description        string          `json:"description"`
	AlertCreationTime  *time.Time      `json:"alertCreationTime"`
	FirstEventTime     *time.Time      `json:"firstEventTime"`
	LastEventTime      *time.Time      `json:"lastEventTime"`
	LastUpdateTime     *time.Time      `json:"lastUpdateTime"`
	ResolvedTime       *time.Time      `json:"resolvedTime"`
	MachineID          string          `json:"machineId"`
	ComputerDNSName    string          `json:"computerDnsName"`
	RbacGroupName      *string         `json:"rbacGroupName"`
	AadTenantID        string          `json:"aadTenantId,omitempty"`
	MitreTechniques    []string        `json:"mitreTechniques"`
	RelatedUser        *RelatedUser    `json:"relatedUser"`
	Comments           []AlertComment  `json:"comments"`
	Evidence           []Evidence      `json:"evidence"`
	LoggedOnUsers      []LoggedOnUser  `json:"loggedOnUsers,omitempty"`
	Domains            json.RawMessage `json:"domains,omitempty"`
}

// RelatedUser is the alert's relatedUser object.
type RelatedUser struct {
	UserName   string `json:"userName"`
	DomainName string `json:"domainName"`
}

// LoggedOnUser is an entry of the (undocumented) loggedOnUsers array.
type LoggedOnUser struct {
	AccountName string `json:"accountName"`
	DomainName  string `json:"domainName"`
}

// AlertComment is an entry of the alert's comments array.
type AlertComment struct {
	Comment     string     `json:"comment"`
	CreatedBy   string     `json:"createdBy"`
	CreatedTime *time.Time `json:"createdTime"`
}

// Evidence is one item of an alert's evidence ($expand=evidence). Fields that
// do not apply to the entity type are null.
type Evidence struct {
	EntityType                string     `json:"entityType"`
	EvidenceCreationTime      *time.Time `json:"evidenceCreationTime"`
	Sha1                      *string    `json:"sha1"`
	Sha256                    *string    `json:"sha256"`
	FileName                  *string    `json:"fileName"`
	FilePath                  *string    `json:"filePath"`
	ProcessID                 *int64     `json:"processId"`
	ProcessCommandLine        *string    `json:"processCommandLine"`
	ProcessCreationTime       *time.Time `json:"processCreationTime"`
	ParentProcessID           *int64     `json:"parentProcessId"`
	ParentProcessCreationTime *time.Time `json:"parentProcessCreationTime"`
	ParentProcessFileName     *string    `json:"parentProcessFileName"`
	ParentProcessFilePath     *string    `json:"parentProcessFilePath"`
	IPAddress                 *string    `json:"ipAddress"`
	URL                       *string    `json:"url"`
	RegistryKey               *string    `json:"registryKey"`
	RegistryHive              *string    `json:"registryHive"`
	RegistryValueType         *string    `json:"registryValueType"`
	RegistryValue             *string    `json:"registryValue"`
	RegistryValueName         *string    `json:"registryValueName,omitempty"`
	AccountName               *string    `json:"accountName"`
	DomainName                *string    `json:"domainName"`
	UserSid                   *string    `json:"userSid"`
	AadUserID                 *string    `json:"aadUserId"`
	UserPrincipalName         *string    `json:"userPrincipalName"`
	DetectionStatus           *string    `json:"detectionStatus"`
}

// Machine is the MDE machine entity (machine.md).
type Machine struct {
	ID                    string      `json:"id"`
	ComputerDNSName       string      `json:"computerDnsName"`
	FirstSeen             *time.Time  `json:"firstSeen"`
	LastSeen              *time.Time  `json:"lastSeen"`
	OSPlatform            string      `json:"osPlatform"`
	OSVersion             *string     `json:"osVersion"`
	OSProcessor           string      `json:"osProcessor,omitempty"`
	OSArchitecture        string      `json:"osArchitecture,omitempty"`
	Version               string      `json:"version,omitempty"`
	OSBuild               *int64      `json:"osBuild"`
	LastIPAddress         string      `json:"lastIpAddress,omitempty"`
	LastExternalIPAddress string      `json:"lastExternalIpAddress,omitempty"`
	AgentVersion          string      `json:"agentVersion,omitempty"`
	HealthStatus          string      `json:"healthStatus"`
	OnboardingStatus      string      `json:"onboardingStatus"`
	DeviceValue           *string     `json:"deviceValue"`
	RbacGroupID           FlexString  `json:"rbacGroupId"`
	RbacGroupName         *string     `json:"rbacGroupName"`
	RiskScore             *string     `json:"riskScore"`
	ExposureLevel         *string     `json:"exposureLevel"`
	IsAadJoined           bool        `json:"isAadJoined"`
	AadDeviceID           *string     `json:"aadDeviceId"`
	MachineTags           []string    `json:"machineTags"`
	IPAddresses           []IPAddress `json:"ipAddresses,omitempty"`
}

// UnmarshalJSON accepts the documented spelling "onboardingstatus" too.
func (m *Machine) UnmarshalJSON(b []byte) error {
	type plain Machine
	var aux struct {
		plain
		Lower *string `json:"onboardingstatus"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*m = Machine(aux.plain)
	if m.OnboardingStatus == "" && aux.Lower != nil {
		m.OnboardingStatus = *aux.Lower
	}
	return nil
}

// IPAddress is an entry of the machine's ipAddresses array.
type IPAddress struct {
	IPAddress         string  `json:"ipAddress"`
	MacAddress        *string `json:"macAddress"`
	Type              string  `json:"type,omitempty"`
	OperationalStatus string  `json:"operationalStatus,omitempty"`
}

// MachineAction is the MDE machine action entity (machineaction.md).
type MachineAction struct {
	ID                      string     `json:"id"`
	Type                    string     `json:"type"`
	Scope                   *string    `json:"scope"`
	Title                   *string    `json:"title"`
	Requestor               string     `json:"requestor"`
	RequestorComment        string     `json:"requestorComment"`
	Status                  string     `json:"status"`
	MachineID               string     `json:"machineId"`
	ComputerDNSName         string     `json:"computerDnsName"`
	CreationDateTimeUtc     *time.Time `json:"creationDateTimeUtc"`
	LastUpdateDateTimeUtc   *time.Time `json:"lastUpdateDateTimeUtc"`
	CancellationRequestor   *string    `json:"cancellationRequestor"`
	CancellationComment     *string    `json:"cancellationComment"`
	CancellationDateTimeUtc *time.Time `json:"cancellationDateTimeUtc"`
	ErrorHResult            int64      `json:"errorHResult"`
	ExternalID              *string    `json:"externalId"`
	RequestSource           string     `json:"requestSource,omitempty"`
}

// UnmarshalJSON accepts "lastUpdateTimeUtc" (collection examples) as well as
// "lastUpdateDateTimeUtc" (entity page), and "externalID".
func (a *MachineAction) UnmarshalJSON(b []byte) error {
	type plain MachineAction
	var aux struct {
		plain
		LastUpdateTimeUtc *time.Time `json:"lastUpdateTimeUtc"`
		ExternalIDUpper   *string    `json:"externalID"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*a = MachineAction(aux.plain)
	if a.LastUpdateDateTimeUtc == nil {
		a.LastUpdateDateTimeUtc = aux.LastUpdateTimeUtc
	}
	if a.ExternalID == nil {
		a.ExternalID = aux.ExternalIDUpper
	}
	return nil
}

// FlexString decodes a JSON string or number (rbacGroupId is typed String in
// the docs table and a number in every example) and encodes as a number when
// it is numeric.
type FlexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*f = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = FlexString(n.String())
	return nil
}

// MarshalJSON implements json.Marshaler.
func (f FlexString) MarshalJSON() ([]byte, error) {
	if f == "" {
		return []byte("null"), nil
	}
	if _, err := strconv.ParseInt(string(f), 10, 64); err == nil {
		return []byte(f), nil
	}
	return json.Marshal(string(f))
}

// Str returns *p or "" for nil; a helper for the many nullable fields.
func Str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
