//go:build race

package netmsg_test

// raceEnabled: the race detector adds allocations and drops pooled values.
const raceEnabled = true
