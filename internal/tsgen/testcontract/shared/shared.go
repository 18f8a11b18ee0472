// Package shared is a package a test contract refers to.
package shared

// Point is a struct from outside the contract package.
type Point struct {
	X, Y int
}

// Celsius is a named number from outside the contract package.
type Celsius float64
