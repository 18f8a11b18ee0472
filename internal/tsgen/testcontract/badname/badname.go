// Package badname has a wire name the generator cannot read without running
// code.
package badname

import "strings"

// Shouting computes its wire name.
type Shouting struct{ Text string }

// MessageType is not a constant.
func (Shouting) MessageType() string { return strings.ToUpper("badname.shouting") }
