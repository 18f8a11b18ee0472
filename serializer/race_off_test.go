//go:build !race

package serializer

const raceEnabled = false
