//go:build linux

// Package uring is the least of io_uring that Switchyard's writers need:
// a submission queue of send entries and its completion queue, set up and
// mapped with the raw system calls from golang.org/x/sys/unix (no
// io_uring library is in the module proxy's list here). The server's
// writer pool (ws.WriteRing) and `bench floor --io-uring` use it to
// submit the writes to many sockets with one system call.
//
// A Ring is used by one goroutine at a time. Every buffer an entry points
// at must stay reachable (and, being Go memory, on the heap) until its
// completion is reaped.
package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// io_uring ABI (include/uapi/linux/io_uring.h).
const (
	featSingleMmap = 1 << 0
	setupSubmitAll = 1 << 7
	setupCoopTask  = 1 << 8
	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3
	opSendmsg      = OpSendmsg
	opAsyncCancel  = OpAsyncCancel
	opSend         = OpSend
	registerProbe  = 8
	opSupported    = 1 << 0
	offSQRing      = 0
	offSQEs        = 0x10000000
	sqeSize        = 64
	cqeSize        = 16
)

// The operations a Ring queues, for Probe.
const (
	OpSendmsg     = 9
	OpAsyncCancel = 14
	OpSend        = 26
)

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

var _ [120 - unsafe.Sizeof(params{})]byte // the kernel's size
var _ [unsafe.Sizeof(params{}) - 120]byte

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	pad       uint32
	ts        uint64
}

// Ring is one io_uring instance.
type Ring struct {
	fd                     int
	ring, sqeMem           []byte // the rings (one mapping: IORING_FEAT_SINGLE_MMAP) and the entries
	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer // uint32 per entry
	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer // 16-byte completions
	entries                uint32
	tail                   uint32 // the next entry's index, published on Submit
	// Wait's arguments, on the heap: the kernel reads them by address.
	ga getEventsArg
	ts unix.Timespec
	// Enters counts io_uring_enter calls.
	Enters int64
}

// New sets up a ring of (at least) entries submissions and twice as many
// completions. It asks for IORING_SETUP_SUBMIT_ALL and
// IORING_SETUP_COOP_TASKRUN and does without them on kernels that lack
// them (before 5.18/5.19).
func New(entries uint32) (*Ring, error) {
	var p params
	var fd uintptr
	var errno unix.Errno
	for _, flags := range []uint32{setupSubmitAll | setupCoopTask, 0} {
		p = params{flags: flags}
		fd, _, errno = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
		if errno != unix.EINVAL {
			break
		}
	}
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), entries: p.sqEntries}
	if p.features&featSingleMmap == 0 {
		r.Close()
		return nil, errors.New("io_uring: the kernel lacks IORING_FEAT_SINGLE_MMAP (before 5.4)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	var err error
	if r.ring, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: mmap the rings: %w", err)
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: mmap the entries: %w", err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.ring[off]) }
	r.sqHead, r.sqTail, r.sqMask = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail)), (*uint32)(at(p.sqOff.ringMask))
	r.sqArray = at(p.sqOff.array)
	r.cqHead, r.cqTail, r.cqMask = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail)), (*uint32)(at(p.cqOff.ringMask))
	r.cqes = at(p.cqOff.cqes)
	r.tail = atomic.LoadUint32(r.sqTail)
	return r, nil
}

// Probe checks that the kernel supports the operations (IORING_OP_SEND
// came in 5.6, as did the probe itself: an older kernel fails here).
func (r *Ring) Probe(ops ...uint8) error {
	// struct io_uring_probe (16 bytes) and 256 io_uring_probe_op (8 each).
	var probe [16 + 256*8]byte
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerProbe, uintptr(unsafe.Pointer(&probe[0])), 256, 0, 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_register(IORING_REGISTER_PROBE): %w", errno)
	}
	last := probe[0]
	for _, op := range ops {
		if op > last || *(*uint16)(unsafe.Pointer(&probe[16+int(op)*8+2]))&opSupported == 0 {
			return fmt.Errorf("io_uring: the kernel does not support operation %d", op)
		}
	}
	return nil
}

// Entries is the submission queue's size.
func (r *Ring) Entries() int { return int(r.entries) }

// Close unmaps and closes the ring. Nothing may be in flight.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	return unix.Close(r.fd)
}

// next returns the next submission entry, zeroed, or nil when the queue
// is full.
func (r *Ring) next() []byte {
	if r.tail-atomic.LoadUint32(r.sqHead) >= r.entries {
		return nil
	}
	idx := r.tail & *r.sqMask
	sqe := r.sqeMem[idx*sqeSize : (idx+1)*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	*(*uint32)(unsafe.Add(r.sqArray, idx*4)) = idx
	r.tail++
	return sqe
}

func put(sqe []byte, op uint8, fd int32, addr uint64, n uint32, flags uint32, userData uint64) {
	sqe[0] = op
	*(*int32)(unsafe.Pointer(&sqe[4])) = fd
	*(*uint64)(unsafe.Pointer(&sqe[16])) = addr
	*(*uint32)(unsafe.Pointer(&sqe[24])) = n
	*(*uint32)(unsafe.Pointer(&sqe[28])) = flags
	*(*uint64)(unsafe.Pointer(&sqe[32])) = userData
}

// Send queues an IORING_OP_SEND of p to the socket fd with the send(2)
// flags; false when the submission queue is full.
func (r *Ring) Send(fd int, p []byte, flags int, userData uint64) bool {
	sqe := r.next()
	if sqe == nil {
		return false
	}
	put(sqe, opSend, int32(fd), uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p)))), uint32(len(p)), uint32(flags), userData)
	return true
}

// Sendmsg queues an IORING_OP_SENDMSG of msg (whose iovecs must stay put
// too) to the socket fd; false when the submission queue is full.
func (r *Ring) Sendmsg(fd int, msg *unix.Msghdr, flags int, userData uint64) bool {
	sqe := r.next()
	if sqe == nil {
		return false
	}
	put(sqe, opSendmsg, int32(fd), uint64(uintptr(unsafe.Pointer(msg))), 1, uint32(flags), userData)
	return true
}

// Cancel queues an IORING_OP_ASYNC_CANCEL of the request whose user data
// is target; false when the submission queue is full.
func (r *Ring) Cancel(target, userData uint64) bool {
	sqe := r.next()
	if sqe == nil {
		return false
	}
	put(sqe, opAsyncCancel, -1, target, 0, 0, userData)
	return true
}

// Submit hands the queued entries to the kernel without waiting for
// their completions; entries the kernel completes inline (a non-blocking
// send does) are on the completion queue when it returns. It is a raw
// system call: it never blocks, so the runtime is not told of it.
func (r *Ring) Submit() error {
	atomic.StoreUint32(r.sqTail, r.tail)
	for {
		toSubmit := r.tail - atomic.LoadUint32(r.sqHead)
		if toSubmit == 0 {
			return nil
		}
		n, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), 0, 0, 0, 0)
		r.Enters++
		switch errno {
		case 0:
			// Some entries may be left (an entry that failed to prepare
			// stops the submission without SUBMIT_ALL): go on, unless
			// the kernel took none.
			if n == 0 {
				return fmt.Errorf("io_uring_enter took none of %d entries", toSubmit)
			}
		case unix.EINTR:
		default: // EAGAIN, EBUSY: the completion queue is full (reap first)
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// Unqueue drops the entries queued and not taken by the kernel (after
// Submit failed) and returns how many; they were the last queued.
func (r *Ring) Unqueue() int {
	head := atomic.LoadUint32(r.sqHead)
	n := int(r.tail - head)
	r.tail = head
	atomic.StoreUint32(r.sqTail, head)
	return n
}

// Wait blocks until at least n completions are ready or timeout passes
// (0: no timeout), submitting what is queued.
func (r *Ring) Wait(n int, timeout time.Duration) error {
	atomic.StoreUint32(r.sqTail, r.tail)
	toSubmit := r.tail - atomic.LoadUint32(r.sqHead)
	flags, arg, argSize := uintptr(enterGetEvents), uintptr(0), uintptr(0)
	if timeout > 0 {
		r.ts = unix.NsecToTimespec(int64(timeout))
		r.ga = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
		flags |= enterExtArg
		arg, argSize = uintptr(unsafe.Pointer(&r.ga)), unsafe.Sizeof(r.ga)
	}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(n), flags, arg, argSize)
	r.Enters++
	switch errno {
	case 0, unix.EINTR, unix.ETIME:
		return nil
	default:
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
}

// Reap calls fn with each completion ready, and returns how many.
func (r *Ring) Reap(fn func(userData uint64, res int32)) int {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	n := int(tail - head)
	for ; head != tail; head++ {
		cqe := unsafe.Add(r.cqes, (head&*r.cqMask)*cqeSize)
		fn(*(*uint64)(cqe), *(*int32)(unsafe.Add(cqe, 8)))
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}
