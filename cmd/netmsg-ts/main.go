// Command netmsg-ts writes TypeScript declarations for a Go contract package,
// for the TypeScript client in clients/typescript:
//
//	go run github.com/netmsg/netmsg/cmd/netmsg-ts -pkg example.com/app/contract -out src/contract.ts
//
// For every exported type of the package it writes an interface with the
// JSON shape serializer.JSON puts on the wire (field names from json tags,
// omitempty fields optional, pointers, slices and maps "| null",
// time.Duration a number of nanoseconds, time.Time and []byte strings), and
// for every message and request type a descriptor constant with its wire
// name; a request's descriptor also carries its response type, so that
// client.request(WeatherRequest, {City: "Bonn"}) is checked by tsc and
// returns Promise<WeatherResponse>. Response types get no descriptor of their
// own. Generic, interface and protobuf types are left out (with a note on
// standard error).
//
// -pkg takes an import path or a relative path (./contract), resolved by the
// go command in the current directory's module; the go command must be on
// PATH. See docs/PROTOCOL.md for the rules the output follows.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/netmsg/netmsg/internal/tsgen"
)

func main() {
	pkg := flag.String("pkg", "", "the contract package: import path or ./relative path (required)")
	out := flag.String("out", "-", "the .ts file to write; - for standard output")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: netmsg-ts -pkg <import path> [-out <file.ts>]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *pkg == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	src, err := tsgen.Generate(tsgen.Options{
		Package: *pkg,
		Warn:    func(s string) { fmt.Fprintln(os.Stderr, "netmsg-ts: note:", s) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "netmsg-ts:", err)
		os.Exit(1)
	}
	if *out == "-" {
		_, err = os.Stdout.Write(src)
	} else {
		err = writeFile(*out, src)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netmsg-ts:", err)
		os.Exit(1)
	}
}

// writeFile replaces path with data at once: a reader never sees half a file.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
