// Package memory is the single-process broker: it implements
// broker.Broker and broker.PresenceManager in the memory of one process,
// for a server that runs alone and for tests. Nothing crosses process
// boundaries; a restart loses all history and presence, and every epoch
// changes with it.
//
// # Concurrency
//
// Every method of *Broker is safe for concurrent use. State is kept per
// channel in one of 64 shards chosen by a hash of the channel name, so
// operations on different channels rarely contend. Each channel has its
// own mutex, held while a publication gets its offset and is handed to the
// Handler: publications of one channel reach the Handler in offset order
// even with concurrent publishers, and joins and leaves are ordered with
// them. The Handler is called synchronously from Publish, PublishJoin and
// PublishLeave, on the caller's goroutine, with that channel mutex held: it
// must not block and must not call back into the Broker (for the same
// channel that deadlocks at once; for others it can, with another
// Handler call doing the reverse). Close waits for deliveries in progress;
// none starts after it returns.
//
// Lock order: a shard's mutex before a channel's mutex, and a channel's
// mutex before the history accounting's (hmu, taken with nothing inside
// it); the Broker's own mutex (Run, Close) is never held together with
// any of them.
//
// # Memory
//
// A channel holds a map entry only while something needs it: a
// subscription, presence entries, or history. Publishing without history
// to a channel nobody subscribed to, or reading the history of a channel
// that has none, creates nothing, so a million one-off channels leave no
// trace. History lasts until its HistoryTTL passes without a publication
// (forever when HistoryTTL is 0); expired history and presence are dropped
// when next touched and by a background cleaner, started by Run and
// stopped by Close, that sweeps every channel every few seconds.
//
// Config.MaxHistoryBytes bounds the history of all channels together, and
// Config.MaxChannelsPerNamespace the channels of one namespace that keep
// history: past either, the history of the channel published to least
// recently is dropped, as if it had expired (its epoch changes). Each
// namespace keeps its channels with history in a list ordered by their
// last publication, so finding that channel costs a look at the front of
// each namespace's list.
//
// Kept publications share their Data and Info with the caller of Publish
// and with the callers of History: nobody may modify them.
//
// # Epochs
//
// An epoch is 8 characters of base32. A channel with no history has an
// epoch derived from the channel name, a random per-process seed and the
// current hour of the broker's life (hours counted from New), so it is the
// same on every History call within that hour, differs from one process to
// the next, and needs no map entry. The first publication keeps that epoch,
// so a client that read the empty channel's position can still recover from
// it. Losing history (HistoryTTL expiry, RemoveHistory) gives the channel a
// fresh random epoch. The emptied history is kept as a small tombstone
// (epoch, no publications) until the hour in which the channel's history
// began is over; only then may the channel forget it and fall back to the
// derived epoch of a later hour, which no client can hold from before the
// loss. The price is that a channel that never had history changes its
// epoch once an hour, so a client reconnecting across that boundary is told
// that it cannot recover, and that an expired channel costs about 200 bytes
// plus its name for at most an hour.
package memory
