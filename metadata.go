package netmsg

import (
	"context"
	"maps"

	"github.com/netmsg/netmsg/internal/wire"
)

type outgoingKey struct{}
type incomingKey struct{}

// WithMetadata returns a copy of ctx carrying key/value pairs (such as trace
// context) that Send and SendRequest called with it put in the envelope's
// metadata. Pairs add to those already on ctx; a later key wins. An odd
// trailing key is ignored.
func WithMetadata(ctx context.Context, kv ...string) context.Context {
	md := make(map[string]string, len(kv)/2)
	if prev, ok := ctx.Value(outgoingKey{}).(map[string]string); ok {
		maps.Copy(md, prev)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		md[kv[i]] = kv[i+1]
	}
	return context.WithValue(ctx, outgoingKey{}, md)
}

// Metadata returns the metadata that arrived with the message or request a
// handler's ctx belongs to, or nil when it carried none. The map is the
// handler's own.
func Metadata(ctx context.Context) map[string]string {
	md, _ := ctx.Value(incomingKey{}).(map[string]string)
	return md
}

func outgoingMetadata(ctx context.Context) map[string]string {
	md, _ := ctx.Value(outgoingKey{}).(map[string]string)
	return md
}

// withIncoming copies the envelope's metadata (which aliases the frame buffer)
// into the handler's context.
func withIncoming(ctx context.Context, kvs []wire.KV) context.Context {
	md := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		md[string(kv.Key)] = string(kv.Value)
	}
	return context.WithValue(ctx, incomingKey{}, md)
}
