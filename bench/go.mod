module github.com/netmsg/netmsg/bench

go 1.26.0

require (
	github.com/lesismal/arpc v1.2.17
	github.com/lxzan/gws v1.9.1
	github.com/netmsg/netmsg v0.0.0-00010101000000-000000000000
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/goccy/go-json v0.12.0 // indirect
	github.com/klauspost/compress v1.17.9 // indirect
	github.com/segmentio/asm v1.2.1 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
)

replace github.com/netmsg/netmsg => ../
