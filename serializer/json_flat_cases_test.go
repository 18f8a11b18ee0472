package serializer

// Cases for the flat-struct path (json_flat.go): types it takes, types next
// to it that it must leave to the general path, and inputs it must either
// decode as encoding/json does or refuse. json_compat_test.go runs them
// with the rest of the suite.

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
)

// returnsLike is shaped like netmsg.Returns: an embedded struct without
// fields, with a method.
type returnsLike[T any] struct{}

func (returnsLike[T]) ResponseType() (t T) { return t }

type flatMsg struct {
	returnsLike[int]
	Body   []byte
	Name   string  `json:"name"`
	Opt    []byte  `json:"opt,omitempty"`
	OptS   string  `json:"opts,omitempty"`
	N      int64   `json:"n,omitempty"`
	I8     int8    `json:"i8"`
	U      uint8   `json:"u"`
	U64    uint64  `json:"u64"`
	F      float64 `json:"f"`
	F32    float32 `json:"f32"`
	OK     bool    `json:"ok,omitempty"`
	Yes    bool
	Named  namedBytes `json:"named"`
	Str    myString
	hidden []byte
	Skip   []byte `json:"-"`
	Dash   string `json:"-,"`
}

type myString string

// hexBytes has its own JSON form, so a struct holding it is not flat.
type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

// textBytes has a text form, which encoding/json writes as a string.
type textBytes []byte

func (t textBytes) MarshalText() ([]byte, error) { return []byte(strings.ToUpper(string(t))), nil }
func (t *textBytes) UnmarshalText(b []byte) error {
	*t = textBytes(strings.ToLower(string(b)))
	return nil
}

type withHexBytes struct {
	Body hexBytes
	Raw  []byte
}

type withTextBytes struct {
	Body textBytes
	Raw  []byte
}

// ptrTextBytes has its text method on the pointer only.
type ptrTextBytes []byte

func (t *ptrTextBytes) MarshalText() ([]byte, error) { return []byte("ptr"), nil }

type withPtrTextBytes struct{ Body ptrTextBytes }

// selfMarshaling is flat in shape but encodes itself.
type selfMarshaling struct{ Body []byte }

func (selfMarshaling) MarshalJSON() ([]byte, error) { return []byte(`"self"`), nil }

// promoted gets MarshalJSON from its embedded empty struct.
type promoted struct {
	marshalsItself
	Body []byte
}
type marshalsItself struct{}

func (marshalsItself) MarshalJSON() ([]byte, error) { return []byte(`"promoted"`), nil }

type quotedBytes struct {
	Body []byte `json:"body,string"`
	N    int    `json:"n"`
}

type omitZeroBytes struct {
	Body []byte `json:"body,omitzero"`
}

type namedEmbedded struct {
	returnsLike[int] `json:"ret"`
	Body             []byte
}

// sameName has two fields named B: the tagged one wins.
type sameName struct {
	A string `json:"B"`
	B string
}

type oddTagName struct {
	Body []byte `json:"a b"`
}

type bytesNested struct {
	Inner flatMsg
	Ptr   *flatMsg
	List  [][]byte
	Map   map[string][]byte
	Flats []flatMsg
	Named []namedBytes
	Arr   [2][]byte
	Any   any
}

type byteElem uint8

// withByteElems is a slice of a named byte type: base64 as well.
type withByteElems struct{ B []byte8 }
type byte8 = byteElem

type numberField struct {
	N json.Number
	B []byte
}

func flatMarshalCases() []marshalCase {
	full := flatMsg{Body: []byte{0, 1, 2, 0xfe, 0xff}, Name: "n<&>\u2028é\xff\x01\"\\", Opt: []byte("o"), OptS: "s", N: -5, I8: -128, U: 255,
		U64: math.MaxUint64, F: 1e21, F32: 1e-7, OK: true, Yes: true, Named: namedBytes("nm"), Str: "my", hidden: []byte("h"), Skip: []byte("s"), Dash: "d"}
	return []marshalCase{
		{"flat zero", flatMsg{}},
		{"flat full", full},
		{"flat pointer", &full},
		{"flat nil pointer", (*flatMsg)(nil)},
		{"flat empty bytes", flatMsg{Body: []byte{}, Opt: []byte{}, Named: namedBytes{}}},
		{"flat long bytes", flatMsg{Body: []byte(strings.Repeat("\x00\x01\xffabc", 1400))}},
		{"flat bytes of every length", func() []flatMsg {
			var out []flatMsg
			for n := range 70 {
				out = append(out, flatMsg{Body: []byte(strings.Repeat("\xfb", n))})
			}
			return out
		}()},
		{"flat floats", []flatMsg{{F: 1e-6, F32: 1e21}, {F: 123456789.123, F32: 16777216}, {F: 5e-324, F32: -0.5}, {F: math.MaxFloat64, F32: math.MaxFloat32}, {F: math.Copysign(0, -1)}}},
		{"flat NaN", flatMsg{F: math.NaN()}},
		{"flat Inf", &flatMsg{F32: float32(math.Inf(-1))}},
		{"flat big string", flatMsg{Name: strings.Repeat("xé<\u2029", 2000)}},
		{"hex bytes marshaler", withHexBytes{Body: hexBytes{1, 2}, Raw: []byte{3}}},
		{"hex bytes nil", withHexBytes{}},
		{"text bytes", withTextBytes{Body: textBytes("abc"), Raw: []byte{}}},
		{"pointer text bytes", withPtrTextBytes{Body: ptrTextBytes("x")}},
		{"pointer text bytes addressable", &withPtrTextBytes{Body: ptrTextBytes("x")}},
		{"self marshaling", selfMarshaling{Body: []byte("x")}},
		{"promoted marshaler", promoted{Body: []byte("x")}},
		{"string option on bytes", quotedBytes{Body: []byte("x"), N: 3}},
		{"omitzero bytes", []omitZeroBytes{{}, {Body: []byte{}}}},
		{"named embedded", namedEmbedded{Body: []byte("x")}},
		{"same name", sameName{"a", "b"}},
		{"odd tag name", oddTagName{Body: []byte("x")}},
		{"bytes nested", bytesNested{Inner: flatMsg{Body: []byte("in")}, Ptr: &flatMsg{Body: []byte{}}, List: [][]byte{nil, {}, {1}},
			Map: map[string][]byte{"a": {2}, "b": nil}, Flats: []flatMsg{{Body: []byte("f")}}, Named: []namedBytes{{3}, nil}, Arr: [2][]byte{{4}}, Any: []byte{5}}},
		{"named byte elements", withByteElems{B: []byte8{1, 2, 3}}},
		{"number field", numberField{N: "12", B: []byte{1}}},
		{"map of bytes", map[string][]byte{"x": {1, 2}, "y": nil, "z": {}}},
		{"slice of flat", []flatMsg{{Body: []byte("a")}, {}}},
	}
}

func flatUnmarshalCases() []unmarshalCase {
	nf := func() any { return new(flatMsg) }
	return []unmarshalCase{
		{"flat all", `{"Body":"AAEC/v8=","name":"n","opt":"bw==","opts":"s","n":-5,"i8":-128,"u":255,"u64":18446744073709551615,"f":1e21,"f32":1e-7,"ok":true,"Yes":false,"named":"bm0=","Str":"my","-":"d"}`, nf},
		{"flat spaced", " \t\r\n{ \"Body\" : \"AQ==\" ,\n\"name\"\t:\"x\" } \n", nf},
		{"flat empty object", `{}`, nf},
		{"flat empty bytes", `{"Body":"","named":""}`, nf},
		{"flat nulls", `{"Body":null,"name":null,"n":null,"u":null,"f":null,"ok":null,"named":null}`,
			func() any {
				return &flatMsg{Body: []byte{1}, Name: "keep", N: 3, U: 4, F: 5, OK: true, Named: namedBytes{6}}
			}},
		{"flat keeps what is absent", `{"Body":"AQ=="}`, func() any { return &flatMsg{Name: "keep", Opt: []byte("o")} }},
		{"flat duplicate keys", `{"Body":"AQ==","Body":"Ag==","name":"a","name":"b"}`, nf},
		{"flat null top", `null`, func() any { return &flatMsg{Name: "keep"} }},
		{"flat unpadded base64", `{"Body":"AAEC/v8"}`, nf},
		{"flat base64 escaped newline", `{"Body":"AAEC\n/v8="}`, nf},
		{"flat base64 raw newline", "{\"Body\":\"AAEC\n/v8=\"}", nf},
		{"flat base64 raw CR", "{\"Body\":\"AAEC\r/v8=\"}", nf},
		{"flat base64 escaped slash", `{"Body":"AAEC\/v8="}`, nf},
		{"flat base64 url alphabet", `{"Body":"AAEC_v8="}`, nf},
		{"flat base64 padding inside", `{"Body":"AA==AAAA"}`, nf},
		{"flat base64 three pads", `{"Body":"A==="}`, nf},
		{"flat base64 trailing bits", `{"Body":"AB=="}`, nf},
		{"flat base64 invalid", `{"Body":"A!AA"}`, nf},
		{"flat base64 long", `{"Body":"` + strings.Repeat("AAEC/v8A", 700) + `"}`, nf},
		{"flat base64 long invalid at end", `{"Body":"` + strings.Repeat("AAEC/v8A", 700) + `A*=="}`, nf},
		{"flat base64 long invalid in middle", `{"Body":"` + strings.Repeat("AAEC/v8A", 300) + "*" + strings.Repeat("AAEC/v8A", 300) + `AAA"}`, nf},
		{"flat bytes as array", `{"Body":[1,2]}`, nf},
		{"flat bytes as number", `{"Body":1}`, nf},
		{"flat case-insensitive key", `{"body":"AQ==","NAME":"x"}`, nf},
		{"flat exact and folded keys", `{"name":"a","Name":"b","NAME":"c"}`, nf},
		{"flat unknown key", `{"Body":"AQ==","extra":[1,{"a":null}]}`, nf},
		{"flat unknown values", `{"a":1,"b":-0.5e+3,"c":"x\"\\\/\b\f\n\r\t\u00e9\uD83C","d":true,"e":false,"f":null,"g":[],"h":{},"i":[[],{"":[1,"2",{"x":[null]}]}],"Body":"AQ==","":0}`, nf},
		{"flat unknown first", ` { "zz" : { "y" : [ 1 , 2 ] } , "name" : "n" } `, nf},
		{"flat unknown invalid utf8", "{\"x\":\"a\xffb\",\"name\":\"n\"}", nf},
		{"flat unknown control char", "{\"x\":\"a\x01b\",\"name\":\"n\"}", nf},
		{"flat unknown bad escape", `{"x":"a\qb","name":"n"}`, nf},
		{"flat unknown short unicode escape", `{"x":"\u12"}`, nf},
		{"flat unknown bad unicode escape", `{"x":"\u12g4"}`, nf},
		{"flat unknown unterminated string", `{"x":"abc`, nf},
		{"flat unknown bad number", `{"x":01,"name":"n"}`, nf},
		{"flat unknown bad literal", `{"x":nul}`, nf},
		{"flat unknown trailing comma in array", `{"x":[1,]}`, nf},
		{"flat unknown missing colon", `{"x":{"a" 1}}`, nf},
		{"flat unknown non-string key", `{"x":{1:2}}`, nf},
		{"flat unknown unclosed", `{"x":[1,{"a":2}`, nf},
		{"flat unknown mismatched", `{"x":[1}`, nf},
		{"flat unknown deep", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"name":"n"}`, nf},
		{"flat unknown at the depth limit", `{"x":` + strings.Repeat(`{"a":`, 63) + "[]" + strings.Repeat("}", 63) + `,"name":"n"}`, nf},
		{"flat unknown too deep", `{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, nf},
		{"flat unknown after body", `{"Body":"` + strings.Repeat("AAEC/v8A", 700) + `","future":{"v":2}}`, nf},
		{"flat key folding to a field", `{"BODY":"AQ==","x":1}`, nf},
		{"flat kelvin sign key", "{\"\u212aelvin\":\"k\"}", func() any { return new(caseFold) }},
		{"flat long s key", "{\"Bod\u017f\":\"AQ==\"}", nf},
		{"flat non-ascii unknown key", `{"naïve":1,"name":"n"}`, nf},
		{"flat ignored field key", `{"hidden":"AQ==","Skip":"AQ=="}`, nf},
		{"flat escaped key", `{"B\u006fdy":"AQ=="}`, nf},
		{"flat string escapes", `{"name":"a\"b\\c\u00e9\ud83c\udf89\/"}`, nf},
		{"flat string unicode", `{"name":"héllo, 世界 🎉"}`, nf},
		{"flat string invalid utf8", "{\"name\":\"a\xffb\"}", nf},
		{"flat string control char", "{\"name\":\"a\x01b\"}", nf},
		{"flat string DEL", "{\"name\":\"a\x7fb\"}", nf},
		{"flat string as number", `{"name":5}`, nf},
		{"flat string unterminated", `{"name":"abc`, nf},
		{"flat int overflow", `{"i8":128}`, nf},
		{"flat int negative zero", `{"i8":-0,"n":-0}`, nf},
		{"flat int fraction", `{"n":1.0}`, nf},
		{"flat int exponent", `{"n":1e2}`, nf},
		{"flat int leading zero", `{"n":01}`, nf},
		{"flat int plus", `{"n":+1}`, nf},
		{"flat int as string", `{"n":"1"}`, nf},
		{"flat uint negative", `{"u":-1}`, nf},
		{"flat uint overflow", `{"u":256}`, nf},
		{"flat uint64 max+1", `{"u64":18446744073709551616}`, nf},
		{"flat floats", `{"f":-0.0,"f32":3.4028235e38}`, nf},
		{"flat float32 overflow", `{"f32":3.5e38}`, nf},
		{"flat float overflow", `{"f":1e400}`, nf},
		{"flat float underflow", `{"f":1e-400}`, nf},
		{"flat float bad", `{"f":1.}`, nf},
		{"flat float bad exponent", `{"f":1e}`, nf},
		{"flat float dot first", `{"f":.5}`, nf},
		{"flat float minus only", `{"f":-}`, nf},
		{"flat bool", `{"ok":true,"Yes":false}`, nf},
		{"flat bool bad", `{"ok":tru}`, nf},
		{"flat bool as string", `{"ok":"true"}`, nf},
		{"flat bool then junk", `{"ok":truex}`, nf},
		{"flat trailing comma", `{"Body":"AQ==",}`, nf},
		{"flat missing colon", `{"Body" "AQ=="}`, nf},
		{"flat missing comma", `{"Body":"AQ==" "name":"x"}`, nf},
		{"flat trailing data", `{"Body":"AQ=="} {}`, nf},
		{"flat truncated", `{"Body":"AQ=="`, nf},
		{"flat array", `[]`, nf},
		{"flat string top", `"x"`, nf},
		{"flat empty input", ``, nf},
		{"flat key not string", `{Body:"AQ=="}`, nf},
		{"hex bytes", `{"Body":"0102","Raw":"Aw=="}`, func() any { return new(withHexBytes) }},
		{"hex bytes bad", `{"Body":"zz"}`, func() any { return new(withHexBytes) }},
		{"text bytes", `{"Body":"ABC","Raw":""}`, func() any { return new(withTextBytes) }},
		{"string option on bytes", `{"body":"eA==","n":3}`, func() any { return new(quotedBytes) }},
		{"named embedded", `{"ret":{},"Body":"eA=="}`, func() any { return new(namedEmbedded) }},
		{"same name", `{"B":"a"}`, func() any { return new(sameName) }},
		{"odd tag name", `{"a b":"eA=="}`, func() any { return new(oddTagName) }},
		{"bytes nested", `{"Inner":{"Body":"aW4="},"Ptr":{"Body":""},"List":[null,"","AQ=="],"Map":{"a":"Ag==","b":null},"Flats":[{"Body":"Zg=="}],"Named":["Aw==",null],"Arr":["BA==",null],"Any":"BQ=="}`,
			func() any { return new(bytesNested) }},
		{"named byte elements", `{"B":"AQID"}`, func() any { return new(withByteElems) }},
		{"number field", `{"N":12,"B":"AQ=="}`, func() any { return new(numberField) }},
		{"slice of flat", `[{"Body":"YQ=="},{}]`, func() any { return new([]flatMsg) }},
		{"pointer to pointer", `{"Body":"YQ=="}`, func() any { return new(*flatMsg) }},
	}
}
