package tsgen_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/tsgen"
	tc "github.com/netmsg/netmsg/internal/tsgen/testcontract"
	"github.com/netmsg/netmsg/internal/tsgen/testcontract/shared"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden file and clients/typescript/test/gen/contract.ts")

func generate(t *testing.T, pkg string) []byte {
	t.Helper()
	start := time.Now()
	src, err := tsgen.Generate(tsgen.Options{Package: pkg, Dir: "../..", Warn: func(s string) { t.Log("note:", s) }})
	require.NoError(t, err)
	t.Logf("generated %s in %v", pkg, time.Since(start).Round(time.Millisecond))
	return src
}

// compareFile fails when path does not hold want (or writes it with -update).
func compareFile(t *testing.T, path string, want []byte, regenerate string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, want, 0o644))
		return
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err, "regenerate with: %s", regenerate)
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; regenerate with: %s\n--- generated now:\n%s", path, regenerate, want)
	}
}

func TestGoldenTestContract(t *testing.T) {
	src := generate(t, "./internal/tsgen/testcontract")
	compareFile(t, filepath.Join("testdata", "testcontract.ts"), src, "go test ./internal/tsgen -update")
}

// The TypeScript client's tests compile against the declarations of the
// typesafe example's contract: they must be what the generator writes today.
func TestTypesafeContractIsCurrent(t *testing.T) {
	src := generate(t, "./examples/typesafe/contract")
	compareFile(t, filepath.Join("..", "..", "clients", "typescript", "test", "gen", "contract.ts"), src,
		"go run ./cmd/netmsg-ts -pkg ./examples/typesafe/contract -out clients/typescript/test/gen/contract.ts")
}

// Real values encoded by serializer.JSON have the declared shapes, keys and
// optional keys included, and travel under the declared wire names.
func TestDeclarationsMatchPayloads(t *testing.T) {
	decls, err := parseTSFile(generate(t, "./internal/tsgen/testcontract"))
	require.NoError(t, err)

	n := 7
	yes := true
	when := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	full := tc.Everything{
		Base:      tc.Base{ID: 1 << 40, Created: when},
		Extra:     &tc.Extra{Note: "n"},
		Plain:     "p",
		Renamed:   2,
		Skipped:   "never on the wire",
		Dash:      "d",
		Omit:      "o",
		OmitPtr:   &n,
		OmitSlice: []int{1},
		OmitZero:  when,
		AsString:  1 << 60,
		PtrString: &yes,
		Ptr:       &tc.Base{ID: 3},
		Bytes:     []byte{0, 1, 2, 0xff},
		ByteArray: [4]byte{1, 2, 3, 4},
		Ints:      []int{1, 2},
		Matrix:    [][]float64{{1.5}, nil, {}},
		Map:       map[string]int{"a": 1},
		IntKeys:   map[int]string{4: "four"},
		Duration:  1500 * time.Millisecond,
		When:      &when,
		Raw:       json.RawMessage(`{"free":["form",1]}`),
		Any:       []any{"x", 1.5, nil},
		Addr:      netip.MustParseAddr("192.0.2.1"),
		Level:     "warn",
		Tags:      tc.Tags{"a"},
		Point:     shared.Point{X: 1, Y: 2},
		Temp:      21.5,
		Page:      tc.Page[shared.Point]{Items: []shared.Point{{X: 3}}, Next: "cursor"},
		Odd:       map[string][]*tc.Base{"k": {nil, {ID: 5}}},
	}
	full.Anonymous.A, full.Anonymous.B = 1, "b"

	samples := []struct {
		name string
		v    any
	}{
		{"Everything zero", tc.Everything{}},
		{"Everything full", full},
		{"Everything empty collections", tc.Everything{Ints: []int{}, Map: map[string]int{}, Bytes: []byte{}, OmitSlice: []int{}, Tags: tc.Tags{}}},
		{"Answer", tc.Answer{OK: true}},
		{"Renamed", tc.Renamed{Text: "t"}},
		{"GetItem", tc.GetItem{Key: "k"}},
		{"Item", tc.Item{Key: "k", Value: []byte("v")}},
		{"Item zero", tc.Item{}},
		{"Ambiguous", tc.Ambiguous{Left: tc.Left{Name: "l", Which: "left"}, Right: tc.Right{Name: "r", Which: "right"}}},
		{"Empty", tc.Empty{}},
	}
	ser := serializer.JSON{}
	for _, s := range samples {
		b, err := ser.Marshal(s.v)
		require.NoError(t, err, s.name)
		v := decodeJSON(t, b)
		name := strings.Fields(s.name)[0]
		decl, ok := decls.types[name]
		require.True(t, ok, "%s is not declared", name)
		assert.NoError(t, decls.check(v, decl, name), "%s: %s", s.name, b)
	}

	// Every key of the full value is declared and was written: the check
	// above found each; here the optional ones must have been present too.
	b, _ := ser.Marshal(full)
	for _, fl := range decls.types["Everything"].fields {
		assert.Contains(t, string(b), `"`+fl.key+`":`, "the full value writes %q", fl.key)
	}
	assert.NotContains(t, string(b), "never on the wire")

	// Wire names and the request → response mapping.
	wantDesc := map[string]struct {
		v    any
		kind string
		resp any
	}{
		"Everything": {tc.Everything{}, "request", tc.Answer{OK: true}},
		"GetItem":    {tc.GetItem{}, "request", &tc.Item{Key: "k"}},
		"Renamed":    {tc.Renamed{}, "message", nil},
		"Ambiguous":  {tc.Ambiguous{}, "message", nil},
		"Empty":      {tc.Empty{}, "message", nil},
	}
	for name, want := range wantDesc {
		d, ok := decls.descs[name]
		require.True(t, ok, "no descriptor for %s", name)
		assert.Equal(t, want.kind, d.kind, name)
		assert.Equal(t, netmsg.TypeName(want.v), d.wire, "%s: wire name", name)
		if want.kind == "request" {
			require.NotNil(t, d.response, name)
			assert.Equal(t, "ref", d.request.kind)
			assert.Equal(t, name, d.request.name)
			for _, r := range []any{want.resp, nil} {
				if r == nil && d.response.kind != "union" {
					continue // a non-pointer response is never null
				}
				rb, err := ser.Marshal(r)
				require.NoError(t, err)
				assert.NoError(t, decls.check(decodeJSON(t, rb), d.response, name+" response"), "%s", rb)
			}
		}
	}
	for _, resp := range []string{"Answer", "Item"} {
		_, ok := decls.descs[resp]
		assert.False(t, ok, "a response type (%s) gets no descriptor of its own", resp)
	}
	_, ok := decls.descs["Handler"]
	assert.False(t, ok, "an interface type gets no descriptor")
}

// The checker itself rejects what does not match (a test that cannot fail
// proves nothing).
func TestCheckerRejects(t *testing.T) {
	decls, err := parseTSFile([]byte("export interface A {\n  x: number;\n  y?: string[] | null;\n}\n"))
	require.NoError(t, err)
	a := decls.types["A"]
	for _, bad := range []string{`{}`, `{"x":"1"}`, `{"x":1,"z":2}`, `{"x":1,"y":[1]}`, `null`, `[]`} {
		assert.Error(t, decls.check(decodeJSON(t, []byte(bad)), a, "A"), bad)
	}
	for _, good := range []string{`{"x":1}`, `{"x":1,"y":null}`, `{"x":1,"y":["s"]}`} {
		assert.NoError(t, decls.check(decodeJSON(t, []byte(good)), a, "A"), good)
	}
}

// decodeJSON decodes b keeping numbers as json.Number.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&v), "%s", b)
	return v
}

func TestGenerateErrors(t *testing.T) {
	for pkg, want := range map[string]string{
		"./internal/tsgen/testcontract/badname":  "MessageType does not return a constant string",
		"./internal/tsgen/testcontract/badfield": "cannot be encoded as JSON",
		"./internal/tsgen/nosuchpackage":         "nosuchpackage",
		"./internal/tsgen/...":                   "more than one package",
	} {
		_, err := tsgen.Generate(tsgen.Options{Package: pkg, Dir: "../.."})
		if assert.Error(t, err, pkg) {
			assert.Contains(t, err.Error(), want, pkg)
		}
	}
}
