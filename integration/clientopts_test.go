package integration_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type itUserKey struct{}

// itWhoIs is answered with the user the session's Authorize found.
type itWhoIs struct {
	netmsg.Returns[itWhoIsReply]
}

type itWhoIsReply struct{ FromHandlerCtx, FromSessionCtx string }

// WithHeader reaches WithAuthorize; what Authorize puts in its context
// reaches handlers and Session.Context(); refusals carry their status.
func TestAuthorize(t *testing.T) {
	t.Parallel()
	authorize := func(r *http.Request) (context.Context, error) {
		switch tok := r.Header.Get("Authorization"); {
		case tok == "Bearer alice":
			return context.WithValue(r.Context(), itUserKey{}, "alice"), nil
		case tok == "Bearer slow-down":
			return nil, &netmsg.HTTPError{Status: http.StatusTooManyRequests}
		case tok == "Bearer banned":
			return nil, fmt.Errorf("lookup: %w", &netmsg.HTTPError{Status: http.StatusForbidden, Message: "banned user"})
		case tok == "":
			return nil, errors.New("no token")
		default:
			return nil, errors.New("bad token")
		}
	}
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithAuthorize(authorize))...)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, _ itWhoIs) (itWhoIsReply, error) {
		h, _ := ctx.Value(itUserKey{}).(string)
		c, _ := s.Context().Value(itUserKey{}).(string)
		return itWhoIsReply{FromHandlerCtx: h, FromSessionCtx: c}, nil
	})
	msgUser := make(chan string, 1)
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, _ itNote) {
		u, _ := ctx.Value(itUserKey{}).(string)
		msgUser <- u
	})

	t.Run("accepted", func(t *testing.T) {
		hdr := http.Header{"Authorization": {"Bearer alice"}, "X-Extra": {"1"}}
		cli := nettest.Connect(t, srv.URL, netmsg.WithHeader(hdr))
		ss := nettest.Recv(t, ev.Open, "OnSessionOpen")
		assert.Equal(t, "alice", ss.Context().Value(itUserKey{}), "Session.Context() carries Authorize's values")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := netmsg.SendRequest(ctx, cli, itWhoIs{})
		require.NoError(t, err)
		assert.Equal(t, itWhoIsReply{FromHandlerCtx: "alice", FromSessionCtx: "alice"}, r)
		require.NoError(t, cli.Send(ctx, itNote{}))
		assert.Equal(t, "alice", nettest.Recv(t, msgUser, "the message handler"), "a message handler's ctx carries Authorize's values")
		// The session's context outlives the handshake request.
		assert.NoError(t, ss.Context().Err())
		// The caller's header was not modified.
		assert.Equal(t, http.Header{"Authorization": {"Bearer alice"}, "X-Extra": {"1"}}, hdr)
	})

	cases := []struct {
		name   string
		header http.Header
		status int
		body   string
	}{
		{"no token", nil, http.StatusUnauthorized, ""},
		{"bad token", http.Header{"Authorization": {"Bearer mallory"}}, http.StatusUnauthorized, ""},
		{"HTTPError 429", http.Header{"Authorization": {"Bearer slow-down"}}, http.StatusTooManyRequests, ""},
		{"wrapped HTTPError 403", http.Header{"Authorization": {"Bearer banned"}}, http.StatusForbidden, "banned user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []netmsg.ClientOption
			if tc.header != nil {
				opts = append(opts, netmsg.WithHeader(tc.header))
			}
			c := nettest.NewClient(t, srv.URL, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := c.Connect(ctx)
			require.Error(t, err)
			var he *netmsg.HandshakeError
			require.ErrorAs(t, err, &he, "%v", err)
			assert.Equal(t, tc.status, he.Status)
			if tc.body != "" {
				assert.Contains(t, he.Body, tc.body)
			}
			assert.NotContains(t, he.Body, "token", "the server does not echo Authorize's error text")
			assert.Nil(t, c.Session())
			nettest.None(t, ev.Open, 0, "OnSessionOpen for a refused handshake")
		})
	}
	require.Eventually(t, func() bool { return srv.SessionCount() == 0 }, nettest.Wait, time.Millisecond)
	assert.Len(t, ev.Opened(), 1, "only the accepted client got a session")
}

// WithTLSConfig: wss works and the *tls.Config passed in is not modified.
func TestTLSConfigNotModified(t *testing.T) {
	t.Parallel()
	srv := netmsg.NewServer()
	itAddWhoAmI(srv)
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused client's TLS errors
	hs.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		hs.Close()
	})
	roots := hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	require.NotNil(t, roots)
	url := "wss://" + hs.Listener.Addr().String() + "/"

	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	before := cfg.Clone()
	require.Empty(t, cfg.ServerName)
	for i := range 2 { // twice: a config written into would differ the second time
		cli := nettest.Connect(t, url, netmsg.WithTLSConfig(cfg))
		id := itWhoAmIOf(t, cli)
		_, ok := srv.Session(id)
		assert.True(t, ok, "round %d", i)
		assert.Empty(t, cfg.ServerName, "the client wrote ServerName into the caller's tls.Config")
		assert.Empty(t, cfg.NextProtos, "the client wrote NextProtos into the caller's tls.Config")
		assert.Equal(t, before.MinVersion, cfg.MinVersion)
		assert.Same(t, roots, cfg.RootCAs)
		require.NoError(t, cli.Close())
	}

	// Without the test CA the handshake fails with a certificate error, promptly.
	c := nettest.NewClient(t, url, netmsg.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Connect(ctx)
	require.Error(t, err)
	assert.Less(t, time.Since(start), nettest.Wait)
	assert.Contains(t, err.Error(), "certificate")
}

// Connect honours ctx (and the dial timeout) while the server never answers
// the handshake, and leaves no goroutine or connection behind.
func TestConnectHonoursCtxWhileDialling(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		opts    []netmsg.ClientOption
		want    error
		minTook time.Duration
	}{
		{
			name: "ctx deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			want:    context.DeadlineExceeded,
			minTook: 250 * time.Millisecond,
		},
		{
			name: "ctx cancelled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(300*time.Millisecond, cancel)
				return ctx, cancel
			},
			want:    context.Canceled,
			minTook: 250 * time.Millisecond,
		},
		{
			name:    "dial timeout",
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), itLong) },
			opts:    []netmsg.ClientOption{netmsg.WithDialTimeout(300 * time.Millisecond)},
			want:    context.DeadlineExceeded,
			minTook: 250 * time.Millisecond,
		},
		{
			name: "ctx already done",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			want: context.Canceled,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			// Accept and read, never answer; report when the client hangs up.
			var wg sync.WaitGroup
			hungUp := make(chan error, 16)
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
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := io.Copy(io.Discard, c)
						hungUp <- err
					}()
				}
			}()
			t.Cleanup(func() {
				_ = ln.Close()
				mu.Lock()
				for _, c := range conns {
					_ = c.Close()
				}
				mu.Unlock()
				wg.Wait()
			})

			c := nettest.NewClient(t, "ws://"+ln.Addr().String()+"/", tc.opts...)
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			err = c.Connect(ctx)
			took := time.Since(start)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.Less(t, took, nettest.Wait, "Connect returned late")
			assert.GreaterOrEqual(t, took, tc.minTook)
			assert.Equal(t, netmsg.Disconnected, c.State())
			if tc.minTook > 0 {
				// The client dialled, and it closed its end of the connection.
				select {
				case err := <-hungUp:
					assert.NoError(t, err, "the client's connection ended with EOF")
				case <-time.After(nettest.Wait):
					t.Fatal("the client did not close its connection")
				}
			}
			require.NoError(t, c.Close())
			// goleak (TestMain) checks no goroutine of the attempt is left.
		})
	}
}
