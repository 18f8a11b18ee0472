module github.com/netmsg/netmsg

go 1.24

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/goccy/go-json v0.12.0
	github.com/lxzan/gws v1.9.1
	github.com/segmentio/asm v1.2.1
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/klauspost/compress v1.17.9 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.0.0-20220412211240-33da011f77ad // indirect
)
