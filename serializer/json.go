package serializer

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	gojson "github.com/goccy/go-json"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// JSON encodes payloads as JSON. Its Name is "json". The zero value is ready
// to use and safe for concurrent use.
//
// Generated protobuf messages (values that implement proto.Message) are
// encoded with protojson, the mapping protobuf tooling in every language
// expects: field names in lowerCamelCase, 64-bit integers as strings, enums
// by name, oneofs, and the well-known types (Timestamp, Duration, wrappers,
// Struct). Unknown fields in a received message are ignored, as they are
// for other types.
//
// Every other value is encoded with the encoding/json rules: struct tags,
// omitempty, ",string", []byte as base64, HTML-safe escaping, sorted map keys,
// json.RawMessage, embedded structs, case-insensitive field names and unknown
// fields ignored on decode, time.Time as RFC 3339, Marshaler and Unmarshaler
// types, invalid UTF-8 replaced by U+FFFD. The work is done by
// github.com/goccy/go-json, which decodes five to six times faster than
// encoding/json, except for flat structs (all fields []byte, strings,
// booleans and numbers, without JSON or text methods; see flatCodec), which
// this package encodes and decodes itself, base64 straight into the output
// and out of the input (with segmentio/asm's SIMD base64). The package's
// tests check the output and decoded values of both against encoding/json's
// for each of those rules.
//
// Errors are encoding/json's own: when the fast path fails, the value is
// encoded or decoded again with encoding/json, whose result (and error type:
// *json.SyntaxError, *json.UnmarshalTypeError, *json.UnsupportedTypeError,
// ...) is what the call returns. One difference remains: encoding/json checks
// that the whole input is valid JSON before it stores anything, while a
// failed decode here may leave the fields before the error filled in (the
// value is not to be used after an error in either case), and a custom
// UnmarshalJSON method may have been called before the error was found.
// Types with a ",string" field option are decoded by encoding/json itself
// (the fast decoder is more lenient with the numbers in them).
type JSON struct{}

// Name returns "json".
func (JSON) Name() string { return "json" }

// Marshal returns the JSON encoding of v: protojson's for a proto.Message,
// otherwise the bytes json.Marshal(v) returns.
func (j JSON) Marshal(v any) ([]byte, error) { return j.MarshalAppend(nil, v) }

// MarshalAppend appends the bytes Marshal(v) returns to b. It encodes into a
// pooled buffer, so the only allocation for the result is growing b when it
// lacks capacity.
func (JSON) MarshalAppend(b []byte, v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		out, err := protojson.MarshalOptions{}.MarshalAppend(b, m)
		if err != nil {
			return b, err
		}
		return out, nil
	}
	if c, sv := flatValue(v); c != nil {
		if out, ok := c.appendJSON(b, sv); ok {
			return out, nil
		}
	}
	enc := jsonEncoders.Get().(*jsonEncoder)
	defer enc.release()
	enc.w.b = b
	if err := enc.encode(v); err != nil {
		// The fast path refused v: encoding/json says what is wrong (and
		// encodes it, should the two ever disagree).
		out, err := json.Marshal(v)
		if err != nil {
			return b, err
		}
		return append(b, out...), nil
	}
	out := enc.w.b
	// An Encoder terminates every value with a newline; Marshal does not.
	if n := len(out); n > len(b) && out[n-1] == '\n' {
		out = out[:n-1]
	}
	return out, nil
}

// Unmarshal decodes data into v, which must be a non-nil pointer:
// protojson's decoding for a proto.Message (unknown fields ignored),
// otherwise json.Unmarshal's.
func (JSON) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		if !m.ProtoReflect().IsValid() {
			return fmt.Errorf("serializer: json cannot decode into nil %T", v)
		}
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
	}
	if c, sv := flatValue(v); c != nil && sv.CanSet() && c.decode(data, sv) {
		return nil
	}
	if needsEncodingJSON(v) {
		return json.Unmarshal(data, v)
	}
	if err := fastUnmarshal(data, v); err != nil {
		// encoding/json's verdict and error type; see the type's comment.
		return json.Unmarshal(data, v)
	}
	return nil
}

// flatValue returns the flat codec of v's type (see flatCodec) and the
// struct it is to encode or decode, v itself or what the pointer v points
// to; a nil codec when v is of another type.
func flatValue(v any) (*flatCodec, reflect.Value) {
	sv := reflect.ValueOf(v)
	if sv.Kind() == reflect.Pointer {
		if sv.IsNil() {
			return nil, sv
		}
		sv = sv.Elem()
	}
	if sv.Kind() != reflect.Struct {
		return nil, sv
	}
	t := sv.Type()
	c, ok := flatCodecs.Load(t)
	if !ok {
		c, _ = flatCodecs.LoadOrStore(t, newFlatCodec(t))
	}
	return c.(*flatCodec), sv
}

// flatCodecs caches flatValue's answer: reflect.Type → *flatCodec, nil for
// the types that are not flat.
var flatCodecs sync.Map

// fastUnmarshal is gojson.Unmarshal, with a panic (a defect of the decoder
// on some input) turned into an error, so that the caller falls back to
// encoding/json instead of failing on a peer's bytes.
func fastUnmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serializer: json decoder panicked: %v", r)
		}
	}()
	return gojson.Unmarshal(data, v)
}

// needsEncodingJSON reports whether v's type is decoded by encoding/json
// itself: types with a field carrying the ",string" option, which the fast
// decoder reads more leniently than encoding/json for numbers ("+5", ".5",
// "NaN" and "Inf" are accepted there, refused here). The answer is cached
// per type.
func needsEncodingJSON(v any) bool {
	t := reflect.TypeOf(v)
	if t == nil {
		return false
	}
	if known, ok := decodeRoutes.Load(t); ok {
		return known.(bool)
	}
	slow := hasQuotedNumber(t, map[reflect.Type]bool{})
	decodeRoutes.Store(t, slow)
	return slow
}

// decodeRoutes caches needsEncodingJSON: reflect.Type → bool.
var decodeRoutes sync.Map

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// hasQuotedNumber reports whether decoding into t can reach a struct field
// with the ",string" option. Types that decode themselves
// (json.Unmarshaler) are not looked into.
func hasQuotedNumber(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return hasQuotedNumber(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if opts, ok := f.Tag.Lookup("json"); ok && quotedNumber(f.Type, opts) {
				return true
			}
			if hasQuotedNumber(f.Type, seen) {
				return true
			}
		}
	}
	return false
}

// quotedNumber reports whether a field of type t with the json tag opts
// reads its value from a string (the option applies to numbers, booleans
// and strings).
func quotedNumber(t reflect.Type, opts string) bool {
	_, opts, _ = strings.Cut(opts, ",")
	quoted := false
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		quoted = quoted || o == "string"
	}
	if !quoted {
		return false
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Bool, reflect.String:
		return true
	}
	return false
}

// jsonEncoder is a reusable encoder appending to the caller's buffer.
type jsonEncoder struct {
	w   appendWriter
	enc *gojson.Encoder
}

// encode runs the encoder, with a panic turned into an error as in
// fastUnmarshal.
func (e *jsonEncoder) encode(v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serializer: json encoder panicked: %v", r)
		}
	}()
	return e.enc.Encode(v)
}

// appendWriter appends what is written to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

var jsonEncoders = sync.Pool{New: func() any {
	e := new(jsonEncoder)
	e.enc = gojson.NewEncoder(&e.w)
	return e
}}

func (e *jsonEncoder) release() {
	e.w.b = nil
	jsonEncoders.Put(e)
}
