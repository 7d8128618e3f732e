package ws

import (
	"net"
	"syscall"
)

// TrySendBatch sends text messages like SendBatch but never waits for the
// socket: it writes what the kernel's send buffer takes now. done is false
// when some of the batch is left: the connection keeps it and writes it,
// before anything else, with the next send (a SendBatch with no messages
// only finishes it). It does not allocate (but to compress a message not
// sent before, and once per connection for its socket). A write in
// progress on another goroutine, or a socket without a descriptor (TLS),
// leaves the whole batch pending.
func (c *Conn) TrySendBatch(msgs ...[]byte) (done bool, err error) {
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if !open {
		return false, ErrClosed
	}
	b, size := c.textBatch(msgs)
	b.w = b.bufs
	if !c.wmu.TryLock() {
		// A write (a control frame, most likely) is in progress: leave
		// the batch to the next send, which takes wmu after it.
		c.pmu.Lock()
		if c.pending != nil {
			c.pmu.Unlock()
			b.release()
			return false, errPendingTwice
		}
		c.pending = b
		c.pmu.Unlock()
		c.countSent(len(msgs), size)
		return false, nil
	}
	defer c.wmu.Unlock()
	if c.wclosed {
		b.release()
		return false, ErrClosed
	}
	if err := c.tryPendingLocked(); err != nil {
		b.release()
		return false, c.writeFailed(err)
	}
	c.pmu.Lock()
	busy := c.pending != nil
	c.pmu.Unlock()
	if !busy {
		if err := c.tryWriteLocked(b); err != nil {
			b.release()
			return false, c.writeFailed(err)
		}
	}
	c.countSent(len(msgs), size)
	return c.keepRest(b), nil
}

// keepRest ends a non-blocking write of b: a batch written whole is
// released (true); what is left of it becomes the pending batch, written
// before anything else by the next send (false). wmu must be held.
func (c *Conn) keepRest(b *batch) bool {
	if len(b.w) == 0 {
		b.release()
		return true
	}
	c.pmu.Lock()
	if p := c.pending; p != nil { // behind the rest of an earlier batch
		n := len(p.w)
		for _, buf := range b.w {
			if len(buf) <= inlineMax+maxFrameHeader {
				// Headers and small frames live in b's own buffer,
				// which the pool hands out again once b is released:
				// they are copied into the pending batch's.
				start := len(p.hdrs)
				p.hdrs = append(p.hdrs, buf...)
				buf = p.hdrs[start:len(p.hdrs):len(p.hdrs)]
			}
			p.bufs = append(p.bufs, buf)
			n++
		}
		p.w = p.bufs[len(p.bufs)-n:]
		c.pmu.Unlock()
		b.release()
		return false
	}
	c.pending = b
	c.pmu.Unlock()
	return false
}

type errorString string

func (e errorString) Error() string { return string(e) }

// errPendingTwice: TrySendBatch was called again before the rest of the
// previous one was sent (the hub never does).
const errPendingTwice = errorString("ws: TrySendBatch: the previous batch is still pending")

func (c *Conn) countSent(n, size int) {
	c.eng.stats.messagesOut.Add(uint64(n))
	c.eng.stats.bytesOut.Add(uint64(size))
}

func (c *Conn) writeFailed(err error) error {
	c.finish(err)
	return err
}

// tryPendingLocked writes what the socket takes of the pending batch;
// wmu must be held.
func (c *Conn) tryPendingLocked() error {
	c.pmu.Lock()
	p := c.pending
	c.pmu.Unlock()
	if p == nil {
		return nil
	}
	if err := c.tryWriteLocked(p); err != nil {
		return err
	}
	if len(p.w) == 0 {
		c.pmu.Lock()
		c.pending = nil
		c.pmu.Unlock()
		p.release()
	}
	return nil
}

// flushPendingLocked writes the pending batch, waiting for the socket
// (under the write deadline writeRaw set); wmu must be held.
func (c *Conn) flushPendingLocked() error {
	c.pmu.Lock()
	p := c.pending
	c.pending = nil
	c.pmu.Unlock()
	if p == nil {
		return nil
	}
	err := c.writeOut(p)
	p.release()
	return err
}

// tryWriteLocked writes b.w without waiting, consuming what was written.
// wmu must be held.
func (c *Conn) tryWriteLocked(b *batch) error {
	c.initRawLocked()
	if c.wrcErr {
		return nil // everything stays pending
	}
	for len(b.w) > 0 {
		b.werr, b.wn = nil, 0
		// A detached socket is written through its descriptor itself:
		// the socket is the connection's own, and wrefs keeps finish
		// from closing it under the call (rawwrite.go). Any other goes
		// through Control, not Write: the write never waits (the socket
		// is non-blocking and EAGAIN leaves the rest pending), so the
		// netpoller's write state need not be reset for it, and wmu
		// already keeps writers apart; Control holds a reference to the
		// descriptor for the call. See docs/BENCHMARKS.md, "Issue 20,
		// fifth round".
		if c.wfd > 0 {
			if !c.rawWriteStart() {
				return net.ErrClosed
			}
			b.writev(uintptr(c.wfd - 1))
			c.rawWriteEnd()
		} else if err := c.wrc.Control(b.tryWrite); err != nil {
			return err
		}
		if b.werr != nil {
			if b.werr == errWouldBlock {
				return nil
			}
			return b.werr
		}
		consume(&b.w, b.wn)
	}
	return nil
}

// initRawLocked finds the socket's RawConn and, for a detached socket,
// its descriptor, once; wmu must be held.
func (c *Conn) initRawLocked() {
	if c.wrc != nil || c.wrcErr {
		return
	}
	sc, ok := c.nc.(syscall.Conn)
	if ok {
		rc, err := sc.SyscallConn()
		ok = err == nil
		c.wrc = rc
		if _, detached := c.nc.(detached); ok && detached {
			rc.Control(func(fd uintptr) { c.wfd = int32(fd) + 1 })
		}
	}
	c.wrcErr = !ok
}

// consume drops the first n bytes of bufs.
func consume(bufs *net.Buffers, n int) {
	w := *bufs
	for n > 0 && len(w) > 0 {
		if len(w[0]) <= n {
			n -= len(w[0])
			w[0] = nil
			w = w[1:]
			continue
		}
		w[0] = w[0][n:]
		n = 0
	}
	for len(w) > 0 && len(w[0]) == 0 {
		w = w[1:]
	}
	*bufs = w
}

// release returns a batch to the pool without the messages (which must not
// stay reachable from it).
func (b *batch) release() {
	clear(b.bufs)
	b.bufs, b.hdrs, b.w = b.bufs[:0], b.hdrs[:0], nil
	if cap(b.bufs) <= 1024 && cap(b.hdrs) <= 16384 { // a huge batch's arrays are left to the collector
		batches.Put(b)
	}
}
