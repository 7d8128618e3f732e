package ws

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzDeflate feeds any bytes to the permessage-deflate decompressor:
// it answers a message within the limit or an error (1002 for a broken
// stream, 1009 past the limit), never more than the limit, never a
// panic; what compress makes, it gives back. Seed corpus:
// testdata/fuzz/FuzzDeflate.
func FuzzDeflate(f *testing.F) {
	e := newEngine(EngineConfig{})
	f.Add(e.compress([]byte("hello hello hello hello hello hello hello hello hello hello hello")))
	f.Add(e.compress(bytes.Repeat([]byte{0}, 4096)))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1024
		out, perr := e.decompress(data, limit)
		if perr != nil {
			if perr.code != CloseProtocolError && perr.code != CloseMessageTooBig {
				t.Fatalf("error code %d", perr.code)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("%d bytes out, over the limit of %d", len(out), limit)
		}
		if len(data) <= limit {
			back, perr := e.decompress(e.compress(data), limit)
			if perr != nil || !bytes.Equal(back, data) {
				t.Fatalf("round trip of %q: %q %v", data, back, perr)
			}
		}
	})
}

// FuzzDeflateOffer feeds any Sec-WebSocket-Extensions header to the
// negotiation: an accepted offer has a window limit of 0 or 8..15 and the
// response header is built only from it (the request's bytes never reach
// the response). Seed corpus: testdata/fuzz/FuzzDeflateOffer.
func FuzzDeflateOffer(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Sec-Websocket-Extensions": {header}}}
		p := negotiateDeflate(r)
		if p == nil {
			return
		}
		if b := p.serverMaxWindowBits; b != 0 && (b < 8 || b > 15) {
			t.Fatalf("%q: window bits %d", header, b)
		}
		resp := string(responseHeader("dGhlIHNhbXBsZSBub25jZQ==", "", p, nil))
		ext := resp[strings.Index(resp, "Sec-WebSocket-Extensions: "):]
		ext = ext[:strings.Index(ext, "\r\n")]
		if strings.ContainsAny(strings.TrimPrefix(ext, "Sec-WebSocket-Extensions: "), "\r\n,\"") {
			t.Fatalf("%q: response %q", header, ext)
		}
	})
}
