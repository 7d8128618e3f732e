package queue

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/switchyardhq/switchyard/config"
)

// Backends (Config.Driver).
const (
	// DriverSQLite keeps jobs in a SQLite file (Config.Path), for one
	// process.
	DriverSQLite = "sqlite"
	// DriverPostgres keeps jobs in PostgreSQL (Config.Pool), shared by
	// every process working the same database and schema.
	DriverPostgres = "postgres"
)

// Config configures a Queue.
type Config struct {
	// Driver selects the backend: DriverSQLite (the default) or
	// DriverPostgres.
	Driver string
	// Path is the SQLite file (created if missing); required for
	// DriverSQLite.
	Path string
	// Pool is the PostgreSQL pool (the store's), required for
	// DriverPostgres: River's tables are created in its current schema
	// (the URL's search_path). The Queue borrows it: closing the Queue
	// leaves it open. River keeps one connection of its own out of the
	// pool for notifications, and the Queue another for its liveness
	// lock (see RescueInterval).
	Pool *pgxpool.Pool
	// RescueInterval is how often, on DriverPostgres, the Queue looks for
	// jobs left running by a process that died (its database session
	// ended) and puts them back (default 5 s). Jobs of a process that is
	// alive but stuck are put back by River after the longest queue
	// Timeout plus a minute.
	RescueInterval time.Duration
	// Queues are the queues; each needs a name and valid settings
	// (config.DefaultQueueConfig gives the defaults). At least one.
	Queues []config.Queue
	// PollInterval is how often each queue looks for jobs that it was not
	// told about: retries that came due and jobs another client inserted
	// (default 1 s). Jobs this Queue enqueues start without waiting for it.
	PollInterval time.Duration
	// FetchCooldown is the shortest time between two fetches of one
	// queue (default 2 ms): a job enqueued right after a fetch waits up to
	// this long (on SQLite only a job that found no free slot: the others
	// start without a fetch). River's own default, 100 ms, batches better but puts a
	// 100 ms floor under call → handler latency.
	FetchCooldown time.Duration
	// Logger; nil discards. River's own logs go to it at Warn and above.
	Logger *slog.Logger
}

// Errors.
var (
	// ErrNotFound: no job with that id.
	ErrNotFound = errors.New("queue: job not found")
	// ErrUnknownQueue: Enqueue named a queue that is not configured.
	ErrUnknownQueue = errors.New("queue: unknown queue")
	// ErrUnknownKind: Enqueue named a kind without a handler.
	ErrUnknownKind = errors.New("queue: no handler for this job kind")
	// ErrState: the job is not in a state the operation applies to.
	ErrState = errors.New("queue: job is not in a state that allows this")
	// ErrNoTx: EnqueueTx was given something that is not a transaction of
	// the queue's database (a pgx.Tx on DriverPostgres).
	ErrNoTx = errors.New("queue: not a transaction of the queue's database")
)

// Job is one attempt of a job, as its handler sees it.
type Job struct {
	ID          int64
	Queue       string
	Kind        string
	Attempt     int // 1 on the first run
	MaxAttempts int
	Payload     json.RawMessage
	CreatedAt   time.Time
}

// HandlerFunc runs a job. An error (or a panic, or running past the
// queue's timeout, after which ctx is cancelled) fails the attempt.
type HandlerFunc func(ctx context.Context, j Job) error

// Params describe a job to enqueue.
type Params struct {
	// Queue is a configured queue.
	Queue string
	// Kind names the handler (registered with Handle).
	Kind string
	// Payload is the job's JSON payload.
	Payload json.RawMessage
	// RunAt delays the job until then (zero: now). Delayed jobs are moved
	// to the runnable state by River's scheduler, every few seconds, so
	// they start up to ~5 s late.
	RunAt time.Time
}

// Info is what Jobs, Get, Retry and Discard report about a job.
type Info struct {
	ID          int64           `json:"id"`
	Queue       string          `json:"queue"`
	Kind        string          `json:"kind"`
	State       string          `json:"state"`
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	Payload     json.RawMessage `json:"payload"`
	CreatedAt   time.Time       `json:"created_at"`
	ScheduledAt time.Time       `json:"scheduled_at"`
	FinalizedAt *time.Time      `json:"finalized_at,omitempty"`
	Errors      []AttemptError  `json:"errors,omitempty"`
}

// AttemptError is the failure of one attempt.
type AttemptError struct {
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	Error   string    `json:"error"`
}

// Job states, River's: a dead job (out of attempts) is "discarded".
const (
	StateAvailable = string(rivertype.JobStateAvailable)
	StateScheduled = string(rivertype.JobStateScheduled)
	StateRunning   = string(rivertype.JobStateRunning)
	StateRetryable = string(rivertype.JobStateRetryable)
	StateCompleted = string(rivertype.JobStateCompleted)
	StateCancelled = string(rivertype.JobStateCancelled)
	StateDiscarded = string(rivertype.JobStateDiscarded)
	StatePending   = string(rivertype.JobStatePending)
)

// States lists every job state.
var states = []string{StateAvailable, StateScheduled, StateRunning, StateRetryable, StateCompleted, StateCancelled, StateDiscarded, StatePending}

// Stats counts a queue's jobs by state.
type Stats struct {
	Queue       string           `json:"queue"`
	Concurrency int              `json:"concurrency"`
	Jobs        map[string]int64 `json:"jobs"`
}

// Queue runs named queues of durable jobs. Create it with Open.
type Queue struct {
	cfg    Config
	log    *slog.Logger
	queues map[string]config.Queue
	b      backend

	mu       sync.RWMutex
	handlers map[string]HandlerFunc
	started  bool

	// Group commit: concurrent Enqueues share one transaction (imu guards
	// pending and inserting).
	imu       sync.Mutex
	pending   []*insertReq
	inserting bool

	// d starts jobs enqueued on SQLite without River's fetch (direct.go);
	// nil on PostgreSQL.
	d *direct
}

// insertReq is one Enqueue waiting for its batch. done receives true
// when the job was inserted (id, err set), false when the caller is to
// insert the next batch itself.
type insertReq struct {
	p    river.InsertManyParams
	id   int64
	err  error
	done chan bool
}

// backend is what Queue needs from a River client and its database; one
// implementation per River driver.
type backend interface {
	start(ctx context.Context) error
	stop(ctx context.Context) error
	stopAndCancel(ctx context.Context) error
	insertMany(ctx context.Context, p []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	list(ctx context.Context, params *river.JobListParams) ([]*rivertype.JobRow, error)
	get(ctx context.Context, id int64) (*rivertype.JobRow, error)
	retry(ctx context.Context, id int64) (*rivertype.JobRow, error)
	cancel(ctx context.Context, id int64) (*rivertype.JobRow, error)
	counts(ctx context.Context) (map[string]map[string]int64, error)
	ping(ctx context.Context) error
	close() error
}

// Open opens the backend's database, applies River's migrations, puts
// back the jobs a killed process left running, and prepares the queues;
// no job runs before Start.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.Driver == "" {
		cfg.Driver = DriverSQLite
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.FetchCooldown <= 0 {
		cfg.FetchCooldown = 2 * time.Millisecond
	}
	if cfg.FetchCooldown > cfg.PollInterval {
		return nil, fmt.Errorf("queue: FetchCooldown (%s) must not exceed PollInterval (%s)", cfg.FetchCooldown, cfg.PollInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RescueInterval <= 0 {
		cfg.RescueInterval = 5 * time.Second
	}
	if len(cfg.Queues) == 0 {
		return nil, errors.New("queue: at least one queue is required")
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, queues: map[string]config.Queue{}, handlers: map[string]HandlerFunc{}}
	for _, qc := range cfg.Queues {
		switch {
		case qc.Name == "":
			return nil, errors.New("queue: a queue has no name")
		case qc.Concurrency < 1:
			return nil, fmt.Errorf("queue: %s: Concurrency must be at least 1", qc.Name)
		case qc.MaxAttempts < 1:
			return nil, fmt.Errorf("queue: %s: MaxAttempts must be at least 1", qc.Name)
		case qc.Backoff <= 0 || qc.MaxBackoff < qc.Backoff:
			return nil, fmt.Errorf("queue: %s: Backoff must be > 0 and MaxBackoff at least Backoff", qc.Name)
		case qc.Timeout <= 0:
			return nil, fmt.Errorf("queue: %s: Timeout must be > 0", qc.Name)
		}
		if _, dup := q.queues[qc.Name]; dup {
			return nil, fmt.Errorf("queue: duplicate queue %q", qc.Name)
		}
		q.queues[qc.Name] = qc
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &worker{q: q}); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	rq := make(map[string]river.QueueConfig, len(q.queues))
	var longest time.Duration
	for name, qc := range q.queues {
		rq[name] = river.QueueConfig{MaxWorkers: qc.Concurrency}
		longest = max(longest, time.Duration(qc.Timeout))
	}
	rcfg := &river.Config{
		Queues:            rq,
		Workers:           workers,
		FetchCooldown:     cfg.FetchCooldown,
		FetchPollInterval: cfg.PollInterval,
		// A job running for longer than its timeout plus a margin is
		// stuck (its process died without the kill being seen by Open,
		// as with PostgreSQL and several processes): it is retried.
		RescueStuckJobsAfter: longest + time.Minute,
		ErrorHandler:         &errorHandler{log: cfg.Logger},
		Logger:               slog.New(levelFloor{cfg.Logger.Handler(), slog.LevelWarn}),
		// Completed jobs are kept a day for queue_jobs, dead ones a week.
		CompletedJobRetentionPeriod: 24 * time.Hour,
		DiscardedJobRetentionPeriod: 7 * 24 * time.Hour,
		CancelledJobRetentionPeriod: 24 * time.Hour,
	}
	switch cfg.Driver {
	case DriverSQLite:
		b, err := openSQLite(ctx, cfg.Path, rcfg, cfg.Logger)
		if err != nil {
			return nil, err
		}
		q.b = b
		q.d = newDirect(q, b)
	case DriverPostgres:
		b, err := openPostgres(ctx, cfg.Pool, rcfg, cfg.RescueInterval, cfg.Logger)
		if err != nil {
			return nil, err
		}
		q.b = b
	default:
		return nil, fmt.Errorf("queue: driver %q is not available (%s and %s are)", cfg.Driver, DriverSQLite, DriverPostgres)
	}
	return q, nil
}

// Handle registers the handler of a job kind. It must be called before
// Start; a kind has one handler.
func (q *Queue) Handle(kind string, fn HandlerFunc) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("queue: Handle after Start")
	}
	if kind == "" || fn == nil {
		return errors.New("queue: Handle needs a kind and a function")
	}
	if _, dup := q.handlers[kind]; dup {
		return fmt.Errorf("queue: kind %q already has a handler", kind)
	}
	q.handlers[kind] = fn
	return nil
}

// Start starts working the queues. Jobs left running by a killed
// process were put back by Open and run now.
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	q.started = true
	q.mu.Unlock()
	if err := q.b.start(ctx); err != nil {
		return fmt.Errorf("queue: start: %w", err)
	}
	if q.d != nil {
		q.d.start()
	}
	return nil
}

// Stop drains: no new job starts; running jobs may finish until ctx
// ends, then they are cancelled (they run again after the next Start).
// It closes the database (also for a Queue that was never started).
func (q *Queue) Stop(ctx context.Context) error {
	q.mu.RLock()
	started := q.started
	q.mu.RUnlock()
	if !started {
		return q.b.close()
	}
	var drained <-chan struct{}
	if q.d != nil {
		drained = q.d.stopStarting()
	}
	err := q.b.stop(ctx)
	directDone := true
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			// Cancelled as River's own are below: one whose handler
			// returns soon is put back without an error.
			directDone = false
			q.d.cancelAll()
		}
	}
	if err != nil || !directDone {
		q.log.Warn("queue: jobs still running at the shutdown deadline are cancelled; they run again after a restart", "err", cmp.Or(err, ctx.Err()))
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err != nil {
			err = q.b.stopAndCancel(cctx)
		}
		if !directDone {
			select {
			case <-drained:
			case <-cctx.Done():
				q.log.Warn("queue: jobs still running after being cancelled are left running; they run again after a restart")
			}
		}
		cancel()
	}
	if q.d != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = errors.Join(err, q.d.close(cctx))
		cancel()
	}
	return errors.Join(err, q.b.close())
}

// Close closes the database of a Queue that was never started.
func (q *Queue) Close() error { return q.b.close() }

// Ping checks that the database answers.
func (q *Queue) Ping(ctx context.Context) error { return q.b.ping(ctx) }

// Config returns the settings of a queue.
func (q *Queue) Config(name string) (config.Queue, bool) {
	qc, ok := q.queues[name]
	return qc, ok
}

// insertParams checks a job and returns what River inserts.
func (q *Queue) insertParams(p Params) (river.InsertManyParams, error) {
	qc, ok := q.queues[p.Queue]
	if !ok {
		return river.InsertManyParams{}, fmt.Errorf("%w: %q", ErrUnknownQueue, p.Queue)
	}
	q.mu.RLock()
	_, known := q.handlers[p.Kind]
	q.mu.RUnlock()
	if !known {
		return river.InsertManyParams{}, fmt.Errorf("%w: %q", ErrUnknownKind, p.Kind)
	}
	payload := p.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	return river.InsertManyParams{Args: jobArgs{K: p.Kind, P: payload}, InsertOpts: &river.InsertOpts{
		Queue:       p.Queue,
		MaxAttempts: qc.MaxAttempts,
		ScheduledAt: p.RunAt,
	}}, nil
}

// Enqueue commits a job and returns its id; it runs as soon as a worker
// of its queue is free (or at RunAt). On SQLite, a job whose queue has a
// free slot is committed already claimed and its handler is started
// before Enqueue returns (direct.go).
func (q *Queue) Enqueue(ctx context.Context, p Params) (int64, error) {
	ip, err := q.insertParams(p)
	if err != nil {
		return 0, err
	}
	req := &insertReq{p: ip, done: make(chan bool, 1)}
	q.imu.Lock()
	q.pending = append(q.pending, req)
	lead := !q.inserting
	q.inserting = true
	q.imu.Unlock()
	if !lead && !<-req.done {
		lead = true
	}
	if lead {
		q.insertBatch()
	}
	if req.err != nil {
		return 0, fmt.Errorf("queue: enqueue: %w", req.err)
	}
	return req.id, nil
}

// EnqueueTx inserts a job in tx, an open transaction of the queue's
// database, and returns its id: the job exists if and only if tx commits,
// and no worker sees it before. On DriverPostgres tx is a pgx.Tx on the
// same database and schema (the transaction a resource's InTx hook is
// given, or one of the application's own); anything else, and every
// transaction on DriverSQLite (jobs live in a file of their own there),
// is ErrNoTx.
func (q *Queue) EnqueueTx(ctx context.Context, tx any, p Params) (int64, error) {
	pb, ok := q.b.(*pgBackend)
	ptx, isTx := tx.(pgx.Tx)
	if !ok || !isTx || ptx == nil {
		return 0, fmt.Errorf("%w: %T on the %s driver", ErrNoTx, tx, q.cfg.Driver)
	}
	ip, err := q.insertParams(p)
	if err != nil {
		return 0, err
	}
	res, err := pb.insertTx(ctx, ptx, []river.InsertManyParams{ip})
	if err != nil {
		return 0, fmt.Errorf("queue: enqueue: %w", err)
	}
	if len(res) != 1 || res[0].Job == nil {
		return 0, errors.New("queue: enqueue: no job returned")
	}
	return res[0].Job.ID, nil
}

// Driver returns the backend's driver (DriverSQLite or DriverPostgres).
func (q *Queue) Driver() string { return q.cfg.Driver }

// insertBatch inserts every pending job in one transaction (SQLite
// commits are the cost: under concurrent enqueues this multiplies
// throughput), then hands the next batch to one of the jobs that arrived
// meanwhile, so no caller waits for more than two batches.
func (q *Queue) insertBatch() {
	q.imu.Lock()
	batch := q.pending
	q.pending = nil
	q.imu.Unlock()
	// The batch is everyone's: it does not end with the leader's context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var claimed []*rivertype.JobRow
	if q.d != nil {
		claimed = q.d.insert(ctx, batch)
	} else {
		params := make([]river.InsertManyParams, len(batch))
		for i, r := range batch {
			params[i] = r.p
		}
		res, err := q.b.insertMany(ctx, params)
		setIDs(batch, res, err)
	}
	cancel()
	for _, row := range claimed {
		go q.d.run(row) // owned by q.d: Stop waits for it
	}
	q.imu.Lock()
	if len(q.pending) > 0 {
		q.pending[0].done <- false // it leads the next batch
	} else {
		q.inserting = false
	}
	q.imu.Unlock()
	for _, r := range batch {
		r.done <- true
	}
}

// setIDs gives each request of a batch its job's id, or the error.
func setIDs(batch []*insertReq, res []*rivertype.JobInsertResult, err error) {
	for i, r := range batch {
		switch {
		case err != nil:
			r.err = err
		case i < len(res) && res[i].Job != nil:
			r.id = res[i].Job.ID
		default:
			r.err = errors.New("no job returned")
		}
	}
}

// ListParams select jobs.
type ListParams struct {
	Queue string // "" for every queue
	State string // "" for every state; "dead" is StateDiscarded
	Limit int    // 1..1000, default 100
}

// NormalizeState maps the state names Jobs accepts ("dead" for
// StateDiscarded) to River's, or returns false for an unknown one.
func NormalizeState(s string) (string, bool) {
	if s == "dead" {
		return StateDiscarded, true
	}
	for _, st := range states {
		if s == st {
			return s, true
		}
	}
	return "", false
}

// States returns the job state names, for error messages.
func States() []string { return append([]string{"dead"}, states...) }

// Jobs lists jobs, newest first.
func (q *Queue) Jobs(ctx context.Context, p ListParams) ([]Info, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	p.Limit = min(p.Limit, 1000)
	lp := river.NewJobListParams().First(p.Limit).OrderBy(river.JobListOrderByID, river.SortOrderDesc)
	if p.Queue != "" {
		lp = lp.Queues(p.Queue)
	}
	if p.State != "" {
		st, ok := NormalizeState(p.State)
		if !ok {
			return nil, fmt.Errorf("%w: unknown state %q", ErrState, p.State)
		}
		lp = lp.States(rivertype.JobState(st))
	} else {
		all := make([]rivertype.JobState, len(states))
		for i, s := range states {
			all[i] = rivertype.JobState(s)
		}
		lp = lp.States(all...)
	}
	rows, err := q.b.list(ctx, lp)
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	out := make([]Info, len(rows))
	for i, r := range rows {
		out[i] = q.info(r)
	}
	return out, nil
}

// Get returns a job.
func (q *Queue) Get(ctx context.Context, id int64) (Info, error) {
	row, err := q.b.get(ctx, id)
	if err != nil {
		return Info{}, notFound(err)
	}
	return q.info(row), nil
}

// Retry makes a job that is not running run again now (a dead,
// cancelled, completed, retryable or scheduled one); its attempt count
// starts over. Retrying a running job is ErrState.
func (q *Queue) Retry(ctx context.Context, id int64) (Info, error) {
	cur, err := q.b.get(ctx, id)
	if err != nil {
		return Info{}, notFound(err)
	}
	if cur.State == rivertype.JobStateRunning {
		return Info{}, fmt.Errorf("%w: job %d is running", ErrState, id)
	}
	row, err := q.b.retry(ctx, id)
	if err != nil {
		return Info{}, notFound(err)
	}
	return q.info(row), nil
}

// Discard gives up on a job that has not finished: it will not run again
// (state cancelled; a running job is cancelled when its attempt ends).
// Discarding a finished job (completed, cancelled or dead) is ErrState.
func (q *Queue) Discard(ctx context.Context, id int64) (Info, error) {
	cur, err := q.b.get(ctx, id)
	if err != nil {
		return Info{}, notFound(err)
	}
	switch cur.State {
	case rivertype.JobStateCompleted, rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
		return Info{}, fmt.Errorf("%w: job %d is already %s", ErrState, id, cur.State)
	}
	row, err := q.b.cancel(ctx, id)
	if err != nil {
		return Info{}, notFound(err)
	}
	if q.d != nil && row.State == rivertype.JobStateRunning {
		q.d.cancel(id)
	}
	return q.info(row), nil
}

// Stats counts each configured queue's jobs by state.
func (q *Queue) Stats(ctx context.Context) ([]Stats, error) {
	counts, err := q.b.counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: stats: %w", err)
	}
	out := make([]Stats, 0, len(q.cfg.Queues))
	for _, qc := range q.cfg.Queues {
		jobs := map[string]int64{}
		for _, s := range states {
			jobs[s] = counts[qc.Name][s]
		}
		out = append(out, Stats{Queue: qc.Name, Concurrency: qc.Concurrency, Jobs: jobs})
	}
	return out, nil
}

func notFound(err error) error {
	if errors.Is(err, rivertype.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return fmt.Errorf("queue: %w", err)
}

func (q *Queue) info(r *rivertype.JobRow) Info {
	var args jobArgs
	_ = json.Unmarshal(r.EncodedArgs, &args) // rows of other kinds show an empty kind
	in := Info{
		ID: r.ID, Queue: r.Queue, Kind: args.K, State: string(r.State), Attempt: r.Attempt, MaxAttempts: r.MaxAttempts,
		Payload: q.payload(args.P), CreatedAt: r.CreatedAt, ScheduledAt: r.ScheduledAt, FinalizedAt: r.FinalizedAt,
	}
	for _, e := range r.Errors {
		in.Errors = append(in.Errors, AttemptError{At: e.At, Attempt: e.Attempt, Error: e.Error})
	}
	return in
}

// backoff is the delay before the retry that follows attempt n (1-based):
// Backoff·2^(n-1), capped at MaxBackoff, then a random point between half
// of it and all of it (jitter spreads retries of jobs that failed
// together).
func backoff(qc config.Queue, attempt int) time.Duration {
	d := time.Duration(qc.Backoff)
	maxD := time.Duration(qc.MaxBackoff)
	for i := 1; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	half := d / 2
	return half + rand.N(d-half+1)
}

// payload returns a job's payload as handlers and lists show it: on
// PostgreSQL without the spacing that jsonb adds (the value is the same;
// jsonb also orders an object's keys its own way).
func (q *Queue) payload(raw json.RawMessage) json.RawMessage {
	if q.cfg.Driver != DriverPostgres {
		return raw
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil || b.Len() == len(raw) {
		return raw
	}
	return b.Bytes()
}

// handler returns the handler registered for kind (nil if none).
func (q *Queue) handler(kind string) HandlerFunc {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.handlers[kind]
}

// jobArgs is River's view of every Switchyard job.
type jobArgs struct {
	K string          `json:"kind"`
	P json.RawMessage `json:"payload"`
}

// Kind implements river.JobArgs.
func (jobArgs) Kind() string { return "switchyard" }

// worker runs Switchyard jobs for River.
type worker struct {
	river.WorkerDefaults[jobArgs]
	q *Queue
}

func (w *worker) Work(ctx context.Context, j *river.Job[jobArgs]) error {
	if s := w.q.slot(j.Queue); s != nil {
		// The queue's slots are shared with directly started jobs.
		if err := w.q.d.acquire(ctx, s); err != nil {
			return err
		}
		defer s.Release(1)
	}
	fn := w.q.handler(j.Args.K)
	if fn == nil {
		err := fmt.Errorf("no handler for job kind %q", j.Args.K)
		if w.q.cfg.Driver == DriverPostgres {
			// Another process of the cluster may have it (a rolling
			// upgrade): an ordinary failure, retried with backoff.
			return err
		}
		// A job enqueued by a build that had this kind: retrying cannot
		// help until a build with the handler runs; cancel it (visible).
		return river.JobCancel(err)
	}
	return fn(ctx, Job{
		ID: j.ID, Queue: j.Queue, Kind: j.Args.K, Attempt: j.Attempt, MaxAttempts: j.MaxAttempts,
		Payload: w.q.payload(j.Args.P), CreatedAt: j.CreatedAt,
	})
}

func (w *worker) Timeout(j *river.Job[jobArgs]) time.Duration {
	if qc, ok := w.q.queues[j.Queue]; ok {
		return time.Duration(qc.Timeout)
	}
	return 0
}

func (w *worker) NextRetry(j *river.Job[jobArgs]) time.Time {
	qc, ok := w.q.queues[j.Queue]
	if !ok {
		return time.Time{}
	}
	return time.Now().Add(backoff(qc, j.Attempt))
}

// errorHandler logs failed attempts; panics with their stack.
type errorHandler struct{ log *slog.Logger }

func (h *errorHandler) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	lvl := slog.LevelWarn
	if job.Attempt >= job.MaxAttempts {
		lvl = slog.LevelError // the job is dead now
	}
	h.log.Log(ctx, lvl, "job failed", "queue", job.Queue, "job", job.ID, "attempt", job.Attempt, "max_attempts", job.MaxAttempts, "err", err)
	return nil
}

func (h *errorHandler) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	h.log.Error("job panicked", "queue", job.Queue, "job", job.ID, "attempt", job.Attempt, "panic", fmt.Sprint(panicVal), "stack", trace)
	return nil
}

// levelFloor drops records below a level (River's Info chatter).
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (l levelFloor) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}

func (l levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{l.Handler.WithAttrs(a), l.min}
}

func (l levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{l.Handler.WithGroup(name), l.min}
}
