package resource

import (
	"context"
	"slices"
	"sync"

	"github.com/switchyardhq/switchyard/store"
)

// emitter keeps one resource's events in commit order without holding
// the writes of the resource in turn: writes run concurrently (the
// store orders their commits and numbers them, store.Change.Seq), and
// their changes are emitted in Seq order.
//
// A committed change may be emitted once no write that could have
// committed before it is still running. Each write takes a ticket before
// it starts; a change records how many tickets were given out when its
// write committed (after). A write that took its ticket later started
// after that commit, so its Seq is higher: the change waits only for the
// running writes whose ticket is below after, and, among the changes
// ready, goes out in Seq order.
//
// One write at a time holds the turn and emits. Each write waits for its
// own event (the writers' backpressure on a slow fan-out): the turn
// passes to the write whose change is next, so no write emits the
// others' for long. A write made from a hook (with the ctx the hook was
// given) never waits: its change is emitted by whoever holds the turn,
// or by the write itself when its resource is idle. So a hook may write
// to any resource, its own included, without deadlocking.
type emitter struct {
	mu       sync.Mutex
	tickets  uint64    // tickets given out
	running  []uint64  // tickets of the writes not yet committed or failed, ascending
	ready    []*queued // committed changes not yet emitted, by Seq
	emitting bool      // a write holds the turn
}

type queued struct {
	ctx    context.Context
	ch     store.Change
	before store.Row
	after  uint64 // writes with a ticket below this must end before this change is emitted
	// turn is closed when the turn passes to this write; nil for a write
	// made from a hook, which does not wait.
	turn chan struct{}
	// durable is closed when the write returned: its change may be
	// announced.
	durable chan struct{}
}

// start gives a write its ticket.
func (e *emitter) start() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tickets
	e.tickets++
	e.running = append(e.running, t)
	return t
}

// end records that the write with ticket t committed q (nil: it failed
// without committing) and reports whether the caller must take the turn
// now (see advance). inOrder: the store reported the commit before any
// later commit (store.WithCommitted), so no running write committed
// before it. With e.mu held.
func (e *emitter) end(t uint64, q *queued, inOrder bool) (takeTurn bool) {
	if i, ok := slices.BinarySearch(e.running, t); ok {
		e.running = slices.Delete(e.running, i, i+1)
	}
	if q != nil {
		if !inOrder {
			q.after = e.tickets
		}
		i, _ := slices.BinarySearchFunc(e.ready, q.ch.Seq, func(r *queued, seq int64) int {
			switch {
			case r.ch.Seq < seq:
				return -1
			case r.ch.Seq > seq:
				return 1
			}
			return 0
		})
		e.ready = slices.Insert(e.ready, i, q)
	}
	return e.advance()
}

// next returns the change to emit next, if it may go out now. With e.mu
// held.
func (e *emitter) next() *queued {
	if len(e.ready) == 0 {
		return nil
	}
	h := e.ready[0]
	if len(e.running) > 0 && e.running[0] < h.after {
		return nil // a write that may have committed before it still runs
	}
	return h
}

// advance starts the turn when nobody holds it and a change may go out:
// it hands the turn to that change's write when it waits for it, or
// reports that the caller must take it (the change is a hook's write,
// whose writer does not wait). With e.mu held.
func (e *emitter) advance() (takeTurn bool) {
	if e.emitting {
		return false
	}
	h := e.next()
	if h == nil {
		return false
	}
	e.emitting = true
	if h.turn != nil {
		close(h.turn)
		return false
	}
	return true
}

// commit runs one store write of a resource and emits its event in commit
// order (see emitter). The store reports the commit (store.WithCommitted)
// before waiting for it to be durable (PostgreSQL's flush): the change is
// ordered at once and emitted once its write is durable, so the writes of
// a resource share their flushes.
func (s *Service) commit(ctx context.Context, sc *Schema, before store.Row, write func(ctx context.Context) (store.Row, store.Change, error)) (store.Row, error) {
	if ctx.Value(inTxHook{}) != nil {
		return nil, errWriteInTx
	}
	e := s.emitters[sc.Name()]
	q := &queued{ctx: context.WithoutCancel(ctx), before: before, durable: make(chan struct{})}
	if ctx.Value(inHook{}) == nil {
		q.turn = make(chan struct{})
	}
	ticket := e.start()
	queuedIt, takeTurn := false, false
	enqueue := func(ch store.Change, inOrder bool) {
		q.ch = ch
		e.mu.Lock()
		queuedIt = true
		takeTurn = e.end(ticket, q, inOrder)
		e.mu.Unlock()
	}
	row, ch, err := s.write(store.WithCommitted(ctx, enqueue), sc, before, write)
	if !queuedIt {
		if err != nil {
			e.mu.Lock()
			takeTurn = e.end(ticket, nil, false)
			e.mu.Unlock()
		} else {
			enqueue(ch, false) // in a transaction: reported after the commit
		}
	}
	// Committed when queued; durable unless err (a failed flush: the
	// change is visible, so its event still goes out, and the caller
	// hears the error).
	close(q.durable)
	var (
		own      bool
		panicked any
	)
	if takeTurn {
		own, panicked = s.takeTurn(sc, e, q)
	}
	if queuedIt && q.turn != nil && !own {
		<-q.turn
		if _, p := s.takeTurn(sc, e, q); panicked == nil {
			panicked = p
		}
	}
	if panicked != nil {
		panic(panicked) // a hook's, once the turn has moved on
	}
	if err != nil {
		return nil, err
	}
	return row, nil
}

// takeTurn runs with the turn held: it emits the changes that may go out,
// in order, until the next one is another waiting write's (the turn
// passes to it) or must wait for a running write (the turn is given up;
// that write's end starts it again). It reports whether it emitted mine,
// and the first panic of a hook, which does not leave the turn held: the
// caller raises it again once its own change is out.
func (s *Service) takeTurn(sc *Schema, e *emitter, mine *queued) (emittedMine bool, panicked any) {
	for {
		e.mu.Lock()
		h := e.next()
		if h == nil {
			e.emitting = false
			e.mu.Unlock()
			break
		}
		if h.turn != nil && h != mine {
			close(h.turn) // that write emits its own
			e.mu.Unlock()
			break
		}
		e.ready[0] = nil
		e.ready = e.ready[1:]
		e.mu.Unlock()
		emittedMine = emittedMine || h == mine
		<-h.durable
		if p := s.emitRecovering(sc, h); p != nil && panicked == nil {
			panicked = p
		}
	}
	return emittedMine, panicked
}

func (s *Service) emitRecovering(sc *Schema, q *queued) (panicked any) {
	defer func() { panicked = recover() }()
	s.emit(context.WithValue(q.ctx, inHook{}, true), sc, q.ch, q.before)
	return nil
}
