// Package contract holds the message types the typesafe demo's server and
// client share. A request type names its one response type by embedding
// netmsg.Returns, so the compiler checks every handler and every call against
// it. On the wire each type travels under its package and type name, such as
// "contract.WeatherRequest" (see netmsg.TypeName).
package contract

import (
	"time"

	"github.com/netmsg/netmsg"
)

// WeatherRequest asks the server for a city's forecast. A city the server
// does not know is answered with a *netmsg.Error of code CodeNotFound.
type WeatherRequest struct {
	netmsg.Returns[WeatherResponse]
	City string
}

// WeatherResponse is the only response type of a WeatherRequest.
type WeatherResponse struct {
	City     string
	Forecast string
	TempC    float64
}

// SlowRequest asks the server to take Delay before it answers; the demo uses
// it to show a caller's deadline and its cancellation of the handler.
type SlowRequest struct {
	netmsg.Returns[SlowResponse]
	Delay time.Duration
}

// SlowResponse answers a SlowRequest that was allowed to finish.
type SlowResponse struct{ Slept time.Duration }

// StatusRequest is sent by the server to a client: requests go both ways.
type StatusRequest struct {
	netmsg.Returns[StatusResponse]
}

// StatusResponse is a client's answer to a StatusRequest.
type StatusResponse struct {
	Client   string
	Notices  int // notices the client has received so far
	Platform string
}

// Chat is a one-way message from a client to the server.
type Chat struct {
	From string
	Text string
}

// Notice is a one-way message from the server to a client.
type Notice struct{ Text string }
