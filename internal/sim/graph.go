package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"strings"

	"github.com/mdeflow/mdeflow/internal/mde"
)

var graphAudiences = []string{AudienceGraph, graphAppID}

var (
	rolesGraphAlerts  = []string{RoleGraphAlertRead, RoleGraphAlertReadWrite}
	rolesGraphHunting = []string{RoleGraphHunting}
	rolesGraphMail    = []string{RoleGraphMailSend}
)

// serveGraph serves the Microsoft Graph endpoints mdeflow calls.
func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")[1:] // drop v1.0
	lower := make([]string, len(segs))
	for i, sg := range segs {
		lower[i] = strings.ToLower(sg)
	}
	var method string
	var roles []string
	var handle func() *apiError
	switch {
	case len(lower) == 2 && lower[0] == "security" && lower[1] == "alerts_v2":
		method, roles = http.MethodGet, rolesGraphAlerts
		handle = func() *apiError { return s.graphListAlerts(w, r) }
	case len(lower) == 3 && lower[0] == "security" && lower[1] == "alerts_v2" && segs[2] != "":
		method, roles = http.MethodGet, rolesGraphAlerts
		handle = func() *apiError { return s.graphGetAlert(w, r, segs[2]) }
	case len(lower) == 2 && lower[0] == "security" && lower[1] == "runhuntingquery":
		method, roles = http.MethodPost, rolesGraphHunting
		handle = func() *apiError { return s.graphRunHuntingQuery(w, r) }
	case len(lower) == 3 && lower[0] == "users" && lower[2] == "sendmail" && segs[1] != "":
		method, roles = http.MethodPost, rolesGraphMail
		handle = func() *apiError { return s.graphSendMail(w, r, segs[1]) }
	default:
		last := ""
		if len(segs) > 0 {
			last = segs[len(segs)-1]
		}
		writeGraphError(w, r, s.Now(), graphBadRequest(fmt.Sprintf("Resource not found for the segment '%s'.", last)))
		return
	}
	if r.Method != method {
		writeGraphError(w, r, s.Now(), &apiError{Status: http.StatusMethodNotAllowed, Code: "Request_BadRequest", Message: fmt.Sprintf("The HTTP method '%s' is not allowed for this resource.", r.Method), Allow: method})
		return
	}
	if e := s.preFault(r.Context()); e != nil {
		if e.Code == "InternalServerError" {
			e.Code = "UnknownError"
		}
		writeGraphError(w, r, s.Now(), e)
		return
	}
	who, aerr := s.verifyBearer(r)
	if aerr != nil {
		msg := "Access token validation failure. Invalid signature or token."
		switch {
		case r.Header.Get("Authorization") == "":
			msg = "Access token is empty."
		case strings.Contains(aerr.msg, "expired"):
			msg = "Lifetime validation failed, the token is expired."
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="`+graphAppID+`"`)
		writeGraphError(w, r, s.Now(), &apiError{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationToken", Message: msg})
		return
	}
	if !containsFold(graphAudiences, who.Aud) {
		writeGraphError(w, r, s.Now(), &apiError{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationToken", Message: "Access token validation failure. Invalid audience."})
		return
	}
	if !who.hasAny(roles) {
		e := &apiError{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf("Missing application roles. API required roles: %s. Application roles: %s.", strings.Join(roles, ","), strings.Join(who.Roles, ","))}
		if method == http.MethodPost && lower[0] == "users" {
			e = &apiError{Status: http.StatusForbidden, Code: "ErrorAccessDenied", Message: "Access is denied. Check credentials and try again."}
		}
		writeGraphError(w, r, s.Now(), e)
		return
	}
	if lower[0] == "security" && lower[1] == "runhuntingquery" && !s.opts.DisableQuotas {
		s.mu.Lock()
		qe := s.quotas.take(famGraphHunting, s.now())
		s.mu.Unlock()
		if qe != nil {
			qe.Code = "TooManyRequests"
			writeGraphError(w, r, s.Now(), qe)
			return
		}
	}
	if e := handle(); e != nil {
		writeGraphError(w, r, s.Now(), e)
	}
}

var graphAlertSchema = newSchema("microsoft.graph.security.alert",
	field{JSON: "id"},
	field{JSON: "createdDateTime", Kind: kDateTime},
	field{JSON: "lastUpdateDateTime", Kind: kDateTime},
	field{JSON: "assignedTo"},
	field{JSON: "classification", Kind: kEnum, Enum: []string{"unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue"}},
	field{JSON: "determination"},
	field{JSON: "severity", Kind: kEnum, Enum: []string{"unknown", "informational", "low", "medium", "high", "unknownFutureValue"}},
	field{JSON: "status", Kind: kEnum, Enum: []string{"unknown", "new", "inProgress", "resolved", "unknownFutureValue"}},
	field{JSON: "serviceSource", Kind: kEnum, Enum: []string{"unknown", "microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps", "microsoftDefenderForOffice365", "microsoft365Defender", "azureAdIdentityProtection", "microsoftAppGovernance", "dataLossPrevention", "unknownFutureValue", "microsoftDefenderForCloud", "microsoftSentinel", "microsoftInsiderRiskManagement"}},
)

func (s *Server) graphListAlerts(w http.ResponseWriter, r *http.Request) *apiError {
	q := r.URL.Query()
	lq, e := parseListQuery(q, listSpec{sch: graphAlertSchema, maxTop: maxGraphPage, expand: []string{}, skipToken: true})
	if e != nil {
		if strings.Contains(e.Message, "limit of") {
			return graphBadRequest(fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and %d inclusive.", q.Get("$top"), maxGraphPage))
		}
		return graphBadRequest("Invalid filter clause: " + e.Message)
	}
	s.mu.Lock()
	items := make([]item, 0, len(s.alerts))
	for _, a := range s.alerts {
		ga := s.graphAlertLocked(a)
		items = append(items, item{m: ga, out: ga})
	}
	s.mu.Unlock()
	page, total, more := lq.apply(items, s.opts.GraphPageSize, true)
	base := baseURL(r)
	out := orderedObject{{"@odata.context", base + "/v1.0/$metadata#security/alerts_v2"}}
	if lq.count {
		out = append(out, kv{"@odata.count", total})
	}
	if more {
		out = append(out, kv{"@odata.nextLink", nextLink(base, r.URL.Path, q, lq.skip+len(page), true)})
	}
	out = append(out, kv{"value", page})
	writeOData(w, http.StatusOK, contentTypeGraph, out)
	return nil
}

func (s *Server) graphGetAlert(w http.ResponseWriter, r *http.Request, id string) *apiError {
	s.mu.Lock()
	a, ok := s.alertIdx[id]
	var ga map[string]any
	if ok {
		ga = s.graphAlertLocked(a)
	}
	s.mu.Unlock()
	if !ok {
		return &apiError{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("Alert with id '%s' was not found.", id)}
	}
	writeOData(w, http.StatusOK, contentTypeGraph, withContext(baseURL(r)+"/v1.0/$metadata#security/alerts_v2/$entity", ga))
	return nil
}

// graphAlertLocked renders an alert in the alerts_v2 shape: the raw Graph
// alert when one was loaded (with the fields an MDE PATCH may have changed
// overlaid), otherwise a conversion of the MDE alert.
func (s *Server) graphAlertLocked(a *mde.Alert) map[string]any {
	var m map[string]any
	if raw, ok := s.graphRaw[a.ID]; ok {
		m = decodeMap(raw)
	} else {
		var machine *mde.Machine
		if a.MachineID != "" {
			machine = s.machineIdx[strings.ToLower(a.MachineID)]
		}
		m = mdeToGraphAlert(a, machine)
	}
	m["status"] = graphStatus(a.Status)
	m["classification"] = graphClassification(a.Classification)
	m["determination"] = graphDetermination(a.Determination)
	m["assignedTo"] = a.AssignedTo
	m["lastUpdateDateTime"] = a.LastUpdateTime
	m["resolvedDateTime"] = a.ResolvedTime
	// Round-trip so $filter sees JSON values (strings, json.Number).
	return toMap(m)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func graphSeverity(s string) string {
	if s == mde.SeverityUnSpecified || s == "" {
		return "unknown"
	}
	return strings.ToLower(s)
}

func graphStatus(s string) string {
	if s == "" {
		return "unknown"
	}
	return lowerFirst(s)
}

func graphClassification(c *string) string {
	if c == nil || *c == "" || *c == "Unknown" {
		return "unknown"
	}
	return lowerFirst(*c)
}

func graphDetermination(d *string) string {
	if d == nil || *d == "" || *d == "NotAvailable" {
		return "unknown"
	}
	switch *d {
	case "ConfirmedActivity":
		return "confirmedUserActivity"
	case "NotMalicious":
		return "clean"
	}
	return lowerFirst(*d)
}

var detectionSourceToGraph = map[string]string{
	"WindowsDefenderAtp":         "microsoftDefenderForEndpoint",
	"WindowsDefenderAv":          "antivirus",
	"WindowsDefenderSmartScreen": "smartScreen",
	"CustomDetection":            "customDetection",
	"AutomatedInvestigation":     "automatedInvestigation",
	"CustomerTI":                 "customTi",
	"ThreatExperts":              "microsoftThreatExperts",
	"MTP":                        "microsoft365Defender",
}

func graphDetectionSource(s string) string {
	if g, ok := detectionSourceToGraph[s]; ok {
		return g
	}
	return lowerFirst(s)
}

func mdeDetectionSource(g string) string {
	for k, v := range detectionSourceToGraph {
		if v == g {
			return k
		}
	}
	return upperFirst(g)
}

// mdeToGraphAlert converts an MDE alert to the alerts_v2 entity.
func mdeToGraphAlert(a *mde.Alert, machine *mde.Machine) map[string]any {
	var incident any
	if a.IncidentID != nil {
		incident = fmt.Sprint(*a.IncidentID)
	}
	tid := a.AadTenantID
	comments := make([]any, 0, len(a.Comments))
	for _, c := range a.Comments {
		comments = append(comments, map[string]any{"comment": c.Comment, "createdByDisplayName": c.CreatedBy, "createdDateTime": c.CreatedTime})
	}
	created := a.AlertCreationTime
	evidence := []any{}
	if machine != nil {
		var tags []string
		tags = append(tags, machine.MachineTags...)
		if tags == nil {
			tags = []string{}
		}
		ips := []string{}
		for _, ip := range machine.IPAddresses {
			ips = append(ips, ip.IPAddress)
		}
		var rbacID any
		if machine.RbacGroupID != "" {
			rbacID = json.RawMessage(mustJSON(machine.RbacGroupID))
		}
		evidence = append(evidence, map[string]any{
			"@odata.type":              "#microsoft.graph.security.deviceEvidence",
			"createdDateTime":          created,
			"verdict":                  "unknown",
			"remediationStatus":        "none",
			"remediationStatusDetails": nil,
			"firstSeenDateTime":        machine.FirstSeen,
			"mdeDeviceId":              machine.ID,
			"azureAdDeviceId":          machine.AadDeviceID,
			"deviceDnsName":            machine.ComputerDNSName,
			"osPlatform":               machine.OSPlatform,
			"osBuild":                  machine.OSBuild,
			"version":                  machine.Version,
			"healthStatus":             lowerFirst(machine.HealthStatus),
			"riskScore":                strings.ToLower(mde.Str(machine.RiskScore)),
			"rbacGroupId":              rbacID,
			"rbacGroupName":            machine.RbacGroupName,
			"onboardingStatus":         lowerFirst(machine.OnboardingStatus),
			"defenderAvStatus":         "unknown",
			"ipInterfaces":             ips,
			"loggedOnUsers":            []any{},
			"roles":                    []string{"compromised"},
			"detailedRoles":            []string{"Main device"},
			"tags":                     tags,
		})
	}
	for _, ev := range a.Evidence {
		if g := graphEvidence(ev, a.MachineID); g != nil {
			evidence = append(evidence, g)
		}
	}
	return map[string]any{
		"@odata.type":           "#microsoft.graph.security.alert",
		"id":                    a.ID,
		"providerAlertId":       a.ID,
		"incidentId":            incident,
		"status":                graphStatus(a.Status),
		"severity":              graphSeverity(a.Severity),
		"classification":        graphClassification(a.Classification),
		"determination":         graphDetermination(a.Determination),
		"serviceSource":         "microsoftDefenderForEndpoint",
		"detectionSource":       graphDetectionSource(a.DetectionSource),
		"detectorId":            a.DetectorID,
		"tenantId":              tid,
		"title":                 a.Title,
		"description":           a.Description,
		"recommendedActions":    "",
		"category":              a.Category,
		"assignedTo":            a.AssignedTo,
		"alertWebUrl":           "https://security.microsoft.com/alerts/" + a.ID + "?tid=" + tid,
		"incidentWebUrl":        fmt.Sprintf("https://security.microsoft.com/incidents/%v?tid=%s", incident, tid),
		"actorDisplayName":      nil,
		"threatDisplayName":     a.ThreatName,
		"threatFamilyName":      a.ThreatFamilyName,
		"mitreTechniques":       a.MitreTechniques,
		"createdDateTime":       a.AlertCreationTime,
		"lastUpdateDateTime":    a.LastUpdateTime,
		"resolvedDateTime":      a.ResolvedTime,
		"firstActivityDateTime": a.FirstEventTime,
		"lastActivityDateTime":  a.LastEventTime,
		"comments":              comments,
		"evidence":              evidence,
		"systemTags":            []string{},
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}

func graphVerdict(ev mde.Evidence) string {
	if mde.Str(ev.DetectionStatus) == "Detected" {
		return "suspicious"
	}
	return "unknown"
}

func graphFileDetails(name, path, sha1, sha256 *string) map[string]any {
	return map[string]any{
		"sha1": sha1, "sha256": sha256, "fileName": name, "filePath": path,
		"fileSize": nil, "filePublisher": nil, "signer": nil, "issuer": nil,
	}
}

// graphEvidence converts one MDE evidence item to its alerts_v2 form.
func graphEvidence(ev mde.Evidence, machineID string) map[string]any {
	base := map[string]any{
		"createdDateTime":          ev.EvidenceCreationTime,
		"verdict":                  graphVerdict(ev),
		"remediationStatus":        "none",
		"remediationStatusDetails": nil,
		"roles":                    []string{},
		"detailedRoles":            []string{},
		"tags":                     []string{},
	}
	userAccount := map[string]any{
		"accountName": ev.AccountName, "domainName": ev.DomainName, "userSid": ev.UserSid,
		"azureAdUserId": ev.AadUserID, "userPrincipalName": ev.UserPrincipalName, "displayName": ev.AccountName,
	}
	switch ev.EntityType {
	case "File":
		base["@odata.type"] = "#microsoft.graph.security.fileEvidence"
		base["detectionStatus"] = lowerFirst(mde.Str(ev.DetectionStatus))
		base["mdeDeviceId"] = machineID
		base["fileDetails"] = graphFileDetails(ev.FileName, ev.FilePath, ev.Sha1, ev.Sha256)
	case "Process":
		base["@odata.type"] = "#microsoft.graph.security.processEvidence"
		base["processId"] = ev.ProcessID
		base["parentProcessId"] = ev.ParentProcessID
		base["processCommandLine"] = ev.ProcessCommandLine
		base["processCreationDateTime"] = ev.ProcessCreationTime
		base["parentProcessCreationDateTime"] = ev.ParentProcessCreationTime
		base["detectionStatus"] = lowerFirst(mde.Str(ev.DetectionStatus))
		base["mdeDeviceId"] = machineID
		base["imageFile"] = graphFileDetails(ev.FileName, ev.FilePath, ev.Sha1, ev.Sha256)
		base["parentProcessImageFile"] = graphFileDetails(ev.ParentProcessFileName, ev.ParentProcessFilePath, nil, nil)
		base["userAccount"] = nil
		if ev.AccountName != nil {
			base["userAccount"] = userAccount
		}
	case "User":
		base["@odata.type"] = "#microsoft.graph.security.userEvidence"
		base["userAccount"] = userAccount
	case "Ip":
		base["@odata.type"] = "#microsoft.graph.security.ipEvidence"
		base["ipAddress"] = ev.IPAddress
		base["countryLetterCode"] = nil
	case "Url":
		base["@odata.type"] = "#microsoft.graph.security.urlEvidence"
		base["url"] = ev.URL
	case "Registry":
		if ev.RegistryValueName != nil || ev.RegistryValue != nil {
			base["@odata.type"] = "#microsoft.graph.security.registryValueEvidence"
			base["registryValueName"] = ev.RegistryValueName
			base["registryValue"] = ev.RegistryValue
			base["registryValueType"] = ev.RegistryValueType
			base["mdeDeviceId"] = machineID
		} else {
			base["@odata.type"] = "#microsoft.graph.security.registryKeyEvidence"
		}
		base["registryKey"] = ev.RegistryKey
		base["registryHive"] = ev.RegistryHive
	default:
		return nil
	}
	return base
}

// graphSendMail is POST /v1.0/users/{id|userPrincipalName}/sendMail.
func (s *Server) graphSendMail(w http.ResponseWriter, r *http.Request, mailbox string) *apiError {
	if !guidRe.MatchString(mailbox) {
		if _, err := mail.ParseAddress(mailbox); err != nil || strings.ContainsAny(mailbox, "<> ") {
			return &apiError{Status: http.StatusNotFound, Code: "ErrorInvalidUser", Message: fmt.Sprintf("The requested user '%s' is invalid.", mailbox)}
		}
	}
	body, raw, e := jsonBodyRaw(r)
	if e != nil {
		return &apiError{Status: e.Status, Code: "ErrorInvalidRequest", Message: e.Message}
	}
	var req struct {
		Message *struct {
			Subject *string `json:"subject"`
			Body    *struct {
				ContentType string `json:"contentType"`
				Content     string `json:"content"`
			} `json:"body"`
			ToRecipients  []graphRecipient `json:"toRecipients"`
			CcRecipients  []graphRecipient `json:"ccRecipients"`
			BccRecipients []graphRecipient `json:"bccRecipients"`
		} `json:"message"`
		SaveToSentItems any `json:"saveToSentItems"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return &apiError{Status: http.StatusBadRequest, Code: "ErrorInvalidRequest", Message: "Cannot read the request body: " + err.Error()}
	}
	for k := range body {
		if k != "message" && k != "saveToSentItems" {
			return &apiError{Status: http.StatusBadRequest, Code: "RequestBodyRead", Message: fmt.Sprintf("The property '%s' does not exist on type 'microsoft.graph.sendMail'.", k)}
		}
	}
	if req.Message == nil {
		return &apiError{Status: http.StatusBadRequest, Code: "ErrorInvalidRequest", Message: "Empty Payload. JSON content expected."}
	}
	all := append(append(append([]graphRecipient{}, req.Message.ToRecipients...), req.Message.CcRecipients...), req.Message.BccRecipients...)
	if len(all) == 0 {
		return &apiError{Status: http.StatusBadRequest, Code: "ErrorInvalidRecipients", Message: "At least one recipient isn't valid., A message can't be sent because it contains no recipients."}
	}
	for _, rc := range all {
		if rc.EmailAddress == nil || rc.EmailAddress.Address == "" {
			return &apiError{Status: http.StatusBadRequest, Code: "ErrorInvalidRecipients", Message: "At least one recipient isn't valid., A recipient has no email address."}
		}
		if _, err := mail.ParseAddress(rc.EmailAddress.Address); err != nil || strings.ContainsAny(rc.EmailAddress.Address, "<>\r\n") {
			return &apiError{Status: http.StatusBadRequest, Code: "ErrorInvalidRecipients", Message: fmt.Sprintf("At least one recipient isn't valid., Recipient '%s' is not resolved.", rc.EmailAddress.Address)}
		}
	}
	if req.Message.Subject != nil && strings.ContainsAny(*req.Message.Subject, "\r\n") {
		return &apiError{Status: http.StatusBadRequest, Code: "ErrorInvalidRequest", Message: "The subject contains a line break."}
	}
	if b := req.Message.Body; b != nil && !strings.EqualFold(b.ContentType, "text") && !strings.EqualFold(b.ContentType, "html") {
		return &apiError{Status: http.StatusBadRequest, Code: "RequestBodyRead", Message: fmt.Sprintf("Requested value '%s' was not found in enum 'BodyType'.", b.ContentType)}
	}
	s.mu.Lock()
	s.sent = append(s.sent, SentMessage{Mailbox: mailbox, Body: raw})
	fault := s.postCommitFaultLocked()
	s.mu.Unlock()
	if fault {
		return errPostCommit()
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

type graphRecipient struct {
	EmailAddress *struct {
		Address string `json:"address"`
		Name    string `json:"name"`
	} `json:"emailAddress"`
}
