package memory

import (
	"container/list"
	"time"

	"github.com/switchyardhq/switchyard"
)

// What kept history costs, beyond the bytes of the data: a rough measure
// of the structures around each publication and each channel, so that
// Config.MaxHistoryBytes also bounds floods of tiny messages and of
// one-message channels.
const (
	publicationOverhead = 64
	channelOverhead     = 256
)

// pubCost is what one kept publication counts against MaxHistoryBytes.
func pubCost(p *switchyard.Publication) int64 {
	n := int64(publicationOverhead + len(p.Data))
	if p.Info != nil {
		n += int64(len(p.Info.ClientID) + len(p.Info.User) + len(p.Info.Info))
	}
	for _, u := range p.Audience.Users {
		n += int64(len(u))
	}
	for _, u := range p.Audience.ExceptUsers {
		n += int64(len(u))
	}
	return n
}

// histEntry is a channel with history in its namespace's list, least
// recently published first.
type histEntry struct {
	name   string
	ns     *nsHistory
	last   int64 // clock reading of the last publication
	bytes  int64 // what it counts against MaxHistoryBytes
	listed bool  // still in ns.order
}

// nsHistory is a namespace's channels with history.
type nsHistory struct {
	name  string
	order list.List // of *histEntry
}

// track accounts for a change in h (a publication added, the ring
// resized): h moves to the back of its namespace's list as the most
// recently published. c.mu is held; track takes b.hmu.
func (b *Broker) track(ch, ns string, h *history, now int64) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if h.entry == nil {
		g := b.namespaces[ns]
		if g == nil {
			g = &nsHistory{name: ns}
			g.order.Init()
			b.namespaces[ns] = g
		}
		h.entry = g.order.PushBack(&histEntry{name: ch, ns: g, listed: true})
	} else {
		h.entry.Value.(*histEntry).ns.order.MoveToBack(h.entry)
	}
	e := h.entry.Value.(*histEntry)
	cost := h.cost + channelOverhead + int64(len(ch))
	b.histBytes += cost - e.bytes
	e.bytes, e.last = cost, now
}

// untrack removes h from the accounting (its publications are being
// dropped). c.mu is held; untrack takes b.hmu.
func (b *Broker) untrack(h *history) {
	if h.entry == nil {
		return
	}
	b.hmu.Lock()
	b.untrackLocked(h.entry)
	b.hmu.Unlock()
	h.entry = nil
}

func (b *Broker) untrackLocked(el *list.Element) {
	e := el.Value.(*histEntry)
	if !e.listed {
		return
	}
	e.listed = false
	e.ns.order.Remove(el)
	if e.ns.order.Len() == 0 {
		delete(b.namespaces, e.ns.name)
	}
	b.histBytes -= e.bytes
}

// victim picks the history to drop to get back within the bounds after a
// publication in namespace ns: the least recently published channel of
// ns while ns has more than MaxChannelsPerNamespace, else the least
// recently published channel of all while the total is over
// MaxHistoryBytes. It returns nil when within bounds, and otherwise the
// key of the bound that was crossed.
func (b *Broker) victim(ns string) (*list.Element, string) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if g := b.namespaces[ns]; g != nil && b.maxChannels > 0 && g.order.Len() > b.maxChannels {
		return g.order.Front(), "limits.max_channels_per_namespace"
	}
	if b.maxBytes <= 0 || b.histBytes <= b.maxBytes {
		return nil, ""
	}
	var oldest *list.Element
	for _, g := range b.namespaces {
		if f := g.order.Front(); f != nil && (oldest == nil || f.Value.(*histEntry).last < oldest.Value.(*histEntry).last) {
			oldest = f
		}
	}
	return oldest, "limits.max_history_bytes"
}

// enforce drops the history of the least recently published channels
// until the bounds hold again (see victim). It is called after a
// publication in namespace ns, with no lock held. Each dropped history
// changes its channel's epoch, so a client recovering from it is told it
// cannot, rather than given a gap.
func (b *Broker) enforce(ns string) {
	for range 1000 { // bounds the work of one call; the next publication goes on
		el, bound := b.victim(ns)
		if el == nil {
			return
		}
		name := el.Value.(*histEntry).name
		s := b.shard(name)
		c, err := b.acquire(s, name, false)
		if err != nil {
			return
		}
		dropped := false
		if c != nil {
			if h := c.hist; h != nil && h.entry == el {
				b.lose(h)
				dropped = true
			}
			b.release(s, name, c)
		}
		if dropped {
			b.dropped.Add(1)
			b.warn(bound)
			continue
		}
		// Replaced meanwhile (its history was lost, and began again): the
		// old entry left the list then. Unlisting it here too only makes
		// sure the loop cannot spin on it.
		b.hmu.Lock()
		b.untrackLocked(el)
		b.hmu.Unlock()
	}
}

// warn logs that history was dropped for a bound, at most once every 10
// seconds.
func (b *Broker) warn(bound string) {
	now := time.Now().UnixNano()
	last := b.lastWarn.Load()
	if now-last < int64(10*time.Second) || !b.lastWarn.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("channel history dropped to stay within a limit (the channels' epochs changed)", "limit", bound, "dropped_total", b.dropped.Load())
}

// HistoryBytes returns what the kept history counts against
// Config.MaxHistoryBytes, and how many channel histories were dropped for
// the bounds so far.
func (b *Broker) HistoryBytes() (bytes int64, dropped uint64) {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	return b.histBytes, b.dropped.Load()
}
