//go:build linux

package ws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newTestRing(t *testing.T, size int) *WriteRing {
	t.Helper()
	w, err := NewWriteRing(size)
	if err != nil {
		t.Fatalf("NewWriteRing: %v (io_uring is part of the tested path: a kernel without it is a failure here)", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// flushAll flushes w and returns each Add's result.
func flushAll(w *WriteRing) (done []bool, errs []error) {
	w.Flush(func(i int, d bool, err error) {
		if i != len(done) {
			panic(fmt.Sprintf("result %d out of order (want %d)", i, len(done)))
		}
		done, errs = append(done, d), append(errs, err)
	})
	return done, errs
}

// readAllAsync reads everything the peer receives until it is closed.
func readAllAsync(peer net.Conn) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	return got
}

// Sixteen detached connections and one that is not (it takes
// TrySendBatch's path) get three rounds of a small and a large frame
// each: every peer reads exactly its frames, in order, and the detached
// ones cost one io_uring_enter per round.
func TestWriteRingDelivers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEngine(EngineConfig{})
	w := newTestRing(t, 64)
	var conns []*Conn
	var peers []net.Conn
	for range 16 {
		c, peer := detachedConn(t, ln, e)
		conns, peers = append(conns, c), append(peers, peer)
	}
	s, peer := tcpPair(t, ln) // not detached
	conns, peers = append(conns, &Conn{nc: s, eng: e, o: resolve(nil), slot: -1}), append(peers, peer)
	got := make([]<-chan []byte, len(peers))
	for i, p := range peers {
		got[i] = readAllAsync(p)
	}
	want := make([]bytes.Buffer, len(conns))
	large := bytes.Repeat([]byte("L"), 2000) // over inlineMax: a second buffer, so a sendmsg
	enters := w.Enters()
	for round := range 3 {
		for i, c := range conns {
			small := fmt.Appendf(nil, "conn %d round %d", i, round)
			want[i].Write(append([]byte{0x81, byte(len(small))}, small...))
			want[i].Write([]byte{0x81, 126, 2000 >> 8, 2000 & 0xff})
			want[i].Write(large)
			if !w.Add(c, small, large) {
				t.Fatal("Add refused a batch with room on the ring")
			}
		}
		done, errs := flushAll(w)
		for i := range conns {
			if errs[i] != nil || !done[i] {
				t.Fatalf("round %d, conn %d: done %v, err %v", round, i, done[i], errs[i])
			}
		}
	}
	if n := w.Enters() - enters; n != 3 {
		t.Errorf("%d io_uring_enter calls for 3 rounds; want 3", n)
	}
	for i, c := range conns {
		c.nc.Close()
		if b := <-got[i]; !bytes.Equal(b, want[i].Bytes()) {
			t.Errorf("conn %d: peer read %d bytes, want %d", i, len(b), want[i].Len())
		}
	}
}

// A ring holds at most its size of batches; Add says so.
func TestWriteRingFull(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEngine(EngineConfig{})
	w := newTestRing(t, 2)
	var conns []*Conn
	for range 3 {
		c, peer := detachedConn(t, ln, e)
		defer peer.Close()
		conns = append(conns, c)
	}
	if !w.Add(conns[0], []byte("a")) || !w.Add(conns[1], []byte("b")) {
		t.Fatal("Add refused a batch with room on the ring")
	}
	if w.Add(conns[2], []byte("c")) {
		t.Fatal("Add took a third batch on a ring of 2")
	}
	if done, errs := flushAll(w); len(done) != 2 || !done[0] || !done[1] || errs[0] != nil || errs[1] != nil {
		t.Fatalf("results %v %v", done, errs)
	}
}

// fillThenDrain adds batches for c through w until the socket is full
// (a result not done), then lets the peer read and finishes the rest with
// SendBatch: the peer must read every frame whole and in order.
func fillThenDrain(t *testing.T, w *WriteRing, c *Conn, peer net.Conn) {
	t.Helper()
	var want bytes.Buffer
	msg := bytes.Repeat([]byte("m"), 4000)
	full := false
	for i := 0; i < 10000 && !full; i++ {
		m := fmt.Appendf(nil, "%06d%s", i, msg)
		want.Write([]byte{0x81, 126, byte(len(m) >> 8), byte(len(m))})
		want.Write(m)
		if !w.Add(c, m) {
			t.Fatal("Add refused")
		}
		done, errs := flushAll(w)
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		full = !done[0]
	}
	if !full {
		t.Fatal("the socket never filled")
	}
	got := readAllAsync(peer)
	if err := c.SendBatch(context.Background()); err != nil { // the pending rest
		t.Fatal(err)
	}
	c.nc.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d (a prefix: %v)", len(b), want.Len(), bytes.HasPrefix(want.Bytes(), b))
	}
}

// A full socket: the send completes at once with what the socket took
// (MSG_DONTWAIT), the rest stays pending, nothing is cancelled.
func TestWriteRingFullSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := newTestRing(t, 4)
	c, peer := detachedConn(t, ln, newEngine(EngineConfig{}))
	fillThenDrain(t, w, c, peer)
	if w.cancels != 0 {
		t.Errorf("%d sends cancelled: a MSG_DONTWAIT send should complete inline", w.cancels)
	}
}

// A send the kernel parks (to a full blocking socket, without
// MSG_DONTWAIT: it waits for room) does not hold the ring: Flush cancels
// it after its short wait, and the batch stays pending, so nothing is
// lost or doubled.
func TestWriteRingCancelsAParkedSend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := newTestRing(t, 4)
	w.sendFlags = unix.MSG_NOSIGNAL
	c, peer := detachedConn(t, ln, newEngine(EngineConfig{}))
	fd := func() int { c.wmu.Lock(); defer c.wmu.Unlock(); c.initRawLocked(); return int(c.wfd - 1) }()
	var want bytes.Buffer
	junk := bytes.Repeat([]byte("J"), 4096)
	for {
		n, err := unix.Write(fd, junk)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want.Write(junk[:n])
	}
	// A blocking socket: a non-blocking one ends the send at once even
	// without MSG_DONTWAIT (the kernel honours O_NONBLOCK).
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w.Add(c, []byte("parked"))
	want.Write([]byte("\x81\x06parked"))
	done, errs := flushAll(w)
	if errs[0] != nil || done[0] {
		t.Fatalf("done %v, err %v: want the batch pending", done[0], errs[0])
	}
	if w.cancels != 1 {
		t.Fatalf("%d sends cancelled, want 1: the test did not test the cancellation", w.cancels)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Flush took %v", d)
	}
	unix.SetNonblock(fd, true)
	got := readAllAsync(peer)
	if err := c.SendBatch(context.Background()); err != nil { // the pending batch
		t.Fatal(err)
	}
	c.nc.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d (a prefix: %v)", len(b), want.Len(), bytes.HasPrefix(want.Bytes(), b))
	}
}

// A closed connection's batch is refused with ErrClosed, and a peer that
// reset fails the send and ends the connection.
func TestWriteRingClosedAndReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEngine(EngineConfig{})
	w := newTestRing(t, 4)
	closed, peer1 := detachedConn(t, ln, e)
	defer peer1.Close()
	closed.finish(nil)
	reset, peer2 := detachedConn(t, ln, e)
	peer2.(*net.TCPConn).SetLinger(0)
	peer2.Close() // an RST
	time.Sleep(50 * time.Millisecond)
	w.Add(closed, []byte("x"))
	w.Add(reset, []byte("x"))
	_, errs := flushAll(w)
	if !errors.Is(errs[0], ErrClosed) {
		t.Errorf("closed connection: %v, want ErrClosed", errs[0])
	}
	if errs[1] == nil {
		// The first send after a reset may still be taken; the next fails.
		w.Add(reset, []byte("x"))
		_, errs = flushAll(w)
	}
	if errs[1] == nil && errs[0] == nil {
		t.Fatal("sends to a reset peer did not fail")
	}
	reset.mu.Lock()
	state := reset.state
	reset.mu.Unlock()
	if state != stateClosed {
		t.Error("the connection whose send failed is not closed")
	}
}

// Sends through a ring never reach a socket that took a closed
// connection's descriptor number.
func TestWriteRingNeverReachesReusedDescriptor(t *testing.T) {
	w := newTestRing(t, 4)
	testNoWriteAfterClose(t, func(c *Conn, msg []byte) (done bool, err error) {
		w.Add(c, msg)
		w.Flush(func(_ int, d bool, e error) { done, err = d, e })
		return done, err
	})
}

// Add and Flush allocate nothing once the ring and the connections' first
// batches are set up (a broadcast's writes must not allocate per
// subscriber).
func TestWriteRingDoesNotAllocate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEngine(EngineConfig{})
	w := newTestRing(t, 8)
	var conns []*Conn
	for range 8 {
		c, peer := detachedConn(t, ln, e)
		defer peer.Close()
		go func() { // reads into one buffer: no allocation
			buf := make([]byte, 64<<10)
			for {
				if _, err := peer.Read(buf); err != nil {
					return
				}
			}
		}()
		conns = append(conns, c)
	}
	msg := make([]byte, 100)
	var failed error
	result := func(_ int, done bool, err error) {
		if err != nil || !done {
			failed = fmt.Errorf("done %v, err %v", done, err)
		}
	}
	send := func() {
		for _, c := range conns {
			w.Add(c, msg)
		}
		w.Flush(result)
	}
	send()
	if n := testing.AllocsPerRun(200, send); n != 0 && !raceEnabled {
		t.Errorf("%v allocations per flush of 8 connections", n)
	}
	if failed != nil {
		t.Fatal(failed)
	}
}
