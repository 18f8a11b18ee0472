package netmsg_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/netmsg/netmsg"
)

// The contract of the examples: a request type names its response type by
// embedding netmsg.Returns.
type WeatherRequest struct {
	netmsg.Returns[WeatherResponse]
	City string
}

type WeatherResponse struct{ Forecast string }

// ChatMessage is a one-way message.
type ChatMessage struct{ Text string }

// startExample serves srv on a loopback port, as a real program would with
// srv.ListenAndServe, and returns a connected client for it. stop closes the
// client, shuts the server down and waits for both.
func startExample(srv *netmsg.Server, cliOpts ...netmsg.ClientOption) (client *netmsg.Client, stop func()) {
	hs := httptest.NewServer(srv)
	client = netmsg.NewClient("ws"+strings.TrimPrefix(hs.URL, "http"), cliOpts...)
	stop = func() {
		client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			fmt.Println("shutdown:", err)
		}
		hs.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		stop()
		panic(err)
	}
	return client, stop
}

func ExampleSendRequest() {
	srv := netmsg.NewServer()
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req WeatherRequest) (WeatherResponse, error) {
		return WeatherResponse{Forecast: "light rain in " + req.City}, nil
	})
	client, stop := startExample(srv)
	defer stop()

	// The response type is inferred from the request's contract.
	resp, err := netmsg.SendRequest(context.Background(), client, WeatherRequest{City: "Bonn"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(resp.Forecast)
	// Output: light rain in Bonn
}

func ExampleAddMessageHandler() {
	srv := netmsg.NewServer()
	received := make(chan string, 1)
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, msg ChatMessage) {
		received <- msg.Text
	})
	client, stop := startExample(srv)
	defer stop()

	// Send returns once the message is queued; the handler runs on the server.
	if err := client.Send(context.Background(), ChatMessage{Text: "hello"}); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("server got:", <-received)
	fmt.Println("on the wire as:", netmsg.TypeName(ChatMessage{}))
	// Output:
	// server got: hello
	// on the wire as: netmsg_test.ChatMessage
}

func ExampleError() {
	srv := netmsg.NewServer()
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req WeatherRequest) (WeatherResponse, error) {
		return WeatherResponse{}, netmsg.Errorf(netmsg.CodeNotFound, "no forecast for %s", req.City)
	})
	client, stop := startExample(srv)
	defer stop()

	_, err := netmsg.SendRequest(context.Background(), client, WeatherRequest{City: "Atlantis"})
	var e *netmsg.Error
	if errors.As(err, &e) {
		fmt.Println("code:", e.Code)
		fmt.Println("message:", e.Message)
	}
	fmt.Println(netmsg.CodeOf(err) == netmsg.CodeNotFound)
	fmt.Println(err)
	// Output:
	// code: not_found
	// message: no forecast for Atlantis
	// true
	// netmsg: not_found: no forecast for Atlantis
}

func ExampleServer_Broadcast() {
	opened := make(chan struct{}, 1)
	srv := netmsg.NewServer(netmsg.WithOnSessionOpen(func(*netmsg.Session) { opened <- struct{}{} }))
	received := make(chan string, 1)
	client, stop := startExample(srv)
	defer stop()
	netmsg.AddMessageHandler(client, func(ctx context.Context, s *netmsg.Session, msg ChatMessage) {
		received <- msg.Text
	})
	<-opened // the server has registered the session

	if err := srv.Broadcast(context.Background(), ChatMessage{Text: "server restarts at noon"}); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("client got:", <-received)
	// Output: client got: server restarts at noon
}
