package server

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Tuning of the connection gate.
const (
	// descriptorReserve is what an automatic limits.max_connections keeps
	// back from the open-file limit: the store's files, the listener, the
	// engine's epoll descriptors, log files, and the gate's own overflow
	// connections.
	descriptorReserve = 128
	// overflowSlots bounds the connections over the limit that the gate
	// reads a request from at once (to answer /healthz, or 503 naming the
	// key); a new one evicts the oldest, so clients that are slow to send
	// their request cannot keep a health probe from being read.
	overflowSlots = 64
	// overflowTimeout bounds reading and answering one overflow
	// connection.
	overflowTimeout = 2 * time.Second
)

// gate bounds the server's client connections (limits.max_connections):
// HTTP connections, counted from accept until net/http closes them or
// hands them to the WebSocket engine, plus the engine's WebSockets. Over
// the bound it keeps answering GET /healthz and refuses everything else
// with 503, from a small reserve of descriptors; when the process runs out
// of descriptors anyway (accept fails with EMFILE) it frees a spare one to
// take the waiting connection off the queue and refuse it, rather than
// leaving it to time out in the backlog.
//
// Accept is called from the one goroutine of http.Server.Serve, and
// net/http reports StateNew from that goroutine before the next Accept,
// so the count the gate checks is exact.
type gate struct {
	max       int
	webSocket func() int // open WebSockets
	log       *slog.Logger

	http    atomic.Int64 // open HTTP connections (net/http's view)
	refused atomic.Uint64
	wg      sync.WaitGroup

	mu    sync.Mutex
	spare *os.File // a descriptor kept free for EMFILE
	// overflow are the connections over the limit being read and
	// answered, oldest first.
	overflow []net.Conn
	// lastLog rate-limits the warnings of a gate under pressure.
	lastLog time.Time
}

// maxConnections resolves limits.max_connections: configured, or derived
// from the open-file limit.
func maxConnections(configured int) int {
	if configured > 0 {
		return configured
	}
	n := openFileLimit()
	if n <= 0 {
		return 0 // unknown: no bound beyond what the system enforces
	}
	if n < 2*descriptorReserve {
		return max(n/2, 1)
	}
	return n - descriptorReserve
}

func newGate(max int, webSocket func() int, log *slog.Logger) *gate {
	g := &gate{max: max, webSocket: webSocket, log: log}
	g.spare, _ = os.Open(os.DevNull)
	return g
}

// connState is the http.Server's ConnState hook. StateHijacked and
// StateClosed are terminal: each connection leaves the count once.
func (g *gate) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		g.http.Add(1)
	case http.StateHijacked, http.StateClosed:
		g.http.Add(-1)
	}
}

// open returns the client connections open now.
func (g *gate) open() int { return int(g.http.Load()) + g.webSocket() }

func (g *gate) full() bool { return g.max > 0 && g.open() >= g.max }

// listener wraps ln so that its Accept applies the gate. Accepted
// connections are returned as they are (not wrapped), so the engine can
// still read WebSockets with epoll.
func (g *gate) listener(ln net.Listener) net.Listener { return &gatedListener{Listener: ln, g: g} }

type gatedListener struct {
	net.Listener
	g *gate
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if l.g.shed(l.Listener, err) {
				continue
			}
			return nil, err
		}
		if l.g.full() {
			l.g.refuse(c)
			continue
		}
		return c, nil
	}
}

// tooMany is the answer over the limit.
const tooMany = `{"error":{"code":"too_many_connections","message":"the server is at its connection limit (limits.max_connections)"}}` + "\n"

// response renders a complete HTTP/1.1 answer that closes the connection.
func response(status int, body string) []byte {
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Connection: close\r\n"
	if status == http.StatusServiceUnavailable {
		head += "Retry-After: 1\r\n"
	}
	return []byte(head + "\r\n" + body)
}

// refuse handles a connection over the limit: its request is read (GET
// /healthz is answered 200, anything else 503 naming the key) within
// overflowTimeout. With overflowSlots such connections already open, the
// oldest is closed unanswered to make room.
func (g *gate) refuse(c net.Conn) {
	g.refused.Add(1)
	g.mu.Lock()
	if len(g.overflow) >= overflowSlots {
		g.overflow[0].Close()
		g.overflow = g.overflow[1:]
	}
	g.overflow = append(g.overflow, c)
	g.warnLocked("connection limit reached: refusing new connections", "limit", g.max, "key", "limits.max_connections")
	g.mu.Unlock()
	g.wg.Go(func() {
		defer func() {
			g.mu.Lock()
			g.overflow = slices.DeleteFunc(g.overflow, func(x net.Conn) bool { return x == c })
			g.mu.Unlock()
			c.Close()
		}()
		c.SetDeadline(time.Now().Add(overflowTimeout))
		req, err := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(c, 16<<10), 4<<10))
		if err != nil {
			return
		}
		if req.Method == http.MethodGet && req.URL.Path == "/healthz" {
			c.Write(response(http.StatusOK, `{"status":"ok"}`+"\n"))
			return
		}
		c.Write(response(http.StatusServiceUnavailable, tooMany))
	})
}

// refuseNow answers 503 without reading and closes the connection.
func refuseNow(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(response(http.StatusServiceUnavailable, tooMany))
	c.Close()
}

// shed handles an accept that failed for want of descriptors: it frees
// the spare descriptor, takes the waiting connection, refuses it, and
// takes the spare back. It reports whether it handled err.
func (g *gate) shed(ln net.Listener, err error) bool {
	if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.spare == nil {
		g.spare, _ = os.Open(os.DevNull)
		return false // net/http backs off and retries
	}
	g.spare.Close()
	g.spare = nil
	if c, err := ln.Accept(); err == nil {
		g.refused.Add(1)
		refuseNow(c)
	}
	g.spare, _ = os.Open(os.DevNull)
	g.warnLocked("out of file descriptors: refusing new connections; lower limits.max_connections or raise the open-file limit", "open", g.open())
	return true
}

// warnLocked logs a gate warning at most once every 10 seconds; g.mu is
// held.
func (g *gate) warnLocked(msg string, args ...any) {
	if now := time.Now(); now.Sub(g.lastLog) >= 10*time.Second {
		g.lastLog = now
		g.log.Warn(msg, append(args, "refused_total", g.refused.Load())...)
	}
}

// close ends the overflow connections, waits for their goroutines and
// releases the spare descriptor.
func (g *gate) close() {
	g.mu.Lock()
	for _, c := range g.overflow {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	g.mu.Lock()
	if g.spare != nil {
		g.spare.Close()
		g.spare = nil
	}
	g.mu.Unlock()
}
