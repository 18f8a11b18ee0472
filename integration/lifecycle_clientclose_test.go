package integration_test

// Client.Close from every state returns within about a second, also when
// several goroutines call it at once, and leaves no goroutine behind (goleak
// in TestMain).

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lcCloseBound is "about a second", with room for a loaded machine. The
// timeouts that would otherwise hold Close up are all far longer (10 s dial
// timeout, 1 min backoff, an OnConnect that waits for its ctx forever).
const lcCloseBound = 3 * time.Second

// lcSilentListener accepts TCP connections and never answers.
func lcSilentListener(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), ch
}

// lcCloseConcurrently calls Close from n goroutines at once and checks that
// all of them return within the bound, and the client's final state.
func lcCloseConcurrently(t *testing.T, cli *netmsg.Client, n int) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	took := make(chan time.Duration, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			assert.NoError(t, cli.Close())
			took <- time.Since(t0)
		}()
	}
	t0 := time.Now()
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(nettest.Wait + lcCloseBound):
		t.Fatal("Close did not return")
	}
	close(took)
	for d := range took {
		assert.Less(t, d, lcCloseBound, "a Close call took %v", d)
	}
	t.Logf("%d concurrent Close calls done after %v", n, time.Since(t0))
	assert.Equal(t, netmsg.Closed, cli.State())
	select {
	case <-cli.Done():
	default:
		t.Error("Done not closed after Close")
	}
	assert.ErrorIs(t, cli.Err(), netmsg.ErrClosed)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	assert.ErrorIs(t, cli.Connect(ctx), netmsg.ErrClosed, "Connect after Close")
	_, err := netmsg.SendRequest(ctx, cli, lcEcho{})
	assert.ErrorIs(t, err, netmsg.ErrClosed, "SendRequest after Close")
}

func TestLifecycleClientCloseFromAnyState(t *testing.T) {
	t.Parallel()

	t.Run("never connected", func(t *testing.T) {
		t.Parallel()
		cli := netmsg.NewClient("ws://127.0.0.1:1/")
		lcCloseConcurrently(t, cli, 1)
	})

	t.Run("connecting: handshake never answered", func(t *testing.T) {
		t.Parallel()
		addr, accepted := lcSilentListener(t)
		cli := netmsg.NewClient("ws://"+addr+"/", netmsg.WithReconnect(backoff.NewConstantBackOff(20*time.Millisecond)))
		connectErr := make(chan error, 1)
		go func() { connectErr <- cli.Connect(context.Background()) }()
		select {
		case <-accepted:
		case <-time.After(nettest.Wait):
			t.Fatal("the client never dialled")
		}
		time.Sleep(50 * time.Millisecond) // well into the handshake
		assert.Equal(t, netmsg.Connecting, cli.State())
		lcCloseConcurrently(t, cli, 4)
		select {
		case err := <-connectErr:
			assert.Error(t, err)
		case <-time.After(nettest.Wait):
			t.Fatal("Connect did not return after Close")
		}
	})

	t.Run("connected", func(t *testing.T) {
		t.Parallel()
		srv := nettest.StartServer(t)
		cli := netmsg.NewClient(srv.URL, netmsg.WithReconnect(lcConstBackOff()))
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		lcCloseConcurrently(t, cli, 8)
		require.Eventually(t, func() bool { return srv.Server.SessionCount() == 0 }, nettest.Wait, time.Millisecond)
	})

	t.Run("backing off", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		rc := lcNewReconnecting()
		cli := netmsg.NewClient(srv.URL, netmsg.WithReconnect(backoff.NewConstantBackOff(time.Minute)), rc.Option(),
			netmsg.WithRequestTimeout(20*time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		require.NoError(t, rec.NextOpen(t).Close("go away for a while"))
		a := rc.Next(t)
		assert.Equal(t, time.Minute, a.Delay)
		waiting := lcGoRequest(t, context.Background(), cli, lcEcho{Text: "waiting"})
		lcAssertPending(t, waiting, 50*time.Millisecond)
		lcCloseConcurrently(t, cli, 4)
		r := lcAwait(t, waiting, nettest.Wait)
		assert.ErrorIs(t, r.Err, netmsg.ErrClosed, "a call waiting for the connection when Close was called")
		assert.Less(t, r.Took, 10*time.Second, "Close did not release the waiting call")
	})

	t.Run("inside OnConnect of the first connect", func(t *testing.T) {
		t.Parallel()
		srv := nettest.StartServer(t)
		conns := lcNewConnects(func(ctx context.Context, n int, s *netmsg.Session) error {
			<-ctx.Done() // waits until Close
			return ctx.Err()
		})
		cli := netmsg.NewClient(srv.URL, netmsg.WithReconnect(lcConstBackOff()), conns.Option())
		connectErr := make(chan error, 1)
		go func() { connectErr <- cli.Connect(context.Background()) }()
		conns.Next(t)
		lcCloseConcurrently(t, cli, 4)
		select {
		case err := <-connectErr:
			assert.Error(t, err)
		case <-time.After(nettest.Wait):
			t.Fatal("Connect did not return after Close")
		}
		require.Eventually(t, func() bool { return srv.Server.SessionCount() == 0 }, nettest.Wait, time.Millisecond)
	})

	t.Run("inside OnConnect of a reconnect", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		conns := lcNewConnects(func(ctx context.Context, n int, s *netmsg.Session) error {
			if n == 1 {
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		})
		cli := netmsg.NewClient(srv.URL, netmsg.WithReconnect(lcConstBackOff()), conns.Option())
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		conns.Next(t)
		require.NoError(t, rec.NextOpen(t).Close("reconnect please"))
		conns.Next(t)
		assert.Equal(t, netmsg.Connecting, cli.State())
		lcCloseConcurrently(t, cli, 4)
		require.Eventually(t, func() bool { return srv.Server.SessionCount() == 0 }, nettest.Wait, time.Millisecond)
	})

	t.Run("after the client stopped", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		cli := netmsg.NewClient(srv.URL, netmsg.WithReconnect(lcConstBackOff()))
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		require.NoError(t, rec.NextOpen(t).Kick("no"))
		select {
		case <-cli.Done():
		case <-time.After(nettest.Wait):
			t.Fatal("not stopped by the kick")
		}
		start := time.Now()
		require.NoError(t, cli.Close())
		assert.Less(t, time.Since(start), lcCloseBound)
		var ce *netmsg.CloseError
		assert.ErrorAs(t, cli.Err(), &ce, "Close keeps the reason the client stopped for")
	})
}

// TestLifecycleClientCloseFromCallbacks: giving up from inside the client's own
// event callbacks ("stop after N attempts" in OnReconnecting, "stop when the
// link drops" in OnDisconnect) is Close from the backing-off / disconnected
// state; it must return, not wait for the very goroutine it is called on.
func TestLifecycleClientCloseFromCallbacks(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"OnReconnecting", "OnDisconnect"} {
		t.Run(where, func(t *testing.T) {
			t.Parallel()
			rec := nettest.NewRecorder()
			srv := nettest.StartServer(t, rec.ServerOptions()...)
			var cli *netmsg.Client
			var once sync.Once
			closed := make(chan time.Duration, 1)
			closeOnce := func() {
				once.Do(func() {
					start := time.Now()
					assert.NoError(t, cli.Close())
					closed <- time.Since(start)
				})
			}
			opts := []netmsg.ClientOption{netmsg.WithReconnect(lcConstBackOff())}
			if where == "OnReconnecting" {
				opts = append(opts, netmsg.WithOnReconnecting(func(attempt int, _ time.Duration) {
					if attempt >= 3 {
						closeOnce()
					}
				}))
			} else {
				opts = append(opts, netmsg.WithOnDisconnect(func(*netmsg.CloseError) { closeOnce() }))
			}
			cli = netmsg.NewClient(srv.URL, opts...)
			t.Cleanup(func() { nettest.CloseWithin(t, cli, lcCloseBound) })
			ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
			defer cancel()
			require.NoError(t, cli.Connect(ctx))
			ss := rec.NextOpen(t)
			if where == "OnReconnecting" {
				require.NoError(t, srv.Stop(t, nettest.Wait)) // every attempt fails from now on
			} else {
				require.NoError(t, ss.Close("bye"))
			}
			select {
			case took := <-closed:
				assert.Less(t, took, lcCloseBound)
			case <-time.After(lcCloseBound):
				t.Fatalf("Close called from %s did not return (state %v)", where, cli.State())
			}
			select {
			case <-cli.Done():
			case <-time.After(nettest.Wait):
				t.Fatal("Done not closed")
			}
			assert.Equal(t, netmsg.Closed, cli.State())
		})
	}
}

// TestLifecycleClientCloseFromHandler: a client's message handler that decides
// to hang up ("the server told us to go away") calls Close; Close must return
// rather than wait for the handler it runs in, and the client is then done.
func TestLifecycleClientCloseFromHandler(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	cli := nettest.NewClient(t, srv.URL, netmsg.WithReconnect(lcConstBackOff()))
	closed := make(chan time.Duration, 1)
	netmsg.AddMessageHandler(cli, func(ctx context.Context, s *netmsg.Session, n lcNote) {
		start := time.Now()
		assert.NoError(t, cli.Close())
		closed <- time.Since(start)
	})
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	require.NoError(t, rec.NextOpen(t).Send(ctx, lcNote{Text: "go away"}))
	select {
	case d := <-closed:
		assert.Less(t, d, lcCloseBound)
	case <-time.After(lcCloseBound + nettest.Wait):
		t.Fatal("Close called from a message handler did not return")
	}
	select {
	case <-cli.Done():
	case <-time.After(nettest.Wait):
		t.Fatal("Done not closed after the handler returned")
	}
	assert.Equal(t, netmsg.Closed, cli.State())
}
