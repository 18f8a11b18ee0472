package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes every connection until the peer half-closes, then closes.
// It records how each connection's read ended.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	ended chan error // one per connection: the error that ended its read (nil for EOF)
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := &echoServer{ln: ln, ended: make(chan error, 16)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_, err := io.Copy(c, c)
				e.ended <- err
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		e.wg.Wait()
	})
	return e
}

func newRelay(t *testing.T, target string) *Relay {
	t.Helper()
	r, err := New(target)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

func dial(t *testing.T, r *Relay) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back, failing after timeout.
func roundTrip(t *testing.T, c net.Conn, msg string, timeout time.Duration) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(timeout)))
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, msg, string(buf))
	require.NoError(t, c.SetReadDeadline(time.Time{}))
}

func waitLink(t *testing.T, r *Relay, n int) *Link {
	t.Helper()
	require.Eventually(t, func() bool { return r.Accepted() >= n && r.Latest() != nil }, 5*time.Second, time.Millisecond)
	return r.Latest()
}

func TestForwardsBothWays(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	c := dial(t, r)
	for range 10 {
		roundTrip(t, c, "hello through the relay", 5*time.Second)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	go func() { _, _ = c.Write(big) }()
	got := make([]byte, len(big))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, big, got)
	assert.Equal(t, 1, r.Accepted())
	assert.Len(t, r.Links(), 1)
}

func TestHalfCloseIsForwarded(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	c := dial(t, r)
	_, err := c.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err := io.ReadAll(c) // the echo server answers, sees EOF and closes
	require.NoError(t, err)
	assert.Equal(t, "last words", string(got))
	select {
	case err := <-e.ended:
		assert.NoError(t, err, "the target should see a clean EOF")
	case <-time.After(5 * time.Second):
		t.Fatal("target never saw the half close")
	}
	l := r.Latest()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("link not closed after both directions ended")
	}
	require.Eventually(t, func() bool { return len(r.Links()) == 0 }, 5*time.Second, time.Millisecond)
}

func TestBlackholeHoldsAndResumeDelivers(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	c := dial(t, r)
	roundTrip(t, c, "before", 5*time.Second)
	l := waitLink(t, r, 1)

	l.Blackhole()
	_, err := c.Write([]byte("during"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	n, err := c.Read(make([]byte, 16))
	assert.Zero(t, n, "nothing may pass a blackholed link")
	var ne net.Error
	require.ErrorAs(t, err, &ne, "the socket must stay open (timeout, not EOF/reset)")
	assert.True(t, ne.Timeout())

	// A FIN is held too: the target sees nothing while the link is blackholed.
	require.NoError(t, c.CloseWrite())
	select {
	case err := <-e.ended:
		t.Fatalf("the target saw the end of the stream through a blackhole: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	l.Resume()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "during", string(got), "held bytes are delivered intact after Resume")
}

func TestRelayBlackholeAppliesToNewLinks(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	r.Blackhole()
	c := dial(t, r)
	_, err := c.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
	r.Resume()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))
}

func TestDelay(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	c := dial(t, r)
	roundTrip(t, c, "warm", 5*time.Second)
	l := waitLink(t, r, 1)
	l.Delay(150 * time.Millisecond)
	start := time.Now()
	roundTrip(t, c, "slow", 10*time.Second)
	// Delayed on the way there and on the way back.
	assert.GreaterOrEqual(t, time.Since(start), 280*time.Millisecond)
	l.Delay(0)
	roundTrip(t, c, "fast again", 5*time.Second)
}

func TestResetSendsRSTBothWays(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	c := dial(t, r)
	roundTrip(t, c, "hi", 5*time.Second)
	l := waitLink(t, r, 1)
	l.Reset()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, syscall.ECONNRESET), "client side: want ECONNRESET, got %v", err)
	select {
	case err := <-e.ended:
		assert.True(t, errors.Is(err, syscall.ECONNRESET), "target side: want ECONNRESET, got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("target never saw the reset")
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after Reset")
	}
	// The relay keeps accepting after a reset.
	c2 := dial(t, r)
	roundTrip(t, c2, "again", 5*time.Second)
}

func TestCloseAllSendsFIN(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r := newRelay(t, e.ln.Addr().String())
	c1, c2 := dial(t, r), dial(t, r)
	roundTrip(t, c1, "a", 5*time.Second)
	roundTrip(t, c2, "b", 5*time.Second)
	require.Len(t, r.Links(), 2)
	r.CloseAll()
	for _, c := range []net.Conn{c1, c2} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err := c.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF)
	}
	assert.Empty(t, r.Links())
}

func TestTargetDownClosesClient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	r := newRelay(t, dead)
	c := dial(t, r)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)

	// SetTarget redirects new links.
	e := startEcho(t)
	r.SetTarget(e.ln.Addr().String())
	c2 := dial(t, r)
	roundTrip(t, c2, "redirected", 5*time.Second)
}

func TestCloseWaitsForEverything(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	r, err := New(e.ln.Addr().String())
	require.NoError(t, err)
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", r.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
		roundTrip(t, c, "x", 5*time.Second)
	}
	r.Latest().Blackhole()        // a pipe parked in a blackhole
	r.Links()[0].Delay(time.Hour) // a pipe parked in a delay
	_, _ = conns[0].Write([]byte("parked"))
	_, _ = conns[4].Write([]byte("parked"))
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err := io.ReadAll(c)
		// EOF, or a reset when "parked" was still unread in the relay's socket.
		if err != nil {
			assert.ErrorIs(t, err, syscall.ECONNRESET, "closed links end, they do not hang")
		}
		_ = c.Close()
	}
	_, err = net.DialTimeout("tcp", r.Addr(), time.Second)
	assert.Error(t, err, "a closed relay accepts nothing")
	assert.NoError(t, r.Close(), "Close is idempotent")
}
