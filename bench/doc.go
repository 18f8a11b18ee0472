// Package bench holds netmsg's side-by-side benchmarks. It is a module of
// its own so that the peer libraries (gRPC-go, arpc) never enter the
// library's go.mod. See README.md for the runner (cmd/netmsgbench), the
// shapes and the latest table; bench_test.go has the same contenders as Go
// benchmarks.
package bench
