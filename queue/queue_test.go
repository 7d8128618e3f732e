package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func fastQueue(name string) config.Queue {
	q := config.DefaultQueueConfig(name)
	q.Backoff = config.Duration(10 * time.Millisecond)
	q.MaxBackoff = config.Duration(20 * time.Millisecond)
	q.MaxAttempts = 3
	q.Timeout = config.Duration(5 * time.Second)
	return q
}

// testDB is where a test's jobs live: a fresh SQLite file, or a fresh
// PostgreSQL schema of the test database.
type testDB struct {
	driver string
	path   string        // sqlite
	pool   *pgxpool.Pool // postgres
}

// config returns a Config on the testDB's database.
func (b testDB) config(queues ...config.Queue) Config {
	if len(queues) == 0 {
		queues = []config.Queue{fastQueue("default")}
	}
	return Config{Driver: b.driver, Path: b.path, Pool: b.pool, Queues: queues, PollInterval: 50 * time.Millisecond, RescueInterval: 200 * time.Millisecond}
}

// newBackend makes a testDB of a driver for t.
func newBackend(t *testing.T, driver string) testDB {
	t.Helper()
	if driver == DriverSQLite {
		return testDB{driver: driver, path: filepath.Join(t.TempDir(), "queue.db")}
	}
	return testDB{driver: driver, pool: testPool(t, testenv.PostgresSchema(t))}
}

// testPool opens a pool on url, closed when t ends.
func testPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// eachDriver runs f as a subtest per driver (postgres is skipped, or
// fails under CI, without SWITCHYARD_TEST_POSTGRES).
func eachDriver(t *testing.T, f func(t *testing.T, b testDB)) {
	for _, d := range []string{DriverSQLite, DriverPostgres} {
		t.Run(d, func(t *testing.T) { f(t, newBackend(t, d)) })
	}
}

// open opens a queue on the testDB; handlers are registered by setup
// before Start.
func (b testDB) open(t *testing.T, log *slog.Logger, setup func(q *Queue), queues ...config.Queue) *Queue {
	t.Helper()
	cfg := b.config(queues...)
	cfg.Logger = log
	q, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(q)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q.Stop(ctx)
	})
	return q
}

func waitState(t *testing.T, q *Queue, id int64, state string) Info {
	t.Helper()
	var in Info
	eventually(t, 60*time.Second, func() error {
		var err error
		in, err = q.Get(context.Background(), id)
		if err != nil {
			return err
		}
		if in.State != state {
			return fmt.Errorf("job %d is %s (attempt %d), want %s", id, in.State, in.Attempt, state)
		}
		return nil
	})
	return in
}

func TestRunsJobWithPayload(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		got := make(chan Job, 1)
		q := b.open(t, nil, func(q *Queue) {
			q.Handle("echo", func(ctx context.Context, j Job) error { got <- j; return nil })
		})
		id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "echo", Payload: json.RawMessage(`{"a":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case j := <-got:
			if j.ID != id || j.Kind != "echo" || string(j.Payload) != `{"a":1}` || j.Attempt != 1 || j.MaxAttempts != 3 || j.Queue != "default" {
				t.Errorf("job %+v", j)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("job did not run")
		}
		waitState(t, q, id, StateCompleted)
	})
}

func TestEnqueueErrors(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		q := b.open(t, nil, func(q *Queue) {
			q.Handle("k", func(context.Context, Job) error { return nil })
		})
		if _, err := q.Enqueue(context.Background(), Params{Queue: "nope", Kind: "k"}); !errors.Is(err, ErrUnknownQueue) {
			t.Errorf("unknown queue: %v", err)
		}
		if _, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "nope"}); !errors.Is(err, ErrUnknownKind) {
			t.Errorf("unknown kind: %v", err)
		}
		if err := q.Handle("late", func(context.Context, Job) error { return nil }); err == nil {
			t.Error("Handle after Start accepted")
		}
		if _, err := q.Get(context.Background(), 999999); !errors.Is(err, ErrNotFound) {
			t.Errorf("get missing: %v", err)
		}
		if _, err := q.Retry(context.Background(), 999999); !errors.Is(err, ErrNotFound) {
			t.Errorf("retry missing: %v", err)
		}
		if _, err := q.Jobs(context.Background(), ListParams{State: "sleepy"}); !errors.Is(err, ErrState) {
			t.Errorf("bad state: %v", err)
		}
	})
}

func TestRetriesThenDeadThenRetry(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		var runs atomic.Int32
		var failing atomic.Bool
		failing.Store(true)
		q := b.open(t, nil, func(q *Queue) {
			q.Handle("flaky", func(ctx context.Context, j Job) error {
				runs.Add(1)
				if failing.Load() {
					return fmt.Errorf("attempt %d: testDB down", j.Attempt)
				}
				return nil
			})
		})
		id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "flaky"})
		if err != nil {
			t.Fatal(err)
		}
		dead := waitState(t, q, id, StateDiscarded)
		if runs.Load() != 3 || dead.Attempt != 3 || len(dead.Errors) != 3 || !strings.Contains(dead.Errors[2].Error, "attempt 3: testDB down") {
			t.Errorf("runs %d, dead %+v", runs.Load(), dead)
		}
		// Dead jobs are listed as "dead" too.
		list, err := q.Jobs(context.Background(), ListParams{Queue: "default", State: "dead"})
		if err != nil || len(list) != 1 || list[0].ID != id {
			t.Fatalf("dead list %+v %v", list, err)
		}
		stats, err := q.Stats(context.Background())
		if err != nil || len(stats) != 1 || stats[0].Jobs[StateDiscarded] != 1 || stats[0].Jobs[StateCompleted] != 0 {
			t.Fatalf("stats %+v %v", stats, err)
		}
		if _, err := q.Discard(context.Background(), id); !errors.Is(err, ErrState) {
			t.Errorf("discard a dead job: %v", err)
		}
		failing.Store(false)
		if _, err := q.Retry(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		waitState(t, q, id, StateCompleted)
		if runs.Load() != 4 {
			t.Errorf("runs after retry %d", runs.Load())
		}
	})
}

func TestDiscardScheduledJobNeverRuns(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		var runs atomic.Int32
		q := b.open(t, nil, func(q *Queue) {
			q.Handle("later", func(context.Context, Job) error { runs.Add(1); return nil })
		})
		id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "later", RunAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if in, _ := q.Get(context.Background(), id); in.State != StateScheduled {
			t.Fatalf("state %s", in.State)
		}
		in, err := q.Discard(context.Background(), id)
		if err != nil || in.State != StateCancelled {
			t.Fatalf("discard: %+v %v", in, err)
		}
		if runs.Load() != 0 {
			t.Error("a discarded job ran")
		}
	})
}

func TestPanicAndTimeoutFailTheAttemptOnly(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		logs := &syncBuffer{}
		log := slog.New(slog.NewTextHandler(logs, nil))
		qc := fastQueue("default")
		qc.MaxAttempts = 1
		qc.Timeout = config.Duration(100 * time.Millisecond)
		var ok atomic.Int32
		q := b.open(t, log, func(q *Queue) {
			q.Handle("boom", func(context.Context, Job) error { panic("handler bug") })
			q.Handle("slow", func(ctx context.Context, j Job) error {
				<-ctx.Done() // a handler that honours its context
				return ctx.Err()
			})
			q.Handle("fine", func(context.Context, Job) error { ok.Add(1); return nil })
		}, qc)
		boom, _ := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "boom"})
		slow, _ := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "slow"})
		fine, _ := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "fine"})
		bi := waitState(t, q, boom, StateDiscarded)
		s := waitState(t, q, slow, StateDiscarded)
		waitState(t, q, fine, StateCompleted)
		if len(bi.Errors) != 1 || !strings.Contains(bi.Errors[0].Error, "handler bug") {
			t.Errorf("panic error %+v", bi.Errors)
		}
		if len(s.Errors) != 1 || !strings.Contains(s.Errors[0].Error, "deadline") {
			t.Errorf("timeout error %+v", s.Errors)
		}
		out := logs.String()
		if !strings.Contains(out, "job panicked") || !strings.Contains(out, "queue_test.go") {
			t.Errorf("panic not logged with its stack:\n%s", out)
		}
		if ok.Load() != 1 {
			t.Error("the other job did not run")
		}
	})
}

func TestConcurrencyPerQueue(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		qc := fastQueue("one")
		qc.Concurrency = 1
		var cur, peak atomic.Int32
		release := make(chan struct{})
		q := b.open(t, nil, func(q *Queue) {
			q.Handle("k", func(ctx context.Context, j Job) error {
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				cur.Add(-1)
				return nil
			})
		}, qc)
		var ids []int64
		for range 3 {
			id, err := q.Enqueue(context.Background(), Params{Queue: "one", Kind: "k"})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		eventually(t, 60*time.Second, func() error {
			if cur.Load() != 1 {
				return errors.New("no job running")
			}
			return nil
		})
		close(release)
		for _, id := range ids {
			waitState(t, q, id, StateCompleted)
		}
		if peak.Load() != 1 {
			t.Errorf("peak concurrency %d with concurrency 1", peak.Load())
		}
	})
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	qc := config.Queue{Backoff: config.Duration(time.Second), MaxBackoff: config.Duration(10 * time.Second)}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 40: 10 * time.Second} {
		for range 50 {
			d := backoff(qc, attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %s not in [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

func TestDrainLetsRunningJobFinish(t *testing.T) {
	eachDriver(t, func(t *testing.T, b testDB) {
		started := make(chan struct{})
		var finished atomic.Bool
		q, err := Open(context.Background(), b.config())
		if err != nil {
			t.Fatal(err)
		}
		q.Handle("k", func(ctx context.Context, j Job) error {
			close(started)
			time.Sleep(200 * time.Millisecond) // the work itself
			finished.Store(true)
			return nil
		})
		if err := q.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		id, _ := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "k"})
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if !finished.Load() {
			t.Fatal("Stop returned before the running job finished")
		}
		// Reopen: the job is completed, not run again.
		var runs atomic.Int32
		q2 := b.open(t, nil, func(q *Queue) {
			q.Handle("k", func(context.Context, Job) error { runs.Add(1); return nil })
		})
		in, err := q2.Get(context.Background(), id)
		if err != nil || in.State != StateCompleted {
			t.Fatalf("after drain and reopen: %+v %v", in, err)
		}
	})
}
