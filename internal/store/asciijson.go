package store

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
)

// asciiJSONPolicy rewrites a JSON request body so it is pure ASCII: every
// non-ASCII character becomes a \uXXXX escape (a surrogate pair above
// U+FFFF). The document is the same JSON, so the service stores the same
// strings.
//
// Why: Azurite (3.37.0 and earlier) decodes each chunk of a request body
// as UTF-8 on its own and joins the strings, so a multi-byte character
// that straddles two network chunks is stored as U+FFFD (Azure/Azurite
// issue #2670: readRequestIntoText uses segments.join instead of
// Buffer.concat). Large entities with non-ASCII text were corrupted at
// random in the contract tests. Azure itself is not affected; the policy is
// applied to every backend anyway so the tested path is the production
// path.
type asciiJSONPolicy struct{}

func (asciiJSONPolicy) Do(req *policy.Request) (*http.Response, error) {
	body := req.Body()
	ct := req.Raw().Header.Get("Content-Type")
	if body == nil || !strings.Contains(ct, "json") {
		return req.Next()
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	if out, changed := asciiJSON(raw); changed {
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(out)), ct); err != nil {
			return nil, err
		}
	} else if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding request body: %w", err)
	}
	return req.Next()
}

// asciiJSON escapes every non-ASCII character of a JSON text as \uXXXX.
// In valid JSON non-ASCII text only occurs inside strings, where the escape
// means the same character. Invalid UTF-8 bytes become \ufffd.
func asciiJSON(b []byte) ([]byte, bool) {
	i := 0
	for i < len(b) && b[i] < utf8.RuneSelf {
		i++
	}
	if i == len(b) {
		return b, false
	}
	out := make([]byte, 0, len(b)+len(b)/4)
	out = append(out, b[:i]...)
	const hexdigits = "0123456789abcdef"
	esc := func(u uint16) {
		out = append(out, '\\', 'u', hexdigits[u>>12], hexdigits[u>>8&0xf], hexdigits[u>>4&0xf], hexdigits[u&0xf])
	}
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r > 0xFFFF {
			hi, lo := utf16.EncodeRune(r)
			esc(uint16(hi))
			esc(uint16(lo))
		} else {
			esc(uint16(r))
		}
		i += size
	}
	return out, true
}
