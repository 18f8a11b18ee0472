package integration_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One server serves JSON and protobuf clients at once; each session uses the
// serializer it negotiated.
func TestJSONAndProtobufClientsOnOneServer(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithSerializer(serializer.JSON{}, serializer.Protobuf{}))...)
	itAddWhoAmI(srv)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req *testpb.Echo) (*testpb.EchoReply, error) {
		return &testpb.EchoReply{Text: s.Serializer().Name() + ":" + req.Text, Body: req.Body, N: req.N * 2}, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		return itEchoReply{Text: s.Serializer().Name() + ":" + req.Text, N: req.N + 1}, nil
	})
	srvEvents := make(chan string, 16)
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m *testpb.Event) {
		srvEvents <- s.Serializer().Name() + ":" + m.Name
	})

	pc := nettest.NewClient(t, srv.URL, netmsg.WithSerializer(serializer.Protobuf{}))
	pcEvents := make(chan string, 16)
	netmsg.AddMessageHandler(pc, func(ctx context.Context, s *netmsg.Session, m *testpb.Event) { pcEvents <- m.Name })
	netmsg.AddRequestHandler(pc, func(ctx context.Context, s *netmsg.Session, req *testpb.Echo) (*testpb.EchoReply, error) {
		return &testpb.EchoReply{Text: "pc:" + req.Text}, nil
	})
	jc := nettest.NewClient(t, srv.URL)
	jcEvents := make(chan string, 16)
	netmsg.AddMessageHandler(jc, func(ctx context.Context, s *netmsg.Session, m itEventJSON) { jcEvents <- m.Name })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, pc.Connect(ctx))
	pss := nettest.Recv(t, ev.Open, "the protobuf client's session")
	require.NoError(t, jc.Connect(ctx))
	jss := nettest.Recv(t, ev.Open, "the JSON client's session")

	// Serializer() reports what was negotiated, on both ends.
	assert.Equal(t, "proto", pc.Session().Serializer().Name())
	assert.Equal(t, "proto", pss.Serializer().Name())
	assert.Equal(t, "json", jc.Session().Serializer().Name())
	assert.Equal(t, "json", jss.Serializer().Name())

	t.Run("protobuf client, generated types", func(t *testing.T) {
		r, err := netmsg.SendRequest(ctx, pc, &testpb.Echo{Text: "hi", Body: []byte{0, 1, 2, 0xff}, N: 21})
		require.NoError(t, err)
		require.NotNil(t, r)
		assert.Equal(t, "proto:hi", r.GetText())
		assert.Equal(t, []byte{0, 1, 2, 0xff}, r.GetBody())
		assert.EqualValues(t, 42, r.GetN())
		w, err := netmsg.SendRequest(ctx, pc, itWhoAmI{})
		// itWhoAmI is a plain struct: the protobuf client cannot encode it.
		require.Error(t, err)
		assert.Zero(t, w)
	})

	t.Run("JSON client, plain structs", func(t *testing.T) {
		r, err := netmsg.SendRequest(ctx, jc, itEcho{Text: "hey", N: 1})
		require.NoError(t, err)
		assert.Equal(t, itEchoReply{Text: "json:hey", N: 2}, r)
		w, err := netmsg.SendRequest(ctx, jc, itWhoAmI{})
		require.NoError(t, err)
		assert.Equal(t, jss.ID(), w.ID)
		assert.Equal(t, "json", w.Serializer)
	})

	t.Run("JSON client, generated types", func(t *testing.T) {
		// The same handler serves a JSON client sending the generated type.
		r, err := netmsg.SendRequest(ctx, jc, &testpb.Echo{Text: "hi", N: 2})
		require.NoError(t, err)
		assert.Equal(t, "json:hi", r.GetText())
		assert.EqualValues(t, 4, r.GetN())
	})

	t.Run("messages both ways", func(t *testing.T) {
		require.NoError(t, pc.Send(ctx, &testpb.Event{Name: "from-pc"}))
		assert.Equal(t, "proto:from-pc", nettest.Recv(t, srvEvents, "the protobuf client's event"))
		require.NoError(t, jc.Send(ctx, itEventJSON{Name: "from-jc"}))
		assert.Equal(t, "json:from-jc", nettest.Recv(t, srvEvents, "the JSON client's event"))

		require.NoError(t, pss.Send(ctx, &testpb.Event{Name: "to-pc"}))
		assert.Equal(t, "to-pc", nettest.Recv(t, pcEvents, "the server's event on the protobuf client"))
		require.NoError(t, jss.Send(ctx, &testpb.Event{Name: "to-jc"}))
		assert.Equal(t, "to-jc", nettest.Recv(t, jcEvents, "the server's event on the JSON client"))
	})

	t.Run("server to protobuf client", func(t *testing.T) {
		r, err := netmsg.SendRequest(ctx, pss, &testpb.Echo{Text: "x"})
		require.NoError(t, err)
		assert.Equal(t, "pc:x", r.GetText())
	})
}

// A serializer that cannot encode a value fails Send and SendRequest with a
// clear error and writes nothing; the session stays usable.
func TestUnencodableValueWritesNothing(t *testing.T) {
	t.Parallel()
	ev := nettest.NewRecorder()
	srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithSerializer(serializer.JSON{}, serializer.Protobuf{}))...)
	notes := make(chan itNote, 4)
	echos := make(chan itEcho, 4)
	marks := make(chan string, 4)
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m itNote) { notes <- m })
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
		echos <- req
		return itEchoReply{}, nil
	})
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, m *testpb.Event) { marks <- m.Name })
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req *testpb.Echo) (*testpb.EchoReply, error) {
		return &testpb.EchoReply{Text: req.Text}, nil
	})
	pc := nettest.Connect(t, srv.URL, netmsg.WithSerializer(serializer.Protobuf{}), netmsg.WithRequestTimeout(itLong))
	ctx := context.Background()
	cs := pc.Session()

	err := pc.Send(ctx, itNote{Text: "plain"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "proto", "the error names the serializer")
	assert.Contains(t, err.Error(), "itNote", "the error names the type")
	assert.False(t, errors.Is(err, netmsg.ErrClosed), "a failed encode is no close: %v", err)

	start := time.Now()
	r, err := netmsg.SendRequest(ctx, pc, itEcho{Text: "plain"})
	require.Error(t, err)
	assert.Less(t, time.Since(start), nettest.Wait, "an encode error returns at once")
	assert.Zero(t, r)
	assert.Contains(t, err.Error(), "proto")
	assert.Contains(t, err.Error(), "itEcho")
	assert.False(t, errors.Is(err, netmsg.ErrClosed), "a failed encode is no close: %v", err)
	assert.False(t, errors.Is(err, context.DeadlineExceeded))

	// Nothing reached the server: the marker sent after arrives first.
	require.NoError(t, pc.Send(ctx, &testpb.Event{Name: "marker"}))
	assert.Equal(t, "marker", nettest.Recv(t, marks, "the marker"))
	nettest.None(t, notes, 0, "the unencodable message on the server")
	nettest.None(t, echos, 0, "the unencodable request on the server")
	nettest.None(t, ev.Unhandled, 0, "something unhandled on the server")
	nettest.None(t, ev.Errs, 0, "an error on the server")

	// The session is the same and works.
	assert.Same(t, cs, pc.Session())
	er, err := netmsg.SendRequest(ctx, pc, &testpb.Echo{Text: "ok"})
	require.NoError(t, err)
	assert.Equal(t, "ok", er.GetText())
	assert.Equal(t, netmsg.Stats{}, pc.Stats())

	// The same on the server's side of a protobuf session.
	pss := itOnlySession(t, srv.Server)
	err = pss.Send(ctx, itNote{Text: "plain"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "proto")
	_, err = netmsg.SendRequest(ctx, pss, itEcho{})
	require.Error(t, err)
	assert.Nil(t, pss.Err())
}

// A client offering a serializer the server does not accept gets a clear
// handshake error from Connect.
func TestSerializerNegotiationFailure(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		server   []serializer.Serializer
		client   serializer.Serializer // nil: the default (JSON)
		accepted []string              // subprotocols the body must name
		offered  string
	}{
		{"protobuf client, JSON server", []serializer.Serializer{serializer.JSON{}}, serializer.Protobuf{},
			[]string{"netmsg.v1.json"}, "netmsg.v1.proto"},
		{"JSON client, protobuf server", []serializer.Serializer{serializer.Protobuf{}}, nil,
			[]string{"netmsg.v1.proto"}, "netmsg.v1.json"},
		{"unknown serializer", []serializer.Serializer{serializer.JSON{}, serializer.Protobuf{}}, itFakeSerializer{},
			[]string{"netmsg.v1.json", "netmsg.v1.proto"}, "netmsg.v1.fake"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := nettest.NewRecorder()
			srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithSerializer(tc.server...))...)
			var opts []netmsg.ClientOption
			if tc.client != nil {
				opts = append(opts, netmsg.WithSerializer(tc.client))
			}
			c := nettest.NewClient(t, srv.URL, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := c.Connect(ctx)
			require.Error(t, err)
			assert.Less(t, time.Since(start), nettest.Wait)
			var he *netmsg.HandshakeError
			require.ErrorAs(t, err, &he, "Connect: %v", err)
			assert.Equal(t, http.StatusBadRequest, he.Status)
			for _, p := range tc.accepted {
				assert.Contains(t, he.Body, p, "the body names what the server accepts")
				assert.Contains(t, err.Error(), p, "the error names what the server accepts")
			}
			assert.Contains(t, he.Body, tc.offered, "the body names what the client offered")
			assert.Equal(t, netmsg.Disconnected, c.State())
			assert.Nil(t, c.Session())
			assert.Equal(t, 0, srv.SessionCount())
			nettest.None(t, ev.Open, 0, "OnSessionOpen for a refused handshake")
			_, err = netmsg.SendRequest(ctx, c, itEcho{})
			assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		})
	}
}

// itFakeSerializer is a serializer no server knows.
type itFakeSerializer struct{}

func (itFakeSerializer) Name() string                  { return "fake" }
func (itFakeSerializer) Marshal(v any) ([]byte, error) { return nil, errors.New("fake") }
func (itFakeSerializer) Unmarshal([]byte, any) error   { return errors.New("fake") }
