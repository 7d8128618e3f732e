package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/storetest"
)

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "test.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// Data and schema survive a reopen, and a reopened store refuses a
// destructive migration the same way.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "re.db")
	db, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	db.Migrate(ctx, []store.Table{storetest.Todos})
	db.Insert(ctx, "todos", store.Row{"title": "persisted"})
	db.Close()
	db, err = Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, []store.Table{{Name: "todos", Columns: storetest.Todos.Columns[:2]}}); err == nil {
		t.Fatal("dropping columns after a reopen was accepted")
	}
	if err := db.Migrate(ctx, []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	rows, _, _ := db.List(ctx, "todos", store.Query{})
	if len(rows) != 1 || rows[0]["title"] != "persisted" {
		t.Fatalf("rows %v", rows)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKill9 writes from a child process, kills it with SIGKILL in the
// middle of its writes, and checks every write it acknowledged is there.
func TestKill9(t *testing.T) {
	if path := os.Getenv("SWITCHYARD_STORE_WRITER"); path != "" {
		writer(path)
		return
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "SWITCHYARD_STORE_WRITER="+path)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []int64
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 300 {
		if id, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
			acked = append(acked, id)
		}
	}
	cmd.Process.Kill() // SIGKILL: no shutdown, no flush
	cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("the writer acknowledged only %d writes", len(acked))
	}
	db, err := Open(context.Background(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(context.Background(), []store.Table{storetest.Todos}); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if _, err := db.Get(context.Background(), "todos", id); err != nil {
			t.Fatalf("acknowledged row %d lost: %v", id, err)
		}
	}
	chs, _ := db.Changes(context.Background(), 0, 100000)
	if len(chs) < len(acked) {
		t.Fatalf("%d changes for %d acknowledged writes", len(chs), len(acked))
	}
}

// writer is the child of TestKill9: it inserts rows forever, printing
// each id once its insert returned.
func writer(path string) {
	ctx := context.Background()
	db, err := Open(ctx, Config{Path: path})
	if err != nil {
		os.Exit(3)
	}
	db.Migrate(ctx, []store.Table{storetest.Todos})
	for i := 0; ; i++ {
		row, _, err := db.Insert(ctx, "todos", store.Row{"title": fmt.Sprint("row ", i)})
		if err != nil {
			os.Exit(4)
		}
		fmt.Println(row["id"])
	}
}

func BenchmarkInsert(b *testing.B) {
	db, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	db.Migrate(ctx, []store.Table{storetest.Todos})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := db.Insert(ctx, "todos", store.Row{"title": "bench", "rank": int64(1), "done": false}); err != nil {
			b.Fatal(err)
		}
	}
}
