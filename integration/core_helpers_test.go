package integration_test

// Contracts and helpers of the core end-to-end tests. Every top-level name
// here starts with "it" so it cannot collide with the lifecycle and fault
// tests of this package (whose helpers start with "lc"). Servers, clients,
// recorders and raw peers come from internal/nettest.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/require"
)

// itLong is the timeout of calls that must never run into it.
const itLong = 60 * time.Second

// ---- contracts ----

type itEcho struct {
	netmsg.Returns[itEchoReply]
	Text string
	N    int
}

type itEchoReply struct {
	Text string
	N    int
}

// itWhoAmI is answered with the ID of the session the handler runs on.
type itWhoAmI struct {
	netmsg.Returns[itWhoAmIReply]
}

type itWhoAmIReply struct {
	ID         string
	Serializer string
}

// itBlock is answered by handlers that wait for their ctx to end.
type itBlock struct {
	netmsg.Returns[itEchoReply]
	Key string
}

type itNote struct {
	Seq  int
	Text string
}

// itMarker is a message sent after others to know they were handled (a
// session's messages are handled in order).
type itMarker struct{ Seq int }

// ---- handlers ----

func itAddWhoAmI(r netmsg.Registrar) func() {
	return netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, _ itWhoAmI) (itWhoAmIReply, error) {
		return itWhoAmIReply{ID: s.ID(), Serializer: s.Serializer().Name()}, nil
	})
}

// itWhoAmIOf returns the ID of the server session of p.
func itWhoAmIOf(t testing.TB, p netmsg.Peer) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := netmsg.SendRequest(ctx, p, itWhoAmI{})
	require.NoError(t, err)
	require.NotEmpty(t, r.ID)
	return r.ID
}

// itBlocker answers itBlock once the handler's ctx ends, reporting starts and
// ends (with ctx's error) on its channels.
type itBlocker struct {
	started chan string
	ended   chan itEnded
}

type itEnded struct {
	Key      string
	Err      error
	Deadline time.Time
	HasDL    bool
}

func itAddBlocker(r netmsg.Registrar) *itBlocker {
	b := &itBlocker{started: make(chan string, 1024), ended: make(chan itEnded, 1024)}
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req itBlock) (itEchoReply, error) {
		dl, ok := ctx.Deadline()
		b.started <- req.Key
		select {
		case <-ctx.Done():
		case <-time.After(2 * itLong):
		}
		b.ended <- itEnded{Key: req.Key, Err: ctx.Err(), Deadline: dl, HasDL: ok}
		return itEchoReply{Text: req.Key}, ctx.Err()
	})
	return b
}

// ---- waiting ----

type itResult[R any] struct {
	Resp R
	Err  error
	Took time.Duration
}

// itGo runs SendRequest on a goroutine; the test waits for it before it ends.
func itGo[R any](t testing.TB, ctx context.Context, p netmsg.Peer, req netmsg.Request[R]) <-chan itResult[R] {
	ch := make(chan itResult[R], 1)
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		r, err := netmsg.SendRequest(ctx, p, req)
		ch <- itResult[R]{Resp: r, Err: err, Took: time.Since(start)}
	}()
	t.Cleanup(wg.Wait)
	return ch
}

// itStartRawServer starts a bare gws server whose connections run
// onEnvelope, on their read loops, for every envelope the client sends.
func itStartRawServer(t testing.TB, onEnvelope func(c *gws.Conn, env *nettest.Env)) *nettest.GwsServer {
	t.Helper()
	return nettest.StartGwsServer(t, nettest.GwsConfig{OnMessage: func(c *gws.Conn, b []byte) {
		if env, err := nettest.DecodeEnv(b); err == nil {
			onEnvelope(c, env)
		}
	}})
}
