package main

import (
	"bytes"
	"testing"
)

// The example of RFC 6455, section 1.3.
func TestAcceptKey(t *testing.T) {
	if got, want := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Fatalf("acceptKey = %q, want %q", got, want)
	}
}

func TestClientFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := writeClientFrame(&buf, opText, []byte("hi there")); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if b[0] != 0x81 || b[1] != 0x80|8 {
		t.Fatalf("header % x", b[:2])
	}
	mask := b[2:6]
	got := make([]byte, 8)
	for i := range got {
		got[i] = b[6+i] ^ mask[i%4]
	}
	if string(got) != "hi there" {
		t.Fatalf("payload %q", got)
	}
	// A server frame (unmasked) with a 16-bit length.
	srv := append([]byte{0x81, 126, 0, 200}, bytes.Repeat([]byte("x"), 200)...)
	op, p, err := readServerFrame(bytes.NewReader(srv))
	if err != nil || op != opText || len(p) != 200 {
		t.Fatalf("readServerFrame: op %d len %d err %v", op, len(p), err)
	}
}
