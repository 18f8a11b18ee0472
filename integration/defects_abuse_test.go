package integration_test

// Regression tests for the adversarial defects of the session core (issue 9,
// defects 1, 4, 5 and 6), each written as the attacker or the user hit it.
// Each logs what the attack cost (nettest.Measure). The memory tests are not
// parallel: they measure the process's heap.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---- contracts ----

// dfBlob is a message whose JSON size grows one byte per byte of S.
type dfBlob struct{ S string }

// dfHold is answered once released.
type dfHold struct {
	netmsg.Returns[dfHoldReply]
	Key string
}

type dfHoldReply struct{ Key string }

// ---- defect 1: ping flood ----

// TestDefectPingFlood: a peer handshakes, then writes empty pings in 64 KiB
// batches as fast as the server takes them and reads every pong. The old core
// queued one pooled pong frame per ping (counted as 0 bytes against
// WithMaxQueuedBytes) and grew the heap by ~500 MiB a second with the session
// open. Now pongs coalesce into one slot (the latest ping is answered), so
// the flood costs bounded memory.
func TestDefectPingFlood(t *testing.T) {
	const (
		flood     = 2 * time.Second
		heapBound = 64 << 20 // old core: ~1 GiB in the same 2 s
	)
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions(netmsg.WithMaxQueuedBytes(1<<20))...)
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
	ss := rec.NextOpen(t)
	rd := p.StartReading(0)

	ping := nettest.Frame(nettest.Fin|nettest.OpPing, nil)
	batch := bytes.Repeat(ping, (64<<10)/len(ping))
	m := nettest.Measure(t, "a 2 s flood of empty pings (WithMaxQueuedBytes 1 MiB)")
	var sent int
	var werr error
	for end := time.Now().Add(flood); time.Now().Before(end); {
		if werr = p.WriteBy(batch, time.Now().Add(nettest.Wait)); werr != nil {
			break // the server cut the session
		}
		sent += len(batch) / len(ping)
	}
	cost := m.Stop()
	t.Logf("%d pings sent (%s), %d pongs read; write error: %v; session closed: %v",
		sent, nettest.MiB(uint64(sent*len(ping))), rd.Pongs.Load(), werr, ss.Err())
	require.Positive(t, sent)
	if ce := ss.Err(); ce != nil {
		assert.Equal(t, netmsg.CloseSlowConsumer.String(), ce.Reason.String(), "a flooding peer is cut as a slow consumer")
	}
	assert.Less(t, cost.HeapPeak, uint64(heapBound), "heap growth during the ping flood")
	assert.Positive(t, rd.Pongs.Load(), "pings are answered")
}

// TestDefectDuplicateIDFlood: with one request in flight, a peer floods
// requests that reuse its id and reads nothing. Each is answered at once
// with CodeAlreadyExists; the old core counted only the answers' payload
// bytes against the 4 MiB queue limit and peaked ~40 MiB of heap. Now a
// frame counts what it holds, so the queue fills at 4 MiB of real memory
// and the peer is cut as a slow consumer.
func TestDefectDuplicateIDFlood(t *testing.T) {
	const heapBound = 12 << 20 // 3 × the 4 MiB queue limit; old core: 25-56 MiB
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	gate, release := nettest.Releaser(t)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, r dfHold) (dfHoldReply, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return dfHoldReply{Key: r.Key}, nil
	})
	// Socket buffers as they come: shrunk, they can stall the flood in TCP
	// itself on loopback. The kernel then holds a few MiB of answers before
	// the queue fills.
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
	ss := rec.NextOpen(t)

	hold := nettest.Frame(nettest.Fin|nettest.OpBinary, nettest.Envelope(wire.KindRequest, 1, netmsg.TypeName(dfHold{}), `{"Key":"first"}`))
	p.WriteRaw(t, hold)
	batch := bytes.Repeat(hold, (64<<10)/len(hold))
	m := nettest.Measure(t, "a flood of requests reusing an id in flight, answers unread")
	var sent int
	var werr error
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && ss.Err() == nil; {
		// A generous deadline: the server reads slowly under -race, and a
		// write given up halfway would leave it waiting for the rest.
		if werr = p.WriteBy(batch, time.Now().Add(nettest.Wait)); werr != nil {
			break
		}
		sent += len(batch) / len(hold)
	}
	closed := rec.CloseOf(t, ss)
	cost := m.Stop()
	release()
	t.Logf("%d duplicate requests sent before the cut (write error: %v); session closed: %v", sent, werr, closed.Err)
	assert.Equal(t, netmsg.CloseSlowConsumer.String(), closed.Err.Reason.String(), "a peer that reads none of its answers is cut")
	assert.Less(t, cost.HeapPeak, uint64(heapBound), "heap growth during the duplicate-id flood")
	assert.Positive(t, srv.Stats().SlowConsumers)
}

// ---- defect 4: the mailbox's byte bound ----

// dfEnvelopeOfSize returns a MESSAGE envelope of dfBlob exactly n bytes long.
func dfEnvelopeOfSize(t testing.TB, n int) []byte {
	t.Helper()
	name := netmsg.TypeName(dfBlob{})
	env := func(pad int) []byte {
		return wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, name, []byte(`{"S":"`+strings.Repeat("x", pad)+`"}`), 0, nil)
	}
	pad := n - len(env(0))
	for range 8 { // the length prefixes grow with pad: converge on n
		if d := n - len(env(pad)); d != 0 {
			pad += d
		}
	}
	for p := pad; p > pad-8 && p >= 0; p-- {
		if e := env(p); len(e) == n {
			return e
		}
	}
	t.Fatalf("no envelope of %d bytes", n)
	return nil
}

// TestDefectMailboxBytesLimit: the mailbox is bounded in bytes, exactly. An
// envelope costs its frame buffer (gws reads a frame of n bytes into a
// pooled buffer of the next power of two at or above n+9, pinned in
// internal/transport) plus 256 bytes. With frames of 1,015 bytes each costs
// 1,024 + 256 = 1,280: WithMailboxBytes(3 × 1,280) holds three while the
// handler is busy (at the limit) and the read loop goes on reading (a ping
// is answered); WithMailboxBytes(3 × 1,280 − 1) holds two and the third
// stops the read loop (the ping is answered only once the handler is
// released). The old core had no byte bound at all.
func TestDefectMailboxBytesLimit(t *testing.T) {
	t.Parallel()
	const cost = 1024 + 256
	env := dfEnvelopeOfSize(t, 1015)
	frame := nettest.Frame(nettest.Fin|nettest.OpBinary, env)
	for _, tc := range []struct {
		name    string
		limit   int
		reading bool
	}{
		{"at the limit", 3 * cost, true},
		{"one byte over", 3*cost - 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := nettest.NewRecorder()
			srv := nettest.StartServer(t, rec.ServerOptions(netmsg.WithMailboxBytes(tc.limit), netmsg.WithHeartbeat(0, 0))...)
			gate, release := nettest.Releaser(t)
			started := make(chan struct{}, 16)
			var handled atomic.Int32
			netmsg.AddMessageHandler(srv, func(_ context.Context, _ *netmsg.Session, _ dfBlob) {
				started <- struct{}{}
				<-gate
				handled.Add(1)
			})
			p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
			rec.NextOpen(t)

			p.WriteRaw(t, frame) // taken by the handler, which holds it
			nettest.Recv(t, started, "the first handler to start")
			p.WriteRaw(t, bytes.Repeat(frame, 3)) // three wait in the mailbox
			p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpPing, []byte("after")))
			rd := p.StartReading(0)
			if tc.reading {
				require.Eventually(t, func() bool { return rd.Pongs.Load() == 1 }, nettest.Wait, time.Millisecond,
					"the read loop stopped although the mailbox is at, not over, its limit")
			} else {
				time.Sleep(300 * time.Millisecond)
				require.Zero(t, rd.Pongs.Load(), "the read loop went on reading past the mailbox's byte limit")
			}
			release()
			require.Eventually(t, func() bool { return rd.Pongs.Load() == 1 && handled.Load() == 4 }, nettest.Wait, time.Millisecond,
				"after the release: pongs %d, handled %d of 4", rd.Pongs.Load(), handled.Load())
		})
	}
}

// TestDefectMailboxBytesCompressed: with permessage-deflate, a peer sends
// 64 messages of almost 1 MiB each (1 KiB each on the wire) while the
// session's handler is busy. The old core's mailbox was bounded in count
// only (256): it queued every inflated envelope, 2 MiB of buffer each (~130
// MiB here, ~520 MiB for 256). Now the mailbox stops reading at
// WithMailboxBytes (4 MiB by default) and nothing is lost: all 64 reach the
// session's dispatcher once the handler is free. They are of a type without
// handler (reported to OnUnhandled), so that the test spends its time on
// what is measured rather than on decoding JSON; 64 rather than 256 because
// gws allocates ~9 MiB to inflate each, which takes over a minute for 256
// under -race on a shared machine.
func TestDefectMailboxBytesCompressed(t *testing.T) {
	const (
		n         = 64
		heapBound = 48 << 20 // the mailbox bound is 4 MiB; old core: ~130 MiB
	)
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions(netmsg.WithCompression(true))...)
	gate, release := nettest.Releaser(t)
	started := make(chan struct{}, 1)
	netmsg.AddMessageHandler(srv, func(_ context.Context, _ *netmsg.Session, _ dfBlob) {
		started <- struct{}{}
		<-gate
	})
	bulk := strings.Repeat("x", 1<<20-64)
	env := wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, "netmsg.test.Bulk", []byte(`"`+bulk+`"`), 0, nil)
	frame := nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, hdDeflate(t, env))
	t.Logf("each message: %d bytes inflated, %d on the wire", len(env), len(frame))

	hdr := http.Header{}
	hdr.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover; server_no_context_takeover")
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{Header: hdr})
	require.Contains(t, p.Resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	rec.NextOpen(t)
	p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpBinary, nettest.Envelope(wire.KindMessage, 0, netmsg.TypeName(dfBlob{}), `{"S":"busy"}`)))
	nettest.Recv(t, started, "the handler to be busy")

	m := nettest.Measure(t, fmt.Sprintf("%d compressed messages of 1 MiB to a busy session", n))
	writeErr := make(chan error, 1)
	go func() { writeErr <- p.WriteBy(bytes.Repeat(frame, n), time.Now().Add(time.Minute)) }()
	time.Sleep(time.Second) // the read loop fills the mailbox and stops
	held := m.Stop()
	assert.Less(t, held.HeapPeak, uint64(heapBound), "heap held for one session's mailbox")

	m = nettest.Measure(t, "dispatching all of them once released")
	release()
	require.NoError(t, nettest.Recv(t, writeErr, "the peer's writes to go through"))
	for i := range n {
		select {
		case typ := <-rec.Unhandled:
			require.Equal(t, "netmsg.test.Bulk", typ)
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d messages reached the dispatcher", i, n)
		}
	}
	drained := m.Stop()
	assert.Less(t, drained.HeapPeak, uint64(heapBound), "heap while the mailbox drains")
	assert.Zero(t, srv.Stats().DroppedInbound)
}

// ---- defect 5: slow drip ----

// TestDefectSlowDrip: 200 connections each announce a 1 MiB frame and drip
// its bytes one every 500 ms. Any received byte counts as life, so on the old
// core they stayed open for ever, each holding the 1 MiB buffer gws had made
// for the frame. WithFrameTimeout closes each as CloseConnectionLost once its
// frame has taken longer than the bound, and the memory is released.
func TestDefectSlowDrip(t *testing.T) {
	const (
		conns        = 200
		frameTimeout = time.Second
		bound        = 15 * time.Second // frame timeout + a heartbeat tick, with a wide margin
	)
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions(
		netmsg.WithFrameTimeout(frameTimeout),
		netmsg.WithHeartbeat(250*time.Millisecond, 30*time.Second))...)
	peers := make([]*nettest.WSPeer, conns)
	for i := range peers {
		peers[i] = nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
		rec.NextOpen(t)
	}
	body := dfEnvelopeOfSize(t, 1<<20-64)
	frame := nettest.Frame(nettest.Fin|nettest.OpBinary, body)
	head := frame[:len(frame)-len(body)]

	m := nettest.Measure(t, fmt.Sprintf("%d connections dripping a declared 1 MiB frame", conns))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	readers := make([]*nettest.Reader, conns)
	for i, p := range peers {
		readers[i] = p.StartReading(0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.WriteBy(head, time.Now().Add(nettest.Wait)) == nil {
				_, _ = p.Drip(frame[len(head):], 500*time.Millisecond, stop)
			}
		}()
	}
	start := time.Now()
	var worst time.Duration
	for i, r := range readers {
		select {
		case <-r.Done():
			worst = max(worst, time.Since(start))
		case <-time.After(bound - time.Since(start)):
			close(stop)
			wg.Wait()
			t.Fatalf("connection %d still open %v after it began dripping (frame timeout %v)", i, bound, frameTimeout)
		}
	}
	close(stop)
	wg.Wait()
	var lost int
	for range conns {
		c := rec.NextClose(t)
		if c.Err.Reason == netmsg.CloseConnectionLost {
			lost++
		}
	}
	cost := m.Stop()
	t.Logf("all %d closed, the last %v after the drip began (frame timeout %v)", conns, worst.Round(time.Millisecond), frameTimeout)
	assert.Equal(t, conns, lost, "sessions closed as CloseConnectionLost")
	assert.Zero(t, srv.SessionCount())
	assert.Less(t, cost.HeapAfter, uint64(32<<20), "memory held after the dripping connections were closed")
}

// ---- defect 6: Send never waits on a socket ----

// dfState is a game state sent to every player every tick.
type dfState struct {
	Tick int
	Data string
}

// TestDefectSendToStuckPeer: a game loop sends each player a 64 KiB state at
// 20 Hz. One player's connection stops reading. On the old core Send wrote
// on the caller's goroutine and blocked the whole loop, every player, for
// the write timeout (10 s at the default). Now Send only queues: the loop
// keeps its pace, the other players get every state, and the stuck player is
// cut as a slow consumer when its queue is full (1 MiB here, so that it
// happens within the test's 3 s).
//
// Not parallel: it measures time.
func TestDefectSendToStuckPeer(t *testing.T) {
	const (
		ticks   = 60 // 3 s at 20 Hz
		players = 3
		bound   = netmsg.DefaultWriteTimeout / 4 // what a Send that waited would take, with a wide margin
	)
	rec := nettest.NewRecorder()
	small := func(c *net.TCPConn) { _ = c.SetWriteBuffer(64 << 10) }
	srv := nettest.StartServerOn(t, nettest.Listen{Tune: small}, rec.ServerOptions(netmsg.WithMaxQueuedBytes(1<<20))...)
	var got [players]atomic.Int32
	for i := range players {
		c := nettest.NewClient(t, srv.URL)
		netmsg.AddMessageHandler(c, func(_ context.Context, _ *netmsg.Session, _ dfState) { got[i].Add(1) })
		require.NoError(t, c.Connect(context.Background()))
		rec.NextOpen(t)
	}
	stuck := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{Tune: func(c *net.TCPConn) { _ = c.SetReadBuffer(4 << 10) }})
	stuckSession := rec.NextOpen(t)
	_ = stuck // never reads

	data := strings.Repeat("s", 64<<10)
	m := nettest.Measure(t, "a 20 Hz game loop with a player that stopped reading")
	var worst, worstTick time.Duration
	var failed int
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := range ticks {
		<-tick.C
		start := time.Now()
		for s := range srv.Sessions() {
			t0 := time.Now()
			if err := s.Send(context.Background(), dfState{Tick: i, Data: data}); err != nil {
				failed++
				require.Same(t, stuckSession, s, "Send failed for a player that reads: %v", err)
			}
			worst = max(worst, time.Since(t0))
		}
		worstTick = max(worstTick, time.Since(start))
	}
	cost := m.Stop()
	t.Logf("slowest Send %v, slowest tick %v; %d sends to the stuck player failed; stuck session: %v",
		worst, worstTick, failed, stuckSession.Err())
	assert.Less(t, worst, bound, "a Send waited on a socket")
	assert.Less(t, worstTick, bound, "a tick of the loop waited on a socket")
	for i := range players {
		require.Eventually(t, func() bool { return got[i].Load() == ticks }, nettest.Wait, time.Millisecond,
			"player %d got %d of %d states", i, got[i].Load(), ticks)
	}
	ce := rec.CloseOf(t, stuckSession).Err
	assert.Equal(t, netmsg.CloseSlowConsumer.String(), ce.Reason.String())
	assert.Less(t, cost.HeapPeak, uint64(64<<20), "heap growth: the stuck player's queue is bounded at 4 MiB")
}
