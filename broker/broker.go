// Package broker is the contract between the hub and what carries
// publications between processes and keeps channel history and presence:
// the in-memory broker for one process (broker/memory), Redis for many
// (broker/redis). Every implementation passes the suite in
// broker/brokertest.
package broker

import (
	"context"
	"errors"
	"time"

	"github.com/switchyardhq/switchyard"
)

// Handler receives what a broker delivers to this process: publications,
// joins and leaves of the channels it subscribed to. For one channel,
// calls arrive in the order they were published (offsets increase, and
// joins and leaves are ordered with the publications). Handlers must not
// block and must not call back into the broker (the memory broker
// delivers while holding the channel's lock): the hub only enqueues.
type Handler interface {
	HandlePublication(channel string, pub switchyard.Publication, sp switchyard.StreamPosition)
	HandleJoin(channel string, info switchyard.ClientInfo)
	HandleLeave(channel string, info switchyard.ClientInfo)
}

// PublishOptions are the per-publication settings the hub derives from
// the channel's namespace.
type PublishOptions struct {
	// HistorySize keeps the last HistorySize publications of the channel
	// (0: none; the publication then has offset 0 and is only delivered).
	HistorySize int
	// HistoryTTL drops the whole history of a channel that received no
	// publication for this long (0: never). Losing history changes the
	// epoch.
	HistoryTTL time.Duration
	// Info is the publishing client, if any.
	Info *switchyard.ClientInfo
	// Audience limits who receives the publication; it is kept with it in
	// history and delivered with it (the broker itself does not filter).
	Audience switchyard.Audience
	// Namespace is the channel's namespace ("" for the default one), for
	// brokers that bound how many channels of a namespace keep history.
	Namespace string
	// Sequence travels with the publication (and in history), untouched:
	// the hub orders a key's publications by it.
	Sequence switchyard.Sequence
}

// HistoryOptions select publications from a channel's history.
type HistoryOptions struct {
	// Since, when set, asks for the publications after Since.Offset. If
	// Since.Epoch is not the current epoch, no publication is returned
	// (the caller sees the epoch differ in the returned position).
	Since *switchyard.StreamPosition
	// Limit caps the number of publications: the first (oldest) Limit of
	// those selected; 0 returns none (only the position), a negative value
	// all that are kept. When history was trimmed past Since, the first
	// publication returned has an offset above Since.Offset+1: the caller
	// sees the gap.
	Limit int
	// Reverse returns the newest publications first: without Since, the
	// last Limit kept ("the latest 20 messages" in one call); with Since,
	// those with an offset below Since.Offset, newest first, to page
	// backwards from a publication already seen. Limit and the epoch
	// check apply as above.
	Reverse bool
}

// Broker carries publications between the hubs of all processes and keeps
// channel history.
//
// Publish is atomic per channel: the offset it returns is the
// publication's, offsets of one channel's history increase by one per
// publication, and every process subscribed to the channel receives the
// publication exactly once, in offset order. History returns publications
// oldest first.
type Broker interface {
	// Run starts delivering to h. It is called once, before anything else.
	Run(h Handler) error
	// Subscribe makes this process receive the channel's publications,
	// joins and leaves; Unsubscribe stops it. Both are idempotent.
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error
	// Publish stores (when HistorySize > 0) and delivers a publication and
	// returns its position.
	Publish(ctx context.Context, channel string, data []byte, opts PublishOptions) (switchyard.StreamPosition, error)
	// PublishJoin and PublishLeave deliver presence events (never stored).
	PublishJoin(ctx context.Context, channel string, info switchyard.ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info switchyard.ClientInfo) error
	// History returns publications and the channel's current position (the
	// offset of its last publication and its epoch). A channel never
	// published to has offset 0 and an epoch that is stable while nothing
	// is lost and never again equal to an epoch it had before a loss.
	History(ctx context.Context, channel string, opts HistoryOptions) ([]switchyard.Publication, switchyard.StreamPosition, error)
	// RemoveHistory drops a channel's history (the epoch changes).
	RemoveHistory(ctx context.Context, channel string) error
	// Close releases the broker's resources; deliveries stop.
	Close(ctx context.Context) error
}

// PresenceStats counts a channel's presence: NumUsers counts distinct
// non-empty users (anonymous clients count only in NumClients).
type PresenceStats struct {
	NumClients int `json:"num_clients"`
	NumUsers   int `json:"num_users"`
}

// PresenceManager keeps who is in which channel, across processes. An
// entry not refreshed by AddPresence within its expiry disappears (a
// process that died takes its clients with it).
type PresenceManager interface {
	AddPresence(ctx context.Context, channel, clientID string, info switchyard.ClientInfo, expire time.Duration) error
	RemovePresence(ctx context.Context, channel, clientID string) error
	Presence(ctx context.Context, channel string) (map[string]switchyard.ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (PresenceStats, error)
}

// PresenceEntry is one client in one channel's presence.
type PresenceEntry struct {
	Channel  string
	ClientID string
	Info     switchyard.ClientInfo
}

// PresenceBatcher is an optional capability of a PresenceManager: adding
// or refreshing many entries in one call, as the hub does periodically for
// every session and channel with presence. A manager on a network service
// answers in one round trip instead of one per entry. The hub uses it when
// the manager has it (checked by type assertion).
type PresenceBatcher interface {
	AddPresenceBatch(ctx context.Context, entries []PresenceEntry, expire time.Duration) error
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("broker: closed")
