package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyardhq/switchyard/store"
)

var _ store.TxWriter = (*DB)(nil)

// Pool returns the store's connection pool, for what lives in the same
// database beside the resources (the job queues, River's tables). Closing
// the store closes it.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// txKey marks the context of a WriteTx's write.
type txKey struct{}

// txWrite is the transaction of a WriteTx and how many writes ran in it.
type txWrite struct {
	db     *DB
	tx     pgx.Tx
	writes int
}

// querier returns what a write's statement runs on: the transaction of
// the WriteTx whose context ctx is, or the pool.
func (db *DB) querier(ctx context.Context) interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
} {
	if w, ok := ctx.Value(txKey{}).(*txWrite); ok && w.db == db {
		w.writes++
		return w.tx
	}
	return db.pool
}

// WriteTx runs one write and inTx in one explicit transaction; see
// store.TxWriter. The write's statement locks the change log's counter
// until the commit, so inTx holds up every other writer of the database
// (of every process) while it runs.
func (db *DB) WriteTx(ctx context.Context, write func(ctx context.Context) error, inTx func(ctx context.Context, tx store.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return db.fail(ctx, "begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	w := &txWrite{db: db, tx: tx}
	if err := write(context.WithValue(ctx, txKey{}, w)); err != nil {
		return err
	}
	if w.writes != 1 {
		return fmt.Errorf("store/postgres: WriteTx: %d writes ran in the transaction, want exactly 1", w.writes)
	}
	if err := inTx(ctx, tx); err != nil {
		return err
	}
	// The commit and its flush finish even if the caller goes away: once
	// the commit is sent, the outcome must be known.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := tx.Commit(cctx); err != nil {
		if errors.Is(err, pgx.ErrTxClosed) {
			return fmt.Errorf("store/postgres: WriteTx: the transaction was ended inside it: %w", err)
		}
		return db.fail(cctx, "commit", err)
	}
	// The write's statement turned synchronous_commit off for its
	// transaction (see flush): make the commit durable before answering.
	if err := db.flush(cctx); err != nil {
		return db.fail(cctx, "commit", err)
	}
	db.ok()
	return nil
}
