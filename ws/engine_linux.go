//go:build linux

package ws

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller is one epoll loop. Sockets are armed one-shot: an event hands the
// connection to one reader goroutine, which re-arms it when done, so a
// connection is never read by two goroutines and its messages stay in
// order. An idle connection costs an epoll entry and a slot in conns.
type poller struct {
	e      *Engine
	epfd   int
	wakefd int
	// ef owns epfd (its Close closes it). When parks is set, epfd is in
	// the Go runtime's netpoller (an epoll descriptor is readable while
	// it has events) and the loop waits there as a parked goroutine
	// instead of blocking a thread in epoll_wait: the runtime's monitor
	// takes the P of a thread blocked in a system call every 10 ms, and
	// after each such retake wakes every 20 µs for a millisecond or more
	// (docs/BENCHMARKS.md, "Issue 20, fifth round"). Without
	// it the loop blocks in epoll_wait.
	ef    *os.File
	parks bool

	mu sync.RWMutex
	// conns are the polled connections indexed by descriptor: the kernel
	// hands out the lowest free one, so the slice is about as long as the
	// process's open descriptors, 8 bytes each (a map entry cost several
	// times that per connection).
	conns []*Conn
	// watches are the plain sockets watched for another package (see
	// Watch); a descriptor is in conns or in watches, never both.
	watches map[int]*Watch
}

const armFlags = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller(e *Engine) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ws: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("ws: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("ws: epoll_ctl: %w", err)
	}
	p := &poller{e: e, epfd: epfd, wakefd: wakefd, watches: make(map[int]*Watch)}
	// A non-blocking descriptor given to os.NewFile is registered with
	// the netpoller (epoll_wait ignores O_NONBLOCK: it has its timeout);
	// the file then reports deadlines as supported.
	nonblock := unix.SetNonblock(epfd, true) == nil
	p.ef = os.NewFile(uintptr(epfd), "epoll")
	p.parks = nonblock && p.ef.SetReadDeadline(time.Time{}) == nil
	return p, nil
}

// add starts watching a connection's socket.
func (p *poller) add(c *Conn, rc syscall.RawConn) error {
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return err
	}
	// c.mu orders this with finish: a connection closed before it gets
	// here (its handler may close it in OnOpen, or another goroutine right
	// after) is never watched.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return ErrClosed
	}
	c.rc, c.fd, c.poller = rc, int32(fd), p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epfd < 0 {
		return ErrEngineClosed
	}
	if fd >= len(p.conns) {
		p.conns = append(p.conns, make([]*Conn, fd+1-len(p.conns))...)
	}
	p.conns[fd] = c
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: armFlags, Fd: int32(fd)}); err != nil {
		p.conns[fd] = nil
		c.rc, c.fd, c.poller = nil, 0, nil
		return fmt.Errorf("ws: epoll_ctl add: %w", err)
	}
	return nil
}

// conn returns the connection polled on fd, or nil. p.mu must be held.
func (p *poller) conn(fd int) *Conn {
	if fd < 0 || fd >= len(p.conns) {
		return nil
	}
	return p.conns[fd]
}

// rearm asks for the next readiness event of a connection.
func (p *poller) rearm(c *Conn) {
	p.mu.RLock()
	if p.conn(int(c.fd)) == c && p.epfd >= 0 {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &unix.EpollEvent{Events: armFlags, Fd: c.fd})
	}
	p.mu.RUnlock()
}

// remove stops watching a connection; call it before closing the socket
// so the descriptor cannot be reused under us.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	if p.conn(int(c.fd)) == c {
		p.conns[c.fd] = nil
		if p.epfd >= 0 {
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
		}
	}
	p.mu.Unlock()
}

// run is the loop; it returns when close wakes it, and closes the
// descriptors on the way out.
func (p *poller) run() {
	defer func() {
		p.mu.Lock()
		p.ef.Close() // epfd
		unix.Close(p.wakefd)
		p.epfd, p.wakefd = -1, -1
		p.mu.Unlock()
	}()
	events := make([]unix.EpollEvent, 256)
	if p.parks && p.runParked(events) {
		return
	}
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.e.log.Error("ws: epoll_wait failed", "err", err)
			return
		}
		if p.handle(events[:n]) {
			return
		}
	}
}

// runParked is the loop waiting in the netpoller: it takes the events
// epfd holds without waiting, and parks until it is readable when there
// are none. It returns false if the netpoller failed it (the caller then
// blocks in epoll_wait instead).
func (p *poller) runParked(events []unix.EpollEvent) bool {
	rc, err := p.ef.SyscallConn()
	if err != nil {
		return false
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			// A raw call: with a zero timeout it never blocks, so the
			// runtime's bookkeeping for a blocking call is not needed.
			n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
			switch errno {
			case 0:
			case unix.EINTR:
				continue
			default:
				werr = errno
				return true
			}
			if n == 0 {
				return false // park until epfd is readable
			}
			if p.handle(events[:n]) {
				return true
			}
		}
	})
	if err == nil && werr != nil {
		p.e.log.Error("ws: epoll_wait failed", "err", werr)
		return true
	}
	if err != nil {
		p.e.log.Warn("ws: epoll loop left the netpoller; it blocks in epoll_wait", "err", err)
		return false
	}
	return true
}

// handle dispatches a batch of events; true when the loop must end (the
// wake descriptor fired).
func (p *poller) handle(events []unix.EpollEvent) bool {
	for i := range events {
		fd := int(events[i].Fd)
		if fd == p.wakefd {
			return true
		}
		p.mu.RLock()
		c := p.conn(fd)
		var w *Watch
		if c == nil {
			w = p.watches[fd]
		}
		p.mu.RUnlock()
		if c != nil {
			p.e.dispatch(c.onReadable)
		} else if w != nil {
			p.e.dispatch(w.fn)
		}
	}
	return false
}

// watch starts watching a plain socket for Engine.Watch.
func (p *poller) watch(w *Watch, rc syscall.RawConn) error {
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epfd < 0 {
		return ErrEngineClosed
	}
	w.fd = fd
	p.watches[fd] = w
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: armFlags, Fd: int32(fd)}); err != nil {
		delete(p.watches, fd)
		return fmt.Errorf("ws: epoll_ctl add: %w", err)
	}
	return nil
}

func (p *poller) rearmWatch(w *Watch) {
	p.mu.RLock()
	if p.watches[w.fd] == w && p.epfd >= 0 {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, w.fd, &unix.EpollEvent{Events: armFlags, Fd: int32(w.fd)})
	}
	p.mu.RUnlock()
}

func (p *poller) unwatch(w *Watch) {
	p.mu.Lock()
	if p.watches[w.fd] == w {
		delete(p.watches, w.fd)
		if p.epfd >= 0 {
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
		}
	}
	p.mu.Unlock()
}

// close wakes the loop so it returns.
func (p *poller) close() {
	one := [8]byte{7: 1}
	p.mu.RLock()
	if p.wakefd >= 0 {
		unix.Write(p.wakefd, one[:])
	}
	p.mu.RUnlock()
}

// onReadable reads what the socket holds, feeds it to the frame reader,
// and re-arms the socket unless the connection ended or is paused.
func (c *Conn) onReadable() {
	// One-shot arming already keeps readers apart; the lock makes that
	// ordering visible to the race detector and costs one uncontended
	// lock per wake-up.
	c.rmu.Lock()
	defer c.rmu.Unlock()
	bp := c.eng.bufs.Get().(*[]byte)
	defer c.eng.bufs.Put(bp)
	buf := *bp
	for range 16 { // bounded, so one busy client cannot hold a reader forever
		var n int
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true
		})
		if err != nil {
			c.finish(err)
			return
		}
		if rerr == unix.EINTR {
			continue
		}
		if rerr == unix.EAGAIN {
			break
		}
		if rerr != nil {
			c.finish(rerr)
			return
		}
		if n <= 0 {
			c.finish(io.EOF)
			return
		}
		c.process(buf[:n])
		if n < len(buf) || c.queueFull() {
			break
		}
	}
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	if c.queueFullLocked() {
		c.paused = true // popLocked re-arms
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.poller.rearm(c)
}

// waitReadable blocks until the socket has data (or was closed by the
// peer) without holding a buffer: the netpoller parks the goroutine, and a
// one-byte peek tells readiness from a stale notification. The read that
// follows reports EOF or errors.
func waitReadable(rc syscall.RawConn) error {
	return rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err != unix.EAGAIN && err != unix.EINTR
	})
}
