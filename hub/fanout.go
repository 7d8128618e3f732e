package hub

import (
	"github.com/switchyardhq/switchyard"
)

type eventKind uint8

const (
	eventPublication eventKind = iota
	eventJoin
	eventLeave
)

// event is what the broker delivered for a channel.
type event struct {
	kind    eventKind
	channel string
	pub     switchyard.Publication
	sp      switchyard.StreamPosition
	info    switchyard.ClientInfo
}

// Encoder turns hub events into the frames of one protocol. One Encoder
// value serves every session of its protocol, and it must be comparable
// (a pointer or a struct of comparable fields): the hub uses it as the key
// of its once-per-protocol encoding.
type Encoder interface {
	EncodePublication(channel string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte
	EncodeJoin(channel string, info switchyard.ClientInfo) []byte
	EncodeLeave(channel string, info switchyard.ClientInfo) []byte
	// EncodeSubscribed and EncodeUnsubscribed tell a client that the
	// server subscribed or unsubscribed it.
	EncodeSubscribed(res SubscribeResult) []byte
	EncodeUnsubscribed(channel string) []byte
}

func (e *event) encode(enc Encoder) []byte {
	switch e.kind {
	case eventJoin:
		return enc.EncodeJoin(e.channel, e.info)
	case eventLeave:
		return enc.EncodeLeave(e.channel, e.info)
	}
	return enc.EncodePublication(e.channel, e.pub, e.sp)
}

// encodeCache holds the frames of one event, one per protocol met, and
// what session encoders prepared of it. It belongs to one broadcast (one
// goroutine).
type encodeCache struct {
	n      int
	encs   [4]Encoder
	frames [4][]byte
	more   map[Encoder][]byte
	// The session encoder's prepared value (one per broadcast in
	// practice: one protocol makes per-session frames).
	penc    SessionEncoder
	pval    any
	pok     bool
	pmore   map[SessionEncoder]prepared
	scratch [][]byte // the frames of the session being delivered to
	// ready holds the sessions the broadcast started writing, for the
	// writer pool (flushed at the end of the broadcast).
	ready readyBatch
	// shared, in a chunk of a split broadcast, holds the frames every
	// chunk uses (see split.go): a protocol's frame is encoded once.
	shared *sharedFrames
}

type prepared struct {
	val any
	ok  bool
}

// prepare returns what a session encoder prepared of the event, preparing
// it on first use.
func (c *encodeCache) prepare(ev *event, se SessionEncoder) (any, bool) {
	switch {
	case c.penc == se:
		return c.pval, c.pok
	case c.penc == nil:
		c.penc = se
		c.pval, c.pok = se.Prepare(ev.channel, ev.pub)
		return c.pval, c.pok
	}
	if p, ok := c.pmore[se]; ok {
		return p.val, p.ok
	}
	if c.pmore == nil {
		c.pmore = map[SessionEncoder]prepared{}
	}
	v, ok := se.Prepare(ev.channel, ev.pub)
	c.pmore[se] = prepared{v, ok}
	return v, ok
}

func (c *encodeCache) get(ev *event, enc Encoder) []byte {
	for i := range c.n {
		if c.encs[i] == enc {
			return c.frames[i]
		}
	}
	if f, ok := c.more[enc]; ok {
		return f
	}
	var f []byte
	if c.shared != nil {
		f = c.shared.get(ev, enc)
	} else {
		f = ev.encode(enc)
	}
	if c.n < len(c.encs) {
		c.encs[c.n], c.frames[c.n] = enc, f
		c.n++
	} else {
		if c.more == nil {
			c.more = map[Encoder][]byte{}
		}
		c.more[enc] = f
	}
	return f
}

// wants reports whether the session receives the event: join and leave
// go to subscriptions with presence; a publication with an audience
// (limited) to its users.
func (e *event) wants(s *Session, sub *subscription, limited bool) bool {
	if e.kind != eventPublication && !sub.opts.Presence {
		return false
	}
	return !limited || e.pub.Audience.Includes(s.user)
}

// broadcast queues an event to every local subscriber of its channel; a
// channel with many is split across the writer pool (split.go).
func (h *Hub) broadcast(ch string, ev event) {
	sh := h.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.channels[ch]
	if c == nil {
		return
	}
	var n int
	if h.splits(ch, c) {
		n = h.broadcastSplit(c, &ev)
	} else {
		var cache encodeCache
		limited := ev.kind == eventPublication && !ev.pub.Audience.IsZero()
		for s, sub := range c.subs {
			if ev.wants(s, sub, limited) {
				s.deliver(sub, &ev, &cache)
				n++
			}
		}
		cache.ready.flush()
	}
	if ev.kind == eventPublication {
		h.deliveries.Add(uint64(n))
	}
}
