package redis

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
)

var (
	_ broker.Broker          = (*Broker)(nil)
	_ broker.PresenceManager = (*Broker)(nil)
	_ broker.PresenceBatcher = (*Broker)(nil)
)

//go:embed lua/*.lua
var scripts embed.FS

func script(name string) *rueidis.Lua {
	b, err := scripts.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err) // embedded at build time
	}
	return rueidis.NewLuaScript(string(b))
}

// emptyEpochTTL is how long the epoch of a channel that was read but
// never published to is kept, so that every process reports the same.
const emptyEpochTTL = time.Hour

// Config configures a Broker.
type Config struct {
	// URL is the Redis URL: redis://[user:password@]host:port[/db] or
	// rediss:// for TLS. Required.
	URL string
	// Prefix starts every key and pub/sub channel name, so several
	// deployments can share one Redis (default "switchyard").
	Prefix string
	// ConnectTimeout bounds connecting to Redis, at start and on each
	// reconnection (default 5 s). New fails after it when Redis cannot be
	// reached.
	ConnectTimeout time.Duration
	// PubSubShards is the number of connections subscriptions are spread
	// over (default 4). More spreads the decoding of deliveries over more
	// goroutines; each is one connection to Redis.
	PubSubShards int
	// Logger; nil discards.
	Logger *slog.Logger
}

// Broker is the Redis broker.Broker and broker.PresenceManager. Create it
// with New.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	client rueidis.Client
	addr   string

	publish, history                      *rueidis.Lua
	presenceAdd, presenceGet, presenceRem *rueidis.Lua

	handler broker.Handler
	shards  []*shard
	closed  atomic.Bool
	down    atomic.Bool // the last command failed to reach Redis

	mu      sync.Mutex
	running bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New connects to Redis and returns a Broker; it fails after
// ConnectTimeout with an error naming the address when Redis cannot be
// reached. Call Run before anything else and Close when done.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.URL == "" {
		return nil, errors.New("broker/redis: URL is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "switchyard"
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.PubSubShards <= 0 {
		cfg.PubSubShards = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opt, err := rueidis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("broker/redis: url: %w", err)
	}
	addr := redactedAddr(cfg.URL, opt)
	opt.DisableCache = true
	if opt.ClientName == "" {
		opt.ClientName = cfg.Prefix // CLIENT LIST shows whose connections these are
	}
	opt.Dialer.Timeout = cfg.ConnectTimeout
	opt.ConnWriteTimeout = max(cfg.ConnectTimeout, 3*time.Second)
	opt.DisableRetry = true // a publication is never sent twice
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var client rueidis.Client
	for {
		// rueidis dials at creation; retry until the timeout so that a
		// Redis that is starting is waited for.
		client, err = rueidis.NewClient(opt)
		if err == nil {
			if err = client.Do(ctx, client.B().Ping().Build()).Error(); err == nil {
				break
			}
			client.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("broker/redis: cannot reach Redis at %s within %s: %w", addr, cfg.ConnectTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	b := &Broker{
		cfg:         cfg,
		log:         cfg.Logger,
		client:      client,
		addr:        addr,
		publish:     script("publish"),
		history:     script("history"),
		presenceAdd: script("presence_add"),
		presenceGet: script("presence_get"),
		presenceRem: script("presence_rem"),
		stop:        make(chan struct{}),
	}
	b.shards = make([]*shard, cfg.PubSubShards)
	for i := range b.shards {
		b.shards[i] = &shard{b: b, index: i, channels: map[string]struct{}{}}
	}
	return b, nil
}

// redactedAddr names the server without the password.
func redactedAddr(raw string, opt rueidis.ClientOption) string {
	if len(opt.InitAddress) > 0 {
		return opt.InitAddress[0]
	}
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return "(unparsable URL)"
}

// Addr returns the address of the Redis server (host:port).
func (b *Broker) Addr() string { return b.addr }

// Run starts the pub/sub connections and delivers to h. It returns once
// every connection subscribed, or with an error after ConnectTimeout.
func (b *Broker) Run(h broker.Handler) error {
	if h == nil {
		return errors.New("broker/redis: Run: nil handler")
	}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return broker.ErrClosed
	}
	if b.running {
		b.mu.Unlock()
		return errors.New("broker/redis: Run called twice")
	}
	b.running = true
	b.handler = h
	b.mu.Unlock()
	ready := make(chan error, len(b.shards))
	for _, s := range b.shards {
		b.wg.Go(func() { s.run(ready) })
	}
	timeout := time.NewTimer(b.cfg.ConnectTimeout)
	defer timeout.Stop()
	for range b.shards {
		select {
		case err := <-ready:
			if err != nil {
				return err
			}
		case <-timeout.C:
			return fmt.Errorf("broker/redis: pub/sub connections to %s not ready within %s", b.addr, b.cfg.ConnectTimeout)
		}
	}
	return nil
}

// Close stops the pub/sub connections and closes the client; afterwards
// every method returns broker.ErrClosed. Closing again returns nil.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	close(b.stop)
	b.mu.Unlock()
	for _, s := range b.shards {
		s.closeConn()
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.client.Close()
	return err
}

// Ping checks that Redis answers (the readiness check).
func (b *Broker) Ping(ctx context.Context) error {
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis at %s: %w", b.addr, err)
	}
	return nil
}

// check returns the error an operation starting now must return, if any.
func (b *Broker) check(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	return ctx.Err()
}

// unavailable is what clients are told when Redis cannot be reached.
var unavailable = switchyard.Errorf(switchyard.CodeUnavailable, "the message broker is unavailable, try again")

// fail turns a command's error into the broker's: the context's error as
// is, a Redis error reply as an internal error, anything else (the
// network) as unavailable, logged when the broker goes down.
func (b *Broker) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		if b.down.Swap(false) {
			b.log.Info("redis is reachable again", "addr", b.addr)
		}
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("broker/redis: %s: %w", op, ctxErr)
	}
	if b.closed.Load() {
		return broker.ErrClosed
	}
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return fmt.Errorf("broker/redis: %s: %w", op, err)
	}
	if !b.down.Swap(true) {
		b.log.Warn("redis is unreachable", "addr", b.addr, "op", op, "err", err)
	}
	return unavailable
}

// ok records that a command reached Redis.
func (b *Broker) ok() {
	if b.down.Load() && b.down.Swap(false) {
		b.log.Info("redis is reachable again", "addr", b.addr)
	}
}

func (b *Broker) key(kind, ch string) string { return b.cfg.Prefix + ":" + kind + ":" + ch }

// newEpoch returns a fresh random epoch: 8 characters of base32.
func newEpoch() string { return rand.Text()[:8] }

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// clientIDs returns the Redis client IDs of the broker's connections (for
// tests that kill them).
func (b *Broker) clientIDs(ctx context.Context) map[string]bool {
	ids := map[string]bool{}
	if id, err := b.client.Do(ctx, b.client.B().ClientId().Build()).AsInt64(); err == nil {
		ids[strconv.FormatInt(id, 10)] = true
	}
	for _, s := range b.shards {
		s.mu.Lock()
		conn := s.conn
		s.mu.Unlock()
		if conn == nil {
			continue
		}
		if id, err := conn.Do(ctx, conn.B().ClientId().Build()).AsInt64(); err == nil {
			ids[strconv.FormatInt(id, 10)] = true
		}
	}
	return ids
}
