package ws

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// Handler receives the events of a connection accepted with Upgrade.
//
// Calls for one connection are never concurrent and follow the order of
// the frames on the wire; OnClose is the last call. A panic in a method is
// recovered, logged, and closes that connection with code 1011.
type Handler interface {
	// OnOpen is called once, after the handshake and before the first
	// message; it is the place to attach state with SetValue.
	OnOpen(c *Conn)
	// OnMessage is called with each message. The callee owns data.
	OnMessage(c *Conn, typ MessageType, data []byte)
	// OnClose is called once when the connection is gone; err is io.EOF
	// when the peer closed it, a *CloseError when this side did.
	OnClose(c *Conn, err error)
}

type connState uint8

const (
	stateOpen      connState = iota
	stateCloseSent           // our close frame is out; waiting for the peer's
	stateClosed              // the socket is closed
)

type queued struct {
	typ  MessageType
	data []byte
}

// inbox is the state of a connection whose messages are queued for Wait
// and Read (no Handler), made on the first message or waiter: a
// connection in event mode never has one.
type inbox struct {
	queue  []queued
	bytes  int64
	notify chan struct{} // closed on any change a waiter cares about
}

// inboxLocked returns the connection's inbox, making it. c.mu must be
// held.
func (c *Conn) inboxLocked() *inbox {
	if c.q == nil {
		c.q = new(inbox)
	}
	return c.q
}

// queuedLocked returns how many messages and bytes are queued. c.mu must
// be held.
func (c *Conn) queuedLocked() (int, int64) {
	if c.q == nil {
		return 0, 0
	}
	return len(c.q.queue), c.q.bytes
}

// Conn is one WebSocket connection. All methods are safe for concurrent
// use.
//
// An idle connection is mostly this struct, so its fields are ordered to
// leave no padding (small fields after the mutex that guards them), times
// are unix nanoseconds, and the done channel and the queue of the
// Wait/Read mode (inbox) are made on demand; TestConnSize keeps it within
// 256 bytes. See docs/BENCHMARKS.md, "Memory per idle connection".
type Conn struct {
	nc  net.Conn
	eng *Engine
	o   *options
	h   Handler // event mode; nil when messages are queued

	// Reading state: touched only by the single reader of the moment.
	rmu     sync.Mutex
	shard   uint8 // the engine's shard (immutable)
	deflate bool  // permessage-deflate: compress what this side sends (immutable)
	inflate bool  // permessage-deflate was negotiated: compressed frames may come (immutable)
	// subprotocol is the negotiated subprotocol's index in o.subprotocols
	// plus one, 0 for none (immutable).
	subprotocol uint16
	// fr is the frame being read, taken from the engine's pool when bytes
	// arrive and given back once they ended on a message boundary: an idle
	// connection holds none.
	fr     *frameReader
	rc     syscall.RawConn // set when the engine polls the socket
	poller *poller

	wmu     sync.Mutex // serialises writes to nc
	wclosed bool       // the close frame is out: nothing may follow (guarded by wmu)
	wrcErr  bool       // the socket has no RawConn (TLS, a pipe): TrySendBatch never writes (guarded by wmu)
	// fd is the socket's descriptor while the engine polls it (set with
	// rc; it sits here to fill what would be padding).
	fd        int32
	wdeadline int64 // the socket's write deadline, unix ns; 0: to be set (guarded by wmu)
	// pending is what a TrySendBatch left unwritten: it goes out before
	// anything else (guarded by wmu; pmu guards it too, for a
	// TrySendBatch that found a write in progress).
	pending *batch
	pmu     sync.Mutex
	wrc     syscall.RawConn // the socket, for writes that must not wait (guarded by wmu)
	// wfd is a detached socket's descriptor plus one, for TrySendBatch's
	// raw writes (0: none; guarded by wmu). wrefs counts the raw writes
	// in flight, its sign bit set once finish closes the socket: finish
	// waits for them before closing, so the number is never written
	// after it could belong to another connection (rawwrite.go).
	wfd   int32
	wrefs atomic.Int32

	cbmu sync.Mutex // serialises Handler calls

	mu     sync.Mutex
	state  connState
	paused bool // epoll mode: reading stopped until the queue drains
	// slot is the connection's index in its engine's shard, -1 once
	// unregistered (guarded by the shard's lock; it sits here to fill
	// what would be padding).
	slot          int32
	err           error         // why the connection ended or is ending
	closeDeadline int64         // unix ns; 0 while the close frame is being written
	q             *inbox        // messages waiting for Wait or Read; made on demand (nil in event mode)
	done          chan struct{} // made by Done; closed when the socket is closed
	onFinish      func()        // called once when the socket is closed

	lastRead atomic.Int64 // unix nanoseconds
	lastPing atomic.Int64
	value    atomic.Pointer[any]
}

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string {
	if c.subprotocol == 0 {
		return ""
	}
	return c.o.subprotocols[c.subprotocol-1]
}

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetValue attaches an application value to the connection.
func (c *Conn) SetValue(v any) { c.value.Store(&v) }

// Value returns the value given to SetValue, or nil.
func (c *Conn) Value() any {
	if p := c.value.Load(); p != nil {
		return *p
	}
	return nil
}

// Done returns a channel closed once the connection is gone.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.state == stateClosed {
			close(c.done)
		}
	}
	return c.done
}

// Err returns why the connection ended (io.EOF when the peer closed it, a
// *CloseError when this side did), or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOpen {
		return nil
	}
	return c.err
}

// wakeLocked wakes every waiter. c.mu must be held.
func (c *Conn) wakeLocked() {
	if c.q != nil && c.q.notify != nil {
		close(c.q.notify)
		c.q.notify = nil
	}
}

// Wait blocks until the next message arrives and returns it. Once the
// peer has closed the connection and every message was taken it returns
// io.EOF; when this side closed it, the *CloseError it sent; when ctx ends
// first, ctx.Err().
func (c *Conn) Wait(ctx context.Context) ([]byte, error) {
	for {
		c.mu.Lock()
		if m, ok := c.popLocked(); ok {
			c.mu.Unlock()
			return m.data, nil
		}
		if c.state != stateOpen {
			err := c.err
			c.mu.Unlock()
			return nil, err
		}
		q := c.inboxLocked()
		if q.notify == nil {
			q.notify = make(chan struct{})
		}
		ch := q.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			n, _ := c.queuedLocked()
			closed := c.state != stateOpen && n == 0
			err := c.err
			c.mu.Unlock()
			if closed {
				return nil, err
			}
			return nil, ctx.Err()
		}
	}
}

// WaitTimeout is Wait for at most d (dwebsocket's wait() with a time
// limit): the next message, or context.DeadlineExceeded when none came in
// time, which leaves the connection open. Like Wait it returns io.EOF once
// the peer closed and every message was taken. With d <= 0 it takes a
// message that has already arrived, or returns at once.
func (c *Conn) WaitTimeout(d time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Wait(ctx)
}

// Read returns the next message if one has arrived, without blocking.
func (c *Conn) Read() ([]byte, bool) {
	c.mu.Lock()
	m, ok := c.popLocked()
	c.mu.Unlock()
	return m.data, ok
}

// CountMessages returns how many received messages are waiting.
func (c *Conn) CountMessages() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, _ := c.queuedLocked()
	return n
}

// HasMessages reports whether a received message is waiting.
func (c *Conn) HasMessages() bool { return c.CountMessages() > 0 }

// Messages yields every message until the peer closes the connection,
// this side closes it, or ctx ends.
func (c *Conn) Messages(ctx context.Context) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for {
			m, err := c.Wait(ctx)
			if err != nil || !yield(m) {
				return
			}
		}
	}
}

// popLocked takes the oldest queued message. c.mu must be held.
func (c *Conn) popLocked() (queued, bool) {
	q := c.q
	if q == nil || len(q.queue) == 0 {
		return queued{}, false
	}
	m := q.queue[0]
	q.queue[0] = queued{}
	q.queue = q.queue[1:]
	if len(q.queue) == 0 {
		q.queue = nil
	}
	q.bytes -= int64(len(m.data))
	if c.paused && q.bytes < c.o.maxQueued {
		c.paused = false
		if c.poller != nil {
			c.poller.rearm(c)
		}
	}
	c.wakeLocked() // a goroutine reader may wait for queue space
	return m, true
}

// Send sends a text message. It fails with ErrClosed once the connection
// is closing, and with ctx.Err() if ctx ends first (the connection is then
// closed: a partly written frame cannot be taken back).
func (c *Conn) Send(ctx context.Context, data []byte) error {
	return c.writeData(ctx, opText, data)
}

// SendBinary sends a binary message.
func (c *Conn) SendBinary(ctx context.Context, data []byte) error {
	return c.writeData(ctx, opBinary, data)
}

func (c *Conn) writeData(ctx context.Context, op byte, data []byte) error {
	rsv1 := false
	payload := data
	if c.deflate && len(data) >= deflateThreshold {
		payload = c.eng.compress(data)
		rsv1 = true
	}
	b := getBatch(1)
	b.hdrs = appendFrameHeader(b.hdrs, true, rsv1, op, len(payload))
	b.bufs = append(b.bufs, b.hdrs, payload)
	return c.writeBatch(ctx, b, 1)
}

// SendBatch sends text messages in one write (one writev of their frames).
// It does not allocate (but to compress a message not sent before): the
// hub's writers call it once per subscriber of a broadcast.
func (c *Conn) SendBatch(ctx context.Context, msgs ...[]byte) error {
	b, _ := c.textBatch(msgs)
	return c.writeBatch(ctx, b, len(msgs))
}

// textBatch frames text messages into a pooled batch (a broadcast
// compressed once for every connection, compressShared) and returns it
// with the bytes of its frames.
//
// A small frame is copied whole into the batch's own buffer, after its
// header, and consecutive small frames share one buffer: a broadcast's
// usual batch (one small message) is then one buffer, written with
// write(2) instead of a writev of two (docs/BENCHMARKS.md, "Issue 20,
// fifth round").
func (c *Conn) textBatch(msgs [][]byte) (*batch, int) {
	b := getBatch(len(msgs))
	size := 0
	run := -1 // start in b.hdrs of the small frames at the end of b.bufs
	for _, m := range msgs {
		payload, rsv1 := m, false
		if c.deflate && len(m) >= deflateThreshold {
			payload, rsv1 = c.eng.compressShared(m), true
		}
		start := len(b.hdrs)
		b.hdrs = appendFrameHeader(b.hdrs, true, rsv1, opText, len(payload))
		size += len(b.hdrs) - start + len(payload)
		if len(payload) > inlineMax {
			b.bufs = append(b.bufs, b.hdrs[start:len(b.hdrs):len(b.hdrs)], payload)
			run = -1
			continue
		}
		b.hdrs = append(b.hdrs, payload...)
		if run < 0 {
			run = start
			b.bufs = append(b.bufs, nil)
		}
		// If the append moved b.hdrs, the run's earlier frames were
		// copied with it: the run is re-sliced from the new array (the
		// batch's earlier buffers keep the old one alive).
		b.bufs[len(b.bufs)-1] = b.hdrs[run:len(b.hdrs):len(b.hdrs)]
	}
	return b, size
}

// inlineMax is the largest payload textBatch copies after its header
// rather than writing from where it is.
const inlineMax = 512

// WritePrepared sends prepared messages in one write. It is how a
// broadcast reaches many connections without encoding it once per
// connection.
func (c *Conn) WritePrepared(ctx context.Context, msgs ...*PreparedMessage) error {
	b := getBatch(0)
	for _, m := range msgs {
		b.bufs = append(b.bufs, m.frame(c.deflate, c.eng))
	}
	return c.writeBatch(ctx, b, len(msgs))
}

// batch is the scratch space of one write of data frames: their headers
// and the buffers handed to writev. Batches are reused through a pool, so
// a send does not allocate.
type batch struct {
	hdrs []byte
	bufs net.Buffers
	w    net.Buffers // bufs as the write consumes them

	// TrySendBatch's non-blocking writes (trysend.go).
	iov       iovecs
	tryWrite  func(fd uintptr)      // b.writev for RawConn.Control, made once per batch
	writeWait func(fd uintptr) bool // b.writeAll, made once per batch
	wn        int
	werr      error
}

// maxFrameHeader is the size of the longest header of a frame this side
// sends (unmasked, 64-bit length).
const maxFrameHeader = 10

var batches = sync.Pool{New: func() any {
	b := new(batch)
	b.tryWrite = func(fd uintptr) { b.writev(fd) }
	b.writeWait = b.writeAll
	return b
}}

// getBatch returns an empty batch whose headers have room for n frames
// (appending them must not move the headers bufs already points into).
func getBatch(n int) *batch {
	b := batches.Get().(*batch)
	if cap(b.hdrs) < maxFrameHeader*n {
		b.hdrs = make([]byte, 0, maxFrameHeader*n)
	}
	return b
}

// writeBatch writes a batch's buffers and returns the batch to the pool,
// without the messages (which must not stay reachable from it).
func (c *Conn) writeBatch(ctx context.Context, b *batch, n int) error {
	b.w = b.bufs
	err := c.write(ctx, b, n)
	b.release()
	return err
}

// write writes whole frames; n counts the data messages among them.
func (c *Conn) write(ctx context.Context, b *batch, n int) error {
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if !open {
		return ErrClosed
	}
	var size int
	for _, p := range b.w {
		size += len(p)
	}
	if err := c.writeRaw(ctx, b, false); err != nil {
		if errors.Is(err, ErrClosed) {
			return err // the close frame went out first
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
			// The socket's deadline was ctx's, and its timer has not
			// fired yet: the same end.
			err = context.DeadlineExceeded
		}
		c.finish(fmt.Errorf("ws: write: %w", err))
		return err
	}
	c.eng.stats.messagesOut.Add(uint64(n))
	c.eng.stats.bytesOut.Add(uint64(size))
	return nil
}

// writeRaw writes b.w under the write lock with the write timeout and
// ctx's deadline and cancellation; closing marks them as the close frame,
// after which every write fails with ErrClosed (a frame that checked the
// state just before a Close must not follow the close frame).
//
// Setting a deadline costs a runtime timer update (about a tenth of the
// CPU of a broadcast in profiles), so without a ctx deadline the socket's
// deadline is only moved when less than half the write timeout is left:
// every write still gets between half and all of the write timeout.
func (c *Conn) writeRaw(ctx context.Context, b *batch, closing bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return ErrClosed
	}
	c.wclosed = closing
	now := time.Now()
	if d, ok := ctx.Deadline(); ok && d.Before(now.Add(c.o.writeTimeout)) {
		if err := c.nc.SetWriteDeadline(d); err != nil {
			return err
		}
		c.wdeadline = 0 // reset on the next write
	} else if time.Duration(c.wdeadline-now.UnixNano()) < c.o.writeTimeout/2 {
		d := now.Add(c.o.writeTimeout)
		c.wdeadline = d.UnixNano()
		if err := c.nc.SetWriteDeadline(d); err != nil {
			return err
		}
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.nc.SetWriteDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				c.wdeadline = 0 // ctx moved the deadline to the past
			}
		}()
	}
	if err := c.flushPendingLocked(); err != nil {
		return err
	}
	return c.writeOut(b)
}

// writeControl writes a control frame.
func (c *Conn) writeControl(op byte, payload []byte) error {
	b := getBatch(1)
	b.hdrs = appendFrameHeader(b.hdrs, true, false, op, len(payload))
	b.bufs = append(b.bufs, b.hdrs, payload)
	b.w = b.bufs
	err := c.writeRaw(context.Background(), b, op == opClose)
	b.release()
	return err
}

// closeWrite shuts down the sending half of the socket after the close
// frame, so the peer reads the end of the stream right after it.
func (c *Conn) closeWrite() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// Close starts the closing handshake: it sends a close frame with code
// and reason (cut to 123 bytes), stops delivering messages, and closes the
// socket when the peer answers or after a few seconds. The close frame
// waits behind a write in progress (at most the write timeout), so a slow
// reader still gets the data sent before it and then the code. It returns
// ErrClosed if the connection was already closing.
func (c *Conn) Close(code int, reason string) error {
	if !validCloseCode(code) {
		return fmt.Errorf("ws: invalid close code %d", code)
	}
	reason = truncateReason(reason)
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	c.state = stateCloseSent
	c.err = &CloseError{Code: code, Reason: reason, Local: true}
	if c.q != nil {
		c.q.queue, c.q.bytes = nil, 0
	}
	if c.paused {
		c.paused = false
		if c.poller != nil {
			c.poller.rearm(c) // read on to see the peer's close frame
		}
	}
	c.wakeLocked()
	c.mu.Unlock()

	payload := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	payload = append(payload, reason...)
	// The close frame follows whatever is being written; if the peer does
	// not read it within the write timeout, the socket is closed without.
	if err := c.writeControl(opClose, payload); err != nil {
		c.finish(err)
		return nil
	}
	// Now wait for the peer's close frame, a few seconds at most.
	c.mu.Lock()
	c.closeDeadline = time.Now().Add(closeTimeout).UnixNano()
	c.mu.Unlock()
	return nil
}

func truncateReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	s = s[:123]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// finish closes the socket and ends the connection. Safe to call more
// than once and from any goroutine.
func (c *Conn) finish(cause error) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	if c.err == nil {
		if cause == nil || errors.Is(cause, io.EOF) || errors.Is(cause, net.ErrClosed) {
			cause = io.EOF
		}
		c.err = cause
	}
	err := c.err
	poller := c.poller
	done := c.done
	c.wakeLocked()
	c.mu.Unlock()

	if poller != nil {
		poller.remove(c)
	}
	c.endRawWrites()
	c.nc.Close()
	if done != nil {
		close(done) // else Done makes it closed
	}
	if c.onFinish != nil {
		c.onFinish()
	}
	c.eng.unregister(c)
	if c.h != nil {
		c.eng.goTracked(func() {
			c.cbmu.Lock()
			defer c.cbmu.Unlock()
			defer c.recoverHandler("OnClose", false)
			c.h.OnClose(c, err)
		})
	}
}

// recoverHandler turns a panic in application code into a logged error
// and a close with code 1011.
func (c *Conn) recoverHandler(where string, closeConn bool) {
	if p := recover(); p != nil {
		c.panicked(where, p, closeConn)
	}
}

// panicked logs a recovered panic and closes the connection with 1011.
func (c *Conn) panicked(where string, p any, closeConn bool) {
	c.eng.stats.panics.Add(1)
	c.o.logger.Error("ws: panic in handler", "where", where, "panic", fmt.Sprint(p), "remote", c.nc.RemoteAddr().String(), "stack", string(debug.Stack()))
	if closeConn {
		c.Close(CloseInternalError, "internal error")
	}
}

// process feeds bytes read from the socket to the frame reader.
func (c *Conn) process(p []byte) {
	c.lastRead.Store(time.Now().UnixNano())
	c.eng.stats.bytesIn.Add(uint64(len(p)))
	fr := c.fr
	if fr == nil {
		fr = c.eng.readers.Get().(*frameReader)
		fr.maxMessage, fr.compression = c.o.maxMessage, c.inflate
	}
	fr.feed(p, c)
	if fr.idle() && !fr.broken {
		fr.reset()
		c.eng.readers.Put(fr)
		fr = nil
	}
	c.fr = fr
}

// message implements frameSink.
func (c *Conn) message(op byte, compressed bool, data []byte) {
	if compressed {
		var err *protocolError
		data, err = c.eng.decompress(data, c.o.maxMessage)
		if err != nil {
			c.violation(err.code, err.reason)
			return
		}
		if op == opText && !utf8.Valid(data) {
			c.violation(CloseInvalidPayload, "text message is not UTF-8")
			return
		}
	}
	typ := Text
	if op == opBinary {
		typ = Binary
	}
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.eng.stats.messagesIn.Add(1)
	if c.h == nil {
		q := c.inboxLocked()
		q.queue = append(q.queue, queued{typ, data})
		q.bytes += int64(len(data))
		c.wakeLocked()
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.cbmu.Lock()
	defer c.cbmu.Unlock()
	defer c.recoverHandler("OnMessage", true)
	c.h.OnMessage(c, typ, data)
}

// control implements frameSink.
func (c *Conn) control(op byte, payload []byte) {
	switch op {
	case opPing:
		c.mu.Lock()
		open := c.state == stateOpen
		c.mu.Unlock()
		if open {
			if err := c.writeControl(opPong, payload); err != nil && !errors.Is(err, ErrClosed) {
				c.finish(err) // ErrClosed: a Close got in first; its handshake goes on
			}
		}
	case opPong:
		// lastRead was updated by process.
	case opClose:
		c.mu.Lock()
		if c.state == stateOpen {
			c.state = stateCloseSent
			c.err = io.EOF
			c.mu.Unlock()
			// Echo the code, then close the socket: the server closes the
			// TCP connection first (RFC 6455 §7.1.1).
			echo := payload[:min(len(payload), 2)]
			c.writeControl(opClose, echo)
		} else {
			c.mu.Unlock()
		}
		c.finish(io.EOF)
	}
}

// violation implements frameSink: the peer broke the protocol or a limit.
// The connection is failed (RFC 6455 §7.1.7): the close frame goes out,
// then this side's half of the TCP connection is shut down so the peer
// sees the end at once instead of after the close timeout; whatever the
// peer still sends is read and dropped until it closes its half (a
// reset while its data is unread could destroy the close frame).
func (c *Conn) violation(code int, reason string) {
	c.eng.stats.protocolErrors.Add(1)
	c.o.logger.Debug("ws: closing connection", "code", code, "reason", reason, "remote", c.nc.RemoteAddr().String())
	if c.Close(code, reason) == nil {
		c.closeWrite()
	}
}

// queueFullLocked reports whether a handler-style connection has queued
// as much as it may: reading stops until the handler takes messages.
// c.mu must be held.
func (c *Conn) queueFullLocked() bool {
	_, n := c.queuedLocked()
	return c.h == nil && c.state == stateOpen && n >= c.o.maxQueued
}

func (c *Conn) queueFull() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queueFullLocked()
}

// waitQueueSpace blocks a goroutine reader while the handler has not taken
// enough queued messages. It returns false once the connection is closed.
func (c *Conn) waitQueueSpace() bool {
	for {
		c.mu.Lock()
		if c.state == stateClosed {
			c.mu.Unlock()
			return false
		}
		if !c.queueFullLocked() {
			c.mu.Unlock()
			return true
		}
		q := c.inboxLocked()
		if q.notify == nil {
			q.notify = make(chan struct{})
		}
		ch := q.notify
		c.mu.Unlock()
		<-ch
	}
}

// readLoop is the reader of a connection the engine does not poll. Where
// the socket allows it, it waits for data without holding a buffer and
// borrows one from the engine's pool to read; otherwise (TLS) it keeps a 4
// KiB buffer.
func (c *Conn) readLoop() {
	var rc syscall.RawConn
	if sc, ok := pollable(c.nc); ok {
		rc, _ = sc.SyscallConn()
	}
	var own []byte
	if rc == nil {
		own = make([]byte, 4096)
	}
	for c.waitQueueSpace() {
		if rc == nil {
			n, err := c.nc.Read(own)
			if !c.consume(own[:n], err) {
				return
			}
			continue
		}
		if err := waitReadable(rc); err != nil {
			c.finish(err)
			return
		}
		bp := c.eng.bufs.Get().(*[]byte)
		n, err := c.nc.Read(*bp)
		ok := c.consume((*bp)[:n], err)
		c.eng.bufs.Put(bp)
		if !ok {
			return
		}
	}
}

// consume processes what one read returned; false once the connection
// ended.
func (c *Conn) consume(p []byte, err error) bool {
	if len(p) > 0 {
		c.process(p)
	}
	if err != nil {
		c.finish(err)
		return false
	}
	return true
}

// tick runs the timers of one connection; the engine calls it about once
// a sweep interval.
func (c *Conn) tick(now time.Time) {
	c.mu.Lock()
	state, deadline := c.state, c.closeDeadline
	c.mu.Unlock()
	switch state {
	case stateClosed:
		return
	case stateCloseSent:
		// A zero deadline: the close frame is still being written (the
		// write timeout bounds that).
		if deadline != 0 && now.UnixNano() > deadline {
			c.finish(nil)
		}
		return
	}
	last := time.Unix(0, c.lastRead.Load())
	if c.o.readTimeout > 0 && now.Sub(last) > c.o.readTimeout {
		c.o.logger.Debug("ws: read timeout", "remote", c.nc.RemoteAddr().String())
		c.mu.Lock()
		if c.state == stateOpen {
			c.err = &CloseError{Code: CloseGoingAway, Reason: "read timeout", Local: true}
		}
		c.mu.Unlock()
		c.finish(nil)
		return
	}
	if c.o.pingInterval > 0 && now.Sub(time.Unix(0, c.lastPing.Load())) >= c.o.pingInterval {
		c.lastPing.Store(now.UnixNano())
		c.eng.goTracked(func() {
			if err := c.writeControl(opPing, nil); err != nil && !errors.Is(err, ErrClosed) {
				c.finish(err)
			}
		})
	}
}
