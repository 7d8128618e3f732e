// Package signal holds named calls both ways, the service every wire
// uses for them (the native /live $signals stream, the df_websockets
// wire, the server API):
//
//   - browser → server: Call checks the connection's call rate, the size
//     and shape of the kwargs, finds the handlers registered under the
//     name (several may share one), keeps those whose access rule admits
//     the caller, validates the arguments against each handler's schema,
//     then runs sync handlers inline and enqueues one durable job per
//     other handler on its queue (package queue). A handler is a Go
//     function or a webhook (an HTTP POST signed Stripe-style).
//   - server → browser: Trigger delivers {signal, kwargs, signal_id} to
//     windows (connections) chosen by id or window key, by user, by topic,
//     or to every window, in any combination. One signal_id (uuid4) per
//     trigger; a window matching several targets receives it once (the
//     set of windows is computed before anything is sent). A countdown or
//     an eta makes the trigger a durable job, delivered when it comes due.
//
// Windows are attached by the protocols (Attach on connect, Detach on
// close) with a Sender (the connection's outbox) and an Encoder (the
// wire's frame for a pushed signal, one value per protocol: a trigger is
// encoded once per protocol, not once per window). Topics come from the
// token's topics claim, or from the application (SetWindow, the server
// API's windows method), which may also name a window key before the
// window connects (kept for Config.WindowTTL).
//
// # Processes
//
// Triggers and window changes are resolved on the process that holds the
// windows. Config.Bus, when set, carries them to every other process
// (the server gives a cluster topic over the Redis broker); each process
// delivers to its own windows, so a connection still receives a trigger
// once, deduplicated where it is connected. Config.Windows, when shared
// (signal/rediswindows, in Redis), lets a window key set on one process
// apply to a window connecting to another. Without them (the in-memory
// broker) everything stays on this process.
//
// # Concurrency
//
// A Service is safe for concurrent use. Register before serving calls.
// Senders must not block (a hub session's Send only queues).
package signal
