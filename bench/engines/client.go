package main

// A minimal raw WebSocket client: plain TCP dial, the RFC 6455 upgrade
// request written by hand, the response read up to "\r\n\r\n" and checked,
// then frames read and written directly on the net.Conn. After setup a
// connection holds no goroutine and no buffer in this process.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

const (
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" // RFC 6455, section 1.3
	// maxResponseHead bounds the upgrade response we are willing to read.
	maxResponseHead = 4096
	// maxClientFrame bounds a frame the client accepts from a server.
	maxClientFrame = 64 << 10
)

// acceptKey is Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// prefixReader reads pre first, then r: the bytes read past the response
// head (a server may send its first frame in the same segment as the 101).
type prefixReader struct {
	pre []byte
	r   io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// dialWS opens one WebSocket connection to ws://addr/ws, and reads the
// server's first message, which must be the text "hello". The whole setup
// is bounded by timeout.
func dialWS(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := handshake(conn, addr, timeout); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

func handshake(conn net.Conn, addr string, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + wsPath + " HTTP/1.1\r\n" +
		"Host: " + addr + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("write upgrade request: %w", err)
	}

	var buf [maxResponseHead]byte
	n := 0
	end := -1
	for end < 0 {
		if n == len(buf) {
			return errors.New("upgrade response head too long")
		}
		m, err := conn.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			end = i + 4
			break
		}
		if err != nil {
			return fmt.Errorf("read upgrade response: %w", err)
		}
	}
	head := string(buf[:end])
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	if f := strings.Fields(lines[0]); len(f) < 2 || f[1] != "101" {
		return fmt.Errorf("upgrade refused: %q", lines[0])
	}
	want := acceptKey(key)
	got := ""
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "Sec-WebSocket-Accept") {
			got = strings.TrimSpace(v)
		}
	}
	if got != want {
		return fmt.Errorf("bad Sec-WebSocket-Accept %q, want %q", got, want)
	}

	pr := &prefixReader{pre: append([]byte(nil), buf[end:n]...), r: conn}
	op, payload, err := readServerFrame(pr)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if op != opText || string(payload) != helloMessage {
		return fmt.Errorf("first message: opcode %d %q, want text %q", op, payload, helloMessage)
	}
	if len(pr.pre) > 0 {
		return fmt.Errorf("%d unexpected bytes after hello", len(pr.pre))
	}
	return conn.SetDeadline(time.Time{})
}

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// readServerFrame reads one unfragmented, unmasked frame.
func readServerFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 {
		return 0, nil, errors.New("fragmented frame from server")
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("masked frame from server")
	}
	op = h[0] & 0x0f
	length := uint64(h[1] & 0x7f)
	switch length {
	case 126:
		if _, err := io.ReadFull(r, h[:2]); err != nil {
			return 0, nil, err
		}
		length = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(r, h[:8]); err != nil {
			return 0, nil, err
		}
		length = binary.BigEndian.Uint64(h[:8])
	}
	if length > maxClientFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes from server", length)
	}
	payload = make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return op, payload, nil
}

// writeClientFrame writes one masked frame (payload under 126 bytes).
func writeClientFrame(w io.Writer, op byte, payload []byte) error {
	if len(payload) > 125 {
		return errors.New("payload too long for this client")
	}
	frame := make([]byte, 0, 6+len(payload))
	frame = append(frame, 0x80|op, 0x80|byte(len(payload)))
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame = append(frame, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	_, err := w.Write(frame)
	return err
}

// echoCheck sends a text message on conn and waits for the same text back,
// answering any ping that comes first.
func echoCheck(conn net.Conn, msg string, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if err := writeClientFrame(conn, opText, []byte(msg)); err != nil {
		return err
	}
	for {
		op, payload, err := readServerFrame(conn)
		if err != nil {
			return err
		}
		switch op {
		case opText:
			if string(payload) != msg {
				return fmt.Errorf("echo %q, want %q", payload, msg)
			}
			return nil
		case opPing:
			if err := writeClientFrame(conn, opPong, payload); err != nil {
				return err
			}
		case opClose:
			return errors.New("server closed the connection")
		}
	}
}
