package netmsg_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/netmsg/netmsg/serializer"
)

// BenchmarkInterceptedRequest is BenchmarkSendRequest/proto/128B/serial with
// one interceptor that only calls next on each end: the cost of the
// intercepted path (a Call, its closure and the outbound metadata map per
// call and end). "none" is the same without interceptors, in the same run.
func BenchmarkInterceptedRequest(b *testing.B) {
	pass := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc { return next })
	for _, tc := range []struct {
		name string
		opts []netmsg.Option
	}{
		{"none", nil},
		{"one", []netmsg.Option{netmsg.WithInterceptors(pass)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srvOpts := []netmsg.ServerOption{netmsg.WithSerializer(serializer.Protobuf{})}
			cliOpts := []netmsg.ClientOption{netmsg.WithSerializer(serializer.Protobuf{})}
			for _, o := range tc.opts {
				srvOpts, cliOpts = append(srvOpts, o), append(cliOpts, o)
			}
			srv := netmsg.NewServer(srvOpts...)
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, r *testpb.Echo) (*testpb.EchoReply, error) {
				return &testpb.EchoReply{Body: r.Body}, nil
			})
			hs := httptest.NewServer(srv)
			cli := netmsg.NewClient("ws"+strings.TrimPrefix(hs.URL, "http"), cliOpts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := cli.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			defer func() {
				_ = cli.Close()
				_ = srv.Shutdown(ctx)
				hs.Close()
			}()
			req := &testpb.Echo{Body: benchBody(128)}
			bg := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := netmsg.SendRequest(bg, cli, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
