package localhost

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// routeTemplate is an ASP.NET Core route template as used by an httpTrigger
// "route": literal segments (case-insensitive), "{name}", "{name?}",
// "{name:constraint}", "{name=default}" and a final "{*rest}" catch-all.
type routeTemplate struct {
	text     string
	segments []routeSegment
}

type routeSegment struct {
	literal    string // when not a parameter
	param      string
	optional   bool
	catchAll   bool
	def        string
	hasDefault bool
	checks     []func(string) bool
}

var paramRE = regexp.MustCompile(`^\{(\*{1,2})?([A-Za-z_][A-Za-z0-9_]*)((?::[A-Za-z]+(?:\([^)]*\))?)*)(\?|=[^{}]*)?\}$`)

func parseRoute(text string) (*routeTemplate, error) {
	rt := &routeTemplate{text: text}
	if strings.Contains(text, "?") && !strings.Contains(text, "{") {
		return nil, fmt.Errorf("a route cannot contain '?'")
	}
	parts := strings.Split(strings.Trim(text, "/"), "/")
	seen := map[string]bool{}
	for i, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("empty segment")
		}
		if !strings.ContainsAny(p, "{}") {
			rt.segments = append(rt.segments, routeSegment{literal: p})
			continue
		}
		m := paramRE.FindStringSubmatch(p)
		if m == nil {
			return nil, fmt.Errorf("segment %q: a segment must be a literal or exactly one {parameter}", p)
		}
		seg := routeSegment{param: m[2], catchAll: m[1] != ""}
		if seen[strings.ToLower(seg.param)] {
			return nil, fmt.Errorf("parameter %q appears twice", seg.param)
		}
		seen[strings.ToLower(seg.param)] = true
		switch {
		case m[4] == "?":
			seg.optional = true
		case strings.HasPrefix(m[4], "="):
			seg.def, seg.hasDefault, seg.optional = m[4][1:], true, true
		}
		if m[3] != "" {
			for _, c := range strings.Split(m[3][1:], ":") {
				check, err := routeConstraint(c)
				if err != nil {
					return nil, fmt.Errorf("parameter %q: %w", seg.param, err)
				}
				seg.checks = append(seg.checks, check)
			}
		}
		if seg.catchAll && i != len(parts)-1 {
			return nil, fmt.Errorf("catch-all parameter %q must be the last segment", seg.param)
		}
		rt.segments = append(rt.segments, seg)
	}
	// Optional parameters may only be followed by optional ones.
	for i := range rt.segments {
		if rt.segments[i].optional {
			for _, s := range rt.segments[i+1:] {
				if !s.optional && !s.catchAll {
					return nil, fmt.Errorf("optional parameter %q must be at the end", rt.segments[i].param)
				}
			}
		}
	}
	return rt, nil
}

func routeConstraint(c string) (func(string) bool, error) {
	name, arg, _ := strings.Cut(c, "(")
	arg = strings.TrimSuffix(arg, ")")
	num := func() (int64, error) { return strconv.ParseInt(strings.TrimSpace(arg), 10, 64) }
	switch strings.ToLower(name) {
	case "int":
		return func(v string) bool { _, err := strconv.ParseInt(v, 10, 32); return err == nil }, nil
	case "long":
		return func(v string) bool { _, err := strconv.ParseInt(v, 10, 64); return err == nil }, nil
	case "bool":
		return func(v string) bool { _, err := strconv.ParseBool(strings.ToLower(v)); return err == nil }, nil
	case "double", "float", "decimal":
		return func(v string) bool { _, err := strconv.ParseFloat(v, 64); return err == nil }, nil
	case "guid":
		return func(v string) bool { _, err := uuid.Parse(v); return err == nil }, nil
	case "alpha":
		return func(v string) bool {
			for _, r := range v {
				if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
					return false
				}
			}
			return v != ""
		}, nil
	case "min", "max", "minlength", "maxlength", "length":
		n, err := num()
		if err != nil {
			return nil, fmt.Errorf("constraint %q needs a number", c)
		}
		switch strings.ToLower(name) {
		case "min":
			return func(v string) bool { x, err := strconv.ParseInt(v, 10, 64); return err == nil && x >= n }, nil
		case "max":
			return func(v string) bool { x, err := strconv.ParseInt(v, 10, 64); return err == nil && x <= n }, nil
		case "minlength":
			return func(v string) bool { return int64(len([]rune(v))) >= n }, nil
		case "maxlength":
			return func(v string) bool { return int64(len([]rune(v))) <= n }, nil
		default:
			return func(v string) bool { return int64(len([]rune(v))) == n }, nil
		}
	case "range":
		lo, hi, ok := strings.Cut(arg, ",")
		a, err1 := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
		b, err2 := strconv.ParseInt(strings.TrimSpace(hi), 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("constraint %q needs range(min,max)", c)
		}
		return func(v string) bool { x, err := strconv.ParseInt(v, 10, 64); return err == nil && x >= a && x <= b }, nil
	case "regex":
		re, err := regexp.Compile("(?i)" + arg)
		if err != nil {
			return nil, fmt.Errorf("constraint %q: %w", c, err)
		}
		return re.MatchString, nil
	}
	return nil, fmt.Errorf("route constraint %q is not supported", c)
}

// match matches the decoded path segments (below the route prefix).
func (rt *routeTemplate) match(parts []string) (map[string]string, bool) {
	params := map[string]string{}
	for i, seg := range rt.segments {
		if i >= len(parts) {
			if !seg.optional && !seg.catchAll {
				return nil, false
			}
			if seg.hasDefault {
				params[seg.param] = seg.def
			}
			continue
		}
		if seg.param == "" {
			if !strings.EqualFold(seg.literal, parts[i]) {
				return nil, false
			}
			continue
		}
		v := parts[i]
		if seg.catchAll {
			v = strings.Join(parts[i:], "/")
		}
		for _, check := range seg.checks {
			if !check(v) {
				return nil, false
			}
		}
		params[seg.param] = v
		if seg.catchAll {
			return params, true
		}
	}
	if len(parts) > len(rt.segments) {
		return nil, false
	}
	return params, true
}

// precedence orders templates like ASP.NET does, roughly: more literal
// segments first, then fewer catch-alls.
func (rt *routeTemplate) precedence() (literals, params int) {
	for _, s := range rt.segments {
		switch {
		case s.param == "":
			literals++
		case !s.catchAll:
			params++
		}
	}
	return literals, params
}
