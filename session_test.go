package netmsg_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestResponse(t *testing.T) {
	t.Parallel()
	_, cli := pair(t, nil, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
			return Pong{N: p.N + 1}, nil
		})
	})
	for i := range 100 {
		resp, err := netmsg.SendRequest(context.Background(), cli, Ping{N: i})
		require.NoError(t, err)
		assert.Equal(t, i+1, resp.N)
	}
}

func TestServerCallsClientFromHandler(t *testing.T) {
	t.Parallel()
	_, cli := pair(t, nil, nil, func(srv *netmsg.Server, cli *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
			// call back the client that is calling us
			r, err := netmsg.SendRequest(ctx, s, Ping{N: p.N * 10})
			if err != nil {
				return Pong{}, err
			}
			return Pong{N: r.N + 1}, nil
		})
		netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
			return Pong{N: p.N}, nil
		})
	})
	resp, err := netmsg.SendRequest(context.Background(), cli, Ping{N: 4})
	require.NoError(t, err)
	assert.Equal(t, 41, resp.N)
}

func TestErrorsAndNoHandler(t *testing.T) {
	t.Parallel()
	var reported atomic.Int32
	_, cli := pair(t, []netmsg.ServerOption{netmsg.WithOnError(func(*netmsg.Session, error) { reported.Add(1) })}, nil,
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
				switch p.N {
				case 1:
					return Pong{}, netmsg.NewError(netmsg.CodeNotFound, "no such thing")
				case 2:
					return Pong{}, errors.New("secret database detail")
				default:
					panic("boom")
				}
			})
		})
	_, err := netmsg.SendRequest(context.Background(), cli, Ping{N: 1})
	var e *netmsg.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, netmsg.CodeNotFound, e.Code)
	assert.Equal(t, "no such thing", e.Message)

	_, err = netmsg.SendRequest(context.Background(), cli, Ping{N: 2})
	require.ErrorAs(t, err, &e)
	assert.Equal(t, netmsg.CodeInternal, e.Code)
	assert.Equal(t, "internal error", e.Message)

	_, err = netmsg.SendRequest(context.Background(), cli, Ping{N: 3})
	require.ErrorAs(t, err, &e)
	assert.Equal(t, netmsg.CodeInternal, e.Code)
	// OnError runs on the session's callback goroutine, after the answer
	// may already have arrived.
	assert.Eventually(t, func() bool { return reported.Load() == 2 }, 5*time.Second, time.Millisecond,
		"OnError calls: %d", reported.Load())

	// the session survived the panic
	start := time.Now()
	_, err = netmsg.SendRequest(context.Background(), cli, Slow{})
	require.ErrorIs(t, err, netmsg.ErrNoHandler)
	assert.Equal(t, netmsg.CodeUnimplemented, netmsg.CodeOf(err))
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestTimeoutCancelsHandler(t *testing.T) {
	t.Parallel()
	cancelled := make(chan error, 1)
	_, cli := pair(t, nil, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Slow) (Pong, error) {
			_, hasDeadline := ctx.Deadline()
			if !hasDeadline {
				cancelled <- errors.New("no deadline on handler ctx")
				return Pong{}, nil
			}
			select {
			case <-ctx.Done():
				cancelled <- ctx.Err()
			case <-time.After(p.D):
				cancelled <- errors.New("handler was not cancelled")
			}
			return Pong{}, ctx.Err()
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := netmsg.SendRequest(ctx, cli, Slow{D: time.Minute})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case err := <-cancelled:
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded), err)
	case <-time.After(10 * time.Second):
		t.Fatal("handler never finished")
	}

	// explicit cancel reaches the handler too
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	_, err = netmsg.SendRequest(ctx2, cli, Slow{D: time.Minute})
	require.ErrorIs(t, err, context.Canceled)
	select {
	case err := <-cancelled:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("handler never cancelled")
	}
}

func TestMessagesBothWays(t *testing.T) {
	t.Parallel()
	const n = 1000
	srvGot := make(chan string, n)
	cliGot := make(chan string, n)
	srv, cli := pair(t, nil, nil, func(srv *netmsg.Server, cli *netmsg.Client) {
		netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m Note) { srvGot <- m.Text })
		netmsg.AddMessageHandler(cli, func(ctx context.Context, s *netmsg.Session, m *Note) { cliGot <- m.Text })
	})
	ctx := context.Background()
	for i := range n {
		require.NoError(t, cli.Send(ctx, Note{Text: itoa(i)}))
	}
	for i := range n {
		select {
		case got := <-srvGot:
			require.Equal(t, itoa(i), got)
		case <-time.After(10 * time.Second):
			t.Fatalf("server got %d of %d", i, n)
		}
	}
	var ss *netmsg.Session
	for s := range srv.Sessions() {
		ss = s
	}
	require.NotNil(t, ss)
	for i := range n {
		require.NoError(t, ss.Send(ctx, &Note{Text: itoa(i)}))
	}
	for i := range n {
		select {
		case got := <-cliGot:
			require.Equal(t, itoa(i), got)
		case <-time.After(10 * time.Second):
			t.Fatalf("client got %d of %d", i, n)
		}
	}
}

func itoa(i int) string { return string(rune('a'+i%26)) + time.Duration(i).String() }

func TestMetadata(t *testing.T) {
	t.Parallel()
	got := make(chan map[string]string, 2)
	_, cli := pair(t, nil, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
			got <- netmsg.Metadata(ctx)
			return Pong{}, nil
		})
		netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m Note) { got <- netmsg.Metadata(ctx) })
	})
	ctx := netmsg.WithMetadata(context.Background(), "traceparent", "00-abc-def-01", "tenant", "a")
	ctx = netmsg.WithMetadata(ctx, "tenant", "b")
	_, err := netmsg.SendRequest(ctx, cli, Ping{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"traceparent": "00-abc-def-01", "tenant": "b"}, <-got)
	require.NoError(t, cli.Send(context.Background(), Note{}))
	assert.Nil(t, <-got)
}

// Without WithAuthorize a session's base context carries nothing of the
// HTTP request (keeping r.Context() would keep net/http's contexts alive for
// the session's lifetime); with it, what Authorize returned.
func TestSessionBaseContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	for _, withAuth := range []bool{false, true} {
		var opts []netmsg.ServerOption
		if withAuth {
			opts = append(opts, netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
				return context.WithValue(r.Context(), key{}, "alice"), nil
			}))
		}
		srv, _ := pair(t, opts, nil, nil)
		var ss *netmsg.Session
		require.Eventually(t, func() bool {
			for s := range srv.Sessions() {
				ss = s
			}
			return ss != nil
		}, 5*time.Second, time.Millisecond)
		ctx := ss.Context()
		if withAuth {
			assert.Equal(t, "alice", ctx.Value(key{}))
			assert.NotNil(t, ctx.Value(http.LocalAddrContextKey), "Authorize kept the request's values")
		} else {
			assert.Nil(t, ctx.Value(http.LocalAddrContextKey), "no value of the request")
		}
		assert.NoError(t, ctx.Err(), "the request's end does not end the session's context")
	}
}

// Sessions come and go while the heartbeat wheel ticks them every 10 ms
// (run with -race): every session that closed leaves the wheel, and a wheel
// without sessions has no timer set.
func TestHeartbeatWheelChurn(t *testing.T) {
	t.Parallel()
	srv, cli := pair(t, []netmsg.ServerOption{netmsg.WithHeartbeat(10*time.Millisecond, time.Second)}, nil, nil)
	url := cli.URL()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				c := netmsg.NewClient(url, netmsg.WithHeartbeat(10*time.Millisecond, time.Second))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.Connect(ctx)
				cancel()
				if !assert.NoError(t, err, "client %d/%d", w, i) {
					return
				}
				time.Sleep(time.Duration(5+(w*8+i)%20) * time.Millisecond) // across a few ticks
				assert.NoError(t, c.Close())
			}
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		n, _ := netmsg.HeartbeatWheelForTest(srv)
		return n == 1
	}, 5*time.Second, time.Millisecond, "only the pair's own session is left on the wheel")
	n, armed := netmsg.HeartbeatWheelForTest(srv)
	assert.Equal(t, 1, n)
	assert.True(t, armed, "its session ticks")
	require.NoError(t, cli.Close())
	require.Eventually(t, func() bool {
		n, armed := netmsg.HeartbeatWheelForTest(srv)
		return n == 0 && !armed
	}, 5*time.Second, time.Millisecond, "no session, no timer")
}
