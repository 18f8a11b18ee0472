package wire

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/netmsg/netmsg/proto/envelopepb"
)

func BenchmarkAppendHeaderAndPayload(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendHeaderAndPayload(buf[:0], KindRequest, 12345, benchType, benchPayload, 9000, nil)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendHeaderAndPayloadMetadata(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendHeaderAndPayload(buf[:0], KindRequest, 12345, benchType, benchPayload, 9000, benchMD)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendError(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendError(buf[:0], 12345, benchType, 13, "internal error")
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	data := AppendHeaderAndPayload(nil, KindRequest, 12345, benchType, benchPayload, 9000, nil)
	var e Envelope
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMetadata(b *testing.B) {
	data := AppendHeaderAndPayload(nil, KindRequest, 12345, benchType, benchPayload, 9000, benchMD)
	var e Envelope
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// The generated code, for comparison.

func BenchmarkProtoMarshal(b *testing.B) {
	pb := &envelopepb.Envelope{
		Kind: envelopepb.Kind_KIND_REQUEST, Id: 12345, Type: benchType, Payload: benchPayload, TimeoutMs: 9000,
	}
	buf := make([]byte, 0, 1024)
	opts := proto.MarshalOptions{}
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = opts.MarshalAppend(buf[:0], pb)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkProtoUnmarshal(b *testing.B) {
	data := AppendHeaderAndPayload(nil, KindRequest, 12345, benchType, benchPayload, 9000, nil)
	var pb envelopepb.Envelope
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := proto.Unmarshal(data, &pb); err != nil {
			b.Fatal(err)
		}
	}
}
