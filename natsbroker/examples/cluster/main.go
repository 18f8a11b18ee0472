// Command cluster runs three netmsg servers as one cluster through NATS, in
// one process: an embedded nats-server, three nodes on loopback ports, and
// bots spread over them that join a lobby. It shows a broadcast and a
// request crossing nodes, then shuts one node down and shows its bots
// failing over to the next node in their lists, joining again, and being
// reached there. It exits 0 when everything it shows happened.
//
//	go run ./examples/cluster             (from the natsbroker module)
//	go run ./examples/cluster -bots 30
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	bots := flag.Int("bots", 9, "bots, spread evenly over the three nodes")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, *bots); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func printf(out io.Writer, format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
