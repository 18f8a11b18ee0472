// Package harness runs netmsg and its peers through the same benchmark
// shapes: round trips, fire-and-forget messages, broadcast and idle memory.
// The runner (cmd/netmsgbench) and the Go benchmarks (bench_test.go) share it.
package harness

import (
	"math/rand/v2"

	"github.com/netmsg/netmsg"
)

// Body returns the benchmark body of n bytes. Every contender sends exactly
// these bytes (deterministic pseudo-random, so nothing compresses it).
func Body(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 0x6e65746d7367))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// EchoReq is the JSON request contract: a body, echoed back in EchoResp.
type EchoReq struct {
	netmsg.Returns[EchoResp]
	Body []byte
}

// EchoResp is EchoReq's response.
type EchoResp struct{ Body []byte }

// Note is the JSON one-way message of the fire-and-forget and broadcast shapes.
type Note struct{ Body []byte }
