package ws

import (
	"math"
	"runtime"
)

// Raw writes: TrySendBatch writes a detached socket (one the connection
// owns, taken out of package net) through its descriptor number, without
// the os.File's reference count, which lives in another object and costs
// a cache miss per delivery when a broadcast reaches thousands of
// connections. Such a number must never be written once the socket is
// closed: the kernel hands the lowest free number to the next socket
// accepted, so a late write would reach another client. wrefs guards it:
// writers count themselves in, and finish sets the sign bit, which turns
// new writers away, then waits for those counted to leave before it
// closes the socket. The writes are non-blocking, so the wait is a few
// microseconds at most.

// closedRefs is wrefs's sign bit: the socket is being closed.
const closedRefs = math.MinInt32

// rawWriteStart counts a raw write in; false once the socket is being
// closed (the write must not happen).
func (c *Conn) rawWriteStart() bool {
	for {
		v := c.wrefs.Load()
		if v < 0 {
			return false
		}
		if c.wrefs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// rawWriteEnd counts a raw write out.
func (c *Conn) rawWriteEnd() { c.wrefs.Add(-1) }

// endRawWrites turns new raw writes away and waits for those in flight;
// finish calls it before closing the socket. It must not be called by a
// goroutine between its own rawWriteStart and rawWriteEnd.
func (c *Conn) endRawWrites() {
	for {
		v := c.wrefs.Load()
		if v < 0 || c.wrefs.CompareAndSwap(v, v|closedRefs) {
			break
		}
	}
	for c.wrefs.Load() != closedRefs {
		runtime.Gosched()
	}
}
