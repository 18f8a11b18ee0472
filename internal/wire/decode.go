package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Decode parses one encoded envelope into e, resetting e first (the capacity
// of e.Metadata is kept and reused). The byte slices in e alias data.
//
// Decode accepts the proto3 encoding of netmsg.v1.Envelope: fields may come
// in any order, a repeated scalar field keeps its last value, repeated error
// fields merge (as embedded messages do), metadata entries accumulate, and
// fields with unknown numbers are skipped when their wire type is valid, for
// forward compatibility.
//
// It returns an error wrapping ErrMalformed for a truncated or overlong
// varint, more than MaxMetadataEntries metadata entries, a length beyond the end of the buffer, an invalid field number or
// wire type, or a known field with the wrong wire type; and an error wrapping
// ErrUnknownKind when the kind is missing, zero or greater than KindPong.
// Decode does not allocate unless it fails or e.Metadata needs to grow.
func Decode(data []byte, e *Envelope) error {
	*e = Envelope{Metadata: e.Metadata[:0]}
	var kind uint64
	for len(data) > 0 {
		num, typ, n := consumeTag(data)
		if n < 0 {
			return malformed("tag", n)
		}
		data = data[n:]
		switch num {
		case fieldKind, fieldID, fieldTimeoutMs:
			if typ != protowire.VarintType {
				return wrongType(fieldName(num), typ)
			}
			v, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return malformed(fieldName(num), n)
			}
			data = data[n:]
			switch num {
			case fieldKind:
				kind = v
			case fieldID:
				e.ID = v
			default:
				e.TimeoutMs = v
			}
		case fieldType, fieldPayload, fieldError, fieldMetadata:
			if typ != protowire.BytesType {
				return wrongType(fieldName(num), typ)
			}
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return malformed(fieldName(num), n)
			}
			data = data[n:]
			switch num {
			case fieldType:
				e.Type = v
			case fieldPayload:
				e.Payload = v
			case fieldError:
				if err := decodeError(v, e); err != nil {
					return err
				}
			default:
				if len(e.Metadata) >= MaxMetadataEntries {
					// An empty entry is 2 bytes on the wire and a KV 48 in
					// memory: unbounded, a frame of entries would cost 24
					// times its size.
					return fmt.Errorf("%w: more than %d metadata entries", ErrMalformed, MaxMetadataEntries)
				}
				kv, err := decodeEntry(v)
				if err != nil {
					return err
				}
				e.Metadata = append(e.Metadata, kv)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return malformed("unknown field", n)
			}
			data = data[n:]
		}
	}
	if kind == 0 || kind > uint64(maxKind) {
		return fmt.Errorf("%w: %d", ErrUnknownKind, kind)
	}
	e.Kind = Kind(kind)
	return nil
}

// decodeError merges a netmsg.v1.Error body into e: fields present in this
// occurrence overwrite earlier values, absent ones keep them, which is how
// protobuf merges repeated occurrences of an embedded message.
func decodeError(data []byte, e *Envelope) error {
	for len(data) > 0 {
		num, typ, n := consumeTag(data)
		if n < 0 {
			return malformed("error tag", n)
		}
		data = data[n:]
		switch num {
		case fieldErrCode:
			if typ != protowire.VarintType {
				return wrongType("error.code", typ)
			}
			v, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return malformed("error.code", n)
			}
			data = data[n:]
			e.ErrCode = uint32(v) // proto3 uint32 truncates wider varints
		case fieldErrMsg:
			if typ != protowire.BytesType {
				return wrongType("error.message", typ)
			}
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return malformed("error.message", n)
			}
			data = data[n:]
			e.ErrMsg = v
		default:
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return malformed("error: unknown field", n)
			}
			data = data[n:]
		}
	}
	return nil
}

// decodeEntry parses one metadata map entry. A missing key or value is
// empty; a repeated one keeps its last value.
func decodeEntry(data []byte) (KV, error) {
	var kv KV
	for len(data) > 0 {
		num, typ, n := consumeTag(data)
		if n < 0 {
			return KV{}, malformed("metadata tag", n)
		}
		data = data[n:]
		if num != fieldMapKey && num != fieldMapValue {
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return KV{}, malformed("metadata: unknown field", n)
			}
			data = data[n:]
			continue
		}
		if typ != protowire.BytesType {
			return KV{}, wrongType("metadata entry", typ)
		}
		v, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return KV{}, malformed("metadata entry", n)
		}
		data = data[n:]
		if num == fieldMapKey {
			kv.Key = v
		} else {
			kv.Value = v
		}
	}
	return kv, nil
}

// consumeTag is protowire.ConsumeTag that also rejects field numbers above
// protowire.MaxValidNumber, as the protobuf runtime does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, errCodeFieldNumber
	}
	return num, typ, n
}

// errCodeFieldNumber is protowire's error code for an invalid field number
// (protowire.ParseError turns it into "invalid field number"; a test checks).
const errCodeFieldNumber = -2

func malformed(what string, code int) error {
	return fmt.Errorf("%w: %s: %v", ErrMalformed, what, protowire.ParseError(code))
}

// wrongType reports a known field with an unexpected wire type.
func wrongType(what string, typ protowire.Type) error {
	return fmt.Errorf("%w: %s: unexpected wire type %d", ErrMalformed, what, typ)
}

var fieldNames = [...]string{
	fieldKind:      "kind",
	fieldID:        "id",
	fieldType:      "type",
	fieldPayload:   "payload",
	fieldError:     "error",
	fieldTimeoutMs: "timeout_ms",
	fieldMetadata:  "metadata",
}

// fieldName names a known top-level field.
func fieldName(num protowire.Number) string { return fieldNames[num] }
