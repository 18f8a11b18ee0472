package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	benchType    = "contract.WeatherRequest"
	benchPayload = []byte(`{"City":"Bonn","Days":3,"Units":"metric"}`)
	benchMD      = map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "congo=t61rcWkgMzE",
		"user":        "alice",
	}
)

func TestAppendDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 4096)
	var out []byte
	cases := map[string]func(){
		"request": func() {
			out = AppendHeaderAndPayload(buf[:0], KindRequest, 12345, benchType, benchPayload, 9000, nil)
		},
		"request with metadata": func() {
			out = AppendHeaderAndPayload(buf[:0], KindRequest, 12345, benchType, benchPayload, 9000, benchMD)
		},
		"request with 16 metadata entries": func() {
			out = AppendHeaderAndPayload(buf[:0], KindRequest, 12345, benchType, benchPayload, 9000, md16)
		},
		"error": func() {
			out = AppendError(buf[:0], 12345, benchType, 13, "internal error")
		},
		"size": func() {
			_ = SizeHeaderAndPayload(KindRequest, 12345, benchType, benchPayload, 9000, benchMD)
		},
	}
	for name, f := range cases {
		allocs := testing.AllocsPerRun(200, f)
		assert.Zero(t, allocs, "%s: %v allocs per run", name, allocs)
	}
	require.NotEmpty(t, out)
}

var md16 = manyMetadata(sortOnStack)

func TestDecodeDoesNotAllocate(t *testing.T) {
	plain := AppendHeaderAndPayload(nil, KindRequest, 12345, benchType, benchPayload, 9000, nil)
	withMD := AppendHeaderAndPayload(nil, KindRequest, 12345, benchType, benchPayload, 9000, benchMD)
	errEnv := AppendError(nil, 12345, benchType, 13, "internal error")
	var e Envelope
	for name, data := range map[string][]byte{"plain": plain, "error": errEnv, "metadata, reused envelope": withMD} {
		require.NoError(t, Decode(data, &e)) // warm up Metadata capacity
		allocs := testing.AllocsPerRun(200, func() {
			if err := Decode(data, &e); err != nil {
				panic(err)
			}
		})
		assert.Zero(t, allocs, "%s: %v allocs per run", name, allocs)
	}
}
