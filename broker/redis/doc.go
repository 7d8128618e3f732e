// Package redis is the broker for several processes: it implements
// broker.Broker and broker.PresenceManager on Redis (standalone, 6.2 or
// later), so that N identical Switchyard processes behind a load balancer
// share channels, history and presence. Import it renamed:
//
//	import redisbroker "github.com/switchyardhq/switchyard/broker/redis"
//
// # What lives in Redis
//
// Under Config.Prefix (so that deployments can share one Redis), per
// channel: a stream of kept publications (the stream ID's first part is
// the offset), a meta hash holding the epoch and the top offset, a
// presence hash (client ID → client info) with a sorted set of client ID
// by expiry time, and a pub/sub channel. Publish runs one Lua script that
// increments the offset, appends with an exact MAXLEN, sets the expiry
// and publishes: atomic per channel, so offsets follow publication order
// on every process. History and presence reads are scripts too.
//
// # Epochs
//
// The epoch is kept in the meta hash. It changes whenever history is
// lost: the keys expired (HistoryTTL) or were evicted or flushed (the
// meta is gone: the next read or publication draws a fresh random
// epoch), the stream alone disappeared (the scripts see a top offset with
// no stream and start a new epoch), or RemoveHistory. A recovery
// therefore never claims to be complete over a gap. A channel read before
// it was ever published to gets its epoch then, kept for an hour
// (emptyEpochTTL) so that every process reports the same one.
//
// # Pub/sub
//
// Subscriptions are spread over Config.PubSubShards dedicated connections
// by a hash of the channel name, so one channel's messages always arrive
// on one connection, in order. Each connection's read loop hands messages
// to the Handler directly (the hub only enqueues). When a connection
// drops (Redis restarted, CLIENT KILL, a network cut), it is reopened
// with backoff and every channel this process is subscribed to on it is
// subscribed again; publications sent while it was down are not
// delivered, and clients recover them from history (or learn that they
// cannot) on their next recovery.
//
// # Errors
//
// When Redis cannot be reached, operations fail with a *switchyard.Error
// of code unavailable (HTTP 503); the cause is logged once when the
// broker goes down and once when it comes back. Operations with a done
// context fail with the context's error; after Close, with
// broker.ErrClosed.
package redis
