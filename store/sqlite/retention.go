package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Defaults of the change-log trimmer.
const (
	defaultTrimInterval = time.Minute
	defaultTrimBatch    = 500
)

// trimmer drops the changes that fall outside the retention of
// Config.ChangeLogMaxAge and Config.ChangeLogMaxRows. It runs from Open to
// Close on a goroutine the DB owns: once at start, then every
// TrimInterval.
//
// It trims from the oldest end only, so RowChanges still reads how far the
// log was trimmed from its oldest entry, and in transactions of at most
// TrimBatch changes on the single writer connection: a write waits for at
// most one small batch, never for a whole pass.
func (db *DB) trimmer(ctx context.Context) {
	defer close(db.trimDone)
	t := time.NewTicker(db.cfg.TrimInterval)
	defer t.Stop()
	for {
		if n, upTo, err := db.trimPass(ctx, time.Now()); err != nil {
			if ctx.Err() != nil {
				return
			}
			db.log.Warn("store/sqlite: change log not trimmed", "err", err)
		} else if n > 0 {
			db.log.Info("change log trimmed", "changes", n, "up_to_seq", upTo)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// trimPass drops, batch by batch, the oldest changes beyond MaxRows or
// older than MaxAge at now. It returns how many it dropped and the Seq of
// the last one.
func (db *DB) trimPass(ctx context.Context, now time.Time) (dropped, upTo int64, err error) {
	var rowsCut int64 // changes with Seq <= rowsCut are beyond MaxRows
	if db.cfg.ChangeLogMaxRows > 0 {
		var newest sql.NullInt64
		if err := db.r.QueryRowContext(ctx, "SELECT max(seq) FROM _switchyard_changes").Scan(&newest); err != nil {
			return 0, 0, fmt.Errorf("store/sqlite: trim: %w", err)
		}
		// Sequence numbers are consecutive (one writer, AUTOINCREMENT), so
		// the newest MaxRows changes are those above newest - MaxRows.
		rowsCut = newest.Int64 - db.cfg.ChangeLogMaxRows
	}
	var cutoff time.Time
	if db.cfg.ChangeLogMaxAge > 0 {
		cutoff = now.Add(-db.cfg.ChangeLogMaxAge)
	}
	for {
		last, n, err := db.trimBatch(ctx, rowsCut, cutoff)
		if err != nil {
			return dropped, upTo, err
		}
		if n == 0 {
			return dropped, upTo, nil
		}
		dropped += n
		upTo = last
	}
}

// trimBatch drops the oldest run of at most TrimBatch changes that are
// beyond rowsCut or older than cutoff (zero: no age limit), in one short
// write transaction. It returns the Seq of the last change dropped and how
// many were dropped (0 when the oldest change is to be kept).
func (db *DB) trimBatch(ctx context.Context, rowsCut int64, cutoff time.Time) (int64, int64, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT seq, at FROM _switchyard_changes ORDER BY seq LIMIT ?", db.cfg.TrimBatch)
	if err != nil {
		return 0, 0, fmt.Errorf("store/sqlite: trim: %w", err)
	}
	var last int64
	for rows.Next() {
		var seq int64
		var at string
		if err := rows.Scan(&seq, &at); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("store/sqlite: trim: %w", err)
		}
		old := false
		if !cutoff.IsZero() {
			t, err := time.Parse(time.RFC3339Nano, at)
			old = err == nil && t.Before(cutoff)
		}
		if seq > rowsCut && !old {
			break // the oldest change to keep: everything after it stays too
		}
		last = seq
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("store/sqlite: trim: %w", err)
	}
	if last == 0 {
		return 0, 0, nil
	}
	res, err := db.w.ExecContext(ctx, "DELETE FROM _switchyard_changes WHERE seq <= ?", last)
	if err != nil {
		return 0, 0, fmt.Errorf("store/sqlite: trim: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, 0, fmt.Errorf("store/sqlite: trim: %w", err)
	}
	// n is 0 when another trim (TrimChanges) got there first: the pass
	// ends.
	return last, n, nil
}
