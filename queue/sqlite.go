package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"modernc.org/sqlite"

	"github.com/switchyardhq/switchyard/internal/stmtcache"
)

// sqliteBackend is River on a SQLite file with its SQLite driver.
type sqliteBackend struct {
	db     *sql.DB
	driver *riversqlite.Driver
	client *river.Client[*sql.Tx]
}

var _ backend = (*sqliteBackend)(nil)

// openSQLite opens the file (WAL, synchronous=NORMAL: a committed job is
// in the WAL, written to the OS, so it survives kill -9 of this process;
// an OS crash or power loss can drop the commits since the WAL was last
// synced at a checkpoint), migrates River's tables and recovers what a
// killed process left behind. One connection: River's own advice for SQLite,
// which allows one writer at a time anyway.
func openSQLite(ctx context.Context, path string, rcfg *river.Config, log *slog.Logger) (*sqliteBackend, error) {
	if path == "" {
		return nil, errors.New("queue: Path is required for the sqlite driver")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_txlock=immediate", abs)
	connector, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	// River's queries are parsed once per connection, not on every run
	// (internal/stmtcache says why).
	db := sql.OpenDB(stmtcache.Wrap(connector, 0))
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	fail := func(err error) (*sqliteBackend, error) {
		db.Close()
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	driver := riversqlite.New(db)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: slog.New(levelFloor{log.Handler(), slog.LevelWarn})})
	if err != nil {
		return fail(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fail(fmt.Errorf("migrate: %w", err))
	}
	n, err := recoverOrphans(ctx, driver.GetExecutor(), db)
	if err != nil {
		return fail(fmt.Errorf("recover running jobs: %w", err))
	}
	if n > 0 {
		log.Warn("queue: jobs left running by a process that stopped without finishing them run again", "jobs", n)
	}
	client, err := river.NewClient[*sql.Tx](localDriver{driver}, rcfg)
	if err != nil {
		return fail(err)
	}
	return &sqliteBackend{db: db, driver: driver, client: client}, nil
}

// recoverOrphans puts back every job in state running: a SQLite file is
// used by one process, so at open nothing is running it. A job with
// attempts left becomes available now (it runs again: at least once); one
// that was on its last attempt is dead (discarded), as River's own
// rescuer decides. The stale leader row of the dead process is dropped,
// so this process leads (and schedules retries) at once instead of after
// the old lease expires.
func recoverOrphans(ctx context.Context, exec riverdriver.Executor, db *sql.DB) (int, error) {
	if _, err := db.ExecContext(ctx, "DELETE FROM river_leader"); err != nil {
		return 0, err
	}
	total := 0
	horizon := time.Now().Add(time.Hour) // every running job
	for {
		stuck, err := exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{Max: 500, StuckHorizon: horizon})
		if err != nil {
			return total, err
		}
		if len(stuck) == 0 {
			return total, nil
		}
		now := time.Now().UTC()
		p := &riverdriver.JobRescueManyParams{StuckHorizon: horizon}
		for _, j := range stuck {
			e, _ := json.Marshal(rivertype.AttemptError{At: now, Attempt: max(j.Attempt, 0), Error: "the process running this job stopped before it finished (recovered at start)"})
			state, fin := rivertype.JobStateAvailable, (*time.Time)(nil)
			if j.Attempt >= j.MaxAttempts {
				state, fin = rivertype.JobStateDiscarded, &now
			}
			p.ID = append(p.ID, j.ID)
			p.Error = append(p.Error, e)
			p.FinalizedAt = append(p.FinalizedAt, fin)
			p.ScheduledAt = append(p.ScheduledAt, now)
			p.State = append(p.State, string(state))
		}
		if _, err := exec.JobRescueMany(ctx, p); err != nil {
			return total, err
		}
		total += len(stuck)
	}
}

// localDriver is River's SQLite driver, saying it has no listener. The
// SQLite listener polls a notification table every 50 ms, which put a
// 50 ms floor under enqueue → start (measured: call → trigger back p50
// 36 ms at 200 calls/s). Without a listener River tells its producers of
// a job inserted by this client at once, and polls (Config.PollInterval)
// for the rest (retries that came due, scheduled jobs). A SQLite file has
// one process, so every insert is this client's.
type localDriver struct{ *riversqlite.Driver }

func (localDriver) SupportsListener() bool { return false }

func (b *sqliteBackend) start(ctx context.Context) error { return b.client.Start(ctx) }
func (b *sqliteBackend) stop(ctx context.Context) error  { return b.client.Stop(ctx) }
func (b *sqliteBackend) stopAndCancel(ctx context.Context) error {
	return b.client.StopAndCancel(ctx)
}

func (b *sqliteBackend) insertMany(ctx context.Context, p []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	return b.client.InsertMany(ctx, p)
}

// commitDirect records the ends of directly started jobs and inserts
// jobs already claimed, in one transaction (direct.go); it returns the
// inserted rows.
func (b *sqliteBackend) commitDirect(ctx context.Context, ends []*riverdriver.JobSetStateIfRunningParams, jobs []*riverdriver.JobInsertFullParams) ([]*rivertype.JobRow, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() // after Commit: a no-op
	exec := b.driver.UnwrapExecutor(tx)
	if len(ends) > 0 {
		if _, err := exec.JobSetStateIfRunningMany(ctx, setStateMany(ends)); err != nil {
			return nil, fmt.Errorf("record job ends: %w", err)
		}
	}
	var rows []*rivertype.JobRow
	if len(jobs) > 0 {
		if rows, err = exec.JobInsertFullMany(ctx, &riverdriver.JobInsertFullManyParams{Jobs: jobs}); err != nil {
			return nil, fmt.Errorf("insert claimed jobs: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return rows, nil
}

func (b *sqliteBackend) list(ctx context.Context, p *river.JobListParams) ([]*rivertype.JobRow, error) {
	res, err := b.client.JobList(ctx, p)
	if err != nil {
		return nil, err
	}
	return res.Jobs, nil
}

func (b *sqliteBackend) get(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return b.client.JobGet(ctx, id)
}

func (b *sqliteBackend) retry(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return b.client.JobRetry(ctx, id)
}

func (b *sqliteBackend) cancel(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return b.client.JobCancel(ctx, id)
}

// counts reads job counts by queue and state in one query (River has no
// API for it).
func (b *sqliteBackend) counts(ctx context.Context) (map[string]map[string]int64, error) {
	rows, err := b.db.QueryContext(ctx, "SELECT queue, state, count(*) FROM river_job GROUP BY queue, state")
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

func (b *sqliteBackend) ping(ctx context.Context) error {
	var one int
	if err := b.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("queue: ping: %w", err)
	}
	return nil
}

func (b *sqliteBackend) close() error { return b.db.Close() }
