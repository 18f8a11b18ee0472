// Package nettest holds the one set of fixtures the library's end-to-end
// tests share. Everything runs over real loopback sockets, and everything a
// fixture starts is stopped and waited for when the test ends (t.Cleanup), so
// packages using it can run goleak.
//
//   - Servers: StartServer serves a netmsg.Server on 127.0.0.1 with Serve;
//     Listen tunes that (a fixed address, TLS, socket options, failing the
//     test on Error-level log records). Kill drops every connection as a
//     dying process would.
//   - Clients: NewClient and Connect make netmsg clients closed at the end of
//     the test; CloseWithin bounds Client.Close.
//   - Recorder records server and client callbacks on channels and counts them.
//   - GwsPeer is a peer that speaks WebSocket through gws but not netmsg (it
//     sends well-framed envelopes a netmsg peer never would); GwsServer is
//     the same on the server side.
//   - WSPeer frames everything itself over a plain TCP connection: arbitrary
//     frames, pings, partial frames, byte drips, and reading at a chosen
//     pace or not at all. DialTCP is a TCP connection without a handshake.
//   - Measure logs what an attack cost: heap growth (peak and after), bytes
//     allocated, goroutines and time.
//   - Recv, None and Releaser are small waiting helpers.
//
// Timing bounds here are wide (Wait is 5 s) because the tests run under -race
// on shared machines; a test proves a bound of the library by asserting a
// value far below a default it must not have waited for.
package nettest

import "time"

// Wait bounds what must happen "at once" or within a configured bound far
// below it.
const Wait = 5 * time.Second
