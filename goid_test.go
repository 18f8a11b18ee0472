package netmsg

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGoroutineID(t *testing.T) {
	t.Parallel()
	here := goroutineID()
	assert.NotZero(t, here)
	assert.Equal(t, here, goroutineID(), "stable on one goroutine")
	other := make(chan uint64)
	go func() { other <- goroutineID() }()
	id := <-other
	assert.NotZero(t, id)
	assert.NotEqual(t, here, id)
}
