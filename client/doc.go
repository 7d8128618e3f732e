// Package client is the Go client of a Switchyard server's /live socket,
// with the semantics of the TypeScript client (@switchyard/client):
//
//   - resources: Create, Retrieve, List, Update, Patch, Delete, and typed
//     handles (Resource[T]);
//   - SubscribeInstance follows a record and catches up after a reconnect
//     (`since`): the changes made meanwhile arrive first, once each;
//   - LiveQuery keeps the rows matching a filter (list, then
//     enter/update/leave), and lists again after a reconnect;
//   - channels: Subscribe with recovery (the last position is kept; after a
//     reconnect the missed messages come first, or OnGap says they
//     cannot), Publish, Presence, History;
//   - signals: Call and OnSignal;
//   - the connection: reconnection with jittered exponential backoff,
//     requests queued while disconnected, request timeouts, token refresh
//     through GetToken, typed errors (*Error, compared with errors.Is).
//
// A Client owns two goroutines while it runs (the connection and the
// reader) and one that runs callbacks in order; Close stops them. Requests
// are answered on the reader, so a callback may make requests; it should
// not block for long, since later events wait for it.
package client
