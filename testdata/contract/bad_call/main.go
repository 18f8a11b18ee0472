// Command bad_call must not compile: SendRequest's result is assigned to a
// type other than the request's response type.
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
	var resp OtherResponse
	var err error
	resp, err = netmsg.SendRequest(context.Background(), cli, WeatherRequest{City: "Bonn"}) // want `cannot use .*\(value of (struct )?type WeatherResponse\) as OtherResponse value in assignment`
	fmt.Println(resp, err)
}
