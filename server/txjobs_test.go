package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store"
)

// ordersConfig declares the orders resource on the PostgreSQL store at
// pgURL, with fast retries.
func ordersConfig(pgURL string) func(*config.Config) {
	return func(c *config.Config) {
		c.Store.Driver, c.Store.URL = config.StorePostgres, config.Secret(pgURL)
		c.APIKeys = []config.Secret{testAPIKey}
		c.Resources = []config.Resource{{Name: "orders", Fields: []config.Field{{Name: "item", Type: "string"}}}}
		q := config.DefaultQueueConfig("default")
		q.Backoff, q.MaxBackoff, q.Timeout = config.Duration(10*time.Millisecond), config.Duration(20*time.Millisecond), config.Duration(5*time.Second)
		c.Queues = []config.Queue{q}
	}
}

// enqueueOrder is an InTx hook: it enqueues order.placed for the order
// in the write's transaction, then refuses items named "refuse" (after
// the enqueue: the rollback must take the job with it).
func enqueueOrder(srv **Server) func(ctx context.Context, tx store.Tx, ev resource.Event) error {
	return func(ctx context.Context, tx store.Tx, ev resource.Event) error {
		if ev.Op != store.OpCreate {
			return nil
		}
		payload, _ := json.Marshal(map[string]int64{"order": ev.PK})
		if _, err := (*srv).Queue().EnqueueTx(ctx, tx, queue.Params{Queue: "default", Kind: "order.placed", Payload: payload}); err != nil {
			return err
		}
		if ev.Row["item"] == "refuse" {
			return &resource.ValidationError{Fields: map[string][]string{"item": {"refused after the job was enqueued"}}}
		}
		return nil
	}
}

// A resource InTx hook enqueues in the write's transaction: a write that
// rolls back (the hook refuses it after enqueuing) leaves no job; each
// committed write leaves exactly one, which runs once. A resource write
// from inside the hook is refused instead of deadlocking.
func TestResourceInTxHookEnqueues(t *testing.T) {
	var srv *Server
	var nested atomic.Value
	hooks := resource.Hooks{InTx: func(ctx context.Context, tx store.Tx, ev resource.Event) error {
		if ev.Row["item"] == "nested" {
			_, err := srv.Resources().Create(ctx, "orders", resource.AsServer(), json.RawMessage(`{"item": "inner"}`))
			nested.Store(fmt.Sprint(err))
			return nil
		}
		return enqueueOrder(&srv)(ctx, tx, ev)
	}}
	pg := testenv.PostgresSchema(t)
	cfg := config.Default()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	ordersConfig(pg)(&cfg)
	var err error
	if srv, err = New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil)), ResourceHooks: map[string]resource.Hooks{"orders": hooks}}); err != nil {
		t.Fatal(err)
	}
	runs := make(chan string, 10)
	if err := srv.Queue().Handle("order.placed", func(_ context.Context, j queue.Job) error { runs <- string(j.Payload); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + srv.Addr().String()
	create := func(item string) (int, map[string]any) {
		resp, err := http.Post(base+"/api/resources/orders/", "application/json", strings.NewReader(`{"item": "`+item+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	if code, body := create("refuse"); code != 400 || fmt.Sprint(body["item"]) != "[refused after the job was enqueued]" {
		t.Fatalf("refused create: %d %v", code, body)
	}
	code, body := create("book")
	if code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	pk := int64(body["id"].(float64))
	select {
	case got := <-runs:
		if got != fmt.Sprintf(`{"order":%d}`, pk) {
			t.Fatalf("job payload %s", got)
		}
	case <-time.After(slow):
		t.Fatal("the job of the committed write did not run")
	}
	// One job in all: the refused write's went with its transaction.
	code, res := serverCall(t, base, "queue_jobs", map[string]any{})
	jobs, _ := res["jobs"].([]any)
	if code != 200 || len(jobs) != 1 {
		t.Fatalf("queue_jobs: %d %v", code, res)
	}
	eventually(t, slow, func() error {
		_, res := serverCall(t, base, "queue_stats", map[string]any{})
		if st := fmt.Sprint(res["queues"]); !strings.Contains(st, "completed:1") {
			return fmt.Errorf("stats %s", st)
		}
		return nil
	})
	if code, res := serverCall(t, base, "queue_jobs", map[string]any{}); code != 200 || len(res["jobs"].([]any)) != 1 {
		t.Fatalf("queue_jobs after the run: %d %v", code, res)
	}
	// The refused order does not exist either.
	resp, err := http.Get(base + "/api/resources/orders/")
	if err != nil {
		t.Fatal(err)
	}
	list, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(list), "refuse") || !strings.Contains(string(list), "book") {
		t.Fatalf("orders: %s", list)
	}
	select {
	case got := <-runs:
		t.Fatalf("a second job ran: %s", got)
	default:
	}

	if code, _ := create("nested"); code != 201 {
		t.Fatalf("create nested: %d", code)
	}
	if got, _ := nested.Load().(string); !strings.Contains(got, "InTx") {
		t.Fatalf("a resource write from the InTx hook: %q, want it refused", got)
	}
}

// An InTx hook needs a store that writes in explicit transactions: on
// SQLite New refuses it, naming the driver that has them.
func TestResourceInTxHookNeedsPostgres(t *testing.T) {
	cfg := config.Default()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	cfg.Resources = []config.Resource{{Name: "orders", Fields: []config.Field{{Name: "item", Type: "string"}}}}
	_, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), ResourceHooks: map[string]resource.Hooks{"orders": {
		InTx: func(context.Context, store.Tx, resource.Event) error { return nil },
	}}})
	if err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Fatalf("New with an InTx hook on SQLite: %v", err)
	}
}

// The child of TestResourceInTxKill9: it creates an order through the Go
// API with the enqueueing InTx hook and prints a line where
// SY_TX_CHILD_MODE says ("in-tx": inside the hook, after the enqueue;
// "committed": in the AfterWrite hook, right after the commit), then
// blocks there until it is killed.
func TestResourceInTxChild(t *testing.T) {
	pg, mode := os.Getenv("SY_TX_CHILD_PG"), os.Getenv("SY_TX_CHILD_MODE")
	if pg == "" {
		t.Skip("run by TestResourceInTxKill9")
	}
	var srv *Server
	enqueue := enqueueOrder(&srv)
	hooks := resource.Hooks{
		InTx: func(ctx context.Context, tx store.Tx, ev resource.Event) error {
			if err := enqueue(ctx, tx, ev); err != nil {
				return err
			}
			if mode == "in-tx" {
				fmt.Printf("IN-TX %d\n", ev.PK)
				select {}
			}
			return nil
		},
		AfterWrite: func(ctx context.Context, ev resource.Event) {
			if mode == "committed" {
				fmt.Printf("COMMITTED %d\n", ev.PK)
				select {}
			}
		},
	}
	cfg := config.Default()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	ordersConfig(pg)(&cfg)
	var err error
	if srv, err = New(cfg, Options{Logger: slog.New(slog.DiscardHandler), ResourceHooks: map[string]resource.Hooks{"orders": hooks}}); err != nil {
		t.Fatal(err)
	}
	srv.Queue().Handle("order.placed", func(context.Context, queue.Job) error { return nil })
	// The queue's workers are not started: the job stays for the parent.
	if _, err := srv.Resources().Create(context.Background(), "orders", resource.AsServer(), json.RawMessage(`{"item": "`+mode+`"}`)); err != nil {
		t.Fatal(err)
	}
	t.Fatal("the create returned: the child was not killed")
}

// kill -9 during the write's transaction (inside the hook, after the
// enqueue) leaves neither the order nor its job; kill -9 right after the
// commit leaves both, the job exactly once, and it runs.
func TestResourceInTxKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	pg := testenv.PostgresSchema(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, tc := range []struct {
		mode, line string
		orders     int
	}{{"in-tx", "IN-TX ", 0}, {"committed", "COMMITTED ", 1}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestResourceInTxChild$", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), "SY_TX_CHILD_PG="+pg, "SY_TX_CHILD_MODE="+tc.mode)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		var pk int64
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), tc.line); ok {
				fmt.Sscan(rest, &pk)
				break
			}
		}
		if pk == 0 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s: the child never reached the point to kill it at", tc.mode)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		// What the killed process had not committed is invisible, and
		// PostgreSQL rolls it back when it sees the session end.
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM orders WHERE item = $1", tc.mode).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != tc.orders {
			t.Errorf("%s: %d orders after the kill, want %d", tc.mode, n, tc.orders)
		}
		var jobs int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE args->'payload'->>'order' = $1", fmt.Sprint(pk)).Scan(&jobs); err != nil {
			t.Fatal(err)
		}
		if jobs != tc.orders {
			t.Errorf("%s: %d jobs for order %d after the kill, want %d", tc.mode, jobs, pk, tc.orders)
		}
	}

	// The committed order's job runs, once, on the next process.
	ran := make(chan string, 4)
	q, err := queue.Open(ctx, queue.Config{Driver: queue.DriverPostgres, Pool: pool, Queues: []config.Queue{config.DefaultQueueConfig("default")}})
	if err != nil {
		t.Fatal(err)
	}
	q.Handle("order.placed", func(_ context.Context, j queue.Job) error { ran <- string(j.Payload); return nil })
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		q.Stop(sctx)
	}()
	select {
	case got := <-ran:
		if !strings.HasPrefix(got, `{"order":`) {
			t.Fatalf("job payload %s", got)
		}
	case <-time.After(slow):
		t.Fatal("the committed order's job did not run")
	}
	jobs, err := q.Jobs(ctx, queue.ListParams{})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %+v %v: want exactly the committed order's", jobs, err)
	}
}
