package serializer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/typepb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/netmsg/netmsg/internal/testpb"
)

// JSON must encode every value of the suite to the very bytes encoding/json
// produces, and fail where it fails, with the same error type and text.
func TestJSONMarshalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	s := JSON{}
	for _, c := range marshalCases() {
		t.Run(c.name, func(t *testing.T) {
			want, wantErr := json.Marshal(c.v)
			got, err := s.Marshal(c.v)
			sameError(t, wantErr, err)
			assert.Equal(t, string(want), string(got))

			prefix := []byte("[prefix]")
			got, err = s.MarshalAppend(prefix, c.v)
			sameError(t, wantErr, err)
			if wantErr == nil {
				assert.Equal(t, "[prefix]"+string(want), string(got))
			} else {
				assert.Equal(t, "[prefix]", string(got))
			}
		})
	}
}

// JSON must decode every input of the suite to what encoding/json decodes,
// and fail where it fails, with the same error type and text.
func TestJSONUnmarshalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	s := JSON{}
	for _, c := range unmarshalCases() {
		t.Run(c.name, func(t *testing.T) {
			want, got := c.into(), c.into()
			wantErr := json.Unmarshal([]byte(c.in), want)
			err := s.Unmarshal([]byte(c.in), got)
			sameError(t, wantErr, err)
			if wantErr == nil {
				assert.Equal(t, want, got)
			}
		})
	}
}

// The error type and text are encoding/json's, so errors.As with its types
// works as before.
func sameError(t *testing.T, want, got error) {
	t.Helper()
	if want == nil {
		assert.NoError(t, got)
		return
	}
	require.Error(t, got, "encoding/json fails with %v", want)
	assert.Equal(t, fmt.Sprintf("%T", want), fmt.Sprintf("%T", got))
	assert.Equal(t, want.Error(), got.Error())
}

// The decoded value owns its memory: nothing aliases the input, which the
// library reuses as soon as the decode returns.
func TestJSONUnmarshalDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	type v struct {
		S  string
		B  []byte
		R  json.RawMessage
		M  map[string]string
		A  any
		SS []string
	}
	in := []byte(`{"S":"hello","B":"aGVsbG8=","R":{"x":"y"},"M":{"k":"val"},"A":"any","SS":["one"]}`)
	var out v
	require.NoError(t, JSON{}.Unmarshal(in, &out))
	for i := range in {
		in[i] = 'X'
	}
	assert.Equal(t, v{S: "hello", B: []byte("hello"), R: json.RawMessage(`{"x":"y"}`), M: map[string]string{"k": "val"}, A: "any", SS: []string{"one"}}, out)
}

// Generated protobuf types travel in protojson's mapping, which other
// languages' protobuf tooling reads and writes.
func TestJSONProtobufMessagesUseProtojson(t *testing.T) {
	t.Parallel()
	s := JSON{}
	cases := []struct {
		name string
		in   proto.Message
		want string // compared as JSON, protojson varies its whitespace
		into func() proto.Message
	}{
		{"int64 as string, bytes as base64, camel case", &testpb.Echo{Text: "hi", Body: []byte{1, 2}, N: 1 << 60},
			`{"text":"hi","body":"AQI=","n":"1152921504606846976"}`, func() proto.Message { return new(testpb.Echo) }},
		{"zero fields left out", &testpb.Echo{}, `{}`, func() proto.Message { return new(testpb.Echo) }},
		{"enum by name", &typepb.Field{Kind: typepb.Field_TYPE_INT64, Cardinality: typepb.Field_CARDINALITY_REPEATED, Number: 3, Name: "x", JsonName: "x"},
			`{"kind":"TYPE_INT64","cardinality":"CARDINALITY_REPEATED","number":3,"name":"x","jsonName":"x"}`, func() proto.Message { return new(typepb.Field) }},
		{"oneof", structpb.NewStringValue("s"), `"s"`, func() proto.Message { return new(structpb.Value) }},
		{"oneof null", structpb.NewNullValue(), `null`, func() proto.Message { return new(structpb.Value) }},
		{"timestamp", timestamppb.New(time.Date(2026, 12, 1, 20, 52, 0, 5e8, time.UTC)), `"2026-12-01T20:52:00.500Z"`,
			func() proto.Message { return new(timestamppb.Timestamp) }},
		{"duration", durationpb.New(1500 * time.Millisecond), `"1.500s"`, func() proto.Message { return new(durationpb.Duration) }},
		{"wrapper", wrapperspb.Int64(-5), `"-5"`, func() proto.Message { return new(wrapperspb.Int64Value) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data, err := s.Marshal(c.in)
			require.NoError(t, err)
			assert.JSONEq(t, c.want, string(data))
			got, err := s.MarshalAppend([]byte("x"), c.in)
			require.NoError(t, err)
			assert.JSONEq(t, c.want, string(got[1:]))

			out := c.into()
			require.NoError(t, s.Unmarshal(data, out))
			assert.True(t, proto.Equal(c.in, out), "got %v, want %v", out, c.in)
		})
	}

	t.Run("decode accepts the original field names and ignores unknown fields", func(t *testing.T) {
		t.Parallel()
		var e testpb.Echo
		require.NoError(t, s.Unmarshal([]byte(`{"text":"a","n":7,"future_field":{"x":1}}`), &e))
		assert.True(t, proto.Equal(&testpb.Echo{Text: "a", N: 7}, &e), "%v", &e)
	})
	t.Run("decode resets the message", func(t *testing.T) {
		t.Parallel()
		e := &testpb.Echo{Text: "old", N: 9}
		require.NoError(t, s.Unmarshal([]byte(`{"body":"AQ=="}`), e))
		assert.True(t, proto.Equal(&testpb.Echo{Body: []byte{1}}, e), "%v", e)
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		assert.Error(t, s.Unmarshal([]byte(`{"n":"x"}`), new(testpb.Echo)))
		assert.Error(t, s.Unmarshal([]byte(`{`), new(testpb.Echo)))
		assert.EqualError(t, s.Unmarshal([]byte(`{}`), (*testpb.Echo)(nil)), "serializer: json cannot decode into nil *testpb.Echo")
	})
	t.Run("a struct holding a message keeps encoding/json rules", func(t *testing.T) {
		t.Parallel()
		v := struct{ E *testpb.Echo }{&testpb.Echo{Text: "x"}}
		want, err := json.Marshal(v)
		require.NoError(t, err)
		got, err := s.Marshal(v)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got))
	})
}

// FuzzJSONMatchesEncodingJSON decodes arbitrary input into a few target
// types with both decoders: the results and errors must agree.
func FuzzJSONMatchesEncodingJSON(f *testing.F) {
	for _, c := range unmarshalCases() {
		if len(c.in) < 4096 {
			f.Add([]byte(c.in))
		}
	}
	targets := []func() any{
		func() any { return new(any) },
		func() any { return new(tagged) },
		func() any { return new(caseFold) },
		func() any { return new(numbers) },
		func() any { return new(deep) },
		func() any { return new(withUnmarshalers) },
		func() any { return new(map[string][]byte) },
		func() any { return new(flatMsg) },
	}
	s := JSON{}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, into := range targets {
			want, got := into(), into()
			wantErr := json.Unmarshal(in, want)
			err := s.Unmarshal(bytes.Clone(in), got)
			if (wantErr == nil) != (err == nil) {
				t.Fatalf("%T: encoding/json %v, serializer %v", want, wantErr, err)
			}
			if wantErr != nil {
				if wantErr.Error() != err.Error() {
					t.Fatalf("%T: encoding/json %v, serializer %v", want, wantErr, err)
				}
				continue
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("%T: encoding/json %+v, serializer %+v", want, deref(want), deref(got))
			}
			// What was decoded encodes to the same bytes too.
			wantOut, wantErr := json.Marshal(want)
			gotOut, err := s.Marshal(got)
			if (wantErr == nil) != (err == nil) || !bytes.Equal(wantOut, gotOut) {
				t.Fatalf("%T: re-encoded: encoding/json %q %v, serializer %q %v", want, wantOut, wantErr, gotOut, err)
			}
		}
	})
}

func deref(v any) any {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

// BenchmarkJSONCodec compares the payload codec with encoding/json on the
// bench module's request shape (a []byte body) and a small struct. Besides
// ns/op it reports cpu-ns/op, the CPU time of the benchmark's thread (Linux),
// which a busy machine disturbs less than the wall clock.
func BenchmarkJSONCodec(b *testing.B) {
	type echo struct{ Body []byte }
	type weather struct {
		City  string            `json:"city"`
		Days  int               `json:"days,omitempty"`
		Temps []float64         `json:"temps"`
		Tags  map[string]string `json:"tags"`
	}
	body := func(n int) []byte { return bytes.Repeat([]byte{0, 1, 0xfe, 'a'}, n/4) }
	vals := []struct {
		name string
		v    any
		into func() any
	}{
		{"body128B", echo{body(128)}, func() any { return new(echo) }},
		{"body4KiB", echo{body(4096)}, func() any { return new(echo) }},
		{"struct", weather{"Bonn", 3, []float64{1.5, -2}, map[string]string{"a": "b"}}, func() any { return new(weather) }},
	}
	engines := []struct {
		name      string
		marshal   func([]byte, any) ([]byte, error)
		unmarshal func([]byte, any) error
	}{
		{"serializer", JSON{}.MarshalAppend, JSON{}.Unmarshal},
		{"encoding-json", func(b []byte, v any) ([]byte, error) {
			out, err := json.Marshal(v)
			return append(b, out...), err
		}, json.Unmarshal},
	}
	for _, v := range vals {
		for _, e := range engines {
			data, err := e.marshal(nil, v.v)
			require.NoError(b, err)
			b.Run(v.name+"/"+e.name+"/marshal", func(b *testing.B) {
				buf := make([]byte, 0, 2*len(data))
				b.ReportAllocs()
				defer cpuPerOp(b)()
				for b.Loop() {
					if buf, err = e.marshal(buf[:0], v.v); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(v.name+"/"+e.name+"/unmarshal", func(b *testing.B) {
				b.ReportAllocs()
				defer cpuPerOp(b)()
				for b.Loop() {
					if err := e.unmarshal(data, v.into()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// cpuPerOp pins the benchmark to its thread and returns the function that
// reports the thread's CPU time per iteration.
func cpuPerOp(b *testing.B) func() {
	runtime.LockOSThread()
	start, ok := threadCPU()
	return func() {
		end, _ := threadCPU()
		runtime.UnlockOSThread()
		if ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
