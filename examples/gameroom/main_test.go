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

// TestGameroom plays a small game: every bot must get every tick of its
// room while a frozen player in the first room is cut as a slow consumer.
func TestGameroom(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, &out, config{rooms: 3, players: 6, duration: 2 * time.Second})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	got := out.String()
	for _, want := range []string{
		"gameroom: 3 rooms × 6 bots, a hopper and a frozen player (in r0)",
		", 0 missed; worst time from tick to handler",
		"frozen player: cut as a slow consumer",
		"r0's other 6 bots got all",
		"stats: 1 slow consumers",
	} {
		assert.Contains(t, got, want)
	}
}
