package ws

import (
	"errors"
	"net"
)

// ErrNoPoller is returned by Watch when the engine has no epoll loop: it
// serves connections with goroutines (EngineConfig.Goroutines), the
// platform has no epoll, or the connection is not a plain socket (TLS,
// a wrapped net.Conn).
var ErrNoPoller = errors.New("ws: no poll loop for this connection")

// Watch is a plain socket (not a WebSocket) that one of the engine's poll
// loops watches for readability on behalf of another package: the
// Channelstream long-poll parks hijacked HTTP connections this way, so a
// parked request costs an epoll entry instead of a goroutine. Create one
// with Engine.Watch.
type Watch struct {
	p  *poller
	fd int
	fn func()
}

// Watch asks a poll loop of the engine to call fn, on a goroutine of its
// own, once nc has bytes to read or its peer hung up. It fires once: call
// Rearm for the next event. Stop before closing nc or handing it on, so
// the descriptor cannot be reused under the watch; fn may still run once
// after Stop (it was already on its way) and must then find nothing to do.
// It returns ErrNoPoller when nc cannot be watched (the caller then waits
// for it some other way), ErrEngineClosed once the engine shuts down.
func (e *Engine) Watch(nc net.Conn, fn func()) (*Watch, error) {
	e.mu.Lock()
	closing := e.closing
	pollers := e.pollers
	e.mu.Unlock()
	if closing {
		return nil, ErrEngineClosed
	}
	if len(pollers) == 0 {
		return nil, ErrNoPoller
	}
	sc, ok := pollable(nc)
	if !ok {
		return nil, ErrNoPoller
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, ErrNoPoller
	}
	w := &Watch{p: pollers[e.next.Add(1)%uint64(len(pollers))], fd: -1, fn: fn}
	if err := w.p.watch(w, rc); err != nil {
		return nil, err
	}
	return w, nil
}

// Rearm asks for the next event.
func (w *Watch) Rearm() { w.p.rearmWatch(w) }

// Stop ends the watch. It is safe to call more than once.
func (w *Watch) Stop() { w.p.unwatch(w) }
