package queue

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// pgBackend is River on PostgreSQL with its pgx driver, in a pool the
// Queue borrows (the store's): every process of a cluster works the same
// river_job table, so a job enqueued on one runs on any.
//
// # Jobs of a process that died
//
// River's rescuer puts back a job left "running" only after
// RescueStuckJobsAfter (the longest queue timeout plus a minute), since
// it cannot tell a dead process from a slow job. A process that dies
// (kill -9, a lost machine) loses its database sessions at once, so each
// Queue holds a session-level advisory lock for its life, keyed by a
// number that is also in its River client ID (the last entry of a job's
// attempted_by). Every RescueInterval each Queue puts back the running
// jobs whose last attempt belongs to a client whose lock no session
// holds: they run again within seconds, on any live process.
type pgBackend struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	log    *slog.Logger
	key    int32 // the advisory lock's second key, in the River client ID
	every  time.Duration

	mu   sync.Mutex
	lock *pgx.Conn // holds the advisory lock while the client runs
	stopRescue,
	rescueDone chan struct{}
}

var _ backend = (*pgBackend)(nil)

// livenessClass is the first key of the liveness advisory locks ("SyQ").
const livenessClass = 0x53_79_51

// clientIDPrefix starts the River client IDs of Switchyard's queues:
// "sy.<lock key>.<host>". The rescue reads the key back from a job's
// attempted_by (rescueSQL matches this form).
const clientIDPrefix = "sy."

var schemaRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// openPostgres migrates River's tables into the pool's current schema
// (one process at a time, under an advisory lock) and builds the client.
func openPostgres(ctx context.Context, pool *pgxpool.Pool, rcfg *river.Config, every time.Duration, log *slog.Logger) (*pgBackend, error) {
	if pool == nil {
		return nil, errors.New("queue: Pool is required for the postgres driver")
	}
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	// A schema River accepts is named (its notifications are then the
	// schema's own, so deployments sharing a database in schemas of their
	// own do not wake each other); another is reached through search_path.
	if schemaRE.MatchString(schema) {
		rcfg.Schema = schema
	}
	driver := riverpgxv5.New(pool)
	if err := migratePostgres(ctx, pool, driver, rcfg.Schema, log); err != nil {
		return nil, err
	}
	b := &pgBackend{pool: pool, log: log, every: every}
	for range 100 {
		var k [4]byte
		rand.Read(k[:])
		if b.key = int32(binary.BigEndian.Uint32(k[:]) &^ (1 << 31)); b.key != 0 {
			break
		}
	}
	host, _ := os.Hostname()
	if len(host) > 60 {
		host = host[:60]
	}
	rcfg.ID = fmt.Sprintf("%s%d.%s", clientIDPrefix, b.key, host)
	client, err := river.NewClient[pgx.Tx](driver, rcfg)
	if err != nil {
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	b.client = client
	return b, nil
}

// migrationLock is the advisory lock key under which River's migrations
// run ("SyRivr").
const migrationLock = 0x5379_5269_7672

// migratePostgres applies River's migrations (each in a transaction of
// its own: some cannot share one) while holding a session-level advisory
// lock, so processes starting together migrate one after the other.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, driver *riverpgxv5.Driver, schema string, log *slog.Logger) error {
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema, Logger: slog.New(levelFloor{log.Handler(), slog.LevelWarn})})
	if err != nil {
		return fmt.Errorf("queue: postgres: %w", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("queue: postgres: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		return fmt.Errorf("queue: postgres: migrate: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLock)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // the session's end releases it
		}
	}()
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("queue: postgres: migrate: %w", err)
	}
	return nil
}

// start takes the liveness lock, puts back the jobs of dead processes,
// then starts River and the rescue loop.
func (b *pgBackend) start(ctx context.Context) error {
	if err := b.takeLock(ctx); err != nil {
		return err
	}
	if n, err := b.rescue(ctx); err != nil {
		b.log.Warn("queue: looking for jobs of stopped processes failed", "err", err)
	} else if n > 0 {
		b.log.Warn("queue: jobs left running by a process that stopped run again", "jobs", n)
	}
	if err := b.client.Start(ctx); err != nil {
		b.releaseLock()
		return err
	}
	b.stopRescue, b.rescueDone = make(chan struct{}), make(chan struct{})
	go b.rescueLoop()
	return nil
}

// takeLock takes the liveness lock on a connection of its own, taken out
// of the pool (so the pool never closes or reuses it).
func (b *pgBackend) takeLock(ctx context.Context) error {
	pc, err := b.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("queue: postgres: %w", err)
	}
	conn := pc.Hijack()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", int32(livenessClass), b.key).Scan(&ok); err != nil || !ok {
		conn.Close(context.WithoutCancel(ctx))
		if err == nil {
			// Another live process drew the same number: its ID is ours.
			err = fmt.Errorf("liveness key %d is held by another process; start again", b.key)
		}
		return fmt.Errorf("queue: postgres: %w", err)
	}
	b.mu.Lock()
	b.lock = conn
	b.mu.Unlock()
	return nil
}

func (b *pgBackend) releaseLock() {
	b.mu.Lock()
	conn := b.lock
	b.lock = nil
	b.mu.Unlock()
	if conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx) // the session ends, and its lock with it
	}
}

// rescueLoop puts back the jobs of dead processes every b.every, and
// checks that this process still holds its lock (a connection that broke
// lost it: it is taken again, and meanwhile this process's running jobs
// may have been put back and started elsewhere: at least once).
func (b *pgBackend) rescueLoop() {
	defer close(b.rescueDone)
	t := time.NewTicker(b.every)
	defer t.Stop()
	for {
		select {
		case <-b.stopRescue:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.every)
		b.keepLock(ctx)
		if n, err := b.rescue(ctx); err != nil {
			b.log.Warn("queue: looking for jobs of stopped processes failed", "err", err)
		} else if n > 0 {
			b.log.Warn("queue: jobs left running by a process that stopped run again", "jobs", n)
		}
		cancel()
	}
}

func (b *pgBackend) keepLock(ctx context.Context) {
	b.mu.Lock()
	conn := b.lock
	b.mu.Unlock()
	if conn != nil && conn.Ping(ctx) == nil {
		return
	}
	b.log.Warn("queue: the connection holding this process's liveness lock broke; taking it again")
	b.releaseLock()
	if err := b.takeLock(ctx); err != nil {
		b.log.Error("queue: cannot take the liveness lock again: other processes may run this process's running jobs again", "err", err)
	}
}

// rescueSQL puts back every running job whose last attempt is a
// Switchyard client whose liveness lock no session holds: available
// again (attempts left) or dead (discarded, as River's rescuer does). The
// rows are locked and checked again, so a job that another process put
// back and started meanwhile is left alone.
const rescueSQL = `
WITH dead AS (
	SELECT j.id FROM river_job j,
		LATERAL (SELECT substring(j.attempted_by[cardinality(j.attempted_by)] FROM '^sy\.([0-9]{1,10})\.')::bigint AS k) c
	WHERE j.state = 'running' AND c.k IS NOT NULL AND c.k < 2147483648
		AND NOT EXISTS (
			SELECT 1 FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
				AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
				AND l.classid = $1::bigint::oid AND l.objid = c.k::oid)
	FOR UPDATE OF j SKIP LOCKED
)
UPDATE river_job j SET
	state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded'::river_job_state ELSE 'available'::river_job_state END,
	finalized_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
	scheduled_at = now(),
	errors = array_append(j.errors, jsonb_build_object('at', now(), 'attempt', j.attempt,
		'error', 'the process running this job stopped before it finished (its database session ended)'))
FROM dead WHERE j.id = dead.id AND j.state = 'running'`

// rescue runs rescueSQL and returns how many jobs it put back.
func (b *pgBackend) rescue(ctx context.Context) (int64, error) {
	tag, err := b.pool.Exec(ctx, rescueSQL, int64(livenessClass))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (b *pgBackend) stopLoops() {
	if b.stopRescue != nil {
		close(b.stopRescue)
		<-b.rescueDone
		b.stopRescue = nil
	}
}

func (b *pgBackend) stop(ctx context.Context) error {
	err := b.client.Stop(ctx)
	if err == nil {
		b.stopLoops()
		b.releaseLock()
	}
	return err
}

func (b *pgBackend) stopAndCancel(ctx context.Context) error {
	err := b.client.StopAndCancel(ctx)
	b.stopLoops()
	// Jobs still marked running now are put back by the other processes
	// (or the next start) once the lock is gone.
	b.releaseLock()
	return err
}

func (b *pgBackend) insertMany(ctx context.Context, p []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	return b.client.InsertMany(ctx, p)
}

// insertTx inserts jobs in the caller's transaction.
func (b *pgBackend) insertTx(ctx context.Context, tx pgx.Tx, p []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	return b.client.InsertManyTx(ctx, tx, p)
}

func (b *pgBackend) list(ctx context.Context, p *river.JobListParams) ([]*rivertype.JobRow, error) {
	res, err := b.client.JobList(ctx, p)
	if err != nil {
		return nil, err
	}
	return res.Jobs, nil
}

func (b *pgBackend) get(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return b.client.JobGet(ctx, id)
}

func (b *pgBackend) retry(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return b.client.JobRetry(ctx, id)
}

func (b *pgBackend) cancel(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return b.client.JobCancel(ctx, id)
}

func (b *pgBackend) counts(ctx context.Context) (map[string]map[string]int64, error) {
	rows, err := b.pool.Query(ctx, "SELECT queue, state::text, count(*) FROM river_job GROUP BY queue, state")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]int64{}
	for rows.Next() {
		var q, s string
		var n int64
		if err := rows.Scan(&q, &s, &n); err != nil {
			return nil, err
		}
		if out[q] == nil {
			out[q] = map[string]int64{}
		}
		out[q][s] = n
	}
	return out, rows.Err()
}

func (b *pgBackend) ping(ctx context.Context) error {
	if err := b.pool.Ping(ctx); err != nil {
		return fmt.Errorf("queue: ping: %w", err)
	}
	return nil
}

// close releases the lock; the pool is the caller's.
func (b *pgBackend) close() error {
	b.stopLoops()
	b.releaseLock()
	return nil
}
