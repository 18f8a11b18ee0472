package integration_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Many clients connect and disconnect: the registry, the count, the lookup,
// the iteration and the open/close events stay exact.
func TestSessionsConnectDisconnect(t *testing.T) {
	t.Parallel()
	const n = 20
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	itAddWhoAmI(srv)
	assert.Equal(t, 0, srv.SessionCount())

	clients := make([]*netmsg.Client, n)
	for i := range clients {
		clients[i] = nettest.NewClient(t, srv.URL)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- c.Connect(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// A request proves the server's session is registered and reading.
	ids := make([]string, n)
	seen := make(map[string]int)
	for i, c := range clients {
		ids[i] = itWhoAmIOf(t, c)
		seen[ids[i]]++
		assert.Equal(t, netmsg.Connected, c.State())
		require.NotNil(t, c.Session())
	}
	require.Len(t, seen, n, "every client has its own server session with a unique ID")
	assert.Equal(t, n, srv.SessionCount())

	opened := ev.Opened()
	require.Len(t, opened, n, "OnSessionOpen once per session")
	openedIDs := make(map[string]bool)
	for _, s := range opened {
		openedIDs[s.ID()] = true
	}
	for _, id := range ids {
		assert.True(t, openedIDs[id], "OnSessionOpen saw session %s", id)
		s, ok := srv.Session(id)
		require.True(t, ok, "Session(%q)", id)
		assert.Equal(t, id, s.ID())
		assert.Nil(t, s.Err(), "an open session has no close error")
		require.NotNil(t, s.RemoteAddr())
		tcp, ok := s.RemoteAddr().(*net.TCPAddr)
		if assert.True(t, ok, "RemoteAddr is %T", s.RemoteAddr()) {
			assert.True(t, tcp.IP.IsLoopback(), "RemoteAddr %v", tcp)
		}
		select {
		case <-s.Done():
			t.Errorf("session %s is done while open", id)
		default:
		}
	}
	_, ok := srv.Session("no-such-session")
	assert.False(t, ok)

	// Sessions() yields each open session once.
	iterated := make(map[string]int)
	for s := range srv.Sessions() {
		iterated[s.ID()]++
	}
	assert.Len(t, iterated, n)
	for _, id := range ids {
		assert.Equal(t, 1, iterated[id], "Sessions() yields %s once", id)
	}
	// Breaking out of the iteration stops it.
	count := 0
	for range srv.Sessions() {
		count++
		if count == 3 {
			break
		}
	}
	assert.Equal(t, 3, count)

	// Close half one by one: the count falls with each.
	for i := range n / 2 {
		srvSess, ok := srv.Session(ids[i])
		require.True(t, ok)
		require.NoError(t, clients[i].Close())
		assert.Equal(t, netmsg.Closed, clients[i].State())
		require.Eventually(t, func() bool { return srv.SessionCount() == n-i-1 }, nettest.Wait, time.Millisecond,
			"SessionCount after closing %d clients: %d", i+1, srv.SessionCount())
		_, ok = srv.Session(ids[i])
		assert.False(t, ok, "Session(%q) after its client closed", ids[i])
		select {
		case <-srvSess.Done():
		case <-time.After(nettest.Wait):
			t.Fatalf("server session %s not done after its client closed", ids[i])
		}
		ce := srvSess.Err()
		require.NotNil(t, ce)
		assert.Equal(t, netmsg.ClosePeerNormal, ce.Reason, "%v", ce)
		assert.True(t, ce.Remote, "%v", ce)
		assert.Error(t, srvSess.Context().Err(), "the session's context ends with it")
		assert.Same(t, ce, context.Cause(srvSess.Context()), "the context's cause is the *CloseError")
	}
	// The rest at once.
	for _, c := range clients[n/2:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Close())
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool { return srv.SessionCount() == 0 }, nettest.Wait, time.Millisecond,
		"SessionCount after all clients closed: %d", srv.SessionCount())
	for range srv.Sessions() {
		t.Error("Sessions() yields a session after all closed")
	}

	// OnSessionClose exactly once per session, with the right session.
	for range n {
		c := nettest.Recv(t, ev.Close, "OnSessionClose")
		require.NotNil(t, c.Err)
		assert.ErrorIs(t, c.Err, netmsg.ErrClosed)
		assert.Equal(t, netmsg.ClosePeerNormal, c.Err.Reason, "%v", c.Err)
	}
	time.Sleep(200 * time.Millisecond) // room for a duplicate callback to show up
	nettest.None(t, ev.Close, 0, "extra OnSessionClose")
	closes := ev.CloseCounts()
	assert.Len(t, closes, n)
	for _, id := range ids {
		assert.Equal(t, 1, closes[id], "OnSessionClose calls for %s", id)
	}
	assert.Len(t, ev.Opened(), n, "no extra OnSessionOpen")
}

// Sessions that come and go while others stay: the registry holds exactly
// the live ones.
func TestSessionsChurn(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	itAddWhoAmI(srv)
	stay := nettest.Connect(t, srv.URL)
	stayID := itWhoAmIOf(t, stay)

	const rounds = 10
	for i := range rounds {
		c := nettest.Connect(t, srv.URL)
		id := itWhoAmIOf(t, c)
		assert.NotEqual(t, stayID, id)
		assert.Equal(t, 2, srv.SessionCount(), "round %d", i)
		require.NoError(t, c.Close())
		require.Eventually(t, func() bool { return srv.SessionCount() == 1 }, nettest.Wait, time.Millisecond)
		_, ok := srv.Session(id)
		assert.False(t, ok)
	}
	s, ok := srv.Session(stayID)
	require.True(t, ok)
	assert.Nil(t, s.Err())
	assert.Equal(t, stayID, itWhoAmIOf(t, stay), "the staying client kept its session")
	assert.Len(t, ev.Opened(), rounds+1)
	require.Eventually(t, func() bool { return len(ev.CloseCounts()) == rounds }, nettest.Wait, time.Millisecond)
	for id, n := range ev.CloseCounts() {
		assert.Equal(t, 1, n, "OnSessionClose calls for %s", id)
		assert.NotEqual(t, stayID, id)
	}
}

// OnSessionClose runs "after the session closed": inside it the session
// already reports its close (Err, Done, Context) and is gone from the registry.
func TestSessionLooksClosedInsideOnSessionClose(t *testing.T) {
	t.Parallel()
	type state struct {
		ce         *netmsg.CloseError
		err        *netmsg.CloseError
		done       bool
		ctxErr     error
		registered bool
	}
	states := make(chan state, 4)
	var srv *nettest.Server
	srv = nettest.StartServer(t, netmsg.WithOnSessionClose(func(s *netmsg.Session, ce *netmsg.CloseError) {
		st := state{ce: ce, err: s.Err(), ctxErr: s.Context().Err()}
		select {
		case <-s.Done():
			st.done = true
		default:
		}
		_, st.registered = srv.Session(s.ID())
		states <- st
	}))
	itAddWhoAmI(srv)
	cli := nettest.Connect(t, srv.URL)
	itWhoAmIOf(t, cli)
	require.NoError(t, cli.Close())

	st := nettest.Recv(t, states, "OnSessionClose")
	require.NotNil(t, st.ce)
	assert.False(t, st.registered, "Server.Session finds a session inside its OnSessionClose")
	assert.Error(t, st.ctxErr, "Session.Context() is not cancelled inside OnSessionClose")
	assert.Same(t, st.ce, st.err, "Session.Err() inside OnSessionClose is not the *CloseError passed to it")
	assert.True(t, st.done, "Session.Done() is not closed inside OnSessionClose")
}

// A client knows its session id when Connect returns; Server.Session finds
// it from that moment (the server registers it just after writing the
// handshake answer, and Session waits for a handshake in flight), and
// Server.SendTo reaches it.
func TestSessionFoundAsSoonAsConnected(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	for range 50 {
		c := nettest.Connect(t, srv.URL)
		id := c.Session().ID()
		s, ok := srv.Session(id)
		require.True(t, ok, "session %s not found right after Connect", id)
		assert.Equal(t, id, s.ID())
		require.NoError(t, srv.SendTo(context.Background(), id, itNote{Text: "hi"}))
		require.NoError(t, c.Close())
	}
	_, ok := srv.Session("no-such-id")
	assert.False(t, ok)
	assert.ErrorIs(t, srv.SendTo(context.Background(), "no-such-id", itNote{}), netmsg.ErrNoSession)
}
