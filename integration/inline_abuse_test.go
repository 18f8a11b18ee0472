package integration_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
)

type inBig struct {
	netmsg.Returns[inBigReply]
	N int
}
type inBigReply struct{ Data string }

// TestInlineAnswersToPeerThatDoesNotRead: a peer sends requests as fast as it
// can and reads none of the answers (4 KiB each). They are produced on the
// server's read loop (inline handlers), which writes them itself only as far
// as the socket takes them at once (1 ms at most) and leaves the rest to a
// writer: so it goes on reading, the answers pile up in the outbound queue,
// and the peer is cut as a slow consumer as soon as the queue's limit is
// reached, not after the write timeout a read loop blocked in a write would
// need. Memory stays near the queue's limit.
func TestInlineAnswersToPeerThatDoesNotRead(t *testing.T) {
	const queue = 1 << 20
	rec := nettest.NewRecorder()
	small := func(c *net.TCPConn) { _ = c.SetWriteBuffer(32 << 10) }
	srv := nettest.StartServerOn(t, nettest.Listen{Tune: small},
		rec.ServerOptions(netmsg.WithMaxQueuedBytes(queue), netmsg.WithWriteTimeout(20*time.Second))...)
	data := strings.Repeat("d", 4<<10)
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, r inBig) (inBigReply, error) {
		return inBigReply{Data: data}, nil
	})
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{Tune: func(c *net.TCPConn) { _ = c.SetReadBuffer(8 << 10) }})
	ss := rec.NextOpen(t)

	name := netmsg.TypeName(inBig{})
	var batch []byte
	id := uint64(0)
	next := func() []byte {
		batch = batch[:0]
		for range 8 {
			id++
			batch = append(batch, nettest.Frame(nettest.Fin|nettest.OpBinary, nettest.Envelope(wire.KindRequest, id, name, `{"N":1}`))...)
		}
		return batch
	}
	m := nettest.Measure(t, "requests whose 4 KiB answers the peer never reads")
	start := time.Now()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end) && ss.Err() == nil; {
		if err := p.WriteBy(bytes.Clone(next()), time.Now().Add(nettest.Wait)); err != nil {
			break
		}
	}
	closed := rec.CloseOf(t, ss)
	took := time.Since(start)
	cost := m.Stop()
	t.Logf("%d requests sent; session cut after %v: %v", id, took, closed.Err)
	assert.Equal(t, netmsg.CloseSlowConsumer.String(), closed.Err.Reason.String())
	// A read loop that waited in its writes would be cut only by the 20 s
	// write timeout; here the queue fills within a fraction of that.
	assert.Less(t, took, 10*time.Second, "the read loop waited on the peer's socket")
	assert.Less(t, cost.HeapPeak, uint64(8*queue), "heap growth")
}
