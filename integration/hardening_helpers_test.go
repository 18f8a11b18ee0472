package integration_test

// Contracts and helpers of the hardening_*_test.go files. Every top-level
// name here starts with "hd" so it cannot collide with the other files of
// this package. Servers, clients, raw peers, frames and memory measuring
// come from internal/nettest.

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---- contracts ----

type hdEcho struct {
	netmsg.Returns[hdEchoReply]
	Text string
}

type hdEchoReply struct{ Text string }

// hdHold blocks in its handler until released (see hdHolder).
type hdHold struct {
	netmsg.Returns[hdEchoReply]
	Key string
}

// hdText is a message whose JSON size grows one byte per byte of S.
type hdText struct{ S string }

// ---- servers ----

// hdServer is a server that fails the test on Error-level log records (no
// hardening test makes anything panic) and records its sessions.
type hdServer struct {
	*nettest.Server
	rec *nettest.Recorder
}

// hdStartServer serves a new server on 127.0.0.1:0; see hdServer.
func hdStartServer(t testing.TB, opts ...netmsg.ServerOption) *hdServer {
	t.Helper()
	return hdStartServerOn(t, nettest.Listen{}, opts...)
}

// hdStartServerOn is hdStartServer listening as l says.
func hdStartServerOn(t testing.TB, l nettest.Listen, opts ...netmsg.ServerOption) *hdServer {
	t.Helper()
	l.StrictLog = true
	rec := nettest.NewRecorder()
	return &hdServer{Server: nettest.StartServerOn(t, l, rec.ServerOptions(opts...)...), rec: rec}
}

// NextOpen waits for the next session to open.
func (s *hdServer) NextOpen(t testing.TB) *netmsg.Session {
	t.Helper()
	return s.rec.NextOpen(t)
}

// CloseOf waits for OnSessionClose of ss (other sessions' closes are dropped).
func (s *hdServer) CloseOf(t testing.TB, ss *netmsg.Session) nettest.Closed {
	t.Helper()
	return s.rec.CloseOf(t, ss)
}

// hdEchoHandler answers hdEcho with its text.
func hdEchoHandler(r netmsg.Registrar) {
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req hdEcho) (hdEchoReply, error) {
		return hdEchoReply{Text: req.Text}, nil
	})
}

// hdHolder answers hdHold once released (or when the request's ctx ends).
type hdHolder struct {
	release chan struct{}
	started chan string
	once    sync.Once
}

func hdAddHold(r netmsg.Registrar) *hdHolder {
	h := &hdHolder{release: make(chan struct{}), started: make(chan string, 1<<16)}
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req hdHold) (hdEchoReply, error) {
		h.started <- req.Key
		select {
		case <-h.release:
			return hdEchoReply{Text: "released " + req.Key}, nil
		case <-ctx.Done():
			return hdEchoReply{}, ctx.Err()
		}
	})
	return h
}

func (h *hdHolder) Release() { h.once.Do(func() { close(h.release) }) }

// hdBystander is a well-behaved client on the same server as a misbehaving
// peer; it must not notice anything.
type hdBystander struct {
	C           *netmsg.Client
	sessionID   string
	disconnects atomic.Int32
}

func hdNewBystander(t testing.TB, srv *hdServer) *hdBystander {
	t.Helper()
	b := &hdBystander{}
	b.C = nettest.Connect(t, srv.URL, netmsg.WithOnDisconnect(func(*netmsg.CloseError) { b.disconnects.Add(1) }))
	srv.NextOpen(t)
	b.sessionID = b.C.Session().ID()
	b.AssertFine(t)
	return b
}

// AssertFine checks that the bystander's first session is still up and answers.
func (b *hdBystander) AssertFine(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	r, err := netmsg.SendRequest(ctx, b.C, hdEcho{Text: "still here"})
	require.NoError(t, err, "bystander's request")
	assert.Equal(t, "still here", r.Text)
	assert.Zero(t, b.disconnects.Load(), "bystander disconnects")
	if s := b.C.Session(); assert.NotNil(t, s) {
		assert.Equal(t, b.sessionID, s.ID(), "bystander's session was replaced")
	}
}

// hdContains reports whether s contains every part.
func hdContains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
