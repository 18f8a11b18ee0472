package serializer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/netmsg/netmsg/internal/testpb"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func TestProtobufRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   proto.Message
		out  func() proto.Message
	}{
		{"string value", wrapperspb.String("hello"), func() proto.Message { return new(wrapperspb.StringValue) }},
		{"empty string value", wrapperspb.String(""), func() proto.Message { return new(wrapperspb.StringValue) }},
		{"bytes value", wrapperspb.Bytes([]byte{0, 1, 0xff}), func() proto.Message { return new(wrapperspb.BytesValue) }},
		{"int64 value", wrapperspb.Int64(-1), func() proto.Message { return new(wrapperspb.Int64Value) }},
		{"struct", mustStruct(t, map[string]any{"name": "x"}), func() proto.Message { return new(structpb.Struct) }},
		{"echo", &testpb.Echo{Text: "hi", Body: []byte("body"), N: 42}, func() proto.Message { return new(testpb.Echo) }},
		{"echo reply", &testpb.EchoReply{Text: "hi"}, func() proto.Message { return new(testpb.EchoReply) }},
		{"event", &testpb.Event{Name: "joined"}, func() proto.Message { return new(testpb.Event) }},
	}
	s := Protobuf{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data := appendMatchesMarshal(t, s, c.in)
			want, err := proto.Marshal(c.in)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(data))

			out := c.out()
			require.NoError(t, s.Unmarshal(data, out))
			assert.True(t, proto.Equal(c.in, out), "got %v, want %v", out, c.in)
		})
	}
}

func TestProtobufUnmarshalResets(t *testing.T) {
	t.Parallel()
	s := Protobuf{}
	data, err := s.Marshal(&testpb.Echo{Text: "new"})
	require.NoError(t, err)
	dst := &testpb.Echo{Text: "old", Body: []byte("old"), N: 7}
	require.NoError(t, s.Unmarshal(data, dst))
	assert.True(t, proto.Equal(&testpb.Echo{Text: "new"}, dst), "%v", dst)
}

func TestProtobufNilMessage(t *testing.T) {
	t.Parallel()
	s := Protobuf{}
	data, err := s.Marshal((*testpb.Echo)(nil))
	require.NoError(t, err)
	assert.Empty(t, data)

	err = s.Unmarshal([]byte{0x0a, 0x01, 'x'}, (*testpb.Echo)(nil))
	require.Error(t, err)
	assert.EqualError(t, err, "serializer: protobuf cannot decode into nil *testpb.Echo")
}

func TestProtobufErrors(t *testing.T) {
	t.Parallel()
	s := Protobuf{}
	type plain struct{ A int }
	cases := []struct {
		v    any
		want string
	}{
		{"text", "serializer: protobuf cannot encode string: not a proto.Message"},
		{plain{}, "serializer: protobuf cannot encode serializer.plain: not a proto.Message"},
		{&plain{}, "serializer: protobuf cannot encode *serializer.plain: not a proto.Message"},
		{testpb.Echo{}, "serializer: protobuf cannot encode testpb.Echo: not a proto.Message"},
		{nil, "serializer: protobuf cannot encode <nil>: not a proto.Message"},
	}
	for _, c := range cases {
		_, err := s.Marshal(c.v)
		assert.EqualError(t, err, c.want)
		err = appendFailsCleanly(t, s, c.v)
		assert.EqualError(t, err, c.want)
	}

	err := s.Unmarshal([]byte{}, new(string))
	assert.EqualError(t, err, "serializer: protobuf cannot decode into *string: not a proto.Message")

	for _, garbage := range [][]byte{
		{0x0a, 0x05, 'x'},        // length beyond the end
		{0xff},                   // truncated tag
		{0x00, 0x00},             // field number 0
		{0x0a, 0x02, 0xff, 0xfe}, // invalid UTF-8 in a string field
		{0x0f},                   // wire type 7
	} {
		err := s.Unmarshal(garbage, new(testpb.Echo))
		assert.Error(t, err, "%x", garbage)
	}
}

func TestProtobufContract(t *testing.T) {
	t.Parallel()
	// The test contract the netmsg tests rely on: Echo declares EchoReply.
	var r interface{ ResponseType() *testpb.EchoReply } = new(testpb.Echo)
	assert.Nil(t, r.ResponseType())
	assert.Equal(t, "netmsg.test.v1.Echo", string(new(testpb.Echo).ProtoReflect().Descriptor().FullName()))
}

func BenchmarkProtobufMarshalAppend(b *testing.B) {
	v := &testpb.Echo{Text: "hello", Body: []byte("body"), N: 42}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = (Protobuf{}).MarshalAppend(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
