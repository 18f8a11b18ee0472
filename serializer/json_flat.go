package serializer

import (
	"bytes"
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A flat struct is a struct type whose JSON form is one object of scalar
// members: every field it encodes is a []byte, string, bool, integer or
// floating-point number, with at most the "omitempty" option, and nothing
// in it (the struct, a field's type) has its own JSON or text methods.
// Embedded structs without fields (netmsg.Returns) are allowed; they add no
// member. Requests and responses are often of this shape, and their []byte
// fields are where the time of a JSON codec goes: base64. flatCodec encodes
// and decodes such a type by itself, with the base64 of base64.go written
// straight into the output and read straight from the input.
//
// The output is encoding/json's to the byte. The decoder takes the common
// input (members named exactly as the fields or like none of them, strings
// without escapes, padded base64) and refuses the rest, which then goes the
// general way: it never accepts what encoding/json refuses, and where it
// accepts, it stores what encoding/json stores.
type flatCodec struct {
	fields []flatField
}

type flatKind uint8

const (
	flatBytes flatKind = iota
	flatString
	flatBool
	flatInt
	flatUint
	flatFloat32
	flatFloat64
)

type flatField struct {
	index     int
	name      string // the member's name; needs no escaping
	key       string // `"name":`
	kind      flatKind
	bits      int // of an integer
	omitEmpty bool
}

var (
	jsonMarshalerType        = reflect.TypeFor[json.Marshaler]()
	textMarshalerType        = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType      = reflect.TypeFor[encoding.TextUnmarshaler]()
	jsonNumberType           = reflect.TypeFor[json.Number]()
	byteType                 = reflect.TypeFor[byte]()
	methodsThatChangeTheWire = []reflect.Type{jsonMarshalerType, unmarshalerType, textMarshalerType, textUnmarshalerType}
)

// hasJSONMethods reports whether t or *t has a method encoding/json calls
// instead of its own rules.
func hasJSONMethods(t reflect.Type) bool {
	for _, m := range methodsThatChangeTheWire {
		if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
			return true
		}
	}
	return false
}

// newFlatCodec returns the codec of struct type t, or nil when t is not flat.
func newFlatCodec(t reflect.Type) *flatCodec {
	if t.Kind() != reflect.Struct || hasJSONMethods(t) {
		return nil
	}
	c := &flatCodec{}
	seen := map[string]bool{}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, tagged := sf.Tag.Lookup("json")
		if sf.Anonymous {
			// An embedded struct without fields and without a name of its
			// own adds nothing; any other embedding brings encoding/json's
			// promotion rules, left to the general path.
			name, _, _ := strings.Cut(tag, ",")
			if sf.Type.Kind() == reflect.Struct && sf.Type.NumField() == 0 && (name == "" || tag == "-") {
				continue
			}
			return nil
		}
		if !sf.IsExported() || tag == "-" {
			continue
		}
		f := flatField{index: i, name: sf.Name}
		if tagged {
			name, opts, _ := strings.Cut(tag, ",")
			if name != "" {
				if !plainName(name) {
					return nil
				}
				f.name = name
			}
			switch opts {
			case "":
			case "omitempty":
				f.omitEmpty = true
			default: // ",string", "omitzero" and anything else
				return nil
			}
		}
		if !plainName(f.name) || seen[f.name] {
			return nil
		}
		seen[f.name] = true
		ft := sf.Type
		if hasJSONMethods(ft) {
			return nil
		}
		switch ft.Kind() {
		case reflect.Slice:
			if ft.Elem() != byteType {
				return nil
			}
			f.kind = flatBytes
		case reflect.String:
			if ft == jsonNumberType {
				return nil
			}
			f.kind = flatString
		case reflect.Bool:
			f.kind = flatBool
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			f.kind, f.bits = flatInt, ft.Bits()
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.kind, f.bits = flatUint, ft.Bits()
		case reflect.Float32:
			f.kind = flatFloat32
		case reflect.Float64:
			f.kind = flatFloat64
		default:
			return nil
		}
		f.key = `"` + f.name + `":`
		c.fields = append(c.fields, f)
	}
	return c
}

// plainName reports whether name is a member name that encoding/json takes
// from a tag as it is and writes without escaping: ASCII letters, digits
// and a few punctuation marks.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// appendJSON appends encoding/json's encoding of the struct sv to b. It
// reports false (b is then to be discarded) for a value encoding/json
// refuses: a NaN or infinite float.
func (c *flatCodec) appendJSON(b []byte, sv reflect.Value) ([]byte, bool) {
	b = append(b, '{')
	first := true
	for i := range c.fields {
		f := &c.fields[i]
		fv := sv.Field(f.index)
		if f.omitEmpty && isEmptyScalar(f.kind, fv) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.key...)
		switch f.kind {
		case flatBytes:
			if fv.IsNil() {
				b = append(b, "null"...)
			} else {
				b = append(b, '"')
				b = appendBase64(b, fv.Bytes())
				b = append(b, '"')
			}
		case flatString:
			b = appendJSONString(b, fv.String())
		case flatBool:
			b = strconv.AppendBool(b, fv.Bool())
		case flatInt:
			b = strconv.AppendInt(b, fv.Int(), 10)
		case flatUint:
			b = strconv.AppendUint(b, fv.Uint(), 10)
		case flatFloat32, flatFloat64:
			var ok bool
			if b, ok = appendJSONFloat(b, fv.Float(), f.kind); !ok {
				return b, false
			}
		}
	}
	return append(b, '}'), true
}

func isEmptyScalar(k flatKind, v reflect.Value) bool {
	switch k {
	case flatBytes, flatString:
		return v.Len() == 0
	case flatBool:
		return !v.Bool()
	case flatInt:
		return v.Int() == 0
	case flatUint:
		return v.Uint() == 0
	default:
		return v.Float() == 0
	}
}

// appendJSONFloat formats f as encoding/json does (like ES6: %f, or %e
// with a short exponent outside [1e-6, 1e21)).
func appendJSONFloat(b []byte, f float64, k flatKind) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	bits := 64
	if k == flatFloat32 {
		bits = 32
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// e-07 becomes e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// jsonSafe marks the ASCII bytes a JSON string holds as they are under
// encoding/json's HTML-safe escaping: not a control character, quote,
// backslash, '<', '>' or '&'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = !strings.ContainsRune(`"\<>&`, c)
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string with encoding/json's escaping:
// HTML-safe, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decode stores the object in data into the struct sv. It reports false,
// with sv possibly changed, when data is not in the shape it takes; the
// caller then decodes data again the general way.
func (c *flatCodec) decode(data []byte, sv reflect.Value) bool {
	p := flatParser{data: data}
	if !p.consume('{') {
		return false
	}
	if p.consume('}') {
		return p.end()
	}
	for {
		name, ok := p.plainString()
		if !ok || !p.consume(':') {
			return false
		}
		switch f := c.field(name); {
		case f != nil:
			if !p.value(f, sv.Field(f.index)) {
				return false
			}
		case c.mayMatch(name):
			return false
		default: // an unknown member: skipped, as encoding/json does
			if !p.skipValue(0) {
				return false
			}
		}
		if p.consume(',') {
			continue
		}
		return p.consume('}') && p.end()
	}
}

// field returns the field named exactly name, or nil.
func (c *flatCodec) field(name []byte) *flatField {
	for i := range c.fields {
		if c.fields[i].name == string(name) {
			return &c.fields[i]
		}
	}
	return nil
}

// mayMatch reports whether encoding/json could match a member named name
// (not exactly a field's name) with a field regardless of case. Such
// members are left to the general path; so are names with non-ASCII
// letters, which Unicode folding may match with ASCII ones (the Kelvin
// sign folds to k).
func (c *flatCodec) mayMatch(name []byte) bool {
	for _, b := range name {
		if b >= utf8.RuneSelf {
			return true
		}
	}
	for i := range c.fields {
		if equalFoldASCII(c.fields[i].name, name) {
			return true
		}
	}
	return false
}

func equalFoldASCII(a string, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// flatParser reads the input of flatCodec.decode.
type flatParser struct {
	data []byte
	i    int
}

func (p *flatParser) skipSpace() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// consume skips white space and then c, reporting whether c was there.
func (p *flatParser) consume(c byte) bool {
	p.skipSpace()
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *flatParser) end() bool {
	p.skipSpace()
	return p.i == len(p.data)
}

// literal consumes word if the input continues with it.
func (p *flatParser) literal(word string) bool {
	if bytes.HasPrefix(p.data[p.i:], []byte(word)) {
		p.i += len(word)
		return true
	}
	return false
}

// plainString reads a string without escapes and returns its contents
// (which alias the input). Strings with a backslash, a control character
// or invalid UTF-8 are refused: their decoding is the general path's.
func (p *flatParser) plainString() ([]byte, bool) {
	s, ok := p.rawString()
	if !ok {
		return nil, false
	}
	ascii := true
	for _, c := range s {
		if c < ' ' || c == '\\' {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return s, ascii || utf8.Valid(s)
}

// rawString reads a string up to the first quote and returns what is
// between the quotes, unchecked (a quote preceded by a backslash ends it
// too: the caller refuses backslashes).
func (p *flatParser) rawString() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	rest := p.data[p.i:]
	n := bytes.IndexByte(rest, '"')
	if n < 0 {
		return nil, false
	}
	p.i += n + 1
	return rest[:n], true
}

// number reads a number in JSON's grammar and returns it (aliasing the
// input).
func (p *flatParser) number() ([]byte, bool) {
	d, start := p.data, p.i
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	}
	p.i = i
	return d[start:i], true
}

// maxSkipDepth bounds the nesting of an unknown member's value that
// skipValue follows; deeper values are left to the general path (and its
// depth limit).
const maxSkipDepth = 64

// skipValue reads one JSON value of any kind, checking it as encoding/json
// does, and reports whether it was valid (false too when it nests deeper
// than maxSkipDepth).
func (p *flatParser) skipValue(depth int) bool {
	p.skipSpace()
	if p.i >= len(p.data) {
		return false
	}
	switch c := p.data[p.i]; {
	case c == '"':
		return p.skipString()
	case c == '{' || c == '[':
		if depth >= maxSkipDepth {
			return false
		}
		p.i++
		end := byte(']')
		if c == '{' {
			end = '}'
		}
		if p.consume(end) {
			return true
		}
		for {
			if c == '{' {
				p.skipSpace()
				if p.i >= len(p.data) || p.data[p.i] != '"' || !p.skipString() || !p.consume(':') {
					return false
				}
			}
			if !p.skipValue(depth + 1) {
				return false
			}
			if p.consume(',') {
				continue
			}
			return p.consume(end)
		}
	case c == '-' || '0' <= c && c <= '9':
		_, ok := p.number()
		return ok
	default:
		return p.literal("true") || p.literal("false") || p.literal("null")
	}
}

// skipString reads a string, checking its escapes and that it holds no
// control characters (bytes that are not UTF-8 are valid JSON).
func (p *flatParser) skipString() bool {
	d := p.data
	for i := p.i + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			p.i = i + 1
			return true
		case c < ' ':
			return false
		case c == '\\':
			i++
			if i >= len(d) {
				return false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) {
					return false
				}
				for _, h := range d[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

// value reads the member's value into fv as encoding/json would: null
// leaves a scalar as it is and makes a []byte nil.
func (p *flatParser) value(f *flatField, fv reflect.Value) bool {
	p.skipSpace()
	if p.literal("null") {
		if f.kind == flatBytes {
			fv.SetZero()
		}
		return true
	}
	switch f.kind {
	case flatBytes:
		// decodeBase64 refuses every byte outside the alphabet, which
		// covers what plainString checks.
		s, ok := p.rawString()
		if !ok {
			return false
		}
		b, ok := decodeBase64(s)
		if !ok {
			return false
		}
		fv.SetBytes(b)
	case flatString:
		s, ok := p.plainString()
		if !ok {
			return false
		}
		fv.SetString(string(s))
	case flatBool:
		switch {
		case p.literal("true"):
			fv.SetBool(true)
		case p.literal("false"):
			fv.SetBool(false)
		default:
			return false
		}
	default:
		s, ok := p.number()
		if !ok {
			return false
		}
		switch f.kind {
		case flatInt:
			n, err := strconv.ParseInt(string(s), 10, f.bits)
			if err != nil {
				return false
			}
			fv.SetInt(n)
		case flatUint:
			n, err := strconv.ParseUint(string(s), 10, f.bits)
			if err != nil {
				return false
			}
			fv.SetUint(n)
		case flatFloat32, flatFloat64:
			bits := 64
			if f.kind == flatFloat32 {
				bits = 32
			}
			n, err := strconv.ParseFloat(string(s), bits)
			if err != nil {
				return false
			}
			fv.SetFloat(n)
		}
	}
	return true
}
