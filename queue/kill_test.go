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
)

// The child half of TestKill9LosesNoJob: it works the queue in
// QUEUE_KILL_DB, appending each job id it runs to QUEUE_KILL_LOG, until
// it is killed.
func TestKill9Child(t *testing.T) {
	db, logPath := os.Getenv("QUEUE_KILL_DB"), os.Getenv("QUEUE_KILL_LOG")
	if db == "" {
		t.Skip("run by TestKill9LosesNoJob")
	}
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	q, err := Open(context.Background(), Config{Path: db, Queues: []config.Queue{killQueue()}})
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
	select {} // until SIGKILL
}

func killQueue() config.Queue {
	q := config.DefaultQueueConfig("default")
	q.Concurrency = 8
	return q
}

// TestKill9LosesNoJob enqueues 1,000 jobs, starts a process working them,
// kills it with SIGKILL mid-run, starts another on the same file, and
// checks that every job ran at least once; duplicates (jobs whose run was
// not recorded as completed before the kill) are reported.
func TestKill9LosesNoJob(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const n = 1000
	dir := t.TempDir()
	db, logPath := filepath.Join(dir, "queue.db"), filepath.Join(dir, "runs.log")
	q, err := Open(context.Background(), Config{Path: db, Queues: []config.Queue{killQueue()}})
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
		cmd.Env = append(os.Environ(), "QUEUE_KILL_DB="+db, "QUEUE_KILL_LOG="+logPath)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	runs := func() (lines int, distinct map[int64]int) {
		distinct = map[int64]int{}
		f, err := os.Open(logPath)
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

	start := time.Now()
	first := child()
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
		t.Fatalf("the first process finished every job (%d runs) before the kill: nothing was tested", atKill)
	}

	t.Logf("killed after %s", time.Since(start))
	second := child()
	defer func() {
		second.Process.Signal(syscall.SIGKILL)
		second.Wait()
	}()
	eventually(t, 300*time.Second, func() error {
		if _, d := runs(); len(d) < n {
			return fmt.Errorf("%d of %d jobs ran", len(d), n)
		}
		return nil
	})
	t.Logf("all ran after %s", time.Since(start))
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
	t.Logf("kill -9 after %d runs; %d jobs, %d runs in all, %d duplicate runs (jobs running or finished but not yet marked completed at the kill)", atKill, len(distinct), lines, dups)
	if dups > atKill {
		// Only a job that ran before the kill can run twice.
		t.Errorf("%d duplicates, but only %d runs happened before the kill", dups, atKill)
	}
}
