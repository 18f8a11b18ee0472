package integration_test

// Client reconnect: backoff (DefaultBackOff, reset after a stable connection),
// OnReconnecting, OnConnect gating readiness and retrying when it fails,
// handshake refusals that stop it, wait-for-ready, fail-fast, and pending
// calls that fail rather than being resent.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lcConnects records OnConnect calls by session ID.
type lcConnects struct {
	mu    sync.Mutex
	ids   []string
	calls chan *netmsg.Session
	hook  func(ctx context.Context, n int, s *netmsg.Session) error // n counts from 1
}

func lcNewConnects(hook func(ctx context.Context, n int, s *netmsg.Session) error) *lcConnects {
	return &lcConnects{calls: make(chan *netmsg.Session, 4096), hook: hook}
}

func (c *lcConnects) Option() netmsg.ClientOption {
	return netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
		c.mu.Lock()
		c.ids = append(c.ids, s.ID())
		n := len(c.ids)
		c.mu.Unlock()
		c.calls <- s
		if c.hook != nil {
			return c.hook(ctx, n, s)
		}
		return nil
	})
}

func (c *lcConnects) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func (c *lcConnects) Next(t testing.TB) *netmsg.Session {
	t.Helper()
	select {
	case s := <-c.calls:
		return s
	case <-time.After(nettest.Wait):
		t.Fatal("OnConnect was not called")
		return nil
	}
}

// AssertDistinct checks that no session got OnConnect twice.
func (c *lcConnects) AssertDistinct(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]int, len(c.ids))
	for _, id := range c.ids {
		seen[id]++
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "OnConnect calls for session %s", id)
	}
}

type lcAttempt struct {
	N     int
	Delay time.Duration
}

// lcReconnecting records OnReconnecting calls.
type lcReconnecting struct {
	mu   sync.Mutex
	list []lcAttempt
	ch   chan lcAttempt
}

func lcNewReconnecting() *lcReconnecting { return &lcReconnecting{ch: make(chan lcAttempt, 4096)} }

func (r *lcReconnecting) Option() netmsg.ClientOption {
	return netmsg.WithOnReconnecting(func(attempt int, delay time.Duration) {
		r.mu.Lock()
		r.list = append(r.list, lcAttempt{attempt, delay})
		r.mu.Unlock()
		r.ch <- lcAttempt{attempt, delay}
	})
}

func (r *lcReconnecting) List() []lcAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]lcAttempt(nil), r.list...)
}

func (r *lcReconnecting) Next(t testing.TB) lcAttempt {
	t.Helper()
	select {
	case a := <-r.ch:
		return a
	case <-time.After(nettest.Wait):
		t.Fatal("OnReconnecting was not called")
		return lcAttempt{}
	}
}

func lcConstBackOff() backoff.BackOff { return backoff.NewConstantBackOff(20 * time.Millisecond) }

// lcDeadAddr returns a loopback address nothing listens on.
func lcDeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestLifecycleReconnectAfterLinkFailure(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	lcEchoHandler(srv.Server, "")
	relay := lcRelay(t, srv.Addr)
	conns := lcNewConnects(nil)
	rc := lcNewReconnecting()
	cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(),
		netmsg.WithReconnect(lcConstBackOff()), conns.Option(), rc.Option())...)
	first := conns.Next(t)
	assert.Same(t, first, cli.Session())
	assert.Equal(t, netmsg.Connected, cli.State())

	relay.Latest().Reset()

	ce := rec.NextDisconnect(t)
	assert.Equal(t, netmsg.CloseNetworkError.String(), ce.Reason.String())
	a := rc.Next(t)
	assert.Equal(t, lcAttempt{1, 20 * time.Millisecond}, a)
	second := conns.Next(t)
	assert.NotEqual(t, first.ID(), second.ID())
	nettest.WaitState(t, cli, netmsg.Connected)
	assert.Same(t, second, cli.Session())
	r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "back"})
	require.NoError(t, err)
	assert.Equal(t, "back", r.Text)
	assert.Nil(t, cli.Err(), "Err before the client stopped")
	select {
	case <-cli.Done():
		t.Fatal("Done closed while reconnecting")
	default:
	}
	lcSettle()
	assert.Equal(t, 2, conns.Count())
	assert.Equal(t, 1, rec.Disconnects())
	conns.AssertDistinct(t)
}

func TestLifecycleDefaultBackOff(t *testing.T) {
	t.Parallel()
	b := netmsg.DefaultBackOff()
	eb, ok := b.(*backoff.ExponentialBackOff)
	require.True(t, ok, "DefaultBackOff is %T", b)
	assert.Equal(t, 500*time.Millisecond, eb.InitialInterval)
	assert.InDelta(t, 1.6, eb.Multiplier, 1e-9)
	assert.InDelta(t, 0.5, eb.RandomizationFactor, 1e-9)
	assert.Equal(t, 30*time.Second, eb.MaxInterval)
	assert.Zero(t, eb.MaxElapsedTime, "never gives up")

	// Each call returns a fresh policy.
	assert.NotSame(t, b, netmsg.DefaultBackOff())

	// First delays jitter ±50 % around 500 ms.
	var lo, hi time.Duration = time.Hour, 0
	for range 200 {
		b := netmsg.DefaultBackOff()
		d := b.NextBackOff()
		lo, hi = min(lo, d), max(hi, d)
		require.GreaterOrEqual(t, d, 250*time.Millisecond)
		require.LessOrEqual(t, d, 750*time.Millisecond)
	}
	assert.Less(t, hi-lo, 500*time.Millisecond+time.Nanosecond)
	assert.Greater(t, hi-lo, 100*time.Millisecond, "no jitter: all first delays in [%v, %v]", lo, hi)

	// It grows by 1.6, caps at 30 s (±50 %), and never stops.
	b = netmsg.DefaultBackOff()
	var last time.Duration
	for i := range 100 {
		last = b.NextBackOff()
		require.NotEqual(t, backoff.Stop, last, "gave up after %d attempts", i)
		require.LessOrEqual(t, last, 45*time.Second)
	}
	assert.GreaterOrEqual(t, last, 15*time.Second, "capped delays stay around 30 s")
	b.Reset()
	assert.LessOrEqual(t, b.NextBackOff(), 750*time.Millisecond, "Reset starts over")
}

// lcStepBackOff returns step, 2·step, 3·step ... and starts over on Reset.
type lcStepBackOff struct {
	step   time.Duration
	mu     sync.Mutex
	n      int
	resets int
}

func (b *lcStepBackOff) NextBackOff() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return time.Duration(b.n) * b.step
}

func (b *lcStepBackOff) Reset() {
	b.mu.Lock()
	b.n = 0
	b.resets++
	b.mu.Unlock()
}

// TestLifecycleBackoffResetAfterStableConnection: connections that drop at
// once keep backing off further; one that stayed up starts over.
func TestLifecycleBackoffResetAfterStableConnection(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	relay := lcRelay(t, srv.Addr)
	conns := lcNewConnects(nil)
	rc := lcNewReconnecting()
	b := &lcStepBackOff{step: 20 * time.Millisecond}
	cli := nettest.Connect(t, lcRelayURL(relay), netmsg.WithReconnect(b), conns.Option(), rc.Option())
	conns.Next(t)

	// Three connections that die at once: the delay keeps growing.
	var firsts []time.Duration
	for range 3 {
		nettest.WaitState(t, cli, netmsg.Connected)
		relay.Latest().Reset()
		a := rc.Next(t)
		require.Equal(t, 1, a.N)
		firsts = append(firsts, a.Delay)
		conns.Next(t)
	}
	for i := 1; i < len(firsts); i++ {
		assert.Greater(t, firsts[i], firsts[i-1], "backoff started over after a connection that dropped at once: %v", firsts)
	}

	// One that stays up for a while: the next outage starts from the first step.
	nettest.WaitState(t, cli, netmsg.Connected)
	time.Sleep(6500 * time.Millisecond)
	relay.Latest().Reset()
	a := rc.Next(t)
	assert.Equal(t, lcAttempt{1, 20 * time.Millisecond}, a, "backoff not reset after a stable connection (earlier: %v)", firsts)
	conns.Next(t)
}

// TestLifecycleReconnectHandshakeRefused: 401 and 403 stop reconnecting with a
// clear final error; 503 is retried.
func TestLifecycleReconnectHandshakeRefused(t *testing.T) {
	t.Parallel()
	for _, status := range []int{401, 403, 503} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			rec := nettest.NewRecorder()
			var refuse atomic.Int32
			var authCalls atomic.Int32
			srv := nettest.StartServer(t, append(rec.ServerOptions(),
				netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
					authCalls.Add(1)
					switch refuse.Load() {
					case 0:
						return nil, nil
					case 401:
						return nil, errors.New("token expired")
					default:
						return nil, &netmsg.HTTPError{Status: int(refuse.Load()), Message: "refused for the test"}
					}
				}))...)
			lcEchoHandler(srv.Server, "")
			conns := lcNewConnects(nil)
			rc := lcNewReconnecting()
			cli := nettest.Connect(t, srv.URL, append(rec.ClientOptions(), netmsg.WithRequestTimeout(20*time.Second),
				netmsg.WithReconnect(lcConstBackOff()), conns.Option(), rc.Option())...)
			conns.Next(t)
			ss := rec.NextOpen(t)

			refuse.Store(int32(status))
			require.NoError(t, ss.Close("log in again"))
			rec.NextDisconnect(t)
			// A call waiting for the reconnect (RequestTimeout: 20 s).
			waiting := lcGoRequest(t, context.Background(), cli, lcEcho{Text: "waiting"})

			if status == 503 {
				for {
					if a := rc.Next(t); a.N >= 3 {
						break
					}
				}
				select {
				case <-cli.Done():
					t.Fatalf("stopped on a 503: %v", cli.Err())
				default:
				}
				refuse.Store(0)
				conns.Next(t)
				nettest.WaitState(t, cli, netmsg.Connected)
				r := lcAwait(t, waiting, nettest.Wait)
				require.NoError(t, r.Err, "the call that waited through the 503s")
				assert.Equal(t, "waiting", r.Reply.Text)
				return
			}

			select {
			case <-cli.Done():
			case <-time.After(nettest.Wait):
				t.Fatalf("a %d during reconnect did not stop the client", status)
			}
			err := cli.Err()
			var he *netmsg.HandshakeError
			require.ErrorAs(t, err, &he, "Client.Err: %v", err)
			assert.Equal(t, status, he.Status)
			assert.Contains(t, err.Error(), strconv.Itoa(status), "the final error names the status")
			assert.Equal(t, netmsg.Closed, cli.State())
			_, err = netmsg.SendRequest(context.Background(), cli, lcEcho{})
			assert.ErrorIs(t, err, netmsg.ErrClosed)

			r := lcAwait(t, waiting, nettest.Wait)
			assert.ErrorIs(t, r.Err, netmsg.ErrClosed, "a call waiting for the reconnect when the client stopped")
			assert.Less(t, r.Took, 10*time.Second, "the waiting call was not released when the client stopped")

			calls := authCalls.Load()
			time.Sleep(300 * time.Millisecond)
			assert.Equal(t, calls, authCalls.Load(), "the client kept dialling after a %d", status)
			assert.Len(t, rc.List(), 1, "OnReconnecting calls")
			assert.Equal(t, 1, conns.Count())
		})
	}
}

// TestLifecycleConnectRefused: the first Connect reports a refusal as a
// *HandshakeError and starts nothing.
func TestLifecycleConnectRefused(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t, netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
		return nil, &netmsg.HTTPError{Status: 403, Message: "go away"}
	}))
	cli := nettest.NewClient(t, srv.URL, netmsg.WithReconnect(lcConstBackOff()))
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	err := cli.Connect(ctx)
	var he *netmsg.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, 403, he.Status)
	assert.Contains(t, he.Body, "go away")
	assert.NotEqual(t, netmsg.Connected, cli.State())
}

// TestLifecycleOnConnectGatesReadiness: OnConnect runs on every reconnect
// before the client counts as connected and before waiting calls go out, and
// may itself send requests.
func TestLifecycleOnConnectGatesReadiness(t *testing.T) {
	t.Parallel()
	var order []string
	var orderMu sync.Mutex
	srv := nettest.StartServer(t)
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req lcEcho) (lcEchoReply, error) {
		orderMu.Lock()
		order = append(order, req.Text)
		orderMu.Unlock()
		return lcEchoReply{Text: req.Text}, nil
	})
	relay := lcRelay(t, srv.Addr)
	inHook := make(chan struct{}, 1)
	release, releaseHook := nettest.Releaser(t)
	conns := lcNewConnects(func(ctx context.Context, n int, s *netmsg.Session) error {
		if n == 1 {
			return nil
		}
		r, err := netmsg.SendRequest(ctx, s, lcEcho{Text: "sign-in"})
		if err != nil || r.Text != "sign-in" {
			return errors.Join(errors.New("sign-in failed"), err)
		}
		inHook <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	cli := nettest.Connect(t, lcRelayURL(relay), netmsg.WithReconnect(lcConstBackOff()), conns.Option(),
		netmsg.WithRequestTimeout(20*time.Second))
	conns.Next(t)

	relay.Latest().Reset()
	select {
	case <-inHook:
	case <-time.After(nettest.Wait):
		t.Fatal("OnConnect did not run on reconnect")
	}
	assert.Equal(t, netmsg.Connecting, cli.State(), "connected before OnConnect returned")
	assert.Nil(t, cli.Session(), "a session is current before OnConnect returned")

	waiting := lcGoRequest(t, context.Background(), cli, lcEcho{Text: "call"})
	lcAssertPending(t, waiting, 300*time.Millisecond)
	orderMu.Lock()
	assert.Equal(t, []string{"sign-in"}, order, "a waiting call went out before OnConnect returned")
	orderMu.Unlock()

	releaseHook()
	r := lcAwait(t, waiting, nettest.Wait)
	require.NoError(t, r.Err)
	assert.Equal(t, "call", r.Reply.Text)
	assert.Equal(t, netmsg.Connected, cli.State())
	orderMu.Lock()
	assert.Equal(t, []string{"sign-in", "call"}, order)
	orderMu.Unlock()
	assert.Equal(t, 2, conns.Count())
}

// TestLifecycleOnConnectFailureRetries: a failing OnConnect drops that
// connection and the client tries again.
func TestLifecycleOnConnectFailureRetries(t *testing.T) {
	t.Parallel()

	t.Run("on reconnect", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		lcEchoHandler(srv.Server, "")
		relay := lcRelay(t, srv.Addr)
		conns := lcNewConnects(func(ctx context.Context, n int, s *netmsg.Session) error {
			if n == 2 || n == 3 {
				return errors.New("sign-in refused")
			}
			return nil
		})
		cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), netmsg.WithReconnect(lcConstBackOff()), conns.Option())...)
		conns.Next(t)
		rec.NextOpen(t)

		relay.Latest().Reset()
		rec.NextClose(t)
		var failed []*netmsg.Session
		for range 2 {
			failed = append(failed, conns.Next(t))
			sc := rec.NextClose(t) // the connection of the failed OnConnect is dropped
			assert.True(t, sc.Err.Remote, "the client dropped it: %v", sc.Err)
		}
		good := conns.Next(t)
		nettest.WaitState(t, cli, netmsg.Connected)
		assert.Same(t, good, cli.Session())
		for _, s := range failed {
			select {
			case <-s.Done():
			case <-time.After(nettest.Wait):
				t.Fatal("the session of a failed OnConnect stayed open")
			}
		}
		r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "ok"})
		require.NoError(t, err)
		assert.Equal(t, "ok", r.Text)
		assert.Equal(t, 4, conns.Count())
		assert.Equal(t, 4, len(rec.Opened()))
		assert.Equal(t, 1, srv.Server.SessionCount())
		conns.AssertDistinct(t)
	})

	t.Run("on first connect", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		refused := errors.New("sign-in refused")
		cli := nettest.NewClient(t, srv.URL, netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error { return refused }))
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		err := cli.Connect(ctx)
		assert.ErrorIs(t, err, refused)
		assert.NotEqual(t, netmsg.Connected, cli.State())
		assert.Nil(t, cli.Session())
		rec.NextClose(t) // the connection was dropped
	})
}

// lcOutage sets up a client behind a relay and then cuts the relay off from
// the server: every reconnect attempt fails until restore is called.
func lcOutage(t *testing.T, opts ...netmsg.ClientOption) (cli *netmsg.Client, restore func()) {
	t.Helper()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t)
	lcEchoHandler(srv.Server, "")
	relay := lcRelay(t, srv.Addr)
	cli = nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), opts...)...)
	relay.SetTarget(lcDeadAddr(t))
	relay.ResetAll()
	rec.NextDisconnect(t)
	return cli, func() { relay.SetTarget(srv.Addr) }
}

func TestLifecycleWaitForReady(t *testing.T) {
	t.Parallel()

	t.Run("waits until reconnected", func(t *testing.T) {
		t.Parallel()
		cli, restore := lcOutage(t, netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))
		req := lcGoRequest(t, context.Background(), cli, lcEcho{Text: "patient"})
		lcAssertPending(t, req, 300*time.Millisecond)
		restore()
		r := lcAwait(t, req, 10*time.Second)
		require.NoError(t, r.Err)
		assert.Equal(t, "patient", r.Reply.Text)
	})

	t.Run("waits for the first connection", func(t *testing.T) {
		t.Parallel()
		srv := nettest.StartServer(t)
		lcEchoHandler(srv.Server, "")
		relay := lcRelay(t, srv.Addr)
		relay.Delay(200 * time.Millisecond) // the handshake takes a while
		cli := nettest.NewClient(t, lcRelayURL(relay), netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))
		connected := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			connected <- cli.Connect(ctx)
		}()
		nettest.WaitState(t, cli, netmsg.Connecting)
		req := lcGoRequest(t, context.Background(), cli, lcEcho{Text: "early"})
		r := lcAwait(t, req, 10*time.Second)
		require.NoError(t, r.Err, "a call made while Connect was in progress")
		assert.Equal(t, "early", r.Reply.Text)
		require.NoError(t, <-connected)
	})

	t.Run("until ctx ends", func(t *testing.T) {
		t.Parallel()
		cli, _ := lcOutage(t, netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := netmsg.SendRequest(ctx, cli, lcEcho{})
		took := time.Since(start)
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.GreaterOrEqual(t, took, 250*time.Millisecond, "did not wait")
		assert.Less(t, took, nettest.Wait)

		ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel2()
		start = time.Now()
		err = cli.Send(ctx2, lcNote{})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "Send did not wait")
	})

	t.Run("until RequestTimeout ends", func(t *testing.T) {
		t.Parallel()
		cli, _ := lcOutage(t, netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(400*time.Millisecond))
		start := time.Now()
		_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{})
		took := time.Since(start)
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.GreaterOrEqual(t, took, 350*time.Millisecond, "did not wait")
		assert.Less(t, took, nettest.Wait)
		start = time.Now()
		err = cli.Send(context.Background(), lcNote{})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond, "Send did not wait")
	})

	t.Run("fail fast", func(t *testing.T) {
		t.Parallel()
		cli, _ := lcOutage(t, netmsg.WithReconnect(lcConstBackOff()), netmsg.WithFailFast())
		start := time.Now()
		_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		err = cli.Send(context.Background(), lcNote{})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		assert.Less(t, time.Since(start), 2*time.Second, "fail-fast calls waited (RequestTimeout is 10 s)")
	})

	t.Run("without reconnect", func(t *testing.T) {
		t.Parallel()
		cli, _ := lcOutage(t)
		start := time.Now()
		_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		err = cli.Send(context.Background(), lcNote{})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		assert.Less(t, time.Since(start), 2*time.Second, "calls without reconnect waited (RequestTimeout is 10 s)")
		assert.Equal(t, netmsg.Disconnected, cli.State())
	})
}

// TestLifecyclePendingCallsFailNotResent: a call pending when the link dies
// fails at once with the close, and is not sent again after the reconnect.
func TestLifecyclePendingCallsFailNotResent(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	hold := lcAddHold(srv.Server)
	lcEchoHandler(srv.Server, "")
	relay := lcRelay(t, srv.Addr)
	conns := lcNewConnects(nil)
	cli := nettest.Connect(t, lcRelayURL(relay), netmsg.WithReconnect(lcConstBackOff()), conns.Option(),
		netmsg.WithRequestTimeout(30*time.Second))
	conns.Next(t)
	pending := lcGoRequest(t, context.Background(), cli, lcHold{Key: "once"})
	select {
	case <-hold.started:
	case <-time.After(nettest.Wait):
		t.Fatal("handler did not start")
	}

	relay.Latest().Reset()
	r := lcAwait(t, pending, nettest.Wait)
	ce := nettest.CloseErrorOf(t, r.Err)
	assert.Equal(t, netmsg.CloseNetworkError.String(), ce.Reason.String())

	conns.Next(t)
	nettest.WaitState(t, cli, netmsg.Connected)
	_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "after"})
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, hold.Calls(), "the failed call was resent")
}
