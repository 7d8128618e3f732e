package memory

import (
	"context"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

// presenceEntry is one client in a channel's presence.
type presenceEntry struct {
	info     switchyard.ClientInfo
	expireAt int64 // clock reading at which the entry disappears; 0: never
}

// expirePresence drops expired entries. The channel's mutex is held.
func (c *channel) expirePresence(now int64) {
	for id, e := range c.presence {
		if e.expireAt != 0 && now >= e.expireAt {
			delete(c.presence, id)
		}
	}
	if len(c.presence) == 0 {
		c.presence = nil
	}
}

// PublishJoin hands a join to the Handler if the channel is subscribed.
func (b *Broker) PublishJoin(ctx context.Context, ch string, info switchyard.ClientInfo) error {
	return b.publishPresence(ctx, ch, info, true)
}

// PublishLeave hands a leave to the Handler if the channel is subscribed.
func (b *Broker) PublishLeave(ctx context.Context, ch string, info switchyard.ClientInfo) error {
	return b.publishPresence(ctx, ch, info, false)
}

func (b *Broker) publishPresence(ctx context.Context, ch string, info switchyard.ClientInfo, join bool) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, false)
	if c == nil {
		return err
	}
	if c.subscribed && b.handler != nil {
		if join {
			b.handler.HandleJoin(ch, info)
		} else {
			b.handler.HandleLeave(ch, info)
		}
	}
	b.release(s, ch, c)
	return nil
}

// AddPresence adds or refreshes clientID in the channel's presence, with
// info replacing what was there. The entry disappears after expire unless
// added again; an expire of 0 or less keeps it until removed.
func (b *Broker) AddPresence(ctx context.Context, ch, clientID string, info switchyard.ClientInfo, expire time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, true)
	if err != nil {
		return err
	}
	e := presenceEntry{info: info}
	if expire > 0 {
		e.expireAt = b.clock() + int64(expire)
	}
	if c.presence == nil {
		c.presence = make(map[string]presenceEntry)
	}
	c.presence[clientID] = e
	b.release(s, ch, c)
	return nil
}

// RemovePresence removes clientID from the channel's presence. Removing a
// client that is not there is not an error.
func (b *Broker) RemovePresence(ctx context.Context, ch, clientID string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, false)
	if c == nil {
		return err
	}
	delete(c.presence, clientID)
	if len(c.presence) == 0 {
		c.presence = nil
	}
	b.release(s, ch, c)
	return nil
}

// Presence returns the channel's clients by client ID, in a new map. The
// Info of each ClientInfo is shared and must not be modified.
func (b *Broker) Presence(ctx context.Context, ch string) (map[string]switchyard.ClientInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, false)
	if c == nil {
		if err != nil {
			return nil, err
		}
		return map[string]switchyard.ClientInfo{}, nil
	}
	c.expirePresence(b.clock())
	out := make(map[string]switchyard.ClientInfo, len(c.presence))
	for id, e := range c.presence {
		out[id] = e.info
	}
	b.release(s, ch, c)
	return out, nil
}

// PresenceStats counts the channel's clients and its distinct users.
// Anonymous clients (User "") count as clients but not as users.
func (b *Broker) PresenceStats(ctx context.Context, ch string) (broker.PresenceStats, error) {
	if err := b.check(ctx); err != nil {
		return broker.PresenceStats{}, err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, false)
	if c == nil {
		return broker.PresenceStats{}, err
	}
	c.expirePresence(b.clock())
	users := make(map[string]struct{}, len(c.presence))
	for _, e := range c.presence {
		if e.info.User != "" {
			users[e.info.User] = struct{}{}
		}
	}
	stats := broker.PresenceStats{NumClients: len(c.presence), NumUsers: len(users)}
	b.release(s, ch, c)
	return stats, nil
}
