//go:build !linux

package transport

import "errors"

const canWriteNow = false

type iovec = struct{}

// nowWriter is WriteFramesNow's state; without non-blocking writes there is
// never a tail.
type nowWriter struct{ tail []byte }

func (c *Conn) writeNow(*writeBufs, [][]byte, int) (bool, error) {
	return false, errors.New("transport: non-blocking writes are not implemented on this system")
}
