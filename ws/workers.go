package ws

import (
	"slices"
	"time"
)

// The epoll loops run each readable connection's handling on a goroutine
// of its own. A goroutine that is started for it begins with a small
// stack, and an application handler that goes deep (a resource write
// through a database driver) grows it by copying, again for every
// message: 6 % of the server's CPU under a write load (docs/BENCHMARKS.md).
// So the goroutines are reused: one that finished its work parks for a
// while (workerIdle) and takes the next piece of work, its grown stack
// with it. Parked goroutines are taken last in, first out, so the busy
// ones stay warm and the rest time out; Shutdown ends them.

// workerIdle is how long a parked worker waits for work before it ends.
const workerIdle = 2 * time.Second

// dispatch runs fn on a parked worker, or on a new one.
func (e *Engine) dispatch(fn func()) {
	e.wmu.Lock()
	if n := len(e.parked); n > 0 {
		ch := e.parked[n-1]
		e.parked = e.parked[:n-1]
		e.wmu.Unlock()
		ch <- fn
		return
	}
	e.wmu.Unlock()
	e.goTracked(func() { e.work(fn) })
}

// work runs fn, then parks for more until it has waited workerIdle or the
// engine stops.
func (e *Engine) work(fn func()) {
	ch := make(chan func(), 1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		e.wmu.Lock()
		e.parked = append(e.parked, ch)
		e.wmu.Unlock()
		idle.Reset(workerIdle)
		select {
		case fn = <-ch:
			continue
		case <-idle.C:
		case <-e.stop:
		}
		e.wmu.Lock()
		i := slices.Index(e.parked, ch)
		if i >= 0 {
			e.parked = slices.Delete(e.parked, i, i+1)
		}
		e.wmu.Unlock()
		if i >= 0 {
			return
		}
		// Taken just now: the work is on its way.
		fn = <-ch
	}
}
