// Package queue holds Switchyard's named background queues: durable jobs,
// at-least-once, with retries and exponential backoff, per-queue
// concurrency and timeouts, dead jobs kept and visible, and a drain on
// shutdown.
//
// Jobs live in a database through River (github.com/riverqueue/river):
// the SQLite driver on a file of their own (see Config.Path and
// docs/ARCHITECTURE.md for why not the store's file), and the backend is
// chosen by Config.Driver so that PostgreSQL (River's pgx driver) can be
// added next to it. A job is a kind (a string naming the handler
// registered with Handle) and a JSON payload; River sees one job kind,
// "switchyard", whose arguments carry both.
//
// # Guarantees
//
//   - Enqueue returns after the job is committed: a process killed with
//     SIGKILL afterwards does not lose it.
//   - A job runs at least once. It may run more than once: a process killed
//     during a run leaves the job "running"; the next Start on the same
//     database (a SQLite file has one process) puts it back to available
//     (or discards it if that was its last attempt), so it runs again.
//     Handlers must be idempotent; the job id is stable across attempts
//     and is the idempotency key to use.
//   - A handler error, a panic or a timeout fails the attempt; the job is
//     retried after Backoff·2^(attempt-1) (with jitter, capped at
//     MaxBackoff) until MaxAttempts, then it is dead: state "discarded",
//     kept, listed by Jobs and revivable with Retry.
//   - Stop drains: no new job starts, running jobs get until the context's
//     deadline to finish, and those still running then are cancelled and
//     left for the next Start.
//
// # Concurrency
//
// A Queue is safe for concurrent use once Start returned. Handle must be
// called before Start. Each queue runs at most Concurrency jobs at once
// per process.
package queue
