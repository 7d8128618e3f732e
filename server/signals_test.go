package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
)

const webhookSecret = "webhook-secret-0123456789"

// signalsConfig declares webhook signals pointing at hook and fast
// queues; Go handlers come from Options.Signals.
func signalsConfig(hook string) func(*config.Config) {
	return func(c *config.Config) {
		authConfig(true)(c)
		c.Signals.WebhookSecret = webhookSecret
		c.Signals.MaxKwargsBytes = 2 * config.KiB
		c.Signals.CallsPerSecond = 50
		l := 20
		c.Signals.Declared = []config.Signal{
			{Name: "demo.echo", Queue: "default", Allowed: "anyone", Webhook: hook, ExtraArgs: "reject",
				Args: []config.SignalArg{{Name: "content", Type: "string", Required: true, MaxLength: &l}}},
			{Name: "demo.private", Queue: "default", Allowed: "server_side", Webhook: hook, ExtraArgs: "reject"},
			{Name: "demo.staff", Queue: "default", Allowed: "claim:is_staff", Webhook: hook, ExtraArgs: "reject"},
		}
		q := config.DefaultQueueConfig("default")
		q.Backoff, q.MaxBackoff, q.MaxAttempts, q.Timeout = config.Duration(10*time.Millisecond), config.Duration(20*time.Millisecond), 3, config.Duration(5*time.Second)
		c.Queues = []config.Queue{q}
	}
}

// slow bounds what waits for a job: River on the pure-Go SQLite runs
// many times slower under the race detector, on a machine shared with
// other jobs.
const slow = 60 * time.Second

// waitWithin is waitFor with a longer deadline.
func (lc *liveClient) waitWithin(d time.Duration, f func(map[string]any) bool) map[string]any {
	lc.t.Helper()
	deadline := time.After(d)
	for {
		lc.mu.Lock()
		for i, m := range lc.in {
			if f(m) {
				lc.in = append(lc.in[:i:i], lc.in[i+1:]...)
				lc.mu.Unlock()
				return m
			}
		}
		err := lc.err
		lc.mu.Unlock()
		if err != nil {
			lc.t.Fatalf("connection ended: %v", err)
		}
		select {
		case <-lc.cond:
		case <-deadline:
			lc.t.Fatalf("no frame within %s", d)
		}
	}
}

// call sends a $signals call and waits (up to slow: a queued call
// commits a job first) for its reply payload.
func (lc *liveClient) call(fields map[string]any) map[string]any {
	lc.t.Helper()
	lc.mu.Lock()
	lc.next++
	rid := fmt.Sprintf("c%d", lc.next)
	lc.mu.Unlock()
	payload := map[string]any{"action": "call", "request_id": rid}
	for k, v := range fields {
		payload[k] = v
	}
	if err := lc.c.WriteJSON(map[string]any{"stream": "$signals", "payload": payload}); err != nil {
		lc.t.Fatal(err)
	}
	m := lc.waitWithin(slow, func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p != nil && p["request_id"] == rid
	})
	return m["payload"].(map[string]any)
}

// signalPush waits for a $signals push.
func (lc *liveClient) signalPush(name string) map[string]any {
	lc.t.Helper()
	return lc.signalPushWithin(name, slow)
}

// noSignal fails if a $signals push arrived (after a later frame proved
// the connection delivered everything sent before it).
func (lc *liveClient) noSignal() {
	lc.t.Helper()
	lc.request("$session", "ping-barrier", nil) // answered 405, behind any push
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, m := range lc.in {
		if m["stream"] == "$signals" {
			lc.t.Fatalf("unexpected push %v", m)
		}
	}
}

func TestSignalsOverLiveWithWebhook(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := signal.Verify([]byte(webhookSecret), r.Header.Get(signal.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req map[string]any
		json.Unmarshal(body, &req)
		mu.Lock()
		bodies = append(bodies, req)
		mu.Unlock()
		win := req["window"].(map[string]any)
		kw, _ := json.Marshal(req["kwargs"])
		fmt.Fprintf(w, `{"triggers": [{"signal": "demo.reply", "to": {"windows": [%q]}, "kwargs": %s}]}`, win["client_id"], kw)
	}))
	defer hook.Close()
	base, _ := start(t, signalsConfig(hook.URL), Options{})
	caller := newLiveClient(t, base)
	other := newLiveClient(t, base)

	p := caller.call(map[string]any{"signal": "demo.echo", "kwargs": map[string]any{"content": "hello"}})
	if p["response_status"] != 202.0 {
		t.Fatalf("call: %v", p)
	}
	data := p["data"].(map[string]any)
	if data["job_id"] == nil || len(data["job_ids"].([]any)) != 1 {
		t.Fatalf("reply %v", p)
	}
	push := caller.signalPush("demo.reply")
	if k, _ := json.Marshal(push["kwargs"]); string(k) != `{"content":"hello"}` || len(push["signal_id"].(string)) != 36 {
		t.Errorf("push %v", push)
	}
	other.noSignal() // the trigger went to the calling window only
	mu.Lock()
	if len(bodies) != 1 || bodies[0]["signal"] != "demo.echo" || bodies[0]["window"].(map[string]any)["transport"] != "live" ||
		bodies[0]["window"].(map[string]any)["client_id"] != caller.id || bodies[0]["job"].(map[string]any)["attempt"] != 1.0 {
		t.Errorf("webhook bodies %v", bodies)
	}
	mu.Unlock()
}

func TestSignalsBadInputKeepsTheSocket(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()
	base, _ := start(t, func(c *config.Config) {
		signalsConfig(hook.URL)(c)
		c.Signals.CallsPerSecond = 3
	}, Options{})
	lc := newLiveClient(t, base)
	for _, tc := range []struct {
		action string
		fields map[string]any
		status float64
		msg    string
	}{
		{"call", map[string]any{"signal": "no.such", "kwargs": map[string]any{}}, 404, "unknown signal"},
		{"call", map[string]any{"signal": "demo.private"}, 403, "cannot be called from a client"},
		{"call", map[string]any{"signal": "demo.staff"}, 403, "not allowed"},
		{"call", map[string]any{"signal": "demo.echo", "kwargs": map[string]any{"content": strings.Repeat("x", 3000)}}, 413, "signals.max_kwargs_bytes"},
		{"call", map[string]any{"signal": "demo.echo", "kwargs": []int{1}}, 400, "kwargs must be a JSON object"},
		{"call", map[string]any{}, 400, "signal is required"},
		{"call", map[string]any{"signal": 5}, 400, "field signal must be string"},
		{"subscribe", map[string]any{}, 405, `unknown action "subscribe"`},
	} {
		p := lc.request("$signals", tc.action, tc.fields)
		if p["response_status"] != tc.status || !strings.Contains(fmt.Sprint(p["errors"]), tc.msg) {
			t.Errorf("%s %v: %v", tc.action, tc.fields, p)
		}
	}
	// Bad arguments: each named, DRF-shaped.
	p := lc.request("$signals", "call", map[string]any{"signal": "demo.echo", "kwargs": map[string]any{"content": 5, "extra": true}})
	errs, _ := p["errors"].([]any)
	if p["response_status"] != 400.0 || len(errs) != 1 {
		t.Fatalf("bad args: %v", p)
	}
	fields := errs[0].(map[string]any)
	if fmt.Sprint(fields["content"]) != "[must be a string]" || fmt.Sprint(fields["extra"]) != "[this signal has no such argument]" {
		t.Errorf("fields %v", fields)
	}
	// A flood is answered 429 (the calls above spent the burst of 6) and
	// the socket stays open. The limit comes first: refused calls count.
	limited := 0
	for range 10 {
		if p := lc.request("$signals", "call", map[string]any{"signal": "demo.private"}); p["response_status"] == 429.0 {
			limited++
			if !strings.Contains(fmt.Sprint(p["errors"]), "signals.calls_per_second") {
				t.Errorf("429 does not name the key: %v", p)
			}
		}
	}
	if limited == 0 {
		t.Error("no call was rate limited")
	}
	if p := lc.request("$channels", "subscribe", map[string]any{"channel": "chat:x"}); p["response_status"] != 200.0 {
		t.Fatalf("socket unusable after bad signal calls: %v", p)
	}
}

func TestSignalsGoHandlersAndServerAPI(t *testing.T) {
	var asyncRuns atomic.Int32
	register := func(s *signal.Service) error {
		if err := s.Register("math.add", func(ctx context.Context, c *signal.Call) (any, error) {
			var a struct{ X, Y float64 }
			json.Unmarshal(c.Kwargs, &a)
			return map[string]float64{"sum": a.X + a.Y}, nil
		}, signal.Options{Allowed: "anyone", Sync: true, Args: []config.SignalArg{{Name: "X", Type: "float", Required: true}, {Name: "Y", Type: "float", Required: true}}}); err != nil {
			return err
		}
		return s.Register("chat.shout", func(ctx context.Context, c *signal.Call) (any, error) {
			asyncRuns.Add(1)
			_, err := c.Trigger(ctx, signal.Trigger{Signal: "chat.heard", To: signal.Target{Topics: []string{"room"}, Users: []string{"bob"}}, Kwargs: c.Kwargs})
			return nil, err
		}, signal.Options{Allowed: "authenticated", ExtraArgs: "accept"})
	}
	base, _ := start(t, signalsConfig("http://127.0.0.1:1/unused"), Options{Signals: register})
	alice := newLiveClientWith(t, base, token(t, "alice", time.Hour, map[string]any{"topics": []string{"room"}}))
	bob := newLiveClientWith(t, base, token(t, "bob", time.Hour, map[string]any{"topics": []string{"room"}}))
	bob2 := newLiveClientWith(t, base, token(t, "bob", time.Hour, nil))
	carol := newLiveClientWith(t, base, token(t, "carol", time.Hour, map[string]any{"topics": []string{"lobby"}}))
	anon := newLiveClient(t, base)

	// RPC with a return value.
	p := anon.request("$signals", "call", map[string]any{"signal": "math.add", "kwargs": map[string]any{"X": 2, "Y": 40}})
	if p["response_status"] != 200.0 || fmt.Sprint(p["data"]) != "map[job_ids:[] result:map[sum:42]]" {
		t.Fatalf("sync call: %v", p)
	}
	// An anonymous window may not shout; alice may.
	if p := anon.request("$signals", "call", map[string]any{"signal": "chat.shout"}); p["response_status"] != 403.0 {
		t.Fatalf("anonymous shout: %v", p)
	}
	if p := alice.call(map[string]any{"signal": "chat.shout", "kwargs": map[string]any{"text": "hi"}}); p["response_status"] != 202.0 {
		t.Fatalf("shout: %v", p)
	}
	// bob is in the topic and the user target: once. bob2 by user, alice
	// by topic. carol and anon are in neither.
	ids := map[string]bool{}
	for _, lc := range []*liveClient{alice, bob, bob2} {
		ids[lc.signalPush("chat.heard")["signal_id"].(string)] = true
	}
	if len(ids) != 1 {
		t.Errorf("signal ids %v", ids)
	}
	bob.noSignal()
	carol.noSignal()
	anon.noSignal()

	// The server API: trigger, with every target kind, once per window.
	code, res := callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "html.content", "to": map[string]any{"windows": []string{carol.id}, "users": []string{"carol"}, "topics": []string{"lobby"}}, "kwargs": map[string]any{"selector": "#x"}})
	if code != 200 || res["delivered"] != 1.0 {
		t.Fatalf("trigger: %d %v", code, res)
	}
	if p := carol.signalPush("html.content"); p["signal_id"] != res["signal_id"] {
		t.Errorf("carol got %v", p)
	}
	carol.noSignal()
	alice.noSignal()
	// Windows: the app puts anon in a topic.
	code, res = callAPI(t, base, testAPIKey, "windows", map[string]any{"window": anon.id, "add": []string{"lobby"}})
	if code != 200 || res["windows"] != 1.0 {
		t.Fatalf("windows: %d %v", code, res)
	}
	code, res = callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "lobby.news", "to": map[string]any{"topics": []string{"lobby"}}})
	if code != 200 || res["delivered"] != 2.0 {
		t.Fatalf("trigger lobby: %d %v", code, res)
	}
	anon.signalPush("lobby.news")
	carol.signalPush("lobby.news")
	code, res = callAPI(t, base, testAPIKey, "windows", map[string]any{"window": anon.id})
	if code != 200 || !strings.Contains(fmt.Sprint(res["windows"]), "topics:[lobby]") {
		t.Fatalf("windows list: %d %v", code, res)
	}
	// Broadcast and a delayed trigger.
	code, res = callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "all.hello", "to": map[string]any{"broadcast": true}, "countdown": 0.5})
	if code != 200 || res["job_id"] == nil {
		t.Fatalf("delayed: %d %v", code, res)
	}
	for _, lc := range []*liveClient{alice, bob, bob2, carol, anon} {
		if p := lc.signalPush("all.hello"); p["signal_id"] != res["signal_id"] {
			t.Errorf("delayed push %v", p)
		}
	}

	// Queue API.
	code, res = callAPI(t, base, testAPIKey, "queue_stats", map[string]any{})
	if code != 200 || !strings.Contains(fmt.Sprint(res["queues"]), "queue:default") {
		t.Fatalf("stats: %d %v", code, res)
	}
	code, res = callAPI(t, base, testAPIKey, "queue_jobs", map[string]any{"queue": "default", "state": "completed", "limit": 10})
	if code != 200 || len(res["jobs"].([]any)) < 1 {
		t.Fatalf("jobs: %d %v", code, res)
	}
	job := res["jobs"].([]any)[0].(map[string]any)
	if code, res := callAPI(t, base, testAPIKey, "queue_discard", map[string]any{"id": job["id"]}); code != 400 || !strings.Contains(fmt.Sprint(res), "already completed") {
		t.Errorf("discard completed: %d %v", code, res)
	}
	if code, res := callAPI(t, base, testAPIKey, "queue_retry", map[string]any{"id": job["id"]}); code != 200 || res["job"].(map[string]any)["state"] != "available" {
		t.Errorf("retry: %d %v", code, res)
	}
	for _, tc := range []struct {
		method string
		body   any
		status int
		msg    string
	}{
		{"trigger", map[string]any{"signal": "x"}, 400, `field "to" is required`},
		{"trigger", map[string]any{"signal": "x", "to": map[string]any{}}, 400, "to must name"},
		{"trigger", map[string]any{"signal": "bad name", "to": map[string]any{"broadcast": true}}, 400, "dotted identifiers"},
		{"trigger", map[string]any{"signal": "x", "to": map[string]any{"broadcast": true}, "countdown": -1}, 400, "countdown"},
		{"trigger", map[string]any{"signal": "x", "to": map[string]any{"broadcast": true}, "eta": "tomorrow"}, 400, "RFC 3339"},
		{"trigger", map[string]any{"signal": "x", "to": map[string]any{"broadcast": true}, "kwargs": "str"}, 400, "kwargs must be a JSON object"},
		{"trigger", map[string]any{"signal": "x", "to": map[string]any{"broadcast": true}, "nope": 1}, 400, `unknown field "nope"`},
		{"windows", map[string]any{"add": []string{"a"}}, 400, `field "window" is required`},
		{"windows", map[string]any{"window": "w", "add": []string{""}}, 400, "topic must not be empty"},
		{"queue_jobs", map[string]any{"queue": "nope"}, 404, "unknown queue"},
		{"queue_jobs", map[string]any{"state": "sleepy"}, 400, "dead"},
		{"queue_jobs", map[string]any{"limit": 0}, 400, "limit"},
		{"queue_retry", map[string]any{"id": 99999999}, 404, "no job"},
		{"queue_retry", map[string]any{"id": "x"}, 400, "id"},
		{"queue_discard", map[string]any{}, 400, `field "id" is required`},
	} {
		code, res := callAPI(t, base, testAPIKey, tc.method, tc.body)
		if code != tc.status || !strings.Contains(fmt.Sprint(res), tc.msg) {
			t.Errorf("%s %v: %d %v", tc.method, tc.body, code, res)
		}
	}
	if code, _ := callAPI(t, base, "", "trigger", map[string]any{"signal": "x", "to": map[string]any{"broadcast": true}}); code != 401 {
		t.Errorf("trigger without an API key: %d", code)
	}
	anon.noSignal()
}

// signalPushWithin waits longer than waitFor's 5 s for a push (a delayed
// trigger waits for the queue's scheduler).
func (lc *liveClient) signalPushWithin(name string, d time.Duration) map[string]any {
	lc.t.Helper()
	deadline := time.Now().Add(d)
	for {
		lc.mu.Lock()
		for i, m := range lc.in {
			p, _ := m["payload"].(map[string]any)
			if m["stream"] == "$signals" && p["signal"] == name {
				lc.in = append(lc.in[:i:i], lc.in[i+1:]...)
				lc.mu.Unlock()
				return p
			}
		}
		lc.mu.Unlock()
		if time.Now().After(deadline) {
			lc.t.Fatalf("no %s push within %s", name, d)
		}
		select {
		case <-lc.cond:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestSignalsClaimAccess(t *testing.T) {
	var hits atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer hook.Close()
	base, _ := start(t, signalsConfig(hook.URL), Options{})
	staff := newLiveClientWith(t, base, token(t, "sam", time.Hour, map[string]any{"is_staff": true}))
	plain := newLiveClientWith(t, base, token(t, "pat", time.Hour, map[string]any{"is_staff": false}))
	if p := plain.request("$signals", "call", map[string]any{"signal": "demo.staff"}); p["response_status"] != 403.0 {
		t.Fatalf("non-staff: %v", p)
	}
	if p := staff.call(map[string]any{"signal": "demo.staff"}); p["response_status"] != 202.0 {
		t.Fatalf("staff: %v", p)
	}
	eventually(t, slow, func() error {
		if hits.Load() != 1 {
			return fmt.Errorf("%d webhook hits", hits.Load())
		}
		return nil
	})
}

// A job still queued at shutdown runs after a restart on the same data
// directory; one running at shutdown finishes first.
func TestSignalsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	release := make(chan struct{})
	var first, second, finished atomic.Int32
	started := make(chan struct{}, 10)
	mk := func(counter *atomic.Int32, block bool) Options {
		return Options{Signals: func(s *signal.Service) error {
			return s.Register("slow.job", func(ctx context.Context, c *signal.Call) (any, error) {
				counter.Add(1)
				started <- struct{}{}
				if block {
					select {
					case <-release:
					case <-ctx.Done(): // a drain must not cancel a running job
						return nil, ctx.Err()
					}
				}
				finished.Add(1)
				return nil, nil
			}, signal.Options{Allowed: "anyone", ExtraArgs: "accept"})
		}}
	}
	cfgFn := func(c *config.Config) {
		signalsConfig("http://127.0.0.1:1/unused")(c)
		c.DataDir = dir
		c.Signals.Declared = nil
		c.Queues[0].Concurrency = 1
	}
	base, stop := start(t, cfgFn, mk(&first, true))
	lc := newLiveClient(t, base)
	for range 3 {
		if p := lc.call(map[string]any{"signal": "slow.job"}); p["response_status"] != 202.0 {
			t.Fatal(p)
		}
	}
	<-started // one job runs (concurrency 1), two wait
	done := make(chan error, 1)
	go func() { done <- stop() }()
	// The shutdown is under way (readiness off or the listener closed)
	// before the running job finishes.
	eventually(t, 5*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return nil
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return fmt.Errorf("still ready")
		}
		return nil
	})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if first.Load() != 1 || finished.Load() != 1 {
		t.Fatalf("%d jobs ran before the shutdown and %d finished, want 1 and 1", first.Load(), finished.Load())
	}
	start(t, cfgFn, mk(&second, false))
	eventually(t, slow, func() error {
		if second.Load() != 2 {
			return fmt.Errorf("%d of the 2 queued jobs ran after the restart", second.Load())
		}
		return nil
	})
}

// On SQLite (jobs in a file of their own) a resource hook enqueues after
// the commit: an AfterWrite hook enqueues a durable job and triggers a
// signal. A crash between the commit and the enqueue would lose the job;
// docs/signals.md says so. On PostgreSQL an InTx hook enqueues in the
// write's transaction (txjobs_test.go).
func TestResourceHookEnqueuesAfterCommit(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Resources = []config.Resource{{Name: "orders", Fields: []config.Field{{Name: "item", Type: "string"}}}}
	var srv *Server
	o := Options{
		Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil)),
		ResourceHooks: map[string]resource.Hooks{"orders": {
			AfterWrite: func(ctx context.Context, ev resource.Event) {
				if ev.Op != "create" {
					return
				}
				payload, _ := json.Marshal(map[string]int64{"order": ev.PK})
				if _, err := srv.Queue().Enqueue(ctx, queue.Params{Queue: "default", Kind: "order.placed", Payload: payload}); err != nil {
					t.Errorf("enqueue from the hook: %v", err)
				}
				if _, err := srv.Signals().Trigger(ctx, signal.Trigger{Signal: "orders.created", To: signal.Target{Topics: []string{"orders"}}, Kwargs: payload}); err != nil {
					t.Errorf("trigger from the hook: %v", err)
				}
			},
		}},
	}
	var err error
	if srv, err = New(cfg, o); err != nil {
		t.Fatal(err)
	}
	ran := make(chan string, 1)
	if err := srv.Queue().Handle("order.placed", func(ctx context.Context, j queue.Job) error { ran <- string(j.Payload); return nil }); err != nil {
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
	lc := newLiveClient(t, base)
	if _, err := srv.Signals().SetWindow(context.Background(), signal.WindowUpdate{Window: lc.id, Add: []string{"orders"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/api/resources/orders/", "application/json", strings.NewReader(`{"item": "book"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()
	if p := lc.signalPush("orders.created"); fmt.Sprint(p["kwargs"]) != "map[order:1]" {
		t.Errorf("push %v", p)
	}
	select {
	case got := <-ran:
		if got != `{"order":1}` {
			t.Errorf("job payload %s", got)
		}
	case <-time.After(slow):
		t.Fatal("the job enqueued by the hook did not run")
	}
}

// TestSignalsHangingWebhook: a webhook that never answers fails its
// attempt at the queue's timeout (the request is abandoned, not left
// open) and the call is retried; meanwhile the calling connection, and
// the other calls on it, go on as usual.
func TestSignalsHangingWebhook(t *testing.T) {
	var hits atomic.Int32
	abandoned := make(chan struct{})
	release := make(chan struct{}) // the test's end lets a hung handler go
	defer close(release)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req map[string]any
		json.Unmarshal(body, &req)
		kw := req["kwargs"].(map[string]any)
		if kw["content"] == "hang" && hits.Add(1) == 1 {
			select {
			case <-r.Context().Done(): // Switchyard gave up on the request
				close(abandoned)
			case <-release:
			}
			return
		}
		k, _ := json.Marshal(kw)
		job := req["job"].(map[string]any)
		fmt.Fprintf(w, `{"triggers": [{"signal": "demo.reply", "to": {"windows": [%q]}, "kwargs": {"got": %s, "attempt": %v}}]}`,
			req["window"].(map[string]any)["client_id"], k, job["attempt"])
	}))
	defer hook.Close()
	srv, base, _ := startServer(t, func(c *config.Config) {
		signalsConfig(hook.URL)(c)
		c.Queues[0].Timeout = config.Duration(time.Second)
	}, Options{})
	caller := newLiveClient(t, base)

	start := time.Now()
	p := caller.call(map[string]any{"signal": "demo.echo", "kwargs": map[string]any{"content": "hang"}})
	if p["response_status"] != 202.0 {
		t.Fatalf("call: %v", p)
	}
	hung := int64(p["data"].(map[string]any)["job_id"].(float64))
	// While the first attempt hangs, the same connection calls again and
	// gets that call's trigger back: neither the socket nor the queue's
	// other workers wait for the hung request.
	if p := caller.call(map[string]any{"signal": "demo.echo", "kwargs": map[string]any{"content": "other"}}); p["response_status"] != 202.0 {
		t.Fatalf("second call: %v", p)
	}
	push := caller.signalPush("demo.reply")
	if k, _ := json.Marshal(push["kwargs"]); string(k) != `{"attempt":1,"got":{"content":"other"}}` {
		t.Fatalf("first push %s, want the second call's (the first hangs)", k)
	}
	select {
	case <-abandoned:
	case <-time.After(slow):
		t.Fatal("the hung webhook request was not abandoned at the queue timeout")
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("the hung request ended after %s, before the 1 s timeout", d)
	}
	// The retry answers: the trigger back reaches the same connection,
	// once, from attempt 2; the hung attempt's failure is recorded.
	push = caller.signalPush("demo.reply")
	if k, _ := json.Marshal(push["kwargs"]); string(k) != `{"attempt":2,"got":{"content":"hang"}}` {
		t.Fatalf("push after the retry %s", k)
	}
	caller.noSignal()
	var info queue.Info
	eventually(t, slow, func() error {
		var err error
		if info, err = srv.Queue().Get(context.Background(), hung); err == nil && info.State != queue.StateCompleted {
			err = fmt.Errorf("job %d is %s", hung, info.State)
		}
		return err
	})
	if info.State != queue.StateCompleted || info.Attempt != 2 || len(info.Errors) != 1 || !strings.Contains(info.Errors[0].Error, "deadline exceeded") {
		t.Fatalf("hung job %+v, want completed at attempt 2 after one timeout", info)
	}
	if p := caller.request("$signals", "call", map[string]any{"signal": "demo.echo", "kwargs": map[string]any{"content": "after"}}); p["response_status"] != 202.0 {
		t.Fatalf("call after the retry: %v", p)
	}
}
