package nettest

import (
	"sync"
	"testing"
	"time"
)

// Recv waits up to Wait for a value on ch; what names it in the failure.
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Wait):
		t.Fatalf("timed out after %v waiting for %s", Wait, what)
		var zero T
		return zero
	}
}

// None fails the test if a value arrives on ch within d.
func None[T any](t testing.TB, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	case <-time.After(d):
	}
}

// Releaser returns a channel that release closes; release may be called more
// than once. It is also released when the test ends, so a handler blocked on
// it cannot hold up the cleanup of a failed test: make it after the server or
// client whose handlers wait for it (cleanups run last in, first out).
func Releaser(t testing.TB) (ch chan struct{}, release func()) {
	ch = make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return ch, release
}
