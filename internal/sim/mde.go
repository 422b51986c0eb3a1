package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/mdeflow/mdeflow/internal/mde"
)

// mdeCtx carries what a handler needs about the call.
type mdeCtx struct {
	root   string // scheme://host/api or .../api/v1.0: the OData service root
	params []string
	who    *principal
}

type mdeHandler func(s *Server, w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError

type mdeRoute struct {
	method  string
	pattern []string // "*" matches one segment
	family  string
	roles   []string
	handle  mdeHandler
}

var (
	rolesAlertRead   = []string{RoleAlertRead, RoleAlertReadWrite}
	rolesAlertWrite  = []string{RoleAlertReadWrite}
	rolesMachineRead = []string{RoleMachineRead, RoleMachineReadWrite}
	rolesCancel      = []string{RoleMachineForensics, RoleMachineIsolate, RoleMachineRestrict, RoleMachineScan, RoleMachineOffboard, RoleMachineStopQuarantine, RoleMachineLiveResponse}
)

var mdeRoutes = []mdeRoute{
	{"GET", []string{"alerts"}, famAlerts, rolesAlertRead, (*Server).listAlerts},
	{"GET", []string{"alerts", "*"}, famAlerts, rolesAlertRead, (*Server).getAlert},
	{"PATCH", []string{"alerts", "*"}, famAlerts, rolesAlertWrite, (*Server).patchAlert},
	{"GET", []string{"alerts", "*", "machine"}, famAlerts, rolesMachineRead, (*Server).alertMachine},
	{"GET", []string{"machines"}, famMachines, rolesMachineRead, (*Server).listMachines},
	{"GET", []string{"machines", "*"}, famMachines, rolesMachineRead, (*Server).getMachine},
	{"GET", []string{"machines", "*", "alerts"}, famAlerts, rolesAlertRead, (*Server).machineAlerts},
	{"POST", []string{"machines", "*", "tags"}, famMachines, []string{RoleMachineReadWrite}, (*Server).tagMachine},
	{"POST", []string{"machines", "*", "isolate"}, famActions, []string{RoleMachineIsolate}, actionHandler(mde.ActionTypeIsolate)},
	{"POST", []string{"machines", "*", "unisolate"}, famActions, []string{RoleMachineIsolate}, actionHandler(mde.ActionTypeUnisolate)},
	{"POST", []string{"machines", "*", "restrictCodeExecution"}, famActions, []string{RoleMachineRestrict}, actionHandler(mde.ActionTypeRestrictCodeExecution)},
	{"POST", []string{"machines", "*", "unrestrictCodeExecution"}, famActions, []string{RoleMachineRestrict}, actionHandler(mde.ActionTypeUnrestrictCodeExecution)},
	{"POST", []string{"machines", "*", "runAntiVirusScan"}, famActions, []string{RoleMachineScan}, actionHandler(mde.ActionTypeRunAntiVirusScan)},
	{"POST", []string{"machines", "*", "collectInvestigationPackage"}, famActions, []string{RoleMachineForensics}, actionHandler(mde.ActionTypeCollectInvestigationPackage)},
	{"GET", []string{"machineactions"}, famActions, rolesMachineRead, (*Server).listActions},
	{"GET", []string{"machineactions", "*"}, famActions, rolesMachineRead, (*Server).getAction},
	{"POST", []string{"machineactions", "*", "cancel"}, famActions, rolesCancel, (*Server).cancelAction},
	{"POST", []string{"advancedqueries", "run"}, famHunting, []string{RoleAdvancedQuery}, (*Server).runAdvancedQuery},
}

func matchPattern(pat, segs []string) ([]string, bool) {
	if len(pat) != len(segs) {
		return nil, false
	}
	var params []string
	for i, p := range pat {
		if p == "*" {
			if segs[i] == "" {
				return nil, false
			}
			params = append(params, segs[i])
			continue
		}
		if !strings.EqualFold(p, segs[i]) {
			return nil, false
		}
	}
	return params, true
}

// mdeAudiences are the token audiences the MDE API accepts (§1.2 [GAP]).
var mdeAudiences = []string{AudienceSecurityCenter, AudienceSecurity, AudienceWindowsATP}

// serveMDE is the MDE API: routing, faults, auth, quotas, then the handler.
func (s *Server) serveMDE(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	rootPath := "/api"
	rest := strings.TrimPrefix(path, "/api")
	if strings.HasPrefix(strings.ToLower(rest), "/v1.0/") {
		rootPath = "/api/v1.0"
		rest = rest[len("/v1.0"):]
	}
	segs := strings.Split(strings.Trim(rest, "/"), "/")

	var route *mdeRoute
	var params []string
	var allow []string
	for i := range mdeRoutes {
		rt := &mdeRoutes[i]
		p, ok := matchPattern(rt.pattern, segs)
		if !ok {
			continue
		}
		allow = append(allow, rt.method)
		if rt.method == r.Method {
			route, params = rt, p
		}
	}
	if route == nil {
		if len(allow) > 0 {
			// Observed: 405, empty body, Allow header (swimlane captures).
			writeMDEError(w, &apiError{Status: http.StatusMethodNotAllowed, NoBody: true, Allow: strings.Join(allow, ", ")})
			return
		}
		writeMDEError(w, &apiError{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("No HTTP resource was found that matches the request URI '%s'.", path)})
		return
	}

	if e := s.preFault(r.Context()); e != nil {
		writeMDEError(w, e)
		return
	}
	who, aerr := s.verifyBearer(r)
	if aerr != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeMDEError(w, &apiError{Status: aerr.status, Code: "Unauthorized", Message: aerr.msg})
		return
	}
	if !containsFold(mdeAudiences, who.Aud) {
		// Issues #9246 and TheHive: a token for another resource gets 403.
		writeMDEError(w, &apiError{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf("The access token audience '%s' is not valid for this API.", who.Aud)})
		return
	}
	if !who.hasAny(route.roles) {
		writeMDEError(w, &apiError{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf("The application does not have any of the required application permissions (%s) to access the resource.", strings.Join(route.roles, ", "))})
		return
	}
	if !s.opts.DisableQuotas {
		s.mu.Lock()
		qe := s.quotas.take(route.family, s.now())
		s.mu.Unlock()
		if qe != nil {
			writeMDEError(w, qe)
			return
		}
	}
	c := &mdeCtx{root: baseURL(r) + rootPath, params: params, who: who}
	if e := route.handle(s, w, r, c); e != nil {
		writeMDEError(w, e)
	}
}

func containsFold(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

// --- alerts ---

var alertSeverities = []string{mde.SeverityUnSpecified, mde.SeverityInformational, mde.SeverityLow, mde.SeverityMedium, mde.SeverityHigh}

var alertSchema = newSchema("microsoft.windowsDefenderATP.api.PublicAlertV2Api",
	field{JSON: "id"},
	field{JSON: "alertCreationTime", Kind: kDateTime},
	field{JSON: "lastUpdateTime", Kind: kDateTime},
	field{JSON: "lastEventTime", Kind: kDateTime},
	field{JSON: "incidentId", Kind: kInt},
	field{JSON: "investigationId", Kind: kInt},
	field{JSON: "assignedTo"},
	field{JSON: "detectionSource"},
	field{JSON: "category"},
	field{JSON: "status", Kind: kEnum, Enum: []string{"Unknown", "New", "InProgress", "Resolved"}},
	field{JSON: "severity", Kind: kEnum, Enum: alertSeverities},
)

// alertEntity is the alert as the API returns it; without $expand=evidence
// the list returns "evidence": [].
func alertEntity(a *mde.Alert, withEvidence bool) mde.Alert {
	c := *a
	if !withEvidence {
		c.Evidence = []mde.Evidence{}
	}
	return c
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	return s.listAlertsWhere(w, r, c, "")
}

func (s *Server) machineAlerts(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	s.mu.Lock()
	m, ok := s.lookupMachineLocked(c.params[0], true)
	s.mu.Unlock()
	if !ok {
		return errNotFound(fmt.Sprintf("Machine %s was not found", c.params[0]))
	}
	return s.listAlertsWhere(w, r, c, m.ID)
}

func (s *Server) listAlertsWhere(w http.ResponseWriter, r *http.Request, c *mdeCtx, machineID string) *apiError {
	q := r.URL.Query()
	lq, err := parseListQuery(q, listSpec{sch: alertSchema, maxTop: maxMDEPage, expand: []string{"evidence"}})
	if err != nil {
		return err
	}
	s.mu.Lock()
	ents := make([]item, 0, len(s.alerts))
	for _, a := range s.alerts {
		if machineID != "" && !strings.EqualFold(a.MachineID, machineID) {
			continue
		}
		ents = append(ents, newItem(alertEntity(a, lq.expand["evidence"])))
	}
	s.mu.Unlock()
	s.writeList(w, r, c.root, "Alerts", lq, ents, s.opts.PageSize)
	return nil
}

// writeList pages ents and writes the MDE collection envelope.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, root, set string, lq *listQuery, ents []item, pageSize int) {
	page, total, more := lq.apply(ents, pageSize, false)
	out := orderedObject{{"@odata.context", root + "/$metadata#" + set}}
	if lq.count {
		out = append(out, kv{"@odata.count", total})
	}
	out = append(out, kv{"value", page})
	if more {
		out = append(out, kv{"@odata.nextLink", nextLink(root, strings.TrimPrefix(r.URL.Path, rootPathOf(r.URL.Path)), r.URL.Query(), lq.skip+len(page), false)})
	}
	writeOData(w, http.StatusOK, contentTypeOData, out)
}

func rootPathOf(p string) string {
	if strings.HasPrefix(strings.ToLower(p), "/api/v1.0/") {
		return p[:len("/api/v1.0")]
	}
	return "/api"
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	s.mu.Lock()
	a, ok := s.alertIdx[c.params[0]]
	var ent mde.Alert
	if ok {
		ent = alertEntity(a, true)
	}
	s.mu.Unlock()
	if !ok {
		return errNotFound(fmt.Sprintf("Alert %s was not found", c.params[0]))
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#Alerts/$entity", ent))
	return nil
}

func (s *Server) alertMachine(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alertIdx[c.params[0]]
	if !ok {
		return errNotFound(fmt.Sprintf("Alert %s was not found", c.params[0]))
	}
	m, ok := s.lookupMachineLocked(a.MachineID, false)
	if !ok {
		return errNotFound(fmt.Sprintf("Machine %s was not found", a.MachineID))
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#Machines/$entity", m))
	return nil
}

// Determination values per classification (alerts.md; update-alert.md's
// alternative names ConfirmedActivity/NotMalicious accepted too [GAP]).
var determinations = map[string][]string{
	"TruePositive":                  {"MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing", "UnwantedSoftware", "Other"},
	"InformationalExpectedActivity": {"SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "ConfirmedActivity", "Other"},
	"FalsePositive":                 {"Clean", "NotMalicious", "InsufficientData", "Other"},
}

func (s *Server) patchAlert(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	body, e := jsonBody(r)
	if e != nil {
		return e
	}
	if len(body) == 0 {
		return errBadRequest("InvalidRequestBody", "Request body must contain at least one of status, assignedTo, classification, determination, comment.")
	}
	allowed := map[string]bool{"status": true, "assignedTo": true, "classification": true, "determination": true, "comment": true}
	for k := range body {
		if !allowed[k] {
			return errBadRequest("InvalidRequestBody", fmt.Sprintf("Request body contains the unknown property '%s'. Updatable properties: status, assignedTo, classification, determination, comment.", k))
		}
	}
	str := func(name string) (*string, bool, *apiError) {
		v, present := body[name]
		if !present {
			return nil, false, nil
		}
		if v == nil {
			return nil, true, nil
		}
		sv, ok := v.(string)
		if !ok {
			return nil, true, errBadRequest("InvalidRequestBody", fmt.Sprintf("Property '%s' must be a string.", name))
		}
		return &sv, true, nil
	}
	status, hasStatus, e := str("status")
	if e != nil {
		return e
	}
	if hasStatus && (status == nil || !oneOf(*status, "New", "InProgress", "Resolved")) {
		return errBadRequest("InvalidInput", fmt.Sprintf("Invalid status '%s'. Valid values: New, InProgress, Resolved.", deref(status)))
	}
	assigned, hasAssigned, e := str("assignedTo")
	if e != nil {
		return e
	}
	class, hasClass, e := str("classification")
	if e != nil {
		return e
	}
	if hasClass && class != nil {
		if _, ok := determinations[*class]; !ok {
			return errBadRequest("InvalidInput", fmt.Sprintf("Invalid classification '%s'. Valid values: TruePositive, InformationalExpectedActivity, FalsePositive.", *class))
		}
	}
	det, hasDet, e := str("determination")
	if e != nil {
		return e
	}
	comment, _, e := str("comment")
	if e != nil {
		return e
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alertIdx[c.params[0]]
	if !ok {
		return errNotFound(fmt.Sprintf("Alert %s was not found", c.params[0]))
	}
	effClass := a.Classification
	if hasClass {
		effClass = class
	}
	if hasDet && det != nil {
		if effClass == nil {
			return errBadRequest("InvalidInput", "A determination requires a classification.")
		}
		if !oneOf(*det, determinations[*effClass]...) {
			return errBadRequest("InvalidInput", fmt.Sprintf("Invalid determination '%s' for classification '%s'. Valid values: %s.", *det, *effClass, strings.Join(determinations[*effClass], ", ")))
		}
	}
	now := s.now()
	if hasStatus {
		if *status == "Resolved" && a.Status != "Resolved" {
			a.ResolvedTime = &now
		} else if *status != "Resolved" {
			a.ResolvedTime = nil
		}
		a.Status = *status
	}
	if hasAssigned {
		a.AssignedTo = assigned
	}
	if hasClass {
		a.Classification = class
		if !hasDet && class == nil {
			a.Determination = nil
		}
	}
	if hasDet {
		a.Determination = det
	}
	if comment != nil && *comment != "" {
		a.Comments = append(a.Comments, mde.AlertComment{Comment: *comment, CreatedBy: c.who.AppID, CreatedTime: &now})
	}
	a.LastUpdateTime = &now
	if s.postCommitFaultLocked() {
		return errPostCommit()
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#Alerts/$entity", alertEntity(a, true)))
	return nil
}

// --- machines ---

var machineSchema = newSchema("microsoft.windowsDefenderATP.api.PublicMachine",
	field{JSON: "id"},
	field{JSON: "computerDnsName"},
	field{JSON: "version"},
	field{JSON: "deviceValue", Kind: kEnum, Enum: []string{"Normal", "Low", "High"}},
	field{JSON: "aadDeviceId"},
	field{JSON: "machineTags", Kind: kStringList},
	field{JSON: "lastSeen", Kind: kDateTime},
	field{JSON: "firstSeen", Kind: kDateTime},
	field{JSON: "exposureLevel", Kind: kEnum, Enum: []string{"None", "Low", "Medium", "High"}},
	field{JSON: "onboardingStatus"},
	field{JSON: "lastIpAddress"},
	field{JSON: "healthStatus", Kind: kEnum, Enum: []string{"Active", "Inactive", "ImpairedCommunication", "NoSensorData", "NoSensorDataImpairedCommunication", "Unknown"}},
	field{JSON: "osPlatform"},
	field{JSON: "riskScore", Kind: kEnum, Enum: []string{"None", "Informational", "Low", "Medium", "High"}},
	field{JSON: "rbacGroupId", Kind: kInt},
)

// lookupMachineLocked finds a machine by id, or (byName) by computer DNS
// name or its first label, case-insensitively.
func (s *Server) lookupMachineLocked(key string, byName bool) (*mde.Machine, bool) {
	if m, ok := s.machineIdx[strings.ToLower(key)]; ok {
		return m, true
	}
	if !byName {
		return nil, false
	}
	for _, m := range s.machines {
		if strings.EqualFold(m.ComputerDNSName, key) {
			return m, true
		}
	}
	return nil, false
}

func (s *Server) listMachines(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	lq, err := parseListQuery(r.URL.Query(), listSpec{sch: machineSchema, maxTop: maxMDEPage})
	if err != nil {
		return err
	}
	s.mu.Lock()
	ents := make([]item, 0, len(s.machines))
	for _, m := range s.machines {
		ents = append(ents, newItem(*m))
	}
	s.mu.Unlock()
	s.writeList(w, r, c.root, "Machines", lq, ents, s.opts.PageSize)
	return nil
}

func (s *Server) getMachine(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	s.mu.Lock()
	m, ok := s.lookupMachineLocked(c.params[0], true)
	var ent mde.Machine
	if ok {
		ent = *m
	}
	s.mu.Unlock()
	if !ok {
		return errNotFound(fmt.Sprintf("Machine %s was not found", c.params[0]))
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#Machines/$entity", ent))
	return nil
}

func (s *Server) tagMachine(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	body, e := jsonBody(r)
	if e != nil {
		return e
	}
	value, e := requiredString(body, "Value")
	if e != nil {
		return e
	}
	action, e := requiredString(body, "Action")
	if e != nil {
		return e
	}
	if action != "Add" && action != "Remove" {
		return errBadRequest("InvalidRequestBody", fmt.Sprintf("Action '%s' is not valid. Valid values: Add, Remove.", action))
	}
	if err := mde.ValidateTag(value); err != nil {
		return errBadRequest("InvalidInput", "Tag value must be 1 to 200 printable characters.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.lookupMachineLocked(c.params[0], false)
	if !ok {
		return errNotFound(fmt.Sprintf("Machine %s was not found", c.params[0]))
	}
	idx := -1
	for i, t := range m.MachineTags {
		if t == value {
			idx = i
		}
	}
	switch {
	case action == "Add" && idx < 0:
		m.MachineTags = append(m.MachineTags, value)
	case action == "Remove" && idx >= 0:
		m.MachineTags = append(m.MachineTags[:idx:idx], m.MachineTags[idx+1:]...)
	}
	if s.postCommitFaultLocked() {
		return errPostCommit()
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#Machines/$entity", m))
	return nil
}

// --- machine actions ---

func actionHandler(typ string) mdeHandler {
	return func(s *Server, w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
		return s.createAction(w, r, c, typ)
	}
}

func (s *Server) createAction(w http.ResponseWriter, r *http.Request, c *mdeCtx, typ string) *apiError {
	machineKey := strings.ToLower(c.params[0])
	if typ == mde.ActionTypeIsolate {
		s.mu.Lock()
		s.isoTotal[machineKey]++
		s.mu.Unlock()
	}
	body, e := jsonBody(r)
	if e != nil {
		return e
	}
	comment, e := requiredString(body, "Comment")
	if e != nil {
		return e
	}
	var scope *string
	switch typ {
	case mde.ActionTypeIsolate:
		it := mde.IsolationFull
		if v, present := body["IsolationType"]; present && v != nil {
			sv, ok := v.(string)
			if !ok || !oneOf(sv, mde.IsolationFull, mde.IsolationSelective, "UnManagedDevice") {
				return errBadRequest("InvalidRequestBody", fmt.Sprintf("IsolationType '%v' is not valid. Valid values: Full, Selective, UnManagedDevice.", v))
			}
			it = sv
		}
		scope = &it
	case mde.ActionTypeRunAntiVirusScan:
		st, e := requiredString(body, "ScanType")
		if e != nil {
			return e
		}
		if st != "Quick" && st != "Full" {
			return errBadRequest("InvalidRequestBody", fmt.Sprintf("ScanType '%s' is not valid. Valid values: Quick, Full.", st))
		}
		scope = &st
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.lookupMachineLocked(c.params[0], false)
	if !ok {
		return errNotFound(fmt.Sprintf("Machine %s was not found", c.params[0]))
	}
	sc := ""
	if scope != nil {
		sc = *scope
	}
	if sc == "UnManagedDevice" && strings.EqualFold(m.OnboardingStatus, "Onboarded") {
		return errBadRequest("InvalidInput", "IsolationType UnManagedDevice applies only to devices that are not onboarded.")
	}
	if sc != "UnManagedDevice" && !osSupports(m, typ, sc) {
		return errBadRequest("OsPlatformNotSupported", fmt.Sprintf("OS Platform %s isn't supported for this action", m.OSPlatform))
	}
	now := s.now()
	if s.activeActionLocked(strings.ToLower(m.ID), typ, now) != nil {
		return errBadRequest("ActiveRequestAlreadyExists", "Action is already in progress")
	}
	created := now
	rec := &actionRec{
		a: mde.MachineAction{
			ID:                  uuid.NewString(),
			Type:                typ,
			Scope:               scope,
			Requestor:           c.who.AppID,
			RequestorComment:    comment,
			MachineID:           m.ID,
			ComputerDNSName:     m.ComputerDNSName,
			CreationDateTimeUtc: &created,
			RequestSource:       "PublicApi",
		},
		created: now,
		step:    s.opts.ActionStep,
		timeout: s.opts.ActionTimeout,
		fate:    mde.ActionSucceeded,
	}
	switch {
	case s.faults.TimeoutActions:
		rec.fate = mde.ActionTimeOut
	case s.faults.FailActions:
		rec.fate = mde.ActionFailed
	}
	s.actions = append(s.actions, rec)
	s.actionIdx[strings.ToLower(rec.a.ID)] = rec
	if typ == mde.ActionTypeIsolate {
		s.isoAccepted[strings.ToLower(m.ID)]++
	}
	if s.postCommitFaultLocked() {
		return errPostCommit()
	}
	writeOData(w, http.StatusCreated, contentTypeOData, withContext(c.root+"/$metadata#MachineActions/$entity", rec.entity(now)))
	return nil
}

var actionSchema = newSchema("microsoft.windowsDefenderATP.api.MachineAction",
	field{JSON: "id"},
	field{JSON: "status", Kind: kEnum, Enum: []string{mde.ActionPending, mde.ActionInProgress, mde.ActionSucceeded, mde.ActionFailed, mde.ActionTimeOut, mde.ActionCancelled}},
	field{JSON: "machineId"},
	field{JSON: "type", Kind: kEnum, Enum: []string{"RunAntiVirusScan", "Offboard", "LiveResponse", "CollectInvestigationPackage", "Isolate", "Unisolate", "StopAndQuarantineFile", "RestrictCodeExecution", "UnrestrictCodeExecution"}},
	field{JSON: "requestor"},
	field{JSON: "creationDateTimeUtc", Kind: kDateTime},
	field{JSON: "lastUpdateDateTimeUtc", Kind: kDateTime},
)

func (s *Server) listActions(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	lq, err := parseListQuery(r.URL.Query(), listSpec{sch: actionSchema, maxTop: maxMDEPage})
	if err != nil {
		return err
	}
	s.mu.Lock()
	now := s.now()
	ents := make([]item, 0, len(s.actions))
	for _, a := range s.actions {
		ents = append(ents, newItem(a.entity(now)))
	}
	s.mu.Unlock()
	s.writeList(w, r, c.root, "MachineActions", lq, ents, s.opts.PageSize)
	return nil
}

func guidKeyError(id string) *apiError {
	return errBadRequest("BadRequest", fmt.Sprintf("The key value (%s) from request is not valid. The key value should be format of type 'Edm.Guid'.", id))
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	id := c.params[0]
	if !guidRe.MatchString(id) {
		return guidKeyError(id)
	}
	s.mu.Lock()
	rec, ok := s.actionIdx[strings.ToLower(id)]
	var ent actionEntity
	if ok {
		ent = rec.entity(s.now())
	}
	s.mu.Unlock()
	if !ok {
		return errNotFound(fmt.Sprintf("Machine action %s was not found", id))
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#MachineActions/$entity", ent))
	return nil
}

func (s *Server) cancelAction(w http.ResponseWriter, r *http.Request, c *mdeCtx) *apiError {
	id := c.params[0]
	if !guidRe.MatchString(id) {
		return guidKeyError(id)
	}
	body, e := jsonBody(r)
	if e != nil {
		return e
	}
	comment, e := requiredString(body, "Comment")
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.actionIdx[strings.ToLower(id)]
	if !ok {
		return errNotFound(fmt.Sprintf("Machine action %s was not found", id))
	}
	now := s.now()
	if st, _ := rec.statusAt(now); mde.IsFinalActionStatus(st) {
		return errBadRequest("BadRequest", fmt.Sprintf("Machine action %s is in the final state %s and cannot be cancelled.", id, st))
	}
	at := now
	who := c.who.AppID
	rec.cancelledAt = &at
	rec.a.CancellationRequestor = &who
	rec.a.CancellationComment = &comment
	rec.a.CancellationDateTimeUtc = &at
	if s.postCommitFaultLocked() {
		return errPostCommit()
	}
	writeOData(w, http.StatusOK, contentTypeOData, withContext(c.root+"/$metadata#MachineActions/$entity", rec.entity(now)))
	return nil
}

// --- request body helpers ---

// jsonBody decodes a JSON object body. POST/PATCH need Content-Type
// application/json (defender-api.md §1.1).
func jsonBody(r *http.Request) (map[string]any, *apiError) {
	body, _, e := jsonBodyRaw(r)
	return body, e
}

// jsonBodyRaw is jsonBody that also returns the bytes as sent.
func jsonBodyRaw(r *http.Request) (map[string]any, []byte, *apiError) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" {
		return nil, nil, &apiError{Status: http.StatusUnsupportedMediaType, Code: "UnsupportedMediaType", Message: fmt.Sprintf("The request entity's media type '%s' is not supported for this resource; use application/json.", ct)}
	}
	raw, err := readBody(r)
	if err != nil {
		return nil, nil, errBadRequest("InvalidRequestBody", "The request body could not be read.")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil, errBadRequest("InvalidRequestBody", "The request body is empty.")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil || body == nil || dec.More() {
		return nil, nil, errBadRequest("InvalidRequestBody", "The request body is not a valid JSON object.")
	}
	return body, raw, nil
}

// requiredString reads a case-sensitive string parameter (common-errors.md:
// body parameter names are case-sensitive).
func requiredString(body map[string]any, name string) (string, *apiError) {
	v, ok := body[name]
	if !ok || v == nil {
		return "", errBadRequest("MissingRequiredParameter", fmt.Sprintf("Parameter %s is missing", name))
	}
	s, ok := v.(string)
	if !ok {
		return "", errBadRequest("InvalidRequestBody", fmt.Sprintf("Parameter %s must be a string", name))
	}
	if strings.TrimSpace(s) == "" {
		return "", errBadRequest("MissingRequiredParameter", fmt.Sprintf("Parameter %s is missing", name))
	}
	return s, nil
}

func oneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

func deref(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

// --- JSON envelopes ---

// kv/orderedObject keep "@odata.context" first, as the service sends it.
type kv struct {
	k string
	v any
}

type orderedObject []kv

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(p.k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(p.v)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// withContext encodes ent (a struct or map) with "@odata.context" first.
type withContextObj struct {
	ctx string
	ent any
}

func withContext(ctx string, ent any) withContextObj { return withContextObj{ctx, ent} }

func (o withContextObj) MarshalJSON() ([]byte, error) {
	eb, err := json.Marshal(o.ent)
	if err != nil {
		return nil, err
	}
	cb, err := json.Marshal(o.ctx)
	if err != nil {
		return nil, err
	}
	eb = bytes.TrimSpace(eb)
	if len(eb) < 2 || eb[0] != '{' {
		return nil, fmt.Errorf("encoding entity: not a JSON object")
	}
	var b bytes.Buffer
	b.WriteString(`{"@odata.context":`)
	b.Write(cb)
	if inner := bytes.TrimSpace(eb[1 : len(eb)-1]); len(inner) > 0 {
		b.WriteByte(',')
		b.Write(inner)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
