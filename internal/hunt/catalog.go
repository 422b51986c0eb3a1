// Package hunt runs ScheduledHunt: a catalog of Microsoft Sentinel-format
// hunting queries and scheduled analytic rules (plus mdeflow's own optional
// `mdeflow:` block) executed against Defender advanced hunting on a schedule,
// with quota guards, per-slot claims so that only one instance runs a hunt,
// and de-duplication so that each finding is reported once.
//
// The pieces, in the order they are used:
//
//   - LoadDir reads the catalog (*.yaml, *.yml), reporting files that are
//     not hunts instead of failing on them.
//   - Check and RunCheck say whether a hunt can run through a given API
//     ("mde", "graph" or "xdr") and why not.
//   - Runner.RunDue runs the hunts whose slot is due; Runner.RunOne runs one
//     hunt on demand. Both return RunReports holding only new rows.
//   - ParseResults reads the three advanced-hunting response shapes.
//   - Digest and DeviceAlerts turn a RunReport into the pipeline messages.
package hunt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Hunt is one catalog entry: the Sentinel fields as published plus the
// effective mdeflow settings.
type Hunt struct {
	// Sentinel fields, as written in the file.
	ID                     string
	Name                   string
	Description            string
	Severity               string
	Query                  string
	QueryFrequency         string
	QueryPeriod            string
	TriggerOperator        string // normalised to gt, lt, eq or ne when recognised
	TriggerThreshold       int
	Tactics                []string
	RelevantTechniques     []string
	EntityMappings         []EntityMapping
	RequiredDataConnectors []DataConnector
	Kind                   string
	Status                 string
	Version                string
	Tags                   []string

	// MDEFlow is the `mdeflow:` block as written (nil when absent).
	MDEFlow *MDEFlowSpec

	// Effective settings.
	Enabled bool
	// Frequency and Period are zero when the file's durations do not parse
	// (Check reports it).
	Frequency time.Duration
	Period    time.Duration
	// FrequencyDefaulted is set when the file gave no frequency (Sentinel
	// hunting queries have none) and the configured default applies.
	FrequencyDefaulted bool
	OnHits             OnHits
	MaxRowsInDigest    int
	FingerprintColumns []string
	VolatileColumns    []string

	// File is the path relative to the catalog directory, with '/'.
	File string
}

// EntityMapping is a Sentinel entity mapping.
type EntityMapping struct {
	EntityType    string         `yaml:"entityType"`
	FieldMappings []FieldMapping `yaml:"fieldMappings"`
}

// FieldMapping maps an entity identifier to a result column.
type FieldMapping struct {
	Identifier string `yaml:"identifier"`
	ColumnName string `yaml:"columnName"`
}

// DataConnector is an entry of requiredDataConnectors.
type DataConnector struct {
	ConnectorID string   `yaml:"connectorId"`
	DataTypes   []string `yaml:"dataTypes"`
}

// MDEFlowSpec is the optional `mdeflow:` block of a hunt file. Unknown keys
// in it are an error (a typo must not silently disable an action).
type MDEFlowSpec struct {
	Enabled         *bool       `yaml:"enabled"`
	Frequency       string      `yaml:"frequency"`
	Period          string      `yaml:"period"`
	OnHits          *OnHitsSpec `yaml:"onHits"`
	MaxRowsInDigest int         `yaml:"maxRowsInDigest"`
	// FingerprintColumns, when set, are the only columns hashed to identify
	// a finding. VolatileColumns are left out of the hash (see Fingerprint).
	FingerprintColumns []string `yaml:"fingerprintColumns"`
	VolatileColumns    []string `yaml:"volatileColumns"`
}

// OnHitsSpec is `mdeflow.onHits` as written.
type OnHitsSpec struct {
	Notify      *bool        `yaml:"notify"`
	RaiseAlerts *RaiseAlerts `yaml:"raiseAlerts"`
	TagDevice   string       `yaml:"tagDevice"`
}

// OnHits is what to do when a run has new findings.
type OnHits struct {
	// Notify sends one digest per run with new rows (default true).
	Notify bool
	// RaiseAlerts, when set, raises one synthetic alert per device.
	RaiseAlerts *RaiseAlerts
	// TagDevice, when set, is the machine tag the lead applies to devices
	// with new findings.
	TagDevice string
}

// RaiseAlerts configures the synthetic alerts of DeviceAlerts.
type RaiseAlerts struct {
	// Severity overrides the hunt severity (MDE names or Sentinel names).
	Severity string `yaml:"severity"`
	// TitleTemplate is a text/template over AlertTitleData; default is the
	// hunt name.
	TitleTemplate string `yaml:"titleTemplate"`
	// DeviceIDColumn defaults to DeviceId.
	DeviceIDColumn string `yaml:"deviceIdColumn"`
	// DeviceNameColumn defaults to DeviceName.
	DeviceNameColumn string `yaml:"deviceNameColumn"`
}

// Unsupported is a catalog file that is not a runnable hunt definition.
type Unsupported struct {
	File   string
	Reason string
}

// Catalog is the loaded hunt directory.
type Catalog struct {
	Dir         string
	Hunts       []Hunt
	Unsupported []Unsupported
}

// Get returns the hunt with that id.
func (c Catalog) Get(id string) (Hunt, bool) {
	for _, h := range c.Hunts {
		if h.ID == id {
			return h, true
		}
	}
	return Hunt{}, false
}

// LoadOptions tunes LoadDir. The zero value means the defaults.
type LoadOptions struct {
	// DefaultFrequency applies to files without queryFrequency (Sentinel
	// hunting queries): default 24h.
	DefaultFrequency time.Duration
	// DefaultPeriod applies to files without queryPeriod and without
	// queryFrequency: default 24h.
	DefaultPeriod time.Duration
}

// Defaults of LoadOptions.
const (
	DefaultFrequency = 24 * time.Hour
	DefaultPeriod    = 24 * time.Hour
	// maxFileSize bounds what is read from one catalog file.
	maxFileSize = 1 << 20
)

// LoadDir loads every *.yaml/*.yml file under dir (recursively, skipping
// hidden directories) with the default options.
func LoadDir(dir string) (Catalog, error) {
	return LoadDirOptions(dir, nil)
}

// LoadDirOptions loads the catalog with options (nil means defaults). Files
// that are not hunts, do not parse, or repeat an id are listed in
// Catalog.Unsupported with the reason; only a directory that cannot be read
// is an error.
func LoadDirOptions(dir string, opts *LoadOptions) (Catalog, error) {
	o := LoadOptions{}
	if opts != nil {
		o = *opts
	}
	if o.DefaultFrequency <= 0 {
		o.DefaultFrequency = DefaultFrequency
	}
	if o.DefaultPeriod <= 0 {
		o.DefaultPeriod = DefaultPeriod
	}
	cat := Catalog{Dir: dir}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(filepath.Ext(d.Name()))
		if ext == ".yaml" || ext == ".yml" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return cat, fmt.Errorf("reading hunt catalog %s: %w", dir, err)
	}
	sort.Strings(files)
	seen := map[string]string{}
	for _, path := range files {
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			rel = filepath.Base(path)
		}
		rel = filepath.ToSlash(rel)
		b, err := readLimited(path)
		if err != nil {
			cat.Unsupported = append(cat.Unsupported, Unsupported{File: rel, Reason: err.Error()})
			continue
		}
		h, reason := parseHunt(b, o)
		if reason != "" {
			cat.Unsupported = append(cat.Unsupported, Unsupported{File: rel, Reason: reason})
			continue
		}
		h.File = rel
		if h.ID != "" {
			if other, dup := seen[h.ID]; dup {
				cat.Unsupported = append(cat.Unsupported, Unsupported{File: rel,
					Reason: fmt.Sprintf("duplicate id %s (already defined in %s)", h.ID, other)})
				continue
			}
			seen[h.ID] = rel
		}
		cat.Hunts = append(cat.Hunts, h)
	}
	return cat, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("file larger than %d bytes", maxFileSize)
	}
	return b, nil
}

// sentinelFile is the published Sentinel hunting query / analytic rule
// shape. Unknown top-level keys are tolerated (the collections add many).
type sentinelFile struct {
	ID                     string          `yaml:"id"`
	Name                   string          `yaml:"name"`
	Description            string          `yaml:"description"`
	Severity               string          `yaml:"severity"`
	Query                  string          `yaml:"query"`
	QueryFrequency         string          `yaml:"queryFrequency"`
	QueryPeriod            string          `yaml:"queryPeriod"`
	TriggerOperator        string          `yaml:"triggerOperator"`
	TriggerThreshold       *int            `yaml:"triggerThreshold"`
	Tactics                []string        `yaml:"tactics"`
	RelevantTechniques     []string        `yaml:"relevantTechniques"`
	EntityMappings         []EntityMapping `yaml:"entityMappings"`
	RequiredDataConnectors []DataConnector `yaml:"requiredDataConnectors"`
	Kind                   string          `yaml:"kind"`
	Status                 string          `yaml:"status"`
	Version                string          `yaml:"version"`
	Tags                   yaml.Node       `yaml:"tags"`
	MDEFlow                yaml.Node       `yaml:"mdeflow"`
}

// parseHunt decodes one file. A non-empty reason means the file is not a
// usable hunt definition.
func parseHunt(b []byte, o LoadOptions) (Hunt, string) {
	var top yaml.Node
	if err := yaml.Unmarshal(b, &top); err != nil {
		return Hunt{}, "invalid YAML: " + oneLine(err.Error())
	}
	if top.Kind == 0 || len(top.Content) == 0 {
		return Hunt{}, "empty file"
	}
	root := top.Content[0]
	if root.Kind != yaml.MappingNode {
		return Hunt{}, "not a hunt: the document is not a mapping"
	}
	keys := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		keys[root.Content[i].Value] = true
	}
	switch {
	case keys["sources"] && !keys["query"]:
		return Hunt{}, "not a hunt: parameterised query template (msticpy `sources:` format); its queries need parameters and have no schedule"
	case !keys["query"] && (keys["resources"] || keys["$schema"]):
		return Hunt{}, "not a hunt: ARM template; export the rule as Sentinel YAML"
	case !keys["query"]:
		return Hunt{}, "not a hunt: no `query` key"
	}
	var sf sentinelFile
	if err := root.Decode(&sf); err != nil {
		return Hunt{}, "invalid hunt fields: " + oneLine(err.Error())
	}
	h := Hunt{
		ID: strings.TrimSpace(sf.ID), Name: strings.TrimSpace(sf.Name), Description: sf.Description,
		Severity: strings.TrimSpace(sf.Severity), Query: sf.Query,
		QueryFrequency: strings.TrimSpace(sf.QueryFrequency), QueryPeriod: strings.TrimSpace(sf.QueryPeriod),
		TriggerOperator: normaliseOperator(sf.TriggerOperator),
		Tactics:         sf.Tactics, RelevantTechniques: sf.RelevantTechniques,
		EntityMappings: sf.EntityMappings, RequiredDataConnectors: sf.RequiredDataConnectors,
		Kind: sf.Kind, Status: sf.Status, Version: sf.Version,
		Enabled: true,
		OnHits:  OnHits{Notify: true},
	}
	if sf.TriggerThreshold != nil {
		h.TriggerThreshold = *sf.TriggerThreshold
	}
	// tags are strings in hunting queries but sometimes objects in
	// solution files ({id, version}); keep the strings.
	if sf.Tags.Kind == yaml.SequenceNode {
		for _, n := range sf.Tags.Content {
			if n.Kind == yaml.ScalarNode {
				h.Tags = append(h.Tags, n.Value)
			}
		}
	}
	if sf.MDEFlow.Kind != 0 {
		spec, err := decodeMDEFlow(&sf.MDEFlow)
		if err != nil {
			return Hunt{}, "invalid mdeflow block: " + oneLine(err.Error())
		}
		h.MDEFlow = spec
	}
	applyEffective(&h, o)
	return h, ""
}

// decodeMDEFlow decodes the mdeflow block strictly.
func decodeMDEFlow(n *yaml.Node) (*MDEFlowSpec, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("mdeflow must be a mapping")
	}
	raw, err := yaml.Marshal(n)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var spec MDEFlowSpec
	if err := dec.Decode(&spec); err != nil {
		return nil, err
	}
	return &spec, nil
}

// applyEffective fills the effective settings from the raw fields. Bad
// durations leave zero values; Check reports them.
func applyEffective(h *Hunt, o LoadOptions) {
	freqRaw, periodRaw := h.QueryFrequency, h.QueryPeriod
	if m := h.MDEFlow; m != nil {
		if m.Frequency != "" {
			freqRaw = m.Frequency
		}
		if m.Period != "" {
			periodRaw = m.Period
		}
		if m.Enabled != nil {
			h.Enabled = *m.Enabled
		}
		if m.OnHits != nil {
			if m.OnHits.Notify != nil {
				h.OnHits.Notify = *m.OnHits.Notify
			}
			if ra := m.OnHits.RaiseAlerts; ra != nil {
				c := *ra
				if c.DeviceIDColumn == "" {
					c.DeviceIDColumn = "DeviceId"
				}
				if c.DeviceNameColumn == "" {
					c.DeviceNameColumn = "DeviceName"
				}
				h.OnHits.RaiseAlerts = &c
			}
			h.OnHits.TagDevice = m.OnHits.TagDevice
		}
		h.MaxRowsInDigest = m.MaxRowsInDigest
		h.FingerprintColumns = m.FingerprintColumns
		h.VolatileColumns = m.VolatileColumns
	}
	if h.TriggerOperator == "" {
		h.TriggerOperator = "gt"
	}
	freq, ferr := durationOrZero(freqRaw)
	period, perr := durationOrZero(periodRaw)
	if ferr != nil || perr != nil {
		// Leave what parsed; Check reports the rest.
		h.Frequency, h.Period = freq, period
		return
	}
	switch {
	case freq == 0 && period == 0:
		freq, period = o.DefaultFrequency, o.DefaultPeriod
		h.FrequencyDefaulted = true
	case freq == 0:
		freq = min(o.DefaultFrequency, period)
		h.FrequencyDefaulted = true
	case period == 0:
		period = freq
	}
	h.Frequency, h.Period = freq, period
}

func durationOrZero(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	return ParseDuration(s)
}

// normaliseOperator maps Sentinel's triggerOperator spellings (gt, lt, eq,
// ne in YAML; GreaterThan... in ARM exports) to gt, lt, eq, ne. Unknown
// values are returned as written.
func normaliseOperator(op string) string {
	switch strings.ToLower(strings.TrimSpace(op)) {
	case "":
		return ""
	case "gt", "greaterthan", ">":
		return "gt"
	case "lt", "lessthan", "<":
		return "lt"
	case "eq", "equal", "equals", "==":
		return "eq"
	case "ne", "notequal", "notequals", "!=":
		return "ne"
	}
	return strings.TrimSpace(op)
}

// Triggered applies the trigger operator and threshold to a row count.
func (h Hunt) Triggered(rows int) bool {
	switch h.TriggerOperator {
	case "lt":
		return rows < h.TriggerThreshold
	case "eq":
		return rows == h.TriggerThreshold
	case "ne":
		return rows != h.TriggerThreshold
	default:
		return rows > h.TriggerThreshold
	}
}

// validHuntID: ids become store keys and alert-id hash inputs, so they are
// limited to characters valid in every backend key.
var validHuntID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
