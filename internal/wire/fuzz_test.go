package wire

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/netmsg/netmsg/proto/envelopepb"
)

// FuzzDecode checks that Decode never panics, that its errors wrap one of
// the two sentinels, that whatever it accepts re-encodes to bytes that decode
// to the same envelope, and that the generated code agrees with every
// envelope it accepts. (The converse does not hold: Decode rejects unknown
// kinds and known fields with the wrong wire type, which the generated code
// accepts, and the generated code rejects invalid UTF-8 in string fields,
// which Decode does not check.) Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add(AppendHeaderAndPayload(nil, KindRequest, 42, "contract.WeatherRequest", []byte(`{"City":"Bonn"}`), 1000,
		map[string]string{"traceparent": "00-01"}))
	f.Add(AppendError(nil, 42, "", 13, "internal error"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Envelope
		err := Decode(data, &e)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownKind), "unexpected error %v", err)
			return
		}
		require.True(t, e.Kind.Valid())

		// Re-encoding is stable: decode(encode(e)) == e, and the encoding
		// of that is the same bytes again.
		enc := AppendEnvelope(nil, &e)
		var e2 Envelope
		require.NoError(t, Decode(enc, &e2))
		requireEqualEnvelopes(t, &e, &e2)
		require.Equal(t, enc, AppendEnvelope(nil, &e2))

		// The oracle accepts what we accept (given valid UTF-8 strings)
		// and reads the same values.
		if !validUTF8(&e) {
			return
		}
		var pb envelopepb.Envelope
		if err := proto.Unmarshal(data, &pb); err != nil {
			// A string field that occurs more than once is checked by the
			// generated code in every occurrence, while Decode keeps the last.
			require.Contains(t, err.Error(), "invalid UTF-8", "generated code rejects an envelope Decode accepted")
			return
		}
		requireSameAsPB(t, &pb, &e)
	})
}

func validUTF8(e *Envelope) bool {
	if !utf8.Valid(e.Type) || !utf8.Valid(e.ErrMsg) {
		return false
	}
	for _, kv := range e.Metadata {
		if !utf8.Valid(kv.Key) || !utf8.Valid(kv.Value) {
			return false
		}
	}
	return true
}
