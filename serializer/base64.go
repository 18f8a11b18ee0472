package serializer

import (
	"bytes"
	"encoding/base64"
)

// appendBase64 appends the padded standard base64 of src to b, the form
// encoding/json gives a []byte.
func appendBase64(b, src []byte) []byte {
	return base64.StdEncoding.AppendEncode(b, src)
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
	n := len(s) / 4 * 3
	if len(s) > 0 && s[len(s)-1] == '=' {
		n--
		if s[len(s)-2] == '=' {
			n--
		}
	}
	out := make([]byte, n)
	if got, err := base64.StdEncoding.Decode(out, s); err != nil || got != n {
		return nil, false
	}
	return out, true
}
