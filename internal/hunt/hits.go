package hunt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
)

// Limits of what leaves the package in messages.
const (
	DefaultDigestRows = 20
	maxCellRunes      = 512
	maxTitleRunes     = 256
	maxEvidence       = 20
	maxDescription    = 4000
	// maxDigestColumns and maxDigestJSON bound a digest, which travels as
	// one Service Bus message (256 KiB on the standard tier) with the rest
	// of its notification; the renderers show 20 columns at most anyway.
	maxDigestColumns = 20
	maxDigestJSON    = 96 << 10
	// maxEvidenceJSON bounds the evidence of a device alert (one queue
	// message, one store record).
	maxEvidenceJSON = 64 << 10
	// DetectionSourceHunt is the detectionSource of synthetic hunt alerts.
	DetectionSourceHunt = "CustomDetection"
	// AlertSourceHunt is AlertMessage.Source for hunt alerts.
	AlertSourceHunt = "hunt"
)

// Digest builds the one notification of a run: the new rows (capped at
// maxRows, DefaultDigestRows when <= 0) with values as strings. It returns
// nil when there is nothing to say: a failed or skipped run, a run that did
// not trigger, or a triggered run whose rows were all reported before. A
// triggered run with no rows at all (operator lt/eq on an absence) gives a
// digest without rows.
func Digest(r RunReport, maxRows int) *pipeline.HuntDigest {
	if r.Err != nil || r.Skipped != "" || !r.Triggered {
		return nil
	}
	if len(r.NewRows) == 0 && r.TotalRows > 0 {
		return nil
	}
	if maxRows <= 0 {
		maxRows = DefaultDigestRows
	}
	d := &pipeline.HuntDigest{
		HuntID: r.HuntID, Name: cleanText(r.Name, maxTitleRunes), Severity: cleanText(r.Severity, 32), RunAt: r.RanAt,
		Columns: append([]string{}, r.Columns...), Rows: []map[string]string{},
		TotalRows: r.TotalRows, NewRows: len(r.NewRows),
	}
	cols := r.Columns
	if len(cols) == 0 && len(r.NewRows) > 0 {
		for k := range r.NewRows[0] {
			cols = append(cols, k)
		}
		sort.Strings(cols)
		d.Columns = cols
	}
	if len(cols) > maxDigestColumns {
		cols = cols[:maxDigestColumns]
		d.Columns = append([]string{}, cols...)
	}
	// Cells are attacker-influenced: rows that would take the digest (one
	// Service Bus message) past maxDigestJSON are left out of the table;
	// NewRows and TotalRows keep the true counts.
	size := 0
	if b, err := json.Marshal(d); err == nil {
		size = len(b)
	}
	for i, row := range r.NewRows {
		if i >= maxRows {
			break
		}
		out := make(map[string]string, len(cols))
		for _, c := range cols {
			out[c] = cellString(row[c])
		}
		b, err := json.Marshal(out)
		if err != nil || size+len(b)+1 > maxDigestJSON {
			break
		}
		size += len(b) + 1
		d.Rows = append(d.Rows, out)
	}
	return d
}

// cellString renders a cell for people: strings as they are, numbers in
// their JSON form, dynamic values as compact JSON, null as "". Control
// characters are replaced and the length is capped.
func cellString(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			s = fmt.Sprint(x)
		} else {
			s = string(b)
		}
	}
	return cleanText(s, maxCellRunes)
}

// cleanText replaces control characters (other than tab and newline) and
// invalid UTF-8, and caps the length in runes.
func cleanText(s string, maxRunes int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n >= maxRunes {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			r = '\uFFFD'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// SkippedRow is a new row DeviceAlerts could not turn into an alert.
type SkippedRow struct {
	// Row is the index in RunReport.NewRows.
	Row    int
	Reason string
}

// HuntAlertID is the deterministic id of the synthetic alert of one hunt
// slot on one device: "hunt-" and 24 hex characters of SHA-256 over the
// three. A redelivered or repeated run of the same slot gives the same id.
func HuntAlertID(huntID, machineID string, slot time.Time) string {
	sum := sha256.Sum256([]byte(huntID + "\x00" + strings.ToLower(machineID) + "\x00" + slot.UTC().Format(time.RFC3339Nano)))
	return pipeline.HuntAlertPrefix + hex.EncodeToString(sum[:12])
}

// DeviceAlerts turns the new rows of a run into one synthetic alert per
// device when the hunt has onHits.raiseAlerts. Rows are grouped by the
// device id column (DeviceId by default); rows whose id is missing or is not
// a valid machine id are returned as skipped, not guessed. Alerts are in
// device id order.
func DeviceAlerts(h Hunt, r RunReport, now time.Time) ([]pipeline.AlertMessage, []SkippedRow) {
	ra := h.OnHits.RaiseAlerts
	if ra == nil || r.Err != nil || len(r.NewRows) == 0 {
		return nil, nil
	}
	idCol, nameCol := ra.DeviceIDColumn, ra.DeviceNameColumn
	if idCol == "" {
		idCol = "DeviceId"
	}
	if nameCol == "" {
		nameCol = "DeviceName"
	}
	var skipped []SkippedRow
	groups := map[string][]map[string]any{}
	for i, row := range r.NewRows {
		raw, ok := row[idCol]
		if !ok || raw == nil {
			skipped = append(skipped, SkippedRow{Row: i, Reason: "no " + idCol + " column value"})
			continue
		}
		s, isString := raw.(string)
		id := strings.ToLower(strings.TrimSpace(s))
		if !isString || mde.ValidateMachineID(id) != nil {
			skipped = append(skipped, SkippedRow{Row: i, Reason: fmt.Sprintf("%s %q is not a machine id", idCol, cellString(raw))})
			continue
		}
		groups[id] = append(groups[id], row)
	}
	ids := make([]string, 0, len(groups))
	for id := range groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	severity := mde.SeverityMedium
	if s, ok := mdeSeverity(ra.Severity); ok {
		severity = s
	} else if s, ok := mdeSeverity(h.Severity); ok {
		severity = s
	}
	tmpl, _ := parseTitleTemplate(ra.TitleTemplate)
	created := now.UTC()
	var out []pipeline.AlertMessage
	for _, id := range ids {
		rows := groups[id]
		name := ""
		for _, row := range rows {
			if n := strings.TrimSpace(cellString(row[nameCol])); n != "" {
				name = cleanText(n, 255)
				break
			}
		}
		title := h.Name
		if tmpl != nil {
			var b strings.Builder
			data := AlertTitleData{HuntID: h.ID, Name: h.Name, Severity: severity, DeviceID: id, DeviceName: name, Rows: len(rows)}
			if err := tmpl.Execute(&b, data); err == nil && strings.TrimSpace(b.String()) != "" {
				title = b.String()
			}
		}
		if strings.TrimSpace(title) == "" {
			title = "Hunt " + h.ID
		}
		first, last := eventSpan(rows)
		a := &mde.Alert{
			ID:                HuntAlertID(h.ID, id, r.Slot),
			Severity:          severity,
			Status:            "New",
			DetectionSource:   DetectionSourceHunt,
			DetectorID:        h.ID,
			Category:          category(h.Tactics),
			Title:             cleanText(title, maxTitleRunes),
			Description:       alertDescription(h, r, len(rows)),
			AlertCreationTime: &created,
			FirstEventTime:    first,
			LastEventTime:     last,
			MachineID:         id,
			ComputerDNSName:   name,
			MitreTechniques:   append([]string{}, h.RelevantTechniques...),
			Comments:          []mde.AlertComment{},
			Evidence:          evidenceOf(rows, created),
		}
		out = append(out, pipeline.AlertMessage{ID: a.ID, MachineID: id, Source: AlertSourceHunt, Alert: a})
	}
	return out, skipped
}

func alertDescription(h Hunt, r RunReport, rows int) string {
	var b strings.Builder
	if d := strings.TrimSpace(h.Description); d != "" {
		b.WriteString(d)
		b.WriteString("\n\n")
	}
	fmt.Fprintf(&b, "Raised by mdeflow hunt %s: %d new row(s) for this device", h.ID, rows)
	if r.Period > 0 {
		fmt.Fprintf(&b, " in the last %s", humanDuration(r.Period))
	}
	b.WriteString(".")
	return cleanText(b.String(), maxDescription)
}

// category maps the first tactic to an MDE alert category
// ("Credential Access" -> "CredentialAccess"); no tactic gives
// "SuspiciousActivity".
func category(tactics []string) string {
	for _, t := range tactics {
		var b strings.Builder
		for _, w := range strings.FieldsFunc(t, func(r rune) bool { return r == ' ' || r == '-' || r == '_' }) {
			r, size := utf8.DecodeRuneInString(w)
			b.WriteRune(unicode.ToUpper(r))
			b.WriteString(w[size:])
		}
		if b.Len() > 0 {
			return cleanText(b.String(), 64)
		}
	}
	return "SuspiciousActivity"
}

// eventSpan returns the earliest and latest Timestamp of the rows.
func eventSpan(rows []map[string]any) (*time.Time, *time.Time) {
	var first, last *time.Time
	for _, row := range rows {
		t := rowTime(row, "Timestamp")
		if t == nil {
			continue
		}
		if first == nil || t.Before(*first) {
			first = t
		}
		if last == nil || t.After(*last) {
			last = t
		}
	}
	return first, last
}

func rowTime(row map[string]any, col string) *time.Time {
	s, ok := row[col].(string)
	if !ok {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

func rowString(row map[string]any, col string) *string {
	v, ok := row[col]
	if !ok || v == nil {
		return nil
	}
	s := strings.TrimSpace(cellString(v))
	if s == "" {
		return nil
	}
	return &s
}

func rowInt(row map[string]any, col string) *int64 {
	switch x := row[col].(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return &i
		}
	case float64:
		i := int64(x)
		return &i
	case string:
		if i, err := strconv.ParseInt(x, 10, 64); err == nil {
			return &i
		}
	}
	return nil
}

// dirOf turns an advanced hunting FolderPath (which includes the file name
// in the process tables) into the directory the MDE evidence filePath holds.
func dirOf(folder, file *string) *string {
	if folder == nil {
		return nil
	}
	d := *folder
	if file != nil && len(d) > len(*file) && strings.EqualFold(d[len(d)-len(*file):], *file) {
		d = strings.TrimRight(d[:len(d)-len(*file)], `\/`)
	}
	return &d
}

// evidenceOf builds MDE-shaped evidence from hunting columns: a Process (or
// File) entity from FileName/FolderPath/SHA1/SHA256/ProcessId/
// ProcessCommandLine and the InitiatingProcess* parent, a User from
// AccountName/AccountDomain/AccountSid/AccountUpn, an Ip from RemoteIP, a
// Url from RemoteUrl, a Registry entity from RegistryKey. Duplicates are
// dropped and the list is capped.
func evidenceOf(rows []map[string]any, now time.Time) []mde.Evidence {
	var out []mde.Evidence
	seen := map[string]bool{}
	size := 0
	add := func(e mde.Evidence) {
		key, _ := json.Marshal(e)
		// Cells are attacker-influenced: the alert (one queue message,
		// one store record) keeps the evidence that fits maxEvidenceJSON.
		if seen[string(key)] || len(out) >= maxEvidence || size+len(key) > maxEvidenceJSON {
			return
		}
		seen[string(key)] = true
		size += len(key)
		out = append(out, e)
	}
	for _, row := range rows {
		fileName := rowString(row, "FileName")
		cmd := rowString(row, "ProcessCommandLine")
		pid := rowInt(row, "ProcessId")
		sha1, sha256 := rowString(row, "SHA1"), rowString(row, "SHA256")
		if fileName != nil || cmd != nil || pid != nil || sha1 != nil || sha256 != nil {
			e := mde.Evidence{EntityType: "File", FileName: fileName, Sha1: sha1, Sha256: sha256,
				FilePath: dirOf(rowString(row, "FolderPath"), fileName)}
			if cmd != nil || pid != nil {
				parent := rowString(row, "InitiatingProcessFileName")
				e.EntityType = "Process"
				e.ProcessCommandLine = cmd
				e.ProcessID = pid
				e.ProcessCreationTime = rowTime(row, "ProcessCreationTime")
				e.ParentProcessFileName = parent
				e.ParentProcessFilePath = dirOf(rowString(row, "InitiatingProcessFolderPath"), parent)
				e.ParentProcessID = rowInt(row, "InitiatingProcessId")
				e.ParentProcessCreationTime = rowTime(row, "InitiatingProcessCreationTime")
			}
			add(e)
		}
		if acct := rowString(row, "AccountName"); acct != nil {
			add(mde.Evidence{EntityType: "User", AccountName: acct, DomainName: rowString(row, "AccountDomain"),
				UserSid: rowString(row, "AccountSid"), UserPrincipalName: rowString(row, "AccountUpn"),
				AadUserID: rowString(row, "AccountObjectId")})
		}
		if ip := rowString(row, "RemoteIP"); ip != nil {
			add(mde.Evidence{EntityType: "Ip", IPAddress: ip})
		}
		if u := rowString(row, "RemoteUrl"); u != nil {
			add(mde.Evidence{EntityType: "Url", URL: u})
		}
		if k := rowString(row, "RegistryKey"); k != nil {
			add(mde.Evidence{EntityType: "Registry", RegistryKey: k, RegistryValueName: rowString(row, "RegistryValueName"),
				RegistryValue: rowString(row, "RegistryValueData"), RegistryValueType: rowString(row, "RegistryValueType")})
		}
	}
	for i := range out {
		t := now
		out[i].EvidenceCreationTime = &t
	}
	return out
}
