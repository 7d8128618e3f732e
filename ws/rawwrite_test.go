//go:build linux

package ws

import (
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns a loopback connection's two ends.
func tcpPair(t *testing.T, ln net.Listener) (server, client net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return server, client
}

// detachedConn is a Conn over the detached server end of a new pair.
func detachedConn(t *testing.T, ln net.Listener, e *Engine) (*Conn, net.Conn) {
	t.Helper()
	s, peer := tcpPair(t, ln)
	d := detach(s)
	if _, ok := d.(detached); !ok {
		t.Fatal("not detached")
	}
	return &Conn{nc: d, eng: e, o: resolve(nil), slot: -1}, peer
}

// finish waits for a raw write in flight before it closes the socket, and
// no raw write starts once it has begun.
func TestFinishWaitsForRawWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEngine(EngineConfig{})
	c, peer := detachedConn(t, ln, e)
	defer peer.Close()
	if done, err := c.TrySendBatch([]byte("hello")); err != nil || !done {
		t.Fatalf("TrySendBatch: %v %v", done, err)
	}
	if c.wfd <= 0 {
		t.Fatal("a detached socket is not written through its descriptor")
	}
	fd := int(c.wfd - 1)
	if !c.rawWriteStart() { // a write in flight
		t.Fatal("rawWriteStart refused on an open connection")
	}
	finished := make(chan struct{})
	go func() { c.finish(nil); close(finished) }()
	select {
	case <-finished:
		t.Fatal("finish closed the socket under a raw write")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the descriptor was closed under a raw write: %v", err)
	}
	if c.rawWriteStart() {
		t.Fatal("a raw write started after finish began")
	}
	c.rawWriteEnd()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("finish did not return once the raw write ended")
	}
	if c.rawWriteStart() {
		t.Fatal("a raw write started after finish")
	}
	if _, err := c.TrySendBatch([]byte("late")); err == nil {
		t.Fatal("TrySendBatch after finish: no error")
	}
}

// A connection closed while another goroutine writes to it as fast as it
// can: the socket accepted next often gets its descriptor number, and its
// peer must never receive a byte of the closed connection's messages.
func TestRawWriteNeverReachesReusedDescriptor(t *testing.T) {
	testNoWriteAfterClose(t, func(c *Conn, msg []byte) (bool, error) { return c.TrySendBatch(msg) })
}

// testNoWriteAfterClose is TestRawWriteNeverReachesReusedDescriptor with
// the writes made by send.
func testNoWriteAfterClose(t *testing.T, send func(c *Conn, msg []byte) (bool, error)) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := newEngine(EngineConfig{})
	reused := 0
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for range rounds {
		c, peer := detachedConn(t, ln, e)
		go func() { // the old connection's peer reads, so writes keep going
			buf := make([]byte, 64<<10)
			for {
				if _, err := peer.Read(buf); err != nil {
					return
				}
			}
		}()
		if done, err := c.TrySendBatch([]byte("x")); err != nil || !done {
			t.Fatalf("TrySendBatch: %v %v", done, err)
		}
		old := c.wfd - 1
		var wg sync.WaitGroup
		wg.Go(func() {
			msg := []byte("LEAK")
			for {
				done, err := send(c, msg)
				if err != nil {
					return
				}
				if !done {
					c.pmu.Lock()
					p := c.pending
					c.pending = nil
					c.pmu.Unlock()
					if p != nil {
						p.release()
					}
				}
			}
		})
		time.Sleep(200 * time.Microsecond)
		c.finish(nil)
		// The next socket takes the lowest free number: most often the
		// one just closed.
		s2, peer2 := tcpPair(t, ln)
		if rc, err := s2.(*net.TCPConn).SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				if int32(fd) == old {
					reused++
				}
			})
		}
		wg.Wait()
		peer2.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		if n, _ := peer2.Read(make([]byte, 16)); n > 0 {
			t.Fatalf("a socket that reused descriptor %d received %d bytes meant for the closed connection", old, n)
		}
		s2.Close()
		peer2.Close()
		peer.Close()
	}
	if reused == 0 {
		t.Fatal("no socket reused a closed connection's descriptor: the test did not test anything")
	}
	t.Logf("%d of %d rounds reused the descriptor", reused, rounds)
}
