package netmsg

import (
	"context"
	"testing"

	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type plainReq struct {
	Returns[plainResp]
	A int
}
type plainResp struct{ B int }

type namedMsg struct{}

func (namedMsg) MessageType() string { return "chat.Named" }

type ptrNamed struct{}

func (*ptrNamed) MessageType() string { return "chat.PtrNamed" }

type otherNamed struct{}

func (otherNamed) MessageType() string { return "chat.Named" }

func TestTypeName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    any
		want string
	}{
		{plainReq{}, "netmsg.plainReq"},
		{&plainReq{}, "netmsg.plainReq"},
		{namedMsg{}, "chat.Named"},
		{&namedMsg{}, "chat.Named"},
		{ptrNamed{}, "chat.PtrNamed"},
		{&ptrNamed{}, "chat.PtrNamed"},
		{(*ptrNamed)(nil), "chat.PtrNamed"},
		{&testpb.Echo{}, "netmsg.test.v1.Echo"},
		{(*testpb.Echo)(nil), "netmsg.test.v1.Echo"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, TypeName(tc.v))
	}
}

type registrar struct{ r registry }

func (g *registrar) handlerRegistry() *registry { return &g.r }

func TestRegistry(t *testing.T) {
	t.Parallel()
	g := &registrar{}
	remove := AddRequestHandler(g, func(ctx context.Context, s *Session, r plainReq) (plainResp, error) { return plainResp{}, nil })
	require.NotNil(t, g.r.lookup([]byte("netmsg.plainReq")))
	assert.PanicsWithValue(t,
		`netmsg: a request handler for "netmsg.plainReq" (netmsg.plainReq) is already registered`,
		func() {
			AddRequestHandler(g, func(ctx context.Context, s *Session, r plainReq) (plainResp, error) { return plainResp{}, nil })
		})
	remove()
	remove() // idempotent
	assert.Nil(t, g.r.lookup([]byte("netmsg.plainReq")))

	// several message handlers; removing one keeps the others
	r1 := AddMessageHandler(g, func(ctx context.Context, s *Session, m namedMsg) {})
	r2 := AddMessageHandler(g, func(ctx context.Context, s *Session, m namedMsg) {})
	e := g.r.lookup([]byte("chat.Named"))
	require.NotNil(t, e)
	assert.Equal(t, 2, e.nmsgs)
	r1()
	assert.Equal(t, 1, g.r.lookup([]byte("chat.Named")).nmsgs)

	// a different Go type under the same wire name panics with both names
	defer r2()
	assert.PanicsWithValue(t,
		`netmsg: type name "chat.Named" is already registered for Go type netmsg.namedMsg; cannot register Go type netmsg.otherNamed under it`,
		func() { AddMessageHandler(g, func(ctx context.Context, s *Session, m otherNamed) {}) })
	assert.Panics(t, func() { AddMessageHandler[any](g, func(ctx context.Context, s *Session, m any) {}) })
}
