package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itFail asks the handler to fail in the way Mode names.
type itFail struct {
	netmsg.Returns[itEchoReply]
	Mode string
}

type itPanicNote struct{ Text string }

// A handler's error reaches the caller: an *Error with its code and message,
// anything else as CodeInternal "internal error" (the detail stays local), a
// panic as CodeInternal; the session lives on.
func TestHandlerErrorMapping(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	itAddWhoAmI(srv)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itFail) (itEchoReply, error) {
		switch req.Mode {
		case "ok":
			return itEchoReply{Text: "fine"}, nil
		case "not found":
			return itEchoReply{Text: "ignored"}, netmsg.NewError(netmsg.CodeNotFound, "no such city")
		case "errorf":
			return itEchoReply{}, netmsg.Errorf(netmsg.CodePermissionDenied, "user %d may not", 7)
		case "wrapped":
			return itEchoReply{}, fmt.Errorf("layer: %w", netmsg.NewError(netmsg.CodeFailedPrecondition, "not ready"))
		case "empty message":
			return itEchoReply{}, &netmsg.Error{Code: netmsg.CodeResourceExhausted}
		case "plain":
			return itEchoReply{}, errors.New("secret: db password is hunter2")
		case "panic":
			panic("secret: handler exploded")
		case "panic error":
			panic(errors.New("secret: panic with an error value"))
		}
		return itEchoReply{}, nil
	})
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m itPanicNote) {
		panic("secret: message handler exploded")
	})
	cli := nettest.Connect(t, srv.URL, netmsg.WithRequestTimeout(itLong))
	ss := nettest.Recv(t, ev.Open, "OnSessionOpen")
	id := itWhoAmIOf(t, cli)
	cs := cli.Session()

	cases := []struct {
		mode     string
		code     netmsg.Code
		message  string
		reported bool // OnError sees the real error
	}{
		{"not found", netmsg.CodeNotFound, "no such city", false},
		{"errorf", netmsg.CodePermissionDenied, "user 7 may not", false},
		{"wrapped", netmsg.CodeFailedPrecondition, "not ready", false},
		{"empty message", netmsg.CodeResourceExhausted, "", false},
		{"plain", netmsg.CodeInternal, "internal error", true},
		{"panic", netmsg.CodeInternal, "internal error", true},
		{"panic error", netmsg.CodeInternal, "internal error", true},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			start := time.Now()
			r, err := netmsg.SendRequest(context.Background(), cli, itFail{Mode: tc.mode})
			require.Error(t, err)
			assert.Less(t, time.Since(start), nettest.Wait)
			assert.Zero(t, r, "no response value with an error")
			var ne *netmsg.Error
			require.ErrorAs(t, err, &ne)
			assert.Equal(t, tc.code, ne.Code)
			assert.Equal(t, tc.message, ne.Message)
			assert.Equal(t, tc.code, netmsg.CodeOf(err))
			assert.NotContains(t, err.Error(), "secret", "handler internals must not reach the caller")
			assert.False(t, errors.Is(err, netmsg.ErrNoHandler), "only CodeUnimplemented matches ErrNoHandler")
			assert.False(t, errors.Is(err, netmsg.ErrClosed))
			var ce *netmsg.CloseError
			assert.False(t, errors.As(err, &ce))
			assert.True(t, errors.Is(err, netmsg.NewError(tc.code, "")), "errors.Is matches an *Error by code")
			if tc.reported {
				rep := nettest.Recv(t, ev.Errs, "OnError with the handler's error")
				assert.Contains(t, rep.Error(), "secret", "OnError gets the real error")
			}
			// The session is the same and still works.
			r, err = netmsg.SendRequest(context.Background(), cli, itFail{Mode: "ok"})
			require.NoError(t, err)
			assert.Equal(t, "fine", r.Text)
			assert.Same(t, cs, cli.Session())
			assert.Equal(t, id, itWhoAmIOf(t, cli))
		})
	}
	nettest.None(t, ev.Errs, 0, "OnError for an *Error")

	t.Run("message handler panic", func(t *testing.T) {
		require.NoError(t, cli.Send(context.Background(), itPanicNote{Text: "x"}))
		rep := nettest.Recv(t, ev.Errs, "OnError for the panic")
		assert.Contains(t, rep.Error(), "message handler exploded")
		assert.Equal(t, id, itWhoAmIOf(t, cli), "the session survived a message handler's panic")
	})

	t.Run("no handler", func(t *testing.T) {
		for _, p := range []struct {
			name string
			peer netmsg.Peer
		}{{"client to server", cli}, {"server to client", ss}} {
			start := time.Now()
			_, err := netmsg.SendRequest(context.Background(), p.peer, itFail{Mode: "ok"})
			if p.name == "client to server" {
				require.NoError(t, err)
				continue
			}
			require.Error(t, err, p.name)
			assert.ErrorIs(t, err, netmsg.ErrNoHandler, p.name)
			assert.Equal(t, netmsg.CodeUnimplemented, netmsg.CodeOf(err), p.name)
			assert.True(t, strings.Contains(err.Error(), netmsg.TypeName(itFail{})), "%s: %v", p.name, err)
			assert.Less(t, time.Since(start), nettest.Wait, p.name)
		}
		_, err := netmsg.SendRequest(context.Background(), cli, itEcho{Text: "nobody"})
		assert.ErrorIs(t, err, netmsg.ErrNoHandler)
		assert.Equal(t, netmsg.CodeUnimplemented, netmsg.CodeOf(err))
	})

	assert.Equal(t, 1, srv.SessionCount())
	assert.Nil(t, ss.Err())
}

// CodeOf on the errors callers meet.
func TestCodeOfCallerErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want netmsg.Code
	}{
		{"nil", nil, netmsg.CodeOK},
		{"*Error", netmsg.NewError(netmsg.CodeAborted, "x"), netmsg.CodeAborted},
		{"wrapped *Error", fmt.Errorf("a: %w", netmsg.NewError(netmsg.CodeOutOfRange, "x")), netmsg.CodeOutOfRange},
		{"deadline", context.DeadlineExceeded, netmsg.CodeDeadlineExceeded},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), netmsg.CodeCanceled},
		{"closed", netmsg.ErrClosed, netmsg.CodeUnavailable},
		{"close error", &netmsg.CloseError{Reason: netmsg.CloseNetworkError}, netmsg.CodeUnavailable},
		{"not connected", netmsg.ErrNotConnected, netmsg.CodeUnavailable},
		{"other", errors.New("x"), netmsg.CodeUnknown},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, netmsg.CodeOf(tc.err), tc.name)
	}
}
