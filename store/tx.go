package store

import "context"

// Tx is the open transaction of a write, as a TxWriter hands it to the
// code that runs inside the write. Its dynamic type is the driver's own
// (a pgx.Tx for store/postgres), so code that knows the driver can use it
// directly: its own statements, or a job queue's insert in the same
// transaction (queue.Queue.EnqueueTx).
type Tx any

// TxWriter is an optional capability of a Store, checked by type
// assertion: one write and the caller's own statements in one
// transaction, committed together or not at all.
type TxWriter interface {
	// WriteTx begins a transaction, calls write with a context whose store
	// writes run in that transaction, then inTx with the transaction; it
	// commits when both return nil and returns once the commit is as
	// durable as any write's. Otherwise it rolls back and returns the
	// first error. write must make exactly one Insert, Update or Delete of
	// this store with the context it is given (WriteTx fails otherwise).
	//
	// The store's writes keep the change log in commit order, so every
	// other write of the store waits while inTx runs: keep it short, and
	// never make another write of the store from it (that write would wait
	// for this one forever).
	WriteTx(ctx context.Context, write func(ctx context.Context) error, inTx func(ctx context.Context, tx Tx) error) error
}

type committedKey struct{}

// WithCommitted returns a context for one write (Insert, Update or
// Delete) whose store calls fn with the change as soon as the write has
// committed, before it waits for the commit to be durable (the PostgreSQL
// store's flush, which concurrent writes share): a caller that orders
// what follows a write by commit order (the resource service's events)
// learns the change's place at once. inOrder is true when the store
// reports every commit before the next write may commit (SQLite's single
// writer), so that no write still running can have committed before it;
// false when reports may come out of commit order (PostgreSQL: the seq
// orders them). A write inside a TxWriter transaction never calls fn;
// the caller tells by fn not having run when the write returns. fn runs
// at most once, on the writing goroutine, and must not write to the
// store; the write still returns its error when the flush fails after fn
// ran (the change committed, and others may already see it).
func WithCommitted(ctx context.Context, fn func(ch Change, inOrder bool)) context.Context {
	return context.WithValue(ctx, committedKey{}, fn)
}

// Committed returns the function WithCommitted put in ctx (nil: none),
// for stores.
func Committed(ctx context.Context) func(ch Change, inOrder bool) {
	fn, _ := ctx.Value(committedKey{}).(func(Change, bool))
	return fn
}
