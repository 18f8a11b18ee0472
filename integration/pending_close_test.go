package integration_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// When a session ends, every call pending on it fails at once with a
// *CloseError, never waiting for its timeout.
func TestPendingCallsFailWhenSessionEnds(t *testing.T) {
	t.Parallel()
	const pending = 5
	cases := []struct {
		name string
		// end ends the session; ss is the server's session of the client.
		end    func(t *testing.T, srv *nettest.Server, ss *netmsg.Session)
		reason *netmsg.CloseReason // the client's reason, when it is certain
		// running is how many handlers run at once (the rest queue). A
		// draining server answers requests that reach it after Shutdown
		// began with CodeUnavailable, so there all must be running first.
		running int
	}{
		{
			name:    "server Shutdown with a short ctx",
			running: pending,
			end: func(t *testing.T, srv *nettest.Server, _ *netmsg.Session) {
				start := time.Now()
				err := srv.Stop(t, 300*time.Millisecond)
				assert.ErrorIs(t, err, context.DeadlineExceeded, "the handlers outlived the ctx")
				assert.Less(t, time.Since(start), nettest.Wait, "Shutdown returns soon after its ctx ended")
			},
		},
		{
			name: "server session Close",
			end: func(t *testing.T, _ *nettest.Server, ss *netmsg.Session) {
				require.NoError(t, ss.Close("bye"))
			},
			reason:  itPtr(netmsg.ClosePeerNormal),
			running: 1,
		},
		{
			name: "server session Kick",
			end: func(t *testing.T, _ *nettest.Server, ss *netmsg.Session) {
				require.NoError(t, ss.Kick("go away"))
			},
			reason:  itPtr(netmsg.ClosePolicyViolation),
			running: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := nettest.NewRecorder()
			srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithSessionConcurrency(tc.running))...)
			b := itAddBlocker(srv)
			cli := nettest.Connect(t, srv.URL, netmsg.WithRequestTimeout(itLong))
			ss := nettest.Recv(t, ev.Open, "OnSessionOpen")

			// One call with a deadline far away, the others on the default
			// timeout (also far away); one handler runs, the others queue.
			var results []<-chan itResult[itEchoReply]
			ctx, cancel := context.WithTimeout(context.Background(), itLong)
			defer cancel()
			results = append(results, itGo(t, ctx, cli, itBlock{Key: "0"}))
			require.Equal(t, "0", nettest.Recv(t, b.started, "the first handler to start"))
			for i := 1; i < pending; i++ {
				results = append(results, itGo(t, context.Background(), cli, itBlock{Key: fmt.Sprint(i)}))
			}
			for i := 1; i < tc.running; i++ {
				nettest.Recv(t, b.started, "the handlers to start")
			}
			time.Sleep(100 * time.Millisecond) // let the queued requests reach the server

			start := time.Now()
			tc.end(t, srv, ss)
			for i, ch := range results {
				select {
				case r := <-ch:
					ce := nettest.CloseErrorOf(t, r.Err)
					if tc.reason != nil {
						assert.Equal(t, *tc.reason, ce.Reason, "call %d: %v", i, ce)
					}
					assert.Zero(t, r.Resp)
				case <-time.After(nettest.Wait):
					t.Fatalf("call %d still pending %v after the session ended", i, time.Since(start))
				}
			}
			assert.Less(t, time.Since(start), nettest.Wait)

			// The ended session refuses new calls at once.
			cs := cli.Session()
			assert.Nil(t, cs, "a client without reconnect has no session after the close")
			_, err := netmsg.SendRequest(context.Background(), cli, itEcho{})
			assert.ErrorIs(t, err, netmsg.ErrNotConnected)
			_, err = netmsg.SendRequest(context.Background(), ss, itEcho{})
			nettest.CloseErrorOf(t, err)
			assert.ErrorIs(t, ss.Send(context.Background(), itNote{}), netmsg.ErrClosed)
		})
	}
}

// Calls the server has pending on a client fail at once when the client goes.
func TestServerPendingCallsFailWhenClientCloses(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithRequestTimeout(itLong))...)
	cli := nettest.NewClient(t, srv.URL)
	b := itAddBlocker(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	ss := nettest.Recv(t, ev.Open, "OnSessionOpen")

	var results []<-chan itResult[itEchoReply]
	for i := range 4 {
		results = append(results, itGo(t, context.Background(), ss, itBlock{Key: fmt.Sprint(i)}))
	}
	nettest.Recv(t, b.started, "the client's handler to start")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	require.NoError(t, cli.Close())
	for i, ch := range results {
		select {
		case r := <-ch:
			ce := nettest.CloseErrorOf(t, r.Err)
			assert.Equal(t, netmsg.ClosePeerNormal, ce.Reason, "call %d: %v", i, ce)
			assert.True(t, ce.Remote)
		case <-time.After(nettest.Wait):
			t.Fatalf("server call %d still pending %v after the client closed", i, time.Since(start))
		}
	}
	// The client's handler saw its ctx end.
	end := nettest.Recv(t, b.ended, "the client's handler to end")
	assert.True(t, errors.Is(end.Err, context.Canceled), "%v", end.Err)
}

func itPtr[T any](v T) *T { return &v }
