package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mdeflow/mdeflow/internal/mde"
)

// AlertV2 is a Microsoft Graph security alert (GET /security/alerts_v2).
type AlertV2 struct {
	ODataType             string         `json:"@odata.type,omitempty"`
	ID                    string         `json:"id"`
	ProviderAlertID       string         `json:"providerAlertId"`
	IncidentID            mde.FlexString `json:"incidentId"`
	Status                string         `json:"status"`
	Severity              string         `json:"severity"`
	Classification        *string        `json:"classification"`
	Determination         *string        `json:"determination"`
	ServiceSource         string         `json:"serviceSource"`
	DetectionSource       string         `json:"detectionSource"`
	DetectorID            string         `json:"detectorId"`
	TenantID              string         `json:"tenantId"`
	Title                 string         `json:"title"`
	Description           string         `json:"description"`
	RecommendedActions    string         `json:"recommendedActions"`
	Category              string         `json:"category"`
	AssignedTo            *string        `json:"assignedTo"`
	AlertWebURL           string         `json:"alertWebUrl"`
	IncidentWebURL        string         `json:"incidentWebUrl"`
	ActorDisplayName      *string        `json:"actorDisplayName"`
	ThreatDisplayName     *string        `json:"threatDisplayName"`
	ThreatFamilyName      *string        `json:"threatFamilyName"`
	MitreTechniques       []string       `json:"mitreTechniques"`
	CreatedDateTime       *time.Time     `json:"createdDateTime"`
	LastUpdateDateTime    *time.Time     `json:"lastUpdateDateTime"`
	ResolvedDateTime      *time.Time     `json:"resolvedDateTime"`
	FirstActivityDateTime *time.Time     `json:"firstActivityDateTime"`
	LastActivityDateTime  *time.Time     `json:"lastActivityDateTime"`
	Comments              []AlertComment `json:"comments"`
	Evidence              []Evidence     `json:"evidence"`
	SystemTags            []string       `json:"systemTags"`
}

// AlertComment is an entry of alert.comments.
type AlertComment struct {
	Comment              string     `json:"comment"`
	CreatedByDisplayName string     `json:"createdByDisplayName"`
	CreatedDateTime      *time.Time `json:"createdDateTime"`
}

// Evidence kinds (the last segment of @odata.type).
const (
	KindDevice        = "deviceEvidence"
	KindFile          = "fileEvidence"
	KindProcess       = "processEvidence"
	KindUser          = "userEvidence"
	KindIP            = "ipEvidence"
	KindURL           = "urlEvidence"
	KindRegistryKey   = "registryKeyEvidence"
	KindRegistryValue = "registryValueEvidence"
)

// Evidence is one polymorphic alert evidence item. Kind selects which of the
// typed pointers is set (none for kinds mdeflow does not model); Raw keeps
// the item as received, and MarshalJSON writes it back unchanged so that an
// AlertV2 survives a JSON round trip.
type Evidence struct {
	ODataType                string     `json:"@odata.type"`
	Kind                     string     `json:"-"`
	CreatedDateTime          *time.Time `json:"createdDateTime"`
	Verdict                  string     `json:"verdict"`
	RemediationStatus        string     `json:"remediationStatus"`
	RemediationStatusDetails *string    `json:"remediationStatusDetails"`
	Roles                    []string   `json:"roles"`
	DetailedRoles            []string   `json:"detailedRoles"`
	Tags                     []string   `json:"tags"`

	Device        *DeviceEvidence        `json:"-"`
	File          *FileEvidence          `json:"-"`
	Process       *ProcessEvidence       `json:"-"`
	User          *UserEvidence          `json:"-"`
	IP            *IPEvidence            `json:"-"`
	URL           *URLEvidence           `json:"-"`
	RegistryKey   *RegistryKeyEvidence   `json:"-"`
	RegistryValue *RegistryValueEvidence `json:"-"`
	Raw           json.RawMessage        `json:"-"`
}

// UnmarshalJSON decodes the common fields and the kind-specific ones.
func (e *Evidence) UnmarshalJSON(b []byte) error {
	type common Evidence
	var c common
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	*e = Evidence(c)
	e.Raw = append(json.RawMessage(nil), bytes.TrimSpace(b)...)
	e.Kind = e.ODataType[strings.LastIndex(e.ODataType, ".")+1:]
	var target any
	switch e.Kind {
	case KindDevice:
		e.Device = &DeviceEvidence{}
		target = e.Device
	case KindFile:
		e.File = &FileEvidence{}
		target = e.File
	case KindProcess:
		e.Process = &ProcessEvidence{}
		target = e.Process
	case KindUser:
		e.User = &UserEvidence{}
		target = e.User
	case KindIP:
		e.IP = &IPEvidence{}
		target = e.IP
	case KindURL:
		e.URL = &URLEvidence{}
		target = e.URL
	case KindRegistryKey:
		e.RegistryKey = &RegistryKeyEvidence{}
		target = e.RegistryKey
	case KindRegistryValue:
		e.RegistryValue = &RegistryValueEvidence{}
		target = e.RegistryValue
	default:
		return nil
	}
	if err := json.Unmarshal(b, target); err != nil {
		return fmt.Errorf("decoding %s: %w", e.Kind, err)
	}
	return nil
}

// MarshalJSON writes the evidence as it was received (Raw), or its common
// fields when it was built in code.
func (e Evidence) MarshalJSON() ([]byte, error) {
	if len(e.Raw) > 0 {
		return e.Raw, nil
	}
	type common Evidence
	return json.Marshal(common(e))
}

// DeviceEvidence is #microsoft.graph.security.deviceEvidence.
type DeviceEvidence struct {
	MdeDeviceID       string         `json:"mdeDeviceId"`
	AzureAdDeviceID   *string        `json:"azureAdDeviceId"`
	DeviceDNSName     string         `json:"deviceDnsName"`
	OSPlatform        string         `json:"osPlatform"`
	OSBuild           *int64         `json:"osBuild"`
	Version           string         `json:"version"`
	HealthStatus      string         `json:"healthStatus"`
	RiskScore         string         `json:"riskScore"`
	RbacGroupID       mde.FlexString `json:"rbacGroupId"`
	RbacGroupName     string         `json:"rbacGroupName"`
	OnboardingStatus  string         `json:"onboardingStatus"`
	DefenderAvStatus  string         `json:"defenderAvStatus"`
	FirstSeenDateTime *time.Time     `json:"firstSeenDateTime"`
	IPInterfaces      []string       `json:"ipInterfaces"`
	LoggedOnUsers     []LoggedOnUser `json:"loggedOnUsers"`
	VMMetadata        *VMMetadata    `json:"vmMetadata"`
}

// LoggedOnUser is an entry of deviceEvidence.loggedOnUsers.
type LoggedOnUser struct {
	AccountName string `json:"accountName"`
	DomainName  string `json:"domainName"`
}

// VMMetadata is deviceEvidence.vmMetadata.
type VMMetadata struct {
	VMID           string `json:"vmId"`
	CloudProvider  string `json:"cloudProvider"`
	ResourceID     string `json:"resourceId"`
	SubscriptionID string `json:"subscriptionId"`
}

// FileDetails is the fileDetails complex type.
type FileDetails struct {
	Sha1          *string `json:"sha1"`
	Sha256        *string `json:"sha256"`
	FileName      string  `json:"fileName"`
	FilePath      string  `json:"filePath"`
	FileSize      *int64  `json:"fileSize"`
	FilePublisher *string `json:"filePublisher"`
	Signer        *string `json:"signer"`
	Issuer        *string `json:"issuer"`
}

// FileEvidence is #microsoft.graph.security.fileEvidence.
type FileEvidence struct {
	FileDetails     *FileDetails `json:"fileDetails"`
	DetectionStatus string       `json:"detectionStatus"`
	MdeDeviceID     string       `json:"mdeDeviceId"`
}

// UserAccount is the userAccount complex type.
type UserAccount struct {
	AccountName       string `json:"accountName"`
	DomainName        string `json:"domainName"`
	UserSid           string `json:"userSid"`
	AzureAdUserID     string `json:"azureAdUserId"`
	UserPrincipalName string `json:"userPrincipalName"`
	DisplayName       string `json:"displayName"`
}

// ProcessEvidence is #microsoft.graph.security.processEvidence.
type ProcessEvidence struct {
	ProcessID                     *int64       `json:"processId"`
	ParentProcessID               *int64       `json:"parentProcessId"`
	ProcessCommandLine            string       `json:"processCommandLine"`
	ProcessCreationDateTime       *time.Time   `json:"processCreationDateTime"`
	ParentProcessCreationDateTime *time.Time   `json:"parentProcessCreationDateTime"`
	DetectionStatus               string       `json:"detectionStatus"`
	MdeDeviceID                   string       `json:"mdeDeviceId"`
	ImageFile                     *FileDetails `json:"imageFile"`
	ParentProcessImageFile        *FileDetails `json:"parentProcessImageFile"`
	UserAccount                   *UserAccount `json:"userAccount"`
}

// UserEvidence is #microsoft.graph.security.userEvidence.
type UserEvidence struct {
	UserAccount *UserAccount `json:"userAccount"`
}

// IPEvidence is #microsoft.graph.security.ipEvidence.
type IPEvidence struct {
	IPAddress         string `json:"ipAddress"`
	CountryLetterCode string `json:"countryLetterCode"`
}

// URLEvidence is #microsoft.graph.security.urlEvidence.
type URLEvidence struct {
	URL string `json:"url"`
}

// RegistryKeyEvidence is #microsoft.graph.security.registryKeyEvidence.
type RegistryKeyEvidence struct {
	RegistryKey  string `json:"registryKey"`
	RegistryHive string `json:"registryHive"`
}

// RegistryValueEvidence is #microsoft.graph.security.registryValueEvidence.
type RegistryValueEvidence struct {
	MdeDeviceID       string `json:"mdeDeviceId"`
	RegistryKey       string `json:"registryKey"`
	RegistryHive      string `json:"registryHive"`
	RegistryValue     string `json:"registryValue"`
	RegistryValueName string `json:"registryValueName"`
	RegistryValueType string `json:"registryValueType"`
}

// ListAlertsV2Options selects alerts for ListAlertsV2.
type ListAlertsV2Options struct {
	// Filter is a raw OData $filter (caller's text, never alert data), ANDed
	// with CreatedAfter.
	Filter string
	// CreatedAfter adds "createdDateTime gt …" when non-zero.
	CreatedAfter time.Time
	// Top caps the number of alerts returned (0: all); it is also the page
	// size up to Graph's maximum of 2000.
	Top int
}

const (
	maxGraphPage = 2000
	maxPages     = 1000
)

// ListAlertsV2 lists Graph security alerts, following @odata.nextLink (only
// links under the client's own host and /security/ path).
func (c *Client) ListAlertsV2(ctx context.Context, opts *ListAlertsV2Options) ([]AlertV2, error) {
	o := ListAlertsV2Options{}
	if opts != nil {
		o = *opts
	}
	if o.Top < 0 {
		return nil, fmt.Errorf("listing Graph alerts: %w: negative Top", mde.ErrInvalidArgument)
	}
	var conds []string
	if f := strings.TrimSpace(o.Filter); f != "" {
		conds = append(conds, "("+f+")")
	}
	if !o.CreatedAfter.IsZero() {
		conds = append(conds, "createdDateTime gt "+o.CreatedAfter.UTC().Format("2006-01-02T15:04:05.9999999Z"))
	}
	q := url.Values{}
	if len(conds) > 0 {
		q.Set("$filter", strings.Join(conds, " and "))
	}
	if o.Top > 0 {
		q.Set("$top", strconv.Itoa(min(o.Top, maxGraphPage)))
	}
	u := c.endpoint(q, "security", "alerts_v2")
	var out []AlertV2
	seen := map[string]bool{}
	ids := map[string]bool{}
	for page := 0; ; page++ {
		if page >= maxPages {
			return out, fmt.Errorf("listing Graph alerts: stopped after %d pages", maxPages)
		}
		var p struct {
			Value    []AlertV2 `json:"value"`
			NextLink string    `json:"@odata.nextLink"`
		}
		if err := c.send(ctx, "ListAlertsV2", FamilyAlerts, http.MethodGet, u, nil, []int{http.StatusOK}, &p, nil); err != nil {
			return out, fmt.Errorf("listing Graph alerts: %w", err)
		}
		for _, a := range p.Value {
			if ids[a.ID] {
				continue
			}
			ids[a.ID] = true
			out = append(out, a)
			if o.Top > 0 && len(out) >= o.Top {
				return out, nil
			}
		}
		if p.NextLink == "" || len(p.Value) == 0 {
			return out, nil
		}
		next, err := mde.CheckNextLink(c.base, "/security/", p.NextLink)
		if err != nil {
			c.log.Warn("not following @odata.nextLink", slog.String("op", "ListAlertsV2"), slog.String("error", err.Error()))
			return out, fmt.Errorf("listing Graph alerts: %w", err)
		}
		if seen[next] {
			return out, fmt.Errorf("listing Graph alerts: @odata.nextLink repeats")
		}
		seen[next] = true
		u = next
	}
}

// ToMDE maps a Graph alert to the MDE alert entity, so that the rest of
// mdeflow handles one shape. Enums move from camelCase to the MDE spelling;
// machineId comes from the device evidence (the compromised / "Main device"
// one, else the only distinct device; left empty when several devices are
// involved and none is marked, so that nothing acts on a guess). It fails
// when the alert id or a device id is not a valid MDE id.
func (a AlertV2) ToMDE() (mde.Alert, error) {
	id := a.ID
	if a.ProviderAlertID != "" && strings.EqualFold(a.ServiceSource, "microsoftDefenderForEndpoint") {
		id = a.ProviderAlertID
	}
	if err := mde.ValidateAlertID(id); err != nil {
		return mde.Alert{}, fmt.Errorf("mapping Graph alert: %w", err)
	}
	m := mde.Alert{
		ID:                id,
		AssignedTo:        a.AssignedTo,
		Severity:          mapSeverity(a.Severity),
		Status:            mapStatus(a.Status),
		Classification:    pascalEnum(a.Classification),
		Determination:     pascalEnum(a.Determination),
		DetectionSource:   mapDetectionSource(a.DetectionSource),
		DetectorID:        a.DetectorID,
		Category:          a.Category,
		ThreatFamilyName:  a.ThreatFamilyName,
		ThreatName:        a.ThreatDisplayName,
		Title:             a.Title,
		Description:       a.Description,
		AlertCreationTime: a.CreatedDateTime,
		FirstEventTime:    a.FirstActivityDateTime,
		LastEventTime:     a.LastActivityDateTime,
		LastUpdateTime:    a.LastUpdateDateTime,
		ResolvedTime:      a.ResolvedDateTime,
		AadTenantID:       a.TenantID,
		MitreTechniques:   a.MitreTechniques,
		Comments:          []mde.AlertComment{},
		Evidence:          []mde.Evidence{},
	}
	if n, err := strconv.ParseInt(string(a.IncidentID), 10, 64); err == nil {
		m.IncidentID = &n
	}
	for _, c := range a.Comments {
		m.Comments = append(m.Comments, mde.AlertComment{Comment: c.Comment, CreatedBy: c.CreatedByDisplayName, CreatedTime: c.CreatedDateTime})
	}
	dev, err := primaryDevice(a.Evidence)
	if err != nil {
		return mde.Alert{}, fmt.Errorf("mapping Graph alert %s: %w", id, err)
	}
	if dev != nil {
		m.MachineID = strings.ToLower(dev.MdeDeviceID)
		m.ComputerDNSName = dev.DeviceDNSName
		if dev.RbacGroupName != "" {
			g := dev.RbacGroupName
			m.RbacGroupName = &g
		}
	}
	for _, e := range a.Evidence {
		if me, ok := e.toMDE(); ok {
			m.Evidence = append(m.Evidence, me)
		}
		if m.RelatedUser == nil && e.User != nil && e.User.UserAccount != nil && e.User.UserAccount.AccountName != "" {
			m.RelatedUser = &mde.RelatedUser{UserName: e.User.UserAccount.AccountName, DomainName: e.User.UserAccount.DomainName}
		}
	}
	return m, nil
}

// primaryDevice picks the device the alert is about.
func primaryDevice(ev []Evidence) (*DeviceEvidence, error) {
	var devs []*DeviceEvidence
	distinct := map[string]bool{}
	for _, e := range ev {
		if e.Device == nil || e.Device.MdeDeviceID == "" {
			continue
		}
		if err := mde.ValidateMachineID(e.Device.MdeDeviceID); err != nil {
			return nil, err
		}
		devs = append(devs, e.Device)
		distinct[strings.ToLower(e.Device.MdeDeviceID)] = true
	}
	if len(distinct) == 1 {
		return devs[0], nil
	}
	var marked []*DeviceEvidence
	markedIDs := map[string]bool{}
	for _, e := range ev {
		if e.Device == nil || e.Device.MdeDeviceID == "" {
			continue
		}
		if containsFold(e.Roles, "compromised") || containsFold(e.DetailedRoles, "Main device") {
			marked = append(marked, e.Device)
			markedIDs[strings.ToLower(e.Device.MdeDeviceID)] = true
		}
	}
	if len(markedIDs) == 1 {
		return marked[0], nil
	}
	return nil, nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// toMDE maps an evidence item to the MDE evidence shape; devices are not MDE
// evidence (they become the alert's machineId) and unmodelled kinds are dropped.
func (e Evidence) toMDE() (mde.Evidence, bool) {
	out := mde.Evidence{EvidenceCreationTime: e.CreatedDateTime}
	switch {
	case e.File != nil:
		out.EntityType = "File"
		setFile(&out, e.File.FileDetails)
		out.DetectionStatus = pascal(e.File.DetectionStatus)
	case e.Process != nil:
		p := e.Process
		out.EntityType = "Process"
		setFile(&out, p.ImageFile)
		out.ProcessID = p.ProcessID
		out.ProcessCommandLine = ptr(p.ProcessCommandLine)
		out.ProcessCreationTime = p.ProcessCreationDateTime
		out.ParentProcessID = p.ParentProcessID
		out.ParentProcessCreationTime = p.ParentProcessCreationDateTime
		if p.ParentProcessImageFile != nil {
			out.ParentProcessFileName = ptr(p.ParentProcessImageFile.FileName)
			out.ParentProcessFilePath = ptr(p.ParentProcessImageFile.FilePath)
		}
		out.DetectionStatus = pascal(p.DetectionStatus)
	case e.User != nil:
		out.EntityType = "User"
		if u := e.User.UserAccount; u != nil {
			out.AccountName = ptr(u.AccountName)
			out.DomainName = ptr(u.DomainName)
			out.UserSid = ptr(u.UserSid)
			out.AadUserID = ptr(u.AzureAdUserID)
			out.UserPrincipalName = ptr(u.UserPrincipalName)
		}
	case e.IP != nil:
		out.EntityType = "Ip"
		out.IPAddress = ptr(e.IP.IPAddress)
	case e.URL != nil:
		out.EntityType = "Url"
		out.URL = ptr(e.URL.URL)
	case e.RegistryKey != nil:
		out.EntityType = "Registry"
		out.RegistryKey = ptr(e.RegistryKey.RegistryKey)
		out.RegistryHive = ptr(e.RegistryKey.RegistryHive)
	case e.RegistryValue != nil:
		r := e.RegistryValue
		out.EntityType = "Registry"
		out.RegistryKey = ptr(r.RegistryKey)
		out.RegistryHive = ptr(r.RegistryHive)
		out.RegistryValue = ptr(r.RegistryValue)
		out.RegistryValueName = ptr(r.RegistryValueName)
		out.RegistryValueType = ptr(r.RegistryValueType)
	default:
		return mde.Evidence{}, false
	}
	return out, true
}

func setFile(out *mde.Evidence, f *FileDetails) {
	if f == nil {
		return
	}
	out.Sha1 = f.Sha1
	out.Sha256 = f.Sha256
	out.FileName = ptr(f.FileName)
	out.FilePath = ptr(f.FilePath)
}

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// pascal upper-cases the first letter: inProgress -> InProgress.
func pascal(s string) *string {
	if s == "" {
		return nil
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	v := string(r)
	return &v
}

// pascalEnum maps a Graph enum to the MDE spelling; unknown and
// unknownFutureValue mean "not set" in MDE.
func pascalEnum(p *string) *string {
	if p == nil || *p == "" || strings.EqualFold(*p, "unknown") || strings.EqualFold(*p, "unknownFutureValue") {
		return nil
	}
	return pascal(*p)
}

func mapSeverity(s string) string {
	switch strings.ToLower(s) {
	case "informational":
		return mde.SeverityInformational
	case "low":
		return mde.SeverityLow
	case "medium":
		return mde.SeverityMedium
	case "high":
		return mde.SeverityHigh
	}
	return mde.SeverityUnSpecified
}

func mapStatus(s string) string {
	switch strings.ToLower(s) {
	case "new":
		return "New"
	case "inprogress":
		return "InProgress"
	case "resolved":
		return "Resolved"
	}
	return "Unknown"
}

// detectionSources maps Graph detectionSource values to the original MDE
// names (advanced-hunting schema change log, defender-api.md §2.5). Others
// are passed through in PascalCase.
var detectionSources = map[string]string{
	"microsoftdefenderforendpoint":  "WindowsDefenderAtp",
	"antivirus":                     "WindowsDefenderAv",
	"smartscreen":                   "WindowsDefenderSmartScreen",
	"customti":                      "CustomerTI",
	"customdetection":               "CustomDetection",
	"automatedinvestigation":        "AutomatedInvestigation",
	"microsoftthreatexperts":        "ThreatExperts",
	"microsoftdefenderforoffice365": "OfficeATP",
	"microsoft365defender":          "MTP",
	"microsoftdefenderforidentity":  "AzureATP",
}

func mapDetectionSource(s string) string {
	if v, ok := detectionSources[strings.ToLower(s)]; ok {
		return v
	}
	if p := pascal(s); p != nil {
		return *p
	}
	return ""
}
