// Command good uses netmsg's typed contracts the way they are meant to be
// used. contract_test.go checks that it compiles; it is never run.
package main

import (
	"context"
	"fmt"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
)

// WeatherRequest declares its response type by embedding Returns.
type WeatherRequest struct {
	netmsg.Returns[WeatherResponse]
	City string
}

type WeatherResponse struct{ Forecast string }

// LookupRequest answers with a pointer.
type LookupRequest struct {
	netmsg.Returns[*WeatherResponse]
	ID int
}

// Note is a one-way message.
type Note struct{ Text string }

func weather(ctx context.Context, s *netmsg.Session, r WeatherRequest) (WeatherResponse, error) {
	return WeatherResponse{Forecast: "sun in " + r.City}, nil
}

func main() {
	srv := netmsg.NewServer()
	cli := netmsg.NewClient("ws://127.0.0.1:1/")
	ctx := context.Background()

	// Type arguments are inferred from the handler.
	remove := netmsg.AddRequestHandler(srv, weather)
	defer remove()
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, r *LookupRequest) (*WeatherResponse, error) {
		return &WeatherResponse{Forecast: fmt.Sprint(r.ID)}, nil
	})
	netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, r *testpb.Echo) (*testpb.EchoReply, error) {
		return &testpb.EchoReply{Text: r.GetText()}, nil
	})
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, n Note) {})
	netmsg.AddMessageHandler(cli, func(ctx context.Context, s *netmsg.Session, e *testpb.Event) {})
	var h netmsg.RequestHandler[WeatherRequest, WeatherResponse] = weather
	_ = h

	// The response type is inferred from the request, on every Peer.
	var resp WeatherResponse
	var err error
	resp, err = netmsg.SendRequest(ctx, cli, WeatherRequest{City: "Bonn"})
	fmt.Println(resp.Forecast, err)
	resp, err = netmsg.SendRequest(ctx, cli, &WeatherRequest{City: "Köln"})
	fmt.Println(resp.Forecast, err)
	var ptr *WeatherResponse
	ptr, err = netmsg.SendRequest(ctx, cli, LookupRequest{ID: 1})
	fmt.Println(ptr, err)
	var sess *netmsg.Session = cli.Session()
	reply, err := netmsg.SendRequest(ctx, sess, &testpb.Echo{Text: "hi"})
	var _ *testpb.EchoReply = reply
	explicit, err := netmsg.SendRequest[WeatherResponse](ctx, sess, WeatherRequest{})
	fmt.Println(explicit.Forecast, err)

	fmt.Println(cli.Send(ctx, Note{Text: "hello"}), sess.Send(ctx, &testpb.Event{Name: "e"}))
	var _ netmsg.Registrar = srv
	var _ netmsg.Registrar = cli
	var _ netmsg.Peer = cli
	var _ netmsg.Peer = sess
	var _ netmsg.Request[WeatherResponse] = WeatherRequest{}
	var _ netmsg.Request[*testpb.EchoReply] = &testpb.Echo{}
}
