package redis

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
	"time"
)

// AddPresence adds or refreshes a client in the channel's presence; the
// entry disappears after expire (0: never) unless added again.
func (b *Broker) AddPresence(ctx context.Context, ch, clientID string, info switchyard.ClientInfo, expire time.Duration) error {
	return b.AddPresenceBatch(ctx, []broker.PresenceEntry{{Channel: ch, ClientID: clientID, Info: info}}, expire)
}

// AddPresenceBatch adds or refreshes many entries in one round trip: one
// script call per channel, pipelined.
func (b *Broker) AddPresenceBatch(ctx context.Context, entries []broker.PresenceEntry, expire time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	byChannel := map[string][]string{}
	order := []string{}
	for _, e := range entries {
		args, ok := byChannel[e.Channel]
		if !ok {
			order = append(order, e.Channel)
			args = []string{ms(max(expire, 0))}
		}
		byChannel[e.Channel] = append(args, e.ClientID, rueidis.BinaryString(encodeInfo(0, e.Info)))
	}
	execs := make([]rueidis.LuaExec, 0, len(order))
	for _, ch := range order {
		execs = append(execs, rueidis.LuaExec{Keys: []string{b.key("p", ch), b.key("z", ch)}, Args: byChannel[ch]})
	}
	for _, r := range b.presenceAdd.ExecMulti(ctx, b.client, execs...) {
		if err := r.Error(); err != nil {
			return b.fail(ctx, "add presence", err)
		}
	}
	b.ok()
	return nil
}

// RemovePresence removes a client from the channel's presence.
func (b *Broker) RemovePresence(ctx context.Context, ch, clientID string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	err := b.presenceRem.Exec(ctx, b.client, []string{b.key("p", ch), b.key("z", ch)}, []string{clientID}).Error()
	return b.fail(ctx, "remove presence", err)
}

// Presence returns the channel's clients by client ID, in a new map.
func (b *Broker) Presence(ctx context.Context, ch string) (map[string]switchyard.ClientInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	res, err := b.presenceGet.Exec(ctx, b.client, []string{b.key("p", ch), b.key("z", ch)}, nil).ToArray()
	if err != nil {
		return nil, b.fail(ctx, "presence", err)
	}
	b.ok()
	out := make(map[string]switchyard.ClientInfo, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		id, err1 := res[i].ToString()
		raw, err2 := res[i+1].ToString()
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("broker/redis: presence of %s: malformed reply", ch)
		}
		info, err := decodeInfo([]byte(raw))
		if err != nil {
			return nil, fmt.Errorf("broker/redis: presence of %s: %w", ch, err)
		}
		out[id] = info
	}
	return out, nil
}

// PresenceStats counts the channel's clients and distinct non-empty
// users.
func (b *Broker) PresenceStats(ctx context.Context, ch string) (broker.PresenceStats, error) {
	p, err := b.Presence(ctx, ch)
	if err != nil {
		return broker.PresenceStats{}, err
	}
	users := map[string]struct{}{}
	for _, info := range p {
		if info.User != "" {
			users[info.User] = struct{}{}
		}
	}
	return broker.PresenceStats{NumClients: len(p), NumUsers: len(users)}, nil
}
