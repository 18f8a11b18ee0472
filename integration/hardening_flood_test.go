package integration_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type hdSeq struct {
	N   int
	Pad string
}

// TestHardeningFlood: a peer writes 100,000 messages of 1 KiB as fast as it
// can while the handlers are held. The session runs at most
// SessionConcurrency handlers, holds at most MailboxSize envelopes, then
// stops reading: the writer stalls (TCP pushes back) and the server's heap
// stays within a small bound instead of growing by the ~100 MiB sent. Once
// released, every message is handled exactly once, never more than
// SessionConcurrency at once. Not parallel: it measures the heap.
func TestHardeningFlood(t *testing.T) {
	const (
		total       = 100_000
		mailbox     = 64
		concurrency = 4
		padding     = 1 << 10
		heapBound   = 32 << 20 // vs ~100 MiB sent; the configured bound is ~mailbox × 1 KiB
	)
	srv := hdStartServer(t, netmsg.WithMailboxSize(mailbox), netmsg.WithSessionConcurrency(concurrency))
	hdEchoHandler(srv.Server)

	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	var (
		mu         sync.Mutex
		running    int
		maxRunning int
		handled    int
		seen       = make([]uint8, total)
		bad        int // messages handled twice or out of range
	)
	netmsg.AddMessageHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, m hdSeq) {
		mu.Lock()
		running++
		maxRunning = max(maxRunning, running)
		if m.N < 0 || m.N >= total || seen[m.N] != 0 {
			bad++
		} else {
			seen[m.N] = 1
		}
		mu.Unlock()
		<-gate
		mu.Lock()
		running--
		handled++
		mu.Unlock()
	})
	snapshot := func() (run, maxRun, done, dup int) {
		mu.Lock()
		defer mu.Unlock()
		return running, maxRunning, handled, bad
	}

	by := hdNewBystander(t, srv)
	p := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	srv.NextOpen(t)

	before := nettest.MemStats()
	heap := nettest.SampleHeap()
	var sent atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		name := netmsg.TypeName(hdSeq{})
		pad := strings.Repeat("p", padding)
		var payload, env []byte
		for i := range total {
			payload = append(payload[:0], `{"N":`...)
			payload = strconv.AppendInt(payload, int64(i), 10)
			payload = append(append(append(payload, `,"Pad":"`...), pad...), `"}`...)
			env = wire.AppendHeaderAndPayload(env[:0], wire.KindMessage, 0, name, payload, 0, nil)
			if err := p.Conn.WriteMessage(gws.OpcodeBinary, env); err != nil {
				writerDone <- err
				return
			}
			sent.Add(1)
		}
		writerDone <- nil
	}()

	// Wait until the writer stalls: nothing more goes through for 500 ms.
	last, stalledSince := int64(-1), time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := sent.Load(); n != last {
			last, stalledSince = n, time.Now()
		} else if time.Since(stalledSince) > 500*time.Millisecond {
			break
		}
	}
	stalledAt := sent.Load()
	heldPeak := heap.Stop()
	run, maxRun, done, _ := snapshot()
	t.Logf("held: writer stalled after %d of %d messages (%s); %d handlers running (max %d), %d done; heap peak %s above the start",
		stalledAt, total, nettest.MiB(uint64(stalledAt)*padding), run, maxRun, done, nettest.MiB(heldPeak-min(heldPeak, before.HeapInuse)))
	require.Less(t, stalledAt, int64(total), "the writer was never pushed back: the server read everything")
	assert.Equal(t, concurrency, run, "handlers running while held")
	assert.Zero(t, done)
	assert.Less(t, heldPeak-min(heldPeak, before.HeapInuse), uint64(heapBound), "heap growth while the flood is held")

	// The bystander is not affected by its neighbour's full mailbox.
	by.AssertFine(t)

	// Release: everything is handled, in order, within the bounds.
	heap = nettest.SampleHeap()
	open()
	select {
	case err := <-writerDone:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("the writer did not finish within 60 s after the release (sent %d)", sent.Load())
	}
	require.Eventually(t, func() bool { _, _, done, _ := snapshot(); return done == total },
		60*time.Second, 10*time.Millisecond, "handled %d of %d", done, total)
	peak := heap.Stop()
	_, maxRun, _, dup := snapshot()
	assert.LessOrEqual(t, maxRun, concurrency, "handlers running at once")
	assert.Zero(t, dup, "messages handled twice")
	assert.Less(t, peak-min(peak, before.HeapInuse), uint64(heapBound), "heap growth while the flood drains")
	t.Logf("drained: %d handled, max %d at once, heap peak %s above the start", total, maxRun, nettest.MiB(peak-min(peak, before.HeapInuse)))
	by.AssertFine(t)
}
