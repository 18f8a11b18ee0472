package netmsg_test

import (
	"context"
	"testing"

	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/netmsg/netmsg/serializer"
)

// maxProtoRoundTripAllocs is what one protobuf request and its response cost
// in allocations, client and server together: gws's *Message per frame (2),
// the decoded request with its handler's context (1: allocated together,
// handlers.go) and the decoded response (1), protobuf's copy of each bytes
// field (2) and the handler's reply (1, the user's).
const maxProtoRoundTripAllocs = 7

// The allocation budget of a round trip is a limit, not a measurement that
// drifts: a change that adds one fails here, not only in a benchmark table.
func TestProtobufRoundTripAllocations(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts need a build without the race detector")
	}
	body := benchBody(128)
	res := testing.Benchmark(func(b *testing.B) {
		_, clients := benchPair(b, serializer.Protobuf{}, 1, nil)
		ctx := context.Background()
		req := &testpb.Echo{Body: body}
		for range 100 { // warm the pools
			if err := benchCodecs[1].call(ctx, clients[0], body, req); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := benchCodecs[1].call(ctx, clients[0], body, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	t.Logf("%d round trips: %d allocs, %d B per round trip", res.N, res.AllocsPerOp(), res.AllocedBytesPerOp())
	if res.N < 100 {
		t.Fatalf("only %d round trips ran", res.N)
	}
	if got := res.AllocsPerOp(); got > maxProtoRoundTripAllocs {
		t.Errorf("a protobuf round trip allocates %d times, more than the budget of %d", got, maxProtoRoundTripAllocs)
	}
}
