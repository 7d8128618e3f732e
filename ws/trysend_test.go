package ws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
)

// TrySendBatch writes what the socket takes and never waits; once the
// peer stops reading it reports the rest pending, and the next SendBatch
// writes that rest before its own frames: the peer reads every frame
// whole and in order.
func TestTrySendBatchFullSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := make(chan struct{})
	got := make(chan []byte, 1)
	go func() {
		peer, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		<-start
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &Conn{nc: nc, eng: newEngine(EngineConfig{}), o: resolve(nil)}
	var want bytes.Buffer
	frame := func(i int) []byte {
		m := fmt.Appendf(nil, "%0100d", i) // 100 bytes: a 2-byte header
		want.Write([]byte{0x81, 100})
		want.Write(m)
		return m
	}
	i, full := 0, false
	for ; i < 1_000_000 && !full; i += 4 {
		done, err := c.TrySendBatch(frame(i), frame(i+1), frame(i+2), frame(i+3))
		if err != nil {
			t.Fatal(err)
		}
		full = !done
	}
	if !full {
		t.Fatal("the socket never filled")
	}
	close(start)
	if err := c.SendBatch(context.Background(), frame(i)); err != nil { // the rest, then one more
		t.Fatal(err)
	}
	if done, err := c.TrySendBatch(frame(i + 1)); err != nil {
		t.Fatal(err)
	} else if !done {
		if err := c.SendBatch(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	b := <-got
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d (same: %v)", len(b), want.Len(), bytes.HasPrefix(want.Bytes(), b))
	}
}
