//go:build !race

package netmsg_test

const raceEnabled = false
