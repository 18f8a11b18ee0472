package netmsg

import (
	"bytes"
	"runtime"
	"strconv"
)

// goroutineID returns the calling goroutine's id, read from the first line
// of its stack trace ("goroutine 42 [running]:"). Go has no goroutine-local
// state, and Client.Close needs to know whether it is called from one of the
// client's own callbacks, which it must not wait for. It costs about a
// microsecond and runs only around those callbacks, never per message.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
