package sim

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// This file is a small KQL interpreter, enough for the advanced-hunting
// queries mdeflow schedules and for the public Sentinel queries: lets of
// scalars and lists, a table, and the operators where/filter, project,
// project-away, project-rename, extend, take/limit, sort/order by, top,
// distinct, count and summarize (count, countif, dcount, sum, min, max,
// any/take_any, make_set, make_list; by columns or bin()). Scalar expressions cover the comparison and string
// operators (==, !=, =~, !~, <, <=, >, >=, has, has_cs, has_any, has_all,
// contains, contains_cs, startswith, endswith, in, in~, their negations,
// matches regex, between) and the functions ago, now, datetime, tolower,
// toupper, strlen, tostring, isempty, isnotempty, isnull, isnotnull, iff/iif,
// substring, indexof, strcat, dynamic, bin. Anything else (summarize, join, ...)
// is refused with an error naming the operator, so a test knows to set
// Tenant.Hunt instead of getting silently wrong rows.

type kqlTokKind int

const (
	kqEOF kqlTokKind = iota
	kqIdent
	kqString
	kqNumber
	kqTimespan
	kqOp // punctuation and symbolic operators
)

type kqlTok struct {
	kind kqlTokKind
	text string
	num  float64
	dur  time.Duration
	pos  int
}

var kqlTimespanUnits = map[string]time.Duration{
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"ms": time.Millisecond, "milli": time.Millisecond, "millis": time.Millisecond,
	"microsecond": time.Microsecond, "tick": 100 * time.Nanosecond, "ticks": 100 * time.Nanosecond,
}

func lexKQL(src string) ([]kqlTok, error) {
	var out []kqlTok
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || (c == '@' && i+1 < len(src) && (src[i+1] == '"' || src[i+1] == '\'')):
			verbatim := c == '@'
			if verbatim {
				i++
			}
			q := src[i]
			start := i
			i++
			var b strings.Builder
			closed := false
			for i < len(src) {
				ch := src[i]
				if ch == q {
					if verbatim && i+1 < len(src) && src[i+1] == q {
						b.WriteByte(q)
						i += 2
						continue
					}
					closed = true
					i++
					break
				}
				if ch == '\\' && !verbatim && i+1 < len(src) {
					i++
					switch src[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(src[i])
					}
					i++
					continue
				}
				b.WriteByte(ch)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated string literal at position %d", start)
			}
			out = append(out, kqlTok{kind: kqString, text: b.String(), pos: start})
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				if src[j] == '.' && j+1 < len(src) && src[j+1] == '.' {
					break // "1..5" in between()
				}
				j++
			}
			n, err := strconv.ParseFloat(src[i:j], 64)
			if err != nil {
				return nil, fmt.Errorf("bad number %q at position %d", src[i:j], i)
			}
			k := j
			for k < len(src) && unicode.IsLetter(rune(src[k])) {
				k++
			}
			if unit := strings.ToLower(src[j:k]); unit != "" {
				d, ok := kqlTimespanUnits[unit]
				if !ok {
					return nil, fmt.Errorf("bad timespan %q at position %d", src[i:k], i)
				}
				out = append(out, kqlTok{kind: kqTimespan, text: src[i:k], dur: time.Duration(n * float64(d)), pos: i})
				i = k
				continue
			}
			out = append(out, kqlTok{kind: kqNumber, text: src[i:j], num: n, pos: i})
			i = j
		case c == '_' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(src) && (src[j] == '_' || unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j]))) {
				j++
			}
			// Hyphenated operator names: project-away, mv-expand, ...
			for j+1 < len(src) && src[j] == '-' && unicode.IsLetter(rune(src[j+1])) && isHyphenOp(src[i:j]) {
				j++
				for j < len(src) && (src[j] == '_' || unicode.IsLetter(rune(src[j]))) {
					j++
				}
			}
			word := src[i:j]
			// in~ / has_cs etc. are words; "in~" needs the tilde.
			if (word == "in") && j < len(src) && src[j] == '~' {
				word += "~"
				j++
			}
			out = append(out, kqlTok{kind: kqIdent, text: word, pos: i})
			i = j
		case c == '!':
			// !has, !contains, !in, !in~, !startswith, !endswith, !has_cs, !~, !=, !between
			j := i + 1
			if j < len(src) && (src[j] == '=' || src[j] == '~') {
				out = append(out, kqlTok{kind: kqOp, text: src[i : j+1], pos: i})
				i = j + 1
				continue
			}
			k := j
			for k < len(src) && (src[k] == '_' || unicode.IsLetter(rune(src[k]))) {
				k++
			}
			word := src[j:k]
			if word == "in" && k < len(src) && src[k] == '~' {
				word += "~"
				k++
			}
			if word == "" {
				return nil, fmt.Errorf("unexpected '!' at position %d", i)
			}
			out = append(out, kqlTok{kind: kqIdent, text: "!" + word, pos: i})
			i = k
		default:
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "==", "=~", "<=", ">=", "<>", "..":
				out = append(out, kqlTok{kind: kqOp, text: two, pos: i})
				i += 2
				continue
			}
			if strings.ContainsRune("|(),;=<>+-*/[]{}.:%", rune(c)) {
				out = append(out, kqlTok{kind: kqOp, text: string(c), pos: i})
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected character %q at position %d", c, i)
		}
	}
	out = append(out, kqlTok{kind: kqEOF, pos: len(src)})
	return out, nil
}

func isHyphenOp(w string) bool {
	switch w {
	case "project", "mv", "make", "parse", "order", "project_away":
		return true
	}
	return false
}

// kqlTable is an intermediate result: ordered columns and rows.
type kqlTable struct {
	cols []string
	rows []map[string]any
}

type kqlParser struct {
	toks  []kqlTok
	i     int
	lets  map[string]any
	now   time.Time
	depth int
}

func (p *kqlParser) peek() kqlTok { return p.toks[p.i] }
func (p *kqlParser) next() kqlTok {
	t := p.toks[p.i]
	if t.kind != kqEOF {
		p.i++
	}
	return t
}
func (p *kqlParser) isOp(s string) bool {
	t := p.peek()
	return t.kind == kqOp && t.text == s
}
func (p *kqlParser) acceptOp(s string) bool {
	if p.isOp(s) {
		p.i++
		return true
	}
	return false
}
func (p *kqlParser) isWord(s string) bool {
	t := p.peek()
	return t.kind == kqIdent && strings.EqualFold(t.text, s)
}
func (p *kqlParser) acceptWord(s string) bool {
	if p.isWord(s) {
		p.i++
		return true
	}
	return false
}
func (p *kqlParser) expectOp(s string) error {
	if !p.acceptOp(s) {
		return fmt.Errorf("expected '%s' at position %d", s, p.peek().pos)
	}
	return nil
}

// kqlTableName returns the first table the query reads (after any lets).
func kqlTableName(query string) (string, error) {
	toks, err := lexKQL(query)
	if err != nil {
		return "", err
	}
	i := 0
	for i < len(toks) && toks[i].kind == kqIdent && toks[i].text == "let" {
		for i < len(toks) && !(toks[i].kind == kqOp && toks[i].text == ";") && toks[i].kind != kqEOF {
			i++
		}
		i++
	}
	if i < len(toks) && toks[i].kind == kqIdent {
		return toks[i].text, nil
	}
	return "", fmt.Errorf("the query does not start with a table name")
}

// runKQL evaluates query against tables (rows per table name). known lists
// table names that exist but may be empty.
func runKQL(query string, now time.Time, tables map[string][]map[string]any, known map[string]bool) (*kqlTable, error) {
	toks, err := lexKQL(query)
	if err != nil {
		return nil, fmt.Errorf("query could not be parsed: %w", err)
	}
	p := &kqlParser{toks: toks, lets: map[string]any{}, now: now}
	for p.acceptWord("let") {
		name := p.next()
		if name.kind != kqIdent || !p.acceptOp("=") {
			return nil, fmt.Errorf("query could not be parsed: bad let statement at position %d", name.pos)
		}
		start := p.i
		e, err := p.parseExpr()
		if err != nil || !p.isOp(";") {
			return nil, fmt.Errorf("simulator: unsupported let statement at position %d (only scalar and list values); set Tenant.Hunt for this query", toks[start].pos)
		}
		v, err := e(nil)
		if err != nil {
			return nil, err
		}
		p.lets[name.text] = v
		p.next()
	}
	tt := p.next()
	if tt.kind != kqIdent {
		return nil, fmt.Errorf("query could not be parsed: expected a table name at position %d", tt.pos)
	}
	rows, ok := tables[tt.text]
	if !ok && !known[tt.text] {
		return nil, fmt.Errorf("Failed to resolve table or column expression named '%s'", tt.text)
	}
	tab := &kqlTable{rows: make([]map[string]any, 0, len(rows))}
	for _, r := range rows {
		c := make(map[string]any, len(r))
		for k, v := range r {
			c[k] = v
		}
		tab.rows = append(tab.rows, c)
	}
	tab.cols = defaultColumns(rows)
	for p.acceptOp("|") {
		if tab, err = p.applyOp(tab); err != nil {
			return nil, err
		}
	}
	p.acceptOp(";")
	if t := p.peek(); t.kind != kqEOF {
		return nil, fmt.Errorf("query could not be parsed: unexpected '%s' at position %d", t.text, t.pos)
	}
	return tab, nil
}

// defaultColumns orders a table's columns: Timestamp, DeviceId, DeviceName,
// then the rest alphabetically.
func defaultColumns(rows []map[string]any) []string {
	seen := map[string]bool{}
	for _, r := range rows {
		for k := range r {
			seen[k] = true
		}
	}
	var cols []string
	for _, k := range []string{"Timestamp", "DeviceId", "DeviceName"} {
		if seen[k] {
			cols = append(cols, k)
			delete(seen, k)
		}
	}
	rest := make([]string, 0, len(seen))
	for k := range seen {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	return append(cols, rest...)
}

func (p *kqlParser) applyOp(tab *kqlTable) (*kqlTable, error) {
	opTok := p.next()
	if opTok.kind != kqIdent {
		return nil, fmt.Errorf("query could not be parsed: expected an operator after '|' at position %d", opTok.pos)
	}
	switch strings.ToLower(opTok.text) {
	case "where", "filter":
		pred, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		out := tab.rows[:0:0]
		for _, r := range tab.rows {
			v, err := pred(r)
			if err != nil {
				return nil, err
			}
			if b, _ := v.(bool); b {
				out = append(out, r)
			}
		}
		return &kqlTable{cols: tab.cols, rows: out}, nil
	case "take", "limit":
		n, err := p.parseCount()
		if err != nil {
			return nil, err
		}
		if n < len(tab.rows) {
			tab.rows = tab.rows[:n]
		}
		return tab, nil
	case "project", "project-keep":
		return p.parseProject(tab, false)
	case "extend":
		return p.parseProject(tab, true)
	case "project-away":
		names, err := p.parseNames()
		if err != nil {
			return nil, err
		}
		drop := map[string]bool{}
		for _, n := range names {
			drop[n] = true
		}
		var cols []string
		for _, c := range tab.cols {
			if !drop[c] {
				cols = append(cols, c)
			}
		}
		for _, r := range tab.rows {
			for n := range drop {
				delete(r, n)
			}
		}
		tab.cols = cols
		return tab, nil
	case "project-rename":
		for {
			nt := p.next()
			if nt.kind != kqIdent || !p.acceptOp("=") {
				return nil, fmt.Errorf("query could not be parsed: bad project-rename at position %d", nt.pos)
			}
			ot := p.next()
			for i, c := range tab.cols {
				if c == ot.text {
					tab.cols[i] = nt.text
				}
			}
			for _, r := range tab.rows {
				if v, ok := r[ot.text]; ok {
					delete(r, ot.text)
					r[nt.text] = v
				}
			}
			if !p.acceptOp(",") {
				break
			}
		}
		return tab, nil
	case "sort", "order":
		if !p.acceptWord("by") {
			return nil, fmt.Errorf("query could not be parsed: expected 'by' after %s", opTok.text)
		}
		return p.parseSort(tab, -1)
	case "top":
		n, err := p.parseCount()
		if err != nil {
			return nil, err
		}
		if !p.acceptWord("by") {
			return nil, fmt.Errorf("query could not be parsed: expected 'by' after top")
		}
		return p.parseSort(tab, n)
	case "count":
		return &kqlTable{cols: []string{"Count"}, rows: []map[string]any{{"Count": int64(len(tab.rows))}}}, nil
	case "summarize":
		return p.parseSummarize(tab)
	case "distinct":
		names, err := p.parseNames()
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		out := &kqlTable{cols: names}
		for _, r := range tab.rows {
			key := ""
			nr := map[string]any{}
			for _, n := range names {
				key += fmt.Sprintf("%v\x00", r[n])
				nr[n] = r[n]
			}
			if !seen[key] {
				seen[key] = true
				out.rows = append(out.rows, nr)
			}
		}
		return out, nil
	}
	return nil, &HuntError{Status: 400, Code: "BadRequest", Message: fmt.Sprintf("simulator: KQL operator '%s' is not supported; set Tenant.Hunt to answer this query", opTok.text)}
}

func (p *kqlParser) parseCount() (int, error) {
	t := p.next()
	if t.kind != kqNumber || t.num < 0 {
		return 0, fmt.Errorf("query could not be parsed: expected a row count at position %d", t.pos)
	}
	return int(t.num), nil
}

func (p *kqlParser) parseNames() ([]string, error) {
	var names []string
	for {
		t := p.next()
		if t.kind != kqIdent {
			return nil, fmt.Errorf("query could not be parsed: expected a column name at position %d", t.pos)
		}
		names = append(names, t.text)
		if !p.acceptOp(",") {
			return names, nil
		}
	}
}

// parseProject handles project (replace the columns) and extend (add them).
func (p *kqlParser) parseProject(tab *kqlTable, extend bool) (*kqlTable, error) {
	type col struct {
		name string
		e    kqlExpr
	}
	var cols []col
	for {
		start := p.peek()
		var name string
		if start.kind == kqIdent && p.toks[p.i+1].kind == kqOp && p.toks[p.i+1].text == "=" {
			name = start.text
			p.i += 2
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if name == "" {
			if start.kind == kqIdent && p.toks[p.i-1].pos == start.pos {
				name = start.text
			} else {
				name = fmt.Sprintf("Column%d", len(cols)+1)
			}
		}
		cols = append(cols, col{name, e})
		if !p.acceptOp(",") {
			break
		}
	}
	out := &kqlTable{}
	if extend {
		out.cols = append(out.cols, tab.cols...)
	}
	for _, c := range cols {
		dup := false
		for _, x := range out.cols {
			if x == c.name {
				dup = true
			}
		}
		if !dup {
			out.cols = append(out.cols, c.name)
		}
	}
	for _, r := range tab.rows {
		nr := map[string]any{}
		if extend {
			for k, v := range r {
				nr[k] = v
			}
		}
		for _, c := range cols {
			v, err := c.e(r)
			if err != nil {
				return nil, err
			}
			nr[c.name] = v
		}
		out.rows = append(out.rows, nr)
	}
	return out, nil
}

func (p *kqlParser) parseSort(tab *kqlTable, top int) (*kqlTable, error) {
	type key struct {
		e    kqlExpr
		desc bool
	}
	var keys []key
	for {
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		k := key{e: e, desc: true} // KQL sorts descending by default
		if p.acceptWord("asc") {
			k.desc = false
		} else {
			p.acceptWord("desc")
		}
		if p.acceptWord("nulls") {
			p.next() // first/last
		}
		keys = append(keys, k)
		if !p.acceptOp(",") {
			break
		}
	}
	var sortErr error
	sort.SliceStable(tab.rows, func(i, j int) bool {
		for _, k := range keys {
			a, err1 := k.e(tab.rows[i])
			b, err2 := k.e(tab.rows[j])
			if err1 != nil || err2 != nil {
				sortErr = fmt.Errorf("sort key: %v %v", err1, err2)
				return false
			}
			c := orderCompare(kqlNorm(a), kqlNorm(b))
			if c == 0 {
				continue
			}
			if k.desc {
				return c > 0
			}
			return c < 0
		}
		return false
	})
	if sortErr != nil {
		return nil, sortErr
	}
	if top >= 0 && top < len(tab.rows) {
		tab.rows = tab.rows[:top]
	}
	return tab, nil
}

// --- scalar expressions ---

type kqlExpr func(row map[string]any) (any, error)

func (p *kqlParser) parseExpr() (kqlExpr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 100 {
		return nil, fmt.Errorf("query could not be parsed: expression nested too deeply")
	}
	return p.parseOrExpr()
}

func (p *kqlParser) parseOrExpr() (kqlExpr, error) {
	return p.parseLogic("or", true, p.parseAndExpr)
}

func (p *kqlParser) parseAndExpr() (kqlExpr, error) {
	return p.parseLogic("and", false, p.parseCmp)
}

// parseLogic parses operand (word operand)* into a short-circuit boolean:
// "or" stops at the first true operand (shortOn true), "and" at the first
// false one.
func (p *kqlParser) parseLogic(word string, shortOn bool, operand func() (kqlExpr, error)) (kqlExpr, error) {
	l, err := operand()
	if err != nil {
		return nil, err
	}
	for p.acceptWord(word) {
		r, err := operand()
		if err != nil {
			return nil, err
		}
		ll := l
		l = func(row map[string]any) (any, error) {
			a, err := ll(row)
			if err != nil {
				return nil, err
			}
			if b, _ := a.(bool); b == shortOn {
				return shortOn, nil
			}
			c, err := r(row)
			if err != nil {
				return nil, err
			}
			b, _ := c.(bool)
			return b, nil
		}
	}
	return l, nil
}

var kqlStringOps = map[string]bool{
	"has": true, "!has": true, "has_cs": true, "!has_cs": true,
	"contains": true, "!contains": true, "contains_cs": true, "!contains_cs": true,
	"startswith": true, "!startswith": true, "startswith_cs": true, "!startswith_cs": true,
	"endswith": true, "!endswith": true, "endswith_cs": true, "!endswith_cs": true,
	"hasprefix": true, "!hasprefix": true, "hassuffix": true, "!hassuffix": true,
}

var kqlListOps = map[string]bool{"in": true, "!in": true, "in~": true, "!in~": true, "has_any": true, "has_all": true}

func (p *kqlParser) parseCmp() (kqlExpr, error) {
	l, err := p.parseAdditive()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == kqOp && (t.text == "==" || t.text == "!=" || t.text == "=~" || t.text == "!~" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">=" || t.text == "<>"):
		p.next()
		r, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		op := t.text
		return func(row map[string]any) (any, error) {
			a, err := l(row)
			if err != nil {
				return nil, err
			}
			b, err := r(row)
			if err != nil {
				return nil, err
			}
			return kqlCompare(op, a, b), nil
		}, nil
	case t.kind == kqIdent && kqlStringOps[strings.ToLower(t.text)]:
		p.next()
		r, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		op := strings.ToLower(t.text)
		return func(row map[string]any) (any, error) {
			a, err := l(row)
			if err != nil {
				return nil, err
			}
			b, err := r(row)
			if err != nil {
				return nil, err
			}
			return kqlStringOp(op, kqlString(a), kqlString(b)), nil
		}, nil
	case t.kind == kqIdent && kqlListOps[strings.ToLower(t.text)]:
		p.next()
		op := strings.ToLower(t.text)
		list, err := p.parseList()
		if err != nil {
			return nil, err
		}
		return func(row map[string]any) (any, error) {
			a, err := l(row)
			if err != nil {
				return nil, err
			}
			items, err := list(row)
			if err != nil {
				return nil, err
			}
			return kqlListOp(op, a, items), nil
		}, nil
	case t.kind == kqIdent && strings.EqualFold(t.text, "matches"):
		p.next()
		if !p.acceptWord("regex") {
			return nil, fmt.Errorf("query could not be parsed: expected 'regex' after 'matches'")
		}
		rt := p.next()
		if rt.kind != kqString {
			return nil, fmt.Errorf("query could not be parsed: matches regex needs a string literal")
		}
		re, err := regexp.Compile(rt.text)
		if err != nil {
			return nil, fmt.Errorf("query could not be parsed: bad regex: %w", err)
		}
		return func(row map[string]any) (any, error) {
			a, err := l(row)
			if err != nil {
				return nil, err
			}
			return re.MatchString(kqlString(a)), nil
		}, nil
	case t.kind == kqIdent && (strings.EqualFold(t.text, "between") || strings.EqualFold(t.text, "!between")):
		p.next()
		neg := strings.HasPrefix(t.text, "!")
		if err := p.expectOp("("); err != nil {
			return nil, err
		}
		lo, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		if err := p.expectOp(".."); err != nil {
			return nil, err
		}
		hi, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		return func(row map[string]any) (any, error) {
			a, err1 := l(row)
			x, err2 := lo(row)
			y, err3 := hi(row)
			if err1 != nil || err2 != nil || err3 != nil {
				return nil, fmt.Errorf("between: %v %v %v", err1, err2, err3)
			}
			in := kqlCompare(">=", a, x) && kqlCompare("<=", a, y)
			return in != neg, nil
		}, nil
	}
	return l, nil
}

// parseList reads ("a", "b") or dynamic([...]) or a let-bound list.
func (p *kqlParser) parseList() (func(map[string]any) ([]any, error), error) {
	if p.acceptOp("(") {
		var items []kqlExpr
		for !p.isOp(")") {
			e, err := p.parseAdditive()
			if err != nil {
				return nil, err
			}
			items = append(items, e)
			if !p.acceptOp(",") {
				break
			}
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		return func(row map[string]any) ([]any, error) {
			var out []any
			for _, e := range items {
				v, err := e(row)
				if err != nil {
					return nil, err
				}
				if l, ok := v.([]any); ok {
					out = append(out, l...)
				} else {
					out = append(out, v)
				}
			}
			return out, nil
		}, nil
	}
	e, err := p.parseAdditive()
	if err != nil {
		return nil, err
	}
	return func(row map[string]any) ([]any, error) {
		v, err := e(row)
		if err != nil {
			return nil, err
		}
		if l, ok := v.([]any); ok {
			return l, nil
		}
		return []any{v}, nil
	}, nil
}

func (p *kqlParser) parseAdditive() (kqlExpr, error) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.next().text
		r, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		ll := l
		l = func(row map[string]any) (any, error) {
			a, err := ll(row)
			if err != nil {
				return nil, err
			}
			b, err := r(row)
			if err != nil {
				return nil, err
			}
			return kqlArith(op, a, b)
		}
	}
	return l, nil
}

func (p *kqlParser) parseUnary() (kqlExpr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 200 {
		return nil, fmt.Errorf("query could not be parsed: expression nested too deeply")
	}
	if p.isWord("not") && p.toks[p.i+1].kind == kqOp && p.toks[p.i+1].text == "(" {
		p.next()
		p.next()
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		return func(row map[string]any) (any, error) {
			v, err := e(row)
			if err != nil {
				return nil, err
			}
			b, _ := v.(bool)
			return !b, nil
		}, nil
	}
	if p.isOp("-") {
		p.next()
		e, err := p.parsePrimary()
		if err != nil {
			return nil, err
		}
		return func(row map[string]any) (any, error) {
			v, err := e(row)
			if err != nil {
				return nil, err
			}
			return kqlArith("-", 0.0, v)
		}, nil
	}
	return p.parsePrimary()
}

func (p *kqlParser) parsePrimary() (kqlExpr, error) {
	t := p.next()
	switch t.kind {
	case kqString:
		s := t.text
		return func(map[string]any) (any, error) { return s, nil }, nil
	case kqNumber:
		n := t.num
		return func(map[string]any) (any, error) { return n, nil }, nil
	case kqTimespan:
		d := t.dur
		return func(map[string]any) (any, error) { return d, nil }, nil
	case kqOp:
		if t.text == "(" {
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return e, nil
		}
	case kqIdent:
		switch strings.ToLower(t.text) {
		case "true", "false":
			b := strings.EqualFold(t.text, "true")
			return func(map[string]any) (any, error) { return b, nil }, nil
		}
		if p.isOp("(") {
			return p.parseCall(t)
		}
		name := t.text
		if v, ok := p.lets[name]; ok {
			return func(map[string]any) (any, error) { return v, nil }, nil
		}
		return func(row map[string]any) (any, error) {
			if row == nil {
				return nil, fmt.Errorf("Failed to resolve scalar expression named '%s'", name)
			}
			return row[name], nil
		}, nil
	}
	return nil, fmt.Errorf("query could not be parsed: unexpected '%s' at position %d", t.text, t.pos)
}

func (p *kqlParser) parseCall(fn kqlTok) (kqlExpr, error) {
	p.next() // (
	name := strings.ToLower(fn.text)
	if name == "datetime" {
		// datetime(2025-03-01) / datetime(2025-03-01T10:00:00Z) / datetime("...")
		var raw strings.Builder
		for !p.isOp(")") && p.peek().kind != kqEOF {
			raw.WriteString(p.next().text)
		}
		p.next()
		tm, ok := parseODataTime(strings.Trim(raw.String(), `"'`))
		if !ok {
			return nil, fmt.Errorf("query could not be parsed: bad datetime literal %q", raw.String())
		}
		return func(map[string]any) (any, error) { return tm, nil }, nil
	}
	if name == "dynamic" {
		if err := p.expectOp("["); err != nil {
			return nil, err
		}
		var items []kqlExpr
		for !p.isOp("]") {
			e, err := p.parseAdditive()
			if err != nil {
				return nil, err
			}
			items = append(items, e)
			if !p.acceptOp(",") {
				break
			}
		}
		if err := p.expectOp("]"); err != nil {
			return nil, err
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		return func(row map[string]any) (any, error) {
			out := make([]any, 0, len(items))
			for _, e := range items {
				v, err := e(row)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		}, nil
	}
	var args []kqlExpr
	for !p.isOp(")") {
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		args = append(args, e)
		if !p.acceptOp(",") {
			break
		}
	}
	if err := p.expectOp(")"); err != nil {
		return nil, err
	}
	now := p.now
	argc := map[string][2]int{
		"ago": {1, 1}, "now": {0, 1}, "tolower": {1, 1}, "toupper": {1, 1}, "strlen": {1, 1},
		"tostring": {1, 1}, "isempty": {1, 1}, "isnotempty": {1, 1}, "isnull": {1, 1}, "isnotnull": {1, 1},
		"iff": {3, 3}, "iif": {3, 3}, "substring": {2, 3}, "indexof": {2, 2}, "strcat": {1, 64},
		"todatetime": {1, 1}, "tolong": {1, 1}, "toint": {1, 1}, "bin": {2, 2}, "floor": {2, 2},
	}
	lim, ok := argc[name]
	if !ok {
		return nil, &HuntError{Status: 400, Code: "BadRequest", Message: fmt.Sprintf("simulator: KQL function '%s' is not supported; set Tenant.Hunt to answer this query", fn.text)}
	}
	if len(args) < lim[0] || len(args) > lim[1] {
		return nil, fmt.Errorf("query could not be parsed: %s() takes %d to %d arguments", fn.text, lim[0], lim[1])
	}
	return func(row map[string]any) (any, error) {
		vals := make([]any, len(args))
		for i, a := range args {
			v, err := a(row)
			if err != nil {
				return nil, err
			}
			vals[i] = v
		}
		switch name {
		case "ago":
			d, ok := vals[0].(time.Duration)
			if !ok {
				return nil, fmt.Errorf("ago() expects a timespan")
			}
			return now.Add(-d), nil
		case "now":
			if len(vals) == 1 {
				if d, ok := vals[0].(time.Duration); ok {
					return now.Add(d), nil
				}
			}
			return now, nil
		case "tolower":
			return strings.ToLower(kqlString(vals[0])), nil
		case "toupper":
			return strings.ToUpper(kqlString(vals[0])), nil
		case "strlen":
			return float64(len([]rune(kqlString(vals[0])))), nil
		case "tostring":
			return kqlString(vals[0]), nil
		case "isempty":
			return kqlString(vals[0]) == "", nil
		case "isnotempty":
			return kqlString(vals[0]) != "", nil
		case "isnull":
			return vals[0] == nil, nil
		case "isnotnull":
			return vals[0] != nil, nil
		case "iff", "iif":
			if b, _ := vals[0].(bool); b {
				return vals[1], nil
			}
			return vals[2], nil
		case "substring":
			r := []rune(kqlString(vals[0]))
			start := int(kqlNum(vals[1]))
			start = max(0, min(start, len(r)))
			end := len(r)
			if len(vals) == 3 {
				end = min(len(r), start+max(0, int(kqlNum(vals[2]))))
			}
			return string(r[start:end]), nil
		case "indexof":
			return float64(strings.Index(kqlString(vals[0]), kqlString(vals[1]))), nil
		case "strcat":
			var b strings.Builder
			for _, v := range vals {
				b.WriteString(kqlString(v))
			}
			return b.String(), nil
		case "todatetime":
			if tm, ok := kqlNorm(vals[0]).(time.Time); ok {
				return tm, nil
			}
			if tm, ok := parseODataTime(kqlString(vals[0])); ok {
				return tm, nil
			}
			return nil, nil
		case "bin", "floor":
			return kqlBin(vals[0], vals[1]), nil
		case "tolong", "toint":
			n := kqlNum(vals[0])
			if math.IsNaN(n) {
				return nil, nil
			}
			return math.Trunc(n), nil
		}
		return nil, nil
	}, nil
}

// --- value semantics ---

// kqlNorm maps row values to the evaluator's types: string, float64, bool,
// time.Time, time.Duration, []any or nil.
func kqlNorm(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case float32:
		return float64(x)
	case time.Time:
		return x.UTC()
	case string:
		return x
	}
	if n, ok := v.(interface{ Float64() (float64, error) }); ok {
		f, err := n.Float64()
		if err == nil {
			return f
		}
	}
	return v
}

func kqlString(v any) string {
	switch x := kqlNorm(v).(type) {
	case nil:
		return ""
	case string:
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Duration:
		return fmtTimespan(x)
	}
	return fmt.Sprint(v)
}

func kqlNum(v any) float64 {
	switch x := kqlNorm(v).(type) {
	case float64:
		return x
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err == nil {
			return f
		}
	}
	return math.NaN()
}

func kqlCompare(op string, a, b any) bool {
	a, b = kqlNorm(a), kqlNorm(b)
	// A DateTime column stored as text still compares as a time.
	if ta, ok := a.(time.Time); ok {
		if sb, ok := b.(string); ok {
			if tb, ok := parseODataTime(sb); ok {
				b = tb
			}
		}
		_ = ta
	}
	if _, ok := b.(time.Time); ok {
		if sa, ok := a.(string); ok {
			if ta, ok := parseODataTime(sa); ok {
				a = ta
			}
		}
	}
	if da, ok := a.(time.Duration); ok {
		a = float64(da)
	}
	if db, ok := b.(time.Duration); ok {
		b = float64(db)
	}
	switch op {
	case "=~":
		return strings.EqualFold(kqlString(a), kqlString(b))
	case "!~":
		return !strings.EqualFold(kqlString(a), kqlString(b))
	}
	if a == nil || b == nil {
		switch op {
		case "==":
			return a == nil && b == nil
		case "!=", "<>":
			return (a == nil) != (b == nil)
		}
		return false
	}
	c, ok := compare(a, b)
	if !ok {
		// Mixed string/number: compare as strings like Kusto's tostring.
		c = strings.Compare(kqlString(a), kqlString(b))
	}
	switch op {
	case "==":
		return c == 0
	case "!=", "<>":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

func kqlArith(op string, a, b any) (any, error) {
	a, b = kqlNorm(a), kqlNorm(b)
	switch x := a.(type) {
	case time.Time:
		d, ok := b.(time.Duration)
		if ok {
			if op == "+" {
				return x.Add(d), nil
			}
			return x.Add(-d), nil
		}
		if y, ok := b.(time.Time); ok && op == "-" {
			return x.Sub(y), nil
		}
	case time.Duration:
		if d, ok := b.(time.Duration); ok {
			if op == "+" {
				return x + d, nil
			}
			return x - d, nil
		}
	case float64:
		if y, ok := b.(float64); ok {
			if op == "+" {
				return x + y, nil
			}
			return x - y, nil
		}
		if d, ok := b.(time.Duration); ok && x == 0 && op == "-" {
			return -d, nil
		}
	}
	return nil, nil
}

func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// kqlHas implements the term match of "has": needle occurs with no
// alphanumeric character glued to it on either side.
func kqlHas(hay, needle string, caseSensitive bool) bool {
	if needle == "" {
		return true
	}
	if !caseSensitive {
		hay, needle = strings.ToLower(hay), strings.ToLower(needle)
	}
	nr := []rune(needle)
	needFrontBoundary := isAlnum(nr[0])
	needBackBoundary := isAlnum(nr[len(nr)-1])
	from := 0
	for {
		i := strings.Index(hay[from:], needle)
		if i < 0 {
			return false
		}
		i += from
		okFront := !needFrontBoundary || i == 0 || !isAlnum(lastRune(hay[:i]))
		j := i + len(needle)
		okBack := !needBackBoundary || j == len(hay) || !isAlnum(firstRune(hay[j:]))
		if okFront && okBack {
			return true
		}
		from = i + 1
	}
}

func lastRune(s string) rune {
	r := []rune(s)
	return r[len(r)-1]
}

func firstRune(s string) rune {
	for _, r := range s {
		return r
	}
	return 0
}

func kqlStringOp(op, a, b string) bool {
	neg := strings.HasPrefix(op, "!")
	op = strings.TrimPrefix(op, "!")
	cs := strings.HasSuffix(op, "_cs")
	op = strings.TrimSuffix(op, "_cs")
	if !cs {
		a, b = strings.ToLower(a), strings.ToLower(b)
	}
	var r bool
	switch op {
	case "has":
		r = kqlHas(a, b, true)
	case "contains":
		r = strings.Contains(a, b)
	case "startswith":
		r = strings.HasPrefix(a, b)
	case "endswith":
		r = strings.HasSuffix(a, b)
	case "hasprefix":
		r = kqlHas(a, b, true) || strings.HasPrefix(a, b) || strings.Contains(a, " "+b)
	case "hassuffix":
		r = strings.HasSuffix(a, b) || strings.Contains(a, b+" ")
	}
	return r != neg
}

func kqlListOp(op string, a any, items []any) bool {
	switch op {
	case "has_any":
		s := kqlString(a)
		for _, it := range items {
			if kqlHas(s, kqlString(it), false) {
				return true
			}
		}
		return false
	case "has_all":
		s := kqlString(a)
		for _, it := range items {
			if !kqlHas(s, kqlString(it), false) {
				return false
			}
		}
		return true
	}
	neg := strings.HasPrefix(op, "!")
	ci := strings.HasSuffix(op, "~")
	hit := false
	for _, it := range items {
		if ci {
			if strings.EqualFold(kqlString(a), kqlString(it)) {
				hit = true
			}
		} else if kqlCompare("==", a, it) {
			hit = true
		}
	}
	return hit != neg
}

// fmtTimespan renders a duration as a Kusto timespan (d.hh:mm:ss.fffffff).
func fmtTimespan(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	d -= s * time.Second
	out := fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	if d > 0 {
		out += fmt.Sprintf(".%07d", d/100)
	}
	if days > 0 {
		out = fmt.Sprintf("%d.%s", days, out)
	}
	if neg {
		out = "-" + out
	}
	return out
}

// kqlBin rounds v down to a multiple of size (timespan for datetimes).
func kqlBin(v, size any) any {
	v = kqlNorm(v)
	if ts, ok := v.(time.Time); ok {
		d, ok := size.(time.Duration)
		if !ok || d <= 0 {
			return nil
		}
		return time.Unix(0, 0).UTC().Add(ts.Sub(time.Unix(0, 0).UTC()) / d * d)
	}
	n, step := kqlNum(v), kqlNum(size)
	if math.IsNaN(n) || math.IsNaN(step) || step <= 0 {
		return nil
	}
	return math.Floor(n/step) * step
}

type kqlAgg struct {
	name string
	fn   string
	arg  kqlExpr
}

var kqlAggNames = map[string]string{
	"count": "count_", "countif": "countif_", "dcount": "dcount_", "sum": "sum_", "min": "min_", "max": "max_",
	"any": "any_", "take_any": "any_", "make_set": "set_", "make_list": "list_",
}

// parseSummarize implements "summarize [N =] agg(...), ... [by [N =] expr, ...]".
func (p *kqlParser) parseSummarize(tab *kqlTable) (*kqlTable, error) {
	var aggs []kqlAgg
	for !p.isWord("by") && p.peek().kind != kqEOF && !p.isOp("|") {
		name := ""
		if p.peek().kind == kqIdent && p.toks[p.i+1].kind == kqOp && p.toks[p.i+1].text == "=" {
			name = p.next().text
			p.next()
		}
		fnTok := p.next()
		fn := strings.ToLower(fnTok.text)
		prefix, ok := kqlAggNames[fn]
		if fnTok.kind != kqIdent || !ok || !p.isOp("(") {
			return nil, &HuntError{Status: 400, Code: "BadRequest", Message: fmt.Sprintf("simulator: summarize aggregation '%s' is not supported; set Tenant.Hunt to answer this query", fnTok.text)}
		}
		p.next()
		var arg kqlExpr
		argName := ""
		if !p.isOp(")") {
			if t := p.peek(); t.kind == kqIdent {
				argName = t.text
			}
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			arg = e
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		if (fn != "count") && arg == nil {
			return nil, fmt.Errorf("query could not be parsed: %s() needs an argument", fn)
		}
		if name == "" {
			name = prefix
			if fn != "count" && fn != "countif" {
				name += argName
			}
		}
		aggs = append(aggs, kqlAgg{name: name, fn: fn, arg: arg})
		if !p.acceptOp(",") {
			break
		}
	}
	type byCol struct {
		name string
		e    kqlExpr
	}
	var bys []byCol
	if p.acceptWord("by") {
		for {
			start := p.peek()
			name := ""
			if start.kind == kqIdent && p.toks[p.i+1].kind == kqOp && p.toks[p.i+1].text == "=" {
				name = start.text
				p.i += 2
			}
			firstIdx := p.i
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if name == "" {
				first := p.toks[firstIdx]
				switch {
				case first.kind == kqIdent && p.i == firstIdx+1:
					name = first.text
				case first.kind == kqIdent && strings.EqualFold(first.text, "bin") && p.toks[firstIdx+2].kind == kqIdent:
					name = p.toks[firstIdx+2].text
				default:
					name = fmt.Sprintf("Column%d", len(bys)+1)
				}
			}
			bys = append(bys, byCol{name, e})
			if !p.acceptOp(",") {
				break
			}
		}
	}
	if len(aggs) == 0 && len(bys) == 0 {
		return nil, fmt.Errorf("query could not be parsed: summarize needs an aggregation or a by clause")
	}
	type group struct {
		keys []any
		rows []map[string]any
	}
	var order []string
	groups := map[string]*group{}
	for _, r := range tab.rows {
		keys := make([]any, len(bys))
		k := ""
		for i, b := range bys {
			v, err := b.e(r)
			if err != nil {
				return nil, err
			}
			keys[i] = v
			k += kqlString(v) + "\x00"
		}
		g, ok := groups[k]
		if !ok {
			g = &group{keys: keys}
			groups[k] = g
			order = append(order, k)
		}
		g.rows = append(g.rows, r)
	}
	if len(bys) == 0 && len(order) == 0 { // summarize over no rows still yields one row
		groups[""] = &group{}
		order = append(order, "")
	}
	out := &kqlTable{}
	for _, b := range bys {
		out.cols = append(out.cols, b.name)
	}
	for _, a := range aggs {
		out.cols = append(out.cols, a.name)
	}
	for _, k := range order {
		g := groups[k]
		row := map[string]any{}
		for i, b := range bys {
			row[b.name] = g.keys[i]
		}
		for _, a := range aggs {
			v, err := kqlAggregate(a, g.rows)
			if err != nil {
				return nil, err
			}
			row[a.name] = v
		}
		out.rows = append(out.rows, row)
	}
	return out, nil
}

func kqlAggregate(a kqlAgg, rows []map[string]any) (any, error) {
	vals := make([]any, 0, len(rows))
	if a.arg != nil {
		for _, r := range rows {
			v, err := a.arg(r)
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
	}
	switch a.fn {
	case "count":
		return int64(len(rows)), nil
	case "countif":
		n := int64(0)
		for _, v := range vals {
			if b, _ := v.(bool); b {
				n++
			}
		}
		return n, nil
	case "dcount":
		seen := map[string]bool{}
		for _, v := range vals {
			if v != nil {
				seen[kqlString(v)] = true
			}
		}
		return int64(len(seen)), nil
	case "sum":
		total := 0.0
		for _, v := range vals {
			if n := kqlNum(v); !math.IsNaN(n) {
				total += n
			}
		}
		return total, nil
	case "min", "max":
		var best any
		for _, v := range vals {
			v = kqlNorm(v)
			if v == nil {
				continue
			}
			if best == nil {
				best = v
				continue
			}
			c, ok := compare(v, best)
			if ok && ((a.fn == "min" && c < 0) || (a.fn == "max" && c > 0)) {
				best = v
			}
		}
		return best, nil
	case "any", "take_any":
		for _, v := range vals {
			if v != nil {
				return v, nil
			}
		}
		return nil, nil
	case "make_set", "make_list":
		out := []any{}
		seen := map[string]bool{}
		for _, v := range vals {
			if v == nil {
				continue
			}
			if a.fn == "make_set" {
				k := kqlString(v)
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("aggregation %s not supported", a.fn)
}
