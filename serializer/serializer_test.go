package serializer

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestNamesAndSubprotocols(t *testing.T) {
	t.Parallel()
	cases := []struct {
		s           Serializer
		name, subpr string
	}{
		{JSON{}, "json", "netmsg.v1.json"},
		{Protobuf{}, "proto", "netmsg.v1.proto"},
	}
	for _, c := range cases {
		assert.Equal(t, c.name, c.s.Name())
		assert.Equal(t, c.subpr, Subprotocol(c.s))
		assert.Equal(t, SubprotocolPrefix+c.name, Subprotocol(c.s))
	}
	assert.Equal(t, "netmsg.v1.", SubprotocolPrefix)
}

// appendMatchesMarshal asserts that MarshalAppend produces Marshal's bytes,
// both into an empty buffer and after existing content, and leaves the
// prefix alone.
func appendMatchesMarshal(t *testing.T, s Serializer, v any) []byte {
	t.Helper()
	want, err := s.Marshal(v)
	require.NoError(t, err)
	am, ok := s.(AppendMarshaler)
	require.True(t, ok, "%T implements AppendMarshaler", s)

	got, err := am.MarshalAppend(nil, v)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got)) // nil and empty are the same

	prefix := make([]byte, 3, 64)
	copy(prefix, "abc")
	got, err = am.MarshalAppend(prefix, v)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got[:3]))
	assert.Equal(t, string(want), string(got[3:]))
	return want
}

// Failing calls return the buffer they were given, with its length intact.
func appendFailsCleanly(t *testing.T, s Serializer, v any) error {
	t.Helper()
	am := s.(AppendMarshaler)
	buf := []byte("keep")
	out, err := am.MarshalAppend(buf, v)
	require.Error(t, err)
	assert.Equal(t, "keep", string(out))
	return err
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for _, s := range []Serializer{JSON{}, Protobuf{}} {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					am := s.(AppendMarshaler)
					var buf []byte
					for i := range 200 {
						text := fmt.Sprintf("g%d-i%d", g, i)
						var err error
						buf, err = am.MarshalAppend(buf[:0], wrapperspb.String(text))
						if err != nil {
							errs <- err
							return
						}
						var got wrapperspb.StringValue
						if err := s.Unmarshal(buf, &got); err != nil {
							errs <- err
							return
						}
						if got.GetValue() != text {
							errs <- fmt.Errorf("got %q, want %q", got.GetValue(), text)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"json", "proto", "msgpack", "x", "a.b-c_d", "V2", "!#$%&'*+-.^_`|~", "0"} {
		assert.NoError(t, CheckName(ok), "%q", ok)
	}
	for _, bad := range []string{"", "a b", "a,b", "a/b", "a;b", "(x)", "é", "a\tb", "a\x00", "\"q\"", "a=b", "[x]", "{x}", "a:b", "a@b", "a?b", "a\\b"} {
		err := CheckName(bad)
		require.Error(t, err, "%q", bad)
		assert.Contains(t, err.Error(), "HTTP token", "%q", bad)
	}
	assert.EqualError(t, CheckName("a b"), `serializer: name "a b" has ' ' at byte 1; it must be an HTTP token (letters, digits and !#$%&'*+-.^_`+"`"+`|~)`)
	for _, s := range []Serializer{JSON{}, Protobuf{}} {
		assert.NoError(t, CheckName(s.Name()))
	}
}
