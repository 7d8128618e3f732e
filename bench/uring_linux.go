//go:build linux

package bench

import (
	"golang.org/x/sys/unix"

	"github.com/switchyardhq/switchyard/internal/uring"
)

// floorRing submits the writes of one message to many sockets with one
// system call per ring's worth (internal/uring). It is used by one
// goroutine.
type floorRing struct {
	r       *uring.Ring
	entries int
	submits int64 // io_uring_enter calls
	res     []int32
	reap    func(userData uint64, res int32)
}

func newURing(entries uint32) (*floorRing, error) {
	r, err := uring.New(entries)
	if err != nil {
		return nil, err
	}
	f := &floorRing{r: r, entries: r.Entries(), res: make([]int32, r.Entries())}
	f.reap = func(i uint64, res int32) { f.res[i] = res }
	return f, nil
}

func (f *floorRing) close() { f.r.Close() }

// sendAll writes frame to every descriptor: one IORING_OP_SEND per
// socket, submitted and waited for as batches of the ring's size (one
// io_uring_enter each). It returns the sockets whose send failed; a short
// send's rest is written with write(2).
func (f *floorRing) sendAll(fds []int, frame []byte) (failed int64) {
	for len(fds) > 0 {
		n := min(len(fds), f.entries)
		batch := fds[:n]
		fds = fds[n:]
		for i, fd := range batch {
			f.r.Send(fd, frame, 0, uint64(i))
		}
		enters := f.r.Enters
		for done := 0; done < n; {
			if err := f.r.Wait(n-done, 0); err != nil {
				return failed + int64(n-done)
			}
			done += f.r.Reap(f.reap)
		}
		f.submits += f.r.Enters - enters
		for i, res := range f.res[:n] {
			switch {
			case res < 0:
				failed++
			case int(res) < len(frame):
				if writeAll(batch[i], frame[res:]) != nil {
					failed++
				}
			}
		}
	}
	return failed
}

// rusageThread is the writing thread's CPU time.
const rusageThread = unix.RUSAGE_THREAD
