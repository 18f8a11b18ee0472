package integration_test

// Regression test for request ids reused after a CANCEL (issue 9, defect 9).

import (
	"context"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDefectCancelThenReuseID: the protocol lets a peer reuse a request id
// once the request is no longer outstanding, and a CANCEL ends it. On the
// old core the second request with the id was never answered, or got the
// cancelled request's answer. Now it is a new request with its own answer,
// and the cancelled handler's late result answers nothing.
func TestDefectCancelThenReuseID(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions(netmsg.WithSessionConcurrency(2))...)
	started := make(chan string, 8)
	gates := map[string]chan struct{}{"A": make(chan struct{}), "B": make(chan struct{})}
	netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, r dfHold) (dfHoldReply, error) {
		started <- r.Key
		if g := gates[r.Key]; g != nil {
			<-g // ignores ctx: finishes after it was cancelled
		}
		return dfHoldReply{Key: r.Key}, nil
	})
	t.Cleanup(func() {
		for _, g := range gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
	})
	p := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	rec.NextOpen(t)
	name := netmsg.TypeName(dfHold{})
	const id = 7

	// A runs and is cancelled; B reuses the id while A still runs.
	p.Send(t, nettest.Envelope(wire.KindRequest, id, name, `{"Key":"A"}`))
	require.Equal(t, "A", nettest.Recv(t, started, "A's handler"))
	p.Send(t, nettest.Envelope(wire.KindCancel, id, "", ""))
	p.Send(t, nettest.Envelope(wire.KindRequest, id, name, `{"Key":"B"}`))
	require.Equal(t, "B", nettest.Recv(t, started, "B's handler"), "the reused id was refused or not run")

	// A's late result must not answer B's id.
	close(gates["A"])
	nettest.None(t, p.Msgs, 300*time.Millisecond, "an answer from the cancelled handler")
	close(gates["B"])
	env := p.NextEnvelope(t)
	assert.Equal(t, wire.KindResponse, env.Kind, "answer: %+v", env)
	assert.EqualValues(t, id, env.ID)
	assert.JSONEq(t, `{"Key":"B"}`, env.Payload, "the reused id gets its own answer")

	// C reuses the id once more after B was answered: a fresh request again.
	p.Send(t, nettest.Envelope(wire.KindRequest, id, name, `{"Key":"C"}`))
	require.Equal(t, "C", nettest.Recv(t, started, "C's handler"))
	env = p.NextEnvelope(t)
	assert.EqualValues(t, id, env.ID)
	assert.JSONEq(t, `{"Key":"C"}`, env.Payload)
	nettest.None(t, p.Msgs, 100*time.Millisecond, "a further answer")
}
