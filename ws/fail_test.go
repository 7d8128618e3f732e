package ws_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/ws"
)

// rawDial opens a WebSocket by hand, with extra request header lines.
func rawDial(t *testing.T, srv *httptest.Server, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return nc, br, resp
}

// maskedFrame encodes a client frame with a fixed mask.
func maskedFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	var b []byte
	switch n := len(payload); {
	case n <= 125:
		b = []byte{b0, 0x80 | byte(n)}
	case n <= 0xFFFF:
		b = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// readFrame reads one server frame.
func readFrame(br *bufio.Reader) (b0 byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(br, x[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(br, x[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(br, payload)
	return h[0], payload, err
}

// A client that breaks the protocol gets the close frame and then the end
// of the TCP stream at once (RFC 6455 §7.1.7: the server fails the
// connection and closes TCP first). Before, the server kept the socket
// for its 3 s close timeout after a framing error, and after a bad UTF-8
// text until the client's close frame, so a client waiting for the
// server to drop TCP (Autobahn's does, for a second) gave up first.
func TestViolationEndsTCPAtOnce(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		code  int
	}{
		{"reserved bit", maskedFrame(0x81|0x20, []byte("x")), ws.CloseProtocolError},
		{"reserved opcode", maskedFrame(0x83, nil), ws.CloseProtocolError},
		{"bad close code", maskedFrame(0x88, []byte{0x03, 0xed}), ws.CloseProtocolError},
		{"invalid utf-8", maskedFrame(0x81, []byte{'o', 'k', 0xff}), ws.CloseInvalidPayload},
		{"invalid utf-8 mid-message", maskedFrame(0x01, []byte{0xed, 0xa0, 0x80}), ws.CloseInvalidPayload},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv := httptest.NewServer(ws.Require(lowerHandler(), m.opts(t)...))
			defer srv.Close()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					nc, br, _ := rawDial(t, srv, "")
					nc.Write(tc.frame)
					nc.SetReadDeadline(time.Now().Add(5 * time.Second))
					b0, payload, err := readFrame(br)
					if err != nil || b0 != 0x88 || len(payload) < 2 || int(binary.BigEndian.Uint16(payload)) != tc.code {
						t.Fatalf("want close frame %d, got %#x %q %v", tc.code, b0, payload, err)
					}
					// The client neither answers nor closes: the server's end
					// of the stream must come well within the close timeout.
					nc.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
					if n, err := br.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
						t.Fatalf("after the close frame: %d bytes, %v; want the end of the stream", n, err)
					}
				})
			}
		})
	}
}

// A client may limit the server's LZ77 window below what compress/flate
// uses (Autobahn 13.3, 13.5): the offer is accepted, the limit echoed, and
// the server sends its messages uncompressed while still inflating the
// client's. Before, such offers were declined.
func TestDeflateServerWindowLimit(t *testing.T) {
	srv := httptest.NewServer(ws.Require(lowerHandler(), ws.Compression(true)))
	defer srv.Close()
	nc, br, resp := rawDial(t, srv, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=8\r\n")
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_max_window_bits=8") || !strings.Contains(ext, "client_no_context_takeover") {
		t.Fatalf("extensions %q", ext)
	}
	text := strings.Repeat("Compressible TEXT ", 500)
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write([]byte(text))
	w.Flush()
	compressed := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	nc.Write(maskedFrame(0x81|0x40, compressed)) // RSV1: compressed
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b0, payload, err := readFrame(br)
	if err != nil || b0 != 0x81 {
		t.Fatalf("want an uncompressed text frame, got %#x %v", b0, err)
	}
	if string(payload) != strings.ToLower(text) {
		t.Fatalf("echo damaged (%d bytes)", len(payload))
	}
}

// Malformed permessage-deflate offers are declined (RFC 7692 §7: a
// parameter twice, an unknown one, a bad value); a later good offer is
// taken.
func TestDeflateOffers(t *testing.T) {
	srv := httptest.NewServer(ws.Require(lowerHandler(), ws.Compression(true)))
	defer srv.Close()
	cases := []struct {
		offer string
		want  string
	}{
		{"permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"permessage-deflate; server_max_window_bits=15", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"},
		{"permessage-deflate; client_max_window_bits=10", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"permessage-deflate; server_max_window_bits", ""},
		{"permessage-deflate; server_max_window_bits=7", ""},
		{"permessage-deflate; client_max_window_bits=16", ""},
		{"permessage-deflate; server_no_context_takeover=1", ""},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", ""},
		{"permessage-deflate; x-unknown", ""},
		{"permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=9", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"},
		{"x-webkit-deflate-frame", ""},
	}
	for _, c := range cases {
		_, _, resp := rawDial(t, srv, "Sec-WebSocket-Extensions: "+c.offer+"\r\n")
		if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != c.want {
			t.Errorf("offer %q: answered %q, want %q", c.offer, got, c.want)
		}
	}
}
