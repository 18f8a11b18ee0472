//go:build !linux

package serializer

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
