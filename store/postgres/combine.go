package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyardhq/switchyard/store"
)

// Concurrent inserts into one table, with the same columns, are combined
// into one multi-row statement (write combining): while a table's insert
// statement runs, the inserts that arrive queue up, and the first of them
// runs them all in the next statement as soon as it returns. An insert
// that finds no statement running runs at once, alone, so combining adds
// no wait when writes do not overlap.
//
// A statement costs PostgreSQL about the same CPU for one row as for
// eight (executor setup, the change log counter's row lock, the commit),
// so under concurrent inserts the database's CPU per write falls several
// times (docs/BENCHMARKS.md). The rows keep their own change records and
// consecutive sequence numbers, in the order of the statement's VALUES;
// each caller gets its own row and change, and one flush makes the whole
// statement durable.
//
// If the combined statement fails with an error of the database (a
// unique or check constraint, a bad value: one row may be at fault), it
// ran as one transaction and changed nothing: each insert runs again
// alone, to get its own answer.

// insertGroup is the inserts of one table and column set: whether a
// statement of theirs runs, and those waiting for the next one.
type insertGroup struct {
	busy  bool
	queue []*pendingInsert
}

// pendingInsert is one caller's insert waiting in a group.
type pendingInsert struct {
	args  []any
	ready chan insertOutcome // one outcome; buffered
}

// insertOutcome is what a waiting insert is told.
type insertOutcome struct {
	lead  []*pendingInsert // run this batch (the caller is its first member)
	alone bool             // run alone (the combined statement was refused)
	row   store.Row
	ch    store.Change
	err   error
	flush *batchFlush // closes when the statement is durable
}

// batchFlush is the flush of one combined statement.
type batchFlush struct {
	done chan struct{}
	err  error
}

// maxParams is PostgreSQL's limit on a statement's parameters.
const maxParams = 65535

// batchTimeout bounds a combined statement and its flush: they run for
// several callers, so no one caller's context may cancel them.
const batchTimeout = 30 * time.Second

// insertCombined runs an insert through its table's group.
func (db *DB) insertCombined(ctx context.Context, t *table, cols []string, args []any) (store.Row, store.Change, error) {
	key := t.Name + "\x00" + strings.Join(cols, "\x00")
	p := &pendingInsert{args: args, ready: make(chan insertOutcome, 1)}
	db.gmu.Lock()
	g := db.groups[key]
	if g == nil {
		g = &insertGroup{}
		db.groups[key] = g
	}
	if !g.busy {
		g.busy = true
		db.gmu.Unlock()
		return db.leadInserts(ctx, t, cols, key, []*pendingInsert{p})
	}
	g.queue = append(g.queue, p)
	db.gmu.Unlock()

	var out insertOutcome
	select {
	case out = <-p.ready:
	case <-ctx.Done():
		db.gmu.Lock()
		if i := slices.Index(g.queue, p); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
			db.gmu.Unlock()
			return nil, store.Change{}, fmt.Errorf("store/postgres: create %s: %w", t.Name, ctx.Err())
		}
		db.gmu.Unlock()
		// Taken into a statement: its outcome must be known.
		out = <-p.ready
	}
	switch {
	case out.lead != nil:
		return db.leadInserts(ctx, t, cols, key, out.lead)
	case out.alone:
		return db.insertOne(ctx, t, cols, args)
	case out.err != nil:
		return nil, store.Change{}, out.err
	}
	if fn := store.Committed(ctx); fn != nil {
		fn(out.ch, false)
	}
	<-out.flush.done
	if out.flush.err != nil {
		return nil, store.Change{}, out.flush.err
	}
	return out.row, out.ch, nil
}

// handOff ends a group's statement: the inserts that queued meanwhile
// (up to the batch limit) become the next statement, led by the first of
// them; with none queued the group is idle.
func (db *DB) handOff(key string, limit int) {
	db.gmu.Lock()
	g := db.groups[key]
	if len(g.queue) == 0 {
		delete(db.groups, key)
		db.gmu.Unlock()
		return
	}
	n := min(len(g.queue), limit)
	next := slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	db.gmu.Unlock()
	next[0].ready <- insertOutcome{lead: next}
}

// batchLimit is how many rows of cols one statement may insert.
func (db *DB) batchLimit(cols []string) int {
	return max(1, min(db.cfg.InsertBatch, (maxParams-2)/max(1, len(cols))))
}

// leadInserts runs batch (its first member is the caller) as one
// statement, hands the group to the next batch, tells the other members
// their outcome, and flushes.
func (db *DB) leadInserts(ctx context.Context, t *table, cols []string, key string, batch []*pendingInsert) (store.Row, store.Change, error) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	rows, changes, err := db.insertBatch(bctx, t, cols, batch)
	db.handOff(key, db.batchLimit(cols))
	if err != nil {
		var pe *pgconn.PgError
		if len(batch) > 1 && errors.As(err, &pe) && !isConnectionError(err) {
			for _, p := range batch[1:] {
				p.ready <- insertOutcome{alone: true}
			}
			return db.insertOne(ctx, t, cols, batch[0].args)
		}
		err = db.writeError(bctx, t, store.OpCreate, 0, err)
		for _, p := range batch[1:] {
			p.ready <- insertOutcome{err: err}
		}
		return nil, store.Change{}, err
	}
	if len(batch) > 1 {
		db.batches.Add(1)
		db.batchRows.Add(int64(len(batch)))
	}
	f := &batchFlush{done: make(chan struct{})}
	for i, p := range batch[1:] {
		p.ready <- insertOutcome{row: rows[i+1], ch: changes[i+1], flush: f}
	}
	if fn := store.Committed(ctx); fn != nil {
		fn(changes[0], false)
	}
	if err := db.flush(bctx); err != nil {
		f.err = db.fail(bctx, "create "+t.Name, err)
	} else {
		db.ok()
	}
	close(f.done)
	if f.err != nil {
		return nil, store.Change{}, f.err
	}
	return rows[0], changes[0], nil
}

// insertBatch runs one statement inserting every member's row, and
// returns the rows and changes in the members' order. It does not flush.
func (db *DB) insertBatch(ctx context.Context, t *table, cols []string, batch []*pendingInsert) ([]store.Row, []store.Change, error) {
	n := len(batch)
	args := make([]any, 0, 2+n*len(cols))
	args = append(args, t.Name, string(store.OpCreate))
	var b strings.Builder
	b.WriteString("WITH w AS (INSERT INTO ")
	b.WriteString(t.sql)
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c))
	}
	b.WriteString(") VALUES ")
	for r, p := range batch {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i, c := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, p.args[i])
			b.WriteString(t.placeholder(c, param(len(args))))
		}
		b.WriteByte(')')
	}
	b.WriteString(" RETURNING *)")
	b.WriteString(t.logChanges)

	res, err := db.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, err
	}
	changes := make([]store.Change, 0, n)
	raws := make([][]byte, 0, n)
	for res.Next() {
		var (
			ch  store.Change
			raw []byte
			at  time.Time
		)
		if err := res.Scan(&ch.Seq, &ch.ID, &at, &raw); err != nil {
			res.Close()
			return nil, nil, err
		}
		ch.Table, ch.Op, ch.Time = t.Name, store.OpCreate, at.UTC()
		changes = append(changes, ch)
		raws = append(raws, raw)
	}
	if err := res.Err(); err != nil {
		return nil, nil, err
	}
	if len(changes) != n {
		return nil, nil, fmt.Errorf("store/postgres: create %s: %d rows inserted for %d", t.Name, len(changes), n)
	}
	// The sequence numbers follow the VALUES order (see logChanges).
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(changes[a].Seq - changes[b].Seq) })
	rows := make([]store.Row, n)
	sorted := make([]store.Change, n)
	for i, j := range order {
		row, err := decodeRow(t, raws[j])
		if err != nil {
			return nil, nil, err
		}
		changes[j].Row = row
		rows[i], sorted[i] = row, changes[j]
	}
	return rows, sorted, nil
}

// logChanges is logChange for a multi-row insert: the rows of CTE "w",
// numbered in the order the INSERT returned them (its VALUES order, as
// PostgreSQL's executor produces them; Django's bulk_create relies on the
// same), take consecutive sequence numbers from one increment of the
// counter. It returns each change's sequence number, row id, time and
// row as JSON.
const logChanges = `,
	o AS (SELECT w.id AS id, row_to_json(w) AS j, row_number() OVER () AS n FROM w),
	a AS (SELECT set_config('synchronous_commit', 'off', true), set_config('switchyard.origin', '1', true)),
	s AS (UPDATE _switchyard_log SET last = last + (SELECT count(*) FROM o) WHERE id = 1 AND EXISTS (SELECT 1 FROM o)
		RETURNING last - (SELECT count(*) FROM o) AS base),
	p AS (INSERT INTO _switchyard_row_seq AS r (tbl, row_id, seq, prev) SELECT $1, o.id, s.base + o.n, 0 FROM o, s
		ON CONFLICT (tbl, row_id) DO UPDATE SET prev = r.seq, seq = excluded.seq)
INSERT INTO _switchyard_changes (seq, tbl, row_id, op, row, at)
SELECT s.base + o.n, $1, o.id, $2, o.j, clock_timestamp() FROM o, s, a
RETURNING seq, row_id, at, row`
