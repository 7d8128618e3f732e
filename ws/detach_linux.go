//go:build linux

package ws

import (
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// detached is a TCP or Unix socket taken out of package net once its
// handshake is done: a duplicate of its descriptor held as an *os.File,
// the net.TCPConn and its netFD closed. An idle connection then holds the
// file (about 100 bytes) instead of net's netFD, its two addresses and
// the conn (about 320 bytes, docs/BENCHMARKS.md). The file is still in
// the runtime's netpoller, so writes wait for the socket and honour write
// deadlines as before; reads go through the engine's epoll.
//
// It is one pointer, so a net.Conn holding it needs no allocation of its
// own. The addresses are asked of the kernel when wanted (getsockname,
// getpeername): only logs use them.
type detached struct{ f *os.File }

// detach returns a detached copy of a plain TCP or Unix socket (and closes
// nc), or nc itself when it is anything else or the copy fails.
func detach(nc net.Conn) net.Conn {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nc
	}
	// The duplicate shares the open file description, so it is
	// non-blocking like the original and os.NewFile puts it in the
	// netpoller. Closing the original sends nothing to the peer: the
	// socket lives on while the duplicate is open.
	f := os.NewFile(uintptr(nfd), "")
	if f == nil {
		unix.Close(nfd)
		return nc
	}
	nc.Close()
	return detached{f}
}

func (d detached) Read(p []byte) (int, error)         { return d.f.Read(p) }
func (d detached) Write(p []byte) (int, error)        { return d.f.Write(p) }
func (d detached) Close() error                       { return d.f.Close() }
func (d detached) SetDeadline(t time.Time) error      { return d.f.SetDeadline(t) }
func (d detached) SetReadDeadline(t time.Time) error  { return d.f.SetReadDeadline(t) }
func (d detached) SetWriteDeadline(t time.Time) error { return d.f.SetWriteDeadline(t) }
func (d detached) SyscallConn() (syscall.RawConn, error) {
	return d.f.SyscallConn()
}

// CloseWrite shuts down the sending half of the socket.
func (d detached) CloseWrite() error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// LocalAddr returns the socket's address, asked of the kernel.
func (d detached) LocalAddr() net.Addr { return d.addr(unix.Getsockname) }

// RemoteAddr returns the peer's address, asked of the kernel; once the
// socket is closed or the peer gone it is an empty TCP address.
func (d detached) RemoteAddr() net.Addr { return d.addr(unix.Getpeername) }

func (d detached) addr(get func(int) (unix.Sockaddr, error)) net.Addr {
	var sa unix.Sockaddr
	if rc, err := d.f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { sa, _ = get(int(fd)) })
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		ip := make(net.IP, net.IPv6len)
		copy(ip, a.Addr[:])
		return &net.TCPAddr{IP: ip, Port: a.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return &net.TCPAddr{}
}

// writeOut writes b.w whole; on a detached socket with one writev at a
// time, waiting in the netpoller (under the write deadline) when the
// socket is full, elsewhere through net.Buffers (writev on net's sockets).
// c.wmu must be held.
func (c *Conn) writeOut(b *batch) error {
	d, ok := c.nc.(detached)
	if !ok {
		_, err := b.w.WriteTo(c.nc)
		return err
	}
	if c.wrc == nil {
		rc, err := d.f.SyscallConn()
		if err != nil {
			return err
		}
		c.wrc = rc
	}
	for len(b.w) > 0 {
		b.werr = nil
		if err := c.wrc.Write(b.writeWait); err != nil {
			return err
		}
		if b.werr != nil {
			return b.werr
		}
	}
	return nil
}

// writeAll is writeOut's syscall.RawConn Write callback: writev until b.w
// is written or the socket is full (false: wait for it, then call again).
func (b *batch) writeAll(fd uintptr) bool {
	for len(b.w) > 0 {
		b.wn, b.werr = 0, nil
		b.writev(fd)
		if b.werr == errWouldBlock {
			b.werr = nil
			return false
		}
		if b.werr != nil {
			return true
		}
		consume(&b.w, b.wn)
	}
	return true
}
