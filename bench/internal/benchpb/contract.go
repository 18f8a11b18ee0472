// Package benchpb holds the protobuf messages netmsg's benchmarks send with
// the protobuf serializer.
package benchpb

//go:generate sh -c "cd ../../.. && protoc -I . --go_out=. --go_opt=module=github.com/netmsg/netmsg bench/internal/benchpb/bench.proto"

// ResponseType declares EchoReply as the only response type of an
// EchoRequest, satisfying netmsg.Request[*EchoReply].
func (*EchoRequest) ResponseType() *EchoReply { return nil }
