package hunt

import (
	"sort"
	"strings"
	"time"
)

// This file is a small KQL lexer and a source-table finder. It is not a KQL
// parser: it finds the identifiers in the positions where KQL takes a
// tabular source (start of a statement, the right side of `let x =`, the
// operands of join/lookup/union, a parenthesised sub-query) and ignores
// comments and string literals, which is what the checks and ScopeQuery
// need.

type tokKind int

const (
	tokIdent tokKind = iota
	tokNumber
	tokString
	tokPunct
)

type token struct {
	kind       tokKind
	text       string
	pos, end   int  // byte offsets in the query
	spaceAfter bool // whitespace or a comment follows
}

// lexKQL splits a query into tokens, dropping whitespace and comments.
func lexKQL(q string) []token {
	var toks []token
	i := 0
	n := len(q)
	markSpace := func() {
		if len(toks) > 0 {
			toks[len(toks)-1].spaceAfter = true
		}
	}
	for i < n {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			markSpace()
			i++
		case c == '/' && i+1 < n && q[i+1] == '/':
			markSpace()
			for i < n && q[i] != '\n' {
				i++
			}
		case c == '`' && strings.HasPrefix(q[i:], "```"):
			j := strings.Index(q[i+3:], "```")
			end := n
			if j >= 0 {
				end = i + 3 + j + 3
			}
			toks = append(toks, token{kind: tokString, text: q[i:end], pos: i, end: end})
			i = end
		case c == '\'' || c == '"':
			end := scanQuoted(q, i, false)
			toks = append(toks, token{kind: tokString, text: q[i:end], pos: i, end: end})
			i = end
		case (c == '@' || c == 'h' || c == 'H') && isStringPrefix(q, i):
			j := i
			if q[j] == 'h' || q[j] == 'H' {
				j++
			}
			verbatim := false
			if q[j] == '@' {
				verbatim = true
				j++
			}
			end := scanQuoted(q, j, verbatim)
			toks = append(toks, token{kind: tokString, text: q[i:end], pos: i, end: end})
			i = end
		case c == '[' && i+1 < n && (q[i+1] == '\'' || q[i+1] == '"'):
			// ['quoted identifier']
			end := scanQuoted(q, i+1, false)
			if end < n && q[end] == ']' {
				name := q[i+2 : end-1]
				toks = append(toks, token{kind: tokIdent, text: name, pos: i, end: end + 1})
				i = end + 1
			} else {
				toks = append(toks, token{kind: tokPunct, text: "[", pos: i, end: i + 1})
				i++
			}
		case isIdentStart(c):
			j := i + 1
			for j < n && isIdentPart(q[j]) {
				j++
			}
			toks = append(toks, token{kind: tokIdent, text: q[i:j], pos: i, end: j})
			i = j
		case c >= '0' && c <= '9':
			j := i + 1
			for j < n && (isIdentPart(q[j]) || q[j] == '.' && j+1 < n && q[j+1] >= '0' && q[j+1] <= '9') {
				j++
			}
			toks = append(toks, token{kind: tokNumber, text: q[i:j], pos: i, end: j})
			i = j
		default:
			j := i + 1
			if i+1 < n {
				switch q[i : i+2] {
				case "==", "!=", "=~", "!~", "<=", ">=", "..", "=>", "<>":
					j = i + 2
				}
			}
			toks = append(toks, token{kind: tokPunct, text: q[i:j], pos: i, end: j})
			i = j
		}
	}
	return toks
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isStringPrefix reports whether q[i:] starts a prefixed string literal:
// @'..', @"..", h'..', h"..", h@'..', H@"..".
func isStringPrefix(q string, i int) bool {
	if i > 0 && isIdentPart(q[i-1]) {
		return false
	}
	j := i
	if q[j] == 'h' || q[j] == 'H' {
		j++
		if j < len(q) && q[j] == '@' {
			j++
		}
	} else {
		j++ // '@'
	}
	return j < len(q) && (q[j] == '\'' || q[j] == '"')
}

// scanQuoted returns the offset after the string literal starting at q[i]
// (a quote). Regular strings use backslash escapes; verbatim strings double
// the quote. An unterminated string runs to the end of the line.
func scanQuoted(q string, i int, verbatim bool) int {
	quote := q[i]
	j := i + 1
	for j < len(q) {
		switch {
		case !verbatim && q[j] == '\\':
			j += 2
			continue
		case q[j] == quote:
			if verbatim && j+1 < len(q) && q[j+1] == quote {
				j += 2
				continue
			}
			return j + 1
		case q[j] == '\n' && !verbatim:
			return j
		}
		j++
	}
	return len(q)
}

// tableRef is one identifier found in a source position.
type tableRef struct {
	name string
	pos  int
	end  int
	// operand is set for join/lookup/union operands that are not
	// parenthesised: scoping them needs parentheses.
	operand bool
	// wildcard is set for union operands such as Device*.
	wildcard bool
}

// funcCall is a call of a function that matters to the checks.
type funcCall struct {
	name string
	pos  int
}

// kqlInfo is what the analysis found in a query.
type kqlInfo struct {
	tables []tableRef      // source tables, let-bound names removed
	lets   map[string]bool // names bound with let
	calls  []funcCall      // identifiers followed by '('
	idents map[string]bool // every identifier outside strings and comments
}

// Statement keywords that start a statement but are not tables.
var statementKeywords = map[string]bool{
	"let": true, "set": true, "declare": true, "alias": true, "pattern": true,
	"restrict": true, "print": true, "range": true, "datatable": true,
	"search": true, "find": true, "evaluate": true, "externaldata": true,
	"external_data": true, "union": true, "materialize": true, "view": true,
	"toscalar": true, "totable": true, "true": true, "false": true, "null": true,
}

// analyzeKQL finds source tables, let names, calls and identifiers.
func analyzeKQL(q string) kqlInfo {
	toks := lexKQL(q)
	info := kqlInfo{lets: map[string]bool{}, idents: map[string]bool{}}
	peek := func(i int) token {
		if i >= 0 && i < len(toks) {
			return toks[i]
		}
		return token{kind: tokPunct, text: ""}
	}
	isCall := func(i int) bool { return peek(i+1).text == "(" }
	var refs []tableRef
	addRef := func(i int, operand bool) int {
		t := toks[i]
		r := tableRef{name: t.text, pos: t.pos, end: t.end, operand: operand}
		// Device* : identifier immediately followed by '*'.
		if nx := peek(i + 1); nx.text == "*" && !t.spaceAfter {
			r.wildcard = true
			r.name += "*"
			r.end = nx.end
			i++
		}
		refs = append(refs, r)
		return i
	}

	// sourceAt handles a token in a source position. forced means the
	// position takes a table for sure (join/union operand, let value,
	// statement start); otherwise (after a bare '(') the identifier only
	// counts when a pipe or the closing parenthesis follows.
	sourceAt := func(i int, forced bool) {
		t := peek(i)
		if t.kind != tokIdent || statementKeywords[strings.ToLower(t.text)] || isCall(i) {
			return
		}
		nx := peek(i + 1)
		if forced || nx.text == "|" || (nx.text == ")" && knownTable(t.text)) {
			addRef(i, false)
		}
	}

	// skipOptions skips name=value option pairs (kind=inner, hint.x=y,
	// withsource=T, isfuzzy=true) starting at i and returns the next index.
	skipOptions := func(i int) int {
		for {
			t := peek(i)
			if t.kind != tokIdent {
				return i
			}
			j := i + 1
			for peek(j).text == "." && peek(j+1).kind == tokIdent {
				j += 2
			}
			if peek(j).text != "=" {
				return i
			}
			i = j + 2 // name = value
		}
	}

	stmtStart := true
	letPending := false // saw `let name`, waiting for '='
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tokIdent {
			info.idents[t.text] = true
			if isCall(i) {
				info.calls = append(info.calls, funcCall{name: t.text, pos: t.pos})
			}
		}
		if stmtStart {
			stmtStart = false
			if t.kind == tokIdent {
				switch strings.ToLower(t.text) {
				case "let":
					if nx := peek(i + 1); nx.kind == tokIdent {
						info.lets[nx.text] = true
						letPending = true
						i++ // the name
						continue
					}
				case "union":
					i = unionOperands(toks, i+1, skipOptions, addRef, peek, isCall)
					continue
				case "set", "declare", "alias", "pattern", "restrict":
					for i+1 < len(toks) && toks[i+1].text != ";" {
						i++
					}
					continue
				}
				sourceAt(i, true)
				continue
			}
		}
		switch t.text {
		case ";", "{":
			stmtStart = true
			letPending = false
		case "=":
			if letPending {
				letPending = false
				// let x = T ...; let f = (a:string) {...}; let v = view() {...}
				nx := peek(i + 1)
				if nx.kind == tokIdent && !isCall(i+1) && !statementKeywords[strings.ToLower(nx.text)] {
					sourceAt(i+1, true)
				} else if nx.text == "(" {
					sourceAt(i+2, false)
				}
			}
		case "(":
			sourceAt(i+1, false)
		}
		if t.kind == tokIdent && peek(i-1).text == "|" {
			switch strings.ToLower(t.text) {
			case "join", "lookup":
				j := skipOptions(i + 1)
				nx := peek(j)
				if nx.text == "(" {
					sourceAt(j+1, true)
					i = j
				} else if nx.kind == tokIdent && !isCall(j) {
					i = addRef(j, true)
				}
			case "union":
				i = unionOperands(toks, i+1, skipOptions, addRef, peek, isCall)
			}
		}
	}
	for _, r := range refs {
		if !info.lets[strings.TrimSuffix(r.name, "*")] {
			info.tables = append(info.tables, r)
		}
	}
	return info
}

// unionOperands reads `T1, (T2 | ...), Device*` after union and its
// options; it returns the index of the last consumed token.
func unionOperands(toks []token, i int, skipOptions func(int) int,
	addRef func(int, bool) int, peek func(int) token, isCall func(int) bool) int {
	i = skipOptions(i)
	for {
		t := peek(i)
		switch {
		case t.text == "(":
			// The sub-query's first identifier is a source.
			if nx := peek(i + 1); nx.kind == tokIdent && !isCall(i+1) && !statementKeywords[strings.ToLower(nx.text)] {
				addRef(i+1, false)
			}
			// Skip to the matching parenthesis.
			depth := 0
			for ; i < len(toks); i++ {
				if toks[i].text == "(" {
					depth++
				} else if toks[i].text == ")" {
					depth--
					if depth == 0 {
						break
					}
				}
			}
		case t.kind == tokIdent && !isCall(i):
			i = addRef(i, true)
		default:
			return i - 1
		}
		if peek(i+1).text != "," {
			return i
		}
		i += 2
	}
}

// Tables returns the distinct source tables a query reads (let-bound names
// removed), sorted.
func Tables(query string) []string {
	info := analyzeKQL(query)
	set := map[string]bool{}
	for _, r := range info.tables {
		set[r.name] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ScopeQuery restricts every source table of query to the last period by
// adding `| where Timestamp > ago(<period>)` right after it (inside
// parentheses for join/lookup/union operands). It is for the MDE
// advancedqueries API, which has no timespan parameter: applied to every
// source table it gives the same meaning as Graph's Timespan (the window
// the query can see), whether or not the query filters Timestamp itself.
//
// Tables without a Timestamp column (DeviceTvm*, ExposureGraph* snapshots)
// and wildcard union operands (Device*) are left as they are; Check warns
// about the latter for the "mde" API. A non-positive period returns the
// query unchanged.
func ScopeQuery(query string, period time.Duration) string {
	if period <= 0 {
		return query
	}
	info := analyzeKQL(query)
	filter := "where Timestamp > ago(" + KQLTimespan(period) + ")"
	refs := scopableRefs(info)
	// Rewrite from the end so earlier offsets stay valid.
	out := query
	for i := len(refs) - 1; i >= 0; i-- {
		r := refs[i]
		if r.operand {
			out = out[:r.pos] + "(" + out[r.pos:r.end] + " | " + filter + ")" + out[r.end:]
		} else {
			out = out[:r.end] + " | " + filter + out[r.end:]
		}
	}
	return out
}

// scopableRefs returns the refs ScopeQuery rewrites, in query order.
func scopableRefs(info kqlInfo) []tableRef {
	var refs []tableRef
	for _, r := range info.tables {
		if r.wildcard || !hasTimestamp(r.name) {
			continue
		}
		refs = append(refs, r)
	}
	sort.Slice(refs, func(a, b int) bool { return refs[a].pos < refs[b].pos })
	return refs
}
