package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs small, end to end, and says what it showed.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, 6), out.String())
	t.Log("\n" + out.String())
	for _, want := range []string{
		"bots: 6 connected and in the lobby: node-1 2, node-2 2, node-3 2",
		"node-1 → lobby: news #1 reached all 6 bots",
		"node-3 → bot-01 on node-1: Status answered",
		"node-2: shut down; 2 of its 2 bots were told 1001",
		"fail-over: 2 bots joined again on another node",
		"node-1 → lobby: news #2 reached all 6 bots: node-1 2, node-3 4",
		"old session on node-2: netmsg: no such session",
		"done: 6 bots, 2 nodes left",
	} {
		assert.Contains(t, out.String(), want)
	}
}
