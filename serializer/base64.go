package serializer

import (
	"bytes"
	"encoding/base64"
	"slices"
	"unsafe"

	simdbase64 "github.com/segmentio/asm/base64"
)

// The base64 of []byte fields is most of a JSON codec's work on a body of a
// few KiB: encoding/base64 does about 1.4 GB/s here, the AVX2 (amd64) and
// NEON (arm64) code of segmentio/asm ten times that, with encoding/base64's
// alphabet, padding and results; on other CPUs it is encoding/base64.
var stdBase64 = simdbase64.StdEncoding

// appendBase64 appends the padded standard base64 of src to b, the form
// encoding/json gives a []byte.
func appendBase64(b, src []byte) []byte {
	n := stdBase64.EncodedLen(len(src))
	b = slices.Grow(b, n)
	dst := b[len(b) : len(b)+n]
	// The wide encoder's first load starts 4 bytes before src (masked);
	// where that crosses into the previous page, which it does for every
	// body that starts a page (any []byte of 4 KiB or more), the CPU takes
	// ~130 ns to assist it. The first 6 bytes are encoded apart then.
	if len(src) >= 64 && uintptr(unsafe.Pointer(unsafe.SliceData(src)))%4096 < 4 {
		base64.StdEncoding.Encode(dst[:8], src[:6])
		dst, src = dst[8:], src[6:]
	}
	stdBase64.Encode(dst, src)
	return b[:len(b)+n]
}

// decodeBase64 decodes padded standard base64 into a new slice of exactly
// the decoded length. It reports false for anything else, including input
// that encoding/json's decoder still accepts (line breaks, missing
// padding), which is then left to the general path.
func decodeBase64(s []byte) ([]byte, bool) {
	// StdEncoding skips line breaks; a JSON string cannot hold them raw.
	if len(s)%4 != 0 || bytes.IndexByte(s, '\n') >= 0 || bytes.IndexByte(s, '\r') >= 0 {
		return nil, false
	}
	if len(s) == 0 {
		return []byte{}, true
	}
	n := len(s) / 4 * 3
	if s[len(s)-1] == '=' {
		n--
		if s[len(s)-2] == '=' {
			n--
		}
	}
	out := make([]byte, n)
	// The wide decoder wants room for the whole DecodedLen, which counts
	// padding as data: all groups but the last go into out, the last one
	// through a small buffer.
	body := len(s) - 4
	if got, err := stdBase64.Decode(out[:body/4*3], s[:body]); err != nil || got != body/4*3 {
		return nil, false
	}
	var last [3]byte
	got, err := base64.StdEncoding.Decode(last[:], s[body:])
	if err != nil || body/4*3+got != n {
		return nil, false
	}
	copy(out[body/4*3:], last[:got])
	return out, true
}
