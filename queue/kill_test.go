package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// The child half of TestKill9LosesNoJob: it works the queue in
// QUEUE_KILL_DB (a SQLite file, or a PostgreSQL URL with
// QUEUE_KILL_DRIVER=postgres), appending each job id it runs to
// QUEUE_KILL_LOG, until it is killed.
func TestKill9Child(t *testing.T) {
	db, logPath := os.Getenv("QUEUE_KILL_DB"), os.Getenv("QUEUE_KILL_LOG")
	if db == "" {
		t.Skip("run by TestKill9LosesNoJob")
	}
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Path: db, Queues: []config.Queue{killQueue()}}
	if os.Getenv("QUEUE_KILL_DRIVER") == DriverPostgres {
		cfg = Config{Driver: DriverPostgres, Pool: testPool(t, db), Queues: cfg.Queues, RescueInterval: 500 * time.Millisecond}
	}
	q, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	q.Handle("work", func(ctx context.Context, j Job) error {
		time.Sleep(time.Millisecond) // the job's own work
		_, err := fmt.Fprintf(f, "%d\n", j.ID)
		return err
	})
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if acks := os.Getenv("QUEUE_KILL_ACKS"); acks != "" {
		// TestKill9WhileEnqueueing: enqueue from 8 goroutines, appending
		// each id once Enqueue returned it (acknowledged), until killed.
		af, err := os.OpenFile(acks, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		for range 8 {
			go func() {
				for {
					id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "work"})
					if err != nil {
						fmt.Fprintln(os.Stderr, "enqueue:", err)
						os.Exit(3)
					}
					fmt.Fprintf(af, "%d\n", id)
				}
			}()
		}
	}
	select {} // until SIGKILL
}

func killQueue() config.Queue {
	q := config.DefaultQueueConfig("default")
	q.Concurrency = 8
	return q
}

// TestKill9LosesNoJob enqueues 1,000 jobs and kills a process working
// them with SIGKILL mid-run; every job must run at least once. On SQLite
// (one process per file) another process then starts on the same file;
// on PostgreSQL two processes work the queue and the survivor, without
// any restart, runs what the killed one left running. Duplicates (jobs
// whose run was not recorded as completed before the kill) are reported.
func TestKill9LosesNoJob(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, driver := range []string{DriverSQLite, DriverPostgres} {
		t.Run(driver, func(t *testing.T) { kill9(t, driver) })
	}
}

func kill9(t *testing.T, driver string) {
	const n = 1000
	dir := t.TempDir()
	db, logPath := filepath.Join(dir, "queue.db"), filepath.Join(dir, "runs.log")
	cfg := Config{Path: db, Queues: []config.Queue{killQueue()}}
	if driver == DriverPostgres {
		db = testenv.PostgresSchema(t)
		cfg = Config{Driver: DriverPostgres, Pool: testPool(t, db), Queues: cfg.Queues}
	}
	q, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	q.Handle("work", func(context.Context, Job) error { return nil })
	want := map[int64]bool{}
	for range n {
		id, err := q.Enqueue(context.Background(), Params{Queue: "default", Kind: "work"})
		if err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.timeout=5m")
		cmd.Env = append(os.Environ(), "QUEUE_KILL_DB="+db, "QUEUE_KILL_LOG="+logPath, "QUEUE_KILL_DRIVER="+driver)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		})
		return cmd
	}
	runs := func() (lines int, distinct map[int64]int) { return readIDs(logPath) }

	start := time.Now()
	first := child()
	if driver == DriverPostgres {
		child() // the survivor, working beside the first
	}
	eventually(t, 180*time.Second, func() error {
		if l, _ := runs(); l < n/4 {
			return fmt.Errorf("%d runs so far", l)
		}
		return nil
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	atKill, _ := runs()
	if atKill >= n {
		t.Fatalf("every job ran (%d runs) before the kill: nothing was tested", atKill)
	}
	killed := time.Now()
	t.Logf("killed after %s", killed.Sub(start))
	if driver == DriverSQLite {
		child() // the next start on the same file
	}
	eventually(t, 300*time.Second, func() error {
		if _, d := runs(); len(d) < n {
			return fmt.Errorf("%d of %d jobs ran", len(d), n)
		}
		return nil
	})
	t.Logf("all ran after %s", time.Since(start))
	if d := time.Since(killed); driver == DriverPostgres && d > time.Minute {
		// River's own rescuer waits for the queue's timeout plus a minute.
		t.Errorf("the survivor ran the killed process's jobs %s after the kill: the liveness check did not put them back", d)
	}
	lines, distinct := runs()
	for id := range want {
		if distinct[id] == 0 {
			t.Errorf("job %d never ran", id)
		}
	}
	dups := 0
	for _, c := range distinct {
		if c > 1 {
			dups += c - 1
		}
	}
	t.Logf("%s: kill -9 after %d runs; %d jobs, %d runs in all, %d duplicate runs (jobs running or finished but not yet marked completed at the kill)", driver, atKill, len(distinct), lines, dups)
	if dups > atKill {
		// Only a job that ran before the kill can run twice.
		t.Errorf("%d duplicates, but only %d runs happened before the kill", dups, atKill)
	}
}

// readIDs reads a file of job ids, one a line, as a kill test's child
// appends them: how many lines, and how many times each id is there.
func readIDs(path string) (lines int, distinct map[int64]int) {
	distinct = map[int64]int{}
	f, err := os.Open(path)
	if err != nil {
		return 0, distinct
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			continue // a line cut by the kill
		}
		lines++
		distinct[id]++
	}
	return lines, distinct
}

// startChild starts TestKill9Child with env, killed when t ends.
func startChild(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

// TestKill9WhileEnqueueing kills a process with SIGKILL while it enqueues
// jobs (from 8 goroutines) and runs them — on SQLite most are started
// directly by the enqueuing process, their ends recorded in batches —
// then starts another process on the same database: every job whose
// Enqueue returned before the kill must run at least once. Duplicate runs
// are reported; jobs committed but not yet acknowledged at the kill may
// run too.
func TestKill9WhileEnqueueing(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, driver := range []string{DriverSQLite, DriverPostgres} {
		t.Run(driver, func(t *testing.T) { kill9Enqueueing(t, driver) })
	}
}

func kill9Enqueueing(t *testing.T, driver string) {
	const minAcks = 500
	dir := t.TempDir()
	db := filepath.Join(dir, "queue.db")
	if driver == DriverPostgres {
		db = testenv.PostgresSchema(t)
	}
	logPath, ackPath := filepath.Join(dir, "runs.log"), filepath.Join(dir, "acks.log")
	env := []string{"QUEUE_KILL_DB=" + db, "QUEUE_KILL_LOG=" + logPath, "QUEUE_KILL_DRIVER=" + driver}
	first := startChild(t, append(env, "QUEUE_KILL_ACKS="+ackPath)...)
	eventually(t, 180*time.Second, func() error {
		if n, _ := readIDs(ackPath); n < minAcks {
			return fmt.Errorf("%d jobs acknowledged so far", n)
		}
		return nil
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	_, acked := readIDs(ackPath)
	runsAtKill, _ := readIDs(logPath)
	startChild(t, env...) // the restart, on the same database
	eventually(t, 300*time.Second, func() error {
		_, ran := readIDs(logPath)
		missing := 0
		for id := range acked {
			if ran[id] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d acknowledged jobs have not run", missing, len(acked))
		}
		return nil
	})
	lines, ran := readIDs(logPath)
	dups, unacked := 0, 0
	for id, c := range ran {
		if c > 1 {
			dups += c - 1
		}
		if acked[id] == 0 {
			unacked++
		}
	}
	for id, c := range acked {
		if c > 1 {
			t.Errorf("job id %d acknowledged %d times", id, c)
		}
	}
	t.Logf("%s: kill -9 after %d acknowledged enqueues and %d runs; after the restart every acknowledged job ran; %d runs in all, %d duplicate runs, %d jobs ran that were committed but not acknowledged at the kill", driver, len(acked), runsAtKill, lines, dups, unacked)
	if dups > runsAtKill {
		// Only a job that ran before the kill can run twice.
		t.Errorf("%d duplicates, but only %d runs happened before the kill", dups, runsAtKill)
	}
}
