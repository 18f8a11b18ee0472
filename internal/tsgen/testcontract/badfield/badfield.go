// Package badfield has a field encoding/json cannot encode.
package badfield

// Pipe carries a channel.
type Pipe struct {
	C chan int
}
