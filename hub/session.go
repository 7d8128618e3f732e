package hub

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
)

// Writer is a session's transport.
type Writer interface {
	// WriteFrames writes a batch of frames, in order, in as few writes as
	// the transport allows. It may block; an error ends the session.
	WriteFrames(ctx context.Context, frames [][]byte) error
	// Close closes the transport with a close code (the transport then
	// tells the protocol, which calls Hub.Disconnect).
	Close(code int, reason string) error
}

// Principal is who a session is.
type Principal struct {
	User string
	Info json.RawMessage
	// Expires is when the session's token expires (zero: never).
	Expires time.Time
	// Transport, Protocol and RemoteAddr describe the connection to
	// operators (the dashboard's connection list): "websocket",
	// "live", the client's address. Empty when unknown.
	Transport, Protocol, RemoteAddr string
}

// Session is one client connection's presence in the hub: its
// subscriptions and its outbox.
//
// An idle connection is mostly such structs, so the fields are packed
// (small ones after the mutex that guards them), the transport and
// protocol are shared among sessions (connLabel), and state that only a
// slow client's write needs is passed on the goroutine that needs it;
// TestSessionSize keeps it within 256 bytes.
type Session struct {
	h    *Hub
	id   string
	user string
	info json.RawMessage
	w    Writer
	enc  Encoder
	// label (Principal's Transport and Protocol), remoteAddr and since
	// (unix ns) describe the connection (the time of Connect); immutable.
	// Conn returns them as a ConnInfo.
	label      *connLabel
	remoteAddr string
	since      int64

	value atomic.Pointer[any]

	mu sync.Mutex
	// observer: made by Observe, not a client (see Observe); immutable
	// (it sits after mu only to fill what would be padding: an idle
	// connection is mostly such structs). pooled: w is a TryWriter and
	// the hub's writer pool writes the session; immutable.
	observer bool
	pooled   bool
	writing  bool
	closed   bool
	// exemptIn numbers the batch that takes the exempt frame (see
	// enqueueLocked); taken numbers the batches taken to write. Both wrap
	// around, and are compared as such (batchDone).
	exemptIn uint32
	taken    uint32
	expires  int64                    // unix ns; 0: never
	subs     map[string]*subscription // nil until the first subscription
	counted  int                      // subscriptions of subs that count against the limits
	queue    [][]byte
	spare    [][]byte // the previous batch's slice, reused for the next queue
	queued   int64    // bytes queued or being written
	// exempt is the size of the one frame the outbox holds beyond
	// MaxQueuedBytes (see enqueueLocked), 0 when none; it leaves with the
	// batch numbered exemptIn.
	exempt int64
	// write is s.writeLoop as a func value, made by the first goWrite: a
	// go statement on it starts the writer without allocating (one on a
	// method call allocates the closure that carries the receiver).
	write func()
}

// connLabel is a session's transport and protocol. Sessions share one
// per pair (Hub.label), since a process sees only a few.
type connLabel struct {
	transport, protocol string
}

// maxLabels bounds the pairs a hub shares; sessions past it (a protocol
// that makes up its labels) get their own.
const maxLabels = 64

// label returns the shared connLabel of a pair. h.smu must be held.
func (h *Hub) label(transport, protocol string) *connLabel {
	k := connLabel{transport, protocol}
	if l := h.labels[k]; l != nil {
		return l
	}
	l := &k
	if len(h.labels) < maxLabels {
		h.labels[k] = l
	}
	return l
}

// batchDone reports whether the batch numbered n was taken by the time
// the batch numbered taken was (the numbers wrap around).
func batchDone(n, taken uint32) bool { return int32(taken-n) >= 0 }

// subscription is a session's membership of a channel.
type subscription struct {
	opts config.ChannelOptions
	// floor is the ordering floor a new channel starts with
	// (SubscribeSilentFrom); 0: the first publication's Seq.
	floor int64
	// counted: made by Subscribe or SubscribeServer, so it counts against
	// the subscription limits (SubscribeSilent's are counted by the
	// protocol).
	counted bool
	// recovering holds live events back while the subscribe reply (and
	// the history it recovers) is being prepared. It is written under the
	// session's mu, and only from true to false, so a broadcast that reads
	// it false may encode without the lock.
	recovering atomic.Bool
	pending    []event
	// upTo and epoch are the position the subscribe reply covered: a
	// publication at or below it that arrives late (its broadcast raced
	// the reply) is a duplicate.
	upTo  uint64
	epoch string
}

// covered reports whether the subscribe reply already covered ev.
func (sub *subscription) covered(ev *event) bool {
	return ev.kind == eventPublication && ev.pub.Offset != 0 && ev.pub.Offset <= sub.upTo && ev.sp.Epoch == sub.epoch
}

// Connect registers a session with the hub. The protocol calls
// Disconnect when the transport closes.
func (h *Hub) Connect(id string, p Principal, w Writer, enc Encoder) *Session {
	s := &Session{h: h, id: id, user: p.User, info: p.Info, w: w, enc: enc, expires: unixNano(p.Expires),
		remoteAddr: p.RemoteAddr, since: h.cfg.Now().UnixNano()}
	if _, ok := w.(TryWriter); ok && h.cfg.Writers > 0 {
		s.pooled = true
	}
	h.smu.Lock()
	s.label = h.label(p.Transport, p.Protocol)
	h.sessions[s] = struct{}{}
	if s.user != "" {
		if h.users[s.user] == nil {
			h.users[s.user] = map[*Session]struct{}{}
		}
		h.users[s.user][s] = struct{}{}
	}
	h.smu.Unlock()
	return s
}

// unixNano is t in unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ID returns the session's client id.
func (s *Session) ID() string { return s.id }

// User returns the session's user ("" when anonymous).
func (s *Session) User() string { return s.user }

// ClientInfo returns the session as presence and publications show it.
func (s *Session) ClientInfo() switchyard.ClientInfo {
	return switchyard.ClientInfo{ClientID: s.id, User: s.user, Info: s.info}
}

// SetExpires replaces the token expiry (after a refresh).
func (s *Session) SetExpires(t time.Time) {
	s.mu.Lock()
	s.expires = unixNano(t)
	s.mu.Unlock()
}

func (s *Session) expired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.expires != 0 && now.UnixNano() > s.expires
}

// Subscribed returns the channels the session is subscribed to.
func (s *Session) Subscribed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.subs))
	for ch := range s.subs {
		out = append(out, ch)
	}
	return out
}

// Send queues a frame (a reply) behind what is already queued.
func (s *Session) Send(frame []byte) {
	s.mu.Lock()
	s.enqueueLocked(frame, nil)
	s.mu.Unlock()
}

// Close closes the session's transport with a close code. It does not
// wait: the close frame may queue behind a slow client's write.
func (s *Session) Close(code int, reason string) {
	s.h.writers.Go(func() { s.w.Close(code, reason) })
}

// deliver queues a broadcast event, or holds it while the subscription
// recovers. The frame comes from the broadcast's cache: encoding happens
// once per protocol, outside the session's lock.
//
// A recovering subscription's events are held unencoded (a session
// encoder's frames may change the session's state, so an event is encoded
// exactly once, when it is sent).
func (s *Session) deliver(sub *subscription, ev *event, cache *encodeCache) {
	if sub.recovering.Load() && s.pend(sub, ev) {
		return
	}
	frames := s.frames(ev, cache)
	s.mu.Lock()
	switch {
	case sub.covered(ev):
	default:
		for _, f := range frames {
			s.enqueueLocked(f, &cache.ready)
		}
	}
	s.mu.Unlock()
}

// pend holds an event of a recovering subscription; false when the
// subscription stopped recovering meanwhile.
func (s *Session) pend(sub *subscription, ev *event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sub.recovering.Load() {
		return false
	}
	sub.pending = append(sub.pending, *ev)
	return true
}

// frames encodes an event for this session: the shared frame of its
// protocol, or the session's own for the server's "$" channels when the
// encoder makes those. The slice returned is the cache's scratch space,
// valid until the next call with the same cache.
func (s *Session) frames(ev *event, cache *encodeCache) [][]byte {
	if se, ok := s.enc.(SessionEncoder); ok && ev.kind == eventPublication && strings.HasPrefix(ev.channel, "$") {
		if prepared, ok := cache.prepare(ev, se); ok {
			cache.scratch = se.EncodeForSession(s, ev.channel, prepared, cache.scratch[:0])
			return cache.scratch
		}
	}
	cache.scratch = append(cache.scratch[:0], cache.get(ev, s.enc))
	return cache.scratch
}

// SessionEncoder is implemented by an Encoder whose frames for the
// server's "$" channels depend on the session (DCRF events carry the
// request_id of each of the session's subscriptions, and the resource
// service decides per session what each may receive).
//
// Prepare runs once per broadcast (not per session) and decodes the
// publication into whatever EncodeForSession needs; false means the
// publication is not one of the encoder's, and the shared frame is used.
// EncodeForSession appends the session's frames to frames and returns it
// (none: the session receives nothing). Calls with one prepared value come
// from one goroutine at a time, so a prepared value may cache what its
// sessions share without locking.
type SessionEncoder interface {
	Prepare(channel string, pub switchyard.Publication) (prepared any, ok bool)
	EncodeForSession(s *Session, channel string, prepared any, frames [][]byte) [][]byte
}

// SetValue attaches the protocol's state to the session.
func (s *Session) SetValue(v any) { s.value.Store(&v) }

// Value returns what SetValue attached, or nil.
func (s *Session) Value() any {
	if p := s.value.Load(); p != nil {
		return *p
	}
	return nil
}

// enqueueLocked appends a frame to the outbox, closing the session with
// 4008 when the client has fallen too far behind: when the outbox would
// hold more than MaxQueuedBytes. One frame at a time may pass that bound,
// if it is no larger than MaxFrameBytes: so an empty outbox always takes
// a frame up to MaxFrameBytes, and a single big reply or event does not
// disconnect a client that reads, while frames that keep queueing behind
// one that is not read still do. s.mu must be held. A session that starts
// writing goes to the writer pool (or its goroutine) at once, or joins
// ready when not nil (a broadcast's sessions go to the pool in batches).
func (s *Session) enqueueLocked(frame []byte, ready *readyBatch) {
	if s.closed || frame == nil {
		return
	}
	n := int64(len(frame))
	if s.queued-s.exempt+n > s.h.cfg.MaxQueuedBytes {
		if s.exempt != 0 || n > s.h.cfg.MaxFrameBytes {
			s.closed = true
			s.queue = nil
			s.h.log.Info("slow consumer disconnected", "conn", s.id, "user", s.user, "queued_bytes", s.queued)
			s.Close(CloseSlowConsumer, "slow consumer")
			return
		}
		s.exempt, s.exemptIn = n, s.taken+1 // the next batch takes it
	}
	s.queue = append(s.queue, frame)
	s.queued += n
	if !s.writing {
		s.writing = true
		s.h.writers.Add(1)
		if ready == nil || !s.pooled {
			s.startWriter()
		} else {
			ready.add(s)
		}
	}
}

// startWriter hands a session that just started writing to the writer
// pool, or to a goroutine of its own.
func (s *Session) startWriter() {
	if !s.pooled || !s.h.pool.push(s) {
		s.goWrite()
	}
}

// goWrite starts s.writeLoop on a goroutine of its own. Its func value is
// made on first use and kept, so a start does not allocate, and a session
// whose outbox only the writer pool writes (an idle one) holds none. Only
// the session's writer of the moment (the holder of s.writing) calls it.
func (s *Session) goWrite() {
	if s.write == nil {
		s.write = s.writeLoop
	}
	go s.write()
}

// writeLoop drains the outbox in batches; it ends when the outbox is
// empty, so an idle session has no goroutine.
func (s *Session) writeLoop() { s.drain() }

// drain writes the outbox, waiting for the client, until it is empty.
func (s *Session) drain() {
	for {
		batch, number, ok := s.take()
		if !ok {
			return
		}
		err := s.w.WriteFrames(context.Background(), batch)
		if !s.written(batch, number, err) {
			return
		}
	}
}

// take takes the outbox as the next batch to write, numbered. When there
// is none (or the session closed) the session stops writing: ok is false.
func (s *Session) take() (batch [][]byte, number uint32, ok bool) {
	s.mu.Lock()
	if len(s.queue) == 0 || s.closed {
		// The empty outbox keeps its slice for the next start.
		s.stopWritingLocked()
		return nil, 0, false
	}
	batch = s.queue
	s.queue, s.spare = s.spare[:0], nil
	s.taken++
	number = s.taken
	s.mu.Unlock()
	return batch, number, true
}

// written accounts for a batch written (or failed with err); it returns
// whether the session still writes: no error and more queued.
func (s *Session) written(batch [][]byte, number uint32, err error) bool {
	var n int64
	for _, f := range batch {
		n += int64(len(f))
	}
	clear(batch) // drop the frames' memory before the slice is reused
	s.mu.Lock()
	s.queued -= n
	if s.exempt != 0 && batchDone(s.exemptIn, number) {
		s.exempt = 0
	}
	if s.spare == nil && cap(batch) <= 1024 {
		s.spare = batch[:0]
	}
	if err != nil {
		s.closed = true
		s.queue = nil
	}
	if err != nil || len(s.queue) == 0 {
		s.stopWritingLocked()
		return false
	}
	s.mu.Unlock()
	return true
}

// stopWritingLocked ends the session's writing and unlocks s.mu.
func (s *Session) stopWritingLocked() {
	s.writing = false
	s.mu.Unlock()
	s.h.writers.Done()
}

// SubscriptionCounter is implemented by a protocol's session value (see
// SetValue) that holds subscriptions the hub does not count itself: one
// per request_id over a SubscribeSilent channel, say. Subscriptions must
// be cheap and safe to call from any goroutine: it runs for each session
// of a user on every subscribe of that user.
type SubscriptionCounter interface {
	Subscriptions() int
}

// Subscriptions returns how many subscriptions the session holds against
// the limits: the hub's counted channels and its protocol's own.
func (s *Session) Subscriptions() int {
	s.mu.Lock()
	n := s.counted
	s.mu.Unlock()
	if c, ok := s.Value().(SubscriptionCounter); ok {
		n += c.Subscriptions()
	}
	return n
}

// Admit checks that the session may add n subscriptions within
// MaxSubscriptions and, for an authenticated user, MaxUserSubscriptions;
// the error is CodeRateLimited and names the config key. Protocols call
// it before adding a subscription they count themselves; Subscribe and
// SubscribeServer call it. A connection's requests run one at a time, so
// its own limit is exact; concurrent subscribes of one user's connections
// may pass the user's limit by as many as run at once.
func (s *Session) Admit(n int) error {
	cfg := &s.h.cfg
	if cfg.MaxSubscriptions > 0 && s.Subscriptions()+n > cfg.MaxSubscriptions {
		return switchyard.Errorf(switchyard.CodeRateLimited, "too many subscriptions on this connection: at most %d (limits.max_subscriptions)", cfg.MaxSubscriptions)
	}
	if cfg.MaxUserSubscriptions > 0 && s.user != "" {
		total := n
		for _, o := range s.h.SessionsOf(s.user) {
			total += o.Subscriptions()
		}
		if total > cfg.MaxUserSubscriptions {
			return switchyard.Errorf(switchyard.CodeRateLimited, "too many subscriptions for user %q: at most %d across their connections (limits.max_subscriptions_per_user)", s.user, cfg.MaxUserSubscriptions)
		}
	}
	return nil
}
