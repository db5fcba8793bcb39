package hubsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxQueryLength bounds the query string the emulator accepts. The adapter
// keeps its queries under it (splitting long device id lists), so a query
// that works here never grows beyond what a hub will take.
const MaxQueryLength = 8192

// ErrQuerySyntax is wrapped by every query parse error.
var ErrQuerySyntax = errors.New("query syntax error")

// Query is a parsed device-twin query: SELECT * FROM devices [WHERE cond].
type Query struct {
	where expr // nil matches every device
}

// ParseQuery parses the subset of the IoT Hub query language the adapter
// emits, strictly: SELECT * FROM devices, an optional WHERE with AND, OR,
// NOT, parentheses, comparisons (=, !=, <>, <, <=, >, >=), IN and NIN lists
// and IS_DEFINED(path), on paths under deviceId, status, tags and
// properties.desired / properties.reported. Keywords are case-insensitive;
// property names are not. String literals are single-quoted with backslash
// escapes as in the documented grammar (\' \" \\ \/ \b \f \n \r \t \uXXXX).
func ParseQuery(q string) (*Query, error) {
	if len(q) > MaxQueryLength {
		return nil, fmt.Errorf("%w: query longer than %d characters", ErrQuerySyntax, MaxQueryLength)
	}
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if err := p.keyword("SELECT"); err != nil {
		return nil, err
	}
	if t := p.next(); t.kind != tStar {
		return nil, p.errf(t, "only SELECT * is supported")
	}
	if err := p.keyword("FROM"); err != nil {
		return nil, err
	}
	if t := p.next(); t.kind != tIdent || !strings.EqualFold(t.text, "devices") {
		return nil, p.errf(t, "FROM devices expected")
	}
	out := &Query{}
	if t := p.peek(); t.kind == tIdent && strings.EqualFold(t.text, "WHERE") {
		p.next()
		e, err := p.parseOr(0)
		if err != nil {
			return nil, err
		}
		out.where = e
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errf(t, "unexpected trailing input")
	}
	return out, nil
}

// match reports whether device d satisfies the query.
func (q *Query) match(d *device) bool {
	if q.where == nil {
		return true
	}
	return q.where.eval(d) == triTrue
}

// --- lexer ---

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tStar
	tLParen
	tRParen
	tLBrack
	tRBrack
	tComma
	tDot
	tOp
)

type token struct {
	kind tokKind
	text string // identifier, operator, or decoded string literal
	num  float64
	pos  int
}

func lex(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '*':
			out = append(out, token{kind: tStar, pos: i})
			i++
		case c == '(':
			out = append(out, token{kind: tLParen, pos: i})
			i++
		case c == ')':
			out = append(out, token{kind: tRParen, pos: i})
			i++
		case c == '[':
			out = append(out, token{kind: tLBrack, pos: i})
			i++
		case c == ']':
			out = append(out, token{kind: tRBrack, pos: i})
			i++
		case c == ',':
			out = append(out, token{kind: tComma, pos: i})
			i++
		case c == '.':
			out = append(out, token{kind: tDot, pos: i})
			i++
		case c == '=':
			out = append(out, token{kind: tOp, text: "=", pos: i})
			i++
		case c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				out = append(out, token{kind: tOp, text: "!=", pos: i})
				i += 2
				continue
			}
			return nil, fmt.Errorf("%w at %d: unexpected '!'", ErrQuerySyntax, i)
		case c == '<' || c == '>':
			op := string(c)
			if i+1 < len(s) && (s[i+1] == '=' || (c == '<' && s[i+1] == '>')) {
				op += string(s[i+1])
			}
			n := len(op)
			if op == "<>" {
				op = "!="
			}
			out = append(out, token{kind: tOp, text: op, pos: i})
			i += n
		case c == '\'':
			str, n, err := lexString(s[i:])
			if err != nil {
				return nil, fmt.Errorf("%w at %d: %v", ErrQuerySyntax, i, err)
			}
			out = append(out, token{kind: tString, text: str, pos: i})
			i += n
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				((s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E'))) {
				j++
			}
			f, err := strconv.ParseFloat(s[i:j], 64)
			if err != nil {
				return nil, fmt.Errorf("%w at %d: bad number %q", ErrQuerySyntax, i, s[i:j])
			}
			out = append(out, token{kind: tNumber, num: f, text: s[i:j], pos: i})
			i = j
		case c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] == '$' || (s[j] >= 'a' && s[j] <= 'z') ||
				(s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			out = append(out, token{kind: tIdent, text: s[i:j], pos: i})
			i = j
		default:
			return nil, fmt.Errorf("%w at %d: unexpected character %q", ErrQuerySyntax, i, c)
		}
	}
	out = append(out, token{kind: tEOF, pos: len(s)})
	return out, nil
}

// lexString decodes a single-quoted literal at the start of s and returns it
// with the number of bytes consumed.
func lexString(s string) (string, int, error) {
	var b strings.Builder
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'':
			return b.String(), i + 1, nil
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, errors.New("unterminated escape")
			}
			e := s[i+1]
			switch e {
			case '\'', '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+6 > len(s) {
					return "", 0, errors.New("short \\u escape")
				}
				v, err := strconv.ParseUint(s[i+2:i+6], 16, 16)
				if err != nil {
					return "", 0, fmt.Errorf("bad \\u escape %q", s[i:i+6])
				}
				b.WriteRune(rune(v))
				i += 6
				continue
			default:
				return "", 0, fmt.Errorf("unknown escape \\%c", e)
			}
			i += 2
		case c < 0x20:
			return "", 0, errors.New("control character in string literal")
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n <= 1 {
				return "", 0, errors.New("invalid UTF-8 in string literal")
			}
			b.WriteString(s[i : i+n])
			i += n
		}
	}
	return "", 0, errors.New("unterminated string literal")
}

// --- parser ---

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errf(t token, format string, args ...any) error {
	return fmt.Errorf("%w at %d: %s", ErrQuerySyntax, t.pos, fmt.Sprintf(format, args...))
}

func (p *parser) keyword(kw string) error {
	t := p.next()
	if t.kind != tIdent || !strings.EqualFold(t.text, kw) {
		return p.errf(t, "%s expected", kw)
	}
	return nil
}

func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tIdent && strings.EqualFold(t.text, kw)
}

// maxNesting bounds parentheses and NOT chains so a hostile query cannot
// exhaust the stack.
const maxNesting = 64

func (p *parser) parseOr(depth int) (expr, error) {
	l, err := p.parseAnd(depth)
	if err != nil {
		return nil, err
	}
	for p.isKeyword("OR") {
		p.next()
		r, err := p.parseAnd(depth)
		if err != nil {
			return nil, err
		}
		l = &orExpr{l, r}
	}
	return l, nil
}

func (p *parser) parseAnd(depth int) (expr, error) {
	l, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	for p.isKeyword("AND") {
		p.next()
		r, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		l = &andExpr{l, r}
	}
	return l, nil
}

func (p *parser) parseUnary(depth int) (expr, error) {
	if depth > maxNesting {
		return nil, p.errf(p.peek(), "nested too deeply")
	}
	t := p.peek()
	switch {
	case t.kind == tIdent && strings.EqualFold(t.text, "NOT"):
		p.next()
		e, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &notExpr{e}, nil
	case t.kind == tLParen:
		p.next()
		e, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.errf(c, "')' expected")
		}
		return e, nil
	case t.kind == tIdent && strings.EqualFold(t.text, "IS_DEFINED"):
		p.next()
		if c := p.next(); c.kind != tLParen {
			return nil, p.errf(c, "'(' expected after IS_DEFINED")
		}
		path, err := p.parsePath()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.errf(c, "')' expected")
		}
		return &definedExpr{path}, nil
	}
	path, err := p.parsePath()
	if err != nil {
		return nil, err
	}
	if p.isKeyword("IN") || p.isKeyword("NIN") {
		neg := strings.EqualFold(p.next().text, "NIN")
		if c := p.next(); c.kind != tLBrack {
			return nil, p.errf(c, "'[' expected")
		}
		var lits []any
		for {
			lit, err := p.parseLiteral()
			if err != nil {
				return nil, err
			}
			lits = append(lits, lit)
			c := p.next()
			if c.kind == tRBrack {
				break
			}
			if c.kind != tComma {
				return nil, p.errf(c, "',' or ']' expected")
			}
		}
		return &inExpr{path: path, lits: lits, neg: neg}, nil
	}
	op := p.next()
	if op.kind != tOp {
		return nil, p.errf(op, "comparison operator expected")
	}
	lit, err := p.parseLiteral()
	if err != nil {
		return nil, err
	}
	return &cmpExpr{path: path, op: op.text, lit: lit}, nil
}

func (p *parser) parsePath() ([]string, error) {
	t := p.next()
	if t.kind != tIdent {
		return nil, p.errf(t, "property path expected")
	}
	path := []string{t.text}
	for p.peek().kind == tDot {
		p.next()
		t := p.next()
		if t.kind != tIdent {
			return nil, p.errf(t, "property name expected after '.'")
		}
		path = append(path, t.text)
	}
	if strings.EqualFold(path[0], "devices") && len(path) > 1 {
		path = path[1:]
	}
	switch path[0] {
	case "deviceId", "status", "etag", "version", "connectionState", "authenticationType":
		if len(path) != 1 {
			return nil, p.errf(t, "%s has no properties", path[0])
		}
	case "tags":
		if len(path) < 2 {
			return nil, p.errf(t, "tags needs a property name")
		}
	case "properties":
		if len(path) < 3 || (path[1] != "desired" && path[1] != "reported") {
			return nil, p.errf(t, "properties.desired.<name> or properties.reported.<name> expected")
		}
	default:
		return nil, p.errf(t, "unknown property %q", path[0])
	}
	return path, nil
}

func (p *parser) parseLiteral() (any, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return t.text, nil
	case tNumber:
		return t.num, nil
	case tIdent:
		switch strings.ToLower(t.text) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "null":
			return nil, nil
		}
	}
	return nil, p.errf(t, "literal expected")
}

// --- evaluation (three-valued, as IoT Hub's SQL: a comparison with an
// undefined property or a value of another type is undefined, and WHERE
// keeps only true) ---

type tri int

const (
	triUndef tri = iota
	triFalse
	triTrue
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

type expr interface{ eval(d *device) tri }

type andExpr struct{ l, r expr }
type orExpr struct{ l, r expr }
type notExpr struct{ e expr }
type definedExpr struct{ path []string }
type cmpExpr struct {
	path []string
	op   string
	lit  any
}
type inExpr struct {
	path []string
	lits []any
	neg  bool
}

func (e *andExpr) eval(d *device) tri {
	l := e.l.eval(d)
	if l == triFalse {
		return triFalse
	}
	r := e.r.eval(d)
	switch {
	case r == triFalse:
		return triFalse
	case l == triTrue && r == triTrue:
		return triTrue
	}
	return triUndef
}

func (e *orExpr) eval(d *device) tri {
	l := e.l.eval(d)
	if l == triTrue {
		return triTrue
	}
	r := e.r.eval(d)
	switch {
	case r == triTrue:
		return triTrue
	case l == triFalse && r == triFalse:
		return triFalse
	}
	return triUndef
}

func (e *notExpr) eval(d *device) tri {
	switch e.e.eval(d) {
	case triTrue:
		return triFalse
	case triFalse:
		return triTrue
	}
	return triUndef
}

func (e *definedExpr) eval(d *device) tri {
	_, ok := lookup(d, e.path)
	return triOf(ok)
}

func (e *cmpExpr) eval(d *device) tri {
	v, ok := lookup(d, e.path)
	if !ok {
		return triUndef
	}
	return compare(v, e.op, e.lit)
}

func (e *inExpr) eval(d *device) tri {
	v, ok := lookup(d, e.path)
	if !ok {
		return triUndef
	}
	for _, lit := range e.lits {
		if compare(v, "=", lit) == triTrue {
			return triOf(!e.neg)
		}
	}
	return triOf(e.neg)
}

// lookup resolves a validated path on a device.
func lookup(d *device, path []string) (any, bool) {
	switch path[0] {
	case "deviceId":
		return d.ID, true
	case "status":
		return d.Status, true
	case "etag":
		return d.TwinETag, true
	case "version":
		return float64(d.Version), true
	case "connectionState":
		return "Disconnected", true
	case "authenticationType":
		return d.AuthType, true
	case "tags":
		return walk(d.Tags, path[1:])
	}
	// properties.desired|reported.<...>
	doc, ver := d.Desired, d.DesiredVersion
	if path[1] == "reported" {
		doc, ver = d.Reported, d.ReportedVersion
	}
	if len(path) == 3 && path[2] == "$version" {
		return float64(ver), true
	}
	return walk(doc, path[2:])
}

func walk(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = obj[k]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func compare(v any, op string, lit any) tri {
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		if err != nil {
			return triUndef
		}
		v = f
	}
	switch l := lit.(type) {
	case nil:
		if v != nil {
			return triUndef
		}
		switch op {
		case "=":
			return triTrue
		case "!=":
			return triFalse
		}
		return triUndef
	case string:
		s, ok := v.(string)
		if !ok {
			return triUndef
		}
		return cmpOrdered(strings.Compare(s, l), op)
	case float64:
		f, ok := v.(float64)
		if !ok {
			return triUndef
		}
		c := 0
		if f < l {
			c = -1
		} else if f > l {
			c = 1
		}
		return cmpOrdered(c, op)
	case bool:
		b, ok := v.(bool)
		if !ok {
			return triUndef
		}
		switch op {
		case "=":
			return triOf(b == l)
		case "!=":
			return triOf(b != l)
		}
	}
	return triUndef
}

func cmpOrdered(c int, op string) tri {
	switch op {
	case "=":
		return triOf(c == 0)
	case "!=":
		return triOf(c != 0)
	case "<":
		return triOf(c < 0)
	case "<=":
		return triOf(c <= 0)
	case ">":
		return triOf(c > 0)
	case ">=":
		return triOf(c >= 0)
	}
	return triUndef
}

// Matches reports whether a twin with this device id, tags and desired and
// reported properties satisfies the query, exactly as the emulator's
// POST /devices/query decides. Values must be decoded JSON.
func (q *Query) Matches(deviceID string, tags, desired, reported map[string]any) bool {
	return q.match(&device{ID: deviceID, Status: "enabled", AuthType: "sas", Version: 1,
		Tags: tags, Desired: desired, DesiredVersion: 1, Reported: reported, ReportedVersion: 1})
}

// deviceIDs returns, sorted and unique, the only device ids the query can
// match when its WHERE is "deviceId IN [...]" or an AND with such a term, so
// the emulator looks those devices up instead of scanning the registry. It
// returns ok=false when the query does not restrict ids that way.
func (q *Query) deviceIDs() (ids []string, ok bool) {
	var find func(e expr) ([]string, bool)
	find = func(e expr) ([]string, bool) {
		switch x := e.(type) {
		case *inExpr:
			if x.neg || len(x.path) != 1 || x.path[0] != "deviceId" {
				return nil, false
			}
			out := make([]string, 0, len(x.lits))
			for _, l := range x.lits {
				if s, ok := l.(string); ok {
					out = append(out, s)
				}
			}
			return out, true
		case *andExpr:
			if ids, ok := find(x.l); ok {
				return ids, true
			}
			return find(x.r)
		}
		return nil, false
	}
	if q.where == nil {
		return nil, false
	}
	ids, ok = find(q.where)
	if !ok {
		return nil, false
	}
	sort.Strings(ids)
	out := ids[:0]
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out, true
}
