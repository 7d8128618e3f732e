//go:build !linux

package bench

import (
	"errors"

	"golang.org/x/sys/unix"
)

// floorRing is io_uring's, which only Linux has: --io-uring fails here.
type floorRing struct {
	entries int
	submits int64
}

func newURing(uint32) (*floorRing, error) {
	return nil, errors.New("--io-uring: io_uring is Linux's")
}

func (f *floorRing) close() {}

func (f *floorRing) sendAll(fds []int, frame []byte) int64 { return int64(len(fds)) }

// rusageThread: this system has no per-thread CPU time, so the floor's
// writing thread is measured as the whole process.
const rusageThread = unix.RUSAGE_SELF
