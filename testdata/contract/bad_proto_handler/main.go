// Command bad_proto_handler must not compile: a handler for the generated
// request type answers with a generated type that is not its response.
package main

import (
	"context"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
)

func main() {
	cli := netmsg.NewClient("ws://127.0.0.1:1/")
	netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, r *testpb.Echo) (*testpb.Event, error) { // want `Req \(type \*testpb\.Echo\) does not (satisfy|implement) netmsg\.Request\[Resp\] \(wrong type for method ResponseType\).*have ResponseType\(\) \(?\*testpb\.EchoReply\)?`
		return &testpb.Event{}, nil
	})
}
