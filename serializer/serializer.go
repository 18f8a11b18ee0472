// Package serializer defines how netmsg encodes message payloads and
// provides the two built-in encodings, JSON and Protobuf.
//
// The serializer of a connection is negotiated with the WebSocket
// subprotocol: a client offers Subprotocol(s), "netmsg.v1.json" or
// "netmsg.v1.proto", and the server picks one it accepts. Only the envelope's
// payload is encoded by the serializer; the envelope itself is always
// protobuf (see proto/envelope.proto).
//
// A custom Serializer only needs a unique Name and the two methods; it may
// also implement AppendMarshaler to let netmsg encode straight into its frame
// buffer.
package serializer

import "fmt"

// SubprotocolPrefix is the WebSocket subprotocol prefix of netmsg protocol
// version 1; the serializer's name follows it.
const SubprotocolPrefix = "netmsg.v1."

// Serializer encodes and decodes payloads. Implementations must be safe for
// concurrent use.
type Serializer interface {
	// Name identifies the encoding in the subprotocol: "json" is offered as
	// "netmsg.v1.json". It must be a valid HTTP token and stable.
	Name() string
	// Marshal returns the encoding of v. The returned slice belongs to the
	// caller.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, which is a non-nil pointer (a
	// proto.Message for Protobuf). It must not retain data.
	Unmarshal(data []byte, v any) error
}

// AppendMarshaler is an optional fast path for a Serializer: MarshalAppend
// appends v's encoding to b and returns the extended slice, producing the
// same bytes Marshal would. On error it returns b unchanged (same length) and
// the error.
type AppendMarshaler interface {
	MarshalAppend(b []byte, v any) ([]byte, error)
}

// Subprotocol returns the WebSocket subprotocol that selects s:
// SubprotocolPrefix followed by s.Name(), for example "netmsg.v1.json".
func Subprotocol(s Serializer) string { return SubprotocolPrefix + s.Name() }

// CheckName reports whether name can name a serializer: it travels in the
// Sec-WebSocket-Protocol header, so it must be a non-empty HTTP token
// (RFC 9110 §5.6.2: letters, digits and !#$%&'*+-.^_`|~). The error says
// which character is not allowed.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("serializer: the name is empty; it must be an HTTP token")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("serializer: name %q has %q at byte %d; it must be an HTTP token (letters, digits and !#$%%&'*+-.^_`|~)", name, name[i], i)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Compile-time checks that the built-in serializers have the fast path.
var (
	_ Serializer      = JSON{}
	_ AppendMarshaler = JSON{}
	_ Serializer      = Protobuf{}
	_ AppendMarshaler = Protobuf{}
)
