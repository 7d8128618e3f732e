package hub

import (
	"time"
)

// ConnInfo describes a session's connection to operators.
type ConnInfo struct {
	// Transport ("websocket", "long-poll"), Protocol ("live",
	// "channelstream") and RemoteAddr (host:port) come from the
	// protocol's Principal; empty when it did not say.
	Transport, Protocol, RemoteAddr string
	// Since is when the session connected.
	Since time.Time
}

// Conn returns what the protocol said of the session's connection, and
// when it connected.
func (s *Session) Conn() ConnInfo {
	return ConnInfo{Transport: s.label.transport, Protocol: s.label.protocol, RemoteAddr: s.remoteAddr, Since: time.Unix(0, s.since)}
}

// Sessions returns the client sessions connected to this process, in no
// particular order (observers are not among them).
func (h *Hub) Sessions() []*Session { return h.snapshotSessions() }

// Session returns the session with a client id, or nil.
func (h *Hub) Session(id string) *Session {
	h.smu.Lock()
	defer h.smu.Unlock()
	for s := range h.sessions {
		if s.id == id {
			return s
		}
	}
	return nil
}

// Stats are a hub's figures on this process.
type Stats struct {
	// Sessions are the connected client sessions.
	Sessions int
	// Users are the distinct authenticated users among them.
	Users int
	// Channels are the channels with at least one client subscriber.
	Channels int
	// Publications counts the publications broadcast on this process
	// since it started (events of resources included).
	Publications uint64
	// Deliveries counts the sessions those publications were queued to.
	Deliveries uint64
	// GroupWriters are the writer workers that write through a
	// WriteGroup (io_uring); GroupWrites counts the batches they wrote
	// that way, GroupFlushes the flushes (system calls, mostly).
	GroupWriters              int
	GroupWrites, GroupFlushes uint64
}

// Stats returns the hub's figures. It reads counters (each shard's under
// its lock, briefly): cheap enough to call every second whatever the
// number of channels.
func (h *Hub) Stats() Stats {
	h.smu.Lock()
	st := Stats{Sessions: len(h.sessions), Users: len(h.users)}
	h.smu.Unlock()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		st.Channels += sh.clientChannels
		sh.mu.RUnlock()
	}
	st.Publications = h.publications.Load()
	st.Deliveries = h.deliveries.Load()
	st.GroupWriters = int(h.pool.groups.Load())
	st.GroupWrites, st.GroupFlushes = h.pool.groupWrites.Load(), h.pool.groupFlushes.Load()
	return st
}

// Observe creates an observer session: it receives the publications of
// the channels it is subscribed to (with SubscribeSilent), and their join
// and leave events where the namespace has presence, through w and enc
// like any session, bounded by the same outbox limit. An observer is not
// a client: it is not in Sessions or Stats, it never appears in presence
// nor causes join or leave events, and it does not count as a channel's
// subscriber in Channels. The dashboard's live views are observers. Call
// Disconnect when done with it.
func (h *Hub) Observe(id string, w Writer, enc Encoder) *Session {
	return &Session{h: h, id: id, w: w, enc: enc, observer: true,
		label: &connLabel{protocol: "observer"}, since: h.cfg.Now().UnixNano()}
}
