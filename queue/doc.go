// Package queue holds Switchyard's named background queues: durable jobs,
// at-least-once, with retries and exponential backoff, per-queue
// concurrency and timeouts, dead jobs kept and visible, and a drain on
// shutdown.
//
// Jobs live in a database through River (github.com/riverqueue/river),
// chosen by Config.Driver: the SQLite driver on a file of their own
// (Config.Path; docs/ARCHITECTURE.md says why not the store's file), for
// one process; or the pgx driver in PostgreSQL (Config.Pool, the store's
// pool and schema), where every process that opens a Queue on the same
// database works the same jobs. A job is a kind (a string naming the
// handler registered with Handle) and a JSON payload; River sees one job
// kind, "switchyard", whose arguments carry both. On PostgreSQL,
// EnqueueTx inserts a job in a transaction of the caller's, so that it
// exists if and only if that transaction commits.
//
// On SQLite, a job enqueued while its queue has a free slot is inserted
// already claimed (running, attempt 1, attempted by this process's River
// client) in the enqueue's transaction and its handler starts right after
// the commit, on this process, without River's fetch; its end is
// recorded in a later batch (the next enqueue's transaction, or one of
// its own). Jobs that find no free slot, delayed jobs and retries go
// through River's fetch. direct.go has the details.
//
// # Guarantees
//
//   - Enqueue returns after the job is committed: a process killed with
//     SIGKILL afterwards does not lose it.
//   - A job runs at least once. It may run more than once: a process killed
//     during a run, or after it but before its end was recorded (ends are
//     recorded in batches, by River and by direct start alike), leaves the
//     job "running"; on SQLite the next Open of the file (a SQLite file has
//     one process) puts it back to available (or discards it if that was
//     its last attempt), so it runs again; on PostgreSQL the other
//     processes do so within Config.RescueInterval,
//     since the dead process's liveness lock went with its session (see
//     pgBackend). Handlers must be idempotent; the job id is stable across
//     attempts and is the idempotency key to use.
//   - A handler error, a panic or a timeout fails the attempt; the job is
//     retried after Backoff·2^(attempt-1) (with jitter, capped at
//     MaxBackoff) until MaxAttempts, then it is dead: state "discarded",
//     kept, listed by Jobs and revivable with Retry.
//   - Stop drains: no new job starts (a job enqueued during the drain, or
//     fetched but still waiting for a slot, runs after the next Start, or
//     on another process on PostgreSQL),
//     running jobs — directly started ones included — get until the
//     context's deadline to finish, and those still running then are
//     cancelled and left for the next Start (put back without counting the
//     attempt when their handler returns within 5 s of the cancellation;
//     otherwise left running, and put back by the next Open on SQLite or
//     by another process on PostgreSQL). Ends not yet recorded are
//     recorded before Stop closes the database.
//
// # Concurrency
//
// A Queue is safe for concurrent use once Start returned. Handle must be
// called before Start. Each queue runs at most Concurrency jobs at once
// per process (on SQLite, directly started jobs and those River fetched
// share the Concurrency slots). A Queue on PostgreSQL borrows its pool:
// close the Queue (Stop or Close) before the pool.
package queue
