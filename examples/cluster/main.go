// Command cluster starts the cluster example from the repository root:
//
//	go run ./examples/cluster
//
// The example itself, three servers as one through NATS, is
// natsbroker/examples/cluster. It needs NATS, and the netmsg module does not
// depend on NATS (only the natsbroker module does), so it cannot be a package
// of this module. This launcher runs it in its own module with
// "go run ./examples/cluster" in natsbroker/, passing its arguments on, and
// exits with its exit code. It needs the repository's source tree (it is
// not a program to install) and the go command that runs it.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
)

func main() {
	dir, err := natsbrokerDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples/cluster:", err)
		fmt.Fprintln(os.Stderr, "run it from a clone of the repository: cd natsbroker && go run ./examples/cluster")
		os.Exit(2)
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	fmt.Fprintf(os.Stderr, "examples/cluster: the example lives in the natsbroker module (the core module has no NATS dependency); running it there: cd %s && go run ./examples/cluster\n", dir)
	cmd := exec.Command(goCmd, append([]string{"run", "./examples/cluster"}, os.Args[1:]...)...)
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(os.Interrupt) // the child gets Ctrl-C from the terminal too, and ends by itself
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "examples/cluster:", err)
		os.Exit(1)
	}
}

// natsbrokerDir finds natsbroker/ of the repository: from the working
// directory up, else beside this source file.
func natsbrokerDir() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			cand := filepath.Join(dir, "natsbroker")
			if _, err := os.Stat(filepath.Join(cand, "examples", "cluster", "main.go")); err == nil {
				return cand, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find natsbroker/examples/cluster in the source tree")
}
