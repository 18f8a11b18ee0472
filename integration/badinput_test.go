package integration_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itEchoBadShape claims itEcho's wire name with a field of another type.
type itEchoBadShape struct {
	netmsg.Returns[itEchoReply]
	Text []int
}

func (itEchoBadShape) MessageType() string { return netmsg.TypeName(itEcho{}) }

type itNoteBadShape struct{ Seq string }

func (itNoteBadShape) MessageType() string { return netmsg.TypeName(itNote{}) }

// A frame that is not a valid envelope closes that session with
// CloseProtocolError; other sessions carry on.
func TestMalformedFrameClosesOnlyThatSession(t *testing.T) {
	t.Parallel()
	valid := wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, netmsg.TypeName(itNote{}), []byte(`{"Seq":1}`), 0, nil)
	cases := []struct {
		name  string
		op    gws.Opcode
		frame []byte
	}{
		{"garbage", gws.OpcodeBinary, []byte{0xff, 0xff, 0xff, 0xff}},
		{"empty frame", gws.OpcodeBinary, []byte{}},
		{"truncated envelope", gws.OpcodeBinary, valid[:len(valid)-3]},
		{"unknown kind", gws.OpcodeBinary, wire.AppendHeaderAndPayload(nil, wire.Kind(9), 1, "x", nil, 0, nil)},
		{"JSON instead of an envelope", gws.OpcodeBinary, []byte(`{"kind":"MESSAGE","type":"x"}`)},
		{"valid envelope in a text frame", gws.OpcodeText, valid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := nettest.NewRecorder()
			srv := nettest.StartServer(t, ev.ServerOptions()...)
			itAddWhoAmI(srv)
			notes := make(chan int, 4)
			netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m itNote) { notes <- m.Seq })

			good := nettest.Connect(t, srv.URL)
			goodID := itWhoAmIOf(t, good)
			goodSess := good.Session()
			nettest.Recv(t, ev.Open, "the good client's session")

			raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
			rawSess := nettest.Recv(t, ev.Open, "the raw client's session")
			require.NotEqual(t, goodID, rawSess.ID())
			// A valid frame first: the raw client speaks the protocol.
			raw.Send(t, valid)
			assert.Equal(t, 1, nettest.Recv(t, notes, "the raw client's valid message"))

			require.NoError(t, raw.Conn.WriteMessage(tc.op, tc.frame))
			closed := nettest.Recv(t, ev.Close, "OnSessionClose for the raw client")
			require.Same(t, rawSess, closed.S, "the session that sent garbage is the one closed")
			assert.Equal(t, netmsg.CloseProtocolError, closed.Err.Reason, "%v", closed.Err)
			assert.EqualValues(t, 1002, closed.Err.Code, "%v", closed.Err)
			assert.False(t, closed.Err.Remote, "the server closed it: %v", closed.Err)
			assert.ErrorIs(t, closed.Err, netmsg.ErrClosed)
			nettest.Recv(t, rawSess.Done(), "the raw client's session to be done")
			assert.Same(t, closed.Err, rawSess.Err())
			cerr := raw.NextClose(t)
			assert.EqualValues(t, 1002, nettest.GwsCloseCode(cerr), "the raw client got close code 1002: %v", cerr)

			// The good client is unaffected.
			assert.Equal(t, goodID, itWhoAmIOf(t, good))
			assert.Same(t, goodSess, good.Session())
			assert.Nil(t, goodSess.Err())
			require.NoError(t, good.Send(context.Background(), itNote{Seq: 2}))
			assert.Equal(t, 2, nettest.Recv(t, notes, "the good client's message"))
			require.Eventually(t, func() bool { return srv.SessionCount() == 1 }, nettest.Wait, time.Millisecond)
			nettest.None(t, ev.Close, 50*time.Millisecond, "another session closing")
		})
	}
}

// A request whose payload does not decode is answered with
// CodeInvalidArgument; a message that does not decode is dropped and
// reported. The session carries on.
func TestUndecodablePayload(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions()...)
	itAddWhoAmI(srv)
	calls := make(chan itEcho, 4)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		calls <- req
		return itEchoReply{Text: "ok:" + req.Text}, nil
	})
	notes := make(chan itNote, 4)
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m itNote) { notes <- m })

	t.Run("netmsg client", func(t *testing.T) {
		cli := nettest.Connect(t, srv.URL, netmsg.WithRequestTimeout(itLong))
		id := itWhoAmIOf(t, cli)
		start := time.Now()
		_, err := netmsg.SendRequest(context.Background(), cli, itEchoBadShape{Text: []int{1, 2}})
		require.Error(t, err)
		assert.Less(t, time.Since(start), nettest.Wait)
		assert.Equal(t, netmsg.CodeInvalidArgument, netmsg.CodeOf(err), "%v", err)
		var ne *netmsg.Error
		require.ErrorAs(t, err, &ne)
		assert.Contains(t, ne.Message, netmsg.TypeName(itEcho{}))
		nettest.None(t, calls, 0, "a handler call for an undecodable request")

		require.NoError(t, cli.Send(context.Background(), itNoteBadShape{Seq: "x"}))
		rep := nettest.Recv(t, ev.Errs, "OnError for the undecodable message")
		assert.Contains(t, rep.Error(), netmsg.TypeName(itNote{}))
		require.NoError(t, cli.Send(context.Background(), itNote{Seq: 3}))
		assert.Equal(t, 3, nettest.Recv(t, notes, "the next message").Seq, "the bad message was dropped, the next one handled")

		r, err := netmsg.SendRequest(context.Background(), cli, itEcho{Text: "fine"})
		require.NoError(t, err)
		assert.Equal(t, "ok:fine", r.Text)
		assert.Equal(t, "fine", nettest.Recv(t, calls, "the valid request").Text)
		assert.Equal(t, id, itWhoAmIOf(t, cli))
	})

	t.Run("raw client", func(t *testing.T) {
		raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
		name := netmsg.TypeName(itEcho{})
		for i, payload := range []string{`not json`, `{"Text":5}`, `[1,2]`} {
			id := uint64(100 + i)
			raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, id, name, []byte(payload), 0, nil))
			env := raw.NextEnvelope(t)
			assert.Equal(t, wire.KindError, env.Kind, "payload %q", payload)
			assert.Equal(t, id, env.ID, "payload %q", payload)
			assert.EqualValues(t, netmsg.CodeInvalidArgument, env.ErrCode, "payload %q: %s", payload, env.ErrMsg)
			assert.True(t, strings.Contains(env.ErrMsg, name), "payload %q: %s", payload, env.ErrMsg)
		}
		nettest.None(t, calls, 0, "a handler call for an undecodable request")

		// An unknown type is answered with CodeUnimplemented, at once.
		raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, 200, "no.such.Type", []byte(`{}`), 0, nil))
		env := raw.NextEnvelope(t)
		assert.Equal(t, wire.KindError, env.Kind)
		assert.EqualValues(t, 200, env.ID)
		assert.EqualValues(t, netmsg.CodeUnimplemented, env.ErrCode)

		// A valid request still works on the same connection.
		payload, err := json.Marshal(itEcho{Text: "raw"})
		require.NoError(t, err)
		raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, 300, name, payload, 5000, nil))
		env = raw.NextEnvelope(t)
		require.Equal(t, wire.KindResponse, env.Kind, "%+v", env)
		assert.EqualValues(t, 300, env.ID)
		var r itEchoReply
		require.NoError(t, json.Unmarshal([]byte(env.Payload), &r))
		assert.Equal(t, "ok:raw", r.Text)
		assert.Equal(t, "raw", nettest.Recv(t, calls, "the valid request").Text)

		// A response for an id the server never asked is dropped and counted.
		before := srv.Stats()
		raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindResponse, 4242, "", []byte(`{"Text":"stray"}`), 0, nil))
		raw.Send(t, wire.AppendError(nil, 4243, "", uint32(netmsg.CodeInternal), "stray"))
		raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, 301, name, payload, 0, nil))
		env = raw.NextEnvelope(t)
		require.Equal(t, wire.KindResponse, env.Kind, "%+v", env)
		assert.EqualValues(t, 301, env.ID)
		nettest.Recv(t, calls, "the request after the stray responses")
		after := srv.Stats()
		assert.Equal(t, before.UnknownResponses+2, after.UnknownResponses, "stray responses counted as unknown")
		assert.Equal(t, before.LateResponses, after.LateResponses)

		// A CANCEL for an id not in flight is ignored.
		raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindCancel, 999, "", nil, 0, nil))
		raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, 302, name, payload, 0, nil))
		env = raw.NextEnvelope(t)
		require.Equal(t, wire.KindResponse, env.Kind, "%+v", env)
		assert.EqualValues(t, 302, env.ID)
		nettest.Recv(t, calls, "the request after the stray cancel")
	})
}

// A request id that is already in flight on the session is refused; the
// first request is unaffected.
func TestDuplicateRequestID(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	release := make(chan struct{})
	started := make(chan string, 4)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		started <- req.Text
		select {
		case <-release:
		case <-ctx.Done():
		}
		return itEchoReply{Text: "done:" + req.Text}, nil
	})
	raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	name := netmsg.TypeName(itEcho{})
	first, _ := json.Marshal(itEcho{Text: "first"})
	second, _ := json.Marshal(itEcho{Text: "second"})
	raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, 7, name, first, 0, nil))
	assert.Equal(t, "first", nettest.Recv(t, started, "the first request"))
	raw.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, 7, name, second, 0, nil))
	env := raw.NextEnvelope(t)
	assert.Equal(t, wire.KindError, env.Kind, "%+v", env)
	assert.EqualValues(t, 7, env.ID)
	assert.EqualValues(t, netmsg.CodeAlreadyExists, env.ErrCode, "%+v", env)
	close(release)
	env = raw.NextEnvelope(t)
	require.Equal(t, wire.KindResponse, env.Kind, "%+v", env)
	assert.EqualValues(t, 7, env.ID)
	assert.Contains(t, env.Payload, "done:first")
	nettest.None(t, started, 100*time.Millisecond, "the duplicate request's handler")
}
