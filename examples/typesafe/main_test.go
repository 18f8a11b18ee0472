package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDemo runs the one-process demo as `go run ./examples/typesafe` does and
// checks that every step ran and printed what it shows.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), &out)
	require.NoError(t, err, "output:\n%s", out.String())

	got := out.String()
	for _, want := range []string{
		"\n1. A request and its typed response\n",
		`client ← server: contract.WeatherResponse{City: "Bonn", Forecast: "light rain", TempC: 11.5}`,
		"\n2. Messages both ways\n",
		`server: got contract.Chat from client: "hello from the client"`,
		`client: got contract.Notice from the server: "a broadcast to every session"`,
		"\n3. A request from the server to the client\n",
		`server ← client: contract.StatusResponse{Client: "typesafe demo client", Notices: 2`,
		"\n4. A handler error arrives as *netmsg.Error\n",
		`errors.As(err, &e): e.Code = not_found (5), e.Message = "no forecast for \"Atlantis\""`,
		"\n5. A timeout\n",
		"errors.Is(err, context.DeadlineExceeded) = true",
		"server: slow handler stopped early",
		"\n6. A reconnect after the server restarts\n",
		"client: disconnected: server shutdown, close code 1001",
		"client: reconnecting, attempt 1 in",
		`client ← server: contract.WeatherResponse{City: "Lisbon", Forecast: "sunny", TempC: 24}`,
		"All 6 steps passed",
	} {
		assert.Contains(t, got, want)
	}
	// Steps print in order.
	last := -1
	for _, step := range []string{"\n1. ", "\n2. ", "\n3. ", "\n4. ", "\n5. ", "\n6. ", "\nAll 6 steps"} {
		i := strings.Index(got, step)
		assert.Greater(t, i, last, "%q out of order", step)
		last = i
	}
}

// TestHalves runs the -server and -client modes against each other, the
// client with stdin that is not a terminal (it sends its fixed sequence).
func TestHalves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var srvOut bytes.Buffer
	srvCon := newConsole(&srvOut)
	ls, err := listen(ctx, newServer(srvCon, true), "127.0.0.1:0")
	require.NoError(t, err)
	srvCtx, stopServer := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serveUntilDone(srvCtx, ls, srvCon) }()

	var cliOut bytes.Buffer
	err = runClient(ctx, wsURL(ls.addr), strings.NewReader("q\n"), false, &cliOut)
	stopServer()
	require.NoError(t, err, "client output:\n%s", cliOut.String())
	require.NoError(t, <-served, "server output:\n%s", srvOut.String())

	got := cliOut.String()
	for _, want := range []string{
		"sending the predefined sequence once",
		`contract.WeatherResponse{City: "Bonn"`,
		"client: got contract.Notice from the server",
		"netmsg: not_found",
		"sequence done",
	} {
		assert.Contains(t, got, want)
	}
	assert.Contains(t, srvOut.String(), "listening on ws://127.0.0.1:")
	assert.Contains(t, srvOut.String(), `server: got contract.Chat from client: "hello from a script"`)
}
