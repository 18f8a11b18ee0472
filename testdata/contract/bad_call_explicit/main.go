// Command bad_call_explicit must not compile: SendRequest is instantiated
// with a response type the request does not declare.
package main

import (
	"context"
	"fmt"

	"github.com/netmsg/netmsg"
)

type WeatherRequest struct {
	netmsg.Returns[WeatherResponse]
	City string
}

type WeatherResponse struct{ Forecast string }

type OtherResponse struct{ Forecast string }

func main() {
	cli := netmsg.NewClient("ws://127.0.0.1:1/")
	resp, err := netmsg.SendRequest[OtherResponse](context.Background(), cli, WeatherRequest{City: "Bonn"}) // want `WeatherRequest does not implement netmsg\.Request\[OtherResponse\] \(wrong type for method ResponseType\)`
	fmt.Println(resp, err)
}
