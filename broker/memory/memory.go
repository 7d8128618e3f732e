package memory

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyardhq/switchyard/broker"
)

const (
	// numShards splits the channel map so that operations on different
	// channels rarely wait for one another.
	numShards = 64
	// epochPeriod is how long the derived epoch of a channel without
	// history stays the same, and the longest a tombstone is kept (see the
	// package documentation).
	epochPeriod = time.Hour
	// sweepPeriod is the time the cleaner takes to visit every channel
	// once; it visits one shard every sweepPeriod/numShards. Expired
	// history and presence are invisible from the moment they expire; the
	// sweep only returns their memory. It costs about 32ns per channel
	// (BenchmarkSweep): 32ms of CPU every 4s for one million channels, and
	// a shard is locked for 0.5ms at a time.
	sweepPeriod = 4 * time.Second
)

var (
	_ broker.Broker          = (*Broker)(nil)
	_ broker.PresenceManager = (*Broker)(nil)
)

// Config configures a Broker. The zero value is ready to use.
type Config struct {
	// Now returns the current time. Nil means time.Now; tests set it to
	// make history and presence expire without waiting.
	Now func() time.Time
	// MaxHistoryBytes bounds the history kept across all channels: the
	// data of the kept publications plus a fixed overhead per publication
	// and per channel. Past it, the history of the channel published to
	// least recently is dropped (its epoch changes), then the next, until
	// the total is within it again. 0 is unlimited.
	MaxHistoryBytes int64
	// MaxChannelsPerNamespace bounds how many channels of one namespace
	// (broker.PublishOptions.Namespace) keep history at once; past it the
	// one published to least recently loses its history. 0 is unlimited.
	MaxChannelsPerNamespace int
	// Logger receives a warning, at most every 10 s, while history is
	// being dropped for these bounds; nil discards.
	Logger *slog.Logger
}

// Broker is the in-memory broker.Broker and broker.PresenceManager. Create
// it with New; the zero value is not usable.
type Broker struct {
	now   func() time.Time
	start time.Time
	seed  maphash.Seed
	// sweepEvery is sweepPeriod, shortened by tests.
	sweepEvery time.Duration

	// handler is set once by Run, before any other call.
	handler broker.Handler
	closed  atomic.Bool

	mu      sync.Mutex    // guards the fields below: Run and Close
	running bool          // Run was called
	stop    chan struct{} // closed by Close to stop the cleaner
	done    chan struct{} // closed by the cleaner when it returns; nil before Run

	shards [numShards]shard

	// The history bounds (bound.go). hmu is taken inside a channel's
	// mutex, never the reverse, and with no other lock inside it.
	maxBytes    int64
	maxChannels int
	log         *slog.Logger
	hmu         sync.Mutex
	histBytes   int64
	namespaces  map[string]*nsHistory
	dropped     atomic.Uint64
	lastWarn    atomic.Int64
}

// shard holds the channels whose name hashes to it.
type shard struct {
	mu       sync.Mutex
	channels map[string]*channel
	// Pad to 64 bytes, a cache line, so that cores working on
	// neighbouring shards do not invalidate each other's line.
	_ [64 - 16]byte
}

// channel is everything the broker keeps about one channel. The entry
// exists only while it holds something (see empty).
type channel struct {
	mu         sync.Mutex
	dead       bool // removed from its shard: look the channel up again
	subscribed bool
	hist       *history                 // nil: no history (the epoch is derived)
	presence   map[string]presenceEntry // nil when empty
}

func (c *channel) empty() bool {
	return !c.subscribed && c.hist == nil && len(c.presence) == 0
}

// New returns a Broker. Call Run before anything else and Close when done.
func New(cfg Config) *Broker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		now:         cfg.Now,
		seed:        maphash.MakeSeed(),
		sweepEvery:  sweepPeriod,
		stop:        make(chan struct{}),
		maxBytes:    cfg.MaxHistoryBytes,
		maxChannels: cfg.MaxChannelsPerNamespace,
		log:         cfg.Logger,
		namespaces:  map[string]*nsHistory{},
	}
	b.start = b.now()
	for i := range b.shards {
		b.shards[i].channels = make(map[string]*channel)
	}
	return b
}

// Run starts delivering to h and starts the background cleaner. It is
// called once, before anything else; a second call returns an error, a
// call after Close returns broker.ErrClosed.
func (b *Broker) Run(h broker.Handler) error {
	if h == nil {
		return errors.New("memory: Run: nil handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.running {
		return errors.New("memory: Run called twice")
	}
	b.running = true
	b.handler = h
	b.done = make(chan struct{})
	go b.clean(b.stop, b.done)
	return nil
}

// Close stops the cleaner and waits for it and for deliveries in progress;
// afterwards every method returns broker.ErrClosed and nothing is
// delivered. It drops all history and presence. Closing again returns nil.
// If ctx ends before the cleaner has returned, Close returns ctx.Err(); the
// broker is closed all the same.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return nil
	}
	b.closed.Store(true)
	close(b.stop)
	done := b.done
	b.mu.Unlock()

	// Every operation checks closed with its channel's mutex held (see
	// acquire), so taking each channel's mutex once waits out the
	// deliveries that started before closed was set. Channels created
	// after their shard is visited see closed as set.
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for _, c := range s.channels {
			c.mu.Lock()
			c.dead = true
			c.mu.Unlock()
		}
		clear(s.channels)
		s.mu.Unlock()
	}
	b.hmu.Lock()
	clear(b.namespaces)
	b.histBytes = 0
	b.hmu.Unlock()

	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check returns the error an operation starting now must return, if any.
func (b *Broker) check(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	return ctx.Err()
}

func (b *Broker) shard(name string) *shard {
	return &b.shards[maphash.String(b.seed, name)%numShards]
}

// acquire returns the channel's entry with its mutex held, creating the
// entry if create is set. Without create it returns nil, nil when the
// channel has no entry. Every acquired channel is given back with release.
func (b *Broker) acquire(s *shard, name string, create bool) (*channel, error) {
	for {
		s.mu.Lock()
		c := s.channels[name]
		if c == nil {
			if !create {
				s.mu.Unlock()
				return nil, nil
			}
			c = &channel{}
			s.channels[name] = c
		}
		s.mu.Unlock()

		// The shard's mutex is released before waiting for the channel's,
		// so a delivery in progress on one channel never holds up the
		// other channels of its shard.
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			continue
		}
		if b.closed.Load() {
			b.release(s, name, c)
			return nil, broker.ErrClosed
		}
		return c, nil
	}
}

// release unlocks c, removing its entry from the shard if it holds
// nothing.
func (b *Broker) release(s *shard, name string, c *channel) {
	if !c.empty() {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	s.mu.Lock()
	c.mu.Lock()
	if !c.dead && c.empty() {
		c.dead = true
		delete(s.channels, name)
	}
	c.mu.Unlock()
	s.mu.Unlock()
}

// clock returns the broker's time: nanoseconds since New, never negative.
// Using the difference keeps time.Now's monotonic reading.
func (b *Broker) clock() int64 {
	return max(int64(b.now().Sub(b.start)), 0)
}

// period returns the epoch period that the clock reading now falls in.
func period(now int64) int64 {
	return now / int64(epochPeriod)
}

// Subscribe makes the broker deliver the channel's publications, joins and
// leaves to the Handler. It is idempotent.
func (b *Broker) Subscribe(ctx context.Context, ch string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, true)
	if err != nil {
		return err
	}
	c.subscribed = true
	b.release(s, ch, c)
	return nil
}

// Unsubscribe stops deliveries for the channel. It is idempotent.
func (b *Broker) Unsubscribe(ctx context.Context, ch string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	s := b.shard(ch)
	c, err := b.acquire(s, ch, false)
	if c == nil {
		return err
	}
	c.subscribed = false
	b.release(s, ch, c)
	return nil
}
