package ws

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// EngineConfig configures an Engine. The zero value is ready to use.
type EngineConfig struct {
	// Logger receives panics in handlers and, at Debug, protocol errors.
	// Nil discards.
	Logger *slog.Logger
	// Goroutines serves every connection with a reading goroutine of its
	// own instead of epoll. Measured on this project's 2-core machine class
	// (docs/BENCHMARKS.md), a goroutine and its read buffer cost about 8
	// KB more per idle connection. Platforms without epoll always do this,
	// and so does every TLS connection (its bytes must pass through
	// crypto/tls).
	Goroutines bool
	// Pollers is the number of epoll loops (default 1: one loop wakes the
	// readers; the reading itself runs on goroutines of its own).
	Pollers int
	// SweepInterval is how often pings, read timeouts and close timeouts
	// are checked (default 1 s).
	SweepInterval time.Duration
}

// Stats are an engine's counters since it started.
type Stats struct {
	Connections    int64  // open now
	Accepted       uint64 // completed handshakes
	MessagesIn     uint64
	MessagesOut    uint64
	BytesIn        uint64
	BytesOut       uint64
	ProtocolErrors uint64 // connections closed for a protocol error or limit
	Panics         uint64 // handler panics recovered
	// DeflateShared counts compressed frames served from a compression
	// another connection did for the same message (permessage-deflate).
	DeflateShared uint64
}

type counters struct {
	connections    atomic.Int64
	accepted       atomic.Uint64
	messagesIn     atomic.Uint64
	messagesOut    atomic.Uint64
	bytesIn        atomic.Uint64
	bytesOut       atomic.Uint64
	protocolErrors atomic.Uint64
	panics         atomic.Uint64
	deflateShared  atomic.Uint64
}

const shardCount = 16

// connShard holds a share of the engine's connections in a slice: each
// connection knows its slot (Conn.slot), and leaves by moving the last
// one into it (a slice costs 8 bytes per connection, a map entry several
// times that).
type connShard struct {
	mu    sync.Mutex
	conns []*Conn
}

// ErrEngineClosed is returned by Upgrade once the engine is shutting down.
var ErrEngineClosed = errors.New("ws: engine closed")

// Engine owns connections: it reads them (with epoll where it can), pings
// them, times them out and closes them all on Shutdown. Create one with
// NewEngine and share it among handlers with WithEngine.
type Engine struct {
	cfg   EngineConfig
	log   *slog.Logger
	stats counters
	flate flaters
	bufs  sync.Pool // read buffers of the epoll readers
	// readers are the frame readers of connections with a frame or
	// message partly read (Conn.fr).
	readers sync.Pool

	shards  [shardCount]connShard
	nextID  atomic.Uint64
	pollers []*poller
	next    atomic.Uint64

	mu       sync.Mutex
	closing  bool
	sweeping bool
	wg       sync.WaitGroup // every goroutine the engine starts
	stop     chan struct{}
	private  bool // owned by one Accept handler: sweep only while it has connections

	wmu    sync.Mutex
	parked []chan func() // idle workers (workers.go), the last parked last
}

// NewEngine creates an engine and, unless it is configured for goroutines
// or the platform lacks epoll, its poll loops.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	e := newEngine(cfg)
	if !cfg.Goroutines {
		n := max(cfg.Pollers, 1)
		for range n {
			p, err := newPoller(e)
			if err != nil {
				e.closePollers()
				return nil, err
			}
			if p == nil { // no epoll on this platform
				break
			}
			e.pollers = append(e.pollers, p)
			e.goTracked(p.run)
		}
	}
	return e, nil
}

func newEngine(cfg EngineConfig) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	e.flate.seed = maphash.MakeSeed()
	e.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	e.readers.New = func() any { return new(frameReader) }
	return e
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Connections:    e.stats.connections.Load(),
		Accepted:       e.stats.accepted.Load(),
		MessagesIn:     e.stats.messagesIn.Load(),
		MessagesOut:    e.stats.messagesOut.Load(),
		BytesIn:        e.stats.bytesIn.Load(),
		BytesOut:       e.stats.bytesOut.Load(),
		ProtocolErrors: e.stats.protocolErrors.Load(),
		Panics:         e.stats.panics.Load(),
		DeflateShared:  e.stats.deflateShared.Load(),
	}
}

// Len returns the number of open connections.
func (e *Engine) Len() int { return int(e.stats.connections.Load()) }

// goTracked runs fn on a goroutine that Shutdown waits for.
func (e *Engine) goTracked(fn func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		fn()
	}()
}

// goIfOpen is goTracked unless the engine is shutting down (false then):
// a goroutine started once Shutdown began may outlive its wait.
func (e *Engine) goIfOpen(fn func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return false
	}
	e.goTracked(fn)
	return true
}

// register adds a connection; it fails once the engine is closing.
func (e *Engine) register(c *Conn) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return ErrEngineClosed
	}
	id := e.nextID.Add(1)
	s := &e.shards[id%shardCount]
	s.mu.Lock()
	c.shard = uint8(id % shardCount)
	c.slot = int32(len(s.conns))
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	e.stats.connections.Add(1)
	e.stats.accepted.Add(1)
	if !e.sweeping {
		e.sweeping = true
		e.goTracked(e.sweep)
	}
	return nil
}

func (e *Engine) unregister(c *Conn) {
	s := &e.shards[c.shard]
	s.mu.Lock()
	if i := int(c.slot); i >= 0 && i < len(s.conns) && s.conns[i] == c {
		last := len(s.conns) - 1
		s.conns[i] = s.conns[last]
		s.conns[i].slot = int32(i)
		s.conns[last] = nil
		s.conns = s.conns[:last]
		c.slot = -1
		e.stats.connections.Add(-1)
	}
	s.mu.Unlock()
}

// each calls fn for every open connection (not under any lock).
func (e *Engine) each(fn func(*Conn)) {
	var batch []*Conn
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		batch = append(batch[:0], s.conns...)
		s.mu.Unlock()
		for _, c := range batch {
			fn(c)
		}
	}
}

// sweep runs the connections' timers. A private engine's sweeper stops
// when its last connection is gone; a shared one's on Shutdown.
func (e *Engine) sweep() {
	t := time.NewTicker(e.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			e.each(func(c *Conn) { c.tick(now) })
			if e.private {
				e.mu.Lock()
				if e.Len() == 0 {
					e.sweeping = false
					e.closePollers()
					e.pollers = nil
					e.mu.Unlock()
					return
				}
				e.mu.Unlock()
			}
		}
	}
}

// startReading hands a new connection to a poll loop, or to a goroutine
// of its own.
func (e *Engine) startReading(c *Conn) {
	var pollers []*poller
	if e.private {
		pollers = e.privatePollers() // under e.mu: the sweeper and other upgrades set it
	} else {
		pollers = e.pollers // fixed from the start
	}
	if len(pollers) > 0 {
		if sc, ok := pollable(c.nc); ok {
			rc, err := sc.SyscallConn()
			if err == nil {
				p := pollers[e.next.Add(1)%uint64(len(pollers))]
				if err := p.add(c, rc); err == nil || errors.Is(err, ErrClosed) {
					return
				}
			}
		}
	}
	e.goTracked(c.readLoop)
}

// privatePollers starts the poll loop of a private engine on its first
// connection; the sweeper stops it with the last one, so an Accept
// handler leaves no goroutine behind when it has no connections.
func (e *Engine) privatePollers() []*poller {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pollers == nil && !e.cfg.Goroutines {
		if p, err := newPoller(e); err == nil && p != nil {
			e.pollers = []*poller{p}
			e.goTracked(p.run)
		}
	}
	return e.pollers
}

// pollable reports whether the engine may read the socket directly: plain
// TCP and Unix sockets (detached or not), not TLS or wrapped connections.
func pollable(nc net.Conn) (syscall.Conn, bool) {
	switch c := nc.(type) {
	case *net.TCPConn:
		return c, true
	case *net.UnixConn:
		return c, true
	case detached:
		return c, true
	}
	return nil, false
}

// Shutdown closes every connection with code 1001 ("going away"), waits
// for their closing handshakes until ctx ends, then closes what is left
// and stops the engine's goroutines. New upgrades are refused with 503
// from the start.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	already := e.closing
	e.closing = true
	e.mu.Unlock()
	if !already {
		// Close everyone in the background, 64 at a time: a close frame may
		// wait behind a slow reader's write, and ctx bounds the whole.
		e.goTracked(func() {
			sem := make(chan struct{}, 64)
			e.each(func(c *Conn) {
				sem <- struct{}{}
				e.goTracked(func() {
					defer func() { <-sem }()
					c.Close(CloseGoingAway, "server shutting down")
				})
			})
		})
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var err error
wait:
	for e.Len() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-t.C:
		}
	}
	e.each(func(c *Conn) { c.finish(nil) })
	e.mu.Lock()
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.mu.Unlock()
	e.closePollers()
	e.wg.Wait()
	return err
}

// Close closes every connection at once (without waiting for closing
// handshakes) and stops the engine.
func (e *Engine) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := e.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (e *Engine) closePollers() {
	for _, p := range e.pollers {
		p.close()
	}
}
