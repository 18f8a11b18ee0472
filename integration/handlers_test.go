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

// Two Go types that claim one wire name.
type itSameA struct {
	netmsg.Returns[itEchoReply]
	A int
}

func (itSameA) MessageType() string { return "it.same" }

type itSameB struct {
	netmsg.Returns[itEchoReply]
	B string
}

func (itSameB) MessageType() string { return "it.same" }

// Removing a request handler answers the next request at once with
// CodeUnimplemented; registering again works.
func TestRemoveRequestHandler(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	echo := func(prefix string) netmsg.RequestHandler[itEcho, itEchoReply] {
		return func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
			return itEchoReply{Text: prefix + req.Text}, nil
		}
	}
	remove := netmsg.AddRequestHandler(srv, echo("v1:"))
	// A long default timeout: a call that waited for it would fail the test.
	cli := nettest.Connect(t, srv.URL, netmsg.WithRequestTimeout(itLong))
	bg := context.Background()

	r, err := netmsg.SendRequest(bg, cli, itEcho{Text: "a"})
	require.NoError(t, err)
	assert.Equal(t, "v1:a", r.Text)

	remove()
	start := time.Now()
	_, err = netmsg.SendRequest(bg, cli, itEcho{Text: "b"})
	took := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, netmsg.ErrNoHandler)
	assert.Equal(t, netmsg.CodeUnimplemented, netmsg.CodeOf(err))
	var ne *netmsg.Error
	require.ErrorAs(t, err, &ne)
	assert.Equal(t, netmsg.CodeUnimplemented, ne.Code)
	assert.Contains(t, ne.Message, netmsg.TypeName(itEcho{}), "the error names the type")
	assert.Less(t, took, nettest.Wait, "a request without a handler is answered at once")
	remove() // a second call is a no-op

	remove2 := netmsg.AddRequestHandler(srv, echo("v2:"))
	r, err = netmsg.SendRequest(bg, cli, itEcho{Text: "c"})
	require.NoError(t, err)
	assert.Equal(t, "v2:c", r.Text)
	remove() // the old remove must not take the new handler away
	r, err = netmsg.SendRequest(bg, cli, itEcho{Text: "d"})
	require.NoError(t, err, "the first registration's remove removed the second registration")
	assert.Equal(t, "v2:d", r.Text)

	// A second request handler for the same type panics, naming the type.
	msg := itPanicValue(func() { netmsg.AddRequestHandler(srv, echo("v3:")) })
	require.NotNil(t, msg, "registering a second request handler must panic")
	assert.Contains(t, fmt.Sprint(msg), netmsg.TypeName(itEcho{}))
	// The panic left the first registration in place.
	r, err = netmsg.SendRequest(bg, cli, itEcho{Text: "e"})
	require.NoError(t, err)
	assert.Equal(t, "v2:e", r.Text)
	remove2()
	_, err = netmsg.SendRequest(bg, cli, itEcho{Text: "f"})
	assert.ErrorIs(t, err, netmsg.ErrNoHandler)

	// The same on the client's registrar, called by the server.
	ss := itOnlySession(t, srv.Server)
	rm := netmsg.AddRequestHandler(cli, echo("cli:"))
	r, err = netmsg.SendRequest(bg, ss, itEcho{Text: "g"})
	require.NoError(t, err)
	assert.Equal(t, "cli:g", r.Text)
	rm()
	start = time.Now()
	_, err = netmsg.SendRequest(bg, ss, itEcho{Text: "h"})
	assert.ErrorIs(t, err, netmsg.ErrNoHandler)
	assert.Less(t, time.Since(start), nettest.Wait)
}

// Removing a message handler stops it; the others keep running in
// registration order; with none left OnUnhandled reports the type.
func TestRemoveMessageHandler(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	var mu sync.Mutex
	var calls []string
	record := func(name string) netmsg.MessageHandler[itNote] {
		return func(ctx context.Context, s *netmsg.Session, m itNote) {
			mu.Lock()
			calls = append(calls, fmt.Sprintf("%s:%d", name, m.Seq))
			mu.Unlock()
		}
	}
	marks := make(chan int, 16)
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m itMarker) { marks <- m.Seq })
	takeCalls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		c := calls
		calls = nil
		return c
	}
	cli := nettest.Connect(t, srv.URL)
	ctx := context.Background()
	// send sends a note and then a marker; when the marker is handled, the
	// note has been (one session's messages are handled in order).
	send := func(seq int) []string {
		t.Helper()
		require.NoError(t, cli.Send(ctx, itNote{Seq: seq}))
		require.NoError(t, cli.Send(ctx, itMarker{Seq: seq}))
		require.Equal(t, seq, nettest.Recv(t, marks, "marker"))
		return takeCalls()
	}

	rm1 := netmsg.AddMessageHandler(srv, record("h1"))
	rm2 := netmsg.AddMessageHandler(srv, record("h2"))
	assert.Equal(t, []string{"h1:1", "h2:1"}, send(1), "both run, in registration order")

	rm1()
	assert.Equal(t, []string{"h2:2"}, send(2), "a removed handler no longer runs")
	rm1()
	assert.Equal(t, []string{"h2:3"}, send(3), "removing twice changes nothing")

	rm2()
	assert.Empty(t, send(4))
	assert.Equal(t, netmsg.TypeName(itNote{}), nettest.Recv(t, ev.Unhandled, "OnUnhandled"),
		"OnUnhandled names the type of the message nobody handled")
	nettest.None(t, ev.Unhandled, 0, "a second OnUnhandled")

	rm3 := netmsg.AddMessageHandler(srv, record("h3"))
	assert.Equal(t, []string{"h3:5"}, send(5), "registering again works")
	rm4 := netmsg.AddMessageHandler(srv, record("h4"))
	rm3()
	assert.Equal(t, []string{"h4:6"}, send(6))
	rm4()
	assert.Empty(t, send(7))
	assert.Equal(t, netmsg.TypeName(itNote{}), nettest.Recv(t, ev.Unhandled, "OnUnhandled"))
}

// Two different Go types under one wire name panic with both names, for
// message and request handlers, on servers and clients.
func TestWireNameCollisionPanics(t *testing.T) {
	t.Parallel()
	require.Equal(t, "it.same", netmsg.TypeName(itSameA{}))
	require.Equal(t, "it.same", netmsg.TypeName(&itSameB{}))
	cases := []struct {
		name          string
		first, second func(r netmsg.Registrar) func()
	}{
		{"message then message",
			func(r netmsg.Registrar) func() {
				return netmsg.AddMessageHandler(r, func(context.Context, *netmsg.Session, itSameA) {})
			},
			func(r netmsg.Registrar) func() {
				return netmsg.AddMessageHandler(r, func(context.Context, *netmsg.Session, itSameB) {})
			}},
		{"request then request",
			func(r netmsg.Registrar) func() {
				return netmsg.AddRequestHandler(r, func(context.Context, *netmsg.Session, itSameA) (itEchoReply, error) {
					return itEchoReply{}, nil
				})
			},
			func(r netmsg.Registrar) func() {
				return netmsg.AddRequestHandler(r, func(context.Context, *netmsg.Session, itSameB) (itEchoReply, error) {
					return itEchoReply{}, nil
				})
			}},
		{"message then request",
			func(r netmsg.Registrar) func() {
				return netmsg.AddMessageHandler(r, func(context.Context, *netmsg.Session, *itSameA) {})
			},
			func(r netmsg.Registrar) func() {
				return netmsg.AddRequestHandler(r, func(context.Context, *netmsg.Session, itSameB) (itEchoReply, error) {
					return itEchoReply{}, nil
				})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := netmsg.NewServer()
			cli := netmsg.NewClient("ws://127.0.0.1:1/")
			defer func() { require.NoError(t, cli.Close()) }()
			for _, r := range []netmsg.Registrar{srv, cli} {
				rm := tc.first(r)
				v := itPanicValue(func() { tc.second(r) })
				require.NotNil(t, v, "registering a second Go type under %q must panic", "it.same")
				msg := fmt.Sprint(v)
				assert.Contains(t, msg, "itSameA", "the panic names the first type")
				assert.Contains(t, msg, "itSameB", "the panic names the second type")
				assert.Contains(t, msg, "it.same", "the panic names the wire name")
				// Once the first is gone the second may take the name.
				rm()
				assert.NotPanics(t, func() { tc.second(r)() })
			}
			require.NoError(t, srv.Shutdown(context.Background()))
		})
	}
}

// itPanicValue runs f and returns what it panicked with, or nil.
func itPanicValue(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// itOnlySession returns the server's one open session.
func itOnlySession(t testing.TB, srv *netmsg.Server) *netmsg.Session {
	t.Helper()
	require.Eventually(t, func() bool { return srv.SessionCount() == 1 }, nettest.Wait, time.Millisecond)
	for s := range srv.Sessions() {
		return s
	}
	t.Fatal("no session")
	return nil
}
