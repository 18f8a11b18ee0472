// Command bad_peer must not compile: a Server is no Peer; requests go to one
// of its sessions.
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

func main() {
	srv := netmsg.NewServer()
	resp, err := netmsg.SendRequest(context.Background(), srv, WeatherRequest{City: "Bonn"}) // want `\*netmsg\.Server does not implement netmsg\.Peer`
	fmt.Println(resp, err)
}
