package policy

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The file schema: what the YAML says, before validation. compile turns it
// into a Policy.
type fileDoc struct {
	Version   string        `yaml:"version"`
	DryRun    bool          `yaml:"dryRun"`
	Protected fileProtected `yaml:"protected"`
	Cap       *fileCap      `yaml:"cap"`
	Approval  *fileApproval `yaml:"approval"`
	Defaults  fileDefaults  `yaml:"defaults"`
	Rules     []fileRule    `yaml:"rules"`
}

type fileProtected struct {
	Tags         []string `yaml:"tags"`
	DeviceGroups []string `yaml:"deviceGroups"`
	NamePatterns []string `yaml:"namePatterns"`
}

type fileCap struct {
	MaxIsolations int    `yaml:"maxIsolations"`
	Window        string `yaml:"window"`
}

type fileApproval struct {
	TTL       string   `yaml:"ttl"`
	OnExpiry  string   `yaml:"onExpiry"`
	Approvers []string `yaml:"approvers"`
}

type fileDefaults struct {
	IsolationType string   `yaml:"isolationType"`
	Channels      []string `yaml:"channels"`
}

type fileRule struct {
	ID          string       `yaml:"id"`
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	Match       fileMatch    `yaml:"match"`
	Actions     []fileAction `yaml:"actions"`
	DryRun      bool         `yaml:"dryRun"`
	Stop        *bool        `yaml:"stop"`
}

type fileMatch struct {
	Severity         []string     `yaml:"severity"`
	MinSeverity      string       `yaml:"minSeverity"`
	Category         []string     `yaml:"category"`
	DetectionSource  []string     `yaml:"detectionSource"`
	TitlePattern     string       `yaml:"titlePattern"`
	MitreTechnique   []string     `yaml:"mitreTechnique"`
	MachineTags      fileTagMatch `yaml:"machineTags"`
	DeviceGroup      []string     `yaml:"deviceGroup"`
	OSPlatform       []string     `yaml:"osPlatform"`
	RiskScore        []string     `yaml:"riskScore"`
	MinRiskScore     string       `yaml:"minRiskScore"`
	ExposureLevel    []string     `yaml:"exposureLevel"`
	MinExposureLevel string       `yaml:"minExposureLevel"`
}

type fileTagMatch struct {
	Any  []string `yaml:"any"`
	None []string `yaml:"none"`
}

// fileAction is one item of a rule's actions: a mapping with exactly one
// key naming the action. "- notify" and "- notify:" are short for
// "- notify: {}".
type fileAction struct {
	Isolate                     *fileIsolate     `yaml:"isolate"`
	RestrictCodeExecution       *fileSimple      `yaml:"restrictCodeExecution"`
	RunAntiVirusScan            *fileScan        `yaml:"runAntiVirusScan"`
	CollectInvestigationPackage *fileSimple      `yaml:"collectInvestigationPackage"`
	Tag                         *fileTag         `yaml:"tag"`
	UpdateAlert                 *fileUpdateAlert `yaml:"updateAlert"`
	Notify                      *fileNotify      `yaml:"notify"`
}

type fileIsolate struct {
	Type            string `yaml:"type"`
	RequireApproval bool   `yaml:"requireApproval"`
	DryRun          bool   `yaml:"dryRun"`
}

type fileSimple struct {
	DryRun bool `yaml:"dryRun"`
}

type fileScan struct {
	ScanType string `yaml:"scanType"`
	DryRun   bool   `yaml:"dryRun"`
}

type fileTag struct {
	Value  string `yaml:"value"`
	DryRun bool   `yaml:"dryRun"`
}

type fileUpdateAlert struct {
	Status         string `yaml:"status"`
	AssignedTo     string `yaml:"assignedTo"`
	Classification string `yaml:"classification"`
	Determination  string `yaml:"determination"`
	Comment        string `yaml:"comment"`
	DryRun         bool   `yaml:"dryRun"`
}

type fileNotify struct {
	Channels []string `yaml:"channels"`
}

// UnmarshalYAML accepts the short forms "- notify" and "- notify:" (null
// parameters) for actions without parameters.
func (a *fileAction) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column,
			Content: []*yaml.Node{n, {Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line}}}
	case yaml.MappingNode:
		c := *n
		c.Content = append([]*yaml.Node(nil), n.Content...)
		for i := 1; i < len(c.Content); i += 2 {
			if v := c.Content[i]; v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				c.Content[i] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line}
			}
		}
		n = &c
	}
	type plain fileAction
	return n.Decode((*plain)(a))
}

var (
	fileDocType    = reflect.TypeOf(fileDoc{})
	fileActionType = reflect.TypeOf(fileAction{})
)

// checkKeys walks the YAML tree along the Go type and reports every mapping
// key the schema does not know, with its path and a suggestion. It returns
// how many it found.
func checkKeys(n *yaml.Node, t reflect.Type, path string, problems *[]error) int {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return 0
		}
		return checkKeys(n.Content[0], t, path, problems)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	found := 0
	switch t.Kind() {
	case reflect.Struct:
		fields := yamlFields(t)
		if t == fileActionType && n.Kind == yaml.ScalarNode {
			if _, ok := fields[n.Value]; !ok {
				*problems = append(*problems, unknownKey(path, n.Value, fields, "action"))
				found++
			}
			return found
		}
		if n.Kind != yaml.MappingNode {
			return 0 // the decoder reports the type mismatch
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				what := "key"
				if t == fileActionType {
					what = "action"
				}
				*problems = append(*problems, unknownKey(path, key, fields, what))
				found++
				continue
			}
			found += checkKeys(n.Content[i+1], ft, joinPath(path, key), problems)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return 0
		}
		for i, item := range n.Content {
			found += checkKeys(item, t.Elem(), itemPath(path, i, item), problems)
		}
	}
	return found
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = f.Type
	}
	return m
}

func unknownKey(path, key string, fields map[string]reflect.Type, what string) error {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	msg := fmt.Sprintf("unknown %s %q", what, key)
	if s := suggest(key, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		msg += " (known: " + strings.Join(names, ", ") + ")"
	}
	return &FieldError{Path: path, Msg: msg}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// itemPath names a list item, with its id when it has one:
// `rules[2] "ransomware"`.
func itemPath(path string, i int, item *yaml.Node) string {
	p := fmt.Sprintf("%s[%d]", path, i)
	if item.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(item.Content); j += 2 {
			if item.Content[j].Value == "id" && item.Content[j+1].Kind == yaml.ScalarNode {
				return fmt.Sprintf("%s %q", p, clip(item.Content[j+1].Value, 64))
			}
		}
	}
	return p
}

// suggest returns the known name closest to key (case-insensitive edit
// distance at most 2, or a case-only difference), or "".
func suggest(key string, names []string) string {
	best, bestD := "", 3
	lk := strings.ToLower(key)
	for _, n := range names {
		d := editDistance(lk, strings.ToLower(n))
		if d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
