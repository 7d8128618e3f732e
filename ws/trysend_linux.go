//go:build linux

package ws

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovecs is the scratch space of one writev.
type iovecs = []unix.Iovec

const errWouldBlock = errorString("ws: would block")

// maxIovecs bounds one writev (IOV_MAX is 1024 on Linux).
const maxIovecs = 1024

// writev is one non-blocking writev of the start of b.w, as a
// syscall.RawConn Write callback (it never asks to wait): it sets b.wn
// and b.werr (errWouldBlock when the socket is full).
func (b *batch) writev(fd uintptr) bool {
	b.iov = b.iov[:0]
	for _, p := range b.w {
		if len(b.iov) == maxIovecs {
			break
		}
		if len(p) == 0 {
			continue
		}
		v := unix.Iovec{Base: &p[0]}
		v.SetLen(len(p))
		b.iov = append(b.iov, v)
	}
	if len(b.iov) == 0 {
		return true
	}
	for {
		// A raw system call: the socket is non-blocking, so the call
		// returns at once (EAGAIN when the socket is full), and the
		// runtime's bookkeeping for a call that may block (entersyscall,
		// exitsyscall, and sysmon waking every 20 µs to retake the P of
		// a goroutine it sees in a system call) costs more than the
		// call itself on this path (docs/BENCHMARKS.md, "raw writes").
		var n uintptr
		var errno unix.Errno
		if len(b.iov) == 1 {
			// One buffer (textBatch makes one of small frames): write(2),
			// which spares the kernel the iovec array.
			n, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(b.iov[0].Base)), uintptr(b.iov[0].Len))
		} else {
			n, _, errno = unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&b.iov[0])), uintptr(len(b.iov)))
		}
		switch errno {
		case 0:
			b.wn = int(n)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			b.werr = errWouldBlock
		default:
			b.werr = errno
		}
		break
	}
	clear(b.iov) // the iovecs point into the messages
	return true
}
