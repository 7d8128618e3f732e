package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/internal/testenv"
	"github.com/switchyardhq/switchyard/protocol/channelstream"
	"github.com/switchyardhq/switchyard/protocol/dfws"
)

const (
	clusterAPIKey = "cluster-test-api-key-0123456789"
	clusterSecret = "cluster-test-hmac-secret-0123456789"
	// clusterCSSecret signs the Channelstream API calls.
	clusterCSSecret = "cluster-test-channelstream-secret"
	// clusterPresenceTTL is broker.presence_ttl of the cluster: a killed
	// process's clients leave presence within it.
	clusterPresenceTTL = 3 * time.Second
)

// clusterConfig writes the configuration the three processes share: one
// Redis prefix and one PostgreSQL schema of this test's own.
func clusterConfig(t *testing.T, dir string) string {
	t.Helper()
	return writeFile(t, dir, "switchyard.yaml", fmt.Sprintf(`
store: {driver: postgres, url: %q}
broker: {driver: redis, url: %q, prefix: %s, presence_ttl: %s, connect_timeout: 5s}
auth: {anonymous: true, jwt: {hmac_secret: %s}}
api_keys: [%s]
channelstream: {enabled: true, secret: %s}
channels:
  namespaces:
    chat:
      presence: true
      history_size: 100
      history_ttl: 1h
      recover: true
      permissions: {subscribe: anyone, publish: authenticated, presence: anyone, history: anyone}
resources:
  things:
    fields:
      name: {type: string, required: true}
    permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}
`, testenv.PostgresSchema(t), testenv.RedisURL(t), testenv.RedisPrefix(t), clusterPresenceTTL, clusterSecret, clusterAPIKey, clusterCSSecret))
}

func userToken(t *testing.T, user string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(clusterSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// serverAPI calls a server API method and decodes the result.
func serverAPI(t *testing.T, base, method string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+"/api/server/"+method, bytes.NewReader(b))
	req.Header.Set("Authorization", "apikey "+clusterAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// wsClient is a native /live client that records every frame.
type wsClient struct {
	t      *testing.T
	name   string
	conn   *websocket.Conn
	mu     sync.Mutex
	frames []map[string]any
	closed chan int // the close code, once
}

func dialCluster(t *testing.T, base, name, user string) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/live"
	if user != "" {
		u += "?token=" + userToken(t, user)
	}
	conn, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, u, err)
	}
	c := &wsClient{t: t, name: name, conn: conn, closed: make(chan int, 1)}
	go func() {
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				code := -1
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				c.closed <- code
				return
			}
			var f map[string]any
			if json.Unmarshal(data, &f) == nil {
				c.mu.Lock()
				c.frames = append(c.frames, f)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *wsClient) send(stream, action string, fields map[string]any) {
	payload := map[string]any{"action": action, "request_id": action + fmt.Sprint(time.Now().UnixNano())}
	for k, v := range fields {
		payload[k] = v
	}
	if err := c.conn.WriteJSON(map[string]any{"stream": stream, "payload": payload}); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// wait returns the first payload matching f, waiting up to 10 s.
func (c *wsClient) wait(what string, f func(p map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		for _, fr := range c.frames {
			if p, ok := fr["payload"].(map[string]any); ok && f(p) {
				c.mu.Unlock()
				return p
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: no %s in %v", c.name, what, c.frames)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *wsClient) subscribe(ch string, since map[string]any) map[string]any {
	c.t.Helper()
	fields := map[string]any{"channel": ch}
	if since != nil {
		fields["since"] = since
	}
	c.send("$channels", "subscribe", fields)
	return c.wait("subscribe reply for "+ch, func(p map[string]any) bool {
		return p["action"] == "subscribe" && p["response_status"] != nil
	})
}

// messages returns the data of the publications received on ch, in order.
func (c *wsClient) messages(ch string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, fr := range c.frames {
		if p, ok := fr["payload"].(map[string]any); ok && p["action"] == "message" && p["channel"] == ch {
			out = append(out, p)
		}
	}
	return out
}

func presentUsers(t *testing.T, base, ch string) []string {
	code, res := serverAPI(t, base, "presence", map[string]any{"channel": ch})
	if code != 200 {
		t.Fatalf("presence: %d %v", code, res)
	}
	var users []string
	for _, c := range res["clients"].([]any) {
		users = append(users, c.(map[string]any)["user"].(string))
	}
	sort.Strings(users)
	return users
}

func eventuallyCluster(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCluster runs three `switchyard serve` processes sharing the test
// Redis and PostgreSQL, with clients on each.
func TestCluster(t *testing.T) {
	top := t // clients that outlive a subtest
	dir := t.TempDir()
	cfgPath := clusterConfig(t, dir)
	_, _, a := serveProcess(t, dir, nil, "--config", cfgPath)
	procB, _, b := serveProcess(t, dir, nil, "--config", cfgPath)
	_, _, c := serveProcess(t, dir, nil, "--config", cfgPath)
	const room = "chat:room"

	alice := dialCluster(t, a, "alice@A", "alice")
	bob := dialCluster(t, b, "bob@B", "bob")
	carol := dialCluster(t, c, "carol@C", "carol")
	for _, cl := range []*wsClient{alice, bob, carol} {
		if r := cl.subscribe(room, nil); r["response_status"] != float64(200) {
			t.Fatalf("%s subscribe: %v", cl.name, r)
		}
	}

	t.Run("presence lists all three", func(t *testing.T) {
		for _, base := range []string{a, b, c} {
			if got := presentUsers(t, base, room); fmt.Sprint(got) != "[alice bob carol]" {
				t.Fatalf("presence via %s: %v", base, got)
			}
		}
	})

	var epoch string
	t.Run("a publish on A reaches all three exactly once, in order", func(t *testing.T) {
		const n = 30
		for i := 1; i <= n; i++ {
			if code, res := serverAPI(t, a, "publish", map[string]any{"channel": room, "data": map[string]any{"n": i}}); code != 200 || res["offset"] != float64(i) {
				t.Fatalf("publish %d: %d %v", i, code, res)
			}
		}
		for _, cl := range []*wsClient{alice, bob, carol} {
			cl.wait(fmt.Sprintf("message %d", n), func(p map[string]any) bool { return p["action"] == "message" && p["offset"] == float64(n) })
			msgs := cl.messages(room)
			if len(msgs) != n {
				t.Fatalf("%s: %d messages, want %d", cl.name, len(msgs), n)
			}
			for i, m := range msgs {
				if m["offset"] != float64(i+1) || m["data"].(map[string]any)["n"] != float64(i+1) {
					t.Fatalf("%s: message %d is %v", cl.name, i, m)
				}
			}
			epoch = msgs[0]["epoch"].(string)
		}
	})

	t.Run("a client reconnecting to another process with since recovers", func(t *testing.T) {
		alice.conn.Close()
		for i := 31; i <= 35; i++ {
			serverAPI(t, c, "publish", map[string]any{"channel": room, "data": map[string]any{"n": i}})
		}
		back := dialCluster(top, b, "alice@B", "alice")
		r := back.subscribe(room, map[string]any{"offset": 30, "epoch": epoch})
		d, _ := r["data"].(map[string]any)
		if r["response_status"] != float64(200) || d["recovered"] != true || d["offset"] != float64(35) {
			t.Fatalf("recovery on B: %v", r)
		}
		pubs := d["publications"].([]any)
		if len(pubs) != 5 || pubs[0].(map[string]any)["offset"] != float64(31) || pubs[4].(map[string]any)["offset"] != float64(35) {
			t.Fatalf("recovered publications: %v", pubs)
		}
	})

	t.Run("a dcrf-client on B sees a REST create made on C", func(t *testing.T) {
		dir := nodeTestDir(t, "dcrf", "dcrf-client")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", "cluster.js")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SWITCHYARD_URL=ws"+strings.TrimPrefix(b, "http")+"/live")
		cmd.Stderr = os.Stderr
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || lines.Text() != "SUBSCRIBED" {
			t.Fatalf("dcrf-client: %q", lines.Text())
		}
		resp, err := http.Post(c+"/api/resources/things/", "application/json", strings.NewReader(`{"name": "made on C"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("REST create on C: %d %s", resp.StatusCode, body)
		}
		if !lines.Scan() || !strings.HasPrefix(lines.Text(), "CREATE ") || !strings.Contains(lines.Text(), `"name":"made on C"`) {
			t.Fatalf("dcrf-client on B: %q", lines.Text())
		}
	})

	t.Run("resource events: racing writers on three processes, every subscriber gets each change once, in commit order", func(t *testing.T) {
		resp, err := http.Post(a+"/api/resources/things/", "application/json", strings.NewReader(`{"name": "raced"}`))
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		json.NewDecoder(resp.Body).Decode(&rec)
		resp.Body.Close()
		pk := rec["id"]
		var subs []*wsClient
		for i, base := range []string{a, b, c} {
			s := dialCluster(t, base, fmt.Sprintf("watcher%d", i), "")
			s.send("things", "subscribe_instance", map[string]any{"pk": pk, "since": 0})
			s.wait("subscribe_instance reply", func(p map[string]any) bool {
				return p["action"] == "subscribe_instance" && p["response_status"] == float64(201)
			})
			subs = append(subs, s)
		}
		const each = 15
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for w, base := range []string{a, b, c} {
			wg.Go(func() {
				for i := range each {
					req, _ := http.NewRequest("PATCH", fmt.Sprintf("%s/api/resources/things/%v/", base, pk), strings.NewReader(fmt.Sprintf(`{"name": "w%d-%d"}`, w, i)))
					req.Header.Set("Content-Type", "application/json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("PATCH on %s: %d", base, resp.StatusCode)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		resp, err = http.Get(fmt.Sprintf("%s/api/resources/things/%v/", c, pk))
		if err != nil {
			t.Fatal(err)
		}
		var final map[string]any
		json.NewDecoder(resp.Body).Decode(&final)
		resp.Body.Close()
		// Every subscriber sees the record's changes in commit order
		// (seqs increase), none twice, ending with the record as it is.
		missing := map[string]int{}
		for _, s := range subs {
			var updates []map[string]any
			eventuallyCluster(t, 10*time.Second, func() error {
				updates = updates[:0]
				s.mu.Lock()
				for _, fr := range s.frames {
					if p, ok := fr["payload"].(map[string]any); ok && p["action"] == "update" && fr["stream"] == "things" {
						updates = append(updates, p)
					}
				}
				s.mu.Unlock()
				if len(updates) == 0 || updates[len(updates)-1]["data"].(map[string]any)["name"] != final["name"] {
					return fmt.Errorf("%s: %d updates, the last not yet the record as it is (%v)", s.name, len(updates), final)
				}
				return nil
			})
			for i := 1; i < len(updates); i++ {
				if updates[i]["seq"].(float64) <= updates[i-1]["seq"].(float64) {
					t.Fatalf("%s: update %d has seq %v after %v: not in commit order, or twice", s.name, i, updates[i]["seq"], updates[i-1]["seq"])
				}
			}
			missing[s.name] = 3*each - len(updates)
		}
		// Exactly once: every change reaches every subscriber. Each process
		// publishes its own writes' events after its commit, so events of
		// racing writers on different processes can reach Redis out of
		// commit order; each event names its record's previous change, and
		// the hub holds one until its predecessor is delivered.
		for name, n := range missing {
			if n != 0 {
				t.Errorf("%s missed %d of the %d changes: %v", name, n, 3*each, missing)
			}
		}
	})

	t.Run("signals: a trigger made on A reaches each matching connection on B and C once", func(t *testing.T) {
		signalsAcrossProcesses(t, a, b, c)
	})

	t.Run("df_websockets: a page bootstrapped on A connects to C with its topics; a trigger from B reaches it", func(t *testing.T) {
		code, boot := serverAPI(t, a, "windows", map[string]any{"topics": []any{"lobby"}, "user": "page-user", "host": "example.com"})
		key, _ := boot["window_key"].(string)
		if code != 200 || key == "" {
			t.Fatalf("bootstrap on A: %d %v", code, boot)
		}
		page := dialDFWSCluster(t, c, key)
		// The window is attached on C (its connect answered) before the
		// trigger: list it through C.
		eventuallyCluster(t, 10*time.Second, func() error {
			_, res := serverAPI(t, c, "windows", map[string]any{"window": key})
			if ws, _ := res["windows"].([]any); len(ws) != 1 {
				return fmt.Errorf("windows on C: %v", res)
			}
			return nil
		})
		code, res := serverAPI(t, b, "trigger", map[string]any{"signal": "lobby.news", "to": map[string]any{"topics": []string{dfws.StringTopic("lobby")}, "users": []string{"page-user"}}, "kwargs": map[string]any{"n": 1}})
		if code != 200 {
			t.Fatalf("trigger on B: %d %v", code, res)
		}
		f := page.next(t)
		var push struct {
			Signal   string         `json:"signal"`
			Opts     map[string]any `json:"opts"`
			SignalID string         `json:"signal_id"`
		}
		if json.Unmarshal([]byte(f), &push) != nil || push.Signal != "lobby.news" || push.Opts["n"] != float64(1) || push.SignalID != res["signal_id"] {
			t.Fatalf("the page on C got %s, want lobby.news with the trigger's signal_id %v", f, res["signal_id"])
		}
	})

	t.Run("queues: a delayed trigger's job is one job of the cluster: listed, discarded and retried through any process, run by one, delivered on C", func(t *testing.T) {
		dave := dialCluster(t, c, "dave@C", "dave")
		dave.wait("$session connected", func(p map[string]any) bool { return p["action"] == "connected" })
		code, res := serverAPI(t, a, "trigger", map[string]any{"signal": "later.one", "to": map[string]any{"users": []string{"dave"}}, "countdown": 3600})
		jobID, _ := res["job_id"].(float64)
		if code != 200 || jobID == 0 {
			t.Fatalf("delayed trigger on A: %d %v", code, res)
		}
		code, list := serverAPI(t, c, "queue_jobs", map[string]any{"state": "scheduled"})
		if jobs, _ := list["jobs"].([]any); code != 200 || len(jobs) != 1 || jobs[0].(map[string]any)["id"] != jobID {
			t.Fatalf("queue_jobs on C: %d %v", code, list)
		}
		if code, res := serverAPI(t, b, "queue_discard", map[string]any{"id": jobID}); code != 200 {
			t.Fatalf("queue_discard on B: %d %v", code, res)
		}
		if code, list := serverAPI(t, a, "queue_jobs", map[string]any{"state": "cancelled"}); code != 200 || len(list["jobs"].([]any)) != 1 {
			t.Fatalf("queue_jobs cancelled on A: %d %v", code, list)
		}
		// Retried through C: it runs now, on whichever process fetches it,
		// and reaches dave on C with the signal_id it was made with.
		if code, res := serverAPI(t, c, "queue_retry", map[string]any{"id": jobID}); code != 200 {
			t.Fatalf("queue_retry on C: %d %v", code, res)
		}
		dave.wait("the delayed trigger", func(p map[string]any) bool {
			return p["action"] == "signal" && p["signal"] == "later.one" && p["signal_id"] == res["signal_id"]
		})
		eventuallyCluster(t, 20*time.Second, func() error {
			_, st := serverAPI(t, b, "queue_stats", nil)
			for _, q := range st["queues"].([]any) {
				if jobs := q.(map[string]any)["jobs"].(map[string]any); jobs["completed"] == float64(1) {
					return nil
				}
			}
			return fmt.Errorf("queue_stats on B: %v", st)
		})
	})

	t.Run("a server-API disconnect on A closes the user's socket on C, and no one else's", func(t *testing.T) {
		code, res := serverAPI(t, a, "disconnect", map[string]any{"user": "carol"})
		if code != 200 || res["sessions"] != float64(1) || res["nodes"] != float64(3) {
			t.Fatalf("disconnect: %d %v", code, res)
		}
		select {
		case got := <-carol.closed:
			if got != 4003 {
				t.Fatalf("carol's socket closed with %d, want 4003", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("carol's socket on C is still open")
		}
		select {
		case got := <-bob.closed:
			t.Fatalf("bob's socket closed (%d) by carol's disconnect", got)
		default:
		}
		// Subscribe reaches the user's connections on another process too.
		if code, res := serverAPI(t, c, "subscribe", map[string]any{"user": "bob", "channel": "chat:extra"}); code != 200 || res["sessions"] != float64(1) {
			t.Fatalf("subscribe bob from C: %d %v", code, res)
		}
	})

	t.Run("info aggregates the three processes", func(t *testing.T) {
		code, res := serverAPI(t, c, "info", nil)
		if code != 200 || len(res["nodes"].([]any)) != 3 {
			t.Fatalf("info: %d %v", code, res)
		}
		code, res = serverAPI(t, a, "channels", nil)
		chans, _ := res["channels"].(map[string]any)
		if code != 200 || chans["chat:extra"] == nil || chans[room] == nil {
			t.Fatalf("channels: %d %v", code, res)
		}
	})

	t.Run("channelstream: a connection made on A is refused on B with a clear error (sticky routing)", func(t *testing.T) {
		body := strings.NewReader(`{"username": "cs-user", "channels": ["lobby"]}`)
		req, _ := http.NewRequest("POST", a+"/connect", body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Channelstream-Secret", channelstream.Sign(clusterCSSecret, "channelstream", time.Now()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var conn map[string]any
		json.NewDecoder(resp.Body).Decode(&conn)
		resp.Body.Close()
		id, _ := conn["conn_id"].(string)
		if resp.StatusCode != 200 || id == "" {
			t.Fatalf("/connect on A: %d %v", resp.StatusCode, conn)
		}
		// The registry must know the other processes before B can say so.
		eventuallyCluster(t, clusterPresenceTTL+2*time.Second, func() error {
			resp, err := http.Get(b + "/listen?conn_id=" + id)
			if err != nil {
				return err
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || !strings.Contains(string(msg), "sticky routing") {
				return fmt.Errorf("/listen on B: %d %s", resp.StatusCode, msg)
			}
			return nil
		})
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(b, "http")+"/ws?conn_id="+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_, _, err = ws.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || !strings.Contains(ce.Text, "sticky") {
			t.Fatalf("/ws on B: %v, want a close saying to route sticky", err)
		}
	})

	t.Run("kill -9 of B removes its clients from presence within the TTL; A and C keep working", func(t *testing.T) {
		erin := dialCluster(top, a, "erin@A", "erin")
		erin.subscribe(room, nil)
		// Presence is written in batches: erin's entry lands within moments.
		eventuallyCluster(t, 5*time.Second, func() error {
			if got := presentUsers(t, c, room); fmt.Sprint(got) != "[alice bob erin]" {
				return fmt.Errorf("presence before the kill: %v", got)
			}
			return nil
		})
		// alice and bob are on B.
		if err := procB.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		eventuallyCluster(t, clusterPresenceTTL+2*time.Second, func() error {
			if got := presentUsers(t, c, room); fmt.Sprint(got) != "[erin]" {
				return fmt.Errorf("presence after killing B: %v", got)
			}
			return nil
		})
		t.Logf("B's clients left presence %s after the kill (presence_ttl %s)", time.Since(killed).Round(10*time.Millisecond), clusterPresenceTTL)
		if code, res := serverAPI(t, c, "publish", map[string]any{"channel": room, "data": "after the kill"}); code != 200 {
			t.Fatalf("publish on C after the kill: %d %v", code, res)
		}
		erin.wait("the publication made after the kill", func(p map[string]any) bool { return p["action"] == "message" && p["data"] == "after the kill" })
		eventuallyCluster(t, clusterPresenceTTL+2*time.Second, func() error {
			if _, res := serverAPI(t, a, "info", nil); len(res["nodes"].([]any)) != 2 {
				return fmt.Errorf("nodes after killing B: %v", res["nodes"])
			}
			return nil
		})
	})
}

// signalsAcrossProcesses: connections of one user on B and C, another's
// on C; a trigger made on A to that user, the other's window by id and a
// topic that window is in reaches each connection once, with one
// signal_id; a connection it does not target gets nothing.
func signalsAcrossProcesses(t *testing.T, a, b, c string) {
	daveB := dialCluster(t, b, "sigdave@B", "sigdave")
	daveC := dialCluster(t, c, "sigdave@C", "sigdave")
	erinC := dialCluster(t, c, "sigerin@C", "sigerin")
	frankB := dialCluster(t, b, "sigfrank@B", "sigfrank")
	var erinID string
	for _, cl := range []*wsClient{daveB, daveC, erinC, frankB} {
		p := cl.wait("$session connected", func(p map[string]any) bool { return p["action"] == "connected" })
		if cl == erinC {
			erinID, _ = p["client_id"].(string)
		}
	}
	if erinID == "" {
		t.Fatal("no client_id for erin's connection")
	}
	if code, res := serverAPI(t, a, "windows", map[string]any{"window": erinID, "add": []string{"ops"}}); code != 200 {
		t.Fatalf("windows on A for a connection on C: %d %v", code, res)
	}
	eventuallyCluster(t, 10*time.Second, func() error {
		_, res := serverAPI(t, c, "windows", map[string]any{"window": erinID})
		if ws, _ := res["windows"].([]any); len(ws) != 1 || fmt.Sprint(ws[0].(map[string]any)["topics"]) != "[ops]" {
			return fmt.Errorf("erin's window on C: %v", res)
		}
		return nil
	})
	code, res := serverAPI(t, a, "trigger", map[string]any{"signal": "cluster.hello", "kwargs": map[string]any{"x": 1},
		"to": map[string]any{"users": []string{"sigdave", "sigerin"}, "windows": []string{erinID}, "topics": []string{"ops"}}})
	id, _ := res["signal_id"].(string)
	if code != 200 || id == "" {
		t.Fatalf("trigger on A: %d %v", code, res)
	}
	// A broadcast made on A after it proves that everything of the first
	// trigger has arrived (a process's publications arrive in order).
	_, barrier := serverAPI(t, a, "trigger", map[string]any{"signal": "cluster.barrier", "to": map[string]any{"broadcast": true}})
	for _, cl := range []*wsClient{daveB, daveC, erinC, frankB} {
		cl.wait("the barrier", func(p map[string]any) bool { return p["action"] == "signal" && p["signal_id"] == barrier["signal_id"] })
	}
	count := func(cl *wsClient) int {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		n := 0
		for _, f := range cl.frames {
			if p, ok := f["payload"].(map[string]any); ok && f["stream"] == "$signals" && p["signal_id"] == id {
				n++
			}
		}
		return n
	}
	for _, cl := range []*wsClient{daveB, daveC, erinC} {
		if n := count(cl); n != 1 {
			t.Errorf("%s received the trigger %d times, want once", cl.name, n)
		}
	}
	if n := count(frankB); n != 0 {
		t.Errorf("%s received a trigger meant for others (%d times)", frankB.name, n)
	}
}

// dfwsCluster is a df_websockets socket that records its frames.
type dfwsCluster struct {
	conn   *websocket.Conn
	frames chan string
}

func dialDFWSCluster(t *testing.T, base, key string) *dfwsCluster {
	t.Helper()
	hdr := http.Header{"Cookie": {"dfwskey=" + key}}
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws/", hdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &dfwsCluster{conn: conn, frames: make(chan string, 100)}
	go func() {
		defer close(d.frames)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			d.frames <- string(data)
		}
	}()
	return d
}

func (d *dfwsCluster) next(t *testing.T) string {
	t.Helper()
	select {
	case f, ok := <-d.frames:
		if !ok {
			t.Fatal("the df_websockets socket closed")
		}
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no frame on the df_websockets socket")
	}
	return ""
}

// nodeTestDir returns tests/<name> with its node_modules (holding module)
// installed; under CI a missing install fails, locally it skips.
func nodeTestDir(t *testing.T, name, module string) string {
	t.Helper()
	dir, err := filepath.Abs("../../tests/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tests/%s/node_modules is missing: make test runs npm ci there (%v)", name, err)
		}
		t.Skipf("%s not installed: cd tests/%s && npm ci", module, name)
	}
	return dir
}

// With Redis or PostgreSQL unreachable, serve exits with status 1 after
// the connect timeout, naming the address.
func TestServeUnreachableExits1(t *testing.T) {
	for _, tc := range []struct{ name, key, url, timeoutKey string }{
		{"redis", "SWITCHYARD_BROKER_DRIVER=redis", "SWITCHYARD_BROKER_URL=redis://%s/0", "SWITCHYARD_BROKER_CONNECT_TIMEOUT=500ms"},
		{"postgres", "SWITCHYARD_STORE_DRIVER=postgres", "SWITCHYARD_STORE_URL=postgres://postgres@%s/test", "SWITCHYARD_STORE_CONNECT_TIMEOUT=500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			start := time.Now()
			code, _, stderr := runCmd(t, t.TempDir(), []string{tc.key, fmt.Sprintf(tc.url, addr), tc.timeoutKey}, "serve", "--listen", freeAddr(t))
			if code != 1 || !strings.Contains(stderr, addr) {
				t.Fatalf("exit %d, stderr %q: want 1 and the address %s", code, stderr, addr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}
}
