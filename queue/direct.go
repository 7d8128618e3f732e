package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/semaphore"
)

// direct starts jobs enqueued on SQLite on this process, without River's
// fetch (the design is in docs/ARCHITECTURE.md, "Direct start").
//
// A SQLite file has one process, so every job is enqueued by the process
// that will run it. When a job is enqueued and its queue has a free slot,
// insertBatch inserts it already claimed — state running, attempt 1,
// attempted by this River client, exactly the row River's fetch would
// have left — in the enqueue's own transaction, and starts its handler
// as soon as that transaction commits. Without a free slot the job is
// inserted available and River's fetcher takes it, as before.
//
// The slots are the queue's Concurrency, shared with River's workers
// (worker.Work takes one before running a handler), so a queue never runs
// more than Concurrency handlers. A job that River fetched while every
// slot was taken by a directly started job waits for one; a new job is
// not started directly while River's jobs wait (the semaphore is FIFO and
// TryAcquire fails when someone waits).
//
// A directly started job's end (completed, or retryable, available or
// dead with its error, as River's executor would record it) is recorded
// later, in batches: in the next enqueue's transaction, or by the job
// that ended if no recording is under way. Until then the job is running
// in the database; if the process dies, the next Open puts it back
// (recoverOrphans), so it runs again: at least once, as River's own
// asynchronous completions.
type direct struct {
	q       *Queue
	b       *sqliteBackend
	id      string // the River client's ID: attempted_by of the jobs started here
	slots   map[string]*semaphore.Weighted
	started atomic.Int64 // jobs started directly, for tests and figures
	// stopping ends when Stop begins: River's jobs waiting for a slot
	// then go back to the queue (acquire).
	stopping    context.Context
	endStarting context.CancelFunc

	mu       sync.Mutex
	open     bool // Start ran and Stop has not begun: jobs may start directly
	closed   bool // the database is closed: ends can no longer be recorded
	running  map[int64]context.CancelCauseFunc
	ends     []*riverdriver.JobSetStateIfRunningParams
	flushing bool
	stopped  bool          // cancelAll ran: jobs starting now are cancelled at once
	n        int           // directly started jobs, from their claim to the hand-off of their end
	drained  chan struct{} // closed when n falls to 0 after Stop began
}

// errStop cancels the jobs still running at Stop's deadline; errDiscarded
// the job Discard gave up on.
var (
	errStop      = errors.New("queue: stopped at the shutdown deadline")
	errDiscarded = errors.New("queue: job discarded")
)

// maxEndsPerEnqueue bounds the ends an enqueue's transaction records, so
// that the enqueue stays short; the rest are recorded by the next one or
// by a job's end.
const maxEndsPerEnqueue = 64

// schedulerInterval is River's (maintenance.JobSchedulerIntervalDefault):
// a retry due within it is made available at once (with its scheduled_at
// in the future), a later one retryable, as River's executor does.
const schedulerInterval = 5 * time.Second

func newDirect(q *Queue, b *sqliteBackend) *direct {
	d := &direct{q: q, b: b, id: b.client.ID(), slots: map[string]*semaphore.Weighted{}, running: map[int64]context.CancelCauseFunc{}}
	d.stopping, d.endStarting = context.WithCancel(context.Background())
	for name, qc := range q.queues {
		d.slots[name] = semaphore.NewWeighted(int64(qc.Concurrency))
	}
	return d
}

// start lets jobs start directly (once River runs).
func (d *direct) start() {
	d.mu.Lock()
	d.open = true
	d.mu.Unlock()
}

// insert inserts a batch of jobs: those whose queue has a free slot
// claimed, in one transaction with the ends waiting to be recorded, the
// rest through River. It sets each request's id or error and returns the
// claimed rows, to be started with run once the callers may be told.
func (d *direct) insert(ctx context.Context, batch []*insertReq) []*rivertype.JobRow {
	now := time.Now()
	var claimed, others []*insertReq
	d.mu.Lock()
	for _, r := range batch {
		o := r.p.InsertOpts
		if d.open && !o.ScheduledAt.After(now) && d.slots[o.Queue].TryAcquire(1) {
			d.n++
			claimed = append(claimed, r)
			continue
		}
		others = append(others, r)
	}
	ends := d.takeEnds(maxEndsPerEnqueue)
	d.mu.Unlock()

	var rows []*rivertype.JobRow
	if len(claimed) > 0 || len(ends) > 0 {
		params := make([]*riverdriver.JobInsertFullParams, len(claimed))
		for i, r := range claimed {
			params[i] = d.claimedParams(r.p, now)
		}
		var err error
		rows, err = d.b.commitDirect(ctx, ends, params)
		if err == nil && len(rows) != len(claimed) {
			err = fmt.Errorf("%d jobs inserted, %d returned", len(claimed), len(rows))
		}
		if err != nil {
			d.giveBack(ends)
			for _, r := range claimed {
				r.err = err
				d.slots[r.p.InsertOpts.Queue].Release(1)
				d.done()
			}
			rows = nil
		} else {
			// One statement inserted them in order: ids increase with it.
			slices.SortFunc(rows, func(a, b *rivertype.JobRow) int { return cmp.Compare(a.ID, b.ID) })
			d.mu.Lock()
			for i, r := range claimed {
				r.id = rows[i].ID
				d.running[r.id] = nil // known to Discard from the commit on; run sets its cancel
			}
			d.mu.Unlock()
		}
	}
	if len(others) > 0 {
		params := make([]river.InsertManyParams, len(others))
		for i, r := range others {
			params[i] = r.p
		}
		res, err := d.b.insertMany(ctx, params)
		setIDs(others, res, err)
	}
	return rows
}

// claimedParams is the row of a job inserted as River's fetch would have
// left it: running, attempt 1, attempted by this client now.
func (d *direct) claimedParams(p river.InsertManyParams, now time.Time) *riverdriver.JobInsertFullParams {
	args, _ := json.Marshal(p.Args) // jobArgs: a string and raw JSON that insertParams checked
	return &riverdriver.JobInsertFullParams{
		Attempt:     1,
		AttemptedAt: &now,
		AttemptedBy: []string{d.id},
		CreatedAt:   &now,
		EncodedArgs: args,
		Kind:        p.Args.Kind(),
		MaxAttempts: p.InsertOpts.MaxAttempts,
		Metadata:    []byte("{}"),
		Priority:    1,
		Queue:       p.InsertOpts.Queue,
		ScheduledAt: &now,
		State:       rivertype.JobStateRunning,
		Tags:        []string{},
	}
}

// run runs a claimed job's handler, in a goroutine of its own (it is
// counted in d.n from its claim), then hands its end to be recorded.
func (d *direct) run(row *rivertype.JobRow) {
	defer d.done()
	d.started.Add(1)
	qc := d.q.queues[row.Queue]
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	d.mu.Lock()
	if _, ok := d.running[row.ID]; ok {
		d.running[row.ID] = cancel
	}
	if d.stopped {
		cancel(errStop)
	}
	d.mu.Unlock()

	var args jobArgs
	_ = json.Unmarshal(row.EncodedArgs, &args) // we encoded it
	start := time.Now()
	tctx, tcancel := context.WithTimeout(ctx, time.Duration(qc.Timeout))
	panicVal, trace, err := d.call(tctx, Job{
		ID: row.ID, Queue: row.Queue, Kind: args.K, Attempt: row.Attempt, MaxAttempts: row.MaxAttempts,
		Payload: args.P, CreatedAt: row.CreatedAt,
	})
	tcancel()
	d.slots[row.Queue].Release(1)
	d.mu.Lock()
	delete(d.running, row.ID)
	d.mu.Unlock()

	end := d.end(ctx, row, start, err, panicVal, trace)
	if end == nil {
		return
	}
	d.mu.Lock()
	if d.closed {
		// Stop gave up on this job (its handler outlived the grace
		// period): it stays running and the next Open puts it back.
		d.mu.Unlock()
		return
	}
	d.ends = append(d.ends, end)
	lead := !d.flushing
	d.flushing = true
	d.mu.Unlock()
	if lead {
		d.flush()
	}
}

// call runs the handler, turning a panic into a failed attempt.
func (d *direct) call(ctx context.Context, j Job) (panicVal any, trace string, err error) {
	fn := d.q.handler(j.Kind)
	defer func() {
		if v := recover(); v != nil {
			panicVal, trace = v, string(debug.Stack())
		}
	}()
	return nil, "", fn(ctx, j)
}

// end is what to record of an attempt, as River's executor decides it
// (reportError): completed; put back without an error when Stop cancelled
// it; cancelled on river.JobCancel; dead after its last attempt; else
// retried after backoff.
func (d *direct) end(ctx context.Context, row *rivertype.JobRow, start time.Time, err error, panicVal any, trace string) *riverdriver.JobSetStateIfRunningParams {
	now := time.Now()
	if err == nil && panicVal == nil {
		return riverdriver.JobSetStateCompleted(row.ID, now, nil)
	}
	if errors.Is(context.Cause(ctx), errStop) && errors.Is(err, context.Canceled) {
		return riverdriver.JobSetStateInterrupted(row.ID, now, max(row.Attempt-1, 0), nil)
	}
	eh := d.q.errorHandler()
	msg := ""
	if panicVal != nil {
		eh.HandlePanic(ctx, row, panicVal, trace)
		msg = fmt.Sprint(panicVal)
	} else {
		eh.HandleError(ctx, row, err)
		msg = err.Error()
	}
	errData, merr := json.Marshal(rivertype.AttemptError{At: start, Attempt: row.Attempt, Error: msg, Trace: trace})
	if merr != nil {
		d.q.log.Error("queue: cannot record a failed attempt; the job runs again after a restart", "job", row.ID, "err", merr)
		return nil
	}
	var cancelErr *rivertype.JobCancelError
	switch {
	case errors.As(err, &cancelErr):
		return riverdriver.JobSetStateCancelled(row.ID, now, errData, nil)
	case row.Attempt >= row.MaxAttempts:
		return riverdriver.JobSetStateDiscarded(row.ID, now, errData, nil)
	}
	next := now.Add(backoff(d.q.queues[row.Queue], row.Attempt))
	if next.Sub(now) <= schedulerInterval {
		return riverdriver.JobSetStateErrorAvailable(row.ID, next, errData, nil)
	}
	return riverdriver.JobSetStateErrorRetryable(row.ID, next, errData, nil)
}

// flush records the ends waiting, batch after batch, until none is left;
// the caller set d.flushing. On an error the ends wait for the next
// enqueue, job end or Stop.
func (d *direct) flush() {
	for {
		d.mu.Lock()
		ends := d.takeEnds(0)
		if len(ends) == 0 || d.closed {
			d.giveBackLocked(ends)
			d.flushing = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := d.b.commitDirect(ctx, ends, nil)
		cancel()
		if err != nil {
			d.q.log.Warn("queue: recording the end of jobs failed; retried with the next enqueue", "jobs", len(ends), "err", err)
			d.mu.Lock()
			d.giveBackLocked(ends)
			d.flushing = false
			d.mu.Unlock()
			return
		}
	}
}

// takeEnds takes up to n (0: all) of the ends waiting; d.mu is held.
func (d *direct) takeEnds(n int) []*riverdriver.JobSetStateIfRunningParams {
	if n <= 0 || n > len(d.ends) {
		n = len(d.ends)
	}
	ends := d.ends[:n:n]
	d.ends = d.ends[n:]
	if len(d.ends) == 0 {
		d.ends = nil
	}
	return ends
}

func (d *direct) giveBack(ends []*riverdriver.JobSetStateIfRunningParams) {
	d.mu.Lock()
	d.giveBackLocked(ends)
	d.mu.Unlock()
}

func (d *direct) giveBackLocked(ends []*riverdriver.JobSetStateIfRunningParams) {
	if len(ends) > 0 {
		d.ends = append(ends, d.ends...)
	}
}

// cancel cancels a directly started job that Discard gave up on (River
// does the same for its own running jobs).
func (d *direct) cancel(id int64) {
	d.mu.Lock()
	c := d.running[id]
	d.mu.Unlock()
	if c != nil {
		c(errDiscarded)
	}
}

// done counts a directly started job out.
func (d *direct) done() {
	d.mu.Lock()
	d.n--
	if d.n == 0 && d.drained != nil {
		close(d.drained)
		d.drained = nil
	}
	d.mu.Unlock()
}

// stopStarting makes every new job go through River (which is stopping)
// and returns a channel closed once the directly started jobs ended.
func (d *direct) stopStarting() <-chan struct{} {
	d.endStarting()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open = false
	ch := make(chan struct{})
	if d.n == 0 {
		close(ch)
	} else {
		d.drained = ch
	}
	return ch
}

// cancelAll cancels the jobs still running (Stop's deadline passed).
func (d *direct) cancelAll() {
	d.mu.Lock()
	d.stopped = true
	for _, c := range d.running {
		if c != nil {
			c(errStop)
		}
	}
	d.mu.Unlock()
}

// close records the ends still waiting; later ones are dropped (their
// jobs stay running, and the next Open puts them back).
func (d *direct) close(ctx context.Context) error {
	d.endStarting()
	d.mu.Lock()
	ends := d.takeEnds(0)
	d.closed = true
	d.mu.Unlock()
	if len(ends) == 0 {
		return nil
	}
	if _, err := d.b.commitDirect(ctx, ends, nil); err != nil {
		return fmt.Errorf("queue: recording the end of %d jobs (they run again after a restart): %w", len(ends), err)
	}
	return nil
}

// slot returns the slots of a queue shared with River's workers (nil
// without direct start).
func (q *Queue) slot(queue string) *semaphore.Weighted {
	if q.d == nil {
		return nil
	}
	return q.d.slots[queue]
}

// acquire takes a slot of s for a job River fetched. A job that waits
// for one (every slot taken by directly started jobs) when Stop begins is
// put back without counting the attempt (river.JobSnooze(0), River's
// advice for a job interrupted by a shutdown) and runs after the next
// Start: Stop starts no new job.
func (d *direct) acquire(ctx context.Context, s *semaphore.Weighted) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.stopping, cancel)()
	if err := s.Acquire(actx, 1); err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // River's own cancellation or the job's timeout
		}
		return river.JobSnooze(0)
	}
	if d.stopping.Err() != nil {
		s.Release(1)
		return river.JobSnooze(0)
	}
	return nil
}

// errorHandler logs failed attempts of directly started jobs as River's
// are logged.
func (q *Queue) errorHandler() *errorHandler { return &errorHandler{log: q.log} }

// setStateMany turns River's per-job end parameters into its batch form.
func setStateMany(ends []*riverdriver.JobSetStateIfRunningParams) *riverdriver.JobSetStateIfRunningManyParams {
	p := &riverdriver.JobSetStateIfRunningManyParams{}
	for _, e := range ends {
		p.ID = append(p.ID, e.ID)
		p.Attempt = append(p.Attempt, e.Attempt)
		p.ErrData = append(p.ErrData, e.ErrData)
		p.FinalizedAt = append(p.FinalizedAt, e.FinalizedAt)
		p.MetadataDoMerge = append(p.MetadataDoMerge, e.MetadataDoMerge)
		p.MetadataUpdates = append(p.MetadataUpdates, e.MetadataUpdates)
		p.ScheduledAt = append(p.ScheduledAt, e.ScheduledAt)
		p.State = append(p.State, e.State)
	}
	return p
}
