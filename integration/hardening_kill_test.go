package integration_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHardeningServerKilled: with 10,000 requests in flight the server dies
// (its listener and every connection it accepted are closed, with RST):
// every caller gets a *CloseError at once, not after its minute-long
// timeout, the dead session takes no more calls, and the goroutines of both
// ends return to where they were. Not parallel: it counts goroutines.
func TestHardeningServerKilled(t *testing.T) {
	const n = 10_000
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	// The server's session of this client has a full mailbox when the link
	// dies, so it is not reading: it notices the dead socket when its next
	// heartbeat ping fails to write, hence a short interval here.
	srv := hdStartServer(t, netmsg.WithHeartbeat(200*time.Millisecond, 2*time.Second))
	hold := hdAddHold(srv.Server)
	cli := netmsg.NewClient(srv.URL, netmsg.WithRequestTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	require.NoError(t, cli.Connect(ctx))
	cancel()
	ss := srv.NextOpen(t)
	sess := cli.Session()
	require.NotNil(t, sess)

	type result struct {
		err error
		at  time.Time
	}
	results := make(chan result, n)
	var entered sync.WaitGroup
	entered.Add(n)
	for i := range n {
		go func() {
			entered.Done()
			_, err := netmsg.SendRequest(context.Background(), cli, hdHold{Key: strconv.Itoa(i)})
			results <- result{err: err, at: time.Now()}
		}()
	}
	entered.Wait()
	select {
	case <-hold.started:
	case <-time.After(nettest.Wait):
		t.Fatal("no request reached the server")
	}
	time.Sleep(500 * time.Millisecond) // let the callers queue their requests
	select {
	case r := <-results:
		t.Fatalf("a call returned before the kill: %v", r.err)
	default:
	}

	killAt := time.Now()
	srv.Kill()

	var worst time.Duration
	reasons := map[string]int{}
	timeout := time.After(2 * nettest.Wait)
	for i := range n {
		select {
		case r := <-results:
			worst = max(worst, r.at.Sub(killAt))
			var ce *netmsg.CloseError
			if assert.True(t, errors.As(r.err, &ce), "call %d: want a *CloseError, got %v", i, r.err) {
				reasons[ce.Reason.String()]++
			}
		case <-timeout:
			t.Fatalf("only %d of %d callers returned within %v of the kill", i, n, 2*nettest.Wait)
		}
	}
	t.Logf("%d callers failed within %v of the kill; reasons %v", n, worst, reasons)
	assert.Less(t, worst, nettest.Wait, "the slowest caller returned %v after the kill", worst)
	assert.Equal(t, n, reasons[netmsg.CloseNetworkError.String()], "close reasons %v", reasons)

	// The dead session's table is closed: a call on it fails at once with
	// the same *CloseError, and the client has no session to send on.
	select {
	case <-sess.Done():
	case <-time.After(nettest.Wait):
		t.Fatal("the client's session did not end")
	}
	start := time.Now()
	_, err := netmsg.SendRequest(context.Background(), sess, hdHold{Key: "late"})
	var ce *netmsg.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Same(t, sess.Err(), ce)
	assert.Less(t, time.Since(start), time.Second)
	_, err = netmsg.SendRequest(context.Background(), cli, hdHold{Key: "late"})
	assert.ErrorIs(t, err, netmsg.ErrNotConnected)

	// The server's side of the dead link ends too, and its blocked handler
	// sees its ctx cancelled.
	sc := srv.CloseOf(t, ss)
	t.Logf("server session closed %v after the kill: %v", sc.At.Sub(killAt), sc.Err)
	require.NoError(t, cli.Close())
	require.NoError(t, srv.Stop(t, 10*time.Second))
	after := nettest.GoroutinesSettle(base, 10*time.Second)
	assert.LessOrEqual(t, after, base, "goroutines after the kill (before: %d)", base)
}
