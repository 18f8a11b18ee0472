package nettest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/require"
)

// Subprotocol is what the raw peers offer or accept: netmsg's JSON serializer.
const Subprotocol = "netmsg.v1.json"

// GwsConfig configures a GwsPeer. The zero value reads and answers pings.
type GwsConfig struct {
	NoRead bool // run no read loop: the peer never reads (a stuck consumer)
	NoPong bool // do not answer pings
	// OnMessage, when set, runs on the read loop for every data frame (a
	// copy of its bytes), before the frame is put on Msgs.
	OnMessage func(c *gws.Conn, b []byte)
	// Edit changes the client options before dialling (compression, sizes).
	Edit func(*gws.ClientOption)
	// Offer is the Sec-WebSocket-Protocol line DialGws sends instead of
	// Subprotocol; with it set, DialGws leaves checking what the server
	// selected (Conn.SubProtocol) to the test.
	Offer string
}

// GwsPeer is a WebSocket connection made with gws that speaks netmsg's
// subprotocol without the library: the test writes envelopes (or anything
// else) itself and sees what the other side sends.
type GwsPeer struct {
	Conn   *gws.Conn
	Msgs   chan []byte // data frames received (dropped when full)
	Pings  chan []byte // ping payloads received (dropped when full)
	Pongs  chan []byte // pong payloads received (dropped when full)
	Closed chan error  // OnClose's error, once

	cfg  GwsConfig
	done chan struct{}
}

func newGwsPeer(cfg GwsConfig) *GwsPeer {
	return &GwsPeer{
		Msgs:   make(chan []byte, 1024),
		Pings:  make(chan []byte, 1024),
		Pongs:  make(chan []byte, 1024),
		Closed: make(chan error, 1),
		cfg:    cfg,
		done:   make(chan struct{}),
	}
}

type gwsEvents struct{ p *GwsPeer }

func (e gwsEvents) OnOpen(*gws.Conn)               {}
func (e gwsEvents) OnClose(_ *gws.Conn, err error) { e.p.Closed <- err }
func (e gwsEvents) OnPing(c *gws.Conn, payload []byte) {
	offer(e.p.Pings, append([]byte(nil), payload...))
	if !e.p.cfg.NoPong {
		_ = c.WritePong(payload)
	}
}
func (e gwsEvents) OnPong(_ *gws.Conn, payload []byte) {
	offer(e.p.Pongs, append([]byte(nil), payload...))
}
func (e gwsEvents) OnMessage(c *gws.Conn, m *gws.Message) {
	b := append([]byte(nil), m.Bytes()...)
	_ = m.Close()
	if e.p.cfg.OnMessage != nil {
		e.p.cfg.OnMessage(c, b)
	}
	offer(e.p.Msgs, b)
}

func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// DialGws connects a GwsPeer to url, offering Subprotocol. Its connection is
// closed and its read loop waited for when the test ends.
func DialGws(t testing.TB, url string, cfg GwsConfig) *GwsPeer {
	t.Helper()
	p := newGwsPeer(cfg)
	// Set, not a map literal: gws looks the header up with Get.
	h := http.Header{}
	offer := Subprotocol
	if cfg.Offer != "" {
		offer = cfg.Offer
	}
	h.Set("Sec-WebSocket-Protocol", offer)
	opt := &gws.ClientOption{Addr: url, RequestHeader: h, Recovery: gws.Recovery}
	if cfg.Edit != nil {
		cfg.Edit(opt)
	}
	conn, resp, err := gws.NewClient(gwsEvents{p}, opt)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	if cfg.Offer == "" {
		require.Equal(t, Subprotocol, conn.SubProtocol())
	}
	p.Conn = conn
	p.run(cfg.NoRead)
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *GwsPeer) run(noRead bool) {
	if noRead {
		close(p.done)
		return
	}
	go func() {
		defer close(p.done)
		p.Conn.ReadLoop()
	}()
}

func (p *GwsPeer) stop(t testing.TB) {
	_ = p.Conn.NetConn().Close()
	select {
	case <-p.done:
	case <-time.After(Wait):
		t.Errorf("raw gws peer's read loop did not end")
	}
}

// Send writes one binary frame.
func (p *GwsPeer) Send(t testing.TB, b []byte) {
	t.Helper()
	require.NoError(t, p.Conn.WriteMessage(gws.OpcodeBinary, b))
}

// NextEnvelope waits for the next data frame and decodes it.
func (p *GwsPeer) NextEnvelope(t testing.TB) *Env {
	t.Helper()
	env, err := DecodeEnv(Recv(t, p.Msgs, "a frame from the other side"))
	require.NoError(t, err, "the other side sent a malformed envelope")
	return env
}

// NextClose waits for the connection to end and returns OnClose's error.
func (p *GwsPeer) NextClose(t testing.TB) error {
	t.Helper()
	return Recv(t, p.Closed, "the raw gws connection to close")
}

// NextCloseCode waits for the connection to end and returns the close code
// the other side sent (0 when it sent none).
func (p *GwsPeer) NextCloseCode(t testing.TB) uint16 {
	t.Helper()
	return GwsCloseCode(p.NextClose(t))
}

// GwsCloseCode returns the close code in a gws OnClose error, or 0.
func GwsCloseCode(err error) uint16 {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// GwsServer is a bare gws server speaking Subprotocol, for sending a netmsg
// client what a netmsg server never sends.
type GwsServer struct {
	URL   string
	Peers chan *GwsPeer // each connection, once upgraded
}

// StartGwsServer starts a GwsServer whose peers are configured by cfg
// (NoRead and Edit do not apply). Its connections are closed and their read
// loops waited for when the test ends.
func StartGwsServer(t testing.TB, cfg GwsConfig) *GwsServer {
	t.Helper()
	rs := &GwsServer{Peers: make(chan *GwsPeer, 64)}
	var mu sync.Mutex
	var peers []*GwsPeer
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := newGwsPeer(cfg)
		up := gws.NewUpgrader(gwsEvents{p}, &gws.ServerOption{
			SubProtocols: []string{Subprotocol},
			Recovery:     gws.Recovery,
		})
		conn, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		p.Conn = conn
		mu.Lock()
		peers = append(peers, p)
		mu.Unlock()
		p.run(false)
		offer(rs.Peers, p)
	}))
	rs.URL = "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	t.Cleanup(func() {
		hs.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, p := range peers {
			p.stop(t)
		}
	})
	return rs
}

// NextPeer waits for the next connection.
func (rs *GwsServer) NextPeer(t testing.TB) *GwsPeer {
	t.Helper()
	return Recv(t, rs.Peers, "a connection to the raw gws server")
}

// Env is a decoded envelope whose fields outlive the frame.
type Env struct {
	Kind      wire.Kind
	ID        uint64
	Type      string
	Payload   string
	ErrCode   uint32
	ErrMsg    string
	TimeoutMs uint64
	Metadata  map[string]string
}

// DecodeEnv decodes an envelope.
func DecodeEnv(b []byte) (*Env, error) {
	var e wire.Envelope
	if err := wire.Decode(b, &e); err != nil {
		return nil, err
	}
	env := &Env{Kind: e.Kind, ID: e.ID, Type: string(e.Type), Payload: string(e.Payload),
		ErrCode: e.ErrCode, ErrMsg: string(e.ErrMsg), TimeoutMs: e.TimeoutMs}
	for _, kv := range e.Metadata {
		if env.Metadata == nil {
			env.Metadata = make(map[string]string)
		}
		env.Metadata[string(kv.Key)] = string(kv.Value)
	}
	return env, nil
}

// Envelope encodes an envelope of kind with a JSON (or any) payload.
func Envelope(kind wire.Kind, id uint64, typ, payload string) []byte {
	return wire.AppendHeaderAndPayload(nil, kind, id, typ, []byte(payload), 0, nil)
}
