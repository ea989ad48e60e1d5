package scim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// filter is a parsed RFC 7644 §3.4.2.2 filter.
type filter interface {
	match(d Doc) bool
}

// everything is the empty filter.
type everything struct{}

func (everything) match(Doc) bool { return true }

// parseFilter parses a resource filter (Figure 1's whole grammar: attribute
// operators, and/or/not with precedence, grouping, value paths,
// sub-attributes, URN-qualified names; strings, numbers, booleans, null).
func parseFilter(s string) (filter, error) { return parseFilterExpr(s) }

// parseValueFilter parses the filter inside a PATCH path, the same grammar
// over the values of a multi-valued attribute.
func parseValueFilter(s string) (filter, error) { return parseFilterExpr(s) }

func parseFilterExpr(s string) (filter, error) {
	if strings.TrimSpace(s) == "" {
		return everything{}, nil
	}
	toks, err := lex(s)
	if err != nil {
		return nil, errorf(400, "invalidFilter", "%v", err)
	}
	p := &parser{toks: toks}
	f, err := p.or()
	if err != nil {
		return nil, errorf(400, "invalidFilter", "%v", err)
	}
	if p.i != len(p.toks) {
		return nil, errorf(400, "invalidFilter", "unexpected %q", p.toks[p.i].text)
	}
	return f, nil
}

type token struct {
	text   string
	str    bool // a string literal (text is its value)
	symbol bool // ( ) [ ]
}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == '[' || c == ']':
			out = append(out, token{text: string(c), symbol: true})
			i++
		case c == '"':
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\\' {
					j++
					continue
				}
				if s[j] == '"' {
					break
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			var v string
			if err := json.Unmarshal([]byte(s[i:j+1]), &v); err != nil {
				return nil, fmt.Errorf("string %s: %v", s[i:j+1], err)
			}
			out = append(out, token{text: v, str: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t()[]\"", rune(s[j])) {
				j++
			}
			out = append(out, token{text: s[i:j]})
			i = j
		}
	}
	return out, nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peekWord(w string) bool {
	return p.i < len(p.toks) && !p.toks[p.i].str && !p.toks[p.i].symbol && strings.EqualFold(p.toks[p.i].text, w)
}

func (p *parser) peekSym(s string) bool {
	return p.i < len(p.toks) && p.toks[p.i].symbol && p.toks[p.i].text == s
}

func (p *parser) expect(s string) error {
	if !p.peekSym(s) {
		return fmt.Errorf("expected %q", s)
	}
	p.i++
	return nil
}

// or and and parse left-associative chains; and binds tighter.
func (p *parser) or() (filter, error) {
	return p.chain("or", p.and, func(a, b filter) filter { return orF{a, b} })
}

func (p *parser) and() (filter, error) {
	return p.chain("and", p.unary, func(a, b filter) filter { return andF{a, b} })
}

func (p *parser) chain(word string, next func() (filter, error), join func(a, b filter) filter) (filter, error) {
	left, err := next()
	for err == nil && p.peekWord(word) {
		p.i++
		var right filter
		if right, err = next(); err == nil {
			left = join(left, right)
		}
	}
	return left, err
}

func (p *parser) unary() (filter, error) {
	switch {
	case p.peekWord("not"):
		p.i++
		if err := p.expect("("); err != nil {
			return nil, err
		}
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		return notF{f}, p.expect(")")
	case p.peekSym("("):
		p.i++
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		return f, p.expect(")")
	}
	return p.attrExp()
}

var compareOps = map[string]bool{"eq": true, "ne": true, "co": true, "sw": true, "ew": true, "gt": true, "ge": true, "lt": true, "le": true}

func (p *parser) attrExp() (filter, error) {
	if p.i >= len(p.toks) || p.toks[p.i].str || p.toks[p.i].symbol || !isName(p.toks[p.i].text) {
		return nil, fmt.Errorf("expected an attribute")
	}
	path := normalisePath(p.toks[p.i].text)
	p.i++
	if p.peekSym("[") {
		p.i++
		inner, err := p.or()
		if err != nil {
			return nil, err
		}
		return valuePathF{attr: path, f: inner}, p.expect("]")
	}
	if p.i >= len(p.toks) || p.toks[p.i].str || p.toks[p.i].symbol {
		return nil, fmt.Errorf("expected an operator after %s", path)
	}
	op := strings.ToLower(p.toks[p.i].text)
	p.i++
	if op == "pr" {
		return presentF{path}, nil
	}
	if !compareOps[op] {
		return nil, fmt.Errorf("unknown operator %q", op)
	}
	if p.i >= len(p.toks) || p.toks[p.i].symbol {
		return nil, fmt.Errorf("expected a value after %s %s", path, op)
	}
	t := p.toks[p.i]
	p.i++
	var v any
	switch {
	case t.str:
		v = t.text
	case t.text == "true" || t.text == "false":
		v = t.text == "true"
	case t.text == "null":
		v = nil
	default:
		n, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("value %q: strings are quoted", t.text)
		}
		v = n
	}
	return compareF{attr: path, op: op, value: v}, nil
}

// normalisePath drops the core schema URN (its attributes are stored by
// their short names) and lower-cases nothing: lookups are case-insensitive.
func normalisePath(p string) string {
	for _, core := range []string{SchemaUser + ":", SchemaGroup + ":"} {
		if len(p) > len(core) && strings.EqualFold(p[:len(core)], core) {
			return p[len(core):]
		}
	}
	return p
}

type andF struct{ a, b filter }
type orF struct{ a, b filter }
type notF struct{ f filter }
type presentF struct{ attr string }
type valuePathF struct {
	attr string
	f    filter
}
type compareF struct {
	attr, op string
	value    any
}

func (f andF) match(d Doc) bool { return f.a.match(d) && f.b.match(d) }
func (f orF) match(d Doc) bool  { return f.a.match(d) || f.b.match(d) }
func (f notF) match(d Doc) bool { return !f.f.match(d) }

func (f presentF) match(d Doc) bool {
	for _, v := range values(d, f.attr) {
		if v != nil && v != "" {
			if l, ok := v.([]any); !ok || len(l) > 0 {
				return true
			}
		}
	}
	return false
}

func (f valuePathF) match(d Doc) bool {
	list, _ := d.get(f.attr).([]any)
	for _, e := range list {
		if m, ok := e.(map[string]any); ok && f.f.match(Doc(m)) {
			return true
		}
	}
	return false
}

// values are the attribute's values at path: a multi-valued attribute's
// elements (their sub-attribute, or their "value"), an extension's
// attribute (URN:attr[.sub]), or a single value.
func values(d Doc, path string) []any {
	attr, sub := path, ""
	if strings.HasPrefix(strings.ToLower(path), "urn:") {
		if i := strings.LastIndex(path, ":"); i > 0 {
			ext, _ := d.get(path[:i]).(map[string]any)
			if ext == nil {
				return nil
			}
			d, attr = Doc(ext), path[i+1:]
		}
	}
	attr, sub, _ = strings.Cut(attr, ".")
	v := d.get(attr)
	list, multi := v.([]any)
	if !multi {
		list = []any{v}
	}
	var out []any
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			switch {
			case sub != "":
				out = append(out, Doc(m).get(sub))
			case multi:
				out = append(out, Doc(m).get("value"))
			default:
				out = append(out, m)
			}
			continue
		}
		if sub == "" {
			out = append(out, e)
		}
	}
	return out
}

// caseExact are the attributes compared exactly (RFC 7643: id, externalId,
// and values that are references); others compare case-insensitively.
func caseExact(attr string) bool {
	a := strings.ToLower(attr)
	return a == "id" || a == "externalid" || a == "members.value" || a == "members" || a == "value"
}

func (f compareF) match(d Doc) bool {
	vals := values(d, f.attr)
	if f.value == nil { // eq null: absent; ne null: present
		present := presentF{f.attr}.match(d)
		return f.op == "eq" && !present || f.op == "ne" && present
	}
	if f.op == "ne" {
		for _, v := range vals {
			if compare(v, "eq", f.value, caseExact(f.attr)) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if compare(v, f.op, f.value, caseExact(f.attr)) {
			return true
		}
	}
	return false
}

func compare(have any, op string, want any, exact bool) bool {
	switch w := want.(type) {
	case bool:
		h, ok := toBool(have)
		return ok && op == "eq" && h == w
	case float64:
		var h float64
		switch x := have.(type) {
		case float64:
			h = x
		case string:
			n, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return false
			}
			h = n
		default:
			return false
		}
		switch op {
		case "eq":
			return h == w
		case "gt":
			return h > w
		case "ge":
			return h >= w
		case "lt":
			return h < w
		case "le":
			return h <= w
		}
		return false
	case string:
		h, ok := have.(string)
		if !ok {
			if b, isBool := have.(bool); isBool {
				h = strconv.FormatBool(b)
			} else {
				return false
			}
		}
		if !exact {
			h, w = strings.ToLower(h), strings.ToLower(w)
		}
		switch op {
		case "eq":
			return h == w
		case "co":
			return strings.Contains(h, w)
		case "sw":
			return strings.HasPrefix(h, w)
		case "ew":
			return strings.HasSuffix(h, w)
		case "gt":
			return h > w
		case "ge":
			return h >= w
		case "lt":
			return h < w
		case "le":
			return h <= w
		}
	}
	return false
}

func isName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '$' || r == ':' || r == '-') {
			return false
		}
	}
	return s != ""
}
