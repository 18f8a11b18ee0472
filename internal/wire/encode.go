package wire

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Single-byte tags (field number << 3 | wire type); every field number used
// here is below 16, so each tag is one byte.
const (
	tagKind      = fieldKind<<3 | byte(protowire.VarintType)
	tagID        = fieldID<<3 | byte(protowire.VarintType)
	tagType      = fieldType<<3 | byte(protowire.BytesType)
	tagPayload   = fieldPayload<<3 | byte(protowire.BytesType)
	tagError     = fieldError<<3 | byte(protowire.BytesType)
	tagTimeoutMs = fieldTimeoutMs<<3 | byte(protowire.VarintType)
	tagMetadata  = fieldMetadata<<3 | byte(protowire.BytesType)
	tagErrCode   = fieldErrCode<<3 | byte(protowire.VarintType)
	tagErrMsg    = fieldErrMsg<<3 | byte(protowire.BytesType)
	tagMapKey    = fieldMapKey<<3 | byte(protowire.BytesType)
	tagMapValue  = fieldMapValue<<3 | byte(protowire.BytesType)
)

// sortOnStack is the largest metadata map whose keys are sorted in a
// stack-allocated array; larger maps allocate one slice of keys.
const sortOnStack = 16

// AppendHeaderAndPayload appends the protobuf encoding of an envelope with
// the given fields to b and returns the extended buffer. typ and payload are
// passed separately so that callers never copy them into an Envelope first.
//
// Fields are written in field-number order and zero or empty fields are
// omitted, as proto3 does. Metadata entries are written sorted by key, so the
// output is byte-for-byte what proto.Marshal with Deterministic: true
// produces. It does not allocate when b has room for SizeHeaderAndPayload
// bytes and md has at most 16 entries. kind is written as given (a zero kind
// is omitted and makes the envelope invalid for Decode).
func AppendHeaderAndPayload(b []byte, kind Kind, id uint64, typ string, payload []byte, timeoutMs uint64, md map[string]string) []byte {
	if kind != 0 {
		b = append(b, tagKind)
		b = protowire.AppendVarint(b, uint64(kind))
	}
	if id != 0 {
		b = append(b, tagID)
		b = protowire.AppendVarint(b, id)
	}
	if len(typ) != 0 {
		b = append(b, tagType)
		b = protowire.AppendString(b, typ)
	}
	if len(payload) != 0 {
		b = append(b, tagPayload)
		b = protowire.AppendBytes(b, payload)
	}
	if timeoutMs != 0 {
		b = append(b, tagTimeoutMs)
		b = protowire.AppendVarint(b, timeoutMs)
	}
	return appendMetadataMap(b, md)
}

// SizeHeaderAndPayload returns the number of bytes AppendHeaderAndPayload
// appends for the same arguments.
func SizeHeaderAndPayload(kind Kind, id uint64, typ string, payload []byte, timeoutMs uint64, md map[string]string) int {
	n := 0
	if kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(kind))
	}
	if id != 0 {
		n += 1 + protowire.SizeVarint(id)
	}
	if len(typ) != 0 {
		n += 1 + protowire.SizeBytes(len(typ))
	}
	if len(payload) != 0 {
		n += 1 + protowire.SizeBytes(len(payload))
	}
	if timeoutMs != 0 {
		n += 1 + protowire.SizeVarint(timeoutMs)
	}
	for k, v := range md {
		n += 1 + protowire.SizeBytes(sizeEntry(len(k), len(v)))
	}
	return n
}

// AppendError appends the encoding of a KIND_ERROR envelope answering
// request id to b. typ may name the request's type for diagnostics or be
// empty. The error field is always present, even when code and msg are zero,
// matching proto.Marshal of an Envelope whose Error is non-nil.
func AppendError(b []byte, id uint64, typ string, code uint32, msg string) []byte {
	b = append(b, tagKind, byte(KindError))
	if id != 0 {
		b = append(b, tagID)
		b = protowire.AppendVarint(b, id)
	}
	if len(typ) != 0 {
		b = append(b, tagType)
		b = protowire.AppendString(b, typ)
	}
	b = append(b, tagError)
	b = protowire.AppendVarint(b, uint64(sizeErr(code, len(msg))))
	if code != 0 {
		b = append(b, tagErrCode)
		b = protowire.AppendVarint(b, uint64(code))
	}
	if len(msg) != 0 {
		b = append(b, tagErrMsg)
		b = protowire.AppendString(b, msg)
	}
	return b
}

// SizeError returns the number of bytes AppendError appends for the same
// arguments.
func SizeError(id uint64, typ string, code uint32, msg string) int {
	n := 2 // kind
	if id != 0 {
		n += 1 + protowire.SizeVarint(id)
	}
	if len(typ) != 0 {
		n += 1 + protowire.SizeBytes(len(typ))
	}
	return n + 1 + protowire.SizeBytes(sizeErr(code, len(msg)))
}

// AppendEnvelope appends the encoding of a decoded envelope to b, for
// forwarding and tests. The error field is written when e.Kind is KindError
// or either error field is set; metadata entries are written in slice order.
// Decoding the result yields an Envelope equal to e.
func AppendEnvelope(b []byte, e *Envelope) []byte {
	if e.Kind != 0 {
		b = append(b, tagKind)
		b = protowire.AppendVarint(b, uint64(e.Kind))
	}
	if e.ID != 0 {
		b = append(b, tagID)
		b = protowire.AppendVarint(b, e.ID)
	}
	if len(e.Type) != 0 {
		b = append(b, tagType)
		b = protowire.AppendBytes(b, e.Type)
	}
	if len(e.Payload) != 0 {
		b = append(b, tagPayload)
		b = protowire.AppendBytes(b, e.Payload)
	}
	if e.Kind == KindError || e.ErrCode != 0 || len(e.ErrMsg) != 0 {
		b = append(b, tagError)
		b = protowire.AppendVarint(b, uint64(sizeErr(e.ErrCode, len(e.ErrMsg))))
		if e.ErrCode != 0 {
			b = append(b, tagErrCode)
			b = protowire.AppendVarint(b, uint64(e.ErrCode))
		}
		if len(e.ErrMsg) != 0 {
			b = append(b, tagErrMsg)
			b = protowire.AppendBytes(b, e.ErrMsg)
		}
	}
	if e.TimeoutMs != 0 {
		b = append(b, tagTimeoutMs)
		b = protowire.AppendVarint(b, e.TimeoutMs)
	}
	for _, kv := range e.Metadata {
		b = append(b, tagMetadata)
		b = protowire.AppendVarint(b, uint64(sizeEntry(len(kv.Key), len(kv.Value))))
		b = append(b, tagMapKey)
		b = protowire.AppendBytes(b, kv.Key)
		b = append(b, tagMapValue)
		b = protowire.AppendBytes(b, kv.Value)
	}
	return b
}

// sizeErr is the encoded size of a netmsg.v1.Error body.
func sizeErr(code uint32, msgLen int) int {
	n := 0
	if code != 0 {
		n += 1 + protowire.SizeVarint(uint64(code))
	}
	if msgLen != 0 {
		n += 1 + protowire.SizeBytes(msgLen)
	}
	return n
}

// sizeEntry is the encoded size of a map entry body. Like the Go protobuf
// runtime, key and value are always written, even when empty.
func sizeEntry(keyLen, valueLen int) int {
	return 1 + protowire.SizeBytes(keyLen) + 1 + protowire.SizeBytes(valueLen)
}

func appendEntry(b []byte, k, v string) []byte {
	b = append(b, tagMetadata)
	b = protowire.AppendVarint(b, uint64(sizeEntry(len(k), len(v))))
	b = append(b, tagMapKey)
	b = protowire.AppendString(b, k)
	b = append(b, tagMapValue)
	return protowire.AppendString(b, v)
}

// appendMetadataMap writes md's entries sorted by key (bytewise, as the
// protobuf runtime's deterministic mode does).
func appendMetadataMap(b []byte, md map[string]string) []byte {
	switch len(md) {
	case 0:
		return b
	case 1:
		for k, v := range md {
			b = appendEntry(b, k, v)
		}
		return b
	}
	var stack [sortOnStack]string
	keys := stack[:0]
	if len(md) > len(stack) {
		keys = make([]string, 0, len(md))
	}
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendEntry(b, k, md[k])
	}
	return b
}
