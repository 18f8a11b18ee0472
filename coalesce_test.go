package netmsg_test

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netmsg/netmsg"
)

// countingListener counts the Write calls on the connections it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// Answers to pipelined requests share write calls: while requests wait in
// the mailbox, the dispatcher hands its answers to a writer and goes on with
// the next request, and what it answers meanwhile joins the writer's next
// batch.
func TestPipelinedAnswersShareWrites(t *testing.T) {
	t.Parallel()
	srv := netmsg.NewServer()
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
		return Pong{N: p.N}, nil
	})
	hs := httptest.NewUnstartedServer(srv)
	ln := &countingListener{Listener: hs.Listener}
	hs.Listener = ln
	hs.Start()
	cli := netmsg.NewClient("ws" + strings.TrimPrefix(hs.URL, "http"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	t.Cleanup(func() {
		require.NoError(t, cli.Close())
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		require.NoError(t, srv.Shutdown(sctx))
		hs.Close()
	})

	const rounds, inFlight = 5, 100
	before := ln.writes.Load()
	for range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, inFlight)
		for i := range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := netmsg.SendRequest(ctx, cli, Ping{N: i})
				if err == nil && resp.N != i {
					err = assert.AnError
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	writes := ln.writes.Load() - before
	t.Logf("%d answers in %d writes", rounds*inFlight, writes)
	assert.Less(t, writes, int64(rounds*inFlight*3/4), "answers to pipelined requests are written one by one")
}
