package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/netmsg/netmsg/proto/envelopepb"
)

// raw builds an encoding from pieces.
func raw(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func tag(num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(nil, num, typ)
}

func varint(v uint64) []byte { return protowire.AppendVarint(nil, v) }

func lenPrefixed(b []byte) []byte { return protowire.AppendBytes(nil, b) }

var kindMessage = raw(tag(1, protowire.VarintType), varint(1))

// Valid but unusual encodings: repeated fields, out-of-order fields, unknown
// fields of every wire type. The generated code is the oracle for each.
func TestDecodeProtoSemantics(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		data []byte
	}{
		{"last scalar wins", raw(kindMessage, tag(2, 0), varint(1), tag(2, 0), varint(2),
			tag(1, 0), varint(2), tag(6, 0), varint(7), tag(6, 0), varint(8))},
		{"last bytes wins", raw(kindMessage, tag(3, 2), lenPrefixed([]byte("a")), tag(3, 2), lenPrefixed([]byte("b")),
			tag(4, 2), lenPrefixed([]byte("p1")), tag(4, 2), lenPrefixed([]byte("p2")))},
		{"fields out of order", raw(tag(4, 2), lenPrefixed([]byte("pay")), tag(3, 2), lenPrefixed([]byte("t")),
			tag(2, 0), varint(5), tag(1, 0), varint(3))},
		{"error occurrences merge", raw(tag(1, 0), varint(4),
			tag(5, 2), lenPrefixed(raw(tag(1, 0), varint(3), tag(2, 2), lenPrefixed([]byte("first")))),
			tag(5, 2), lenPrefixed(raw(tag(2, 2), lenPrefixed([]byte("second")))))},
		{"error unknown fields skipped", raw(tag(1, 0), varint(4),
			tag(5, 2), lenPrefixed(raw(tag(9, 0), varint(1), tag(1, 0), varint(8), tag(10, 5), []byte{1, 2, 3, 4})))},
		{"error code wider than 32 bits truncates", raw(tag(1, 0), varint(4),
			tag(5, 2), lenPrefixed(raw(tag(1, 0), varint(1<<32|7))))},
		{"empty error on message", raw(kindMessage, tag(5, 2), lenPrefixed(nil))},
		{"unknown fields of every wire type", raw(kindMessage,
			tag(8, protowire.VarintType), varint(1<<63),
			tag(9, protowire.Fixed32Type), []byte{1, 2, 3, 4},
			tag(10, protowire.Fixed64Type), []byte{1, 2, 3, 4, 5, 6, 7, 8},
			tag(11, protowire.BytesType), lenPrefixed([]byte("future")),
			tag(12, protowire.StartGroupType), tag(1, 0), varint(1), tag(12, protowire.EndGroupType),
			tag(protowire.MaxValidNumber, protowire.VarintType), varint(0),
			tag(3, 2), lenPrefixed([]byte("t")))},
		{"non-minimal varints", raw(tag(1, 0), []byte{0x81, 0x80, 0x80, 0x00}, tag(2, 0), []byte{0xff, 0x80, 0x00})},
		{"metadata entries missing key or value", raw(kindMessage,
			tag(7, 2), lenPrefixed(raw(tag(2, 2), lenPrefixed([]byte("only value")))),
			tag(7, 2), lenPrefixed(raw(tag(1, 2), lenPrefixed([]byte("only key")))),
			tag(7, 2), lenPrefixed(nil))},
		{"metadata entry repeated key and unknown field", raw(kindMessage,
			tag(7, 2), lenPrefixed(raw(tag(1, 2), lenPrefixed([]byte("a")), tag(3, 0), varint(1),
				tag(1, 2), lenPrefixed([]byte("b")), tag(2, 2), lenPrefixed([]byte("v")))))},
		{"metadata duplicate keys, last wins", raw(kindMessage,
			tag(7, 2), lenPrefixed(raw(tag(1, 2), lenPrefixed([]byte("k")), tag(2, 2), lenPrefixed([]byte("1")))),
			tag(7, 2), lenPrefixed(raw(tag(1, 2), lenPrefixed([]byte("k")), tag(2, 2), lenPrefixed([]byte("2")))))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var pb envelopepb.Envelope
			require.NoError(t, proto.Unmarshal(c.data, &pb), "oracle must accept the test input")
			var e Envelope
			require.NoError(t, Decode(c.data, &e))
			requireSameAsPB(t, &pb, &e)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		data []byte
		want error
		// oracleAccepts marks inputs the generated code accepts but we
		// reject on purpose (stricter on kind and on wire types).
		oracleAccepts bool
	}{
		{name: "empty", data: nil, want: ErrUnknownKind, oracleAccepts: true},
		{name: "kind zero", data: raw(tag(1, 0), varint(0), tag(3, 2), lenPrefixed([]byte("t"))), want: ErrUnknownKind, oracleAccepts: true},
		{name: "kind absent", data: raw(tag(2, 0), varint(1)), want: ErrUnknownKind, oracleAccepts: true},
		{name: "kind 8", data: raw(tag(1, 0), varint(8)), want: ErrUnknownKind, oracleAccepts: true},
		{name: "kind 255", data: raw(tag(1, 0), varint(255)), want: ErrUnknownKind, oracleAccepts: true},
		{name: "kind 256+1 (no truncation to uint8)", data: raw(tag(1, 0), varint(257)), want: ErrUnknownKind, oracleAccepts: true},
		{name: "kind negative", data: raw(tag(1, 0), varint(^uint64(0))), want: ErrUnknownKind, oracleAccepts: true},
		{name: "valid kind overwritten by zero", data: raw(kindMessage, tag(1, 0), varint(0)), want: ErrUnknownKind, oracleAccepts: true},
		{name: "truncated tag", data: raw(kindMessage, []byte{0x80}), want: ErrMalformed},
		{name: "field number zero", data: raw(kindMessage, []byte{0x00, 0x00}), want: ErrMalformed},
		{name: "field number too large", data: raw(kindMessage, tag(protowire.MaxValidNumber+1, 0), varint(0)), want: ErrMalformed},
		{name: "field number overflows int32", data: raw(kindMessage, varint(1<<35), varint(0)), want: ErrMalformed},
		{name: "tag varint overflow", data: raw(kindMessage, bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), want: ErrMalformed},
		{name: "truncated varint", data: raw(tag(1, 0), []byte{0x81}), want: ErrMalformed},
		{name: "varint overflow 11 bytes", data: raw(tag(2, 0), bytes.Repeat([]byte{0x80}, 10), []byte{0x01}), want: ErrMalformed},
		{name: "varint overflow 10th byte", data: raw(tag(2, 0), bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), want: ErrMalformed},
		{name: "length beyond buffer", data: raw(kindMessage, tag(4, 2), varint(10), []byte("short")), want: ErrMalformed},
		{name: "huge length", data: raw(kindMessage, tag(4, 2), varint(1<<62)), want: ErrMalformed},
		{name: "length missing", data: raw(kindMessage, tag(3, 2)), want: ErrMalformed},
		{name: "kind as bytes", data: raw(kindMessage, tag(1, 2), lenPrefixed([]byte{1})), want: ErrMalformed, oracleAccepts: true},
		{name: "id as fixed64", data: raw(kindMessage, tag(2, 1), make([]byte, 8)), want: ErrMalformed, oracleAccepts: true},
		{name: "type as varint", data: raw(kindMessage, tag(3, 0), varint(1)), want: ErrMalformed, oracleAccepts: true},
		{name: "payload as fixed32", data: raw(kindMessage, tag(4, 5), make([]byte, 4)), want: ErrMalformed, oracleAccepts: true},
		{name: "error as varint", data: raw(kindMessage, tag(5, 0), varint(1)), want: ErrMalformed, oracleAccepts: true},
		{name: "timeout as bytes", data: raw(kindMessage, tag(6, 2), lenPrefixed(nil)), want: ErrMalformed, oracleAccepts: true},
		{name: "metadata as varint", data: raw(kindMessage, tag(7, 0), varint(1)), want: ErrMalformed, oracleAccepts: true},
		{name: "error.code as bytes", data: raw(kindMessage, tag(5, 2), lenPrefixed(raw(tag(1, 2), lenPrefixed(nil)))), want: ErrMalformed, oracleAccepts: true},
		{name: "error.message as varint", data: raw(kindMessage, tag(5, 2), lenPrefixed(raw(tag(2, 0), varint(1)))), want: ErrMalformed, oracleAccepts: true},
		{name: "error truncated inside", data: raw(kindMessage, tag(5, 2), lenPrefixed(raw(tag(2, 2), varint(5), []byte("ab")))), want: ErrMalformed},
		{name: "error field zero", data: raw(kindMessage, tag(5, 2), lenPrefixed([]byte{0x00})), want: ErrMalformed},
		{name: "metadata key as varint", data: raw(kindMessage, tag(7, 2), lenPrefixed(raw(tag(1, 0), varint(1)))), want: ErrMalformed, oracleAccepts: true},
		{name: "metadata truncated inside", data: raw(kindMessage, tag(7, 2), lenPrefixed(raw(tag(1, 2), varint(3)))), want: ErrMalformed},
		{name: "metadata field number too large", data: raw(kindMessage, tag(7, 2), lenPrefixed(raw(tag(protowire.MaxValidNumber+1, 0), varint(1)))), want: ErrMalformed},
		{name: "wire type 6", data: raw(kindMessage, tag(9, 6)), want: ErrMalformed},
		{name: "wire type 7", data: raw(kindMessage, tag(9, 7)), want: ErrMalformed},
		{name: "stray end group", data: raw(kindMessage, tag(9, protowire.EndGroupType)), want: ErrMalformed},
		{name: "unterminated group", data: raw(kindMessage, tag(9, protowire.StartGroupType), tag(1, 0), varint(1)), want: ErrMalformed},
		{name: "mismatched end group", data: raw(kindMessage, tag(9, protowire.StartGroupType), tag(10, protowire.EndGroupType)), want: ErrMalformed},
		{name: "unknown field truncated", data: raw(kindMessage, tag(9, protowire.Fixed64Type), []byte{1, 2, 3}), want: ErrMalformed},
		{name: "known field as group", data: raw(kindMessage, tag(3, protowire.StartGroupType), tag(3, protowire.EndGroupType)), want: ErrMalformed, oracleAccepts: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := Envelope{Kind: KindCancel, ID: 99}
			err := Decode(c.data, &e)
			require.Error(t, err)
			assert.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
			other := ErrMalformed
			if c.want == ErrMalformed {
				other = ErrUnknownKind
			}
			assert.False(t, errors.Is(err, other), "%v must wrap only one sentinel", err)
			assert.NotEqual(t, c.want.Error(), err.Error(), "error carries detail")

			var pb envelopepb.Envelope
			oerr := proto.Unmarshal(c.data, &pb)
			if c.oracleAccepts {
				assert.NoError(t, oerr, "oracle accepts this input; we are stricter on purpose")
			} else {
				assert.Error(t, oerr, "oracle rejects it too")
			}
		})
	}
}

// A valid envelope cut at any byte offset either fails to decode or decodes
// to a prefix of the original: every field equals the original's or is zero,
// and metadata is a prefix of the original entries.
func TestDecodeTruncatedAtEveryOffset(t *testing.T) {
	t.Parallel()
	inputs := [][]byte{
		AppendHeaderAndPayload(nil, KindRequest, 1<<50, "contract.WeatherRequest", []byte(`{"City":"Bonn"}`), 1500,
			map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k": "v", "": ""}),
		AppendError(nil, 77, "contract.WeatherRequest", 13, "internal error"),
		AppendHeaderAndPayload(nil, KindMessage, 0, "t", bytes.Repeat([]byte{0xab}, 300), 0, nil),
	}
	for _, full := range inputs {
		var want Envelope
		require.NoError(t, Decode(full, &want))
		var e Envelope
		for i := 0; i < len(full); i++ {
			cut := full[:i:i] // no spare capacity: reads past i would panic
			err := Decode(cut, &e)
			if err != nil {
				assert.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownKind), "offset %d: %v", i, err)
				continue
			}
			assert.Equal(t, want.Kind, e.Kind, "offset %d", i)
			assertPrefixField(t, want.ID, e.ID, "id", i)
			assertPrefixField(t, want.TimeoutMs, e.TimeoutMs, "timeout", i)
			assertPrefixField(t, want.ErrCode, e.ErrCode, "error code", i)
			assertPrefixBytes(t, want.Type, e.Type, "type", i)
			assertPrefixBytes(t, want.Payload, e.Payload, "payload", i)
			assertPrefixBytes(t, want.ErrMsg, e.ErrMsg, "error message", i)
			require.LessOrEqual(t, len(e.Metadata), len(want.Metadata))
			for j, kv := range e.Metadata {
				assert.Equal(t, want.Metadata[j], kv, "offset %d entry %d", i, j)
			}
		}
	}
}

func assertPrefixField[T comparable](t *testing.T, want, got T, name string, off int) {
	t.Helper()
	var zero T
	if got != zero {
		assert.Equal(t, want, got, "%s at offset %d", name, off)
	}
}

func assertPrefixBytes(t *testing.T, want, got []byte, name string, off int) {
	t.Helper()
	if len(got) != 0 {
		assert.Equal(t, want, got, "%s at offset %d", name, off)
	}
}

// An envelope of nothing but empty metadata entries (2 bytes each on the
// wire, 48 in memory) is refused past MaxMetadataEntries, so decoding costs
// memory in proportion to the frame, not 24 times it.
func TestDecodeBoundsMetadataEntries(t *testing.T) {
	head := []byte{tagKind, byte(KindMessage), tagType, 1, 'x'}
	entries := func(n int) []byte {
		b := append([]byte(nil), head...)
		for range n {
			b = append(b, tagMetadata, 0)
		}
		return b
	}
	var e Envelope
	require.NoError(t, Decode(entries(MaxMetadataEntries), &e))
	assert.Len(t, e.Metadata, MaxMetadataEntries)

	err := Decode(entries(MaxMetadataEntries+1), &e)
	require.ErrorIs(t, err, ErrMalformed)
	assert.Contains(t, err.Error(), "metadata entries")

	flood := entries((1 << 20) / 2)
	allocs := testing.AllocsPerRun(5, func() {
		e = Envelope{}
		_ = Decode(flood, &e)
	})
	assert.LessOrEqual(t, allocs, 16.0, "allocations decoding a 1 MiB metadata flood")
	assert.LessOrEqual(t, cap(e.Metadata), 2*MaxMetadataEntries, "metadata capacity kept after a flood")
}
