package integration_test

// Contracts and helpers of the lifecycle_*_test.go and fault_*_test.go files.
// Every top-level name here starts with "lc" so it cannot collide with the
// other files of this package. Servers, clients, recorders and raw peers come
// from internal/nettest.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/faultnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fast heartbeats for tests: ping every 100 ms, lost after 500 ms of silence.
// Tests that assert the absence of a false loss use lcSafeTimeout (ten
// intervals) instead, so that a scheduling stall on a loaded machine is not
// mistaken for a library bug.
const (
	lcInterval    = 100 * time.Millisecond
	lcTimeout     = 500 * time.Millisecond
	lcSafeTimeout = time.Second
)

// ---- contracts ----

type lcEcho struct {
	netmsg.Returns[lcEchoReply]
	Text string
}

type lcEchoReply struct{ Text string }

// lcHold is answered by handlers that block (until released or ctx ends).
type lcHold struct {
	netmsg.Returns[lcEchoReply]
	Key string
}

type lcNote struct{ Text string }

type lcBlob struct{ Data []byte }

// ---- servers ----

// lcRelay starts a fault-injecting relay in front of target (host:port).
func lcRelay(t testing.TB, target string) *faultnet.Relay {
	t.Helper()
	r, err := faultnet.New(target)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	return r
}

func lcRelayURL(r *faultnet.Relay) string { return "ws://" + r.Addr() + "/" }

// ---- clients ----

// lcEchoHandler answers lcEcho with prefix+Text.
func lcEchoHandler(r netmsg.Registrar, prefix string) {
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req lcEcho) (lcEchoReply, error) {
		return lcEchoReply{Text: prefix + req.Text}, nil
	})
}

// lcHoldHandler answers lcHold after the request's ctx ends (returning its
// error), counting calls and reporting each start on started.
type lcHoldHandler struct {
	mu      sync.Mutex
	calls   int
	started chan string
	ended   chan string
}

func lcAddHold(r netmsg.Registrar) *lcHoldHandler {
	h := &lcHoldHandler{started: make(chan string, 64), ended: make(chan string, 64)}
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req lcHold) (lcEchoReply, error) {
		h.mu.Lock()
		h.calls++
		h.mu.Unlock()
		h.started <- req.Key
		defer func() { h.ended <- req.Key }()
		<-ctx.Done()
		return lcEchoReply{}, ctx.Err()
	})
	return h
}

func (h *lcHoldHandler) Calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// lcSettle gives stray duplicate callbacks time to show up.
func lcSettle() { time.Sleep(200 * time.Millisecond) }

// ---- calls in the background ----

type lcResult struct {
	Reply lcEchoReply
	Err   error
	Took  time.Duration
}

// lcGoRequest runs SendRequest on its own goroutine; the result arrives on the
// returned channel. When the test ends the call is cancelled (if it is still
// waiting) and waited for, so a failed test leaves no goroutine behind.
func lcGoRequest[Req netmsg.Request[lcEchoReply]](t testing.TB, ctx context.Context, p netmsg.Peer, req Req) <-chan lcResult {
	ch := make(chan lcResult, 1)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		r, err := netmsg.SendRequest(ctx, p, req)
		ch <- lcResult{Reply: r, Err: err, Took: time.Since(start)}
	}()
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(nettest.Wait):
			t.Errorf("a %T call did not return after its ctx was cancelled", req)
		}
	})
	return ch
}

func lcAwait(t testing.TB, ch <-chan lcResult, d time.Duration) lcResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("call did not return within %v", d)
		return lcResult{}
	}
}

// lcAssertPending checks that ch has no result for d.
func lcAssertPending(t testing.TB, ch <-chan lcResult, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("call returned early: %+v", r)
	case <-time.After(d):
	}
}
