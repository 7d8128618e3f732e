package hub

import (
	"strings"
	"sync"
	"sync/atomic"
)

// A broadcast to a channel with many local subscribers is split across
// the writer pool: the publishing goroutine lists the subscribers, cuts
// the list into chunks of Config.BroadcastChunk, asks the idle workers (a
// busy one is not waited for) to take chunks and queues chunks itself
// until none is left, then waits for the chunks the workers took. With
// no idle worker the publisher queues every chunk itself. The broadcast still ends only when every
// subscriber's outbox holds the event, so the events of a channel reach
// each outbox in the order they were broadcast (a session is in one chunk
// of a broadcast), and the shard's read lock covers the whole broadcast.
//
// Channels of the server's "$" namespaces are never split: their session
// encoders (SessionEncoder) may keep per-broadcast state that one
// goroutine at a time uses.

// member is a channel's subscriber, as a split broadcast lists it.
type member struct {
	s   *Session
	sub *subscription
}

// split is one broadcast shared between its publisher and the workers.
// It is made per broadcast and never reused: a worker that takes it
// after the last chunk is claimed finds nothing to do.
type split struct {
	ev      event
	limited bool
	ms      *[]member // from Hub.members; returned when the broadcast ends
	size    int       // subscribers per chunk
	chunks  int
	next    atomic.Int64   // the next chunk to claim
	done    sync.WaitGroup // chunks not finished
	n       atomic.Int64   // deliveries made
	frames  sharedFrames
}

// sharedFrames is the frames of a split broadcast's event, one per
// protocol, encoded once by whichever chunk meets the protocol first.
type sharedFrames struct {
	mu    sync.Mutex
	cache encodeCache
}

func (f *sharedFrames) get(ev *event, enc Encoder) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cache.get(ev, enc)
}

// splits reports whether a broadcast to c should be split.
func (h *Hub) splits(ch string, c *channel) bool {
	return h.cfg.BroadcastChunk > 0 && h.cfg.Writers > 0 && len(c.subs) >= 2*h.cfg.BroadcastChunk && !strings.HasPrefix(ch, "$")
}

// broadcastSplit queues ev to c's subscribers with the help of the
// writer pool's workers and returns the deliveries made. The shard's read
// lock is held.
func (h *Hub) broadcastSplit(c *channel, ev *event) int {
	sp := &split{ev: *ev, size: h.cfg.BroadcastChunk}
	sp.limited = ev.kind == eventPublication && !ev.pub.Audience.IsZero()
	sp.ms, _ = h.members.Get().(*[]member)
	if sp.ms == nil {
		sp.ms = new([]member)
	}
	ms := (*sp.ms)[:0]
	for s, sub := range c.subs {
		ms = append(ms, member{s, sub})
	}
	*sp.ms = ms
	sp.chunks = (len(ms) + sp.size - 1) / sp.size
	sp.done.Add(sp.chunks)
	h.pool.pushSplit(sp, min(h.cfg.Writers, sp.chunks-1))
	sp.help()
	sp.done.Wait()
	clear(ms) // the sessions' memory is not held by the pooled slice
	*sp.ms = ms[:0]
	h.members.Put(sp.ms)
	sp.ms = nil
	return int(sp.n.Load())
}

// help queues the event to the subscribers of the chunks it claims,
// until none is left.
func (sp *split) help() {
	var cache encodeCache
	cache.shared = &sp.frames
	for {
		i := int(sp.next.Add(1)) - 1
		if i >= sp.chunks {
			return
		}
		ms := *sp.ms
		lo := i * sp.size
		n := 0
		for _, m := range ms[lo:min(lo+sp.size, len(ms))] {
			if sp.ev.wants(m.s, m.sub, sp.limited) {
				m.s.deliver(m.sub, &sp.ev, &cache)
				n++
			}
		}
		cache.ready.flush()
		sp.n.Add(int64(n))
		sp.done.Done()
	}
}

// defaultBroadcastChunk is Config.BroadcastChunk's default: a channel is
// split from 2,048 local subscribers on.
const defaultBroadcastChunk = 1024
