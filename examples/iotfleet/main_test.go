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

// TestFleet runs a small fleet through a server restart: every device must
// come back, sign in again, report and answer the server's request.
func TestFleet(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, &out, 50, 1500*time.Millisecond)
	require.NoError(t, err, "output:\n%s", out.String())
	got := out.String()
	for _, want := range []string{
		"fleet: 50 devices connected and signed in",
		"fleet: 50 devices were told 1001 with a reconnect hint; all 50 reconnected and signed in again",
		"server → devices: SetInterval{50 ms}: 50 acknowledged, 0 failed",
		"0 silent devices, 50 SetInterval acks",
	} {
		assert.Contains(t, got, want)
	}
}
