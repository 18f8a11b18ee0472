package transport_test

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteFramesNow: a non-blocking write to a peer that is not reading
// returns at once with what the socket did not take kept as a tail; the
// next write of any kind (a WriteFrames of no frames, and gws's own close
// frame) writes the tail first, so the peer reads every frame once, whole,
// in order, and the close frame after them.
func TestWriteFramesNow(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("non-blocking writes are implemented on Linux")
	}
	ev := newPinEvents()
	ps := servePins(t, transport.Options{}, ev)
	p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{Tune: func(c *net.TCPConn) { _ = c.SetReadBuffer(16 << 10) }})
	c := ps.next(t)
	require.True(t, c.CanWriteNow())

	var fs []transport.Frame
	var want [][]byte
	for i := range 256 {
		b := bytes.Repeat([]byte{byte(i)}, 100<<10+i)
		want = append(want, b)
		fs = append(fs, transport.Frame{Op: transport.OpBinary, B: b})
	}
	start := time.Now()
	pending, err := c.WriteFramesNow(fs[:128])
	took := time.Since(start)
	require.NoError(t, err)
	require.True(t, pending, "12.5 MiB went into a socket whose peer does not read")
	assert.Less(t, took, 2*time.Second, "a non-blocking write waited")
	t.Logf("first 128 frames: returned after %v with a tail", took)
	// A second non-blocking write while the tail is there: queued behind it.
	pending, err = c.WriteFramesNow(fs[128:])
	require.NoError(t, err)
	require.True(t, pending)
	require.True(t, c.PendingBytes() > 0)

	done := make(chan error, 1)
	go func() {
		err := c.WriteFrames(nil) // writes the tail, waiting for the socket
		if err == nil {
			err = c.WriteClose(1000, []byte("bye"))
		}
		done <- err
	}()
	_ = p.SetReadDeadline(time.Now().Add(nettest.Wait))
	for i, w := range want {
		b0, got, err := p.ReadFrame()
		require.NoError(t, err, "frame %d", i)
		require.Equal(t, byte(0x80|transport.OpBinary), b0, "frame %d", i)
		require.True(t, bytes.Equal(w, got), "frame %d differs", i)
	}
	b0, payload, err := p.ReadFrame()
	require.NoError(t, err)
	assert.Equal(t, byte(0x80|transport.OpClose), b0, "the close frame comes after the tail")
	code, text := closeOf(payload)
	assert.Equal(t, uint16(1000), code)
	assert.Equal(t, "bye", text)
	require.NoError(t, nettest.Recv(t, done, "the tail and the close frame to be written"))
	assert.False(t, c.PendingBytes() > 0)
}
