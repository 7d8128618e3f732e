// Package hub holds channels, their local subscribers, presence, history
// with recovery, and each session's bounded outbox.
//
// Publications come from the broker (broker.Handler) and are fanned out
// to the sessions of this process subscribed to the channel. Each event is
// encoded once per protocol (an Encoder per protocol, shared by its
// sessions) and the same bytes are queued to every subscriber. A session's
// outbox is bounded in bytes: a session that cannot keep up is closed with
// 4008 ("slow consumer") and never delays the others. Queued frames are
// written in batches by a writer goroutine that exists only while the
// outbox is not empty.
//
// The hub knows nothing of protocols or resources: protocol adapters
// (protocol/live, protocol/channelstream) create sessions with Connect and
// call Subscribe, Publish, Presence and History; the rules (namespaces,
// permissions, user-limited channels) are enforced here so they behave the
// same on every wire.
//
// Lock order (see LOCKS.md): shard.subMu → shard.mu → Session.mu.
package hub
