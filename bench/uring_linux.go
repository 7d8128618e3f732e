//go:build linux

package bench

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uring is the least of io_uring the floor needs to submit the writes of
// one message to many sockets in one system call: a submission queue of
// IORING_OP_SEND entries and its completion queue, set up and mapped with
// the raw system calls (no io_uring library is vendored). It is used by
// one goroutine, locked to its thread.
type uring struct {
	fd                     int
	ring, sqeMem           []byte // the rings (one mapping: IORING_FEAT_SINGLE_MMAP) and the entries
	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer // uint32 per entry
	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer // 16-byte completions
	entries                uint32
	submits                int64 // io_uring_enter calls
}

// io_uring ABI (include/uapi/linux/io_uring.h).
const (
	iouFeatSingleMmap = 1 << 0
	iouEnterGetEvents = 1 << 0
	iouOpSend         = 26
	iouOffSQRing      = 0
	iouOffSQEs        = 0x10000000
	iouSQESize        = 64
	iouCQESize        = 16
)

// iouParams is struct io_uring_params (120 bytes).
type iouParams struct {
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

var _ [120 - unsafe.Sizeof(iouParams{})]byte // the kernel's size
var _ [unsafe.Sizeof(iouParams{}) - 120]byte

// newURing sets up a ring of (at least) entries submissions.
func newURing(entries uint32) (*uring, error) {
	var p iouParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &uring{fd: int(fd), entries: p.sqEntries}
	if p.features&iouFeatSingleMmap == 0 {
		r.close()
		return nil, errors.New("io_uring: the kernel lacks IORING_FEAT_SINGLE_MMAP")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*iouCQESize)
	var err error
	if r.ring, err = unix.Mmap(r.fd, iouOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mmap the rings: %w", err)
	}
	if r.sqeMem, err = unix.Mmap(r.fd, iouOffSQEs, int(p.sqEntries*iouSQESize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mmap the entries: %w", err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.ring[off]) }
	r.sqHead, r.sqTail, r.sqMask = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail)), (*uint32)(at(p.sqOff.ringMask))
	r.sqArray = at(p.sqOff.array)
	r.cqHead, r.cqTail, r.cqMask = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail)), (*uint32)(at(p.cqOff.ringMask))
	r.cqes = at(p.cqOff.cqes)
	return r, nil
}

func (r *uring) close() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	unix.Close(r.fd)
}

// sendAll writes frame to every descriptor: one IORING_OP_SEND per
// socket, submitted and waited for as batches of the ring's size (one
// io_uring_enter each). It returns the sockets whose send failed; a short
// send's rest is written with write(2).
func (r *uring) sendAll(fds []int, frame []byte) (failed int64) {
	for len(fds) > 0 {
		n := min(len(fds), int(r.entries))
		batch := fds[:n]
		fds = fds[n:]
		tail := atomic.LoadUint32(r.sqTail)
		mask := *r.sqMask
		for i, fd := range batch {
			idx := (tail + uint32(i)) & mask
			sqe := r.sqeMem[idx*iouSQESize : (idx+1)*iouSQESize : (idx+1)*iouSQESize]
			clear(sqe)
			sqe[0] = iouOpSend
			*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
			*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&frame[0])))
			*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(frame))
			*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(i) // user_data: the index in batch
			*(*uint32)(unsafe.Add(r.sqArray, idx*4)) = idx
		}
		atomic.StoreUint32(r.sqTail, tail+uint32(n))
		for done := 0; done < n; {
			// Submit what is left to submit (all of it the first time) and
			// wait for the rest of the completions.
			toSubmit := int(atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead))
			_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(n-done), iouEnterGetEvents, 0, 0)
			r.submits++
			if errno != 0 && errno != unix.EINTR && errno != unix.EAGAIN && errno != unix.EBUSY {
				return failed + int64(n-done)
			}
			head, ctail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
			for ; head != ctail; head++ {
				cqe := unsafe.Add(r.cqes, (head&*r.cqMask)*iouCQESize)
				i := *(*uint64)(cqe)
				res := *(*int32)(unsafe.Add(cqe, 8))
				switch {
				case res < 0:
					failed++
				case int(res) < len(frame):
					if writeAll(batch[i], frame[res:]) != nil {
						failed++
					}
				}
				done++
			}
			atomic.StoreUint32(r.cqHead, head)
		}
	}
	return failed
}
