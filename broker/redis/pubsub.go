package redis

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// subscribeBatch bounds the channels of one SUBSCRIBE when resubscribing.
const subscribeBatch = 512

// shard is one pub/sub connection and the channels subscribed through it.
type shard struct {
	b     *Broker
	index int

	mu       sync.Mutex
	conn     rueidis.DedicatedClient // nil while (re)connecting
	channels map[string]struct{}     // every channel subscribed, kept across reconnections
}

func (b *Broker) shardOf(ch string) *shard {
	h := fnv.New32a()
	h.Write([]byte(ch))
	return b.shards[h.Sum32()%uint32(len(b.shards))]
}

// run keeps the shard's connection open until the broker closes: it
// connects, subscribes every channel of the shard, then waits for the
// connection to fail and starts again with backoff. The first outcome is
// sent on ready.
func (s *shard) run(ready chan<- error) {
	b := s.b
	first := true
	backoff := 50 * time.Millisecond
	for {
		wait, err := s.connect()
		if first {
			ready <- err
			first = false
		}
		if err == nil {
			backoff = 50 * time.Millisecond
			select {
			case err = <-wait:
			case <-b.stop:
				return
			}
			if !b.closed.Load() {
				b.log.Warn("redis pub/sub connection lost; reconnecting", "addr", b.addr, "shard", s.index, "err", err)
			}
		} else if !b.closed.Load() {
			b.log.Warn("redis pub/sub connection failed; retrying", "addr", b.addr, "shard", s.index, "err", err)
		}
		s.closeConn()
		select {
		case <-b.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// connect opens the connection, installs it and subscribes the shard's
// channels. It returns the channel that reports the connection's end.
func (s *shard) connect() (<-chan error, error) {
	b := s.b
	// Close on a dedicated client closes its connection and gives it back
	// to the pool (which drops it), so the cancel function is not needed.
	conn, _ := b.client.Dedicate()
	wait := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.onMessage})
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ConnectTimeout)
	defer cancel()
	// A ping proves the connection before it is installed.
	if err := conn.Do(ctx, conn.B().Ping().Build()).Error(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("broker/redis: pub/sub connection to %s: %w", b.addr, err)
	}
	s.mu.Lock()
	s.conn = conn
	names := make([]string, 0, len(s.channels))
	for ch := range s.channels {
		names = append(names, b.key("c", ch))
	}
	s.mu.Unlock()
	// Channels subscribed from now on go through the new connection;
	// those known before are subscribed again here.
	for i := 0; i < len(names); i += subscribeBatch {
		batch := names[i:min(i+subscribeBatch, len(names))]
		if err := conn.Do(ctx, conn.B().Subscribe().Channel(batch...).Build()).Error(); err != nil {
			s.closeConn()
			return nil, fmt.Errorf("broker/redis: resubscribing on %s: %w", b.addr, err)
		}
	}
	if len(names) > 0 {
		b.log.Info("redis pub/sub resubscribed", "addr", b.addr, "shard", s.index, "channels", len(names))
	}
	return wait, nil
}

func (s *shard) closeConn() {
	s.mu.Lock()
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// onMessage decodes a message and hands it to the Handler. It runs on the
// connection's read loop: the Handler only enqueues.
func (s *shard) onMessage(m rueidis.PubSubMessage) {
	b := s.b
	prefix := b.cfg.Prefix + ":c:"
	if len(m.Channel) < len(prefix) {
		return
	}
	ch := m.Channel[len(prefix):]
	msg, err := decodeMessage([]byte(m.Message))
	if err != nil {
		b.log.Error("malformed pub/sub message dropped", "channel", ch, "err", err)
		return
	}
	switch msg.kind {
	case 'p':
		b.handler.HandlePublication(ch, msg.pub, msg.sp)
	case 'j':
		b.handler.HandleJoin(ch, msg.info)
	case 'l':
		b.handler.HandleLeave(ch, msg.info)
	}
}

// Subscribe makes this process receive the channel's messages. It is
// idempotent, and returns once Redis confirmed the subscription.
func (b *Broker) Subscribe(ctx context.Context, ch string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shardOf(ch)
	s.mu.Lock()
	_, had := s.channels[ch]
	s.channels[ch] = struct{}{}
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		// Reconnecting: the connection subscribes the channel when it is
		// back. Until then nothing is delivered, as for every channel.
		if !had {
			s.forget(ch)
		}
		return b.fail(ctx, "subscribe", fmt.Errorf("pub/sub connection to %s is down", b.addr))
	}
	err := conn.Do(ctx, conn.B().Subscribe().Channel(b.key("c", ch)).Build()).Error()
	if err != nil && !had {
		s.forget(ch)
	}
	return b.fail(ctx, "subscribe", err)
}

// forget removes a channel whose Subscribe failed.
func (s *shard) forget(ch string) {
	s.mu.Lock()
	delete(s.channels, ch)
	s.mu.Unlock()
}

// Unsubscribe stops the channel's deliveries to this process. It is
// idempotent.
func (b *Broker) Unsubscribe(ctx context.Context, ch string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shardOf(ch)
	s.mu.Lock()
	_, had := s.channels[ch]
	delete(s.channels, ch)
	conn := s.conn
	s.mu.Unlock()
	if !had || conn == nil {
		return nil // a new connection does not subscribe it again
	}
	return b.fail(ctx, "unsubscribe", conn.Do(ctx, conn.B().Unsubscribe().Channel(b.key("c", ch)).Build()).Error())
}

// Subscribed returns how many channels this process is subscribed to.
func (b *Broker) Subscribed() int {
	n := 0
	for _, s := range b.shards {
		s.mu.Lock()
		n += len(s.channels)
		s.mu.Unlock()
	}
	return n
}
