package memory

import "time"

// clean is the background cleaner: it sweeps one shard every
// sweepEvery/numShards until stop is closed, then closes done.
func (b *Broker) clean(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(max(b.sweepEvery/numShards, time.Millisecond))
	defer t.Stop()
	for i := 0; ; i = (i + 1) % numShards {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		b.sweep(&b.shards[i])
	}
}

// sweep drops the expired history and presence of the shard's channels
// and the entries left empty. A channel busy with another operation is
// skipped until the next sweep.
func (b *Broker) sweep(s *shard) {
	now := b.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.channels {
		if !c.mu.TryLock() {
			continue
		}
		b.expireHistory(c, now)
		c.expirePresence(now)
		if c.empty() {
			c.dead = true
			delete(s.channels, name)
		}
		c.mu.Unlock()
	}
}
