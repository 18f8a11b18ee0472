// Package wire is netmsg's hand-written codec for the protobuf envelope
// defined in proto/envelope.proto (message netmsg.v1.Envelope).
//
// It produces exactly the bytes that proto.Marshal with the Deterministic
// option produces for the generated envelopepb.Envelope, and it decodes
// anything proto.Unmarshal accepts for that message, except envelopes whose
// kind is unspecified or unknown and fields that carry a known number with
// the wrong wire type, which it rejects. Unlike the generated code it does not
// allocate: Append functions write into a caller-supplied buffer and Decode
// returns views that alias the input. It does not validate UTF-8 in string
// fields.
//
// The generated package (proto/envelopepb) is the specification and the test
// oracle; this package must not import it outside tests.
package wire

import (
	"errors"
	"strconv"
)

// Kind is the envelope kind. Its values equal the netmsg.v1.Kind enum.
type Kind uint8

// Envelope kinds. The zero Kind (KIND_UNSPECIFIED) is never valid on the wire.
// MaxMetadataEntries bounds the metadata entries of one envelope, on both
// sides: metadata is for a few values such as trace context, and the bound
// keeps a decoded envelope's memory proportional to its size.
const MaxMetadataEntries = 64

const (
	KindMessage  Kind = 1 // one-way message
	KindRequest  Kind = 2 // request expecting one RESPONSE or ERROR
	KindResponse Kind = 3 // successful answer to a request
	KindError    Kind = 4 // failed answer to a request
	KindCancel   Kind = 5 // the caller stopped waiting for a request
	KindPing     Kind = 6 // liveness probe, answered with a PONG (revision 2)
	KindPong     Kind = 7 // the answer to a PING: its id and payload
)

// maxKind is the largest Kind this version understands.
const maxKind = KindPong

var kindNames = [...]string{
	KindMessage:  "MESSAGE",
	KindRequest:  "REQUEST",
	KindResponse: "RESPONSE",
	KindError:    "ERROR",
	KindCancel:   "CANCEL",
	KindPing:     "PING",
	KindPong:     "PONG",
}

// String returns the kind's name without the KIND_ prefix ("REQUEST"), or
// "Kind(N)" for a value outside the enum.
func (k Kind) String() string {
	if k >= 1 && k <= maxKind {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= 1 && k <= maxKind }

// Envelope is a decoded view of one envelope. The byte slices alias the
// buffer passed to Decode: they stay valid only as long as that buffer is
// neither modified nor reused, so copy what must outlive it.
type Envelope struct {
	Kind      Kind
	ID        uint64
	Type      []byte // wire type name; aliases the buffer
	Payload   []byte // serializer-encoded value; aliases the buffer
	ErrCode   uint32 // error.code (gRPC numbering); set for KindError
	ErrMsg    []byte // error.message; aliases the buffer
	TimeoutMs uint64 // caller's remaining deadline in ms; 0 = none
	// Metadata holds the metadata map entries in wire order (duplicates
	// included; with map semantics the last one wins). It has length 0 when
	// the envelope has no metadata: nil for a fresh Envelope, or the previous
	// slice truncated to length 0 when an Envelope is reused, so Decode
	// appends into its capacity without allocating.
	Metadata []KV
}

// KV is one metadata entry. Key and Value alias the decoded buffer.
type KV struct{ Key, Value []byte }

// Lookup returns the value of the last metadata entry with the given key.
func (e *Envelope) Lookup(key string) (value []byte, ok bool) {
	for i := len(e.Metadata) - 1; i >= 0; i-- {
		if string(e.Metadata[i].Key) == key {
			return e.Metadata[i].Value, true
		}
	}
	return nil, false
}

// Errors returned (wrapped, with detail) by Decode. Test with errors.Is.
var (
	ErrMalformed   = errors.New("netmsg: malformed envelope")
	ErrUnknownKind = errors.New("netmsg: unknown envelope kind")
)

// Field numbers of netmsg.v1.Envelope, netmsg.v1.Error and the metadata map
// entry. They must match proto/envelope.proto.
const (
	fieldKind      = 1
	fieldID        = 2
	fieldType      = 3
	fieldPayload   = 4
	fieldError     = 5
	fieldTimeoutMs = 6
	fieldMetadata  = 7

	fieldErrCode = 1
	fieldErrMsg  = 2

	fieldMapKey   = 1
	fieldMapValue = 2
)
