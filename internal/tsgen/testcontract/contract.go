// Package testcontract is the contract the generator's tests run on: one
// type for each rule of the JSON encoding and of wire names.
package testcontract

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/tsgen/testcontract/shared"
)

// Level is a named string: it gets a type alias.
type Level string

// Tags is a named slice.
type Tags []string

// Base is embedded in other types; its fields are promoted.
type Base struct {
	ID      int64
	Created time.Time
}

// Extra is embedded through a pointer: its fields are there only when the
// pointer is set.
type Extra struct {
	Note string `json:"note"`
}

// Page is generic; only its instantiations are generated.
type Page[T any] struct {
	Items []T
	Next  string `json:",omitempty"`
}

// Everything exercises the encoding rules field by field.
type Everything struct {
	Base
	*Extra
	netmsg.Returns[Answer]

	Plain      string
	Renamed    int    `json:"renamed"`
	Skipped    string `json:"-"`
	Dash       string `json:"-,"` // a key named "-"
	unexported int
	Omit       string             `json:",omitempty"`
	OmitPtr    *int               `json:"omit_ptr,omitempty"`
	OmitSlice  []int              `json:",omitempty"`
	OmitZero   time.Time          `json:",omitzero"`
	AsString   int64              `json:",string"`
	PtrString  *bool              `json:",string"`
	Ptr        *Base              // a nested object or null
	Bytes      []byte             // base64
	ByteArray  [4]byte            // an array of numbers
	Ints       []int              // null when nil
	Matrix     [][]float64        // nested arrays
	Map        map[string]int     // null when nil
	IntKeys    map[int]string     // keys written as strings
	Duration   time.Duration      // nanoseconds
	When       *time.Time         // RFC 3339 or null
	Raw        json.RawMessage    // any JSON
	Any        any                // any JSON
	Addr       netip.Addr         // a TextMarshaler: a string
	Level      Level              // the contract's alias
	Tags       Tags               // the contract's named slice
	Point      shared.Point       // a struct of another package
	Temp       shared.Celsius     // a number of another package
	Page       Page[shared.Point] // an instantiation
	Anonymous  struct {
		A int
		B string `json:"b,omitempty"`
	}
	Odd map[string][]*Base `json:"odd-key"`
}

// Answer is the response of Everything.
type Answer struct {
	OK bool
}

// Renamed travels under a name of its own.
type Renamed struct {
	Text string
}

// MessageType gives Renamed its wire name.
func (Renamed) MessageType() string { return wirePrefix + "renamed" }

const wirePrefix = "test.v1."

// GetItem is a request whose response is a pointer.
type GetItem struct {
	netmsg.Returns[*Item]
	Key string
}

// Item is GetItem's response.
type Item struct {
	Key   string
	Value []byte
}

// Ambiguous embeds two types with fields of the same names at the same
// depth: encoding/json writes neither Name, and the tagged Which.
type Ambiguous struct {
	Left
	Right
}

// Left is embedded in Ambiguous.
type Left struct {
	Name  string
	Which string `json:"Which"`
}

// Right is embedded in Ambiguous.
type Right struct {
	Name  string
	Which string
}

// Empty has no fields: {}.
type Empty struct{}

// Handler is an interface: left out.
type Handler interface{ Handle() }
