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
	f := ev.encode(enc)
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

// broadcast queues an event to every local subscriber of its channel.
func (h *Hub) broadcast(ch string, ev event) {
	sh := h.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.channels[ch]
	if c == nil {
		return
	}
	var cache encodeCache
	limited := ev.kind == eventPublication && !ev.pub.Audience.IsZero()
	n := 0
	for s, sub := range c.subs {
		if ev.kind != eventPublication && !sub.opts.Presence {
			continue
		}
		if limited && !ev.pub.Audience.Includes(s.user) {
			continue
		}
		s.deliver(sub, &ev, &cache)
		n++
	}
	cache.ready.flush()
	if ev.kind == eventPublication {
		h.deliveries.Add(uint64(n))
	}
}
