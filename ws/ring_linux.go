//go:build linux

package ws

import (
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchyardhq/switchyard/internal/uring"
)

// WriteRing writes the batches of many connections with one system call:
// each Add prepares what TrySendBatch would write as an io_uring send
// entry, and Flush submits them all with one io_uring_enter. A loopback
// write costs this kernel more to enter than to do, so this is the
// cheapest way to reach many sockets (docs/BENCHMARKS.md, "Issue 20,
// sixth round").
//
// A WriteRing belongs to one goroutine. Between Add and Flush the
// connection's write lock is held, so Flush must follow soon, and a
// connection must not be added twice before a Flush.
type WriteRing struct {
	r    *uring.Ring
	ents []ringEntry
	sent int // entries on the ring
	got  int // their completions reaped
	// cancels counts the sends cancelled for not completing at once.
	cancels int
	// sendFlags are the flags of every send: MSG_DONTWAIT makes a full
	// socket complete at once with EAGAIN instead of waiting in the
	// kernel (tests clear it to exercise the cancellation).
	sendFlags int
	// wait is how long Flush waits for a send the kernel did not
	// complete inline before it cancels it.
	wait time.Duration
	reap func(userData uint64, res int32)
}

// ringEntry is one Add: its connection and batch while on the ring, then
// its result.
type ringEntry struct {
	c      *Conn
	b      *batch
	msg    unix.Msghdr // for a batch of several buffers
	onRing bool        // a send is on the ring (c's wmu and a raw-write reference are held)
	res    int32
	reaped bool
	done   bool
	err    error
}

// cancelTag marks the user data of a cancellation's own completion.
const cancelTag = 1 << 63

// NewWriteRing sets up a ring for up to size connections per Flush. It
// fails where the kernel does not offer io_uring (or forbids it: the
// kernel.io_uring_disabled sysctl, a seccomp filter); the caller then
// writes with TrySendBatch.
func NewWriteRing(size int) (*WriteRing, error) {
	r, err := uring.New(uint32(size))
	if err != nil {
		return nil, err
	}
	if err := r.Probe(uring.OpSend, uring.OpSendmsg, uring.OpAsyncCancel); err != nil {
		r.Close()
		return nil, err
	}
	w := &WriteRing{r: r, ents: make([]ringEntry, 0, r.Entries()), sendFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL, wait: time.Millisecond}
	w.reap = w.reaped
	return w, nil
}

// Close releases the ring; nothing may be added and not flushed.
func (w *WriteRing) Close() error { return w.r.Close() }

// Enters is how many io_uring_enter calls the ring made.
func (w *WriteRing) Enters() int64 { return w.r.Enters }

// Add prepares msgs for c as TrySendBatch would send them. It returns
// false when the ring already holds as many batches as its size (Flush
// first). A batch that cannot go on the ring (a socket without a
// descriptor of its own, a write in progress, the rest of an earlier
// batch pending) is sent now with TrySendBatch; either way Flush reports
// its result.
func (w *WriteRing) Add(c *Conn, msgs ...[]byte) bool {
	if len(w.ents) == cap(w.ents) {
		return false
	}
	w.ents = append(w.ents, ringEntry{c: c})
	e := &w.ents[len(w.ents)-1]
	if !c.wmu.TryLock() {
		e.done, e.err = c.TrySendBatch(msgs...)
		return true
	}
	c.initRawLocked()
	c.pmu.Lock()
	busy := c.pending != nil
	c.pmu.Unlock()
	if c.wfd <= 0 || c.wclosed || busy {
		// Not detached (TLS, a goroutine-mode engine), or closing, or
		// behind a pending rest.
		c.wmu.Unlock()
		e.done, e.err = c.TrySendBatch(msgs...)
		return true
	}
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if !open {
		c.wmu.Unlock()
		e.err = ErrClosed
		return true
	}
	if !c.rawWriteStart() {
		e.err = c.writeFailed(net.ErrClosed)
		c.wmu.Unlock()
		return true
	}
	b, size := c.textBatch(msgs)
	b.w = b.bufs
	c.countSent(len(msgs), size)
	fd, ud := int(c.wfd-1), uint64(len(w.ents)-1)
	var ok bool
	if len(b.w) == 1 {
		ok = w.r.Send(fd, b.w[0], w.sendFlags, ud)
	} else {
		b.iov = b.iov[:0]
		for _, p := range b.w[:min(len(b.w), maxIovecs)] {
			v := unix.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			b.iov = append(b.iov, v)
		}
		e.msg = unix.Msghdr{Iov: &b.iov[0]}
		e.msg.SetIovlen(len(b.iov))
		ok = w.r.Sendmsg(fd, &e.msg, w.sendFlags, ud)
	}
	if !ok { // cannot happen: the ring has an entry per Add
		c.rawWriteEnd()
		e.done = c.keepRest(b)
		c.wmu.Unlock()
		return true
	}
	e.b, e.onRing = b, true
	w.sent++
	return true
}

// Flush submits the sends added since the last Flush, waits for them,
// and calls result with each Add's result, in the order added: done and
// err as TrySendBatch returns them (what a socket did not take stays
// pending on its connection). The callbacks run after every connection
// of the ring is released.
func (w *WriteRing) Flush(result func(i int, done bool, err error)) {
	if w.sent > 0 {
		w.complete()
	}
	for i := range w.ents {
		e := &w.ents[i]
		result(i, e.done, e.err)
		*e = ringEntry{}
	}
	w.ents = w.ents[:0]
}

// complete submits the ring's sends and ends each: every one completes
// (the kernel did it inline, or after a short wait, or it is cancelled)
// before its connection's lock and raw-write reference are let go.
func (w *WriteRing) complete() {
	w.got = 0
	if err := w.r.Submit(); err != nil {
		// The kernel did not take them all (its completion queue is
		// full, say): the ones it did not take are not sent, as if their
		// sockets were full, and stay pending on their connections.
		w.unsent(w.r.Unqueue())
	}
	w.r.Reap(w.reap)
	if w.got < w.sent {
		// A send the kernel did not finish inline (it should not, with
		// MSG_DONTWAIT): wait a little, then cancel what is left, so a
		// slow client never holds the ring's goroutine.
		w.r.Wait(w.sent-w.got, w.wait)
		w.r.Reap(w.reap)
		if w.got < w.sent {
			for i := range w.ents {
				if e := &w.ents[i]; e.onRing && !e.reaped {
					w.r.Cancel(uint64(i), cancelTag|uint64(i))
					w.cancels++
				}
			}
			for w.got < w.sent {
				w.r.Wait(w.sent-w.got, 0)
				w.r.Reap(w.reap)
			}
		}
	}
	for i := range w.ents {
		e := &w.ents[i]
		if !e.onRing {
			continue
		}
		c, b := e.c, e.b
		c.rawWriteEnd()
		switch {
		case e.res >= 0:
			// A short send (the socket is full, or the batch has more
			// buffers than one call takes) leaves the rest pending.
			consume(&b.w, int(e.res))
			e.done = c.keepRest(b)
		case e.res == -int32(unix.EAGAIN) || e.res == -int32(unix.ECANCELED):
			e.done = c.keepRest(b)
		default:
			b.release()
			e.err = c.writeFailed(unix.Errno(-e.res))
		}
		c.wmu.Unlock()
	}
	w.sent = 0
}

// unsent marks the last n sends on the ring as not sent.
func (w *WriteRing) unsent(n int) {
	for i := len(w.ents) - 1; i >= 0 && n > 0; i-- {
		if e := &w.ents[i]; e.onRing {
			e.res, e.reaped = -int32(unix.EAGAIN), true
			w.got++
			n--
		}
	}
}

// reaped records a completion.
func (w *WriteRing) reaped(userData uint64, res int32) {
	if userData&cancelTag != 0 {
		return // a cancellation's own completion
	}
	e := &w.ents[userData]
	e.res, e.reaped = res, true
	w.got++
}
