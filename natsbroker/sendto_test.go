package natsbroker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Three nodes with two devices each: every node reaches every device, on
// its own node and on the others, with SendTo and SendRequestTo.
func TestSendToEveryNode(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3, netmsg.WithRequestTimeout(long))
	var devices []*device
	for _, n := range nodes {
		for range 2 {
			devices = append(devices, connectDevice(t, n))
		}
	}
	ids := make(map[string]bool)
	for _, d := range devices {
		ids[d.ID(t)] = true
	}
	require.Len(t, ids, len(devices), "session ids are unique across nodes")

	ctx := context.Background()
	for i, from := range nodes {
		for j, d := range devices {
			text := fmt.Sprintf("from node %d to device %d", i, j)
			require.NoError(t, from.SendTo(ctx, d.ID(t), Note{Text: text}))
			assert.Equal(t, text, d.note(t).Text)

			pong, err := netmsg.SendRequestTo(ctx, from.Server, d.ID(t), Ping{Text: text})
			require.NoError(t, err)
			assert.Equal(t, Pong{Text: text, Session: d.ID(t)}, pong)
		}
	}
	for _, d := range devices {
		d.noNote(t, 50*time.Millisecond) // each note arrived once
	}
}

// Metadata on the caller's ctx reaches the handler on the other node.
func TestSendRequestToCarriesMetadata(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2)
	c := netmsg.NewClient(nodes[1].URL)
	got := make(chan map[string]string, 2)
	netmsg.AddRequestHandler(c, func(ctx context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
		got <- netmsg.Metadata(ctx)
		return Pong{Text: p.Text}, nil
	})
	netmsg.AddMessageHandler(c, func(ctx context.Context, _ *netmsg.Session, _ Note) { got <- netmsg.Metadata(ctx) })
	require.NoError(t, c.Connect(context.Background()))
	defer c.Close()

	ctx := netmsg.WithMetadata(context.Background(), "trace", "abc")
	_, err := netmsg.SendRequestTo(ctx, nodes[0].Server, c.Session().ID(), Ping{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"trace": "abc"}, <-got)
	require.NoError(t, nodes[0].SendTo(ctx, c.Session().ID(), Note{}))
	assert.Equal(t, map[string]string{"trace": "abc"}, <-got)
}

// The remote handler's error code, its timeout and the caller's cancel come
// back (and go out) as they do for a session on the caller's own node.
func TestSendRequestToErrorsAsIfLocal(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2, netmsg.WithRequestTimeout(long))
	local := connectDevice(t, nodes[0])
	remote := connectDevice(t, nodes[1])
	from := nodes[0].Server

	for _, tc := range []struct {
		name string
		d    *device
	}{{"local", local}, {"remote", remote}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := netmsg.SendRequestTo(context.Background(), from, tc.d.ID(t), Refuse{})
			var e *netmsg.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, netmsg.CodePermissionDenied, e.Code)
			assert.Equal(t, "refused by the device", e.Message)

			// A deadline: the handler's ctx carries it and ends; the caller
			// gets CodeDeadlineExceeded.
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err = netmsg.SendRequestTo(ctx, from, tc.d.ID(t), Stall{})
			cancel()
			elapsed := time.Since(start)
			require.ErrorAs(t, err, &e)
			assert.Equal(t, netmsg.CodeDeadlineExceeded, e.Code)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Less(t, elapsed, wait)
			select {
			case end := <-tc.d.stalled:
				// Whether the handler's own deadline or the caller's CANCEL
				// (sent when the caller's deadline passes) ends it first is
				// a race, here as on a local session.
				assert.Error(t, end.err)
				require.False(t, end.deadline.IsZero(), "the handler's ctx has no deadline")
				assert.WithinDuration(t, start.Add(300*time.Millisecond), end.deadline, 250*time.Millisecond)
			case <-time.After(wait):
				t.Fatal("the handler's ctx did not end at the deadline")
			}

			// Cancelled by the caller: the handler's ctx is cancelled too.
			ctx, cancel = context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := netmsg.SendRequestTo(ctx, from, tc.d.ID(t), Stall{})
				errc <- err
			}()
			time.Sleep(200 * time.Millisecond) // let it reach the handler
			cancel()
			select {
			case err = <-errc:
				assert.ErrorIs(t, err, context.Canceled)
				assert.Equal(t, netmsg.CodeCanceled, netmsg.CodeOf(err))
			case <-time.After(wait):
				t.Fatal("the cancelled call did not return")
			}
			select {
			case end := <-tc.d.stalled:
				assert.ErrorIs(t, end.err, context.Canceled)
			case <-time.After(wait):
				t.Fatal("the handler's ctx was not cancelled")
			}
		})
	}
}

// A session id that no node has is answered with ErrNoSession at once, not
// after the (minute-long) timeout: on the caller's node, by a live node that
// no longer has the session, and when its node is gone.
func TestErrNoSessionIsPrompt(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3, netmsg.WithRequestTimeout(long))
	gone := connectDevice(t, nodes[1])
	goneID := gone.ID(t)
	require.NoError(t, gone.Close())
	eventually(t, "node 1 forgets the session", func() bool { return nodes[1].SessionCount() == 0 })
	own := connectDevice(t, nodes[0])
	ownNode := own.ID(t)[:strings.LastIndexByte(own.ID(t), '-')]
	onDead := connectDevice(t, nodes[2])
	deadID := onDead.ID(t)
	require.NoError(t, nodes[2].Shutdown())

	for name, id := range map[string]string{
		"closed session on a live node":   goneID,
		"session of a node shut down":     deadID,
		"unknown node":                    "zzzzzzzz-1",
		"malformed id":                    "not an id.*",
		"empty id":                        "",
		"unknown session of the own node": ownNode + "-zzzzzz",
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := nodes[0].SendTo(context.Background(), id, Note{})
			assert.ErrorIs(t, err, netmsg.ErrNoSession)
			_, err = netmsg.SendRequestTo(context.Background(), nodes[0].Server, id, Ping{})
			assert.ErrorIs(t, err, netmsg.ErrNoSession)
			assert.Equal(t, netmsg.CodeNotFound, netmsg.CodeOf(err))
			elapsed := time.Since(start)
			assert.Less(t, elapsed, wait)
			t.Logf("two calls answered in %v", elapsed)
		})
	}
}

// A session closing on the other node fails a call waiting on it with the
// session's *CloseError, as it would locally.
func TestSendRequestToSessionClosing(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2, netmsg.WithRequestTimeout(long))
	d := connectDevice(t, nodes[1])
	id := d.ID(t)
	errc := make(chan error, 1)
	go func() {
		_, err := netmsg.SendRequestTo(context.Background(), nodes[0].Server, id, Stall{})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	s, ok := nodes[1].Session(id)
	require.True(t, ok)
	go func() { _ = s.Kick("bye") }()
	select {
	case err := <-errc:
		var ce *netmsg.CloseError
		require.ErrorAs(t, err, &ce, "got %v", err)
		assert.Equal(t, netmsg.ClosePolicyViolation, ce.Reason)
		assert.Equal(t, "bye", ce.Text)
		assert.ErrorIs(t, err, netmsg.ErrClosed)
	case <-time.After(wait):
		t.Fatal("the call did not fail when the session closed")
	}
}

// A message too large for the other node's limit fails there and the
// caller hears why.
func TestSendToTooLarge(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2, netmsg.WithMaxMessageSize(1024))
	d := connectDevice(t, nodes[1])
	big := Note{Text: string(make([]byte, 4096))}
	err := nodes[0].SendTo(context.Background(), d.ID(t), big)
	assert.True(t, errors.Is(err, netmsg.ErrMessageTooLarge), "got %v", err)
	require.NoError(t, nodes[0].SendTo(context.Background(), d.ID(t), Note{Text: "small"}))
	assert.Equal(t, "small", d.note(t).Text)
}
