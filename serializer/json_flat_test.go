package serializer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The compatibility cases of json_flat_cases_test.go only test the flat
// path if the types meant for it take it, and the others do not.
func TestJSONFlatTypes(t *testing.T) {
	t.Parallel()
	for _, v := range []any{flatMsg{}, caseFold{}, inner{}, struct{}{}, struct{ B []byte }{}} {
		assert.NotNil(t, newFlatCodec(reflect.TypeOf(v)), "%T", v)
	}
	for _, v := range []any{withHexBytes{}, withTextBytes{}, withPtrTextBytes{}, selfMarshaling{}, promoted{}, quotedBytes{},
		omitZeroBytes{}, namedEmbedded{}, sameName{}, oddTagName{}, numberField{}, bytesNested{}, withByteElems{}, tagged{},
		embedded{}, numbers{}, times{}, 5, []byte{}} {
		assert.Nil(t, newFlatCodec(reflect.TypeOf(v)), "%T", v)
	}
}

// Every length of body, so each way base64 ends (padding, the tail after
// the wide loop of an encoder) is compared with encoding/json.
func TestJSONFlatBytesEveryLength(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	s := JSON{}
	for n := range 300 {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(r.Uint32())
		}
		in := flatMsg{Body: body, Named: namedBytes(body[:n/2])}
		want, err := json.Marshal(in)
		require.NoError(t, err)
		got, err := s.Marshal(in)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "%d bytes", n)

		var out flatMsg
		require.NoError(t, s.Unmarshal(got, &out))
		require.Equal(t, in, out, "%d bytes", n)
	}
}

// A decoded body owns its memory and has exactly its length's capacity
// (no slack from the encoded length).
func TestJSONFlatBytesDecodedExactly(t *testing.T) {
	t.Parallel()
	in := []byte(`{"Body":"` + base64.StdEncoding.EncodeToString(make([]byte, 4096)) + `"}`)
	var out flatMsg
	require.NoError(t, JSON{}.Unmarshal(in, &out))
	assert.Len(t, out.Body, 4096)
	assert.Equal(t, 4096, cap(out.Body))
	for i := range in {
		in[i] = 'A'
	}
	assert.Equal(t, make([]byte, 4096), out.Body)
}

func TestJSONFlatAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := JSON{}
	v := &flatMsg{Body: make([]byte, 4096), Name: "a longer name", N: 3}
	buf, err := s.MarshalAppend(nil, v)
	require.NoError(t, err)
	data := bytes.Clone(buf)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		if buf, err = s.MarshalAppend(buf[:0], v); err != nil {
			panic(err)
		}
	}))
	var out flatMsg
	// The body and the name.
	assert.Equal(t, 2.0, testing.AllocsPerRun(100, func() {
		if err := s.Unmarshal(data, &out); err != nil {
			panic(err)
		}
	}))
}

// decodeBase64 may refuse what encoding/base64 takes, but what it takes it
// decodes as encoding/base64 does.
func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "AA==", "AAA=", "AAAA", "A===", "AA==AAAA", "AB==", "AAEC\n/v8=", "AAEC/v8", "AAEC_v8=",
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0, 0x7f}, 40)),
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0, 0x7f}, 40)) + "*AA="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := decodeBase64(in)
		want, err := base64.StdEncoding.DecodeString(string(in))
		if ok && (err != nil || !bytes.Equal(got, want)) {
			t.Fatalf("%q: decodeBase64 %x, encoding/base64 %x %v", in, got, want, err)
		}
		if ok && cap(got) != len(got) {
			t.Fatalf("%q: capacity %d for %d bytes", in, cap(got), len(got))
		}
	})
}

// One foreign byte at every position of a long base64 text, where the wide
// decoder meets it in the middle of a block: decodeBase64 agrees with
// encoding/base64 on each.
func TestDecodeBase64RefusesWhatStdRefuses(t *testing.T) {
	t.Parallel()
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte(i * 7)
	}
	valid := []byte(base64.StdEncoding.EncodeToString(src))
	got, ok := decodeBase64(valid)
	require.True(t, ok)
	require.Equal(t, src, got)
	for i := range valid {
		for _, c := range []byte("=*-_ .\"\\\x00\x7f\x80\xff\r\n") {
			in := bytes.Clone(valid)
			in[i] = c
			got, ok := decodeBase64(in)
			want, err := base64.StdEncoding.DecodeString(string(in))
			if ok && (err != nil || !bytes.Equal(got, want)) {
				t.Fatalf("%q at %d: decodeBase64 %x, encoding/base64 %x %v", c, i, got, want, err)
			}
			if !ok && err == nil && c != '\r' && c != '\n' && c != '=' {
				t.Errorf("%q at %d: refused what encoding/base64 takes", c, i)
			}
		}
	}
}

// appendBase64 treats a body near the start of a page apart (see there):
// bodies starting at every offset of a page, of lengths around the wide
// encoder's block, come out as encoding/base64's.
func TestAppendBase64AtEveryOffset(t *testing.T) {
	t.Parallel()
	buf := make([]byte, 3*4096)
	for i := range buf {
		buf[i] = byte(i * 13)
	}
	for off := range 4096 + 8 {
		for _, n := range []int{0, 5, 63, 64, 65, 100, 1000} {
			src := buf[off : off+n]
			want := base64.StdEncoding.AppendEncode([]byte("x"), src)
			if got := appendBase64([]byte("x"), src); !bytes.Equal(got, want) {
				t.Fatalf("offset %d, %d bytes: %q, want %q", off, n, got, want)
			}
		}
	}
}

// What the flat decoder takes itself and what it leaves to the general path
// (whose results the compatibility cases compare with encoding/json).
func TestJSONFlatDecoderTakes(t *testing.T) {
	t.Parallel()
	c := newFlatCodec(reflect.TypeFor[flatMsg]())
	require.NotNil(t, c)
	for _, in := range []string{
		`{}`,
		` {"Body":"AQ==","name":"n","n":-5,"f":1.5e-3,"ok":true,"named":null} `,
		`{"future":{"a":[1,"x\u00e9\n",null,true]},"Body":""}`,
		"{\"x\":\"a\xffb\",\"name\":\"héllo\"}",
		`{"x":` + strings.Repeat(`{"a":`, 63) + "[]" + strings.Repeat("}", 63) + `}`,
	} {
		var v flatMsg
		assert.True(t, c.decode([]byte(in), reflect.ValueOf(&v).Elem()), "%s", in)
	}
	for _, in := range []string{
		`{"body":"AQ=="}`, `{"BODY":1}`, "{\"Bod\u017f\":1}", `{"naïve":1}`, `{"B\u006fdy":"AQ=="}`,
		`{"name":"a\nb"}`, `{"Body":"AQ"}`, "{\"Body\":\"AQ\n==\"}", `{"n":1.5}`, `{"u":-1}`, `{"ok":1}`,
		`{"x":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`, `{"x":"\q"}`, `null`, `[]`, `{} {}`,
	} {
		var v flatMsg
		assert.False(t, c.decode([]byte(in), reflect.ValueOf(&v).Elem()), "%s", in)
	}
}
