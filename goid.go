package netmsg

import (
	"bytes"
	"runtime"
	"strconv"
)

// goroutineID returns the calling goroutine's id, read from the first line
// of its stack trace ("goroutine 42 [running]:"). Go has no goroutine-local
// state, and Client.Close and Session.Close need to know whether they are
// called from a goroutine they must not wait for: a client callback or
// handler, or the session's read loop. It costs about a microsecond and runs
// around client callbacks, once per read loop and once per client dispatcher
// worker (they are pooled), never per message.
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
