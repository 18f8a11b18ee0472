package netmsg_test

import (
	"context"
	"fmt"
	"time"

	"github.com/netmsg/netmsg"
)

// An interceptor that refuses inbound calls without a token, one that
// reports each call with its outcome, and a client interceptor that adds the
// token to everything the client sends. The first interceptor given is the
// outermost: the log sees refused calls too.
func ExampleWithInterceptors() {
	logCalls := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			start := time.Now()
			res, err := next(ctx, c)
			_ = time.Since(start) // a real one would record the duration
			fmt.Printf("server: %s %s: %v\n", c.Kind, c.Type, netmsg.CodeOf(err))
			return res, err
		}
	})
	requireToken := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			if c.Kind.Inbound() && c.Metadata["token"] != "s3cret" {
				return nil, netmsg.NewError(netmsg.CodeUnauthenticated, "missing token")
			}
			return next(ctx, c)
		}
	})
	newServer := func() *netmsg.Server {
		srv := netmsg.NewServer(netmsg.WithInterceptors(logCalls, requireToken))
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req WeatherRequest) (WeatherResponse, error) {
			return WeatherResponse{Forecast: "sun in " + req.City}, nil
		})
		return srv
	}

	addToken := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			if !c.Kind.Inbound() {
				c.Metadata["token"] = "s3cret" // outbound metadata is never nil
			}
			return next(ctx, c)
		}
	})
	bare, stop := startExample(newServer())
	_, err := netmsg.SendRequest(context.Background(), bare, WeatherRequest{City: "Bonn"})
	fmt.Println("without token:", err)
	stop()

	client, stop := startExample(newServer(), netmsg.WithInterceptors(addToken))
	defer stop()
	resp, err := netmsg.SendRequest(context.Background(), client, WeatherRequest{City: "Bonn"})
	fmt.Println("with token:", resp.Forecast, err)
	// Output:
	// server: inbound request netmsg_test.WeatherRequest: unauthenticated
	// without token: netmsg: unauthenticated: missing token
	// server: inbound request netmsg_test.WeatherRequest: ok
	// with token: sun in Bonn <nil>
}
