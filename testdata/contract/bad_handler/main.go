// Command bad_handler must not compile: the handler's response type is not
// the one its request declares. contract_test.go checks the error.
package main

import (
	"context"

	"github.com/netmsg/netmsg"
)

type WeatherRequest struct {
	netmsg.Returns[WeatherResponse]
	City string
}

type WeatherResponse struct{ Forecast string }

type OtherResponse struct{ Forecast string }

func main() {
	srv := netmsg.NewServer()
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, r WeatherRequest) (OtherResponse, error) { // want `Req \(type WeatherRequest\) does not (satisfy|implement) netmsg\.Request\[Resp\] \(wrong type for method ResponseType\).*have ResponseType\(\) \(?WeatherResponse\)?`
		return OtherResponse{}, nil
	})
}
