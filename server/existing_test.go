package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/testenv"
)

// appTodo is the table a Django app's migration creates for
//
//	class Todo(models.Model):
//	    title = models.CharField(max_length=200)
//	    done = models.BooleanField(default=False)
//	    due = models.DateTimeField(null=True)
//	    price = models.DecimalField(max_digits=10, decimal_places=2, null=True)
//	    owner = models.ForeignKey(User, ...)   # owner_id integer
//	    meta = models.JSONField(null=True)
const appTodo = `CREATE TABLE app_todo (
	id serial PRIMARY KEY,
	title varchar(200) NOT NULL,
	done boolean NOT NULL DEFAULT false,
	due timestamptz,
	price numeric(10,2),
	owner_id integer NOT NULL,
	meta jsonb
)`

// existingTable creates app_todo by plain SQL in a schema of the test's
// own and returns the schema's URL and a connection that is not
// Switchyard's (the app, psql, a cron job).
func existingTable(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	u := testenv.PostgresSchema(t)
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), appTodo); err != nil {
		t.Fatal(err)
	}
	return u, conn
}

func todosConfig(pgURL string, extra func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Auth.JWT.HMACSecret = testSecret
		c.APIKeys = []config.Secret{testAPIKey}
		c.Store.Driver, c.Store.URL = config.StorePostgres, config.Secret(pgURL)
		maxLen := 50
		c.Resources = []config.Resource{{
			Name: "todos", Table: "app_todo", Capture: config.CaptureTrigger, PKField: "id", PageSize: 25,
			Fields:      []config.Field{{Name: "title", MaxLength: &maxLen}},
			Permissions: config.ResourcePermissions{Read: "owner:owner_id", Create: "authenticated", Update: "owner:owner_id", Delete: "owner:owner_id"},
		}}
		if extra != nil {
			extra(c)
		}
	}
}

func execSQL(t *testing.T, conn *pgx.Conn, q string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}

// Changes that another program commits reach live queries and instance
// subscriptions, with the owner rule applied to each delivery: the user
// who must not read a record receives nothing of it, and a record whose
// owner changes leaves one query and enters the other.
func TestExistingTableExternalWritesLive(t *testing.T) {
	u, conn := existingTable(t)
	_, base, _ := startServer(t, todosConfig(u, nil), Options{})
	alice := dialRecorder(t, base, "?token="+token(t, "42", time.Hour, nil))
	bob := dialRecorder(t, base, "?token="+token(t, "7", time.Hour, nil))
	for _, r := range []*recorder{alice, bob} {
		r.send("todos", map[string]any{"action": "subscribe_list", "request_id": "lq"})
		if reply := r.waitFor("lq", 1)[0]; reply.payload["response_status"] != 201.0 {
			t.Fatal(reply.raw)
		}
	}
	time.Sleep(200 * time.Millisecond) // the follower listens from the start; this only orders the log
	execSQL(t, conn, "INSERT INTO app_todo (title, owner_id, price, meta) VALUES ('from psql', 42, 9.90, '{\"k\": [1]}')")
	var pk int64
	if err := conn.QueryRow(context.Background(), "SELECT id FROM app_todo WHERE title = 'from psql'").Scan(&pk); err != nil {
		t.Fatal(err)
	}
	// A rolled-back transaction is no event.
	tx, _ := conn.Begin(context.Background())
	tx.Exec(context.Background(), "UPDATE app_todo SET title = 'never' WHERE id = $1", pk)
	tx.Rollback(context.Background())
	execSQL(t, conn, "UPDATE app_todo SET title = 'edited', done = true WHERE id = $1", pk)
	execSQL(t, conn, "UPDATE app_todo SET owner_id = 7 WHERE id = $1", pk)
	execSQL(t, conn, "DELETE FROM app_todo WHERE id = $1", pk)

	got := alice.waitFor("lq", 4)[1:]
	want := []string{"create", "update", "delete"}
	for i, f := range got {
		if f.payload["action"] != want[i] {
			t.Fatalf("alice's live query: %s", raws(got))
		}
	}
	d := got[0].payload["data"].(map[string]any)
	if d["title"] != "from psql" || d["price"] != "9.90" || d["owner_id"] != 42.0 || d["done"] != false || fmt.Sprint(d["meta"]) != "map[k:[1]]" {
		t.Fatalf("the created record: %s", got[0].raw)
	}
	if got[1].payload["data"].(map[string]any)["title"] != "edited" {
		t.Fatalf("the update: %s", got[1].raw)
	}
	// Bob sees the record enter when it becomes his, then its delete;
	// never its earlier states.
	bg := bob.waitFor("lq", 3)[1:]
	if len(bg) != 2 || bg[0].payload["action"] != "create" || bg[1].payload["action"] != "delete" {
		t.Fatalf("bob's live query: %s", raws(bg))
	}
	if d := bg[0].payload["data"].(map[string]any); d["title"] != "edited" || d["owner_id"] != 7.0 {
		t.Fatalf("bob's view of the record: %s", bg[0].raw)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(alice.of("lq")); n != 4 {
		t.Fatalf("alice received %d frames, want 4: %s", n, raws(alice.of("lq")))
	}
	if n := len(bob.of("lq")); n != 3 {
		t.Fatalf("bob received %d frames, want 3: %s", n, raws(bob.of("lq")))
	}
}

// A write through Switchyard lands in the app's table at once, with the
// integer owner taken from the token's user id, and its event comes once.
// The REST list and retrieve apply the integer owner rule.
func TestExistingTableWritesThroughSwitchyard(t *testing.T) {
	u, conn := existingTable(t)
	_, base, _ := startServer(t, todosConfig(u, nil), Options{})
	alice := dialRecorder(t, base, "?token="+token(t, "42", time.Hour, nil))
	alice.send("todos", map[string]any{"action": "subscribe_list", "request_id": "lq"})
	alice.waitFor("lq", 1)
	api := base + "/api/resources/todos/"
	created := apiDo(t, "POST", api, "Bearer "+token(t, "42", time.Hour, nil), `{"title": "via rest", "price": "1.05", "due": "2026-12-02T10:00:00.5Z"}`, 201)
	var owner int64
	var price, title string
	var due time.Time
	if err := conn.QueryRow(context.Background(), "SELECT owner_id, price::text, title, due FROM app_todo WHERE id = $1", int64(created["id"].(float64))).Scan(&owner, &price, &title, &due); err != nil {
		t.Fatal(err)
	}
	if owner != 42 || price != "1.05" || title != "via rest" || !due.Equal(time.Date(2026, 12, 2, 10, 0, 0, 500_000_000, time.UTC)) {
		t.Fatalf("the app reads owner %d price %s title %q due %v", owner, price, title, due)
	}
	time.Sleep(500 * time.Millisecond)
	if got := alice.of("lq"); len(got) != 2 || got[1].payload["action"] != "create" {
		t.Fatalf("the write's events: want one create, got %s", raws(got))
	}
	// The owner rule on REST, for the integer column.
	apiDo(t, "GET", fmt.Sprintf("%s%v/", api, created["id"]), "Bearer "+token(t, "7", time.Hour, nil), "", 404)
	if l := apiDo(t, "GET", api, "Bearer "+token(t, "7", time.Hour, nil), "", 200); l["count"] != 0.0 {
		t.Fatalf("bob lists %v", l)
	}
	if l := apiDo(t, "GET", api, "Bearer "+token(t, "alice", time.Hour, nil), "", 200); l["count"] != 0.0 {
		t.Fatalf("a user id that is not an integer lists %v", l)
	}
	apiDo(t, "POST", api, "Bearer "+token(t, "alice", time.Hour, nil), `{"title": "x"}`, 400)
	apiDo(t, "PATCH", fmt.Sprintf("%s%v/", api, created["id"]), "Bearer "+token(t, "7", time.Hour, nil), `{"title": "stolen"}`, 404)
	// Validation from the catalog and from the declared refinement.
	apiDo(t, "POST", api, "Bearer "+token(t, "42", time.Hour, nil), `{"title": "`+strings.Repeat("x", 51)+`"}`, 400)
	apiDo(t, "POST", api, "Bearer "+token(t, "42", time.Hour, nil), `{"done": true}`, 400)
	apiDo(t, "POST", api, "Bearer "+token(t, "42", time.Hour, nil), `{"title": "t", "price": "not a number"}`, 400)
	if l := apiDo(t, "GET", api, "Bearer "+token(t, "42", time.Hour, nil), "", 200); l["count"] != 1.0 {
		t.Fatalf("alice lists %v", l)
	}
}

// A table, a column or a primary key that is not there stops the start
// with a message naming the table and the column.
func TestExistingTableStartErrors(t *testing.T) {
	u, conn := existingTable(t)
	execSQL(t, conn, "CREATE TABLE nopk (a int)")
	for _, c := range []struct {
		mutate func(*config.Config)
		want   string
	}{
		{func(c *config.Config) { c.Resources[0].Table = "app_nothing" }, "app_nothing does not exist"},
		{func(c *config.Config) { c.Resources[0].Fields = []config.Field{{Name: "colour"}} }, "(table app_todo): field colour: the table has no column colour"},
		{func(c *config.Config) { c.Resources[0].Table = "nopk" }, "primary key"},
		{func(c *config.Config) { c.Resources[0].Permissions.Read = "owner:owner" }, "owner:owner: the table has no column owner"},
		{func(c *config.Config) { c.Resources[0].Fields = []config.Field{{Name: "title", Type: "int"}} }, "field title is declared int but column title is character varying(200)"},
	} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		todosConfig(u, c.mutate)(&cfg)
		_, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil))})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v", c.want, err)
		}
	}
}

func apiDo(t *testing.T, method, url, auth, body string, want int) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %v, want %d", method, url, resp.StatusCode, m, want)
	}
	return m
}

// nodeLines runs a script of tests/dcrf and returns its output lines as
// they come.
func nodeLines(t *testing.T, dir, script string, env ...string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); cmd.Wait() })
	return lines
}

// collect reads lines until n of them start with prefix (or 20 s pass),
// keeping every line read.
func collect(t *testing.T, lines <-chan string, got *[]string, prefix string, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	count := func() int {
		c := 0
		for _, l := range *got {
			if strings.HasPrefix(l, prefix) {
				c++
			}
		}
		return c
	}
	for count() < n {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the client ended; it printed:\n%s", strings.Join(*got, "\n"))
			}
			if strings.HasPrefix(l, "FAIL") {
				t.Fatalf("the client failed: %s\n%s", l, strings.Join(*got, "\n"))
			}
			*got = append(*got, l)
		case <-timeout:
			t.Fatalf("timed out waiting for %d %q lines; got:\n%s", n, prefix, strings.Join(*got, "\n"))
		}
	}
}

func only(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// The unmodified npm dcrf-client, connected to either of two Switchyard
// processes (Redis broker, one PostgreSQL), receives every change that
// plain SQL makes to an existing table, in order and once, and nothing of
// the records its user may not read.
func TestExistingTableDCRFClient(t *testing.T) {
	dir := dcrfDir(t)
	u, conn := existingTable(t)
	prefix := testenv.RedisPrefix(t)
	redisURL := testenv.RedisURL(t)
	cfg := todosConfig(u, func(c *config.Config) {
		c.Broker.Driver, c.Broker.URL, c.Broker.Prefix = "redis", config.Secret(redisURL), prefix
	})
	_, baseA, _ := startServer(t, cfg, Options{})
	_, baseB, _ := startServer(t, cfg, Options{})
	ctx := context.Background()
	var r1, r2 int64
	if err := conn.QueryRow(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('a', 42) RETURNING id").Scan(&r1); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('bob1', 7) RETURNING id").Scan(&r2); err != nil {
		t.Fatal(err)
	}
	wsURL := func(base, user string) string {
		return "SWITCHYARD_URL=ws" + strings.TrimPrefix(base, "http") + "/live?token=" + token(t, user, time.Hour, nil)
	}
	clients := []struct {
		name  string
		lines <-chan string
		got   []string
	}{
		{name: "alice on A", lines: nodeLines(t, dir, "capture.js", wsURL(baseA, "42"), fmt.Sprint("SWITCHYARD_PK=", r1))},
		{name: "alice on B", lines: nodeLines(t, dir, "capture.js", wsURL(baseB, "42"), fmt.Sprint("SWITCHYARD_PK=", r1))},
		{name: "bob on B", lines: nodeLines(t, dir, "capture.js", wsURL(baseB, "7"), fmt.Sprint("SWITCHYARD_PK=", r2))},
	}
	for i := range clients {
		collect(t, clients[i].lines, &clients[i].got, "SUBSCRIBED", 1)
	}
	execSQL(t, conn, "UPDATE app_todo SET title = 'b' WHERE id = $1", r1)
	tx, _ := conn.Begin(ctx)
	tx.Exec(ctx, "UPDATE app_todo SET title = 'rolled back' WHERE id = $1", r1)
	tx.Rollback(ctx)
	execSQL(t, conn, "UPDATE app_todo SET title = 'c', done = true WHERE id = $1", r1)
	var r3 int64
	if err := conn.QueryRow(ctx, "INSERT INTO app_todo (title, owner_id) VALUES ('new', 42) RETURNING id").Scan(&r3); err != nil {
		t.Fatal(err)
	}
	execSQL(t, conn, "DELETE FROM app_todo WHERE id = $1", r1)
	execSQL(t, conn, "UPDATE app_todo SET title = 'bob2' WHERE id = $1", r2)

	rec := func(pk int64, title string, done bool, owner int) string {
		return fmt.Sprintf(`{"id":%d,"title":%q,"done":%v,"due":null,"price":null,"owner_id":%d,"meta":null}`, pk, title, done, owner)
	}
	wantAlice := map[string][]string{
		"INSTANCE": {"INSTANCE update " + rec(r1, "b", false, 42), "INSTANCE update " + rec(r1, "c", true, 42), fmt.Sprintf(`INSTANCE delete {"id":%d}`, r1)},
		"LIST": {"LIST update " + rec(r1, "b", false, 42), "LIST update " + rec(r1, "c", true, 42), "LIST create " + rec(r3, "new", false, 42),
			fmt.Sprintf(`LIST delete {"pk":%d}`, r1)}, // the wire's delete data, as DCRF sends it
	}
	wantBob := map[string][]string{
		"INSTANCE": {"INSTANCE update " + rec(r2, "bob2", false, 7)},
		"LIST":     {"LIST update " + rec(r2, "bob2", false, 7)},
	}
	for i := range clients {
		c := &clients[i]
		want := wantAlice
		if strings.HasPrefix(c.name, "bob") {
			want = wantBob
		}
		for _, kind := range []string{"INSTANCE", "LIST"} {
			collect(t, c.lines, &c.got, kind, len(want[kind]))
		}
	}
	time.Sleep(time.Second) // anything more (a duplicate, a leak) would have come by now
	for i := range clients {
		c := &clients[i]
	drain:
		for {
			select {
			case l := <-c.lines:
				c.got = append(c.got, l)
			default:
				break drain
			}
		}
		want := wantAlice
		if strings.HasPrefix(c.name, "bob") {
			want = wantBob
		}
		for _, kind := range []string{"INSTANCE", "LIST"} {
			if got := only(c.got, kind); strings.Join(got, "\n") != strings.Join(want[kind], "\n") {
				t.Errorf("%s, %s events:\n%s\nwant\n%s", c.name, kind, strings.Join(got, "\n"), strings.Join(want[kind], "\n"))
			}
		}
	}
}

// Catch-up with since replays the changes another program made, under the
// read permission: the owner gets them, another user gets nothing.
func TestExistingTableCatchUp(t *testing.T) {
	u, conn := existingTable(t)
	_, base, _ := startServer(t, todosConfig(u, nil), Options{})
	alice := dialRecorder(t, base, "?token="+token(t, "42", time.Hour, nil))
	alice.send("todos", map[string]any{"action": "subscribe_list", "request_id": "lq"})
	alice.waitFor("lq", 1)
	var pk int64
	if err := conn.QueryRow(context.Background(), "INSERT INTO app_todo (title, owner_id) VALUES ('v1', 42) RETURNING id").Scan(&pk); err != nil {
		t.Fatal(err)
	}
	execSQL(t, conn, "UPDATE app_todo SET title = 'v2' WHERE id = $1", pk)
	execSQL(t, conn, "UPDATE app_todo SET title = 'v3' WHERE id = $1", pk)
	alice.waitFor("lq", 4) // the three changes are in the log
	var created int64      // the create's seq: the client saw the record then
	if err := conn.QueryRow(context.Background(), "SELECT min(seq) FROM _switchyard_changes WHERE tbl = 'todos' AND row_id = $1", pk).Scan(&created); err != nil {
		t.Fatal(err)
	}
	reply := alice.subscribe("todos", pk, "s", created)
	if _, recovered := position(t, reply); !recovered {
		t.Fatalf("catch-up from %d: %s", created, reply.raw)
	}
	got := alice.waitFor("s", 3)[1:]
	for i, title := range []string{"v2", "v3"} {
		if d, _ := got[i].payload["data"].(map[string]any); d == nil || d["title"] != title {
			t.Fatalf("catch-up %d: %s", i, raws(got))
		}
	}
	bob := dialRecorder(t, base, "?token="+token(t, "7", time.Hour, nil))
	if reply := bob.subscribe("todos", pk, "s", created); reply.payload["response_status"] == 201.0 {
		t.Fatalf("bob subscribed to alice's record: %s", reply.raw)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(bob.of("s")); n != 1 {
		t.Fatalf("bob received %d frames of alice's record: %s", n, raws(bob.of("s")))
	}
}
