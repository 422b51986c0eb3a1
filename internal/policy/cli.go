package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
	"github.com/mdeflow/mdeflow/internal/pipeline"
	"github.com/mdeflow/mdeflow/internal/termsafe"
)

// maxInputBytes bounds an alert or machine file read by RunTest.
const maxInputBytes = 64 << 20

// RunCheck is "policy check FILE": it loads the policy and prints
// "ok: N rules, version X", or every problem, one per line. The error is
// non-nil when the policy is not valid (the subcommand exits non-zero).
func RunCheck(w io.Writer, path string) error {
	p, err := Load(path)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintf(w, "%s: %d problem(s)\n", termSafe(path), len(ve.Problems))
			for _, pr := range ve.Problems {
				fmt.Fprintf(w, "  - %s\n", termSafe(pr.Error()))
			}
		} else {
			fmt.Fprintf(w, "error: %s\n", termSafe(err.Error()))
		}
		return err
	}
	_, err = fmt.Fprintf(w, "ok: %d rules, version %s\n", len(p.Rules), p.Version)
	return err
}

// RunTest is "policy test --alert FILE [--machine FILE] [--policy FILE]":
// it evaluates the policy (Default() when p is nil) on every alert of
// alertFile and prints, per alert, its id and title, the rule that fires,
// the actions, and what the isolation guards would say. It calls nothing.
//
// alertFile holds one MDE alert, an MDE list page {"value": [...]} or a
// JSON array of alerts. Microsoft Graph alerts_v2 records are skipped with
// a message. machineFile (optional) holds one MDE machine, a list page or
// an array; the guards use the machine whose id is the alert's machineId,
// and count the machines of the file that carry its name. They assume no
// isolation is in progress, the breaker is closed and the deployment is not
// in dry-run mode.
func RunTest(w io.Writer, p *Policy, alertFile, machineFile string, now time.Time) error {
	if p == nil {
		p = Default()
	}
	items, err := readItems(alertFile)
	if err != nil {
		return fmt.Errorf("reading alerts: %w", err)
	}
	var machines []mde.Machine
	if machineFile != "" {
		raw, err := readItems(machineFile)
		if err != nil {
			return fmt.Errorf("reading machines: %w", err)
		}
		for i, r := range raw {
			var m mde.Machine
			if err := json.Unmarshal(r.data, &m); err != nil {
				return fmt.Errorf("reading machines: item %d of %s: %w", i, filepath.Base(machineFile), err)
			}
			machines = append(machines, m)
		}
	}

	out := &printer{w: w}
	out.printf("policy %s (%s): %d rules; evaluated at %s\n", p.Version, filepath.Base(p.Source), len(p.Rules), now.UTC().Format(time.RFC3339))
	if machineFile == "" {
		out.printf("machines: none given: guards that need the machine are not evaluated\n")
	} else {
		out.printf("machines: %d from %s\n", len(machines), filepath.Base(machineFile))
	}
	out.printf("assumed: no isolation action in progress, breaker closed, deployment dry run off\n")

	evaluated, skipped := 0, 0
	for i, it := range items {
		out.printf("\n")
		if it.graph {
			skipped++
			out.printf("alert #%d %s\n", i+1, termSafe(clip(graphID(it.data), 128)))
			out.printf("  skipped:  Microsoft Graph alerts_v2 record; mdeflow evaluates MDE API alerts (map it to an MDE alert first)\n")
			continue
		}
		var a mde.Alert
		if err := json.Unmarshal(it.data, &a); err != nil {
			skipped++
			out.printf("alert #%d\n  skipped:  cannot decode it as an MDE alert: %s\n", i+1, termSafe(err.Error()))
			continue
		}
		out.printf("alert %s\n", termSafe(clip(a.ID, 128)))
		out.field("title", clip(a.Title, 200))
		if err := mde.ValidateAlertID(a.ID); err != nil {
			skipped++
			out.field("skipped", "invalid alert id: the pipeline rejects this alert")
			continue
		}
		evaluated++
		out.field("alert", fmt.Sprintf("severity %s, category %s, detection source %s", orNone(a.Severity), orNone(a.Category), orNone(a.DetectionSource)))
		m, nameMatches := findMachine(machines, a.MachineID)
		switch {
		case m != nil:
			line := fmt.Sprintf("%s (%s), %s", m.ID, orNone(m.ComputerDNSName), orNone(m.OSPlatform))
			if reason, prot := p.IsProtected(m); prot {
				line += "; protected: " + reason
			}
			out.field("machine", line)
		case machineFile != "":
			out.field("machine", fmt.Sprintf("%s (%s): not in the machine file", orNone(a.MachineID), orNone(a.ComputerDNSName)))
		default:
			out.field("machine", fmt.Sprintf("%s (%s)", orNone(a.MachineID), orNone(a.ComputerDNSName)))
		}

		d := p.Evaluate(&a, m, now)
		rule := d.RuleID
		if d.RuleName != "" {
			rule += " (" + d.RuleName + ")"
		}
		out.field("rule", rule)
		out.field("reason", d.Reason)
		out.field("actions", formatActions(d))
		out.field("dry run", yesNo(d.DryRun))
		out.field("guards", guardLine(p, d, &a, m, nameMatches, now))
	}
	out.printf("\nsummary: %d alert(s) evaluated, %d skipped\n", evaluated, skipped)
	return out.err
}

func guardLine(p *Policy, d pipeline.Decision, a *mde.Alert, m *mde.Machine, nameMatches int, now time.Time) string {
	req, isolates := RequestFor(d, a, m, now)
	if !isolates {
		return "not needed (the decision does not isolate)"
	}
	if m == nil {
		return "machine unknown: guards that need the machine are not evaluated"
	}
	o, ok := CheckIsolation(p, GuardInput{Request: req, Machine: m, NameMatches: nameMatches, Now: now})
	if ok {
		return fmt.Sprintf("pass: isolate (%s) would be called on %s", req.IsolationType, m.ID)
	}
	return fmt.Sprintf("%s by %s: %s", o.Kind, o.Guard, o.Reason)
}

func findMachine(machines []mde.Machine, id string) (*mde.Machine, int) {
	if id == "" {
		return nil, 0
	}
	for i := range machines {
		if strings.EqualFold(machines[i].ID, id) {
			m := &machines[i]
			n := 0
			for _, o := range machines {
				if m.ComputerDNSName != "" && strings.EqualFold(o.ComputerDNSName, m.ComputerDNSName) {
					n++
				}
			}
			return m, n
		}
	}
	return nil, 0
}

func formatActions(d pipeline.Decision) string {
	var parts []string
	for _, a := range d.Actions {
		var args []string
		switch a.Type {
		case pipeline.ActionIsolate:
			args = append(args, a.IsolationType)
			if a.RequireApproval {
				args = append(args, "requireApproval")
			}
		case pipeline.ActionAVScan:
			args = append(args, a.ScanType)
		case pipeline.ActionTag:
			args = append(args, fmt.Sprintf("%q", a.Tag))
		case pipeline.ActionUpdateAlert:
			for _, kv := range [][2]string{{"status", a.Status}, {"assignedTo", a.AssignedTo}, {"classification", a.Classification}, {"determination", a.Determination}, {"comment", a.Comment}} {
				if kv[1] != "" {
					args = append(args, fmt.Sprintf("%s=%q", kv[0], clip(kv[1], 60)))
				}
			}
		case pipeline.ActionNotify:
			args = append(args, d.Channels...)
		}
		if a.DryRun {
			args = append(args, "dryRun")
		}
		parts = append(parts, a.Type+"("+strings.Join(args, ", ")+")")
	}
	return strings.Join(parts, ", ")
}

type item struct {
	data  json.RawMessage
	graph bool
}

// readItems reads a JSON file holding one object, a list page
// {"value": [...]} or an array, and marks Microsoft Graph records.
func readItems(path string) ([]item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxInputBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxInputBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a BOM from Windows editors
	trimmed := bytes.TrimSpace(data)
	var raws []json.RawMessage
	pageGraph := false
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", filepath.Base(path), err)
		}
	case len(trimmed) > 0 && trimmed[0] == '{':
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &probe); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", filepath.Base(path), err)
		}
		if v, ok := probe["value"]; ok && len(bytes.TrimSpace(v)) > 0 && bytes.TrimSpace(v)[0] == '[' {
			if err := json.Unmarshal(v, &raws); err != nil {
				return nil, fmt.Errorf("decoding %s: value: %w", filepath.Base(path), err)
			}
			var ctx string
			_ = json.Unmarshal(probe["@odata.context"], &ctx)
			pageGraph = strings.Contains(strings.ToLower(ctx), "graph.microsoft.com")
		} else {
			raws = []json.RawMessage{trimmed}
		}
	default:
		return nil, fmt.Errorf("%s holds no JSON object or array", filepath.Base(path))
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("%s holds no records", filepath.Base(path))
	}
	items := make([]item, len(raws))
	for i, r := range raws {
		items[i] = item{data: r, graph: pageGraph || isGraphAlert(r)}
	}
	return items, nil
}

// isGraphAlert recognises a Microsoft Graph security alert (alerts_v2):
// its @odata.type, or its field names (createdDateTime, serviceSource)
// without the MDE alertCreationTime.
func isGraphAlert(r json.RawMessage) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(r, &probe) != nil {
		return false
	}
	var typ string
	_ = json.Unmarshal(probe["@odata.type"], &typ)
	if strings.Contains(strings.ToLower(typ), "microsoft.graph.security") {
		return true
	}
	_, created := probe["createdDateTime"]
	_, service := probe["serviceSource"]
	_, mdeCreated := probe["alertCreationTime"]
	return (created || service) && !mdeCreated
}

func graphID(r json.RawMessage) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(r, &v)
	if v.ID == "" {
		return "(no id)"
	}
	return v.ID
}

// printer writes lines, remembering the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// field prints "  label:   value" with value made safe for a terminal.
func (p *printer) field(label, value string) {
	p.printf("  %-9s %s\n", label+":", termSafe(value))
}

// termSafe makes alert-derived text safe to print on a terminal (see
// termsafe.String).
func termSafe(s string) string { return termsafe.String(s, 0) }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
