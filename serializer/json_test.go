package serializer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type weatherRequest struct {
	City string
	Days int      `json:"days,omitempty"`
	Tags []string `json:"tags"`
}

type custom struct{}

func (custom) MarshalJSON() ([]byte, error) { return []byte(`{ "spaced" :  true }`), nil }

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   any
		want string
		out  func() any // fresh pointer to decode into
	}{
		{"struct", weatherRequest{City: "Bonn", Days: 3, Tags: []string{"a"}}, `{"City":"Bonn","days":3,"tags":["a"]}`,
			func() any { return new(weatherRequest) }},
		{"pointer to struct", &weatherRequest{City: "Köln"}, `{"City":"Köln","tags":null}`,
			func() any { return new(weatherRequest) }},
		{"map", map[string]int{"b": 2, "a": 1}, `{"a":1,"b":2}`, func() any { return new(map[string]int) }},
		{"string with html", "<a&b>", `"\u003ca\u0026b\u003e"`, func() any { return new(string) }},
		{"string with newline", "line\n", `"line\n"`, func() any { return new(string) }},
		{"number", 42.5, `42.5`, func() any { return new(float64) }},
		{"nil", nil, `null`, func() any { return new(any) }},
		{"empty struct", struct{}{}, `{}`, func() any { return new(struct{}) }},
		{"raw message", json.RawMessage(`{"x":1}`), `{"x":1}`, func() any { return new(json.RawMessage) }},
		{"marshaler output is compacted", custom{}, `{"spaced":true}`, func() any { return new(map[string]bool) }},
		{"large", strings.Repeat("x", 100_000), `"` + strings.Repeat("x", 100_000) + `"`, func() any { return new(string) }},
	}
	s := JSON{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data := appendMatchesMarshal(t, s, c.in)
			assert.Equal(t, c.want, string(data))

			out := c.out()
			require.NoError(t, s.Unmarshal(data, out))
			again, err := s.Marshal(out)
			require.NoError(t, err)
			assert.JSONEq(t, c.want, string(again))
		})
	}
}

func TestJSONErrors(t *testing.T) {
	t.Parallel()
	s := JSON{}
	for name, v := range map[string]any{
		"channel":         make(chan int),
		"func":            func() {},
		"complex":         complex(1, 2),
		"nested channel":  map[string]any{"c": make(chan int)},
		"struct with fun": struct{ F func() }{},
	} {
		t.Run("marshal "+name, func(t *testing.T) {
			t.Parallel()
			var unsupported *json.UnsupportedTypeError // one per subtest: they run in parallel
			_, err := s.Marshal(v)
			require.Error(t, err)
			assert.True(t, errors.As(err, &unsupported), "%T", err)
			err = appendFailsCleanly(t, s, v)
			assert.True(t, errors.As(err, &unsupported), "%T", err)
		})
	}

	t.Run("unmarshal garbage", func(t *testing.T) {
		t.Parallel()
		var syntax *json.SyntaxError
		for _, in := range []string{"", "{", "nope", `{"City":}`, "\x00\xff"} {
			err := s.Unmarshal([]byte(in), new(weatherRequest))
			require.Error(t, err, "%q", in)
			assert.True(t, errors.As(err, &syntax), "%q: %T %v", in, err, err)
		}
	})
	t.Run("unmarshal wrong type", func(t *testing.T) {
		t.Parallel()
		var typ *json.UnmarshalTypeError
		err := s.Unmarshal([]byte(`{"City":5}`), new(weatherRequest))
		assert.True(t, errors.As(err, &typ), "%v", err)
	})
	t.Run("unmarshal into non-pointer or nil", func(t *testing.T) {
		t.Parallel()
		var invalid *json.InvalidUnmarshalError
		for _, v := range []any{weatherRequest{}, nil, (*weatherRequest)(nil)} {
			err := s.Unmarshal([]byte(`{}`), v)
			assert.True(t, errors.As(err, &invalid), "%T: %v", v, err)
		}
	})
}

// A failed encode must not leave junk in the pooled buffer for the next
// caller.
func TestJSONPoolIsCleanAfterError(t *testing.T) {
	t.Parallel()
	s := JSON{}
	for range 20 {
		_, err := s.MarshalAppend(nil, map[string]any{"a": 1, "z": make(chan int)})
		require.Error(t, err)
		got, err := s.MarshalAppend(nil, "ok")
		require.NoError(t, err)
		require.Equal(t, `"ok"`, string(got))
	}
}

func TestJSONMarshalAppendAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops values at random under the race detector")
	}
	s := JSON{}
	v := &weatherRequest{City: "Bonn", Days: 3}
	buf := make([]byte, 0, 256)
	_, _ = s.MarshalAppend(buf, v) // warm the pool
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if _, err = s.MarshalAppend(buf[:0], v); err != nil {
			panic(err)
		}
	})
	// encoding/json itself may allocate for some values (maps, interface
	// values); for this plain struct the pooled path allocates nothing.
	assert.Zero(t, allocs)
}

func BenchmarkJSONMarshal(b *testing.B) {
	v := &weatherRequest{City: "Bonn", Days: 3, Tags: []string{"a", "b"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (JSON{}).Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONMarshalAppend(b *testing.B) {
	v := &weatherRequest{City: "Bonn", Days: 3, Tags: []string{"a", "b"}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = (JSON{}).MarshalAppend(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
