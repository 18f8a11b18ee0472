// Package cluster is the codec of what the Servers of one cluster say to each
// other through a broker: one-way sends, requests and their cancels addressed
// to a node, broadcasts addressed to every node or to a group's nodes,
// the nodes' presence, and the replies to sends and requests.
//
// The format is private to the library and versioned by its first byte. Every
// string and byte field is a varint length and its bytes; numbers are
// varints. Decode copies nothing: the slices of a decoded Msg or Reply alias
// its input. Counts are bounded before anything is allocated for them.
package cluster

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// version is the first byte of every encoded Msg and Reply.
const version = 1

// Kind says what a Msg asks.
type Kind uint8

// The kinds of Msg.
const (
	KindSend         Kind = 1 // queue a message on a session; replied to
	KindRequest      Kind = 2 // send a request to a session and reply with its answer
	KindCancel       Kind = 3 // the caller of a request gave up; not replied to
	KindBroadcast    Kind = 4 // a message for a group's members on the node
	KindHello        Kind = 5 // the origin node is in the cluster (sent periodically)
	KindBye          Kind = 6 // the origin node is leaving the cluster
	KindBroadcastAll Kind = 7 // a message for every session of the node
)

// MaxPayloads bounds the serializers one Msg carries payloads for.
const MaxPayloads = 16

// MaxMetadata bounds the metadata entries of one Msg (the envelope's bound).
const MaxMetadata = 64

// Payload is a value encoded with one serializer, or why it could not be.
// In a broadcast Data is the whole envelope, ready to queue; in a send or a
// request it is the value alone (the envelope needs the session's request
// id).
type Payload struct {
	Serializer []byte
	Data       []byte
	Err        []byte // not empty: the serializer could not encode the value
}

// KV is one metadata entry.
type KV struct{ Key, Value []byte }

// Msg is one message between nodes.
type Msg struct {
	Kind      Kind
	Origin    []byte // the sending node's id
	CallID    uint64 // requests and their cancels: the origin's id for the call
	Session   []byte // sends and requests: the addressed session's id
	Group     []byte // broadcasts: the group, empty for every session
	Type      []byte // the message's wire type name
	TimeoutMs uint64 // requests: what the caller allows, 0 for none
	Metadata  []KV
	Payloads  []Payload
}

// Append appends the encoding of m to b.
func (m *Msg) Append(b []byte) []byte {
	b = append(b, version, byte(m.Kind))
	b = protowire.AppendBytes(b, m.Origin)
	b = protowire.AppendVarint(b, m.CallID)
	b = protowire.AppendBytes(b, m.Session)
	b = protowire.AppendBytes(b, m.Group)
	b = protowire.AppendBytes(b, m.Type)
	b = protowire.AppendVarint(b, m.TimeoutMs)
	b = protowire.AppendVarint(b, uint64(len(m.Metadata)))
	for _, kv := range m.Metadata {
		b = protowire.AppendBytes(b, kv.Key)
		b = protowire.AppendBytes(b, kv.Value)
	}
	b = protowire.AppendVarint(b, uint64(len(m.Payloads)))
	for _, p := range m.Payloads {
		b = protowire.AppendBytes(b, p.Serializer)
		b = protowire.AppendBytes(b, p.Data)
		b = protowire.AppendBytes(b, p.Err)
	}
	return b
}

// ErrMalformed is what Decode returns for input that is not a Msg or Reply
// of this version.
var ErrMalformed = errors.New("netmsg: malformed cluster message")

// Decode decodes data into m; m's slices alias data.
func (m *Msg) Decode(data []byte) error {
	if len(data) < 2 || data[0] != version {
		return fmt.Errorf("%w: version", ErrMalformed)
	}
	m.Kind = Kind(data[1])
	if m.Kind < KindSend || m.Kind > KindBroadcastAll {
		return fmt.Errorf("%w: kind %d", ErrMalformed, data[1])
	}
	d := decoder{b: data[2:]}
	m.Origin = d.bytes()
	m.CallID = d.varint()
	m.Session = d.bytes()
	m.Group = d.bytes()
	m.Type = d.bytes()
	m.TimeoutMs = d.varint()
	n := d.count(MaxMetadata, 2)
	m.Metadata = m.Metadata[:0]
	for range n {
		m.Metadata = append(m.Metadata, KV{Key: d.bytes(), Value: d.bytes()})
	}
	n = d.count(MaxPayloads, 3)
	m.Payloads = m.Payloads[:0]
	for range n {
		m.Payloads = append(m.Payloads, Payload{Serializer: d.bytes(), Data: d.bytes(), Err: d.bytes()})
	}
	return d.end()
}

// Payload returns the payload for the serializer named ser.
func (m *Msg) Payload(ser string) (Payload, bool) {
	for _, p := range m.Payloads {
		if string(p.Serializer) == ser {
			return p, true
		}
	}
	return Payload{}, false
}

// Status says how a send or request went on the node that has the session.
type Status uint8

// The statuses of a Reply.
const (
	StatusOK        Status = 1 // queued (sends) or answered (requests: Serializer and Data hold the response)
	StatusNoSession Status = 2 // the node has no session with that id
	StatusError     Status = 3 // the handler answered with an error: Code and Text
	StatusClosed    Status = 4 // the session closed: Reason, Code and Text describe the close
	StatusFailed    Status = 5 // the send failed on the node: Text says why, Code is non-zero for a too-large message
)

// Reply answers a KindSend or KindRequest Msg.
type Reply struct {
	Status     Status
	Code       uint64 // StatusError: the error code; StatusClosed: the close code; StatusFailed: 1 when too large
	Reason     uint64 // StatusClosed: the close reason
	Text       []byte
	Serializer []byte // StatusOK for a request: the serializer of Data
	Data       []byte
}

// Append appends the encoding of r to b.
func (r *Reply) Append(b []byte) []byte {
	b = append(b, version, byte(r.Status))
	b = protowire.AppendVarint(b, r.Code)
	b = protowire.AppendVarint(b, r.Reason)
	b = protowire.AppendBytes(b, r.Text)
	b = protowire.AppendBytes(b, r.Serializer)
	b = protowire.AppendBytes(b, r.Data)
	return b
}

// Decode decodes data into r; r's slices alias data.
func (r *Reply) Decode(data []byte) error {
	if len(data) < 2 || data[0] != version {
		return fmt.Errorf("%w: version", ErrMalformed)
	}
	r.Status = Status(data[1])
	if r.Status < StatusOK || r.Status > StatusFailed {
		return fmt.Errorf("%w: status %d", ErrMalformed, data[1])
	}
	d := decoder{b: data[2:]}
	r.Code = d.varint()
	r.Reason = d.varint()
	r.Text = d.bytes()
	r.Serializer = d.bytes()
	r.Data = d.bytes()
	return d.end()
}

// decoder consumes fields and remembers the first failure.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := protowire.ConsumeVarint(d.b)
	if n < 0 {
		d.err = fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	v, n := protowire.ConsumeBytes(d.b)
	if n < 0 {
		d.err = fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		return nil
	}
	d.b = d.b[n:]
	if len(v) == 0 {
		return nil
	}
	return v
}

// count reads a count of entries of at least minBytes each, bounded by max
// and by what is left of the input.
func (d *decoder) count(max, minBytes int) int {
	v := d.varint()
	if d.err != nil {
		return 0
	}
	if v > uint64(max) || v*uint64(minBytes) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: %d entries", ErrMalformed, v)
		return 0
	}
	return int(v)
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return d.err
}
