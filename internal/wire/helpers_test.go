package wire

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/netmsg/netmsg/proto/envelopepb"
)

// toPB converts a decoded envelope into the generated type (the oracle).
func toPB(e *Envelope) *envelopepb.Envelope {
	pb := &envelopepb.Envelope{
		Kind:      envelopepb.Kind(e.Kind),
		Id:        e.ID,
		Type:      string(e.Type),
		Payload:   bytes.Clone(e.Payload),
		TimeoutMs: e.TimeoutMs,
	}
	if e.Kind == KindError || e.ErrCode != 0 || len(e.ErrMsg) != 0 {
		pb.Error = &envelopepb.Error{Code: e.ErrCode, Message: string(e.ErrMsg)}
	}
	if len(e.Metadata) > 0 {
		pb.Metadata = mdMap(e)
	}
	return pb
}

// mdMap returns the metadata with map semantics (last entry wins), nil when
// there is none.
func mdMap(e *Envelope) map[string]string {
	if len(e.Metadata) == 0 {
		return nil
	}
	m := make(map[string]string, len(e.Metadata))
	for _, kv := range e.Metadata {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m
}

// requireSameAsPB asserts that our decoded view and the generated message
// carry the same field values.
func requireSameAsPB(t testing.TB, pb *envelopepb.Envelope, e *Envelope) {
	t.Helper()
	require.EqualValues(t, pb.GetKind(), e.Kind, "kind")
	require.Equal(t, pb.GetId(), e.ID, "id")
	require.Equal(t, pb.GetType(), string(e.Type), "type")
	require.True(t, bytes.Equal(pb.GetPayload(), e.Payload), "payload: %x vs %x", pb.GetPayload(), e.Payload)
	require.Equal(t, pb.GetError().GetCode(), e.ErrCode, "error.code")
	require.Equal(t, pb.GetError().GetMessage(), string(e.ErrMsg), "error.message")
	require.Equal(t, pb.GetTimeoutMs(), e.TimeoutMs, "timeout_ms")
	if len(pb.GetMetadata()) == 0 {
		require.Empty(t, e.Metadata, "metadata")
	} else {
		require.Equal(t, pb.GetMetadata(), mdMap(e), "metadata")
	}
}

// requireEqualEnvelopes compares two decoded views field by field (nil and
// empty slices are equal).
func requireEqualEnvelopes(t testing.TB, want, got *Envelope) {
	t.Helper()
	require.Equal(t, want.Kind, got.Kind, "kind")
	require.Equal(t, want.ID, got.ID, "id")
	require.True(t, bytes.Equal(want.Type, got.Type), "type: %q vs %q", want.Type, got.Type)
	require.True(t, bytes.Equal(want.Payload, got.Payload), "payload: %x vs %x", want.Payload, got.Payload)
	require.Equal(t, want.ErrCode, got.ErrCode, "error.code")
	require.True(t, bytes.Equal(want.ErrMsg, got.ErrMsg), "error.message: %q vs %q", want.ErrMsg, got.ErrMsg)
	require.Equal(t, want.TimeoutMs, got.TimeoutMs, "timeout_ms")
	require.Equal(t, len(want.Metadata), len(got.Metadata), "metadata entries")
	for i := range want.Metadata {
		require.True(t, bytes.Equal(want.Metadata[i].Key, got.Metadata[i].Key), "metadata[%d] key", i)
		require.True(t, bytes.Equal(want.Metadata[i].Value, got.Metadata[i].Value), "metadata[%d] value", i)
	}
}

func marshalDet(t testing.TB, pb *envelopepb.Envelope) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	require.NoError(t, err)
	return b
}
