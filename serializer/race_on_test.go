//go:build race

package serializer

// raceEnabled: under the race detector sync.Pool drops a share of the
// values put back on purpose, so pooled paths allocate now and then.
const raceEnabled = true
