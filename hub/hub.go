package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker"
	"github.com/switchyardhq/switchyard/config"
)

// Config configures a Hub. Broker and Presence are required.
type Config struct {
	Broker   broker.Broker
	Presence broker.PresenceManager
	// Channels holds the default namespace and the declared ones.
	Channels config.Channels
	// Reserved are the server's own namespaces, named with a leading "$"
	// (such as "$resource"): only the server subscribes sessions to their
	// channels and publishes in them.
	Reserved map[string]config.ChannelOptions
	// MaxQueuedBytes bounds how far each session's outbox may grow behind
	// what its client reads (default 1 MiB); a session over it is closed
	// with 4008.
	MaxQueuedBytes int64
	// MaxFrameBytes is the largest frame an empty outbox always accepts,
	// whatever MaxQueuedBytes says (default MaxQueuedBytes): one big reply
	// or event does not make a client that reads a slow consumer. The
	// frame being written does not count against MaxQueuedBytes for what
	// queues behind it, so a session holds at most MaxFrameBytes +
	// MaxQueuedBytes.
	MaxFrameBytes int64
	// MaxSubscriptions bounds one session's subscriptions (0: no limit):
	// the channels of Subscribe and SubscribeServer, and those its
	// protocol counts itself (see SubscriptionCounter). Over it, a
	// subscribe fails with CodeRateLimited naming
	// limits.max_subscriptions.
	MaxSubscriptions int
	// MaxUserSubscriptions bounds the subscriptions of all the sessions of
	// one authenticated user on this process (0: no limit); over it,
	// CodeRateLimited naming limits.max_subscriptions_per_user.
	MaxUserSubscriptions int
	// PresenceExpiry is how long a presence entry lives without being
	// refreshed (default 60 s; refreshed every third of it, in batches of
	// up to 1,000 entries when Presence is a broker.PresenceBatcher).
	PresenceExpiry time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// ReorderWait is how long a publication with a Sequence waits for its
	// predecessor before it is delivered without it (default 1 s): the
	// longest two processes' publications of one record may be apart in
	// the broker, and the delay a change suffers when its predecessor's
	// publisher died between commit and publish.
	ReorderWait time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Writers is how many worker goroutines write the outboxes of
	// sessions whose transport is a TryWriter (default GOMAXPROCS, at
	// most MaxWriters; -1: none, a goroutine per flush for every
	// session). A session whose client does not take a batch at once
	// gets a goroutine of its own until its outbox is empty.
	Writers int
	// NewWriteGroup, when set, makes each writer worker a WriteGroup, so
	// it writes the batches of the sessions it takes at once (the server
	// sets ws.NewWriteRing: io_uring), for size sessions per flush. A worker whose call fails writes
	// one session at a time.
	NewWriteGroup func(size int) (WriteGroup, error)
	// BroadcastChunk is how many subscribers each part of a split
	// broadcast covers: a broadcast to at least twice as many local
	// subscribers of one channel is split into chunks of this many, which
	// the writer pool's workers queue in parallel with the publishing
	// goroutine (default 1024; -1: never split; at most MaxBroadcastChunk).
	// Channels of the "$" namespaces are not split.
	BroadcastChunk int
}

// MaxBroadcastChunk bounds Config.BroadcastChunk.
const MaxBroadcastChunk = 1 << 20

// MaxWriters bounds Config.Writers.
const MaxWriters = 1024

// Conditions callers branch on, behind the *switchyard.Error the hub
// returns (test with errors.Is).
var (
	// ErrAlreadySubscribed: the session is subscribed to the channel.
	ErrAlreadySubscribed = errors.New("hub: already subscribed")
	// ErrNotSubscribed: the session is not subscribed to the channel.
	ErrNotSubscribed = errors.New("hub: not subscribed")
	// ErrClosing: the session is closing.
	ErrClosing = errors.New("hub: connection is closing")
)

// Close codes the hub closes sessions with.
const (
	CloseSlowConsumer = 4008 // the outbox overflowed
	CloseTokenExpired = 4001 // the token expired and was not refreshed
	CloseDisconnected = 4003 // the server API disconnected the user
)

const shardCount = 64

type shard struct {
	subMu    sync.Mutex // see LOCKS.md
	mu       sync.RWMutex
	channels map[string]*channel
	// clientChannels counts the channels with at least one subscriber
	// that is not an observer (under mu).
	clientChannels int
}

// channel is a channel with local subscribers.
type channel struct {
	subs map[*Session]*subscription
	ord  orderer // publications with a Sequence (order.go)
	// observers counts the subs that are observers (see Observe): they
	// are not the channel's subscribers to anyone but the dashboard.
	observers int
}

// hasClients is 1 when a client (not only observers) subscribes, else 0.
func (c *channel) hasClients() int {
	if len(c.subs) > c.observers {
		return 1
	}
	return 0
}

// Hub routes publications from the broker to the sessions subscribed on
// this process, and runs subscribe, publish, presence and history for
// them. It is safe for concurrent use.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	seed   maphash.Seed
	shards [shardCount]shard
	ns     map[string]config.ChannelOptions

	smu      sync.Mutex
	sessions map[*Session]struct{}
	users    map[string]map[*Session]struct{} // sessions of authenticated users
	labels   map[connLabel]*connLabel         // the sessions' transport and protocol, shared (session.go)

	// publications and deliveries count the publications broadcast on
	// this process and the sessions they were queued to (Stats).
	publications, deliveries atomic.Uint64

	wg      sync.WaitGroup // maintain
	writers sync.WaitGroup // sessions writing (on a worker or their own goroutine) and slow-consumer closes
	pool    pool           // writer workers (pool.go)
	members sync.Pool      // *[]member: the lists of split broadcasts (split.go)
	stop    chan struct{}
	closed  bool

	omu     sync.Mutex
	holding map[string]struct{} // channels holding publications (order.go)
}

// New builds a hub and starts the broker's deliveries to it.
func New(cfg Config) (*Hub, error) {
	if cfg.Broker == nil || cfg.Presence == nil {
		return nil, errors.New("hub: Broker and Presence are required")
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = 1 << 20
	}
	if cfg.MaxFrameBytes < cfg.MaxQueuedBytes {
		cfg.MaxFrameBytes = cfg.MaxQueuedBytes
	}
	if cfg.PresenceExpiry <= 0 {
		cfg.PresenceExpiry = time.Minute
	}
	if cfg.ReorderWait <= 0 {
		cfg.ReorderWait = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.Writers == 0:
		cfg.Writers = runtime.GOMAXPROCS(0)
	case cfg.Writers < -1 || cfg.Writers > MaxWriters:
		return nil, fmt.Errorf("hub: Writers is %d: want -1 (no pool), 0 (GOMAXPROCS) or up to %d", cfg.Writers, MaxWriters)
	}
	switch {
	case cfg.BroadcastChunk == 0:
		cfg.BroadcastChunk = defaultBroadcastChunk
	case cfg.BroadcastChunk < -1 || cfg.BroadcastChunk > MaxBroadcastChunk:
		return nil, fmt.Errorf("hub: BroadcastChunk is %d: want -1 (never split), 0 (default %d) or 1 to %d", cfg.BroadcastChunk, defaultBroadcastChunk, MaxBroadcastChunk)
	}
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger,
		seed:     maphash.MakeSeed(),
		ns:       make(map[string]config.ChannelOptions),
		sessions: make(map[*Session]struct{}),
		holding:  make(map[string]struct{}),
		users:    make(map[string]map[*Session]struct{}),
		labels:   make(map[connLabel]*connLabel),
		stop:     make(chan struct{}),
	}
	for _, n := range cfg.Channels.Namespaces {
		h.ns[n.Name] = n.ChannelOptions
	}
	for name, o := range cfg.Reserved {
		if !strings.HasPrefix(name, "$") {
			return nil, fmt.Errorf("hub: reserved namespace %q must start with $", name)
		}
		h.ns[name] = o
	}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channel)
	}
	h.pool.start(max(cfg.Writers, 0), cfg.NewWriteGroup, h.log)
	if err := cfg.Broker.Run(h); err != nil {
		h.pool.stop()
		return nil, fmt.Errorf("hub: broker: %w", err)
	}
	h.wg.Go(h.maintain)
	h.wg.Go(h.reorder)
	return h, nil
}

// Close stops the hub's background work; sessions should be closed first.
func (h *Hub) Close() {
	h.smu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
	}
	h.smu.Unlock()
	h.wg.Wait()
	h.pool.stop() // the queued sessions written first; later ones get a goroutine
	h.writers.Wait()
}

func (h *Hub) shard(ch string) *shard {
	return &h.shards[maphash.String(h.seed, ch)%shardCount]
}

// maintain refreshes presence and closes sessions whose token expired.
func (h *Hub) maintain() {
	t := time.NewTicker(min(h.cfg.PresenceExpiry/3, time.Second))
	defer t.Stop()
	lastRefresh := h.cfg.Now()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		now := h.cfg.Now()
		refresh := now.Sub(lastRefresh) >= h.cfg.PresenceExpiry/3
		if refresh {
			lastRefresh = now
		}
		var entries []broker.PresenceEntry
		for _, s := range h.snapshotSessions() {
			if s.expired(now) {
				s.Close(CloseTokenExpired, "token expired")
				continue
			}
			if refresh {
				entries = s.appendPresence(entries)
			}
		}
		if len(entries) > 0 {
			h.refreshPresence(entries)
		}
	}
}

// presenceBatch bounds the entries of one batched presence refresh.
const presenceBatch = 1000

// refreshPresence renews presence entries: in batches when the presence
// manager takes them (one round trip per batch on Redis), else one by one.
func (h *Hub) refreshPresence(entries []broker.PresenceEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PresenceExpiry/3)
	defer cancel()
	if pb, ok := h.cfg.Presence.(broker.PresenceBatcher); ok {
		for i := 0; i < len(entries); i += presenceBatch {
			if err := pb.AddPresenceBatch(ctx, entries[i:min(i+presenceBatch, len(entries))], h.cfg.PresenceExpiry); err != nil {
				h.log.Warn("presence refresh failed", "entries", len(entries), "err", err)
				return
			}
		}
		return
	}
	for _, e := range entries {
		if err := h.cfg.Presence.AddPresence(ctx, e.Channel, e.ClientID, e.Info, h.cfg.PresenceExpiry); err != nil {
			h.log.Warn("presence refresh failed", "entries", len(entries), "err", err)
			return
		}
	}
}

func (h *Hub) snapshotSessions() []*Session {
	h.smu.Lock()
	defer h.smu.Unlock()
	out := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s)
	}
	return out
}

// NumSessions returns the number of connected sessions.
func (h *Hub) NumSessions() int {
	h.smu.Lock()
	defer h.smu.Unlock()
	return len(h.sessions)
}

// Channels returns the channels with subscribers on this process and
// their local subscriber counts (observers do not count).
func (h *Hub) Channels() map[string]int {
	out := map[string]int{}
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		for name, c := range s.channels {
			if n := len(c.subs) - c.observers; n > 0 {
				out[name] = n
			}
		}
		s.mu.RUnlock()
	}
	return out
}

// SessionsOf returns the sessions of a user on this process ("" has
// none: anonymous sessions are nobody's).
func (h *Hub) SessionsOf(user string) []*Session {
	h.smu.Lock()
	defer h.smu.Unlock()
	out := make([]*Session, 0, len(h.users[user]))
	for s := range h.users[user] {
		out = append(out, s)
	}
	return out
}

// HandleJoin implements broker.Handler.
func (h *Hub) HandleJoin(ch string, info switchyard.ClientInfo) {
	h.broadcast(ch, event{kind: eventJoin, channel: ch, info: info})
}

// HandleLeave implements broker.Handler.
func (h *Hub) HandleLeave(ch string, info switchyard.ClientInfo) {
	h.broadcast(ch, event{kind: eventLeave, channel: ch, info: info})
}

var _ broker.Handler = (*Hub)(nil)
