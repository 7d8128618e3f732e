package signal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/queue"
)

const secret = "0123456789abcdef-test-secret"

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

// inbox records the frames a window receives.
type inbox struct {
	mu     sync.Mutex
	frames []Push
}

func (b *inbox) Send(frame []byte) {
	var p Push
	if err := json.Unmarshal(frame, &p); err != nil {
		panic(err)
	}
	b.mu.Lock()
	b.frames = append(b.frames, p)
	b.mu.Unlock()
}

func (b *inbox) pushes() []Push {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Push(nil), b.frames...)
}

// jsonEncoder is a wire whose frame is the Push as JSON; it counts
// encodings.
type jsonEncoder struct{ n *atomic.Int32 }

func (e jsonEncoder) EncodeSignal(p Push) []byte {
	e.n.Add(1)
	b, _ := json.Marshal(p)
	return b
}

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

type fixture struct {
	svc  *Service
	q    *queue.Queue
	enc  jsonEncoder
	logs *syncBuffer
}

// newFixture builds a service on a real queue (SQLite in a temp dir);
// register runs before the queue starts.
func newFixture(t *testing.T, sig config.Signals, register func(s *Service)) *fixture {
	t.Helper()
	qc := config.DefaultQueueConfig("default")
	qc.Backoff = config.Duration(10 * time.Millisecond)
	qc.MaxBackoff = config.Duration(20 * time.Millisecond)
	qc.MaxAttempts = 3
	qc.Timeout = config.Duration(2 * time.Second)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	q, err := queue.Open(context.Background(), queue.Config{Path: filepath.Join(t.TempDir(), "queue.db"), Queues: []config.Queue{qc}, PollInterval: 50 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if sig.MaxKwargsBytes == 0 {
		sig.MaxKwargsBytes = 1024
	}
	if sig.WebhookSecret == "" {
		sig.WebhookSecret = secret
	}
	svc, err := New(Config{Queue: q, Signals: sig, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if register != nil {
		register(svc)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q.Stop(ctx)
	})
	return &fixture{svc: svc, q: q, enc: jsonEncoder{n: &atomic.Int32{}}, logs: logs}
}

func (f *fixture) attach(t *testing.T, w Window) *inbox {
	t.Helper()
	in := &inbox{}
	w.Sender, w.Encoder = in, f.enc
	if err := f.svc.Attach(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	return in
}

func code(err error) switchyard.Code { return switchyard.ErrorCode(err) }

func claims(m map[string]any) json.RawMessage {
	b, _ := json.Marshal(m)
	return b
}

func TestCallAccessAndValidation(t *testing.T) {
	ran := make(chan *Call, 10)
	h := func(ctx context.Context, c *Call) (any, error) { ran <- c; return nil, nil }
	min1, max10, len5 := 1.0, 10.0, 5
	f := newFixture(t, config.Signals{}, func(s *Service) {
		must(t, s.Register("demo.echo", h, Options{Allowed: "anyone", Args: []config.SignalArg{{Name: "content", Type: "string", Required: true, MaxLength: &len5}}}))
		must(t, s.Register("demo.private", h, Options{}))
		must(t, s.Register("demo.members", h, Options{Allowed: "authenticated"}))
		must(t, s.Register("demo.guests", h, Options{Allowed: "anonymous"}))
		must(t, s.Register("demo.staff", h, Options{Allowed: "claim:is_staff"}))
		must(t, s.Register("demo.perm", h, Options{Allowed: "perm:app.run"}))
		must(t, s.Register("demo.typed", h, Options{Allowed: "anyone", Args: []config.SignalArg{
			{Name: "n", Type: "int", Required: true, Min: &min1, Max: &max10},
			{Name: "f", Type: "float"},
			{Name: "b", Type: "bool"},
			{Name: "o", Type: "object"},
			{Name: "a", Type: "array", MaxLength: &len5},
			{Name: "color", Type: "string", Choices: []any{"red", "blue"}},
			{Name: "code", Type: "string", Pattern: `^[A-Z]{3}$`},
			{Name: "level", Choices: []any{1, 2}},
		}}))
		must(t, s.Register("demo.open", h, Options{Allowed: "anyone", ExtraArgs: "accept", Args: []config.SignalArg{{Name: "x", Type: "int"}}}))
	})
	f.attach(t, Window{ID: "anon"})
	f.attach(t, Window{ID: "alice", User: "alice", Claims: claims(map[string]any{"sub": "alice", "is_staff": false, "perms": []string{"app.other"}})})
	f.attach(t, Window{ID: "staff", User: "sam", Claims: claims(map[string]any{"sub": "sam", "is_staff": true, "perms": []string{"app.run"}})})
	ctx := context.Background()
	for _, tc := range []struct {
		win, signal, kwargs string
		want                switchyard.Code // "" = accepted
		msg                 string
	}{
		{"anon", "no.such", `{}`, switchyard.CodeNotFound, `unknown signal "no.such"`},
		{"anon", "demo.private", `{}`, switchyard.CodeForbidden, "cannot be called from a client"},
		{"staff", "demo.private", `{}`, switchyard.CodeForbidden, "cannot be called from a client"},
		{"anon", "demo.members", `{}`, switchyard.CodeForbidden, "needs an authenticated user"},
		{"alice", "demo.members", `{}`, "", ""},
		{"alice", "demo.guests", `{}`, switchyard.CodeForbidden, "not allowed"},
		{"anon", "demo.guests", `{}`, "", ""},
		{"alice", "demo.staff", `{}`, switchyard.CodeForbidden, "not allowed"},
		{"anon", "demo.staff", `{}`, switchyard.CodeForbidden, "not allowed"},
		{"staff", "demo.staff", `{}`, "", ""},
		{"alice", "demo.perm", `{}`, switchyard.CodeForbidden, "not allowed"},
		{"staff", "demo.perm", `{}`, "", ""},
		{"anon", "demo.echo", `{}`, switchyard.CodeBadRequest, "content: this argument is required"},
		{"anon", "demo.echo", `{"content": 3}`, switchyard.CodeBadRequest, "content: must be a string"},
		{"anon", "demo.echo", `{"content": "toolong"}`, switchyard.CodeBadRequest, "at most 5 characters"},
		{"anon", "demo.echo", `{"content": "hi", "extra": 1}`, switchyard.CodeBadRequest, "extra: this signal has no such argument"},
		{"anon", "demo.echo", `["content"]`, switchyard.CodeBadRequest, "kwargs must be a JSON object"},
		{"anon", "demo.echo", `"hi"`, switchyard.CodeBadRequest, "kwargs must be a JSON object"},
		{"anon", "demo.echo", `{"content": "` + strings.Repeat("x", 1100) + `"}`, switchyard.CodeTooLarge, "signals.max_kwargs_bytes"},
		{"anon", "demo.echo", `{"content": "hi"}`, "", ""},
		{"anon", "demo.typed", `{"n": 1.5}`, switchyard.CodeBadRequest, "n: must be an integer"},
		{"anon", "demo.typed", `{"n": 11}`, switchyard.CodeBadRequest, "n: must be at most 10"},
		{"anon", "demo.typed", `{"n": 0}`, switchyard.CodeBadRequest, "n: must be at least 1"},
		{"anon", "demo.typed", `{"n": "3"}`, switchyard.CodeBadRequest, "n: must be an integer"},
		{"anon", "demo.typed", `{"n": 3, "f": "x", "b": 1, "o": [], "a": {}}`, switchyard.CodeBadRequest, "a: must be an array; b: must be true or false; f: must be a number; o: must be an object"},
		{"anon", "demo.typed", `{"n": 3, "a": [1,2,3,4,5,6]}`, switchyard.CodeBadRequest, "a: must have at most 5 items"},
		{"anon", "demo.typed", `{"n": 3, "color": "green"}`, switchyard.CodeBadRequest, `color: must be one of "red", "blue"`},
		{"anon", "demo.typed", `{"n": 3, "code": "abc"}`, switchyard.CodeBadRequest, "code: must match"},
		{"anon", "demo.typed", `{"n": 3, "level": 3}`, switchyard.CodeBadRequest, "level: must be one of 1, 2"},
		{"anon", "demo.typed", `{"n": 3.0, "f": 2, "b": true, "o": {}, "a": [1], "color": "red", "code": "ABC", "level": 2}`, "", ""},
		{"anon", "demo.open", `{"x": 1, "anything": [1]}`, "", ""},
		{"anon", "demo.open", `null`, "", ""},
		{"anon", "demo.open", `{"x": "1"}`, switchyard.CodeBadRequest, "x: must be an integer"},
	} {
		t.Run(tc.win+" "+tc.signal+" "+tc.kwargs[:min(len(tc.kwargs), 30)], func(t *testing.T) {
			res, err := f.svc.Call(ctx, tc.win, tc.signal, json.RawMessage(tc.kwargs))
			if tc.want == "" {
				if err != nil || len(res.JobIDs) != 1 {
					t.Fatalf("refused: %+v %v", res, err)
				}
				select {
				case c := <-ran:
					if c.Signal != tc.signal || c.Window.ClientID != tc.win || c.Job == nil || c.Job.ID != res.JobIDs[0] || c.Job.Attempt != 1 {
						t.Errorf("call %+v", c)
					}
				case <-time.After(60 * time.Second):
					t.Fatal("handler did not run")
				}
				return
			}
			if code(err) != tc.want || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v (%s), want %s containing %q", err, code(err), tc.want, tc.msg)
			}
			var ae *ArgsError
			if tc.want == switchyard.CodeBadRequest && strings.Contains(tc.msg, ": ") && !errors.As(err, &ae) {
				t.Errorf("no ArgsError: %T", err)
			}
		})
	}
	select {
	case c := <-ran:
		t.Fatalf("a refused call ran: %+v", c)
	default:
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCallRateLimit(t *testing.T) {
	f := newFixture(t, config.Signals{CallsPerSecond: 5}, func(s *Service) {
		must(t, s.Register("demo.sync", func(context.Context, *Call) (any, error) { return 1, nil }, Options{Allowed: "anyone", Sync: true}))
	})
	f.attach(t, Window{ID: "w"})
	f.attach(t, Window{ID: "other"})
	limited := 0
	for range 30 {
		if _, err := f.svc.Call(context.Background(), "w", "demo.sync", nil); code(err) == switchyard.CodeRateLimited {
			limited++
			if !strings.Contains(err.Error(), "signals.calls_per_second") {
				t.Fatalf("message does not name the key: %v", err)
			}
		}
	}
	if limited < 15 || limited > 21 {
		t.Errorf("%d of 30 calls limited at 5/s (burst 10)", limited)
	}
	if _, err := f.svc.Call(context.Background(), "other", "demo.sync", nil); err != nil {
		t.Errorf("another window is limited too: %v", err)
	}
}

func TestSyncResultAndPanic(t *testing.T) {
	f := newFixture(t, config.Signals{}, func(s *Service) {
		must(t, s.Register("math.add", func(ctx context.Context, c *Call) (any, error) {
			var a struct{ X, Y int }
			json.Unmarshal(c.Kwargs, &a)
			return map[string]int{"sum": a.X + a.Y}, nil
		}, Options{Allowed: "anyone", Sync: true, ExtraArgs: "accept"}))
		must(t, s.Register("bug.panic", func(context.Context, *Call) (any, error) { panic("handler bug") }, Options{Allowed: "anyone", Sync: true}))
		must(t, s.Register("bug.async", func(context.Context, *Call) (any, error) { panic("async handler bug") }, Options{Allowed: "anyone"}))
	})
	f.attach(t, Window{ID: "w"})
	res, err := f.svc.Call(context.Background(), "w", "math.add", json.RawMessage(`{"X": 2, "Y": 3}`))
	if err != nil || !res.Sync || string(res.Result) != `{"sum":5}` {
		t.Fatalf("sync: %+v %v", res, err)
	}
	_, err = f.svc.Call(context.Background(), "w", "bug.panic", nil)
	if code(err) != switchyard.CodeInternal || strings.Contains(err.Error(), "handler bug") {
		t.Fatalf("panic answered %v", err)
	}
	res, err = f.svc.Call(context.Background(), "w", "bug.async", nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		in, err := f.q.Get(context.Background(), res.JobIDs[0])
		if err != nil || in.State != queue.StateDiscarded {
			return fmt.Errorf("%+v %v", in, err)
		}
		return nil
	})
	logs := f.logs.String()
	for _, want := range []string{"signal handler panicked", "job panicked", "async handler bug", "signal_test.go"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	// The service still works.
	if res, err := f.svc.Call(context.Background(), "w", "math.add", json.RawMessage(`{"X": 1, "Y": 1}`)); err != nil || string(res.Result) != `{"sum":2}` {
		t.Fatalf("after panics: %+v %v", res, err)
	}
}

func TestTriggerTargetsOncePerWindow(t *testing.T) {
	f := newFixture(t, config.Signals{}, nil)
	a := f.attach(t, Window{ID: "a", User: "u1", Topics: []string{"room1", "room2"}})
	b := f.attach(t, Window{ID: "b", User: "u1"})
	c := f.attach(t, Window{ID: "c", User: "u2", Topics: []string{"room2"}})
	d := f.attach(t, Window{ID: "d"})
	ctx := context.Background()
	res, err := f.svc.Trigger(ctx, Trigger{Signal: "demo.reply", To: Target{Windows: []string{"a"}, Users: []string{"u1"}, Topics: []string{"room1", "room2"}}, Kwargs: json.RawMessage(`{"text":"hi"}`)})
	if err != nil || res.Delivered != 3 || len(res.SignalID) != 36 || res.SignalID[14] != '4' {
		t.Fatalf("%+v %v", res, err)
	}
	for name, in := range map[string]*inbox{"a": a, "b": b, "c": c} {
		got := in.pushes()
		if len(got) != 1 || got[0].SignalID != res.SignalID || got[0].Signal != "demo.reply" || string(got[0].Kwargs) != `{"text":"hi"}` {
			t.Errorf("window %s got %+v", name, got)
		}
	}
	if got := d.pushes(); len(got) != 0 {
		t.Errorf("window d, in no target, got %+v", got)
	}
	if n := f.enc.n.Load(); n != 1 {
		t.Errorf("encoded %d times for one protocol", n)
	}
	// Broadcast reaches every window, once.
	res2, err := f.svc.Trigger(ctx, Trigger{Signal: "html.content", To: Target{Broadcast: true, Users: []string{"u1"}}})
	if err != nil || res2.Delivered != 4 || res2.SignalID == res.SignalID {
		t.Fatalf("%+v %v", res2, err)
	}
	for _, in := range []*inbox{a, b, c, d} {
		if got := in.pushes(); got[len(got)-1].SignalID != res2.SignalID || string(got[len(got)-1].Kwargs) != `{}` {
			t.Errorf("broadcast: %+v", got)
		}
	}
	// A detached window receives nothing.
	f.svc.Detach("d")
	if res3, _ := f.svc.Trigger(ctx, Trigger{Signal: "x", To: Target{Broadcast: true}}); res3.Delivered != 3 || len(d.pushes()) != 1 {
		t.Errorf("after detach: %+v, d has %d", res3, len(d.pushes()))
	}
	for _, bad := range []Trigger{
		{Signal: "1bad", To: Target{Broadcast: true}},
		{Signal: "ok", To: Target{}},
		{Signal: "ok", To: Target{Topics: []string{""}}},
		{Signal: "ok", To: Target{Broadcast: true}, Kwargs: json.RawMessage(`[1]`)},
		{Signal: "ok", To: Target{Broadcast: true}, Countdown: -time.Second},
	} {
		if _, err := f.svc.Trigger(ctx, bad); code(err) != switchyard.CodeBadRequest {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if _, err := f.svc.Trigger(ctx, Trigger{Signal: "ok", To: Target{Broadcast: true}, Kwargs: json.RawMessage(`{"x":"` + strings.Repeat("y", 2000) + `"}`)}); code(err) != switchyard.CodeTooLarge {
		t.Errorf("oversize: %v", err)
	}
}

func TestDelayedTriggerIsDelivered(t *testing.T) {
	f := newFixture(t, config.Signals{}, nil)
	a := f.attach(t, Window{ID: "a", Topics: []string{"t"}})
	start := time.Now()
	res, err := f.svc.Trigger(context.Background(), Trigger{Signal: "later", To: Target{Topics: []string{"t"}}, Countdown: time.Second})
	if err != nil || res.JobID == 0 || res.Delivered != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if len(a.pushes()) != 0 {
		t.Fatal("delivered before its countdown")
	}
	eventually(t, 60*time.Second, func() error {
		if len(a.pushes()) == 0 {
			return errors.New("not delivered")
		}
		return nil
	})
	if got := a.pushes(); len(got) != 1 || got[0].SignalID != res.SignalID || time.Since(start) < time.Second {
		t.Errorf("got %+v after %s", got, time.Since(start))
	}
}

func TestSetWindowTopics(t *testing.T) {
	f := newFixture(t, config.Signals{}, nil)
	ctx := context.Background()
	// Set before the window connects (df_websockets' page view).
	if n, err := f.svc.SetWindow(ctx, WindowUpdate{Window: "key1", Topics: []string{"room1"}, User: ptr("u9")}); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	w1 := f.attach(t, Window{ID: "c1", Key: "key1"})
	w2 := f.attach(t, Window{ID: "c2", Key: "key2"})
	send := func(to Target) int {
		res, err := f.svc.Trigger(ctx, Trigger{Signal: "s", To: to})
		if err != nil {
			t.Fatal(err)
		}
		return res.Delivered
	}
	if send(Target{Topics: []string{"room1"}}) != 1 || send(Target{Users: []string{"u9"}}) != 1 || send(Target{Windows: []string{"key1"}}) != 1 || send(Target{Windows: []string{"c1"}}) != 1 {
		t.Fatal("pending topics, user or key not applied")
	}
	if n, err := f.svc.SetWindow(ctx, WindowUpdate{Window: "key2", Add: []string{"room1", "room2"}}); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	if send(Target{Topics: []string{"room1"}}) != 2 {
		t.Fatal("add")
	}
	f.svc.SetWindow(ctx, WindowUpdate{Window: "c2", Remove: []string{"room1"}})
	if send(Target{Topics: []string{"room1"}}) != 1 || send(Target{Topics: []string{"room2"}}) != 1 {
		t.Fatal("remove")
	}
	f.svc.SetWindow(ctx, WindowUpdate{Window: "key1", Topics: []string{"other"}})
	if send(Target{Topics: []string{"room1"}}) != 0 || send(Target{Topics: []string{"other"}}) != 1 {
		t.Fatal("replace")
	}
	if len(w1.pushes()) != 7 || len(w2.pushes()) != 2 {
		t.Errorf("w1 %d w2 %d", len(w1.pushes()), len(w2.pushes()))
	}
	ws := f.svc.Windows("key1", 10)
	if len(ws) != 1 || ws[0].User != "u9" || strings.Join(ws[0].Topics, ",") != "other" {
		t.Errorf("windows %+v", ws)
	}
	for _, bad := range []WindowUpdate{{Window: ""}, {Window: "k"}, {Window: "k", Add: []string{"a\nb"}}} {
		if _, err := f.svc.SetWindow(ctx, bad); code(err) != switchyard.CodeBadRequest {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// memBus connects services as processes of one cluster.
type memBus struct {
	self  *Service
	peers *[]*Service
}

func (b memBus) Publish(ctx context.Context, msg []byte) error {
	for _, s := range *b.peers {
		if s != b.self {
			s.Receive(msg)
		}
	}
	return nil
}

func TestBusReachesOtherProcessesOnce(t *testing.T) {
	var peers []*Service
	mk := func() (*Service, jsonEncoder) {
		f := newFixture(t, config.Signals{}, nil)
		peers = append(peers, f.svc)
		f.svc.cfg.Bus = memBus{self: f.svc, peers: &peers}
		return f.svc, f.enc
	}
	s1, e1 := mk()
	s2, e2 := mk()
	in1, in2 := &inbox{}, &inbox{}
	s1.Attach(context.Background(), Window{ID: "p1", User: "u", Sender: in1, Encoder: e1})
	s2.Attach(context.Background(), Window{ID: "p2", Key: "k2", Sender: in2, Encoder: e2})
	ctx := context.Background()
	if _, err := s1.SetWindow(ctx, WindowUpdate{Window: "k2", Add: []string{"room"}}); err != nil {
		t.Fatal(err)
	}
	res, err := s1.Trigger(ctx, Trigger{Signal: "x", To: Target{Users: []string{"u"}, Topics: []string{"room"}, Windows: []string{"p1", "p2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if g1, g2 := in1.pushes(), in2.pushes(); len(g1) != 1 || len(g2) != 1 || g1[0].SignalID != res.SignalID || g2[0].SignalID != res.SignalID {
		t.Errorf("p1 %+v p2 %+v", g1, g2)
	}
}

func TestWebhook(t *testing.T) {
	type hit struct {
		body []byte
		sig  string
		key  string
	}
	var mu sync.Mutex
	var hits []hit
	var fail atomic.Int32 // answers 500 this many times first
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		hits = append(hits, hit{body, r.Header.Get(SignatureHeader), r.Header.Get(IdempotencyHeader)})
		mu.Unlock()
		if fail.Add(-1) >= 0 {
			http.Error(w, "busy", 500)
			return
		}
		var req webhookRequest
		json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"triggers": [{"signal": "demo.reply", "to": {"windows": [%q]}, "kwargs": {"got": %s}}], "result": {"ok": true}}`, req.Window.ClientID, req.Kwargs)
	}))
	defer srv.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>not json"))
	}))
	defer garbage.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String() + "/hook"
	ln.Close() // nothing listens there now
	arg := []config.SignalArg{{Name: "content", Type: "string", Required: true}}
	f := newFixture(t, config.Signals{Declared: []config.Signal{
		{Name: "hook.ok", Queue: "default", Allowed: "anyone", Webhook: srv.URL, Args: arg, ExtraArgs: "reject"},
		{Name: "hook.sync", Queue: "default", Allowed: "anyone", Webhook: srv.URL, Sync: true, Args: arg},
		{Name: "hook.down", Queue: "default", Allowed: "anyone", Webhook: down},
		{Name: "hook.redirect", Queue: "default", Allowed: "anyone", Webhook: redirect.URL},
		{Name: "hook.garbage", Queue: "default", Allowed: "anyone", Webhook: garbage.URL},
	}}, nil)
	in := f.attach(t, Window{ID: "w1", User: "alice", Transport: "live", RemoteAddr: "127.0.0.1:5555", UserAgent: "test", Info: json.RawMessage(`{"name":"Alice"}`)})
	ctx := context.Background()

	fail.Store(1) // first attempt fails, the retry succeeds
	res, err := f.svc.Call(ctx, "w1", "hook.ok", json.RawMessage(`{"content": "hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		if len(in.pushes()) == 0 {
			return errors.New("no trigger back")
		}
		return nil
	})
	if got := in.pushes(); got[0].Signal != "demo.reply" || string(got[0].Kwargs) != `{"got":{"content":"hello"}}` {
		t.Errorf("trigger from the reply: %+v", got)
	}
	mu.Lock()
	if len(hits) != 2 {
		t.Fatalf("%d webhook hits, want 2 (a failure and its retry)", len(hits))
	}
	for i, h := range hits {
		if err := Verify([]byte(secret), h.sig, h.body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("hit %d: %v", i, err)
		}
		if err := Verify([]byte("another-secret-0123456"), h.sig, h.body, time.Now(), 0); err == nil {
			t.Error("a wrong secret verifies")
		}
		if err := Verify([]byte(secret), h.sig, append(h.body, ' '), time.Now(), 0); err == nil {
			t.Error("a changed body verifies")
		}
	}
	if hits[0].key == "" || hits[0].key != hits[1].key {
		t.Errorf("idempotency keys %q %q", hits[0].key, hits[1].key)
	}
	var body map[string]any
	json.Unmarshal(hits[1].body, &body)
	want := fmt.Sprintf(`{"job":{"attempt":2,"id":%d},"kwargs":{"content":"hello"},"signal":"hook.ok","window":{"client_id":"w1","csrf_cookie":"",`+
		`"info":{"name":"Alice"},"is_active":true,"is_staff":false,"is_superuser":false,"language_code":"","perms":[],"remote_addr":"127.0.0.1:5555",`+
		`"transport":"live","user":"alice","user_agent":"test","user_pk":"alice","user_set":true,"username":"","window_key":"w1"}}`, res.JobIDs[0])
	if b, _ := json.Marshal(body); string(b) != want {
		t.Errorf("body\n got %s\nwant %s", b, want)
	}
	mu.Unlock()

	// Sync: the reply's result is the answer.
	sres, err := f.svc.Call(ctx, "w1", "hook.sync", json.RawMessage(`{"content": "x"}`))
	if err != nil || string(sres.Result) != `{"ok": true}` {
		t.Fatalf("sync webhook: %+v %v", sres, err)
	}

	// Down, a redirect loop, garbage: each attempt fails, then the job
	// is dead; the service and other calls are unaffected.
	for _, name := range []string{"hook.down", "hook.redirect", "hook.garbage"} {
		res, err := f.svc.Call(ctx, "w1", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		var dead queue.Info
		eventually(t, 60*time.Second, func() error {
			dead, err = f.q.Get(ctx, res.JobIDs[0])
			if err != nil || dead.State != queue.StateDiscarded {
				return fmt.Errorf("%s: %+v %v", name, dead, err)
			}
			return nil
		})
		if dead.Attempt != 3 || len(dead.Errors) != 3 {
			t.Errorf("%s: %+v", name, dead)
		}
		t.Logf("%s: %s", name, dead.Errors[2].Error)
	}
	if !strings.Contains(f.logs.String(), "307") || !strings.Contains(f.logs.String(), "not a JSON object") {
		t.Errorf("failures not logged: %s", f.logs.String())
	}
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1700000000, 0)
	h := Sign([]byte("k"), now, []byte(`{"a":1}`))
	if !strings.HasPrefix(h, "t=1700000000,v1=") {
		t.Fatal(h)
	}
	if err := Verify([]byte("k"), h, []byte(`{"a":1}`), now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := Verify([]byte("k"), h, []byte(`{"a":1}`), now.Add(time.Hour), 5*time.Minute); err == nil {
		t.Error("old signature accepted")
	}
	for _, bad := range []string{"", "t=x,v1=00", "v1=00", "t=1700000000", "t=1700000000,v1=zz"} {
		if err := Verify([]byte("k"), bad, nil, now, 0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("t=1700000000,v1=abcd", []byte("{}"))
	f.Add(",,=,t=,v1=", []byte(nil))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		_ = Verify([]byte("secret"), header, body, time.Unix(1700000000, 0), time.Minute)
	})
}

func TestTruthyAndClaims(t *testing.T) {
	for v, want := range map[string]bool{`true`: true, `1`: true, `"x"`: true, `[0]`: true, `{"a":1}`: true, `-1`: true,
		`false`: false, `0`: false, `""`: false, `[]`: false, `{}`: false, `null`: false, ``: false, `0.0`: false} {
		if truthy(json.RawMessage(v)) != want {
			t.Errorf("truthy(%s) != %v", v, want)
		}
	}
	payload := base64.RawURLEncoding.EncodeToString([]byte("x")) // not a payload: no claims
	w := &window{token: &token{claims: json.RawMessage(payload)}}
	if w.admits("claim:is_staff") || w.admits("perm:x") {
		t.Error("garbage claims admitted")
	}
}

// The window a handler sees carries df_websockets' WindowInfo fields under
// their names, from the session's claims.
func TestWindowInfoDjangoFields(t *testing.T) {
	f := newFixture(t, config.Signals{}, nil)
	f.attach(t, Window{ID: "staff", User: "42", Claims: claims(map[string]any{"sub": "42", "username": "sam", "is_staff": true,
		"is_superuser": 0, "perms": []string{"app.run"}, "csrf_cookie": "tok", "language_code": "fr", "is_active": false})})
	f.attach(t, Window{ID: "anon"})
	f.attach(t, Window{ID: "plain", User: "7", Claims: claims(map[string]any{"sub": "7"})})
	got := map[string]WindowInfo{}
	for _, w := range f.svc.Windows("", 100) {
		got[w.ClientID] = w.WindowInfo
	}
	s := got["staff"]
	if s.UserPK != "42" || !s.UserSet || s.Username != "sam" || !s.IsStaff || s.IsSuperuser || s.IsActive ||
		s.CSRFCookie != "tok" || s.LanguageCode != "fr" || len(s.Perms) != 1 || s.Perms[0] != "app.run" {
		t.Errorf("staff: %+v", s)
	}
	if a := got["anon"]; a.UserPK != "" || a.UserSet || a.IsActive || a.Perms == nil {
		t.Errorf("anonymous: %+v", a)
	}
	if p := got["plain"]; !p.IsActive || !p.UserSet || p.IsStaff || p.Perms == nil {
		t.Errorf("a user without those claims: %+v", p)
	}
	b, _ := json.Marshal(got["anon"])
	if !strings.Contains(string(b), `"perms":[]`) || !strings.Contains(string(b), `"user_pk":""`) {
		t.Errorf("anonymous as JSON: %s", b)
	}
}

// A form argument takes a serialized form ([{name, value}]) and reaches
// the handler as an object; anything else is refused, naming the shape.
func TestFormArgument(t *testing.T) {
	var got json.RawMessage
	f := newFixture(t, config.Signals{}, func(s *Service) {
		err := s.Register("demo.form", func(ctx context.Context, c *Call) (any, error) {
			got = c.Kwargs
			return nil, nil
		}, Options{Allowed: "anyone", Sync: true, Args: []config.SignalArg{{Name: "form", Type: config.ArgForm, Required: true}}})
		if err != nil {
			t.Fatal(err)
		}
	})
	f.attach(t, Window{ID: "w"})
	ctx := context.Background()
	if _, err := f.svc.Call(ctx, "w", "demo.form", json.RawMessage(`{"form": [{"name": "title", "value": "x"}, {"name": "tag", "value": "a"}, {"name": "tag", "value": "b"}, {"name": "n", "value": null}]}`)); err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(got, &m); err != nil || m["form"]["title"] != "x" || fmt.Sprint(m["form"]["tag"]) != "[a b]" || m["form"]["n"] != nil || len(m["form"]) != 3 {
		t.Fatalf("the handler got %s", got)
	}
	for _, bad := range []string{`{"form": {"title": "x"}}`, `{"form": [{"value": "x"}]}`, `{"form": [{"name": 1, "value": "x"}]}`, `{"form": ["x"]}`} {
		_, err := f.svc.Call(ctx, "w", "demo.form", json.RawMessage(bad))
		var ae *ArgsError
		if !errors.As(err, &ae) || !strings.Contains(ae.Args["form"], "serialized form") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
