package serializer

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Protobuf encodes payloads in the protobuf binary format. Its Name is
// "proto". It accepts only values that implement proto.Message (pointers to
// generated message structs); anything else is an error naming the Go type.
// The zero value is ready to use and safe for concurrent use.
type Protobuf struct{}

// Name returns "proto".
func (Protobuf) Name() string { return "proto" }

// Marshal returns the protobuf encoding of v, which must be a proto.Message.
// A nil message pointer encodes as an empty message.
func (Protobuf) Marshal(v any) ([]byte, error) {
	m, err := protoMessage("encode", v)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{}.Marshal(m)
}

// MarshalAppend appends the protobuf encoding of v, which must be a
// proto.Message, to b using proto.MarshalOptions.MarshalAppend.
func (Protobuf) MarshalAppend(b []byte, v any) ([]byte, error) {
	m, err := protoMessage("encode", v)
	if err != nil {
		return b, err
	}
	out, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return b, err
	}
	return out, nil
}

// Unmarshal decodes data into v, which must be a non-nil proto.Message. As
// with proto.Unmarshal, v is reset first: fields absent from data end up
// with their zero values.
func (Protobuf) Unmarshal(data []byte, v any) error {
	m, err := protoMessage("decode into", v)
	if err != nil {
		return err
	}
	if !m.ProtoReflect().IsValid() {
		return fmt.Errorf("serializer: protobuf cannot decode into nil %T", v)
	}
	return proto.UnmarshalOptions{}.Unmarshal(data, m)
}

// protoMessage returns v as a proto.Message or an error naming v's Go type.
func protoMessage(verb string, v any) (proto.Message, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("serializer: protobuf cannot %s %T: not a proto.Message", verb, v)
	}
	return m, nil
}
