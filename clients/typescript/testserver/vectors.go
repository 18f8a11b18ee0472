package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"

	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/proto/envelopepb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// vector is one envelope encoded by the generated Go code, the reference the
// TypeScript codec is tested against.
type vector struct {
	Hex       string            `json:"hex"`
	Kind      int32             `json:"kind"`
	ID        string            `json:"id"` // decimal: ids go up to 2^64-1
	Type      string            `json:"type"`
	Payload   string            `json:"payload"` // hex
	Error     *vectorError      `json:"error"`
	TimeoutMs string            `json:"timeoutMs"`
	Metadata  map[string]string `json:"metadata"`
}

type vectorError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

// verdict says whether the Go side's decoder (internal/wire, what every
// netmsg session uses) accepts a byte string.
type verdict struct {
	Name   string `json:"name"`
	Hex    string `json:"hex"`
	Accept bool   `json:"accept"`
}

// printVectors writes {"vectors": [...], "verdicts": [...]} on stdout.
func printVectors() error {
	envs := []*envelopepb.Envelope{
		{Kind: envelopepb.Kind_KIND_MESSAGE, Type: "contract.Chat", Payload: []byte(`{"From":"a","Text":"b"}`)},
		{Kind: envelopepb.Kind_KIND_REQUEST, Id: 1, Type: "contract.WeatherRequest", Payload: []byte(`{"City":"Bonn"}`), TimeoutMs: 10000},
		{Kind: envelopepb.Kind_KIND_REQUEST, Id: 300, Type: "t", Payload: []byte("{}"),
			Metadata: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "b": "", "": "empty key", "ü": "ünïcode"}},
		{Kind: envelopepb.Kind_KIND_RESPONSE, Id: 127, Payload: []byte(`{"Forecast":"light rain"}`)},
		{Kind: envelopepb.Kind_KIND_RESPONSE, Id: 128},
		{Kind: envelopepb.Kind_KIND_ERROR, Id: 1 << 32, Type: "contract.WeatherRequest", Error: &envelopepb.Error{Code: 5, Message: `no forecast for "Atlantis"`}},
		{Kind: envelopepb.Kind_KIND_ERROR, Id: 2, Error: &envelopepb.Error{}},
		{Kind: envelopepb.Kind_KIND_ERROR, Id: 3, Error: &envelopepb.Error{Code: 1<<32 - 1, Message: "max code"}},
		{Kind: envelopepb.Kind_KIND_CANCEL, Id: 1<<53 - 1},
		{Kind: envelopepb.Kind_KIND_CANCEL, Id: 1<<53 + 1},
		{Kind: envelopepb.Kind_KIND_CANCEL, Id: 1<<64 - 1},
		{Kind: envelopepb.Kind(6), Id: 9, Payload: []byte{0, 1, 2, 0xff}},
		{Kind: envelopepb.Kind(7), Id: 9, Payload: []byte{0, 1, 2, 0xff}},
		{Kind: envelopepb.Kind_KIND_REQUEST, Id: 5, Type: "日本語.型", Payload: make([]byte, 300), TimeoutMs: 1<<63 - 1},
	}
	out := struct {
		Vectors  []vector  `json:"vectors"`
		Verdicts []verdict `json:"verdicts"`
	}{}
	for _, e := range envs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		if err != nil {
			return err
		}
		v := vector{
			Hex: hex.EncodeToString(b), Kind: int32(e.Kind), ID: strconv.FormatUint(e.Id, 10), Type: e.Type,
			Payload: hex.EncodeToString(e.Payload), TimeoutMs: strconv.FormatUint(e.TimeoutMs, 10), Metadata: e.Metadata,
		}
		if e.Error != nil {
			v.Error = &vectorError{Code: e.Error.Code, Message: e.Error.Message}
		}
		if v.Metadata == nil {
			v.Metadata = map[string]string{}
		}
		out.Vectors = append(out.Vectors, v)
	}

	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	kind := func(k uint64) []byte { return protowire.AppendVarint(tag(nil, 1, protowire.VarintType), k) }
	many := kind(1)
	for range wire.MaxMetadataEntries + 1 {
		many = protowire.AppendBytes(tag(many, 7, protowire.BytesType), nil)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"kind 0", kind(0)},
		{"kind 1", kind(1)},
		{"kind 5", kind(5)},
		{"kind 6 (PING)", kind(6)},
		{"kind 7 (PONG)", kind(7)},
		{"kind 8", kind(8)},
		{"kind 2^32+1", kind(1<<32 + 1)},
		{"truncated varint", []byte{0x08, 0x80}},
		{"overlong varint", append([]byte{0x08}, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)},
		{"kind as bytes", protowire.AppendBytes(tag(nil, 1, protowire.BytesType), []byte{1})},
		{"id as bytes", protowire.AppendBytes(tag(kind(2), 2, protowire.BytesType), []byte{1})},
		{"type as varint", protowire.AppendVarint(tag(kind(1), 3, protowire.VarintType), 1)},
		{"payload beyond the frame", append(tag(kind(1), 4, protowire.BytesType), 5, 'a')},
		{"unknown varint field", protowire.AppendVarint(tag(kind(1), 99, protowire.VarintType), 7)},
		{"unknown fixed64 field", protowire.AppendFixed64(tag(kind(1), 99, protowire.Fixed64Type), 7)},
		{"unknown fixed32 field", protowire.AppendFixed32(tag(kind(1), 99, protowire.Fixed32Type), 7)},
		{"unknown bytes field", protowire.AppendBytes(tag(kind(1), 99, protowire.BytesType), []byte("xyz"))},
		{"truncated fixed64", append(tag(kind(1), 99, protowire.Fixed64Type), 1, 2, 3)},
		{"group wire type", append(tag(kind(1), 99, protowire.StartGroupType), tag(nil, 99, protowire.EndGroupType)...)},
		{"field number 0", append(kind(1), 0x00, 0x00)},
		{"error code as bytes", protowire.AppendBytes(tag(kind(4), 5, protowire.BytesType), protowire.AppendBytes(tag(nil, 1, protowire.BytesType), nil))},
		{"kind twice, last wins", append(kind(0), kind(3)...)},
		{"64 metadata entries", many[:len(many)-2]},
		{"65 metadata entries", many},
	}
	for _, c := range cases {
		var e wire.Envelope
		out.Verdicts = append(out.Verdicts, verdict{Name: c.name, Hex: hex.EncodeToString(c.b), Accept: wire.Decode(c.b, &e) == nil})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}
