package cluster

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleMsg() Msg {
	return Msg{
		Kind: KindRequest, Origin: []byte("k3v9x2"), CallID: 1 << 40, Session: []byte("k3v9x2-1a"),
		Group: []byte("lobby / east"), Type: []byte("contract.Ping"), TimeoutMs: 9000,
		Metadata: []KV{{Key: []byte("traceparent"), Value: []byte("00-4bf9")}, {Key: []byte("user"), Value: []byte("ada")}},
		Payloads: []Payload{{Serializer: []byte("json"), Data: []byte(`{"Text":"hi"}`)}, {Serializer: []byte("proto"), Err: []byte("not a proto.Message")}},
	}
}

func TestMsgRoundTrip(t *testing.T) {
	for _, m := range []Msg{sampleMsg(), {Kind: KindHello, Origin: []byte("n")}, {Kind: KindBroadcastAll, Origin: []byte("n"), Type: []byte("T")}} {
		data := m.Append(nil)
		var got Msg
		require.NoError(t, got.Decode(data))
		assert.Equal(t, m.Append(nil), got.Append(nil))
		assert.Equal(t, m.Kind, got.Kind)
		assert.Equal(t, string(m.Origin), string(got.Origin))
		assert.Equal(t, len(m.Payloads), len(got.Payloads))
	}
	m := sampleMsg()
	var got Msg
	require.NoError(t, got.Decode(m.Append(nil)))
	p, ok := got.Payload("json")
	require.True(t, ok)
	assert.Equal(t, `{"Text":"hi"}`, string(p.Data))
	p, ok = got.Payload("proto")
	require.True(t, ok)
	assert.Equal(t, "not a proto.Message", string(p.Err))
	_, ok = got.Payload("msgpack")
	assert.False(t, ok)
}

func TestReplyRoundTrip(t *testing.T) {
	r := Reply{Status: StatusClosed, Code: 1008, Reason: 17, Text: []byte("bye"), Serializer: []byte("json"), Data: []byte("{}")}
	var got Reply
	require.NoError(t, got.Decode(r.Append(nil)))
	assert.Equal(t, r, got)
}

// Every truncation of a valid message, and the malformed inputs below, are
// refused with ErrMalformed; none panics or allocates for a count it was
// not given the bytes for.
func TestDecodeMalformed(t *testing.T) {
	m := sampleMsg()
	data := m.Append(nil)
	for i := range len(data) {
		var got Msg
		assert.ErrorIs(t, got.Decode(data[:i]), ErrMalformed, "truncated at %d", i)
	}
	r := Reply{Status: StatusOK, Serializer: []byte("json"), Data: []byte("{}")}
	rdata := r.Append(nil)
	for i := range len(rdata) {
		var got Reply
		assert.ErrorIs(t, got.Decode(rdata[:i]), ErrMalformed, "truncated at %d", i)
	}
	for name, bad := range map[string][]byte{
		"version":        {2, byte(KindSend)},
		"kind 0":         {version, 0},
		"kind too large": {version, 99},
		"trailing":       append(append([]byte{}, data...), 0),
		// A count of 2^62 metadata entries with nothing after it.
		"huge count": append([]byte{version, byte(KindSend), 0, 0, 0, 0, 0, 0}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40),
		// 64 entries allowed, 65 refused even with the bytes there.
		"too many entries": func() []byte {
			b := []byte{version, byte(KindSend), 0, 0, 0, 0, 0, 0, MaxMetadata + 1}
			for range MaxMetadata + 1 {
				b = append(b, 0, 0)
			}
			return append(b, 0)
		}(),
	} {
		var got Msg
		assert.ErrorIs(t, got.Decode(bad), ErrMalformed, name)
	}
	var got Reply
	assert.ErrorIs(t, got.Decode([]byte{version, 0}), ErrMalformed)
	assert.ErrorIs(t, got.Decode([]byte{version, 9}), ErrMalformed)
}

func FuzzDecode(f *testing.F) {
	m := sampleMsg()
	f.Add(m.Append(nil))
	r := Reply{Status: StatusError, Code: 7, Text: []byte("denied")}
	f.Add(r.Append(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		// What decodes encodes to bytes that decode to the same message
		// (the input itself may use longer varints than Append writes).
		var m Msg
		if m.Decode(data) == nil {
			b := m.Append(nil)
			var again Msg
			if err := again.Decode(b); err != nil {
				t.Fatalf("re-encoded %x does not decode: %v", b, err)
			}
			if got := again.Append(nil); string(got) != string(b) {
				t.Fatalf("re-encoded %x, then %x", b, got)
			}
		}
		var r Reply
		if r.Decode(data) == nil {
			b := r.Append(nil)
			var again Reply
			if err := again.Decode(b); err != nil || again.Status != r.Status || string(again.Append(nil)) != string(b) {
				t.Fatalf("reply re-encoded %x: %v", b, err)
			}
		}
	})
}
