package ws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
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

// The per-write cost TrySendBatch pays around its system call, measured
// on a socket whose send buffer is full (writev fails at once with
// EAGAIN, so the kernel's share is small): through RawConn.Write (the
// descriptor's write lock and a reset of its netpoller state, what
// TrySendBatch did before) and through RawConn.Control (a reference to
// the descriptor, what it does now for a socket that is not detached; a
// detached one is written through its descriptor, rawwrite.go).
func BenchmarkTryWriteFullSocket(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		peer <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { (<-peer).Close() }()
	d := detach(nc)
	defer d.Close()
	rc, err := d.(syscall.Conn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	bt := getBatch(1)
	msg := make([]byte, 64<<10)
	small := [][]byte{make([]byte, 100)}
	fill := func() { // until not even a small message fits
		for _, m := range [][]byte{msg, small[0]} {
			for {
				bt.w = [][]byte{m}
				bt.werr = nil
				rc.Control(bt.tryWrite)
				if bt.werr != nil {
					break
				}
			}
		}
		if bt.werr != errWouldBlock {
			b.Fatal(bt.werr)
		}
	}
	fill()
	for _, way := range []string{"write", "control"} {
		b.Run(way, func(b *testing.B) {
			writeFn := func(fd uintptr) bool { bt.writev(fd); return true }
			for b.Loop() {
				bt.w = small
				bt.werr = nil
				if way == "write" {
					rc.Write(writeFn)
				} else {
					rc.Control(bt.tryWrite)
				}
				if bt.werr != errWouldBlock {
					fill() // the kernel made room meanwhile
				}
			}
		})
	}
}

// A TrySendBatch made while the rest of an earlier one is still pending
// (its caller did not wait with SendBatch) queues its frames behind it;
// the batch it came in goes back to the pool at once, and other
// connections' sends reuse its buffer: the queued frames must not change.
func TestTrySendBatchBehindPending(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c
		}
	}()
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	e := newEngine(EngineConfig{})
	c := &Conn{nc: dial(), eng: e, o: resolve(nil)}
	peer := <-peers
	other := &Conn{nc: dial(), eng: e, o: resolve(nil)}
	otherPeer := <-peers
	go io.Copy(io.Discard, otherPeer)
	defer otherPeer.Close()

	var want bytes.Buffer
	frame := func(i int) []byte {
		m := fmt.Appendf(nil, "%0100d", i)
		want.Write([]byte{0x81, 100})
		want.Write(m)
		return m
	}
	i := 0
	for full := false; !full; i += 2 {
		if i > 1_000_000 {
			t.Fatal("the socket never filled")
		}
		done, err := c.TrySendBatch(frame(i), frame(i+1))
		if err != nil {
			t.Fatal(err)
		}
		full = !done
	}
	// Again, with the rest pending: queued behind it.
	if done, err := c.TrySendBatch(frame(i), frame(i+1), frame(i+2)); err != nil || done {
		t.Fatalf("TrySendBatch behind a pending rest: done %v, err %v", done, err)
	}
	// Other sends take batches from the pool and overwrite their buffers.
	for j := range 50 {
		if _, err := other.TrySendBatch([]byte("zzzzzzz"), fmt.Appendf(nil, "other %d", j)); err != nil {
			t.Fatal(err)
		}
		other.SendBatch(context.Background())
	}
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(peer); got <- b }()
	if err := c.SendBatch(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.nc.Close()
	b := <-got
	if !bytes.Equal(b, want.Bytes()) {
		at := 0
		for at < len(b) && at < want.Len() && b[at] == want.Bytes()[at] {
			at++
		}
		t.Fatalf("peer read %d bytes, want %d; they differ from byte %d (%q)", len(b), want.Len(), at, b[at:min(at+20, len(b))])
	}
}
