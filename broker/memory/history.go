package memory

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/maphash"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// history is the kept history of one channel: a ring of at most size
// publications with contiguous offsets ending at top.
//
// A history with top 0 is a tombstone: it holds no publication, only the
// epoch that replaced a lost one (see the package documentation).
type history struct {
	epoch string
	top   uint64 // offset of the last publication of this epoch; 0: none
	// pubs holds the kept publications. It grows up to size; from then on
	// it is a ring whose oldest element is at head (head is 0 until then).
	pubs []switchyard.Publication
	head int
	size int // HistorySize of the latest publication
	// expireAt is the clock reading at which the history is lost; 0: never.
	expireAt int64
	// born is the epoch period in which the channel went from no history
	// to this history. The history may be forgotten (c.hist = nil) only in
	// a later period, whose derived epoch no client can hold yet.
	born int64
	// cost is what the kept publications count against
	// Config.MaxHistoryBytes, and entry the history's place in the
	// accounting (nil for a tombstone); see bound.go.
	cost  int64
	entry *list.Element
}

// add appends pub, keeping at most size publications.
func (h *history) add(pub switchyard.Publication, size int) {
	if size != h.size {
		h.resize(size)
	}
	h.cost += pubCost(&pub)
	n := len(h.pubs)
	if n < size {
		if n == cap(h.pubs) {
			// Grow by doubling, never past size: a channel that gets one
			// publication should not pay for a full ring.
			grown := make([]switchyard.Publication, n, min(max(2*n, 4), size))
			copy(grown, h.pubs)
			h.pubs = grown
		}
		h.pubs = append(h.pubs, pub)
		return
	}
	h.cost -= pubCost(&h.pubs[h.head])
	h.pubs[h.head] = pub
	h.head++
	if h.head == n {
		h.head = 0
	}
}

// resize changes the capacity to size, keeping the newest publications.
func (h *history) resize(size int) {
	n := len(h.pubs)
	keep := min(n, size)
	pubs := make([]switchyard.Publication, keep, max(keep, min(size, 2*keep)))
	h.cost = 0
	for i := range keep {
		pubs[i] = h.pubs[(h.head+n-keep+i)%n]
		h.cost += pubCost(&pubs[i])
	}
	h.pubs, h.head, h.size = pubs, 0, size
}

// after returns, oldest first, the kept publications with an offset above
// since: the first limit of them, or all when limit is negative.
func (h *history) after(since uint64, limit int) []switchyard.Publication {
	n := len(h.pubs)
	if limit == 0 || n == 0 || since >= h.top {
		return nil
	}
	oldest := h.top - uint64(n) + 1
	skip := 0
	if since >= oldest {
		skip = int(since - oldest + 1) // < n since since < top
	}
	count := n - skip
	if limit > 0 && limit < count {
		count = limit
	}
	out := make([]switchyard.Publication, count)
	for i := range out {
		out[i] = h.pubs[(h.head+skip+i)%n]
	}
	return out
}

// before returns, newest first, the kept publications with an offset
// below until (all kept when until is 0): the first limit of them, or all
// when limit is negative.
func (h *history) before(until uint64, limit int) []switchyard.Publication {
	n := len(h.pubs)
	if limit == 0 || n == 0 {
		return nil
	}
	oldest := h.top - uint64(n) + 1
	newest := h.top // the offset of the first publication returned
	if until != 0 {
		if until <= oldest {
			return nil
		}
		newest = min(h.top, until-1)
	}
	count := int(newest - oldest + 1)
	if limit > 0 && limit < count {
		count = limit
	}
	out := make([]switchyard.Publication, count)
	for i := range out {
		idx := int(newest-oldest) - i // position in age order, 0 = oldest
		out[i] = h.pubs[(h.head+idx)%n]
	}
	return out
}

// lose drops a history's publications and starts a new epoch, keeping
// the history as a tombstone. The channel's mutex is held.
func (b *Broker) lose(h *history) {
	b.untrack(h)
	*h = history{epoch: randomEpoch(), born: h.born}
}

// expireHistory applies the HistoryTTL and forgets a tombstone whose
// period is over. The channel's mutex is held.
func (b *Broker) expireHistory(c *channel, now int64) {
	h := c.hist
	if h == nil {
		return
	}
	if h.expireAt != 0 && now >= h.expireAt {
		b.lose(h)
	}
	if h.top == 0 && period(now) > h.born {
		c.hist = nil
	}
}

// position returns the channel's current position. The channel's mutex is
// held; c may be nil when the channel has no entry.
func (b *Broker) position(ch string, c *channel, now int64) switchyard.StreamPosition {
	if c == nil || c.hist == nil {
		return switchyard.StreamPosition{Epoch: b.derivedEpoch(ch, period(now))}
	}
	return switchyard.StreamPosition{Offset: c.hist.top, Epoch: c.hist.epoch}
}

// Publish stores the publication when opts.HistorySize > 0 and hands it to
// the Handler if the channel is subscribed, both under the channel's
// mutex. It returns the publication's position; a publication that is not
// stored has the zero position (offset 0, no epoch) and leaves the
// channel's history as it was. data and opts.Info are kept, not copied.
func (b *Broker) Publish(ctx context.Context, ch string, data []byte, opts broker.PublishOptions) (switchyard.StreamPosition, error) {
	if err := b.check(ctx); err != nil {
		return switchyard.StreamPosition{}, err
	}
	if opts.HistorySize < 0 {
		return switchyard.StreamPosition{}, fmt.Errorf("memory: HistorySize must be >= 0, got %d", opts.HistorySize)
	}
	if opts.HistoryTTL < 0 {
		return switchyard.StreamPosition{}, fmt.Errorf("memory: HistoryTTL must be >= 0, got %s", opts.HistoryTTL)
	}
	keep := opts.HistorySize > 0
	s := b.shard(ch)
	c, err := b.acquire(s, ch, keep)
	if c == nil {
		// No entry and nothing to keep: nobody would receive it.
		return switchyard.StreamPosition{}, err
	}
	pub := switchyard.Publication{Data: data, Info: opts.Info, Audience: opts.Audience, Sequence: opts.Sequence}
	var sp switchyard.StreamPosition
	if keep {
		now := b.clock()
		b.expireHistory(c, now)
		h := c.hist
		if h == nil {
			// The first publication keeps the derived epoch the channel had.
			p := period(now)
			h = &history{epoch: b.derivedEpoch(ch, p), born: p}
			c.hist = h
		}
		h.top++
		pub.Offset = h.top
		h.add(pub, opts.HistorySize)
		b.track(ch, opts.Namespace, h, now)
		h.expireAt = 0
		if opts.HistoryTTL > 0 {
			h.expireAt = now + int64(opts.HistoryTTL)
		}
		sp = switchyard.StreamPosition{Offset: h.top, Epoch: h.epoch}
	}
	if c.subscribed && b.handler != nil {
		b.handler.HandlePublication(ch, pub, sp)
	}
	b.release(s, ch, c)
	if keep {
		b.enforce(opts.Namespace)
	}
	return sp, nil
}

// History returns kept publications, oldest first, and the channel's
// position. With opts.Since it returns those with an offset above
// Since.Offset, or none if Since.Epoch is not the current epoch. A
// positive opts.Limit returns the first (oldest) Limit of the selected
// publications, 0 none, a negative Limit all of them. With opts.Reverse
// the order is newest first, and Since selects the offsets below it. The returned slice is
// the caller's; the Data and Info it points to are shared and must not be
// modified.
func (b *Broker) History(ctx context.Context, ch string, opts broker.HistoryOptions) ([]switchyard.Publication, switchyard.StreamPosition, error) {
	if err := b.check(ctx); err != nil {
		return nil, switchyard.StreamPosition{}, err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, false)
	if err != nil {
		return nil, switchyard.StreamPosition{}, err
	}
	now := b.clock()
	if c != nil {
		b.expireHistory(c, now)
	}
	sp := b.position(ch, c, now)
	var pubs []switchyard.Publication
	if c != nil && c.hist != nil {
		since := uint64(0)
		switch {
		case opts.Since != nil && opts.Since.Epoch != sp.Epoch:
		case opts.Reverse && opts.Since != nil && opts.Since.Offset == 0:
			// nothing is older than offset 0
		case opts.Reverse:
			if opts.Since != nil {
				since = opts.Since.Offset
			}
			pubs = c.hist.before(since, opts.Limit)
		default:
			if opts.Since != nil {
				since = opts.Since.Offset
			}
			pubs = c.hist.after(since, opts.Limit)
		}
	}
	if c != nil {
		b.release(s, ch, c)
	}
	return pubs, sp, nil
}

// RemoveHistory drops the channel's publications and changes its epoch,
// whether or not it had history.
func (b *Broker) RemoveHistory(ctx context.Context, ch string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, true)
	if err != nil {
		return err
	}
	now := b.clock()
	b.expireHistory(c, now)
	switch h := c.hist; {
	case h == nil:
		// The derived epoch of this period may be held by clients: replace
		// it with a tombstone until the period is over.
		c.hist = &history{born: period(now)}
		b.lose(c.hist)
	case period(now) > h.born:
		// The next derived epoch is one no client has seen.
		b.untrack(h)
		c.hist = nil
	default:
		b.lose(h)
	}
	b.release(s, ch, c)
	return nil
}

// epochEncoding writes 5 bytes as 8 characters.
var epochEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// randomEpoch returns a new random epoch.
func randomEpoch() string {
	var buf [5]byte
	_, _ = rand.Read(buf[:]) // never fails (crypto/rand)
	return epochEncoding.EncodeToString(buf[:])
}

// derivedEpoch returns the epoch of channel ch without history in period
// p: stable within the period and the process, different across both.
func (b *Broker) derivedEpoch(ch string, p int64) string {
	var h maphash.Hash
	h.SetSeed(b.seed)
	_, _ = h.WriteString(ch)
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(p))
	_, _ = h.Write(buf[:])
	binary.LittleEndian.PutUint64(buf[:], h.Sum64())
	return epochEncoding.EncodeToString(buf[:5])
}
