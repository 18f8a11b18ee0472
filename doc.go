// Package netmsg sends typed messages and requests over WebSocket, with a Go
// type as the contract: a request type names its one response type, and the
// compiler checks every handler and every call against it.
//
//	type WeatherRequest struct {
//		netmsg.Returns[WeatherResponse] // the contract
//		City string
//	}
//	type WeatherResponse struct{ Forecast string }
//
//	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req WeatherRequest) (WeatherResponse, error) {
//		return WeatherResponse{Forecast: "light rain"}, nil
//	})
//	resp, err := netmsg.SendRequest(ctx, client, WeatherRequest{City: "Bonn"}) // resp is a WeatherResponse
//
// Use [NewServer] for the accepting side (an http.Handler, or
// [Server.ListenAndServe]) and [NewClient], then [Client.Connect], for the
// dialling side. Both are equal parties: register handlers on either with
// [AddRequestHandler] and [AddMessageHandler], and send from either with
// [SendRequest] (a request and its typed response) and Send (a one-way
// message): a [Client] sends to its server, a [Session] to the peer of one
// connection, and [Server.Broadcast] to every connected client. A [Group]
// ([Server.Group]) is a named set of sessions, a room, to broadcast to; a
// [Key] ([NewKey]) keeps a typed value in each session. With [WithBroker]
// several servers act as one ([Server.SendTo], [SendRequestTo] and the
// broadcasts reach sessions on every node); the natsbroker module is the
// broker on NATS, and [WithURLs] lets clients move between the nodes.
//
// A handler's error reaches the caller as an [*Error] with a [Code]; a closed
// connection is described by a [*CloseError] and its [CloseReason]. Clients
// reconnect on their own with [WithReconnect]; [Server.Shutdown] drains.
// Payloads are encoded by a serializer negotiated per connection (JSON or
// protobuf, see package [github.com/netmsg/netmsg/serializer]) inside a small
// protobuf envelope whose specification is proto/envelope.proto.
//
// Run the demo first, go run ./examples/typesafe, and read its source in
// examples/typesafe: it shows requests, messages both ways, a request from
// the server to the client, errors, timeouts and a reconnect;
// examples/gameroom is a room server built on groups and keys. The README
// describes the semantics in full: https://github.com/netmsg/netmsg.
package netmsg
