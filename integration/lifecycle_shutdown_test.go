package integration_test

// Server.Shutdown: drain (503 for new upgrades, CodeUnavailable for new
// requests, running handlers finish and their responses arrive), then 1001
// with a reconnect hint; a ctx that ends first closes the rest at once; and
// Shutdown returns only once the server's goroutines have exited.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lcGate is answered once the test releases it; the handler ignores ctx.
type lcGate struct {
	netmsg.Returns[lcEchoReply]
	Text string
}

func lcAddGate(r netmsg.Registrar, started chan<- string, release <-chan struct{}) {
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req lcGate) (lcEchoReply, error) {
		started <- req.Text
		<-release
		return lcEchoReply{Text: req.Text + " done"}, nil
	})
}

func TestLifecycleShutdownDrains(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	// Mounted on a mux of our own (httptest) so the listener stays open and
	// the 503 for new upgrades can be seen.
	srv := netmsg.NewServer(append(rec.ServerOptions(), netmsg.WithSessionConcurrency(4))...)
	hs := httptest.NewServer(srv)
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	shutdownDone := make(chan error, 1)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // waits for the first call
		hs.Close()
	})
	started := make(chan string, 4)
	release, releaseGate := nettest.Releaser(t)
	lcAddGate(srv, started, release)
	lcEchoHandler(srv, "")

	cli := nettest.Connect(t, url, append(rec.ClientOptions(), netmsg.WithRequestTimeout(30*time.Second))...)
	ss := rec.NextOpen(t)
	inflight := lcGoRequest(t, context.Background(), cli, lcGate{Text: "in flight"})
	select {
	case <-started:
	case <-time.After(nettest.Wait):
		t.Fatal("handler did not start")
	}

	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shutdownDone <- srv.Shutdown(ctx)
	}()

	// New requests are refused with CodeUnavailable once draining began.
	var refused error
	for deadline := time.Now().Add(nettest.Wait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "late"}); err != nil {
			refused = err
			break
		}
	}
	require.Error(t, refused, "requests were never refused during the drain")
	var e *netmsg.Error
	require.ErrorAs(t, refused, &e, "a new request during the drain: %v", refused)
	assert.Equal(t, netmsg.CodeUnavailable, e.Code)
	assert.Equal(t, netmsg.CodeUnavailable, netmsg.CodeOf(refused))

	// New upgrades get 503.
	late := nettest.NewClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	err := late.Connect(ctx)
	var he *netmsg.HandshakeError
	require.ErrorAs(t, err, &he, "connecting during the drain: %v", err)
	assert.Equal(t, 503, he.Status)

	// The running handler holds the drain open.
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned while a handler was running: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	assert.Nil(t, ss.Err(), "the session was closed while a handler was running")

	releaseGate()
	r := lcAwait(t, inflight, nettest.Wait)
	require.NoError(t, r.Err, "the in-flight request's response must be delivered")
	assert.Equal(t, "in flight done", r.Reply.Text)

	ce := rec.NextDisconnect(t)
	nettest.AssertClose(t, ce, netmsg.CloseServerShutdown, 1001, true)
	assert.Greater(t, ce.ReconnectAfter(), time.Duration(0), "reconnect hint in %q", ce.Text)
	assert.True(t, ce.ShouldReconnect())
	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.CloseServerShutdown, 1001, false)

	select {
	case err := <-shutdownDone:
		assert.NoError(t, err)
	case <-time.After(nettest.Wait):
		t.Fatal("Shutdown did not return after the drain")
	}
	assert.Zero(t, srv.SessionCount())
	lcSettle()
	assert.Equal(t, 1, rec.Disconnects())
	rec.AssertClosedOnce(t)
}

// TestLifecycleShutdownCtxEnds: a handler that never finishes by itself; the
// drain gives up when ctx ends and closes everything at once, and Shutdown
// still waits for the handler to return.
func TestLifecycleShutdownCtxEnds(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	var exited atomic.Bool
	started := make(chan struct{}, 1)
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req lcHold) (lcEchoReply, error) {
		started <- struct{}{}
		<-ctx.Done()
		time.Sleep(300 * time.Millisecond) // cleanup after the cancel
		exited.Store(true)
		return lcEchoReply{}, ctx.Err()
	})
	cli := nettest.Connect(t, srv.URL, append(rec.ClientOptions(), netmsg.WithRequestTimeout(30*time.Second))...)
	pending := lcGoRequest(t, context.Background(), cli, lcHold{Key: "forever"})
	select {
	case <-started:
	case <-time.After(nettest.Wait):
		t.Fatal("handler did not start")
	}

	start := time.Now()
	err := srv.Stop(t, 300*time.Millisecond)
	took := time.Since(start)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Shutdown's ctx ended first")
	assert.GreaterOrEqual(t, took, 250*time.Millisecond, "Shutdown gave up before its ctx ended")
	assert.Less(t, took, nettest.Wait)
	assert.True(t, exited.Load(), "Shutdown returned before the handler it started had exited")

	r := lcAwait(t, pending, nettest.Wait)
	require.Error(t, r.Err)
	nettest.CloseErrorOf(t, r.Err)
	assert.Less(t, r.Took, 10*time.Second, "the pending call waited for its timeout")

	sc := rec.NextClose(t)
	assert.Equal(t, netmsg.CloseServerShutdown.String(), sc.Err.Reason.String(), "%v", sc.Err)
	assert.False(t, sc.Err.Remote)
	rec.NextDisconnect(t)
	lcSettle()
	assert.Equal(t, 1, rec.Disconnects())
	rec.AssertClosedOnce(t)
}

// TestLifecycleShutdownMany closes many idle sessions of several clients with
// 1001 and a hint, and a second Shutdown waits for the first.
func TestLifecycleShutdownMany(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	const n = 10
	for range n {
		nettest.Connect(t, srv.URL, rec.ClientOptions()...)
	}
	require.Eventually(t, func() bool { return srv.Server.SessionCount() == n }, nettest.Wait, time.Millisecond)

	second := make(chan error, 1)
	go func() {
		time.Sleep(time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		second <- srv.Server.Shutdown(ctx)
	}()
	require.NoError(t, srv.Stop(t, 10*time.Second))
	assert.NoError(t, <-second)
	assert.Zero(t, srv.Server.SessionCount())
	for range n {
		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseServerShutdown, 1001, true)
		assert.Greater(t, ce.ReconnectAfter(), time.Duration(0))
	}
	lcSettle()
	assert.Equal(t, n, rec.Disconnects())
	rec.AssertClosedOnce(t)

	// After Shutdown nothing is accepted.
	late := nettest.NewClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	err := late.Connect(ctx)
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.DeadlineExceeded), "connecting to a shut-down server should fail at once: %v", err)
}

// TestLifecycleShutdownWaitsForHandshakes: a handshake is in progress (its
// Authorize is running on a goroutine of the http.Server that Serve started)
// when Shutdown is called. Shutdown refuses it and returns only once that
// goroutine is done with the server's code, so nothing of the server runs
// after Shutdown returned.
func TestLifecycleShutdownWaitsForHandshakes(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	var returned atomic.Bool
	srv := nettest.StartServer(t, netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
		if r.Header.Get("X-Slow") != "" {
			entered <- struct{}{}
			time.Sleep(700 * time.Millisecond) // a slow token check
			defer returned.Store(true)
		}
		return nil, nil
	}))
	cli := nettest.NewClient(t, srv.URL, netmsg.WithHeader(http.Header{"X-Slow": {"1"}}))
	connectErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		connectErr <- cli.Connect(ctx)
	}()
	select {
	case <-entered:
	case <-time.After(nettest.Wait):
		t.Fatal("the handshake did not reach Authorize")
	}

	require.NoError(t, srv.Stop(t, 10*time.Second))
	assert.True(t, returned.Load(), "Shutdown returned while a handshake was still running the server's Authorize")
	select {
	case err := <-connectErr:
		assert.Error(t, err, "a handshake that was in progress when Shutdown began must not succeed")
	case <-time.After(nettest.Wait):
		t.Fatal("Connect did not return")
	}
	assert.Zero(t, srv.Server.SessionCount())
}

// TestLifecycleShutdownHandlerCallsBack: a handler running when the drain
// begins needs a round trip to its client (a request the server sends); the
// drain must let that round trip complete rather than refuse or close it.
func TestLifecycleShutdownHandlerCallsBack(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	started := make(chan struct{}, 1)
	release, releaseGate := nettest.Releaser(t)
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req lcGate) (lcEchoReply, error) {
		started <- struct{}{}
		<-release
		r, err := netmsg.SendRequest(ctx, s, lcEcho{Text: "from the server"})
		if err != nil {
			return lcEchoReply{}, err
		}
		return lcEchoReply{Text: "client said: " + r.Text}, nil
	})
	cli := nettest.NewClient(t, srv.URL, netmsg.WithRequestTimeout(20*time.Second))
	lcEchoHandler(cli, "")
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	call := lcGoRequest(t, context.Background(), cli, lcGate{Text: "x"})
	select {
	case <-started:
	case <-time.After(nettest.Wait):
		t.Fatal("handler did not start")
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Stop(t, 20*time.Second) }()
	time.Sleep(100 * time.Millisecond) // draining now
	releaseGate()

	r := lcAwait(t, call, nettest.Wait)
	require.NoError(t, r.Err)
	assert.Equal(t, "client said: from the server", r.Reply.Text)
	select {
	case err := <-shutdown:
		assert.NoError(t, err)
	case <-time.After(nettest.Wait):
		t.Fatal("Shutdown did not return")
	}
}
