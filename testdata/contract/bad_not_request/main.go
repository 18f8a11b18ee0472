// Command bad_not_request must not compile: a type that declares no response
// is sent as a request.
package main

import (
	"context"
	"fmt"

	"github.com/netmsg/netmsg"
)

type Note struct{ Text string }

func main() {
	cli := netmsg.NewClient("ws://127.0.0.1:1/")
	resp, err := netmsg.SendRequest(context.Background(), cli, Note{Text: "hi"}) // want `Note.* does not match netmsg\.Request\[Resp\]|cannot infer Resp`
	fmt.Println(resp, err)
}
