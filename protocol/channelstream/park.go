package channelstream

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchyardhq/switchyard/ws"
)

// Parked long-polls.
//
// A /listen served by net/http holds a goroutine, its grown stack and
// net/http's read and write buffers for the whole wait (~53 KB each,
// docs/BENCHMARKS.md). Once a /listen request is read and validated,
// park hijacks its connection and keeps the poll as a small record
// instead: the socket is watched for readability by the ws engine's
// epoll loop (a client that hangs up, or sends bytes where none may
// come, is noticed), the heartbeat or batching deadline is a runtime
// timer (no goroutine until it fires), and the hub's delivery path wakes
// the record through the connection's transport. The answer is written
// whole, with one write, with the status line and headers net/http would
// have written; the keep-alive connection then goes back to the
// http.Server through Handback, so the client's next poll on the same
// TCP connection is an ordinary request again.
//
// Every record ends exactly once (parked.ended, under the transport's
// lock): answered (by its timer, a message batch, a replacement or the
// server closing) or abandoned (its client left; its messages are kept
// as the connection's catch-up, as net/http's path does).

// parked is one parked /listen.
type parked struct {
	srv  *Server
	c    *conn
	p    *poll
	nc   net.Conn
	head []byte // the header lines (shared between polls with the same headers)
	cb   string // JSONP callback ("" for JSON)
	rest []byte // bytes read past the request before the hijack (pipelining)

	// Guarded by c.tport.mu.
	timer    *time.Timer
	watch    *ws.Watch   // the epoll watch, or nil with a reading goroutine
	fallback chan []byte // that goroutine's result (what it read)
	batching bool
	ended    bool
}

// Handback returns the listener through which answered long-polls hand
// their keep-alive connections back to HTTP. Serve it with the
// http.Server that serves this API (srv.Serve(s.Handback())); the server
// closes it on Shutdown. /listen parks its polls only while something
// accepts from it (Config.PollGoroutines turns parking off).
func (s *Server) Handback() net.Listener { return s.handback }

// Parked returns the long-polls parked now outside net/http (their
// connections are hijacked, so an HTTP connection count does not see
// them).
func (s *Server) Parked() int { return int(s.parked.Load()) }

// canPark reports whether a /listen may be parked: parking on and
// served, HTTP/1.1 keep-alive without a body, and not TLS (a tls.Conn
// cannot be watched by epoll: its bytes must pass through crypto/tls).
func (s *Server) canPark(r *http.Request) bool {
	return !s.cfg.PollGoroutines && s.handback.serving.Load() && r.ProtoMajor == 1 && r.ProtoMinor == 1 &&
		r.TLS == nil && !r.Close && (r.Body == nil || r.Body == http.NoBody) && r.Header.Get("Upgrade") == ""
}

// park parks the poll of c. It returns false when the connection could
// not be hijacked; nothing was written then, and the caller serves the
// poll the net/http way.
func (s *Server) park(w http.ResponseWriter, c *conn, cb string) bool {
	pollHeaders(w.Header(), cb)
	head := s.internHead(w.Header())
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	k := &parked{srv: s, c: c, nc: nc, head: head, cb: cb}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		k.rest = bytes.Clone(b)
	}
	if pc, ok := nc.(*prefixConn); ok && len(pc.rest) == 0 {
		k.nc = pc.Conn // handed back earlier, and drained since: watch the socket itself
	}
	k.p = &poll{park: k}
	s.polls.Add(1)
	s.parked.Add(1)

	t := &c.tport
	t.mu.Lock()
	defer t.mu.Unlock()
	// The watch is set up under the lock: its callback waits for it, so it
	// always finds the record complete.
	k.watch, err = s.cfg.Engine.Watch(k.nc, k.readable)
	if errors.Is(err, ws.ErrNoPoller) {
		k.fallback = make(chan []byte, 1)
		go k.read()
	}
	k.timer = time.AfterFunc(s.cfg.Heartbeat, k.fire)
	if err != nil && k.fallback == nil {
		k.p.done = true // the engine is closing: answer at once
	}
	if old := t.poll; old != nil {
		old.done = true // the older request answers at once with what it has
		old.signal()
	}
	if !t.gone {
		t.poll = k.p
		k.p.add(t.takePending())
	} else {
		k.p.done = true
	}
	k.signal()
	return true
}

// signal reacts to a change of the poll (t.mu held): a replaced or ended
// poll, or one over MaxQueued, answers now; the first message starts the
// batching gap.
func (k *parked) signal() {
	if k.ended || k.timer == nil {
		return
	}
	p := k.p
	switch {
	case p.done || p.bytes >= k.srv.maxQueued:
		k.timer.Reset(0)
	case len(p.frames) > 0 && !k.batching:
		// The first message: gather what follows for the gap, then answer.
		k.batching = true
		k.timer.Reset(gap)
	}
}

// endLocked detaches the record from its connection (t.mu held); false
// when it had already ended.
func (k *parked) endLocked() bool {
	if k.ended {
		return false
	}
	k.ended = true
	k.timer.Stop()
	if t := &k.c.tport; t.poll == k.p {
		t.poll = nil
	}
	return true
}

// fire is the timer: the heartbeat passed, the batching gap ended, or
// signal asked for the answer now.
func (k *parked) fire() {
	t := &k.c.tport
	t.mu.Lock()
	if !k.endLocked() {
		t.mu.Unlock()
		return
	}
	frames := k.p.frames
	k.p.frames = nil
	t.mu.Unlock()
	k.answer(frames)
}

// readable is the epoll watch: the client hung up or sent something.
func (k *parked) readable() {
	t := &k.c.tport
	t.mu.Lock()
	ended := k.ended
	t.mu.Unlock()
	if ended {
		return
	}
	switch peek(k.nc) {
	case unix.EAGAIN:
		k.watch.Rearm() // a stale event
	default:
		k.abandon()
	}
}

// read is the reading goroutine of a connection the engine cannot
// watch: one byte tells that the client hung up or sent something; an
// answer ends it with a read deadline and takes what it read.
func (k *parked) read() {
	var b [1]byte
	n, _ := k.nc.Read(b[:])
	k.fallback <- bytes.Clone(b[:n])
	k.abandon()
}

// abandon ends a poll whose client left (or broke the protocol by
// sending bytes while parked): its messages are kept as the
// connection's catch-up, and the socket is closed.
func (k *parked) abandon() {
	t := &k.c.tport
	t.mu.Lock()
	if !k.endLocked() {
		t.mu.Unlock()
		return
	}
	if !t.gone {
		t.requeueLocked(k.p)
	}
	k.p.frames = nil
	t.mu.Unlock()
	k.unwatch()
	k.nc.Close()
	k.release()
}

// unwatch stops watching the socket before it is written, handed back
// or closed; it returns what a reading goroutine read meanwhile.
func (k *parked) unwatch() []byte {
	if k.watch != nil {
		k.watch.Stop()
		return nil
	}
	if k.fallback == nil {
		return nil
	}
	k.nc.SetReadDeadline(time.Unix(1, 0))
	got := <-k.fallback
	k.nc.SetReadDeadline(time.Time{})
	return got
}

// release updates the connection's activity and the counts.
func (k *parked) release() {
	s := k.srv
	s.mu.Lock()
	k.c.lastActive = s.now()
	k.c.user.lastActive = k.c.lastActive
	s.mu.Unlock()
	s.polls.Add(-1)
	s.parked.Add(-1)
}

// answer writes the poll's answer with one write and hands the
// connection back to HTTP (or closes it when the server is stopping).
func (k *parked) answer(frames [][]byte) {
	s := k.srv
	if got := k.unwatch(); len(got) > 0 {
		k.rest = append(k.rest, got...)
	}
	closing := s.stopping()
	body := pollBody(frames, k.cb)
	b := make([]byte, 0, len(statusOK)+len(k.head)+len(body)+96)
	b = append(b, statusOK...)
	b = append(b, k.head...)
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	timeout := s.cfg.WriteTimeout
	if closing {
		timeout = min(timeout, time.Second)
	}
	k.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := k.nc.Write(b)
	k.nc.SetWriteDeadline(time.Time{})
	k.release()
	if err != nil || closing {
		k.nc.Close()
		return
	}
	var hc net.Conn = k.nc
	if len(k.rest) > 0 {
		hc = &prefixConn{Conn: k.nc, rest: k.rest}
	}
	if !s.handback.give(hc) {
		k.nc.Close()
	}
}

const statusOK = "HTTP/1.1 200 OK\r\n"

// peek looks at a watched socket without reading it: nil when it holds
// bytes, unix.EAGAIN when it holds nothing yet (a stale event), another
// error at EOF (net.ErrClosed) or when it failed.
func peek(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	if err := rc.Control(func(fd uintptr) {
		var b [1]byte
		var n int
		n, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if perr == nil && n == 0 {
			perr = net.ErrClosed
		}
	}); err != nil {
		return err
	}
	return perr
}

// requeueLocked keeps a poll's messages as catch-up frames, before the
// ones already kept (t.mu held).
func (t *transport) requeueLocked(p *poll) {
	if len(p.frames) == 0 {
		return
	}
	back := make([][]byte, 0, len(p.frames)+len(t.pending))
	for _, f := range p.frames {
		back = append(back, asCatchup(f))
	}
	t.pending = append(back, t.pending...)
	t.pbytes += p.bytes
}

// pollHeaders sets the headers of a poll's answer.
func pollHeaders(h http.Header, cb string) {
	if cb != "" {
		h.Set("Content-Type", "application/javascript")
		h.Set("X-Content-Type-Options", "nosniff")
	} else {
		h.Set("Content-Type", "application/json")
	}
}

// pollBody is a poll's answer: its messages as one JSON array, in the
// JSONP callback when there is one.
func pollBody(frames [][]byte, cb string) []byte {
	n := 2 + len(cb) + 2
	for _, f := range frames {
		n += len(f)
	}
	b := make([]byte, 0, n)
	if cb != "" {
		b = append(b, cb...)
		b = append(b, '(')
	}
	b = append(b, '[')
	i := 0
	for _, f := range frames {
		if len(f) < 2 || isHeartbeat(f) {
			continue
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f[1:len(f)-1]...)
		i++
	}
	b = append(b, ']')
	if cb != "" {
		b = append(b, ')')
	}
	return b
}

// maxHeads bounds the distinct header blocks shared between parked
// polls (they differ only by CORS and JSONP, so a handful exist).
const maxHeads = 64

// internHead renders header lines as net/http writes them (sorted) and
// returns a shared copy, so that 10,000 parked polls hold one.
func (s *Server) internHead(h http.Header) []byte {
	var buf bytes.Buffer
	h.Write(&buf)
	if v, ok := s.heads.Load(buf.String()); ok {
		return v.([]byte)
	}
	b := buf.Bytes()
	if s.nheads.Add(1) <= maxHeads {
		if v, loaded := s.heads.LoadOrStore(string(b), b); loaded {
			return v.([]byte)
		}
	}
	return b
}

// stopping reports whether Close has begun.
func (s *Server) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// waitParked waits until every parked poll has been answered or closed
// (each answer is bounded by its write deadline), or d passes.
func (s *Server) waitParked(d time.Duration) {
	deadline := time.Now().Add(d)
	for s.parked.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// prefixConn is a connection handed back with bytes that were read past
// the answered request (a pipelined request): they are read first.
type prefixConn struct {
	net.Conn
	rest []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// handback is the net.Listener of Handback: Accept yields the
// connections of answered polls. Answers come in bursts (a publication
// answers every poll of its channel within the same gap), so give never
// waits for Accept: connections queue, and one wake-up of the serving
// goroutine takes them all (an unbuffered hand-over cost a scheduling
// round of that one goroutine per connection: seconds at 1,000 polls on
// a loaded machine).
type handback struct {
	wake    chan struct{} // one slot: the queue got a connection
	serving atomic.Bool

	mu     sync.Mutex
	queue  []net.Conn
	closed bool
}

func newHandback() *handback { return &handback{wake: make(chan struct{}, 1)} }

func (l *handback) Accept() (net.Conn, error) {
	l.serving.Store(true)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			if len(l.queue) == 0 {
				l.queue = nil
			}
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		<-l.wake
	}
}

// Close refuses new connections and closes the queued ones.
func (l *handback) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.serving.Store(false)
	q := l.queue
	l.queue = nil
	close(l.wake) // under mu: give sends under it too
	l.mu.Unlock()
	for _, c := range q {
		c.Close()
	}
	return nil
}

func (l *handback) Addr() net.Addr { return handbackAddr{} }

// give hands a connection to the HTTP server; false once it is closed.
func (l *handback) give(c net.Conn) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, c)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	l.mu.Unlock()
	return true
}

type handbackAddr struct{}

func (handbackAddr) Network() string { return "channelstream-handback" }
func (handbackAddr) String() string  { return "channelstream-handback" }

var _ net.Listener = (*handback)(nil)
