package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMetricsEndpoint runs the example's server, sends it a known workload
// from a client and reads /metrics as Prometheus would.
func TestMetricsEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	type urls struct{ ws, metrics string }
	ready := make(chan urls, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", "127.0.0.1:0", func(ws, metrics string) { ready <- urls{ws, metrics} })
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	var u urls
	select {
	case u = <-ready:
	case err := <-done:
		t.Fatal(err)
	}

	cli := netmsg.NewClient(u.ws)
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	require.NoError(t, cli.Connect(cctx))
	for range 3 {
		r, err := netmsg.SendRequest(cctx, cli, Echo{Text: "hi"})
		require.NoError(t, err)
		require.Equal(t, "hi", r.Text)
	}
	_, err := netmsg.SendRequest(cctx, cli, Echo{})
	require.Equal(t, netmsg.CodeInvalidArgument, netmsg.CodeOf(err))
	require.NoError(t, cli.Send(cctx, Chat{Text: "one"}))
	require.NoError(t, cli.Send(cctx, Chat{Text: "two"}))

	// Messages are handled after Send returns: wait until both are counted.
	chats := `netmsg_calls_total{netmsg_code="ok",netmsg_direction="inbound",netmsg_kind="message",netmsg_type="main.Chat",otel_scope_name="github.com/netmsg/netmsg/otelnetmsg",otel_scope_schema_url="",otel_scope_version=""} 2`
	var page string
	require.Eventually(t, func() bool {
		page = fetch(t, u.metrics)
		return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(chats) + `$`).MatchString(page)
	}, 10*time.Second, 10*time.Millisecond, "the two chats are counted")
	t.Logf("/metrics:\n%s", page)

	for _, want := range []string{
		`netmsg_calls_total{netmsg_code="ok",netmsg_direction="inbound",netmsg_kind="request",netmsg_type="main.Echo",otel_scope_name="github.com/netmsg/netmsg/otelnetmsg",otel_scope_schema_url="",otel_scope_version=""} 3`,
		`netmsg_calls_total{netmsg_code="invalid_argument",netmsg_direction="inbound",netmsg_kind="request",netmsg_type="main.Echo",otel_scope_name="github.com/netmsg/netmsg/otelnetmsg",otel_scope_schema_url="",otel_scope_version=""} 1`,
		`netmsg_call_duration_seconds_count{netmsg_code="ok",netmsg_direction="inbound",netmsg_kind="request",netmsg_type="main.Echo",otel_scope_name="github.com/netmsg/netmsg/otelnetmsg",otel_scope_schema_url="",otel_scope_version=""} 3`,
		`netmsg_sessions_open{otel_scope_name="github.com/netmsg/netmsg/otelnetmsg",otel_scope_schema_url="",otel_scope_version=""} 1`,
	} {
		assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(want)+`$`, page)
	}
	for _, dir := range []string{"receive", "transmit"} {
		m := regexp.MustCompile(`(?m)^netmsg_io_bytes_total\{network_io_direction="` + dir + `",[^}]*\} (\d+)$`).FindStringSubmatch(page)
		if assert.NotNil(t, m, "netmsg_io_bytes_total for %s", dir) {
			n, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			assert.Greater(t, n, 100, "bytes %s", dir) // six calls and a handshake
		}
	}
	assert.Contains(t, page, "# TYPE netmsg_call_duration_seconds histogram")

	require.NoError(t, cli.Close())
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`(?m)^netmsg_sessions_closed_total\{netmsg_close_reason="peer_normal",[^}]*\} 1$`).MatchString(fetch(t, u.metrics))
	}, 10*time.Second, 10*time.Millisecond, "the client's close is counted")
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
