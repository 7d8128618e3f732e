package hub

import (
	"sort"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard"
)

// Publications with a Sequence (resource events: the key is the record,
// Seq and Prev its change-log positions) are delivered per key in Seq
// order, exactly once, whichever process published them and in whatever
// order the broker brought them: a publication whose predecessor (Prev)
// has not been delivered yet is held until it has, or until ReorderWait
// has passed (its publisher may have died between its commit and its
// publish); one at or below the last delivered of its key is dropped.
//
// For a key the channel has not seen yet, a publication is held only when
// its predecessor is at or above the channel's floor: the first Seq the
// channel saw (earlier changes happened before this process listened) or
// the last Seq of a key it forgot (it remembers a bounded number of keys,
// the oldest forgotten first).

// orderKeys bounds the keys one channel remembers.
const orderKeys = 4096

// orderer is the ordering state of one channel. Its mutex is taken before
// the shard's (see LOCKS.md), and held while the publications it releases
// are broadcast, so that they are queued to every session in order.
type orderer struct {
	mu    sync.Mutex
	keys  map[string]*orderKey
	ring  []string // keys by first sight, for forgetting the oldest
	next  int
	floor int64 // see above; 0 until the first publication
	held  int   // publications held, over all keys
}

type orderKey struct {
	known bool  // a publication of the key was delivered
	last  int64 // the Seq last delivered
	held  []heldPub
}

type heldPub struct {
	pub   switchyard.Publication
	sp    switchyard.StreamPosition
	since time.Time
}

// admit returns, in order, the publications to deliver now that pub
// arrived (none when it is held or dropped).
func (o *orderer) admit(pub switchyard.Publication, sp switchyard.StreamPosition, now time.Time) []heldPub {
	sq := pub.Sequence
	if o.keys == nil {
		o.keys = make(map[string]*orderKey)
	}
	if o.floor == 0 {
		o.floor = sq.Seq
	}
	k := o.keys[sq.Key]
	if k == nil {
		k = o.remember(sq.Key)
	}
	switch {
	case k.known && sq.Seq <= k.last:
		return nil // delivered already, or late after a wait ran out
	case k.known && sq.Prev != 0 && sq.Prev > k.last:
		return o.hold(k, pub, sp, now)
	case !k.known && sq.Prev != 0 && sq.Prev >= o.floor:
		// A key not seen yet whose predecessor came after this channel
		// started listening: the predecessor is on its way.
		return o.hold(k, pub, sp, now)
	}
	k.known, k.last = true, sq.Seq
	return o.release(k, []heldPub{{pub: pub, sp: sp}})
}

// remember adds a key, forgetting the oldest one that waits for nothing
// when the channel remembers orderKeys already.
func (o *orderer) remember(key string) *orderKey {
	if len(o.ring) < orderKeys || !o.forget(key) {
		o.ring = append(o.ring, key)
	}
	k := &orderKey{}
	o.keys[key] = k
	return k
}

func (o *orderer) forget(key string) bool {
	for range len(o.ring) {
		i := o.next
		o.next = (o.next + 1) % len(o.ring)
		old := o.keys[o.ring[i]]
		if old != nil && len(old.held) > 0 {
			continue
		}
		if old != nil {
			o.floor = max(o.floor, old.last+1)
			delete(o.keys, o.ring[i])
		}
		o.ring[i] = key
		return true
	}
	return false // every key waits: keep them all
}

func (o *orderer) hold(k *orderKey, pub switchyard.Publication, sp switchyard.StreamPosition, now time.Time) []heldPub {
	for _, h := range k.held {
		if h.pub.Sequence.Seq == pub.Sequence.Seq {
			return nil // held already
		}
	}
	k.held = append(k.held, heldPub{pub: pub, sp: sp, since: now})
	o.held++
	return nil
}

// release appends to out the held publications of k that now follow in
// order, updating k.last.
func (o *orderer) release(k *orderKey, out []heldPub) []heldPub {
	for {
		found := false
		for i, h := range k.held {
			if h.pub.Sequence.Prev <= k.last {
				k.held = append(k.held[:i:i], k.held[i+1:]...)
				o.held--
				if h.pub.Sequence.Seq > k.last {
					k.last = h.pub.Sequence.Seq
					out = append(out, h)
				}
				found = true
				break
			}
		}
		if !found {
			return out
		}
	}
}

// expire returns, in Seq order per key, the held publications that waited
// wait or longer, and those they unblock: their predecessors are taken
// for lost.
func (o *orderer) expire(now time.Time, wait time.Duration) []heldPub {
	if o.held == 0 {
		return nil
	}
	var out []heldPub
	for _, k := range o.keys {
		if len(k.held) == 0 {
			continue
		}
		sort.Slice(k.held, func(i, j int) bool { return k.held[i].pub.Sequence.Seq < k.held[j].pub.Sequence.Seq })
		if now.Sub(k.held[0].since) < wait {
			continue
		}
		first := k.held[0]
		k.held = k.held[1:]
		o.held--
		if !k.known || first.pub.Sequence.Seq > k.last {
			k.known, k.last = true, first.pub.Sequence.Seq
			out = append(out, first)
		}
		out = o.release(k, out)
	}
	return out
}

// HandlePublication implements broker.Handler: it fans the publication
// out to the channel's local subscribers, encoding it once per protocol;
// a publication with a Sequence first goes through the channel's
// ordering.
func (h *Hub) HandlePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) {
	h.publications.Add(1)
	if pub.Sequence.IsZero() {
		h.broadcast(ch, event{kind: eventPublication, channel: ch, pub: pub, sp: sp})
		return
	}
	o := h.orderer(ch)
	if o == nil {
		return // nobody listens here
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ready := o.admit(pub, sp, h.cfg.Now())
	if o.held > 0 {
		h.waiting(ch)
	}
	for _, r := range ready {
		h.broadcast(ch, event{kind: eventPublication, channel: ch, pub: r.pub, sp: r.sp})
	}
}

// orderer returns the ordering state of a channel with local subscribers
// (nil without).
func (h *Hub) orderer(ch string) *orderer {
	sh := h.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.channels[ch]
	if c == nil {
		return nil
	}
	return &c.ord
}

// waiting marks a channel as holding publications, for reorder.
func (h *Hub) waiting(ch string) {
	h.omu.Lock()
	h.holding[ch] = struct{}{}
	h.omu.Unlock()
}

// reorder releases, every quarter of ReorderWait, the publications that
// waited too long for their predecessors.
func (h *Hub) reorder() {
	t := time.NewTicker(h.cfg.ReorderWait / 4)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.omu.Lock()
		chans := make([]string, 0, len(h.holding))
		for ch := range h.holding {
			chans = append(chans, ch)
		}
		clear(h.holding)
		h.omu.Unlock()
		now := h.cfg.Now()
		for _, ch := range chans {
			o := h.orderer(ch)
			if o == nil {
				continue
			}
			o.mu.Lock()
			ready := o.expire(now, h.cfg.ReorderWait)
			if o.held > 0 {
				h.waiting(ch)
			}
			for _, r := range ready {
				h.broadcast(ch, event{kind: eventPublication, channel: ch, pub: r.pub, sp: r.sp})
			}
			o.mu.Unlock()
		}
	}
}
