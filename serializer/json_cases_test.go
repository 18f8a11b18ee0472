package serializer

// The cases of the compatibility suite: values to encode and inputs to decode
// that exercise each rule of encoding/json serializer.JSON promises to keep.
// json_compat_test.go runs them against encoding/json itself.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// ---- types used by the compatibility cases ----

type tagged struct {
	Renamed   string          `json:"renamed"`
	Skipped   string          `json:"-"`
	Dash      string          `json:"-,"`
	OmitInt   int             `json:"oi,omitempty"`
	OmitStr   string          `json:"os,omitempty"`
	OmitSlice []int           `json:"osl,omitempty"`
	OmitMap   map[string]int  `json:"om,omitempty"`
	OmitPtr   *int            `json:"op,omitempty"`
	OmitBool  bool            `json:"ob,omitempty"`
	OmitStct  struct{ A int } `json:"ost,omitempty"`
	OmitTime  time.Time       `json:"ot,omitempty"`
	OmitIface any             `json:"oif,omitempty"`
	OmitArr   [0]int          `json:"oa,omitempty"`
	OmitFlt   float64         `json:"of,omitempty"`
	StrInt    int             `json:"si,string"`
	StrFloat  float64         `json:"sf,string"`
	StrBool   bool            `json:"sb,string"`
	StrStr    string          `json:"ss,string"`
	StrPtr    *int            `json:"sp,string"`
	Plain     int
	unexp     int
	Raw       json.RawMessage   `json:"raw,omitempty"`
	Bytes     []byte            `json:"bytes"`
	Nested    map[string][]byte `json:"nested,omitempty"`
}

type inner struct {
	A int
	B string `json:"b"`
}

type Inner2 struct {
	A int
	C int
}

type embedded struct {
	inner
	*Inner2
	D int
}

type conflict struct {
	X1
	X2
}

type X1 struct{ Name string }
type X2 struct{ Name string }

type taggedWins struct {
	Y1
	Y2
}
type Y1 struct {
	Name string `json:"Name"`
}
type Y2 struct{ Name string }

type valueMarshaler struct{ N int }

func (v valueMarshaler) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(` { "n" : %d } `, v.N)), nil
}

type ptrMarshaler struct{ N int }

func (v *ptrMarshaler) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf(`"p%d"`, v.N)), nil }

type badMarshaler struct{}

func (badMarshaler) MarshalJSON() ([]byte, error) { return []byte(`{nope`), nil }

type failingMarshaler struct{}

func (failingMarshaler) MarshalJSON() ([]byte, error) { return nil, errors.New("refused") }

type textKey struct{ a, b string }

func (k textKey) MarshalText() ([]byte, error) { return []byte(k.a + "|" + k.b), nil }
func (k *textKey) UnmarshalText(b []byte) error {
	s := string(b)
	i := strings.IndexByte(s, '|')
	if i < 0 {
		return errors.New("no bar")
	}
	k.a, k.b = s[:i], s[i+1:]
	return nil
}

type upper string

func (u *upper) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*u = upper(strings.ToUpper(s))
	return nil
}

type withUnmarshalers struct {
	U  upper
	UP *upper
	T  textKey
	M  map[textKey]int
	A  netip.Addr
}

type namedBytes []byte

type withInterfaces struct {
	Any   any
	Err   error `json:"-"`
	Str   fmt.Stringer
	Slice []any
}

type numbers struct {
	I8  int8
	U8  uint8
	I64 int64
	U64 uint64
	F32 float32
	F64 float64
	N   json.Number
}

type times struct {
	T  time.Time
	D  time.Duration
	TP *time.Time
}

type deep struct {
	P  *int
	PP **string
	S  []*inner
	M  map[string]*inner
	A  [3]int
	BA [4]byte
}

type caseFold struct {
	UserName string
	ID       int `json:"id"`
	Kelvin   string
}

type mkey int

type intKeys struct {
	M  map[int]string
	MU map[uint8]bool
	MN map[mkey]int
}

func iptr(i int) *int       { return &i }
func sptr(s string) *string { return &s }

type marshalCase struct {
	name string
	v    any
}

func marshalCases() []marshalCase {
	t0 := time.Date(2026, 12, 1, 20, 52, 0, 123456789, time.FixedZone("x", 3600))
	s := "pp"
	ps := &s
	return append([]marshalCase{
		{"tags zero", tagged{}},
		{"tags full", tagged{Renamed: "r", Skipped: "s", Dash: "d", OmitInt: 1, OmitStr: "x", OmitSlice: []int{}, OmitMap: map[string]int{}, OmitPtr: iptr(0), OmitBool: true,
			OmitTime: t0, OmitIface: 0, OmitFlt: -0.5, StrInt: -3, StrFloat: 1.5, StrBool: true, StrStr: `q"<`, StrPtr: iptr(7), Plain: 9, unexp: 3,
			Raw: json.RawMessage(` {"a" : [1, 2]} `), Bytes: []byte{0, 1, 2, 0xfe, 0xff}, Nested: map[string][]byte{"k": nil, "j": {}}}},
		{"bytes nil", []byte(nil)},
		{"bytes empty", []byte{}},
		{"bytes long", []byte(strings.Repeat("\x00\x01\xffabc", 700))},
		{"named bytes", namedBytes("hi")},
		{"byte array", [4]byte{1, 2, 3, 4}},
		{"html", "<script>a && b</script>"},
		{"line separators", "a\u2028b\u2029c"},
		{"control chars", "\x00\x01\x1f\x7f\t\n\r\b\f\\\"/"},
		{"invalid utf8", "a\xffb\xc3\x28c\xed\xa0\x80"},
		{"unicode", "héllo, 世界 🎉"},
		{"map order", map[string]int{"b": 2, "a": 1, "ab": 3, "B": 4, "": 0}},
		{"int keys", intKeys{M: map[int]string{10: "a", -1: "b", 2: "c"}, MU: map[uint8]bool{3: true, 200: false}, MN: map[mkey]int{5: 5}}},
		{"text keys", map[textKey]int{{"b", "a"}: 1, {"a", "b"}: 2}},
		{"raw message", json.RawMessage(`{"x":[1,2,{"y":null}]}`)},
		{"raw message spaced", json.RawMessage(" [ 1 ,\n2 ] ")},
		{"raw message nil", json.RawMessage(nil)},
		{"raw message invalid", json.RawMessage(`{`)},
		{"embedded", embedded{inner: inner{A: 1, B: "b"}, Inner2: &Inner2{A: 2, C: 3}, D: 4}},
		{"embedded nil ptr", embedded{inner: inner{A: 1}}},
		{"conflict", conflict{X1{"a"}, X2{"b"}}},
		{"tagged wins", taggedWins{Y1{"a"}, Y2{"b"}}},
		{"time", times{T: t0, D: 1500 * time.Millisecond, TP: &t0}},
		{"zero time", times{}},
		{"pointers", deep{P: iptr(5), PP: &ps, S: []*inner{{A: 1}, nil}, M: map[string]*inner{"x": nil, "y": {B: "z"}}, A: [3]int{1, 2, 3}, BA: [4]byte{9, 8, 7, 6}}},
		{"nil pointer", (*inner)(nil)},
		{"nil interface", nil},
		{"interfaces", withInterfaces{Any: map[string]any{"k": []any{1, "2", nil, true, 3.5}}, Str: time.Second, Slice: []any{inner{A: 1}, &inner{A: 2}, nil}}},
		{"value marshaler", valueMarshaler{3}},
		{"value marshaler ptr", &valueMarshaler{4}},
		{"ptr marshaler addressable", &struct{ P ptrMarshaler }{ptrMarshaler{5}}},
		{"ptr marshaler not addressable", struct{ P ptrMarshaler }{ptrMarshaler{6}}},
		{"ptr marshaler in slice", []ptrMarshaler{{7}}},
		{"ptr marshaler in map", map[string]ptrMarshaler{"a": {8}}},
		{"bad marshaler", badMarshaler{}},
		{"failing marshaler", failingMarshaler{}},
		{"text marshaler value", textKey{"x", "y"}},
		{"netip", netip.MustParseAddr("::1")},
		{"numbers", numbers{I8: -128, U8: 255, I64: math.MinInt64, U64: math.MaxUint64, F32: 3.14, F64: 1e21, N: "12.5e3"}},
		{"floats", []float64{0, -0.0, 1e-7, 1e-6, 1e20, 1e21, 123456789.123, 5e-324, math.MaxFloat64}},
		{"float32s", []float32{0.1, 1e-7, 1e21, 16777216}},
		{"NaN", math.NaN()},
		{"Inf", math.Inf(1)},
		{"bad number", json.Number("12x")},
		{"channel", make(chan int)},
		{"func", func() {}},
		{"complex", complex(1, 2)},
		{"nested unsupported", map[string]any{"a": 1, "z": make(chan int)}},
		{"empty slice", []int{}},
		{"nil slice", []int(nil)},
		{"nil map", map[string]int(nil)},
		{"anonymous", struct {
			A int `json:"a"`
			b int
		}{1, 2}},
		{"case fold", caseFold{"u", 1, "k"}},
		{"big string", strings.Repeat("xé<", 3000)},
	}, flatMarshalCases()...)
}

type unmarshalCase struct {
	name string
	in   string
	into func() any
}

func unmarshalCases() []unmarshalCase {
	nt := func() any { return new(tagged) }
	return append([]unmarshalCase{
		{"tags", `{"renamed":"r","Skipped":"s","-":"d","oi":1,"si":"12","sf":"1.5","sb":"true","ss":"\"x\"","sp":"4","Plain":3,"raw":{"a": [1]},"bytes":"AAEC/v8=","unexp":5}`, nt},
		{"string option not quoted", `{"si":12}`, nt},
		{"string option bad", `{"si":"x"}`, nt},
		{"string option lenient numbers", `{"si":"+5","sf":"NaN"}`, nt},
		{"string option leading dot", `{"sf":".5"}`, nt},
		{"string option in nested", `[{"si":"+5"}]`, func() any { return new([]*tagged) }},
		{"string option null", `{"sp":null,"si":null}`, nt},
		{"base64 with newline", `{"bytes":"AAEC\n/v8="}`, nt},
		{"base64 unpadded", `{"bytes":"AAEC/v8"}`, nt},
		{"base64 url alphabet", `{"bytes":"AAEC_v8="}`, nt},
		{"base64 null", `{"bytes":null}`, nt},
		{"base64 array", `{"bytes":[1,2]}`, nt},
		{"case insensitive", `{"username":"a","ID":3,"KELVIN":"k"}`, func() any { return new(caseFold) }},
		{"kelvin sign", `{"\u212aelvin":"k"}`, func() any { return new(caseFold) }},
		{"exact match preferred", `{"USERNAME":"a","UserName":"b"}`, func() any { return new(caseFold) }},
		{"unknown fields", `{"nope":1,"UserName":"x","more":{"a":[1,2,{}]}}`, func() any { return new(caseFold) }},
		{"duplicate keys", `{"UserName":"a","UserName":"b"}`, func() any { return new(caseFold) }},
		{"null into value", `{"UserName":null,"id":null}`, func() any { return &caseFold{UserName: "keep", ID: 7} }},
		{"null top", `null`, func() any { return &caseFold{UserName: "keep"} }},
		{"into any", `{"a":[1,"x",null,true,{"b":1.5e3}],"n":12345678901234567890}`, func() any { return new(any) }},
		{"into map merge", `{"b":2}`, func() any { m := map[string]int{"a": 1}; return &m }},
		{"into slice reset", `[9]`, func() any { s := []int{1, 2, 3}; return &s }},
		{"into array short", `[1,2]`, func() any { return new([3]int) }},
		{"into array long", `[1,2,3,4]`, func() any { return new([3]int) }},
		{"embedded", `{"A":1,"b":"x","C":3,"D":4}`, func() any { return new(embedded) }},
		{"conflict", `{"Name":"x"}`, func() any { return new(conflict) }},
		{"tagged wins", `{"Name":"x"}`, func() any { return new(taggedWins) }},
		{"time", `{"T":"2026-12-01T20:52:00.123456789+01:00","D":1500000000,"TP":"2026-12-01T20:52:00Z"}`, func() any { return new(times) }},
		{"time bad", `{"T":"yesterday"}`, func() any { return new(times) }},
		{"duration string", `{"D":"1s"}`, func() any { return new(times) }},
		{"pointers", `{"P":5,"PP":"s","S":[{"A":1},null],"M":{"x":null,"y":{"b":"z"}},"A":[1,2,3],"BA":[9,8,7,6]}`, func() any { return new(deep) }},
		{"unmarshalers", `{"U":"abc","UP":"def","T":"a|b","M":{"x|y":1},"A":"10.0.0.1"}`, func() any { return new(withUnmarshalers) }},
		{"text unmarshaler bad", `{"T":"ab"}`, func() any { return new(withUnmarshalers) }},
		{"text key bad", `{"M":{"xy":1}}`, func() any { return new(withUnmarshalers) }},
		{"int keys", `{"M":{"10":"a","-1":"b"},"MU":{"3":true},"MN":{"5":5}}`, func() any { return new(intKeys) }},
		{"int key bad", `{"M":{"x":"a"}}`, func() any { return new(intKeys) }},
		{"int key overflow", `{"MU":{"300":true}}`, func() any { return new(intKeys) }},
		{"numbers", `{"I8":-128,"U8":255,"I64":-9223372036854775808,"U64":18446744073709551615,"F32":3.14,"F64":1e21,"N":12.5e3}`, func() any { return new(numbers) }},
		{"int overflow", `{"I8":128}`, func() any { return new(numbers) }},
		{"uint negative", `{"U8":-1}`, func() any { return new(numbers) }},
		{"float into int", `{"I64":1.5}`, func() any { return new(numbers) }},
		{"exponent into int", `{"I64":1e3}`, func() any { return new(numbers) }},
		{"string into int", `{"I64":"5"}`, func() any { return new(numbers) }},
		{"number as string to Number", `{"N":"12"}`, func() any { return new(numbers) }},
		{"bad number to Number", `{"N":"x"}`, func() any { return new(numbers) }},
		{"float overflow", `{"F32":1e39}`, func() any { return new(numbers) }},
		{"invalid utf8 in string", "\"a\xffb\"", func() any { return new(string) }},
		{"escapes", `"\u00e9\ud83c\udf89\ud800x\/\b\f\n\r\t\"\\"`, func() any { return new(string) }},
		{"bad escape", `"\x"`, func() any { return new(string) }},
		{"control char in string", "\"a\x01b\"", func() any { return new(string) }},
		{"trailing data", `{"UserName":"a"} x`, func() any { return new(caseFold) }},
		{"trailing space", "{\"UserName\":\"a\"} \n\t", func() any { return new(caseFold) }},
		{"leading space", " \n {\"UserName\":\"a\"}", func() any { return new(caseFold) }},
		{"empty", ``, func() any { return new(caseFold) }},
		{"truncated", `{"UserName":"a"`, func() any { return new(caseFold) }},
		{"trailing comma", `{"UserName":"a",}`, func() any { return new(caseFold) }},
		{"single quotes", `{'UserName':'a'}`, func() any { return new(caseFold) }},
		{"wrong type", `{"UserName":5}`, func() any { return new(caseFold) }},
		{"wrong type continues", `{"UserName":5,"id":3}`, func() any { return new(caseFold) }},
		{"array into struct", `[1]`, func() any { return new(caseFold) }},
		{"deep nesting", strings.Repeat("[", 5000) + strings.Repeat("]", 5000), func() any { return new(any) }},
		{"too deep", strings.Repeat("[", 10001) + strings.Repeat("]", 10001), func() any { return new(any) }},
		{"too deep object", strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), func() any { return new(any) }},
		{"interface field", `{"Any":{"x":1},"Slice":[1,"a"]}`, func() any { return new(withInterfaces) }},
		{"interface non-empty", `{"Str":"x"}`, func() any { return new(withInterfaces) }},
		{"raw message", `{"x" : [1, 2]}`, func() any { return new(json.RawMessage) }},
		{"leading zeros", `{"id":01}`, func() any { return new(caseFold) }},
		{"big int into any", `12345678901234567890`, func() any { return new(any) }},
		{"literal true into string", `true`, func() any { return new(string) }},
		{"NaN literal", `NaN`, func() any { return new(float64) }},
		{"nonpointer", `{}`, func() any { return caseFold{} }},
		{"nil pointer", `{}`, func() any { return (*caseFold)(nil) }},
		{"nil", `{}`, func() any { return nil }},
		{"bom", "\ufeff{}", func() any { return new(caseFold) }},
	}, flatUnmarshalCases()...)
}
