package integration_test

import (
	"context"
	"encoding/json"
	"errors"
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

// The caller's deadline reaches the handler's ctx.
func TestDeadlineReachesHandler(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	type seen struct {
		dl time.Time
		ok bool
	}
	got := make(chan seen, 4)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		dl, ok := ctx.Deadline()
		got <- seen{dl, ok}
		return itEchoReply{}, nil
	})
	cli := nettest.Connect(t, srv.URL)

	for _, d := range []time.Duration{3 * time.Second, 40 * time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		want, _ := ctx.Deadline()
		_, err := netmsg.SendRequest(ctx, cli, itEcho{})
		cancel()
		require.NoError(t, err)
		s := nettest.Recv(t, got, "the handler")
		require.True(t, s.ok, "the handler's ctx has no deadline; the caller's was %v", d)
		// The handler's deadline is the caller's, shifted by the time in
		// transit and rounded to milliseconds.
		assert.WithinDuration(t, want, s.dl, time.Second, "caller's timeout %v", d)
	}
}

// A caller that times out or cancels cancels the handler's ctx; the caller
// gets the context error at once.
func TestCancelReachesHandler(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// call runs the request; it gets the handler's start notifications.
		call       func(t *testing.T, cli *netmsg.Client, started <-chan struct{}) error
		callerErr  error
		handlerErr []error // what the handler's ctx may end with
		minTook    time.Duration
	}{
		{
			name: "caller deadline",
			call: func(t *testing.T, cli *netmsg.Client, _ <-chan struct{}) error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := netmsg.SendRequest(ctx, cli, itBlock{Key: "deadline"})
				return err
			},
			callerErr:  context.DeadlineExceeded,
			handlerErr: []error{context.DeadlineExceeded, context.Canceled},
			minTook:    900 * time.Millisecond,
		},
		{
			name: "explicit cancel",
			call: func(t *testing.T, cli *netmsg.Client, started <-chan struct{}) error {
				ctx, cancel := context.WithTimeout(context.Background(), itLong)
				defer cancel()
				go func() {
					select {
					case <-started:
					case <-time.After(nettest.Wait):
					}
					cancel()
				}()
				_, err := netmsg.SendRequest(ctx, cli, itBlock{Key: "cancel"})
				return err
			},
			callerErr: context.Canceled,
			// The handler's own deadline is a minute away: only the CANCEL
			// envelope can have ended it.
			handlerErr: []error{context.Canceled},
		},
		{
			name: "default request timeout",
			call: func(t *testing.T, cli *netmsg.Client, _ <-chan struct{}) error {
				_, err := netmsg.SendRequest(context.Background(), cli, itBlock{Key: "default"})
				return err
			},
			callerErr:  context.DeadlineExceeded,
			handlerErr: []error{context.DeadlineExceeded, context.Canceled},
			minTook:    900 * time.Millisecond,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := nettest.StartServer(t)
			b := itAddBlocker(srv)
			itAddWhoAmI(srv)
			// Only the "default" case relies on it; the others carry a
			// deadline. A second leaves the handler time to start even on a
			// loaded machine (a request that expires while queued is
			// dropped without running its handler).
			cli := nettest.Connect(t, srv.URL, netmsg.WithRequestTimeout(time.Second))
			started := make(chan struct{}) // closed when the handler started
			go func() {
				select {
				case <-b.started:
					close(started)
				case <-time.After(nettest.Wait + time.Second):
				}
			}()

			start := time.Now()
			err := tc.call(t, cli, started)
			took := time.Since(start)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.callerErr)
			assert.Less(t, took, nettest.Wait, "the call returned late")
			assert.GreaterOrEqual(t, took, tc.minTook, "the call returned before its deadline")
			switch tc.callerErr {
			case context.DeadlineExceeded:
				assert.Equal(t, netmsg.CodeDeadlineExceeded, netmsg.CodeOf(err))
			case context.Canceled:
				assert.Equal(t, netmsg.CodeCanceled, netmsg.CodeOf(err))
			}

			nettest.Recv(t, started, "the handler to start")
			end := nettest.Recv(t, b.ended, "the handler's ctx to end")
			require.Error(t, end.Err)
			ok := false
			for _, want := range tc.handlerErr {
				ok = ok || errors.Is(end.Err, want)
			}
			assert.True(t, ok, "handler ctx ended with %v, want one of %v", end.Err, tc.handlerErr)
			require.True(t, end.HasDL, "the handler's ctx carries a deadline")
			if tc.name == "default request timeout" {
				// The default timeout travels with the request.
				assert.WithinDuration(t, start.Add(time.Second), end.Deadline, time.Second)
			}
			// The session is fine afterwards.
			cs := cli.Session()
			require.NotNil(t, cs)
			assert.Nil(t, cs.Err())
			itWhoAmIOf(t, cli)
		})
	}
}

// The server's default RequestTimeout applies to its requests to a client.
func TestServerDefaultRequestTimeout(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithRequestTimeout(time.Second))...)
	cli := nettest.NewClient(t, srv.URL)
	b := itAddBlocker(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	ss := nettest.Recv(t, ev.Open, "OnSessionOpen")

	start := time.Now()
	_, err := netmsg.SendRequest(context.Background(), ss, itBlock{Key: "x"})
	took := time.Since(start)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, took, 900*time.Millisecond)
	assert.Less(t, took, nettest.Wait)
	nettest.Recv(t, b.started, "the client's handler to start")
	end := nettest.Recv(t, b.ended, "the client handler's ctx to end")
	assert.Error(t, end.Err)
}

// A response that arrives after its caller gave up is dropped and counted as
// late; one for an id never asked is counted as unknown. Neither reaches a
// caller, and the session keeps working.
func TestLateResponseDroppedAndCounted(t *testing.T) {
	t.Parallel()
	var lateSent atomic.Bool
	sentLate := make(chan struct{})
	var lateID atomic.Uint64
	// The raw server answers "late" only after the caller's CANCEL arrived,
	// so the answer is late for sure.
	rs := itStartRawServer(t, func(c *gws.Conn, env *nettest.Env) {
		switch env.Kind {
		case wire.KindRequest:
			var req itEcho
			_ = json.Unmarshal([]byte(env.Payload), &req)
			switch req.Text {
			case "late":
				lateID.Store(env.ID)
			case "unknown":
				_ = c.WriteMessage(gws.OpcodeBinary, wire.AppendHeaderAndPayload(nil, wire.KindResponse, env.ID+1000, "", []byte(`{"Text":"stray"}`), 0, nil))
				_ = c.WriteMessage(gws.OpcodeBinary, wire.AppendHeaderAndPayload(nil, wire.KindResponse, env.ID, "", []byte(`{"Text":"unknown-ok"}`), 0, nil))
			default:
				_ = c.WriteMessage(gws.OpcodeBinary, wire.AppendHeaderAndPayload(nil, wire.KindResponse, env.ID, "", []byte(`{"Text":"now"}`), 0, nil))
			}
		case wire.KindCancel:
			if env.ID == lateID.Load() && lateSent.CompareAndSwap(false, true) {
				_ = c.WriteMessage(gws.OpcodeBinary, wire.AppendHeaderAndPayload(nil, wire.KindResponse, env.ID, "", []byte(`{"Text":"late"}`), 0, nil))
				close(sentLate)
			}
		}
	})
	cli := nettest.Connect(t, rs.URL)
	assert.Equal(t, netmsg.Stats{}, cli.Stats())

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := netmsg.SendRequest(ctx, cli, itEcho{Text: "late"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	nettest.Recv(t, sentLate, "the raw server to send the late response")

	// The next answer comes after the late one on the same connection, so
	// by the time it is delivered the late one has been read.
	r, err := netmsg.SendRequest(context.Background(), cli, itEcho{Text: "now"})
	require.NoError(t, err)
	assert.Equal(t, "now", r.Text, "the late response must not reach another caller")
	st := cli.Stats()
	assert.EqualValues(t, 1, st.LateResponses, "Stats().LateResponses after one late response: %+v", st)
	assert.EqualValues(t, 0, st.UnknownResponses, "a late response is not an unknown one: %+v", st)

	r, err = netmsg.SendRequest(context.Background(), cli, itEcho{Text: "unknown"})
	require.NoError(t, err)
	assert.Equal(t, "unknown-ok", r.Text)
	st2 := cli.Stats()
	assert.Equal(t, st.LateResponses, st2.LateResponses, "a response for an id never asked is not late")
	assert.EqualValues(t, st.UnknownResponses+1, st2.UnknownResponses, "a response for an id never asked is counted as unknown")
	assert.Nil(t, cli.Session().Err())
}

// SendRequest with a ctx that has already ended returns its error at once and
// sends nothing: the peer's handler must not run for a call that was over
// before it began.
func TestSendRequestWithEndedCtxSendsNothing(t *testing.T) {
	t.Parallel()
	requests := make(chan string, 16)
	rs := itStartRawServer(t, func(c *gws.Conn, env *nettest.Env) {
		if env.Kind != wire.KindRequest {
			return
		}
		var req itEcho
		_ = json.Unmarshal([]byte(env.Payload), &req)
		requests <- req.Text
		_ = c.WriteMessage(gws.OpcodeBinary, wire.AppendHeaderAndPayload(nil, wire.KindResponse, env.ID, "", []byte(`{"Text":"ok"}`), 0, nil))
	})
	cli := nettest.Connect(t, rs.URL)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"cancelled", cancelled, context.Canceled}, {"expired", expired, context.DeadlineExceeded}} {
		start := time.Now()
		_, err := netmsg.SendRequest(tc.ctx, cli, itEcho{Text: tc.name})
		assert.ErrorIs(t, err, tc.want, tc.name)
		assert.Less(t, time.Since(start), nettest.Wait, tc.name)
		assert.ErrorIs(t, cli.Send(tc.ctx, itNote{}), tc.want, "Send with a %s ctx", tc.name)
	}
	// A live request after them: what the server saw before it is all it saw.
	r, err := netmsg.SendRequest(context.Background(), cli, itEcho{Text: "live"})
	require.NoError(t, err)
	assert.Equal(t, "ok", r.Text)
	var seen []string
	for len(requests) > 0 {
		seen = append(seen, <-requests)
	}
	assert.Equal(t, []string{"live"}, seen, "requests the server received")
}
