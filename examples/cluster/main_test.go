package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The launcher finds the example it runs (which is tested in its own
// module, natsbroker/examples/cluster).
func TestFindsTheExample(t *testing.T) {
	dir, err := natsbrokerDir()
	require.NoError(t, err)
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(mod), "module github.com/netmsg/netmsg/natsbroker\n"), "%s", mod)
}
