// Command prometheus runs a netmsg server measured by otelnetmsg and serves
// its metrics for Prometheus at /metrics, through the OpenTelemetry
// Prometheus exporter.
//
//	go run . -addr 127.0.0.1:8080 -metrics 127.0.0.1:9464 -demo
//	curl -s http://127.0.0.1:9464/metrics | grep netmsg_
//
// The server answers Echo requests and accepts Chat messages. With -demo a
// client in the same process sends one of each every second, so the metrics
// move; without it, connect clients of your own to ws://ADDR/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/otelnetmsg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Echo is the example's request: the server sends Text back.
type Echo struct {
	netmsg.Returns[EchoReply]
	Text string
}

// EchoReply answers Echo.
type EchoReply struct{ Text string }

// Chat is the example's one-way message.
type Chat struct{ Text string }

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address of the netmsg server (WebSocket at /)")
	metricsAddr := flag.String("metrics", "127.0.0.1:9464", "address of the Prometheus endpoint (/metrics)")
	demo := flag.Bool("demo", false, "run a client that sends an Echo and a Chat every second")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var wg sync.WaitGroup
	err := run(ctx, *addr, *metricsAddr, func(wsURL, metricsURL string) {
		log.Printf("netmsg server at %s, metrics at %s", wsURL, metricsURL)
		if *demo {
			wg.Go(func() { demoClient(ctx, wsURL) })
		}
	})
	stop()
	wg.Wait()
	if err != nil {
		log.Fatal(err)
	}
}

// run serves the netmsg server on addr and the metrics on metricsAddr until
// ctx ends; ready gets the URLs once both listen.
func run(ctx context.Context, addr, metricsAddr string, ready func(wsURL, metricsURL string)) error {
	// The exporter is a metric reader of the SDK's meter provider; it
	// registers a collector with a registry of its own, which /metrics serves.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	srv := netmsg.NewServer(netmsg.WithInterceptors(otelnetmsg.New(otelnetmsg.WithMeterProvider(mp))))
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, e Echo) (EchoReply, error) {
		if e.Text == "" {
			return EchoReply{}, netmsg.NewError(netmsg.CodeInvalidArgument, "empty text")
		}
		return EchoReply{Text: e.Text}, nil
	})
	netmsg.AddMessageHandler(srv, func(context.Context, *netmsg.Session, Chat) {})

	wsL, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	metricsL, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		_ = wsL.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errs := make(chan error, 2)
	go func() { errs <- srv.Serve(wsL) }()
	go func() { errs <- metricsSrv.Serve(metricsL) }()
	ready("ws://"+wsL.Addr().String()+"/", "http://"+metricsL.Addr().String()+"/metrics")

	running := 2
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-errs: // one of them could not serve
		running--
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(failed, srv.Shutdown(sctx), metricsSrv.Shutdown(sctx))
	for ; running > 0; running-- {
		if e := <-errs; !errors.Is(e, http.ErrServerClosed) {
			err = errors.Join(err, e)
		}
	}
	return err
}

// demoClient sends an Echo and a Chat every second until ctx ends.
func demoClient(ctx context.Context, url string) {
	cli := netmsg.NewClient(url, netmsg.WithReconnect(netmsg.DefaultBackOff()))
	defer cli.Close()
	if err := cli.Connect(ctx); err != nil {
		log.Print(err)
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		if _, err := netmsg.SendRequest(ctx, cli, Echo{Text: fmt.Sprint("hello ", n)}); err != nil && ctx.Err() == nil {
			log.Print(err)
		}
		_ = cli.Send(ctx, Chat{Text: "hi"})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
