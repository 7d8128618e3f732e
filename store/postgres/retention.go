package postgres

import (
	"context"
	"time"
)

// trimmer keeps the change log within Config.ChangeLogMaxAge and
// ChangeLogMaxRows. It runs from Open to Close on a goroutine the DB owns:
// once at start, then every TrimInterval. Every process runs one; their
// trims are idempotent (the trim mark only rises).
func (db *DB) trimmer(ctx context.Context) {
	defer close(db.trimDone)
	t := time.NewTicker(db.cfg.TrimInterval)
	defer t.Stop()
	for {
		if n, upTo, err := db.trimPass(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			db.log.Warn("store/postgres: change log not trimmed", "err", err)
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

// trimPass drops, TrimBatch changes at a time, the oldest changes beyond
// MaxRows or older than MaxAge. Sequence numbers are consecutive and in
// commit order, and each change's time is taken under the same lock, so
// both limits cut the log at one seq.
func (db *DB) trimPass(ctx context.Context) (dropped, upTo int64, err error) {
	var cut, oldest, last int64
	if err := db.pool.QueryRow(ctx, `SELECT l.last, COALESCE((SELECT min(seq) FROM _switchyard_changes), l.last + 1),
		CASE WHEN $1::bigint > 0 THEN l.last - $1::bigint ELSE 0 END
		FROM _switchyard_log l`, db.cfg.ChangeLogMaxRows).Scan(&last, &oldest, &cut); err != nil {
		return 0, 0, db.fail(ctx, "trim", err)
	}
	if db.cfg.ChangeLogMaxAge > 0 {
		var byAge *int64
		if err := db.pool.QueryRow(ctx, "SELECT max(seq) FROM _switchyard_changes WHERE at < clock_timestamp() - $1::interval",
			db.cfg.ChangeLogMaxAge.String()).Scan(&byAge); err != nil {
			return 0, 0, db.fail(ctx, "trim", err)
		}
		if byAge != nil {
			cut = max(cut, *byAge)
		}
	}
	for from := oldest - 1; from < cut; {
		next := min(from+db.cfg.TrimBatch, cut)
		n, err := db.trim(ctx, next)
		if err != nil {
			return dropped, upTo, err
		}
		dropped += n
		upTo, from = next, next
	}
	return dropped, upTo, nil
}
