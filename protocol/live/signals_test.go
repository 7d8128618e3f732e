package live

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/signal"
)

// signalsHandler is a /live handler with a signal service on a real queue
// (SQLite in a temp dir) and one attached session.
func signalsHandler(tb testing.TB) (*Handler, *session, *frames) {
	tb.Helper()
	b := memory.New(memory.Config{})
	hb, err := hub.New(hub.Config{Broker: b, Presence: b, Channels: config.Channels{Default: config.DefaultChannelOptions()}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hb.Close(); b.Close(context.Background()) })
	q, err := queue.Open(context.Background(), queue.Config{Path: filepath.Join(tb.TempDir(), "queue.db"), Queues: []config.Queue{config.DefaultQueueConfig("default")}})
	if err != nil {
		tb.Fatal(err)
	}
	sig := config.Default().Signals
	sig.CallsPerSecond = 0
	svc, err := signal.New(signal.Config{Queue: q, Signals: sig})
	if err != nil {
		tb.Fatal(err)
	}
	noop := func(context.Context, *signal.Call) (any, error) { return map[string]int{"ok": 1}, nil }
	n := 5
	for _, r := range []struct {
		name string
		o    signal.Options
	}{
		{"demo.echo", signal.Options{Allowed: "anyone", Args: []config.SignalArg{{Name: "content", Type: "string", Required: true, MaxLength: &n}}}},
		{"demo.sync", signal.Options{Allowed: "anyone", Sync: true, ExtraArgs: "accept"}},
		{"demo.private", signal.Options{}},
	} {
		if err := svc.Register(r.name, noop, r.o); err != nil {
			tb.Fatal(err)
		}
	}
	if err := q.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q.Stop(ctx)
	})
	h := New(Config{Hub: hb, Signals: svc})
	w := &frames{wrote: make(chan struct{}, 1)}
	sess := &session{hs: hb.Connect("sig", hub.Principal{}, w, h.enc)}
	h.attachSignals(sess, &opening{})
	return h, sess, w
}

func (w *frames) take() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	return got
}

// waitFrames waits for n frames.
func (w *frames) waitFrames(t *testing.T, n int) [][]byte {
	t.Helper()
	var got [][]byte
	deadline := time.After(60 * time.Second)
	for len(got) < n {
		got = append(got, w.take()...)
		if len(got) >= n {
			break
		}
		select {
		case <-w.wrote:
		case <-deadline:
			t.Fatalf("got %d frames, want %d: %q", len(got), n, got)
		}
	}
	return got
}

func TestSignalsStream(t *testing.T) {
	h, sess, w := signalsHandler(t)
	for _, tc := range []struct{ in, want string }{
		{`{"stream":"$signals","payload":{"action":"call","request_id":1,"signal":"demo.sync","kwargs":{"a":1}}}`,
			`{"stream":"$signals","payload":{"errors":[],"data":{"job_ids":[],"result":{"ok":1}},"action":"call","response_status":200,"request_id":1}}`},
		{`{"stream":"$signals","payload":{"action":"call","request_id":2,"signal":"demo.echo","kwargs":{"content":1,"x":2}}}`,
			`{"stream":"$signals","payload":{"errors":[{"content":["must be a string"],"x":["this signal has no such argument"]}],"data":null,"action":"call","response_status":400,"request_id":2}}`},
		{`{"stream":"$signals","payload":{"action":"call","request_id":3,"signal":"demo.private"}}`,
			`{"stream":"$signals","payload":{"errors":["signal \"demo.private\" cannot be called from a client"],"data":null,"action":"call","response_status":403,"request_id":3}}`},
		{`{"stream":"$signals","payload":{"action":"call","request_id":4,"signal":"no.such"}}`,
			`{"stream":"$signals","payload":{"errors":["unknown signal \"no.such\""],"data":null,"action":"call","response_status":404,"request_id":4}}`},
		{`{"stream":"$signals","payload":{"action":"trigger","request_id":5}}`,
			`{"stream":"$signals","payload":{"errors":["unknown action \"trigger\" on $signals"],"data":null,"action":"trigger","response_status":405,"request_id":5}}`},
		{`{"stream":"$signals","payload":{"action":"call","request_id":6,"signal":["x"]}}`,
			`{"stream":"$signals","payload":{"errors":["invalid payload: field signal must be string"],"data":null,"action":"call","response_status":400,"request_id":6}}`},
	} {
		h.handle(sess, []byte(tc.in))
		got := w.waitFrames(t, 1)
		if len(got) != 1 || string(got[0]) != tc.want {
			t.Errorf("%s\n got %q\nwant %s", tc.in, got, tc.want)
		}
	}
	h.handle(sess, []byte(`{"stream":"$signals","payload":{"action":"call","request_id":7,"signal":"demo.echo","kwargs":{"content":"hi"}}}`))
	got := w.waitFrames(t, 1)
	if !strings.Contains(string(got[0]), `"response_status":202`) || !strings.Contains(string(got[0]), `"job_id":`) {
		t.Errorf("queued call: %q", got)
	}
	// A trigger to this window is pushed on $signals.
	res, err := h.cfg.Signals.Trigger(context.Background(), signal.Trigger{Signal: "demo.reply", To: signal.Target{Windows: []string{"sig"}}, Kwargs: json.RawMessage(`{"a":[1]}`)})
	if err != nil {
		t.Fatal(err)
	}
	got = w.waitFrames(t, 1)
	want := `{"stream":"$signals","payload":{"action":"signal","signal":"demo.reply","kwargs":{"a":[1]},"signal_id":"` + res.SignalID + `"}}`
	if string(got[0]) != want {
		t.Errorf("push\n got %s\nwant %s", got[0], want)
	}
}

// Whatever a client sends on $signals, the handler answers with
// well-formed frames and never panics.
func FuzzSignals(f *testing.F) {
	for _, s := range []string{
		`{"stream":"$signals","payload":{"action":"call","request_id":1,"signal":"demo.sync","kwargs":{"a":1}}}`,
		`{"stream":"$signals","payload":{"action":"call","request_id":2,"signal":"demo.echo","kwargs":{"content":"hi"}}}`,
		`{"stream":"$signals","payload":{"action":"call","signal":"demo.echo","kwargs":{"content":[1,{"x":null}]}}}`,
		`{"stream":"$signals","payload":{"action":"call","signal":"demo.private","kwargs":null}}`,
		`{"stream":"$signals","payload":{"action":"call","signal":"","kwargs":"x"}}`,
		`{"stream":"$signals","payload":{"action":"call","signal":"a.b.c","kwargs":{"":1e999}}}`,
		`{"stream":"$signals","payload":{"action":"nope"}}`,
		`{"stream":"$signals","payload":[]}`,
	} {
		f.Add([]byte(s))
	}
	h, sess, w := signalsHandler(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h.handle(sess, data)
		for _, fr := range w.take() {
			var env struct {
				Stream  string         `json:"stream"`
				Payload map[string]any `json:"payload"`
			}
			if err := json.Unmarshal(fr, &env); err != nil || env.Stream == "" || env.Payload == nil {
				t.Fatalf("malformed frame %q for input %q", fr, data)
			}
		}
	})
}
