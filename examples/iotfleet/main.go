// Command iotfleet simulates a fleet of devices reporting to one server:
//
//	go run ./examples/iotfleet              # 200 devices, 3 s of telemetry
//	go run ./examples/iotfleet -devices 1000 -duration 10s
//
// Each device is a netmsg client that signs in from its OnConnect hook (so it
// signs in again after every reconnect), streams Telemetry messages, and
// answers the server's SetInterval requests. Halfway through, the server
// restarts on the same address: every device notices the 1001 close,
// reconnects on its own with backoff, signs in again and carries on. The
// server meanwhile asks every device to change its reporting interval, a
// request from the server to each client. At the end it prints what arrived
// and exits 0 when every device came back and answered.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	devices := flag.Int("devices", 200, "number of simulated `devices`")
	duration := flag.Duration("duration", 3*time.Second, "how long the devices report")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, *devices, *duration)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "iotfleet:", err)
		os.Exit(1)
	}
}

func printf(w io.Writer, format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
