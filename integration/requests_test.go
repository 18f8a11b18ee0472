package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itCallback asks the server to call the client back before answering.
type itCallback struct {
	netmsg.Returns[itEchoReply]
	N int
}

// Requests go both ways: client to server, server to client (with the session
// from OnSessionOpen or from Sessions()), and a handler may call back the peer
// that is calling it.
func TestRequestsBothWays(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		return itEchoReply{Text: "srv:" + req.Text, N: req.N + 1}, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itCallback) (itEchoReply, error) {
		// Call back the client whose request this handler is serving.
		r, err := netmsg.SendRequest(ctx, s, itEcho{Text: "back", N: req.N * 10})
		if err != nil {
			return itEchoReply{}, err
		}
		return itEchoReply{Text: "cb:" + r.Text, N: r.N + 1}, nil
	})

	cli := nettest.NewClient(t, srv.URL)
	var cliSessMu sync.Mutex
	var handlerSessions []*netmsg.Session
	netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		cliSessMu.Lock()
		handlerSessions = append(handlerSessions, s)
		cliSessMu.Unlock()
		return itEchoReply{Text: "cli:" + req.Text, N: req.N + 2}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	fromOpen := nettest.Recv(t, ev.Open, "OnSessionOpen")

	t.Run("client to server", func(t *testing.T) {
		for i := range 50 {
			r, err := netmsg.SendRequest(ctx, cli, itEcho{Text: fmt.Sprint(i), N: i})
			require.NoError(t, err)
			assert.Equal(t, itEchoReply{Text: "srv:" + fmt.Sprint(i), N: i + 1}, r)
		}
		// Through the client's *Session as well as the *Client.
		r, err := netmsg.SendRequest(ctx, cli.Session(), itEcho{Text: "s", N: 1})
		require.NoError(t, err)
		assert.Equal(t, itEchoReply{Text: "srv:s", N: 2}, r)
	})

	t.Run("server to client via OnSessionOpen", func(t *testing.T) {
		for i := range 50 {
			r, err := netmsg.SendRequest(ctx, fromOpen, itEcho{Text: fmt.Sprint(i), N: i})
			require.NoError(t, err)
			assert.Equal(t, itEchoReply{Text: "cli:" + fmt.Sprint(i), N: i + 2}, r)
		}
	})

	t.Run("server to client via Sessions", func(t *testing.T) {
		var found *netmsg.Session
		for s := range srv.Sessions() {
			found = s
		}
		require.NotNil(t, found)
		assert.Same(t, fromOpen, found, "Sessions() yields the session OnSessionOpen saw")
		r, err := netmsg.SendRequest(ctx, found, itEcho{Text: "it", N: 5})
		require.NoError(t, err)
		assert.Equal(t, itEchoReply{Text: "cli:it", N: 7}, r)
	})

	t.Run("handler calls back its caller", func(t *testing.T) {
		// Sequential and concurrent: a handler waiting for its peer must not
		// block the responses it needs.
		r, err := netmsg.SendRequest(ctx, cli, itCallback{N: 4})
		require.NoError(t, err)
		assert.Equal(t, itEchoReply{Text: "cb:cli:back", N: 43}, r)

		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					n := g*100 + i
					r, err := netmsg.SendRequest(ctx, cli, itCallback{N: n})
					if !assert.NoError(t, err) {
						return
					}
					assert.Equal(t, n*10+3, r.N)
				}
			}()
		}
		wg.Wait()
	})

	// Every client handler call received the client's own *Session.
	cliSessMu.Lock()
	defer cliSessMu.Unlock()
	require.NotEmpty(t, handlerSessions)
	cs := cli.Session()
	require.NotNil(t, cs)
	for _, s := range handlerSessions {
		require.Same(t, cs, s, "the client's handler gets the client's *Session")
	}
	assert.Equal(t, 1, srv.SessionCount())
}

// A client handler may call the server while the server waits for it.
func TestClientHandlerCallsServer(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		return itEchoReply{Text: "srv:" + req.Text, N: req.N + 1}, nil
	})
	cli := nettest.NewClient(t, srv.URL)
	netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, req itCallback) (itEchoReply, error) {
		r, err := netmsg.SendRequest(ctx, s, itEcho{Text: "inner", N: req.N})
		if err != nil {
			return itEchoReply{}, err
		}
		return itEchoReply{Text: "cli:" + r.Text, N: r.N * 2}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	ss := nettest.Recv(t, ev.Open, "OnSessionOpen")
	for i := range 20 {
		r, err := netmsg.SendRequest(ctx, ss, itCallback{N: i})
		require.NoError(t, err)
		assert.Equal(t, itEchoReply{Text: "cli:srv:inner", N: (i + 1) * 2}, r)
	}
}

// A server may greet a client from OnSessionOpen; the greeting is the first
// thing the client receives.
func TestSendFromOnSessionOpen(t *testing.T) {
	t.Parallel()
	sendErr := make(chan error, 1)
	srv := nettest.StartServer(t, netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
		sendErr <- s.Send(context.Background(), itNote{Seq: 0, Text: "welcome " + s.ID()})
	}))
	itAddWhoAmI(srv)
	cli := nettest.NewClient(t, srv.URL)
	got := make(chan itNote, 4)
	netmsg.AddMessageHandler(cli, func(ctx context.Context, s *netmsg.Session, m itNote) { got <- m })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	require.NoError(t, nettest.Recv(t, sendErr, "OnSessionOpen's Send"))
	id := itWhoAmIOf(t, cli)
	assert.Equal(t, "welcome "+id, nettest.Recv(t, got, "the greeting").Text)
}

// TestRequestFromOnSessionOpen: OnSessionOpen may ask the client something
// and wait for the answer (the session is already reading). The client's
// own messages, sent as soon as it is connected, are handled only after
// OnSessionOpen has returned, and OnSessionClose never runs before it.
func TestRequestFromOnSessionOpen(t *testing.T) {
	t.Parallel()
	type step struct{ what, detail string }
	steps := make(chan step, 16)
	srv := nettest.StartServer(t,
		netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := netmsg.SendRequest(ctx, s, itEcho{Text: "who are you?"})
			if err != nil {
				steps <- step{"open failed", err.Error()}
				return
			}
			time.Sleep(50 * time.Millisecond) // the client's note is waiting now
			steps <- step{"open answered", r.Text}
		}),
		netmsg.WithOnSessionClose(func(*netmsg.Session, *netmsg.CloseError) { steps <- step{"close", ""} }))
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m itNote) { steps <- step{"note", m.Text} })

	cli := nettest.NewClient(t, srv.URL, netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
		return s.Send(ctx, itNote{Text: "hello early"})
	}))
	netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, r itEcho) (itEchoReply, error) {
		return itEchoReply{Text: "a client"}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))

	assert.Equal(t, step{"open answered", "a client"}, nettest.Recv(t, steps, "OnSessionOpen"))
	assert.Equal(t, step{"note", "hello early"}, nettest.Recv(t, steps, "the client's note, after OnSessionOpen"))
	require.NoError(t, cli.Close())
	assert.Equal(t, step{"close", ""}, nettest.Recv(t, steps, "OnSessionClose"))
}
