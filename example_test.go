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
	url, stopServer := serveExample(srv)
	client = netmsg.NewClient(url, cliOpts...)
	stop = func() {
		client.Close()
		stopServer()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		stop()
		panic(err)
	}
	return client, stop
}

// serveExample serves srv on a loopback port and returns its URL; stop shuts
// the server down and waits for it.
func serveExample(srv *netmsg.Server) (url string, stop func()) {
	hs := httptest.NewServer(srv)
	return "ws" + strings.TrimPrefix(hs.URL, "http"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			fmt.Println("shutdown:", err)
		}
		hs.Close()
	}
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

// EnterRoom is a request of the group examples.
type EnterRoom struct {
	netmsg.Returns[EnterInfo]
	Room string
}

type EnterInfo struct{ Members int }

func ExampleGroup() {
	srv := netmsg.NewServer()
	// A handler puts its session in the room the client asks for.
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req EnterRoom) (EnterInfo, error) {
		room := srv.Group(req.Room)
		room.Add(s) // idempotent; the session leaves by itself when it closes
		return EnterInfo{Members: room.Len()}, nil
	})
	client, stop := startExample(srv)
	defer stop()
	got := make(chan string, 1)
	netmsg.AddMessageHandler(client, func(ctx context.Context, s *netmsg.Session, msg ChatMessage) { got <- msg.Text })

	ctx := context.Background()
	info, err := netmsg.SendRequest(ctx, client, EnterRoom{Room: "lobby"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("members:", info.Members)

	lobby := srv.Group("lobby")
	for s := range lobby.Sessions() {
		fmt.Println("groups of the member:", s.Groups())
	}
	// Encoded once per serializer and queued for every member.
	if err := lobby.Broadcast(ctx, ChatMessage{Text: "welcome to the lobby"}); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("client got:", <-got)
	fmt.Println("an empty group:", srv.Group("attic").Len())
	// Output:
	// members: 1
	// groups of the member: [lobby]
	// client got: welcome to the lobby
	// an empty group: 0
}

func ExampleGroup_Broadcast() {
	srv := netmsg.NewServer()
	var members []*netmsg.Session
	joined := make(chan struct{}, 2)
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req EnterRoom) (EnterInfo, error) {
		srv.Group(req.Room).Add(s)
		members = append(members, s) // requests of the two clients come one after the other here
		joined <- struct{}{}
		return EnterInfo{}, nil
	})
	url, stop := serveExample(srv)
	defer stop()
	alice, bob := netmsg.NewClient(url), netmsg.NewClient(url)
	defer alice.Close()
	defer bob.Close()
	got := make(chan string, 2)
	for name, c := range map[string]*netmsg.Client{"alice": alice, "bob": bob} {
		netmsg.AddMessageHandler(c, func(ctx context.Context, s *netmsg.Session, msg ChatMessage) { got <- name + " got " + msg.Text })
	}
	ctx := context.Background()
	for _, c := range []*netmsg.Client{alice, bob} {
		if err := c.Connect(ctx); err != nil {
			fmt.Println("error:", err)
			return
		}
		if _, err := netmsg.SendRequest(ctx, c, EnterRoom{Room: "table-1"}); err != nil {
			fmt.Println("error:", err)
			return
		}
		<-joined
	}

	// Everyone in the room but the first member that joined (alice).
	if err := srv.Group("table-1").Broadcast(ctx, ChatMessage{Text: "your turn, alice"}, members[0]); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(<-got)
	// Output: bob got your turn, alice
}

// nickname is a value kept in each session.
var nickname = netmsg.NewKey[string]("nickname")

// SetNick and WhoAmI are requests of the ExampleNewKey.
type SetNick struct {
	netmsg.Returns[EnterInfo]
	Nick string
}

type WhoAmI struct {
	netmsg.Returns[ChatMessage]
}

func ExampleNewKey() {
	srv := netmsg.NewServer()
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req SetNick) (EnterInfo, error) {
		nickname.Set(s, req.Nick)
		return EnterInfo{}, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req WhoAmI) (ChatMessage, error) {
		nick, ok := nickname.Get(s) // typed: nick is a string
		if !ok {
			return ChatMessage{Text: "a stranger"}, nil
		}
		return ChatMessage{Text: nick}, nil
	})
	client, stop := startExample(srv)
	defer stop()

	ctx := context.Background()
	before, _ := netmsg.SendRequest(ctx, client, WhoAmI{})
	if _, err := netmsg.SendRequest(ctx, client, SetNick{Nick: "ada"}); err != nil {
		fmt.Println("error:", err)
		return
	}
	after, _ := netmsg.SendRequest(ctx, client, WhoAmI{})
	fmt.Println(before.Text, "→", after.Text)
	// Output: a stranger → ada
}
