package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyardhq/switchyard/store"
)

// Capture: a trigger on an existing table records every row change that
// another program commits (psql, Django, a cron job) in a queue table, in
// the same transaction as the change, and wakes the followers with
// pg_notify. Switchyard's own writes mark their transaction
// (switchyard.origin, see logChange) and are not recorded twice.
//
// The trigger takes no lock the app's other transactions wait for: it
// only appends to the queue. One follower at a time (a session advisory
// lock) moves what the queue holds into the change log, in the queue's
// order, giving the changes their sequence numbers (so a record's changes
// keep their commit order, and catch-up with since sees them); the
// followers then read the captured changes from the log.
//
// The follower that moves (the mover) sends each move and the flush that
// makes it durable in one round trip, as two transactions (a pipeline
// with a Sync between them): the move commits without waiting for the
// disk, then the flush, a transaction that takes a transaction ID,
// commits synchronously past it (as for Switchyard's writes; see flush).
// The move sets switchyard.moved for the session when it moved
// something, and the flush and the awake mark are conditioned on it, so a
// poll that finds the queue empty writes nothing. After a move that found
// changes the mover reads the queue again at once, then waits for the
// next poll (the NOTIFY its flush sends for the other processes'
// followers does not wake it: it would poll without a pause while
// changes flow, over 4,000 round trips a second at 2,000 captured
// writes a second, with a worse tail on a busy machine; see
// docs/BENCHMARKS.md). It hands what it moved
// to a goroutine of its own that gives it to fn, over an unbuffered
// channel: the next move (and its flush) runs while fn publishes.

// CaptureTrigger is the name of the trigger on a captured table, and of
// its function.
const CaptureTrigger = "_switchyard_capture"

// NotifyChannel is the channel the capture trigger notifies.
const NotifyChannel = "switchyard_changes"

// captureLock is the session advisory lock of the follower that moves
// the queue (and, with Leader, publishes): one per schema, the second key
// being the hash of the schema's name, so deployments that share a
// database in schemas of their own do not wait for each other.
const captureLock = 0x5379_6370 // "Sycp"

// captureFunction records one row change. TG_ARGV: the resource's name
// (the change log's tbl) and the primary key's column. It runs as its
// owner (SECURITY DEFINER: Switchyard's role), so the app's roles need no
// privilege on the change log, with a fixed search_path and the change
// log's tables named with their schema, so the app's search_path does not
// matter.
func captureFunction(schema string) string {
	q := quote(schema) + "."
	return `CREATE OR REPLACE FUNCTION ` + q + `_switchyard_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	rid bigint; r json; b json; o text;
BEGIN
	IF current_setting('switchyard.origin', true) = '1' THEN
		RETURN NULL; -- a write through Switchyard: logged by its own statement
	END IF;
	IF TG_OP = 'DELETE' THEN
		o := 'delete'; b := row_to_json(OLD); rid := (b->>TG_ARGV[1])::bigint;
	ELSIF TG_OP = 'UPDATE' THEN
		o := 'update'; r := row_to_json(NEW); b := row_to_json(OLD); rid := (r->>TG_ARGV[1])::bigint;
	ELSE
		o := 'create'; r := row_to_json(NEW); rid := (r->>TG_ARGV[1])::bigint;
	END IF;
	-- Wake the followers unless the one that moves the queue is polling
	-- it (it marks itself awake while changes flow): a NOTIFY serialises
	-- the commits of the transactions that send one.
	IF coalesce((SELECT awake_until FROM ` + q + `_switchyard_capture WHERE id = 1), '-infinity') < clock_timestamp() THEN
		PERFORM pg_notify('switchyard_changes', '');
	END IF;
	INSERT INTO ` + q + `_switchyard_capture_queue (tbl, row_id, op, row, before, at)
		VALUES (TG_ARGV[0], rid, o, r, b, clock_timestamp());
	RETURN NULL;
END
$fn$`
}

// CaptureSQL is the SQL that installs capture on an existing table for a
// resource, with Switchyard's tables in schema: what Install runs, for a
// DBA to run when Switchyard's role may not (creating the trigger needs
// to own the table; the function, CREATE on the schema; run it as
// Switchyard's role, or ALTER FUNCTION … OWNER TO it, since the function
// runs as its owner).
func CaptureSQL(resource, source, pkCol, schema string) string {
	return captureFunction(schema) + ";\n" + createTrigger(resource, source, pkCol, schema) + ";"
}

func createTrigger(resource, source, pkCol, schema string) string {
	return "CREATE OR REPLACE TRIGGER " + CaptureTrigger + " AFTER INSERT OR UPDATE OR DELETE ON " + quoteQualified(source) +
		" FOR EACH ROW EXECUTE FUNCTION " + quote(schema) + "._switchyard_capture(" + sqlString(resource) + ", " + sqlString(pkCol) + ")"
}

// Schema returns the schema Switchyard's tables are in (the connection's
// current schema).
func (db *DB) Schema(ctx context.Context) (string, error) {
	var s string
	if err := db.pool.QueryRow(ctx, "SELECT current_schema()").Scan(&s); err != nil {
		return "", db.fail(ctx, "schema", err)
	}
	return s, nil
}

// CaptureStatus is what is installed on a table.
type CaptureStatus struct {
	Table     string // the existing table
	Installed bool   // the trigger exists
	Enabled   bool   // and fires (not disabled with ALTER TABLE … DISABLE TRIGGER)
	Resource  string // the resource it records changes for
	// Definition is the trigger as PostgreSQL shows it.
	Definition string
	// Pending counts captured changes not yet in the change log, or not
	// yet published by a leader (a count that only falls while a
	// Switchyard process with a broker shared by its processes runs).
	Pending int64
}

// PrivilegeError reports that the role may not install capture; SQL is
// what a DBA can run instead.
type PrivilegeError struct {
	Table, Privilege, SQL string
	Err                   error
}

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("store/postgres: installing capture on %s needs %s (%v); a DBA can run instead:\n%s", e.Table, e.Privilege, e.Err, e.SQL)
}

func (e *PrivilegeError) Unwrap() error { return e.Err }

// source is the table a resource is stored in, as written in the
// configuration: the existing table it serves, or its own.
func (t *table) source() string {
	if t.Source != "" {
		return t.Source
	}
	return t.Name
}

// captureTx runs fn in one transaction under the migration lock, with the
// attached table of resource and Switchyard's schema.
func (db *DB) captureTx(ctx context.Context, op, resource string, fn func(tx pgx.Tx, t *table, schema string) error) error {
	t, err := db.table(resource)
	if err != nil {
		return err
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return db.fail(ctx, op, err)
	}
	defer tx.Rollback(ctx)
	var schema string
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return db.fail(ctx, op, err)
	}
	if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return db.fail(ctx, op, err)
	}
	if err := fn(tx, t, schema); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return db.fail(ctx, op, err)
	}
	db.ok()
	return nil
}

// InstallCapture installs (or replaces) the capture trigger on an
// existing table, in one transaction. The resource must be attached
// (Migrate).
func (db *DB) InstallCapture(ctx context.Context, resource string) error {
	return db.captureTx(ctx, "install capture", resource, func(tx pgx.Tx, t *table, schema string) error {
		for _, q := range []string{captureFunction(schema), createTrigger(resource, t.source(), t.pkCol, schema)} {
			if _, err := tx.Exec(ctx, q); err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "42501" {
					return &PrivilegeError{Table: t.source(), Privilege: "to own the table (or the TRIGGER privilege on it) and CREATE on schema " + schema,
						SQL: CaptureSQL(resource, t.source(), t.pkCol, schema), Err: err}
				}
				return db.fail(ctx, "install capture on "+t.source(), err)
			}
		}
		return nil
	})
}

// InstallSQL returns the SQL InstallCapture runs for an attached
// resource, for a DBA to run instead (CaptureSQL).
func (db *DB) InstallSQL(ctx context.Context, resource string) (string, error) {
	t, err := db.table(resource)
	if err != nil {
		return "", err
	}
	schema, err := db.Schema(ctx)
	if err != nil {
		return "", err
	}
	return CaptureSQL(resource, t.source(), t.pkCol, schema), nil
}

// RemoveCapture drops the capture trigger of a resource's table (the
// function too when no other table uses it). The table is left as it was
// before InstallCapture; changes already recorded stay in the log.
func (db *DB) RemoveCapture(ctx context.Context, resource string) error {
	return db.captureTx(ctx, "remove capture", resource, func(tx pgx.Tx, t *table, schema string) error {
		if _, err := tx.Exec(ctx, "DROP TRIGGER IF EXISTS "+CaptureTrigger+" ON "+quoteQualified(t.source())); err != nil {
			return db.fail(ctx, "remove capture from "+t.source(), err)
		}
		fn := quote(schema) + "._switchyard_capture()"
		var others int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_trigger WHERE tgfoid = to_regprocedure($1)", fn).Scan(&others); err != nil {
			return db.fail(ctx, "remove capture", err)
		}
		if others == 0 {
			if _, err := tx.Exec(ctx, "DROP FUNCTION IF EXISTS "+fn); err != nil {
				return db.fail(ctx, "remove capture", err)
			}
		}
		return nil
	})
}

// CaptureStatus says what is installed on a resource's table.
func (db *DB) CaptureStatus(ctx context.Context, resource string) (CaptureStatus, error) {
	t, err := db.table(resource)
	if err != nil {
		return CaptureStatus{}, err
	}
	st := CaptureStatus{Table: t.source()}
	var enabled string
	var args []byte
	err = db.pool.QueryRow(ctx, "SELECT tgenabled::text, pg_get_triggerdef(oid), tgargs FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2",
		quoteQualified(st.Table), CaptureTrigger).Scan(&enabled, &st.Definition, &args)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, db.fail(ctx, "capture status", err)
	default:
		st.Installed, st.Enabled = true, enabled != "D"
		if name, _, ok := strings.Cut(string(args), "\x00"); ok {
			st.Resource = name
		}
	}
	if err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM _switchyard_capture_queue WHERE tbl = $1) +
		(SELECT count(*) FROM _switchyard_changes WHERE captured AND tbl = $1 AND seq > (SELECT published FROM _switchyard_capture))`, t.Name).Scan(&st.Pending); err != nil {
		return st, db.fail(ctx, "capture status", err)
	}
	db.ok()
	return st, nil
}

// FollowOptions configure FollowCaptured.
type FollowOptions struct {
	// Leader makes one follower at a time publish, across every process
	// on the database (a session advisory lock; the others wait to take
	// over): for brokers that carry events between processes (Redis).
	// Without it each process's follower delivers every captured change
	// (a broker of its own: memory).
	Leader bool
	// Poll is how often the queue and the log are read when nothing
	// happens and no notification came (default 250 ms): notifications
	// are a wake-up, the tables are the truth. Active is the interval
	// while changes flow (default 2 ms), kept for Quiet (default 1 s)
	// after the last change seen, then doubling up to Poll; after a move
	// that found changes the queue is read again at once. While it moves
	// changes, the follower keeps itself marked awake for Quiet/2
	// (_switchyard_capture.awake_until, renewed by a move once half of
	// that has passed) and the trigger sends no NOTIFY (NOTIFY serialises
	// the commits of the transactions that send one), so a transaction
	// that saw it awake and commits late is found by polling: within
	// Active for at least Quiet/2 after the mark ran out, within Poll
	// after that.
	Poll   time.Duration
	Active time.Duration
	Quiet  time.Duration
	// Batch bounds the changes handed over at once (default 1,000).
	Batch int
	// Retry is the wait before reconnecting after an error, and between
	// attempts to take the lead (default 1 s).
	Retry time.Duration

	// flushed, when set (tests), is told the transaction ID of each flush
	// the mover runs; moved, of each of its round trips, with the number
	// of changes it moved.
	flushed func(xid int64)
	moved   func(n int)
}

// FollowCaptured hands captured changes (Change.Captured) to fn in the
// log's order, from the moment it starts (Leader: from where the previous
// leader stopped), until ctx is done; then it returns nil. fn runs on a
// goroutine of its own, one batch at a time, so the queue is moved (and
// made durable) while fn publishes the batch before; fn's error stops
// nothing: the same batch is not retried, the error is logged.
func (db *DB) FollowCaptured(ctx context.Context, o FollowOptions, fn func(ctx context.Context, chs []store.Change)) error {
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.Active <= 0 {
		o.Active = 2 * time.Millisecond
	}
	if o.Quiet <= 0 {
		o.Quiet = time.Second
	}
	o.Active = min(o.Active, o.Poll)
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	pos := int64(-1) // not read yet
	for ctx.Err() == nil {
		err := db.follow(ctx, o, &pos, fn)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			db.log.Warn("capture follower: reconnecting", "err", err, "in", o.Retry)
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.Retry):
		}
	}
	return nil
}

// moveCaptured moves up to $1 changes from the capture queue into the
// change log, in the queue's order, with consecutive sequence numbers and
// each record's previous change (Prev), in one statement: the log's
// counter is locked as by Switchyard's writes (commit order), and the
// commit does not wait for the flush (flushCaptured follows, as for
// writes). When it moved something it sets switchyard.moved to $2 (the
// mover's round number) for the session, which flushCaptured and
// markAwake read. It returns the changes it moved, as the log holds them
// (seq, tbl, changeColumns), in seq order.
const moveCaptured = `WITH
	a AS (SELECT set_config('synchronous_commit', 'off', true)),
	m AS (DELETE FROM _switchyard_capture_queue WHERE id IN (SELECT id FROM _switchyard_capture_queue ORDER BY id LIMIT $1) RETURNING *),
	n AS (SELECT count(*) AS c FROM m),
	s AS (UPDATE _switchyard_log SET last = last + (SELECT c FROM n) WHERE id = 1 AND (SELECT c FROM n) > 0
		RETURNING last - (SELECT c FROM n) AS base, set_config('switchyard.moved', $2, false) AS moved),
	o AS (SELECT m.*, s.base + row_number() OVER (ORDER BY m.id) AS seq FROM m, s),
	p AS (SELECT o.*, lag(o.seq) OVER (PARTITION BY o.tbl, o.row_id ORDER BY o.seq) AS prev_in_batch,
		row_number() OVER (PARTITION BY o.tbl, o.row_id ORDER BY o.seq DESC) AS newest FROM o),
	r AS (INSERT INTO _switchyard_row_seq AS rs (tbl, row_id, seq, prev) SELECT tbl, row_id, seq, 0 FROM p WHERE newest = 1
		ON CONFLICT (tbl, row_id) DO UPDATE SET prev = rs.seq, seq = excluded.seq RETURNING tbl, row_id, prev AS last_before),
	i AS (INSERT INTO _switchyard_changes (seq, tbl, row_id, op, row, at, before, captured, prev)
		SELECT p.seq, p.tbl, p.row_id, p.op, p.row, p.at, p.before, true,
			CASE WHEN p.op = 'create' THEN 0 ELSE COALESCE(p.prev_in_batch, r.last_before, 0) END
		FROM p LEFT JOIN r ON r.tbl = p.tbl AND r.row_id = p.row_id, a
		RETURNING seq, tbl, row_id, op, row::text, at, before::text, captured, COALESCE(prev, 0))
SELECT * FROM i ORDER BY seq`

// flushCaptured makes the move of round $1 durable, and only when that
// move moved something: a transaction that takes a transaction ID commits
// synchronously, flushing the WAL past the move's commit (as flush does
// for writes); when nothing moved it takes none and writes nothing.
// flushCapturedNotify also wakes the other processes' followers, in the
// same commit.
const (
	flushCaptured       = "SELECT pg_current_xact_id()::text WHERE current_setting('switchyard.moved', true) = $1"
	flushCapturedNotify = "SELECT pg_current_xact_id()::text, pg_notify('" + NotifyChannel + "', '') WHERE current_setting('switchyard.moved', true) = $1"
)

// markAwake tells the capture triggers that the follower moving the
// queue polls it for the next $1 seconds, so they need not notify; it is
// sent with flushCaptured (the same transaction) when the mark is past
// half its life, and writes only when the move of round $2 moved
// something.
const markAwake = "UPDATE _switchyard_capture SET awake_until = clock_timestamp() + make_interval(secs => $1) WHERE id = 1 AND current_setting('switchyard.moved', true) = $2"

// markPublished records how far the leader has handed changes over, not
// waiting for the disk: a position lost in a crash of PostgreSQL makes
// the next leader publish a few changes again, which subscribers drop
// (per-record order).
const markPublished = "WITH a AS (SELECT set_config('synchronous_commit', 'off', true)) UPDATE _switchyard_capture SET published = $1 FROM a WHERE id = 1 AND published < $1"

// mover is the statements of the follower that holds the capture lock,
// prepared on its connection.
type mover struct {
	conn                    *pgx.Conn
	move, flush, awake, pub *pgconn.StatementDescription
	moveFormats             []int16 // the move's result formats, as pgx reads them
	round                   int64   // the number of the last round trip
	markedAt                time.Time
}

func prepareMover(ctx context.Context, conn *pgx.Conn, leader bool) (*mover, error) {
	m := &mover{conn: conn}
	flush := flushCaptured
	if !leader {
		flush = flushCapturedNotify
	}
	for _, s := range []struct {
		sd   **pgconn.StatementDescription
		name string
		sql  string
	}{{&m.move, "switchyard_capture_move", moveCaptured}, {&m.flush, "switchyard_capture_flush", flush},
		{&m.awake, "switchyard_capture_awake", markAwake}, {&m.pub, "switchyard_capture_published", markPublished}} {
		sd, err := conn.Prepare(ctx, s.name, s.sql)
		if err != nil {
			return nil, fmt.Errorf("store/postgres: capture: prepare %s: %w", s.name, err)
		}
		*s.sd = sd
	}
	for _, f := range m.move.Fields {
		m.moveFormats = append(m.moveFormats, conn.TypeMap().FormatCodeForOID(f.DataTypeOID))
	}
	return m, nil
}

// run is one round trip of the mover: the move (with the published
// position first, when publish is not negative) as one transaction, then,
// after a Sync, its flush (and the awake mark, when awake is positive) as
// another: the flush commits synchronously after the move committed, and
// neither waits for the other's answer. It returns what the move moved.
func (m *mover) run(ctx context.Context, db *DB, o FollowOptions, publish int64, awake time.Duration) (capturedBatch, error) {
	m.round++
	round := []byte(strconv.FormatInt(m.round, 10))
	p := m.conn.PgConn().StartPipeline(ctx)
	if publish >= 0 {
		p.SendQueryStatement(m.pub, [][]byte{[]byte(strconv.FormatInt(publish, 10))}, nil, nil)
	}
	p.SendQueryStatement(m.move, [][]byte{[]byte(strconv.Itoa(o.Batch)), round}, nil, m.moveFormats)
	p.SendPipelineSync()
	p.SendQueryStatement(m.flush, [][]byte{round}, nil, nil)
	if awake > 0 {
		p.SendQueryStatement(m.awake, [][]byte{[]byte(strconv.FormatFloat(awake.Seconds(), 'f', -1, 64)), round}, nil, nil)
	}
	b, err := m.results(db, p, publish >= 0, awake > 0, o.flushed)
	if cerr := p.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return capturedBatch{}, fmt.Errorf("store/postgres: capture: move: %w", err)
	}
	return b, nil
}

// results reads the answers of run's pipeline, in the order sent.
func (m *mover) results(db *DB, p *pgconn.Pipeline, publish, awake bool, flushed func(int64)) (capturedBatch, error) {
	if err := p.Sync(); err != nil {
		return capturedBatch{}, err
	}
	result := func() (*pgconn.ResultReader, error) {
		r, err := p.GetResults()
		if err != nil {
			return nil, err
		}
		rr, ok := r.(*pgconn.ResultReader)
		if !ok {
			return nil, fmt.Errorf("pipeline: a statement's result expected, got %T", r)
		}
		return rr, nil
	}
	sync := func() error {
		r, err := p.GetResults()
		if err != nil {
			return err
		}
		if _, ok := r.(*pgconn.PipelineSync); !ok {
			return fmt.Errorf("pipeline: a sync expected, got %T", r)
		}
		return nil
	}
	if publish {
		rr, err := result()
		if err != nil {
			return capturedBatch{}, err
		}
		if _, err := rr.Close(); err != nil {
			return capturedBatch{}, err
		}
	}
	rr, err := result()
	if err != nil {
		return capturedBatch{}, err
	}
	b, err := db.collect(pgx.RowsFromResultReader(m.conn.TypeMap(), rr))
	if err != nil {
		return capturedBatch{}, err
	}
	if err := sync(); err != nil {
		return capturedBatch{}, err
	}
	if rr, err = result(); err != nil {
		return capturedBatch{}, err
	}
	var xid []byte
	for rr.NextRow() {
		xid = append(xid[:0], rr.Values()[0]...)
	}
	if _, err := rr.Close(); err != nil {
		return capturedBatch{}, err
	}
	if xid != nil && flushed != nil {
		n, _ := strconv.ParseInt(string(xid), 10, 64)
		flushed(n)
	}
	if awake {
		if rr, err = result(); err != nil {
			return capturedBatch{}, err
		}
		tag, err := rr.Close()
		if err != nil {
			return capturedBatch{}, err
		}
		if tag.RowsAffected() == 1 {
			m.markedAt = time.Now()
		}
	}
	return b, sync()
}

// follow runs one connection's worth of following. Whoever holds the
// capture lock moves the queue into the log; with Leader only it hands
// the changes over, without it every process does. fn runs on a
// goroutine of follow's, which it stops before it returns.
func (db *DB) follow(ctx context.Context, o FollowOptions, pos *int64, fn func(context.Context, []store.Change)) error {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	if *pos < 0 && !o.Leader {
		if err := conn.QueryRow(ctx, "SELECT last FROM _switchyard_log WHERE id = 1").Scan(pos); err != nil {
			return err
		}
	}
	m, err := prepareMover(ctx, conn, o.Leader)
	if err != nil {
		return err
	}

	// Delivery: batches go to fn on a goroutine of their own, so the next
	// move does not wait for fn; the hand-off is unbuffered, so at most one
	// batch waits for fn while it publishes the one before.
	handoff := make(chan capturedBatch)
	var delivered atomic.Int64 // the last change fn was given
	delivered.Store(*pos)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range handoff {
			if len(b.chs) > 0 {
				fn(ctx, b.chs)
			}
			delivered.Store(b.last)
		}
	}()
	isMover := false
	published := int64(-1) // the position last written as the leader's
	defer func() {
		close(handoff)
		<-done
		if isMover && o.Leader && delivered.Load() > published {
			// The leader's last word: where the next one resumes.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			conn.Exec(wctx, markPublished, delivered.Load())
		}
	}()
	hand := func(b capturedBatch) bool {
		if b.n == 0 {
			return true
		}
		select {
		case handoff <- b:
			*pos = b.last
			return true
		case <-ctx.Done():
			return false
		}
	}

	caughtUp := false // the mover has handed over every captured change before its next move
	var nextTry time.Time
	idle := o.Active       // the wait before the next read when nothing comes
	var lastSeen time.Time // when a change was last moved or handed over
	life := o.Quiet / 2    // of the awake mark
	for {
		if !isMover && !time.Now().Before(nextTry) {
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int, hashtext(current_schema()))", int32(captureLock)).Scan(&isMover); err != nil {
				return err
			}
			nextTry = time.Now().Add(o.Retry)
			caughtUp = false // the last mover may have moved changes not handed over yet
			if isMover && o.Leader {
				// Resume where the last leader stopped, or where this
				// process stopped when that is further (the published
				// position is written after the changes are handed over).
				if err := conn.QueryRow(ctx, "SELECT published FROM _switchyard_capture WHERE id = 1").Scan(&published); err != nil {
					return err
				}
				*pos = max(*pos, published)
				delivered.Store(*pos)
				db.log.Info("capture follower: publishing captured changes", "from", *pos)
			}
		}
		more := false
		handed := false
		if isMover {
			publish := int64(-1)
			if d := delivered.Load(); o.Leader && d > published {
				publish = d
			}
			awake := time.Duration(0)
			if time.Since(m.markedAt) >= life/2 {
				awake = life
			}
			b, err := m.run(ctx, db, o, publish, awake)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if publish >= 0 {
				published = publish
			}
			if o.moved != nil {
				o.moved(b.n)
			}
			if b.n > 0 {
				lastSeen = time.Now()
				more = true // read again at once: more may have committed meanwhile
			}
			if caughtUp {
				// What the move returned is everything captured after pos:
				// it is handed over without reading the log again.
				if !hand(b) {
					return nil
				}
				handed = true
			}
		}
		if !handed && (isMover || !o.Leader) {
			b, err := db.readCaptured(ctx, conn, o, *pos)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if !hand(b) {
				return nil
			}
			more = more || b.n == o.Batch
			if b.n > 0 {
				lastSeen = time.Now()
			}
			caughtUp = isMover && b.n < o.Batch
		}
		if more {
			continue
		}
		if time.Since(lastSeen) < o.Quiet {
			idle = o.Active // changes flow: poll at once
		}
		wait := idle
		idle = min(idle*2, o.Poll)
		if !isMover {
			wait = min(wait, time.Until(nextTry)+time.Millisecond)
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		for {
			// The mover's own flush wakes the other processes' followers;
			// it does not wake the mover itself (that would make it poll
			// without a pause while changes flow).
			var n *pgconn.Notification
			n, err = conn.WaitForNotification(wctx)
			if err != nil || n.PID != conn.PgConn().PID() {
				break
			}
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
			return err
		}
	}
}

// capturedBatch is captured changes read from the log, in its order.
type capturedBatch struct {
	chs  []store.Change // those of the tables this process serves
	n    int            // changes read, served or not
	last int64          // the last one's seq
}

// collect reads captured changes (seq, tbl, changeColumns), in seq order.
func (db *DB) collect(rows pgx.Rows) (capturedBatch, error) {
	var b capturedBatch
	defer rows.Close()
	for rows.Next() {
		c, err := db.scanChange(rows, "")
		b.n, b.last = b.n+1, c.Seq
		if errors.Is(err, store.ErrNotFound) {
			continue // a table this process does not serve
		}
		if err != nil {
			return capturedBatch{}, err
		}
		b.chs = append(b.chs, c)
	}
	rows.Close()
	return b, rows.Err()
}

// readCaptured reads the captured changes after pos from the log.
func (db *DB) readCaptured(ctx context.Context, conn *pgx.Conn, o FollowOptions, pos int64) (capturedBatch, error) {
	rows, err := conn.Query(ctx, "SELECT seq, tbl, "+changeColumns+" FROM _switchyard_changes WHERE captured AND seq > $1 ORDER BY seq LIMIT $2", pos, o.Batch)
	if err != nil {
		return capturedBatch{}, err
	}
	return db.collect(rows)
}
