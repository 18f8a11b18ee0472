package tsgen_test

// A reader for the declarations the generator writes, and a checker that
// tells whether a JSON value has a declared TypeScript type. It knows the
// subset of TypeScript the generator uses: interfaces, type aliases,
// descriptor constants; string, number, boolean, null, unknown, never, T[],
// Record<string, T>, unions, parentheses and inline object types.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// tsType is a parsed type expression.
type tsType struct {
	kind   string    // "prim", "ref", "array", "record", "union", "object"
	name   string    // prim: string|number|boolean|null|unknown|never; ref: the name
	elem   *tsType   // array, record
	alts   []*tsType // union
	fields []tsField // object
}

type tsField struct {
	key      string
	optional bool
	typ      *tsType
}

type tsDescriptor struct {
	kind, wire       string
	message, request *tsType
	response         *tsType
}

type tsFile struct {
	types map[string]*tsType // interfaces (as objects) and aliases
	descs map[string]tsDescriptor
}

func parseTSFile(src []byte) (*tsFile, error) {
	f := &tsFile{types: map[string]*tsType{}, descs: map[string]tsDescriptor{}}
	sc := bufio.NewScanner(bytes.NewReader(src))
	var lines []string
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "//") || strings.HasPrefix(l, "/**") || strings.HasPrefix(l, "*") {
			continue
		}
		lines = append(lines, l)
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "export interface ") && strings.HasSuffix(l, " {}"):
			f.types[strings.TrimSuffix(strings.TrimPrefix(l, "export interface "), " {}")] = &tsType{kind: "object"}
		case strings.HasPrefix(l, "export interface "):
			name := strings.TrimSuffix(strings.TrimPrefix(l, "export interface "), " {")
			obj := &tsType{kind: "object"}
			for i++; lines[i] != "}"; i++ {
				fields, err := parseFields(lines[i])
				if err != nil {
					return nil, fmt.Errorf("interface %s: %v", name, err)
				}
				obj.fields = append(obj.fields, fields...)
			}
			f.types[name] = obj
		case strings.HasPrefix(l, "export type "):
			name, expr, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(l, "export type "), ";"), " = ")
			if !ok {
				return nil, fmt.Errorf("bad alias %q", l)
			}
			t, err := parseType(expr)
			if err != nil {
				return nil, fmt.Errorf("alias %s: %v", name, err)
			}
			f.types[name] = t
		case strings.HasPrefix(l, "export const "):
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "export const "), " ")
			var d tsDescriptor
			for i++; lines[i] != "};"; i++ {
				k, v, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(lines[i], "readonly "), ";"), ": ")
				var err error
				switch k {
				case "kind":
					d.kind, err = strconv.Unquote(v)
				case "name":
					d.wire, err = strconv.Unquote(v)
				case "__message?":
					d.message, err = parseType(v)
				case "__request?":
					d.request, err = parseType(v)
				case "__response?":
					d.response, err = parseType(v)
				default:
					err = fmt.Errorf("unknown member %q", k)
				}
				if err != nil {
					return nil, fmt.Errorf("const %s: %v", name, err)
				}
			}
			f.descs[name] = d
		default:
			return nil, fmt.Errorf("unexpected line %q", l)
		}
	}
	return f, nil
}

// parseFields parses "key?: type;" members, as many as the text holds.
func parseFields(s string) ([]tsField, error) {
	p := &tsParser{s: s}
	var out []tsField
	for p.skipSpace(); p.i < len(p.s); p.skipSpace() {
		fl, err := p.field()
		if err != nil {
			return nil, err
		}
		out = append(out, fl)
	}
	return out, nil
}

func parseType(s string) (*tsType, error) {
	p := &tsParser{s: s}
	t, err := p.union()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("trailing %q in %q", p.s[p.i:], s)
	}
	return t, nil
}

type tsParser struct {
	s string
	i int
}

func (p *tsParser) skipSpace() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *tsParser) eat(tok string) bool {
	p.skipSpace()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *tsParser) union() (*tsType, error) {
	var alts []*tsType
	for {
		t, err := p.postfix()
		if err != nil {
			return nil, err
		}
		alts = append(alts, t)
		if !p.eat("|") {
			break
		}
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &tsType{kind: "union", alts: alts}, nil
}

func (p *tsParser) postfix() (*tsType, error) {
	t, err := p.primary()
	if err != nil {
		return nil, err
	}
	for p.eat("[]") {
		t = &tsType{kind: "array", elem: t}
	}
	return t, nil
}

func (p *tsParser) primary() (*tsType, error) {
	switch {
	case p.eat("("):
		t, err := p.union()
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, fmt.Errorf("missing ) in %q", p.s)
		}
		return t, nil
	case p.eat("Record<string,"):
		v, err := p.union()
		if err != nil {
			return nil, err
		}
		if !p.eat(">") {
			return nil, fmt.Errorf("missing > in %q", p.s)
		}
		return &tsType{kind: "record", elem: v}, nil
	case p.eat("{"):
		obj := &tsType{kind: "object"}
		for !p.eat("}") {
			fl, err := p.field()
			if err != nil {
				return nil, err
			}
			obj.fields = append(obj.fields, fl)
		}
		return obj, nil
	}
	p.skipSpace()
	j := p.i
	for j < len(p.s) && (p.s[j] == '_' || p.s[j] == '$' || p.s[j] >= 'a' && p.s[j] <= 'z' || p.s[j] >= 'A' && p.s[j] <= 'Z' || p.s[j] >= '0' && p.s[j] <= '9') {
		j++
	}
	if j == p.i {
		return nil, fmt.Errorf("expected a type at %q", p.s[p.i:])
	}
	name := p.s[p.i:j]
	p.i = j
	switch name {
	case "string", "number", "boolean", "null", "unknown", "never":
		return &tsType{kind: "prim", name: name}, nil
	}
	return &tsType{kind: "ref", name: name}, nil
}

// field parses "key?: type;" with a plain or quoted key.
func (p *tsParser) field() (tsField, error) {
	p.skipSpace()
	var key string
	if p.i < len(p.s) && p.s[p.i] == '"' {
		q, err := strconv.QuotedPrefix(p.s[p.i:])
		if err != nil {
			return tsField{}, err
		}
		p.i += len(q)
		key, _ = strconv.Unquote(q)
	} else {
		j := strings.IndexAny(p.s[p.i:], "?:")
		if j < 0 {
			return tsField{}, fmt.Errorf("no key in %q", p.s[p.i:])
		}
		key = p.s[p.i : p.i+j]
		p.i += j
	}
	fl := tsField{key: key, optional: p.eat("?")}
	if !p.eat(":") {
		return tsField{}, fmt.Errorf("missing : after %q", key)
	}
	t, err := p.union()
	if err != nil {
		return tsField{}, err
	}
	if !p.eat(";") {
		return tsField{}, fmt.Errorf("missing ; after %q", key)
	}
	fl.typ = t
	return fl, nil
}

// check reports why the JSON value v (decoded with UseNumber) does not have
// type t, or nil when it does.
func (f *tsFile) check(v any, t *tsType, path string) error {
	switch t.kind {
	case "prim":
		ok := false
		switch t.name {
		case "string":
			_, ok = v.(string)
		case "number":
			_, ok = v.(json.Number)
		case "boolean":
			_, ok = v.(bool)
		case "null":
			ok = v == nil
		case "unknown":
			ok = true
		}
		if !ok {
			return fmt.Errorf("%s: %s is not a %s", path, show(v), t.name)
		}
		return nil
	case "ref":
		d, ok := f.types[t.name]
		if !ok {
			return fmt.Errorf("%s: type %s is not declared", path, t.name)
		}
		return f.check(v, d, path)
	case "union":
		var errs []string
		for _, a := range t.alts {
			err := f.check(v, a, path)
			if err == nil {
				return nil
			}
			errs = append(errs, err.Error())
		}
		return fmt.Errorf("%s: no alternative matches: %s", path, strings.Join(errs, "; "))
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %s is not an array", path, show(v))
		}
		for i, e := range a {
			if err := f.check(e, t.elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s is not an object", path, show(v))
		}
		for _, k := range sortedKeys(m) {
			if err := f.check(m[k], t.elem, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s is not an object", path, show(v))
		}
		declared := map[string]bool{}
		for _, fl := range t.fields {
			declared[fl.key] = true
			fv, present := m[fl.key]
			if !present {
				if !fl.optional {
					return fmt.Errorf("%s: required key %q is missing", path, fl.key)
				}
				continue
			}
			if err := f.check(fv, fl.typ, path+"."+fl.key); err != nil {
				return err
			}
		}
		for _, k := range sortedKeys(m) {
			if !declared[k] {
				return fmt.Errorf("%s: key %q is not declared", path, k)
			}
		}
		return nil
	}
	return fmt.Errorf("%s: unknown type kind %q", path, t.kind)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		b = append(b[:60], "..."...)
	}
	return string(b)
}
