package sim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file implements the part of OData v4 the MDE and Graph list calls
// accept: $filter (eq ne gt ge lt le, in, and/or/not, parentheses,
// startswith/endswith/contains, collection/any(x: ...) and /all), $top, $skip,
// $orderby, $count, $select and $expand. Errors mirror ASP.NET OData's
// messages and map to 400 ODataError.

type fieldKind int

const (
	kString fieldKind = iota
	kEnum
	kDateTime
	kInt
	kBool
	kStringList
)

func (k fieldKind) edm() string {
	switch k {
	case kDateTime:
		return "Edm.DateTimeOffset"
	case kInt:
		return "Edm.Int64"
	case kBool:
		return "Edm.Boolean"
	case kStringList:
		return "Collection(Edm.String)"
	}
	return "Edm.String"
}

type field struct {
	JSON string
	Kind fieldKind
	Enum []string // kEnum: the allowed members (case-sensitive)
}

// schema describes the filterable/sortable properties of an entity set,
// keyed by lower-case property name (lookups are case-insensitive).
type schema struct {
	entity string // e.g. microsoft.windowsDefenderATP.api.PublicAlertV2Api
	fields map[string]field
}

func newSchema(entity string, fs ...field) schema {
	m := make(map[string]field, len(fs))
	for _, f := range fs {
		m[strings.ToLower(f.JSON)] = f
	}
	return schema{entity: entity, fields: m}
}

func (s schema) lookup(name string) (field, *apiError) {
	f, ok := s.fields[strings.ToLower(name)]
	if !ok {
		return field{}, errOData(fmt.Sprintf("Could not find a property named '%s' on type '%s', or the property cannot be used in $filter/$orderby.", name, s.entity))
	}
	return f, nil
}

// --- tokens ---

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDateTime
	tGUID
	tLParen
	tRParen
	tComma
	tColon
	tSlash
)

type token struct {
	kind tokKind
	text string
	pos  int
	t    time.Time
	n    float64
}

var (
	dateTimeRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|z|[+-]\d{2}:\d{2})?`)
	guidLitRe  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b`)
	numberRe   = regexp.MustCompile(`^-?\d+(\.\d+)?([eE][+-]?\d+)?`)
)

func parseODataTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, strings.Replace(s, "z", "Z", 1)); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func lexOData(src string) ([]token, *apiError) {
	var out []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{kind: tLParen, text: "(", pos: i})
			i++
		case c == ')':
			out = append(out, token{kind: tRParen, text: ")", pos: i})
			i++
		case c == ',':
			out = append(out, token{kind: tComma, text: ",", pos: i})
			i++
		case c == ':':
			out = append(out, token{kind: tColon, text: ":", pos: i})
			i++
		case c == '/':
			out = append(out, token{kind: tSlash, text: "/", pos: i})
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(src) {
				if src[j] == '\'' {
					if j+1 < len(src) && src[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(src[j])
				j++
			}
			if !closed {
				return nil, errOData(fmt.Sprintf("There is an unterminated string literal at position %d in '%s'.", i, src))
			}
			out = append(out, token{kind: tString, text: b.String(), pos: i})
			i = j
		default:
			rest := src[i:]
			if m := guidLitRe.FindString(rest); m != "" {
				out = append(out, token{kind: tGUID, text: m, pos: i})
				i += len(m)
				continue
			}
			if c >= '0' && c <= '9' {
				if m := dateTimeRe.FindString(rest); m != "" && len(m) >= 10 && rest[4] == '-' {
					t, ok := parseODataTime(m)
					if !ok {
						return nil, errOData(fmt.Sprintf("Unrecognized 'Edm.DateTimeOffset' literal '%s' at '%d' in '%s'.", m, i, src))
					}
					out = append(out, token{kind: tDateTime, text: m, pos: i, t: t})
					i += len(m)
					continue
				}
			}
			if (c >= '0' && c <= '9') || (c == '-' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9') {
				m := numberRe.FindString(rest)
				n, err := strconv.ParseFloat(m, 64)
				if err != nil {
					return nil, errOData(fmt.Sprintf("Syntax error at position %d in '%s'.", i, src))
				}
				out = append(out, token{kind: tNumber, text: m, pos: i, n: n})
				i += len(m)
				continue
			}
			if isIdentStart(c) {
				j := i + 1
				for j < len(src) && isIdentPart(src[j]) {
					j++
				}
				out = append(out, token{kind: tIdent, text: src[i:j], pos: i})
				i = j
				continue
			}
			return nil, errOData(fmt.Sprintf("Syntax error: character '%c' is not valid at position %d in '%s'.", c, i, src))
		}
	}
	out = append(out, token{kind: tEOF, pos: len(src)})
	return out, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '@' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || (c >= '0' && c <= '9') || c == '.'
}

// --- AST ---

type litKind int

const (
	lNull litKind = iota
	lString
	lNumber
	lDateTime
	lBool
)

type literal struct {
	kind litKind
	s    string
	n    float64
	t    time.Time
	b    bool
}

func (l literal) edm() string {
	switch l.kind {
	case lNull:
		return "null"
	case lNumber:
		return "Edm.Int64"
	case lDateTime:
		return "Edm.DateTimeOffset"
	case lBool:
		return "Edm.Boolean"
	}
	return "Edm.String"
}

// operand is a property of the entity, the lambda variable, or a literal.
type operand struct {
	prop   *field
	lambda bool
	lit    *literal
}

type expr interface {
	eval(ent map[string]any, lambdaVal any) bool
}

type andExpr struct{ l, r expr }
type orExpr struct{ l, r expr }
type notExpr struct{ e expr }

func (e andExpr) eval(ent map[string]any, v any) bool { return e.l.eval(ent, v) && e.r.eval(ent, v) }
func (e orExpr) eval(ent map[string]any, v any) bool  { return e.l.eval(ent, v) || e.r.eval(ent, v) }
func (e notExpr) eval(ent map[string]any, v any) bool { return !e.e.eval(ent, v) }

type cmpExpr struct {
	op   string // eq ne gt ge lt le
	l, r operand
}

type inExpr struct {
	l    operand
	list []literal
}

type funcExpr struct {
	name string // startswith endswith contains
	arg  operand
	lit  string
}

type lambdaExpr struct {
	all  bool
	coll field
	body expr // nil: any() with no predicate
}

// value resolves an operand to a comparable Go value: nil, string,
// float64, time.Time or bool.
func (o operand) value(ent map[string]any, lambdaVal any) any {
	switch {
	case o.lit != nil:
		switch o.lit.kind {
		case lString:
			return o.lit.s
		case lNumber:
			return o.lit.n
		case lDateTime:
			return o.lit.t
		case lBool:
			return o.lit.b
		}
		return nil
	case o.lambda:
		return normalizeValue(lambdaVal, kString)
	case o.prop != nil:
		return normalizeValue(lookupPath(ent, o.prop.JSON), o.prop.Kind)
	}
	return nil
}

// lookupPath reads a (possibly dotted) JSON property path.
func lookupPath(ent map[string]any, path string) any {
	var cur any = ent
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func normalizeValue(v any, k fieldKind) any {
	switch x := v.(type) {
	case nil:
		return nil
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return nil
		}
		return f
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case bool:
		return x
	case time.Time:
		return x.UTC()
	case string:
		if k == kDateTime {
			if t, ok := parseODataTime(x); ok {
				return t
			}
			return nil
		}
		if k == kInt {
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				return f
			}
		}
		return x
	}
	return v
}

// compare returns -1/0/1 and false when the values are not comparable.
func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case time.Time:
		y, ok := b.(time.Time)
		if !ok {
			return 0, false
		}
		return x.Compare(y), true
	case bool:
		y, ok := b.(bool)
		if !ok {
			return 0, false
		}
		if x == y {
			return 0, true
		}
		if !x {
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

func (e cmpExpr) eval(ent map[string]any, lv any) bool {
	a, b := e.l.value(ent, lv), e.r.value(ent, lv)
	if a == nil || b == nil {
		switch e.op {
		case "eq":
			return a == nil && b == nil
		case "ne":
			return (a == nil) != (b == nil)
		}
		return false
	}
	c, ok := compare(a, b)
	if !ok {
		return e.op == "ne"
	}
	switch e.op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	}
	return false
}

func (e inExpr) eval(ent map[string]any, lv any) bool {
	a := e.l.value(ent, lv)
	for _, l := range e.list {
		b := operand{lit: &l}.value(ent, lv)
		if a == nil && b == nil {
			return true
		}
		if c, ok := compare(a, b); ok && c == 0 {
			return true
		}
	}
	return false
}

func (e funcExpr) eval(ent map[string]any, lv any) bool {
	s, ok := e.arg.value(ent, lv).(string)
	if !ok {
		return false
	}
	switch e.name {
	case "startswith":
		return strings.HasPrefix(s, e.lit)
	case "endswith":
		return strings.HasSuffix(s, e.lit)
	case "contains":
		return strings.Contains(s, e.lit)
	}
	return false
}

func (e lambdaExpr) eval(ent map[string]any, _ any) bool {
	items, _ := lookupPath(ent, e.coll.JSON).([]any)
	if e.body == nil {
		return len(items) > 0
	}
	for _, it := range items {
		hit := e.body.eval(ent, it)
		if e.all && !hit {
			return false
		}
		if !e.all && hit {
			return true
		}
	}
	return e.all
}

// --- parser ---

type odataParser struct {
	src      string
	toks     []token
	i        int
	sch      schema
	lambda   string // the lambda variable in scope, if any
	depth    int
	advanced bool // the last next() moved forward
}

func parseFilter(src string, sch schema) (expr, *apiError) {
	toks, err := lexOData(src)
	if err != nil {
		return nil, err
	}
	p := &odataParser{src: src, toks: toks, sch: sch}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, p.syntax()
	}
	return e, nil
}

func (p *odataParser) peek() token { return p.toks[p.i] }
func (p *odataParser) next() token {
	t := p.toks[p.i]
	p.advanced = t.kind != tEOF
	if p.advanced {
		p.i++
	}
	return t
}

// unread steps back over the token next returned (not over EOF).
func (p *odataParser) unread() {
	if p.advanced {
		p.i--
		p.advanced = false
	}
}

func (p *odataParser) syntax() *apiError {
	t := p.peek()
	if t.kind == tEOF {
		return errOData(fmt.Sprintf("Syntax error: unexpected end of the $filter expression '%s'.", p.src))
	}
	return errOData(fmt.Sprintf("Syntax error at position %d in '%s'.", t.pos, p.src))
}

func (p *odataParser) keyword(kw string) bool {
	t := p.peek()
	if t.kind == tIdent && t.text == kw {
		p.i++
		return true
	}
	return false
}

func (p *odataParser) parseOr() (expr, *apiError) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 100 {
		return nil, errOData("The $filter expression is nested too deeply.")
	}
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		l = orExpr{l, r}
	}
	return l, nil
}

func (p *odataParser) parseAnd() (expr, *apiError) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		l = andExpr{l, r}
	}
	return l, nil
}

func (p *odataParser) parseUnary() (expr, *apiError) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 100 {
		return nil, errOData("The $filter expression is nested too deeply.")
	}
	if p.keyword("not") {
		e, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return notExpr{e}, nil
	}
	return p.parsePrimary()
}

func (p *odataParser) parsePrimary() (expr, *apiError) {
	t := p.peek()
	if t.kind == tLParen {
		p.next()
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.next().kind != tRParen {
			return nil, errOData(fmt.Sprintf("')' or operator expected at position %d in '%s'.", p.toks[p.i-1].pos, p.src))
		}
		return e, nil
	}
	if t.kind == tIdent && p.toks[p.i+1].kind == tLParen {
		switch strings.ToLower(t.text) {
		case "startswith", "endswith", "contains":
			return p.parseStringFunc()
		}
		return nil, errOData(fmt.Sprintf("An unknown function with name '%s' was found.", t.text))
	}
	if t.kind == tIdent && p.toks[p.i+1].kind == tSlash {
		return p.parseLambda()
	}
	left, err := p.parseOperand()
	if err != nil {
		return nil, err
	}
	opTok := p.next()
	if opTok.kind != tIdent {
		return nil, errOData(fmt.Sprintf("Syntax error at position %d in '%s': a comparison operator was expected.", opTok.pos, p.src))
	}
	op := opTok.text
	switch op {
	case "in":
		return p.parseIn(left)
	case "eq", "ne", "gt", "ge", "lt", "le":
	default:
		return nil, errOData(fmt.Sprintf("Syntax error at position %d in '%s': '%s' is not a comparison operator.", opTok.pos, p.src, op))
	}
	right, err := p.parseOperand()
	if err != nil {
		return nil, err
	}
	if err := p.checkTypes(op, left, right); err != nil {
		return nil, err
	}
	return cmpExpr{op: op, l: left, r: right}, nil
}

var opNames = map[string]string{
	"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan", "le": "LessThanOrEqual",
}

// checkTypes enforces the EDM type rules ASP.NET OData applies: no string
// literal against a DateTimeOffset, enum literals must be members, and so on.
func (p *odataParser) checkTypes(op string, l, r operand) *apiError {
	if l.lit != nil && r.lit != nil {
		return nil
	}
	prop, lit := l, r
	if l.lit != nil {
		prop, lit = r, l
	}
	if lit.lit == nil {
		return errOData("Comparing two properties is not supported.")
	}
	kind := kString
	if prop.prop != nil {
		kind = prop.prop.Kind
	}
	if lit.lit.kind == lNull {
		if op != "eq" && op != "ne" {
			return errOData(fmt.Sprintf("A binary operator with incompatible types was detected. Found operand types '%s' and 'null' for operator kind '%s'.", kind.edm(), opNames[op]))
		}
		return nil
	}
	bad := func() *apiError {
		return errOData(fmt.Sprintf("A binary operator with incompatible types was detected. Found operand types '%s' and '%s' for operator kind '%s'.", kind.edm(), lit.lit.edm(), opNames[op]))
	}
	switch kind {
	case kDateTime:
		if lit.lit.kind != lDateTime {
			return bad()
		}
	case kInt:
		if lit.lit.kind != lNumber {
			return bad()
		}
	case kBool:
		if lit.lit.kind != lBool {
			return bad()
		}
	case kString:
		if lit.lit.kind != lString {
			return bad()
		}
	case kEnum:
		if lit.lit.kind != lString {
			return bad()
		}
		if err := checkEnum(*prop.prop, lit.lit.s); err != nil {
			return err
		}
	case kStringList:
		return errOData(fmt.Sprintf("The property '%s' is a collection; use %s/any(t: t eq 'value').", prop.prop.JSON, prop.prop.JSON))
	}
	return nil
}

func checkEnum(f field, v string) *apiError {
	for _, m := range f.Enum {
		if m == v {
			return nil
		}
	}
	return errOData(fmt.Sprintf("The string '%s' is not a valid enumeration type constant for property '%s'. Valid values: %s.", v, f.JSON, strings.Join(f.Enum, ", ")))
}

func (p *odataParser) parseOperand() (operand, *apiError) {
	t := p.next()
	switch t.kind {
	case tString:
		return operand{lit: &literal{kind: lString, s: t.text}}, nil
	case tGUID:
		return operand{lit: &literal{kind: lString, s: t.text}}, nil
	case tNumber:
		return operand{lit: &literal{kind: lNumber, n: t.n}}, nil
	case tDateTime:
		return operand{lit: &literal{kind: lDateTime, t: t.t}}, nil
	case tIdent:
		switch t.text {
		case "null":
			return operand{lit: &literal{kind: lNull}}, nil
		case "true", "false":
			return operand{lit: &literal{kind: lBool, b: t.text == "true"}}, nil
		}
		if p.lambda != "" && t.text == p.lambda {
			return operand{lambda: true}, nil
		}
		f, err := p.sch.lookup(t.text)
		if err != nil {
			return operand{}, err
		}
		return operand{prop: &f}, nil
	}
	p.unread()
	return operand{}, p.syntax()
}

func (p *odataParser) parseIn(left operand) (expr, *apiError) {
	if left.prop == nil && !left.lambda {
		return nil, errOData("The left operand of 'in' must be a property.")
	}
	if p.next().kind != tLParen {
		return nil, p.syntax()
	}
	var list []literal
	for {
		o, err := p.parseOperand()
		if err != nil {
			return nil, err
		}
		if o.lit == nil {
			return nil, errOData("The 'in' operator takes a list of literals.")
		}
		if err := p.checkTypes("eq", left, o); err != nil {
			return nil, err
		}
		list = append(list, *o.lit)
		t := p.next()
		if t.kind == tRParen {
			break
		}
		if t.kind != tComma {
			p.unread()
			return nil, p.syntax()
		}
	}
	return inExpr{l: left, list: list}, nil
}

func (p *odataParser) parseStringFunc() (expr, *apiError) {
	name := strings.ToLower(p.next().text)
	p.next() // (
	arg, err := p.parseOperand()
	if err != nil {
		return nil, err
	}
	if arg.prop != nil && arg.prop.Kind != kString && arg.prop.Kind != kEnum {
		return nil, errOData(fmt.Sprintf("No function signature for the function with name '%s' matches the specified arguments.", name))
	}
	if p.next().kind != tComma {
		p.unread()
		return nil, p.syntax()
	}
	lit := p.next()
	if lit.kind != tString {
		return nil, errOData(fmt.Sprintf("No function signature for the function with name '%s' matches the specified arguments.", name))
	}
	if p.next().kind != tRParen {
		p.unread()
		return nil, p.syntax()
	}
	return funcExpr{name: name, arg: arg, lit: lit.text}, nil
}

func (p *odataParser) parseLambda() (expr, *apiError) {
	collTok := p.next()
	f, err := p.sch.lookup(collTok.text)
	if err != nil {
		return nil, err
	}
	p.next() // '/'
	kw := p.next()
	if kw.kind != tIdent || (kw.text != "any" && kw.text != "all") {
		return nil, errOData(fmt.Sprintf("Syntax error at position %d in '%s': expected any or all.", kw.pos, p.src))
	}
	if f.Kind != kStringList {
		return nil, errOData(fmt.Sprintf("The '%s' lambda operator requires a collection; '%s' is not one.", kw.text, f.JSON))
	}
	if p.next().kind != tLParen {
		p.unread()
		return nil, p.syntax()
	}
	if p.peek().kind == tRParen {
		p.next()
		if kw.text == "all" {
			return nil, errOData("The 'all' lambda operator requires a predicate.")
		}
		return lambdaExpr{coll: f}, nil
	}
	v := p.next()
	if v.kind != tIdent || p.next().kind != tColon {
		return nil, errOData(fmt.Sprintf("Syntax error in the lambda expression of '%s'.", p.src))
	}
	if p.lambda != "" {
		return nil, errOData("Nested lambda expressions are not supported.")
	}
	p.lambda = v.text
	body, err := p.parseOr()
	p.lambda = ""
	if err != nil {
		return nil, err
	}
	if p.next().kind != tRParen {
		p.unread()
		return nil, p.syntax()
	}
	return lambdaExpr{all: kw.text == "all", coll: f, body: body}, nil
}

// --- query options and paging ---

type orderKey struct {
	f    field
	desc bool
}

type listQuery struct {
	filter  expr
	top     int
	hasTop  bool
	skip    int
	orderby []orderKey
	count   bool
	expand  map[string]bool
	selects []string
}

type listSpec struct {
	sch       schema
	maxTop    int
	expand    []string // $expand values accepted (lower-case)
	allowed   map[string]bool
	skipToken bool // Graph: paging uses $skiptoken
}

var knownOptions = map[string]bool{
	"$filter": true, "$top": true, "$skip": true, "$orderby": true, "$count": true,
	"$expand": true, "$select": true, "$skiptoken": true, "$format": true,
}

// parseListQuery reads the system query options. Graph accepts $skiptoken
// (opaque, produced by the simulator); MDE pages with $skip.
func parseListQuery(q url.Values, spec listSpec) (*listQuery, *apiError) {
	lq := &listQuery{expand: map[string]bool{}}
	for k := range q {
		if strings.HasPrefix(k, "$") && !knownOptions[strings.ToLower(k)] {
			return nil, errOData(fmt.Sprintf("The query parameter '%s' is not supported.", k))
		}
	}
	get := func(name string) (string, bool) {
		for k, v := range q {
			if strings.EqualFold(k, name) && len(v) > 0 {
				return v[0], true
			}
		}
		return "", false
	}
	if v, ok := get("$filter"); ok && strings.TrimSpace(v) != "" {
		e, err := parseFilter(v, spec.sch)
		if err != nil {
			return nil, err
		}
		lq.filter = e
	}
	if v, ok := get("$top"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return nil, errOData(fmt.Sprintf("Invalid value '%s' for $top query option found. The $top query option requires a non-negative integer value.", v))
		}
		if n > spec.maxTop {
			return nil, errOData(fmt.Sprintf("The limit of '%d' for Top query has been exceeded. The value from the incoming request is '%d'.", spec.maxTop, n))
		}
		lq.top, lq.hasTop = n, true
	}
	if v, ok := get("$skip"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return nil, errOData(fmt.Sprintf("Invalid value '%s' for $skip query option found. The $skip query option requires a non-negative integer value.", v))
		}
		lq.skip = n
	}
	if v, ok := get("$skiptoken"); ok {
		if !spec.skipToken {
			return nil, errOData("The query parameter '$skiptoken' is not supported.")
		}
		n, err := decodeSkipToken(v)
		if err != nil {
			return nil, errOData("The $skiptoken value is not valid.")
		}
		lq.skip = n
	}
	if v, ok := get("$count"); ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			lq.count = true
		case "false":
		default:
			return nil, errOData(fmt.Sprintf("'%s' is not a valid count option.", v))
		}
	}
	if v, ok := get("$orderby"); ok && strings.TrimSpace(v) != "" {
		for _, part := range strings.Split(v, ",") {
			fs := strings.Fields(part)
			if len(fs) == 0 || len(fs) > 2 {
				return nil, errOData(fmt.Sprintf("Syntax error in $orderby '%s'.", v))
			}
			f, err := spec.sch.lookup(fs[0])
			if err != nil {
				return nil, err
			}
			if f.Kind == kStringList {
				return nil, errOData(fmt.Sprintf("The $orderby expression must evaluate to a single value of primitive type; '%s' is a collection.", f.JSON))
			}
			k := orderKey{f: f}
			if len(fs) == 2 {
				switch strings.ToLower(fs[1]) {
				case "asc":
				case "desc":
					k.desc = true
				default:
					return nil, errOData(fmt.Sprintf("Syntax error in $orderby '%s': expected asc or desc.", v))
				}
			}
			lq.orderby = append(lq.orderby, k)
		}
	}
	if v, ok := get("$expand"); ok && strings.TrimSpace(v) != "" {
		for _, part := range strings.Split(v, ",") {
			name := strings.ToLower(strings.TrimSpace(part))
			okName := false
			for _, e := range spec.expand {
				if e == name {
					okName = true
				}
			}
			if !okName {
				return nil, errOData(fmt.Sprintf("Could not find a property named '%s' on type '%s'.", strings.TrimSpace(part), spec.sch.entity))
			}
			lq.expand[name] = true
		}
	}
	if v, ok := get("$select"); ok && strings.TrimSpace(v) != "" {
		for _, part := range strings.Split(v, ",") {
			lq.selects = append(lq.selects, strings.TrimSpace(part))
		}
	}
	return lq, nil
}

// item is one entity of a list: m is its JSON object form for $filter,
// $orderby and $select; out is what gets encoded (keeps the field order).
type item struct {
	m   map[string]any
	out any
}

func newItem(v any) item { return item{m: toMap(v), out: v} }

// apply filters, counts, sorts and pages items. pageSize bounds the page when
// $top is absent; more reports whether a next page exists. With
// topIsPageSize (Graph) $top is the page size and paging continues.
func (lq *listQuery) apply(items []item, pageSize int, topIsPageSize bool) (page []any, total int, more bool) {
	var matched []item
	for _, it := range items {
		if lq.filter == nil || lq.filter.eval(it.m, nil) {
			matched = append(matched, it)
		}
	}
	total = len(matched)
	if len(lq.orderby) > 0 {
		sort.SliceStable(matched, func(i, j int) bool {
			for _, k := range lq.orderby {
				a := normalizeValue(lookupPath(matched[i].m, k.f.JSON), k.f.Kind)
				b := normalizeValue(lookupPath(matched[j].m, k.f.JSON), k.f.Kind)
				c := orderCompare(a, b)
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
	}
	start := min(lq.skip, len(matched))
	rest := matched[start:]
	limit := pageSize
	if lq.hasTop && (!topIsPageSize || lq.top < pageSize) {
		limit = lq.top
	}
	if len(rest) > limit {
		rest = rest[:limit]
		// MDE: no nextLink when $top was given (issue #8489).
		more = !lq.hasTop || topIsPageSize
	}
	page = make([]any, 0, len(rest))
	for _, it := range rest {
		if len(lq.selects) == 0 {
			page = append(page, it.out)
			continue
		}
		m := map[string]any{}
		for _, name := range lq.selects {
			for k, v := range it.m {
				if strings.EqualFold(k, name) {
					m[k] = v
				}
			}
		}
		page = append(page, m)
	}
	return page, total, more
}

// orderCompare sorts nulls first (OData default) and otherwise like compare.
func orderCompare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	c, _ := compare(a, b)
	return c
}

func decodeSkipToken(v string) (int, error) {
	raw, ok := decodeB64(v)
	if !ok {
		return 0, fmt.Errorf("bad skiptoken")
	}
	s, found := strings.CutPrefix(string(raw), "sim-offset:")
	if !found {
		return 0, fmt.Errorf("bad skiptoken")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad skiptoken")
	}
	return n, nil
}

func encodeSkipToken(n int) string {
	return b64URL([]byte("sim-offset:" + strconv.Itoa(n)))
}

// nextLink rebuilds the request URL with the paging option advanced.
func nextLink(base, path string, q url.Values, next int, skipToken bool) string {
	nq := url.Values{}
	for k, v := range q {
		lk := strings.ToLower(k)
		if lk == "$skip" || lk == "$skiptoken" {
			continue
		}
		nq[k] = v
	}
	if skipToken {
		nq.Set("$skiptoken", encodeSkipToken(next))
	} else {
		nq.Set("$skip", strconv.Itoa(next))
	}
	return base + path + "?" + nq.Encode()
}

// toMap converts an entity to its JSON object form (numbers as json.Number).
func toMap(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{}
	}
	return decodeMap(b)
}

func decodeMap(b []byte) map[string]any {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return map[string]any{}
	}
	return m
}
