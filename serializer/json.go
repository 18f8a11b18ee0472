package serializer

import (
	"bytes"
	"encoding/json"
	"sync"
)

// JSON encodes payloads with encoding/json. Its Name is "json". The zero
// value is ready to use and safe for concurrent use.
type JSON struct{}

// Name returns "json".
func (JSON) Name() string { return "json" }

// Marshal returns json.Marshal(v).
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// MarshalAppend appends the same bytes json.Marshal(v) returns to b. It
// encodes into a pooled buffer, so the only allocation for the result is
// growing b when it lacks capacity.
func (JSON) MarshalAppend(b []byte, v any) ([]byte, error) {
	enc := jsonEncoders.Get().(*jsonEncoder)
	defer enc.release()
	if err := enc.enc.Encode(v); err != nil {
		return b, err
	}
	out := enc.buf.Bytes()
	// json.Encoder terminates every value with a newline; json.Marshal
	// does not.
	if n := len(out); n > 0 && out[n-1] == '\n' {
		out = out[:n-1]
	}
	return append(b, out...), nil
}

// Unmarshal is json.Unmarshal(data, v); v must be a non-nil pointer.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// jsonEncoder is a reusable json.Encoder writing into its own buffer.
type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// maxPooledJSONBuffer keeps one huge payload from pinning its buffer in the
// pool for ever.
const maxPooledJSONBuffer = 64 << 10

var jsonEncoders = sync.Pool{New: func() any {
	e := new(jsonEncoder)
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

func (e *jsonEncoder) release() {
	if e.buf.Cap() > maxPooledJSONBuffer {
		return
	}
	e.buf.Reset()
	jsonEncoders.Put(e)
}
