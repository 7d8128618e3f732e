package hub

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// TryWriter is implemented by a Writer that can write without waiting
// for the client. The hub's writer pool (Config.Writers) writes such a
// session's outbox on one of a few worker goroutines instead of starting
// a goroutine for each flush; a transport without it keeps a goroutine
// per flush.
type TryWriter interface {
	Writer
	// TryWriteFrames writes a batch of frames, in order, without waiting:
	// what the transport can take now. done is false when some is left;
	// the transport keeps it and writes it before anything else, and the
	// next WriteFrames (the hub makes one, with no frames) waits for it.
	// An error ends the session.
	TryWriteFrames(frames [][]byte) (done bool, err error)
}

// WriteGroup writes the batches of many sessions with one system call
// (ws.WriteRing: io_uring). Each writer worker makes its own
// (Config.NewWriteGroup) and alone uses it: it adds the batches of the
// sessions it took (GroupWriter), then flushes them.
type WriteGroup interface {
	// Flush writes what was added and calls result with each batch's
	// result, in the order added, as TryWriteFrames would return it.
	Flush(result func(i int, done bool, err error))
	Close() error
}

// GroupWriter is a TryWriter that can join a worker's WriteGroup.
type GroupWriter interface {
	TryWriter
	// AddToGroup adds a batch of frames to g, to be written as
	// TryWriteFrames would write them when g is flushed. false when it
	// cannot (g is not of its transport, or full): the worker calls
	// TryWriteFrames.
	AddToGroup(g WriteGroup, frames [][]byte) bool
}

// pool is a hub's writer workers and their ready-queue: the sessions
// whose outbox became non-empty. A worker writes a session's batch
// without waiting (TryWriteFrames); a session whose client does not take
// it all is handed to a goroutine of its own, which waits for it and
// drains its outbox as a session without a pool would: a slow client
// never holds a worker.
type pool struct {
	mu    sync.Mutex
	cond  sync.Cond
	ready []*Session
	// splits are broadcasts split into chunks (split.go), taken before
	// ready: the sooner every outbox holds the event, the sooner all are
	// written.
	splits []*split
	idle   int // workers waiting on cond
	closed bool
	wg     sync.WaitGroup

	// groups counts the workers with a WriteGroup; groupWrites and
	// groupFlushes what they wrote through it (Stats).
	groups                    atomic.Int32
	groupWrites, groupFlushes atomic.Uint64
}

// readyChunk is the most sessions a worker takes from the queue at once:
// large enough that the queue's lock is taken once per many writes, small
// enough that the workers share a broadcast.
const readyChunk = 64

func (p *pool) start(n int, newGroup func(size int) (WriteGroup, error), log *slog.Logger) {
	p.cond.L = &p.mu
	logged := false
	for range n {
		var g WriteGroup
		if newGroup != nil {
			var err error
			if g, err = newGroup(readyChunk); err != nil {
				if !logged { // once, not once per worker
					log.Warn("hub: the writers write one session at a time", "err", err)
					logged = true
				}
				g = nil
			} else {
				p.groups.Add(1)
			}
		}
		p.wg.Go(func() { p.work(g) })
	}
}

// push queues a session for a worker; false when the pool is closed.
func (p *pool) push(s *Session) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.ready = append(p.ready, s)
	if p.idle > 0 {
		p.cond.Signal()
	}
	p.mu.Unlock()
	return true
}

// pushAll queues sessions for the workers under one lock; the ones it
// returns false for (the pool is closed) need a goroutine.
func (p *pool) pushAll(ss []*Session) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.ready = append(p.ready, ss...)
	switch {
	case p.idle == 1 || len(ss) <= readyChunk && p.idle > 0:
		p.cond.Signal()
	case p.idle > 1:
		p.cond.Broadcast()
	}
	p.mu.Unlock()
	return true
}

// pushSplit asks up to n idle workers to help with a split broadcast:
// only a worker with nothing to write (a free core, when the pool has one
// worker per core) is asked, so a broadcast does not wait for workers
// that are busy writing the previous one. A worker woken for it may still
// find it over (and does nothing).
func (p *pool) pushSplit(sp *split, n int) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	n = min(n, p.idle-len(p.splits))
	for range n {
		p.splits = append(p.splits, sp)
		p.cond.Signal()
	}
	p.mu.Unlock()
}

// readyBatch gathers the sessions a broadcast starts writing, to queue
// them for the workers a batch at a time (one lock of the queue per
// batch, not per session).
type readyBatch struct {
	n  int
	ss [readyChunk]*Session
}

// add holds a session for the pool, flushing a full batch. The session's
// mu may be held.
func (b *readyBatch) add(s *Session) {
	b.ss[b.n] = s
	b.n++
	if b.n == len(b.ss) {
		b.flush()
	}
}

// flush queues the held sessions.
func (b *readyBatch) flush() {
	if b.n == 0 {
		return
	}
	ss := b.ss[:b.n]
	if !ss[0].h.pool.pushAll(ss) {
		for _, s := range ss {
			s.goWrite()
		}
	}
	clear(ss)
	b.n = 0
}

// stop ends the workers once the queue is empty and waits for them.
func (p *pool) stop() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// work is a writer worker: it writes the sessions it takes from the
// ready queue, through g when it has one.
func (p *pool) work(g WriteGroup) {
	var mine []*Session
	var gw *groupWrite
	if g != nil {
		defer g.Close()
		gw = newGroupWrite(g, p)
	}
	for {
		p.mu.Lock()
		for len(p.ready) == 0 && len(p.splits) == 0 && !p.closed {
			p.idle++
			p.cond.Wait()
			p.idle--
		}
		if k := len(p.splits); k > 0 {
			sp := p.splits[k-1]
			p.splits[k-1] = nil
			p.splits = p.splits[:k-1]
			p.mu.Unlock()
			sp.help()
			continue
		}
		if len(p.ready) == 0 { // closed and drained
			p.mu.Unlock()
			return
		}
		if len(p.ready) <= readyChunk {
			mine, p.ready = p.ready, mine[:0]
		} else {
			// Take from the end: order between sessions does not matter,
			// and the rest stays in place.
			mine = append(mine[:0], p.ready[len(p.ready)-readyChunk:]...)
			clear(p.ready[len(p.ready)-readyChunk:])
			p.ready = p.ready[:len(p.ready)-readyChunk]
		}
		if len(p.ready) > 0 && p.idle > 0 {
			p.cond.Signal()
		}
		p.mu.Unlock()
		if gw != nil {
			gw.write(mine)
			continue
		}
		for i, s := range mine {
			s.tryFlush()
			mine[i] = nil
		}
	}
}

// groupWrite is a worker's WriteGroup and the batches added to it.
type groupWrite struct {
	g      WriteGroup
	p      *pool
	added  []groupBatch
	result func(i int, done bool, err error) // made once
}

type groupBatch struct {
	s      *Session
	batch  [][]byte
	number uint32
}

func newGroupWrite(g WriteGroup, p *pool) *groupWrite {
	gw := &groupWrite{g: g, p: p, added: make([]groupBatch, 0, readyChunk)}
	gw.result = func(i int, done bool, err error) {
		a := gw.added[i]
		gw.added[i] = groupBatch{}
		a.s.tried(a.batch, a.number, done, err)
	}
	return gw
}

// write writes one batch of each session through the group (the ones
// that cannot join it one at a time), clearing ss.
func (gw *groupWrite) write(ss []*Session) {
	for i, s := range ss {
		ss[i] = nil
		batch, number, ok := s.take()
		if !ok {
			continue
		}
		if w, ok := s.w.(GroupWriter); ok && w.AddToGroup(gw.g, batch) {
			gw.added = append(gw.added, groupBatch{s, batch, number})
			continue
		}
		done, err := s.w.(TryWriter).TryWriteFrames(batch)
		s.tried(batch, number, done, err)
	}
	if len(gw.added) > 0 {
		gw.p.groupWrites.Add(uint64(len(gw.added)))
		gw.p.groupFlushes.Add(1)
		gw.g.Flush(gw.result)
		gw.added = gw.added[:0]
	}
}

// tryFlush writes one batch of the session's outbox without waiting, on
// a worker. The session is writing (s.writing), counted in h.writers.
func (s *Session) tryFlush() {
	batch, number, ok := s.take()
	if !ok {
		return
	}
	done, err := s.w.(TryWriter).TryWriteFrames(batch)
	s.tried(batch, number, done, err)
}

// tried goes on after a batch was written without waiting: done is
// TryWriteFrames's result.
func (s *Session) tried(batch [][]byte, number uint32, done bool, err error) {
	if !done && err == nil {
		// The client did not take it all: a goroutine of the session's
		// own waits for the rest and drains the outbox (the closure that
		// carries the batch is made only for such a slow write).
		go s.resume(batch, number)
		return
	}
	if !s.written(batch, number, err) {
		return
	}
	// More was queued meanwhile: back in the queue, behind the others.
	if !s.h.pool.push(s) {
		s.goWrite()
	}
}

// resume waits for the rest of the batch a worker could not write, then
// drains the outbox like writeLoop.
func (s *Session) resume(batch [][]byte, number uint32) {
	err := s.w.WriteFrames(context.Background(), nil)
	if !s.written(batch, number, err) {
		return
	}
	s.drain()
}
