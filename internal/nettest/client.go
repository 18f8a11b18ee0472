package nettest

import (
	"context"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// NewClient makes a client that is closed when the test ends; the test fails
// if that Close returns an error or takes longer than Wait.
func NewClient(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := netmsg.NewClient(url, opts...)
	t.Cleanup(func() { CloseWithin(t, c, Wait) })
	return c
}

// Connect makes a client (see NewClient) and its first connection.
func Connect(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := NewClient(t, url, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	return c
}

// CloseWithin calls c.Close, fails the test if it returns an error or takes
// longer than d, and returns how long it took. A Close still running after d
// is left to finish on its own goroutine.
func CloseWithin(t testing.TB, c *netmsg.Client, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "Client.Close")
	case <-time.After(d):
		t.Errorf("Client.Close did not return within %v", d)
	}
	return time.Since(start)
}

// WaitState waits up to Wait for c to be in state want.
func WaitState(t testing.TB, c *netmsg.Client, want netmsg.ConnState) {
	t.Helper()
	require.Eventually(t, func() bool { return c.State() == want }, Wait, time.Millisecond,
		"client state: want %v, have %v", want, c.State())
}
