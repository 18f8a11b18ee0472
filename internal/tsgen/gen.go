// Package tsgen writes TypeScript declarations for a Go contract package:
// an interface for the JSON shape of every type, and a descriptor constant
// for every message and request type with its wire name and, for a request,
// its response type. It is the library behind cmd/netmsg-ts.
//
// The JSON shapes follow what encoding/json (serializer.JSON) puts on the
// wire; the wire names follow netmsg.TypeName. docs/PROTOCOL.md §7 and §8
// describe both.
package tsgen

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"sort"
	"strconv"
	"strings"
)

// Options says what to generate.
type Options struct {
	// Package is the contract package: an import path, or a relative path
	// such as ./contract, as the go command takes it.
	Package string
	// Dir is the directory the go command runs in (its module decides how
	// Package resolves); empty means the current directory.
	Dir string
	// Warn receives a line for every type left out and why; nil drops them.
	Warn func(string)
}

// Generate returns the TypeScript declarations of the contract package.
func Generate(opts Options) ([]byte, error) {
	l, err := load(opts.Package, opts.Dir)
	if err != nil {
		return nil, err
	}
	g := &gen{l: l, docs: l.docs(), names: map[string]string{}, used: map[string]bool{"Record": true},
		warn: opts.Warn}
	if g.warn == nil {
		g.warn = func(string) {}
	}
	if err := g.run(); err != nil {
		return nil, err
	}
	return g.print(), nil
}

// decl is one TypeScript declaration: an interface (fields) or a type alias.
type decl struct {
	typ    *types.Named
	name   string
	doc    string
	fields []tsField // interface
	alias  string    // type alias, when fields is nil and isIface false
	iface  bool
}

type tsField struct {
	key      string
	typ      string
	optional bool
	doc      string
}

// descriptor is a message or request type's constant.
type descriptor struct {
	name     string // TS name of the constant and its payload type
	wire     string
	request  bool
	response string // TS type of the response
}

type gen struct {
	l     *loaded
	docs  map[token.Pos]string
	warn  func(string)
	decls []*decl
	todo  []*decl // named, not yet written
	descs []descriptor
	names map[string]string // type identity key → TS name
	used  map[string]bool   // TS names taken
	err   error
}

func (g *gen) fail(format string, a ...any) {
	if g.err == nil {
		g.err = fmt.Errorf(format, a...)
	}
}

// run collects the package's named types in source order.
func (g *gen) run() error {
	scope := g.l.pkg.Scope()
	var objs []*types.TypeName
	for _, name := range scope.Names() {
		if tn, ok := scope.Lookup(name).(*types.TypeName); ok && tn.Exported() && !tn.IsAlias() {
			objs = append(objs, tn)
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Pos() < objs[j].Pos() })

	responses := map[*types.TypeName]bool{}
	type req struct {
		tn   *types.TypeName
		resp types.Type
	}
	var reqs []req
	for _, tn := range objs {
		named := tn.Type().(*types.Named)
		if named.TypeParams().Len() > 0 {
			g.warn(fmt.Sprintf("%s: generic type left out (a message or request type has no type parameters; instantiations used as fields are generated)", tn.Name()))
			continue
		}
		if _, ok := named.Underlying().(*types.Interface); ok {
			continue
		}
		if hasMethod(types.NewPointer(named), "ProtoReflect") {
			g.warn(fmt.Sprintf("%s: protobuf message left out (the TypeScript client speaks JSON)", tn.Name()))
			continue
		}
		if resp := responseType(named); resp != nil {
			reqs = append(reqs, req{tn, resp})
			if rn := namedOf(resp); rn != nil && rn.Obj().Pkg() == g.l.pkg {
				responses[rn.Obj()] = true
			}
		}
	}
	isReq := map[*types.TypeName]types.Type{}
	for _, r := range reqs {
		isReq[r.tn] = r.resp
	}
	// The package's own types first, in source order; what they refer to
	// from elsewhere follows.
	for _, tn := range objs {
		named := tn.Type().(*types.Named)
		if named.TypeParams().Len() == 0 && !hasMethod(types.NewPointer(named), "ProtoReflect") {
			if _, ok := named.Underlying().(*types.Interface); !ok {
				g.typeRef(named)
			}
		}
	}

	for _, tn := range objs {
		named := tn.Type().(*types.Named)
		if named.TypeParams().Len() > 0 || hasMethod(types.NewPointer(named), "ProtoReflect") {
			continue
		}
		if _, ok := named.Underlying().(*types.Interface); ok {
			continue
		}
		ts := g.typeRef(named)
		resp, request := isReq[tn]
		if !request && (responses[tn] || !isStruct(named)) {
			continue
		}
		wire := g.wireName(named)
		d := descriptor{name: ts, wire: wire, request: request}
		if request {
			d.response = g.typeExpr(resp, false)
		}
		g.descs = append(g.descs, d)
	}
	g.fill()
	return g.err
}

// responseType returns the result type of t's ResponseType method (value or
// pointer receiver), which makes t a netmsg.Request, or nil.
func responseType(t *types.Named) types.Type {
	for _, recv := range []types.Type{t, types.NewPointer(t)} {
		sel := types.NewMethodSet(recv).Lookup(nil, "ResponseType")
		if sel == nil {
			continue
		}
		sig := sel.Type().(*types.Signature)
		if sig.Params().Len() == 0 && sig.Results().Len() == 1 {
			return sig.Results().At(0).Type()
		}
	}
	return nil
}

func hasMethod(t types.Type, name string) bool {
	return types.NewMethodSet(t).Lookup(nil, name) != nil
}

func namedOf(t types.Type) *types.Named {
	t = types.Unalias(t)
	if p, ok := t.(*types.Pointer); ok {
		t = types.Unalias(p.Elem())
	}
	n, _ := t.(*types.Named)
	return n
}

// wireName is netmsg.TypeName for t: what a MessageType() string method
// returns (it must return a constant), else the package name and type name.
func (g *gen) wireName(t *types.Named) string {
	sel := types.NewMethodSet(types.NewPointer(t)).Lookup(nil, "MessageType")
	if sel == nil {
		return t.Obj().Pkg().Name() + "." + t.Obj().Name()
	}
	fn := sel.Obj().(*types.Func)
	fd := g.l.funcDecl(fn)
	if fd == nil || fd.Body == nil || len(fd.Body.List) != 1 {
		g.fail("%s: its MessageType method must be declared in the package as `return <constant string>` for the generator to read the wire name", t.Obj().Name())
		return ""
	}
	ret, ok := fd.Body.List[0].(*ast.ReturnStmt)
	if !ok || len(ret.Results) != 1 {
		g.fail("%s: MessageType must be a single `return <constant string>`", t.Obj().Name())
		return ""
	}
	tv := g.l.info.Types[ret.Results[0]]
	if tv.Value == nil || tv.Value.Kind() != constant.String {
		g.fail("%s: MessageType does not return a constant string", t.Obj().Name())
		return ""
	}
	return constant.StringVal(tv.Value)
}

// typeRef returns the TS name of a named type, declaring it on first use.
func (g *gen) typeRef(t *types.Named) string {
	key := types.TypeString(t, nil)
	if name, ok := g.names[key]; ok {
		return name
	}
	name := g.tsName(t)
	g.names[key] = name
	d := &decl{name: name, typ: t}
	g.decls = append(g.decls, d)
	g.todo = append(g.todo, d)
	return name
}

// fill writes the declarations named so far, and those they name in turn.
func (g *gen) fill() {
	for len(g.todo) > 0 {
		d := g.todo[0]
		g.todo = g.todo[1:]
		t := d.typ
		if t.Obj().Pkg() == g.l.pkg {
			d.doc = g.docs[t.Obj().Pos()]
		} else {
			d.doc = types.TypeString(t, nil) + "."
		}
		if st, ok := t.Underlying().(*types.Struct); ok {
			d.iface = true
			d.fields = g.structFields(st)
		} else {
			d.alias = strings.TrimSuffix(g.typeExpr(t.Underlying(), false), " | null")
		}
	}
}

// tsName picks a free TS name: the Go name for the contract package's own
// types, prefixed with the package name for others, type arguments appended.
func (g *gen) tsName(t *types.Named) string {
	base := t.Obj().Name()
	if t.Obj().Pkg() != nil && t.Obj().Pkg() != g.l.pkg {
		base = t.Obj().Pkg().Name() + "_" + base
	}
	for i := 0; i < t.TypeArgs().Len(); i++ {
		base += "_" + identPart(types.TypeString(t.TypeArgs().At(i), func(p *types.Package) string { return p.Name() }))
	}
	name := base
	for n := 2; g.used[name]; n++ {
		name = base + strconv.Itoa(n)
	}
	g.used[name] = true
	return name
}

func identPart(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '.' || r == '[' || r == ',':
			b.WriteByte('_')
		}
	}
	return b.String()
}

// structFields returns the TS fields of a struct's JSON object.
func (g *gen) structFields(st *types.Struct) []tsField {
	var out []tsField
	for _, f := range jsonFields(st) {
		omit := f.omitEmpty || f.omitZero
		typ := g.typeExpr(f.v.Type(), f.quoted)
		if omit {
			typ = strings.TrimSuffix(typ, " | null") // nil is left out, never null
		}
		doc := g.docs[f.v.Pos()]
		if note := g.note(f.v.Type()); note != "" && !strings.Contains(doc, strings.TrimSuffix(note[strings.Index(note, ": ")+2:], ".")) {
			if doc != "" && !strings.HasSuffix(doc, "\n") {
				doc += "\n"
			}
			doc += note
		}
		out = append(out, tsField{key: f.name, typ: typ, optional: omit || f.viaPointer, doc: doc})
	}
	return out
}

// note explains the encoding of the types whose TS type does not say it.
func (g *gen) note(t types.Type) string {
	for {
		p, ok := types.Unalias(t).(*types.Pointer)
		if !ok {
			break
		}
		t = p.Elem()
	}
	switch qualified(t) {
	case "encoding/json.RawMessage":
		return ""
	case "time.Duration":
		return "time.Duration: nanoseconds."
	case "time.Time":
		return "time.Time: RFC 3339."
	}
	if s, ok := t.Underlying().(*types.Slice); ok && isByte(s.Elem()) {
		return "[]byte: base64."
	}
	return ""
}

func qualified(t types.Type) string {
	n, ok := types.Unalias(t).(*types.Named)
	if !ok || n.Obj().Pkg() == nil {
		return ""
	}
	return n.Obj().Pkg().Path() + "." + n.Obj().Name()
}

func isByte(t types.Type) bool {
	b, ok := t.Underlying().(*types.Basic)
	if !ok || b.Kind() != types.Uint8 {
		return false
	}
	// A byte type of its own with a marshaler makes the slice an array.
	return !hasMethod(types.NewPointer(t), "MarshalJSON") && !hasMethod(types.NewPointer(t), "MarshalText")
}

// typeExpr maps a Go type to the TS type of its JSON encoding. quoted is the
// ",string" option. A type whose encoding may be null ends in " | null".
func (g *gen) typeExpr(t types.Type, quoted bool) string {
	t = types.Unalias(t)
	if quoted { // jsonFields checked that the option applies
		if _, ok := t.Underlying().(*types.Pointer); ok {
			return "string | null"
		}
		return "string"
	}
	if n, ok := t.(*types.Named); ok {
		switch qualified(n) {
		case "time.Time":
			return "string"
		case "time.Duration", "encoding/json.Number":
			return "number"
		case "encoding/json.RawMessage":
			return "unknown"
		}
		if hasMethod(types.NewPointer(n), "MarshalJSON") {
			return "unknown"
		}
		if hasMethod(types.NewPointer(n), "MarshalText") {
			return "string"
		}
		switch n.Underlying().(type) {
		case *types.Struct:
			return g.typeRef(n)
		case *types.Interface:
			return "unknown"
		}
		if n.Obj().Pkg() == g.l.pkg && n.Obj().Exported() {
			// The contract's own named types (enums) get a type alias.
			name := g.typeRef(n)
			if nullable(n.Underlying()) {
				return name + " | null"
			}
			return name
		}
		return g.typeExpr(n.Underlying(), false)
	}
	switch u := t.(type) {
	case *types.Basic:
		switch {
		case u.Info()&types.IsBoolean != 0:
			return "boolean"
		case u.Info()&(types.IsInteger|types.IsFloat) != 0:
			return "number"
		case u.Info()&types.IsString != 0:
			return "string"
		}
		g.fail("type %s cannot be encoded as JSON", u)
		return "never"
	case *types.Pointer:
		return orNull(g.typeExpr(u.Elem(), false))
	case *types.Slice:
		if isByte(u.Elem()) {
			return "string | null"
		}
		return arrayOf(g.typeExpr(u.Elem(), false)) + " | null"
	case *types.Array:
		return arrayOf(g.typeExpr(u.Elem(), false))
	case *types.Map:
		if !mapKeyOK(u.Key()) {
			g.fail("map key type %s cannot be encoded as JSON", u.Key())
		}
		return "Record<string, " + g.typeExpr(u.Elem(), false) + "> | null"
	case *types.Struct:
		return g.inlineStruct(u)
	case *types.Interface:
		return "unknown"
	}
	g.fail("type %s cannot be encoded as JSON", t)
	return "never"
}

func nullable(u types.Type) bool {
	switch u.(type) {
	case *types.Pointer, *types.Slice, *types.Map, *types.Interface:
		return true
	}
	return false
}

func orNull(s string) string {
	if strings.HasSuffix(s, " | null") || s == "unknown" {
		return s
	}
	return s + " | null"
}

func arrayOf(elem string) string {
	if strings.Contains(elem, " ") {
		return "(" + elem + ")[]"
	}
	return elem + "[]"
}

func mapKeyOK(k types.Type) bool {
	if b, ok := k.Underlying().(*types.Basic); ok && b.Info()&(types.IsString|types.IsInteger) != 0 {
		return true
	}
	return hasMethod(types.NewPointer(k), "MarshalText") || hasMethod(k, "MarshalText")
}

// inlineStruct writes an anonymous struct as an object type literal.
func (g *gen) inlineStruct(st *types.Struct) string {
	fields := g.structFields(st)
	if len(fields) == 0 {
		return "Record<string, never>"
	}
	var b strings.Builder
	b.WriteString("{ ")
	for _, f := range fields {
		b.WriteString(key(f.key))
		if f.optional {
			b.WriteByte('?')
		}
		b.WriteString(": ")
		b.WriteString(f.typ)
		b.WriteString("; ")
	}
	b.WriteString("}")
	return b.String()
}

// key writes an object key, quoted unless it is an identifier.
func key(s string) string {
	for i, r := range s {
		if !(r == '_' || r == '$' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return strconv.Quote(s)
		}
	}
	return s
}

// print writes the file.
func (g *gen) print() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by netmsg-ts from %s. DO NOT EDIT.\n", g.l.path)
	fmt.Fprintf(&b, "//\n// JSON shapes as serializer.JSON writes them, and a descriptor for every\n")
	fmt.Fprintf(&b, "// message and request type (see docs/PROTOCOL.md).\n")
	for _, d := range g.decls {
		b.WriteByte('\n')
		writeDoc(&b, "", d.doc)
		if !d.iface {
			fmt.Fprintf(&b, "export type %s = %s;\n", d.name, d.alias)
			continue
		}
		if len(d.fields) == 0 {
			fmt.Fprintf(&b, "export interface %s {}\n", d.name)
			continue
		}
		fmt.Fprintf(&b, "export interface %s {\n", d.name)
		for _, f := range d.fields {
			writeDoc(&b, "  ", f.doc)
			opt := ""
			if f.optional {
				opt = "?"
			}
			fmt.Fprintf(&b, "  %s%s: %s;\n", key(f.key), opt, f.typ)
		}
		b.WriteString("}\n")
	}
	for _, d := range g.descs {
		b.WriteByte('\n')
		if d.request {
			fmt.Fprintf(&b, "/** Request %q, answered by %s. */\n", d.wire, d.response)
			fmt.Fprintf(&b, "export const %s = { kind: \"request\", name: %q } as {\n", d.name, d.wire)
			b.WriteString("  readonly kind: \"request\";\n")
			fmt.Fprintf(&b, "  readonly name: %q;\n", d.wire)
			fmt.Fprintf(&b, "  readonly __request?: %s;\n", d.name)
			fmt.Fprintf(&b, "  readonly __response?: %s;\n", d.response)
			b.WriteString("};\n")
			continue
		}
		fmt.Fprintf(&b, "/** Message %q. */\n", d.wire)
		fmt.Fprintf(&b, "export const %s = { kind: \"message\", name: %q } as {\n", d.name, d.wire)
		b.WriteString("  readonly kind: \"message\";\n")
		fmt.Fprintf(&b, "  readonly name: %q;\n", d.wire)
		fmt.Fprintf(&b, "  readonly __message?: %s;\n", d.name)
		b.WriteString("};\n")
	}
	return b.Bytes()
}

// writeDoc writes a Go doc comment as a JSDoc comment.
func writeDoc(b *bytes.Buffer, indent, doc string) {
	doc = strings.TrimSpace(strings.ReplaceAll(doc, "*/", "*\u200b/"))
	if doc == "" {
		return
	}
	lines := strings.Split(doc, "\n")
	if len(lines) == 1 {
		fmt.Fprintf(b, "%s/** %s */\n", indent, lines[0])
		return
	}
	fmt.Fprintf(b, "%s/**\n", indent)
	for _, l := range lines {
		if l == "" {
			fmt.Fprintf(b, "%s *\n", indent)
		} else {
			fmt.Fprintf(b, "%s * %s\n", indent, l)
		}
	}
	fmt.Fprintf(b, "%s */\n", indent)
}
