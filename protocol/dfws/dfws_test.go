package dfws

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/queue"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// fixture is a handler on a real hub, signal service and queue (SQLite
// in a temp dir), with one attached connection writing to frames.
type fixture struct {
	h     *Handler
	sess  *session
	out   *frames
	calls chan string // "<signal> <kwargs>" of every handler run
}

type frames struct {
	mu  sync.Mutex
	got [][]byte
}

func (w *frames) WriteFrames(_ context.Context, fs [][]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range fs {
		w.got = append(w.got, slices.Clone(f))
	}
	return nil
}
func (w *frames) Close(int, string) error { return nil }

func (w *frames) take() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	return got
}

func newFixture(tb testing.TB, c Config) *fixture {
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
	f := &fixture{out: &frames{}, calls: make(chan string, 100)}
	record := func(_ context.Context, c *signal.Call) (any, error) {
		select {
		case f.calls <- c.Signal + " " + string(c.Kwargs):
		default:
		}
		return nil, nil
	}
	for _, r := range []struct {
		name string
		o    signal.Options
	}{
		{"demo.echo", signal.Options{Allowed: "anyone", Sync: true, Args: []config.SignalArg{{Name: "content", Type: "string", Required: true}}}},
		{"demo.private", signal.Options{Sync: true}},
	} {
		if err := svc.Register(r.name, record, r.o); err != nil {
			tb.Fatal(err)
		}
	}
	c.Signals, c.Hub = svc, hb
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.UserModel == "" {
		c.UserModel = "auth.user"
	}
	if err := c.Cookie.check(); err != nil {
		tb.Fatal(err)
	}
	c.RequestTimeout = 10 * time.Second
	h := &Handler{cfg: c, log: c.Logger}
	if h.log == nil {
		h.log = discard()
	}
	f.h = h
	hs := hb.Connect("conn1", hub.Principal{}, f.out, hubEncoder{})
	f.sess = &session{hs: hs, stopKeep: func() {}}
	if err := svc.Attach(context.Background(), signal.Window{ID: "conn1", Transport: "dfws", Sender: hs, Encoder: pushEncoder{}}); err != nil {
		tb.Fatal(err)
	}
	return f
}

// flushed waits until every frame queued so far on the session is
// written (a heartbeat is answered behind them).
func (f *fixture) flushed(t testing.TB) [][]byte {
	t.Helper()
	f.h.handle(f.sess, ws.Text, []byte(Heartbeat))
	var got [][]byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = append(got, f.out.take()...)
		if n := len(got); n > 0 && string(got[n-1]) == Heartbeat {
			return got[:n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat answer: %q", got)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCookiesByteForByte(t *testing.T) {
	yes, no := true, false
	key := regexp.MustCompile(`^[a-z0-9]{32}$`)
	for _, tc := range []struct {
		name   string
		cfg    Config
		req    WindowRequest
		url    string
		suffix string
	}{
		{"the spec's page", Config{Cookie: Cookie{SameSite: "Lax"}}, WindowRequest{Host: "example.com:8000"},
			"ws%3A%2F%2Fexample.com%3A8000%2Fws%2F", "; Max-Age=86400; Path=/; SameSite=Lax"},
		{"https page", Config{Cookie: Cookie{SameSite: "Lax"}}, WindowRequest{Host: "example.com", Secure: &yes},
			"wss%3A%2F%2Fexample.com%2Fws%2F", "; Max-Age=86400; Path=/; SameSite=Lax; Secure"},
		{"csrf settings", Config{Path: "/sig/", Cookie: Cookie{Domain: ".example.com", Path: "/app", SameSite: "Strict"}}, WindowRequest{Host: "www.example.com"},
			"ws%3A%2F%2Fwww.example.com%2Fsig%2F", "; Domain=.example.com; Max-Age=86400; Path=/app; SameSite=Strict"},
		{"no samesite", Config{}, WindowRequest{Host: "h"},
			"ws%3A%2F%2Fh%2Fws%2F", "; Max-Age=86400; Path=/"},
		{"configured url", Config{URL: "wss://sy.example.com/ws/", Cookie: Cookie{SameSite: "Lax"}}, WindowRequest{Host: "ignored.example.com"},
			"wss%3A%2F%2Fsy.example.com%2Fws%2F", "; Max-Age=86400; Path=/; SameSite=Lax; Secure"},
		{"configured url, page says http", Config{URL: "wss://sy.example.com/ws/", Cookie: Cookie{SameSite: "Lax"}}, WindowRequest{Secure: &no},
			"wss%3A%2F%2Fsy.example.com%2Fws%2F", "; Max-Age=86400; Path=/; SameSite=Lax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			w, err := f.h.NewWindow(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !key.MatchString(w.WindowKey) {
				t.Fatalf("window key %q", w.WindowKey)
			}
			want := []string{"dfwsurl=" + tc.url + tc.suffix, "dfwskey=" + w.WindowKey + tc.suffix}
			if !slices.Equal(w.Cookies, want) {
				t.Errorf("cookies\n got %q\nwant %q", w.Cookies, want)
			}
		})
	}
}

func TestNewWindowTopicsAndErrors(t *testing.T) {
	f := newFixture(t, Config{Cookie: Cookie{SameSite: "Lax"}})
	ctx := context.Background()
	w, err := f.h.NewWindow(ctx, WindowRequest{Host: "h", User: "7", Topics: []json.RawMessage{json.RawMessage(`"room1"`), json.RawMessage(`100`)}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-window." + w.WindowKey, "-broadcast", "-auth.user.7", StringTopic("room1"), "-int.100"}
	if !slices.Equal(w.Topics, want) {
		t.Errorf("topics %q, want %q", w.Topics, want)
	}
	// Two pages, two keys.
	w2, _ := f.h.NewWindow(ctx, WindowRequest{Host: "h"})
	if w2.WindowKey == w.WindowKey || slices.Contains(w2.Topics, "-auth.user.7") || len(w2.Topics) != 2 {
		t.Errorf("second window %+v", w2)
	}
	for _, tc := range []struct {
		req  WindowRequest
		want string
	}{
		{WindowRequest{}, `field "host" is required`},
		{WindowRequest{Host: "a/b"}, `field "host" must be a host[:port]`},
		{WindowRequest{Host: "h", Topics: []json.RawMessage{json.RawMessage(`"ok"`), json.RawMessage(`1.5`)}}, `field "topics"[1]: topic 1.5`},
		{WindowRequest{Host: "h", User: strings.Repeat("u", 300)}, `field "user" must be at most 200 bytes`},
		{WindowRequest{Host: "h", Topics: []json.RawMessage{json.RawMessage(`{"topic": "-` + strings.Repeat("x", 300) + `"}`)}}, "topic over 200 bytes"},
	} {
		_, err := f.h.NewWindow(ctx, tc.req)
		if switchyard.ErrorCode(err) != switchyard.CodeBadRequest || !strings.Contains(switchyard.ErrorMessage(err), tc.want) {
			t.Errorf("%+v: %v, want a 400 with %q", tc.req, err, tc.want)
		}
	}
}

// The frames of the conformance section, through the handler (the
// server test does it again over real sockets).
func TestFrames(t *testing.T) {
	f := newFixture(t, Config{})
	send := func(s string) { f.h.handle(f.sess, ws.Text, []byte(s)) }
	for _, in := range []string{
		`{"signal":"demo.private","opts":{}}`,                     // server_side: not run
		`{"signal":"demo.echo","opts":{}}`,                        // missing required content
		`{"signal":"demo.echo","opts":{"content":"x","extra":1}}`, // unknown kwarg
		`{"signal":"demo.echo","opts":{"content":1}}`,             // wrong type
		`{"signal":"demo.echo","opts":[1]}`,                       // opts not an object
		`{"signal":"no.such","opts":{}}`,                          // unknown
		`{"opts":{}}`,                                             // no signal
		`{"signal":"demo.echo"}`,                                  // no opts
		`{"signal":["demo.echo"],"opts":{"content":"x"}}`,         // signal not a string
		`{"signal":"demo.echo","opts":{"content":"x"},"countdown":5}`,
		`not json`, `[1,2]`, `"str"`, `null`, ``, `--heartbeat-- `,
	} {
		send(in)
	}
	f.h.handle(f.sess, ws.Binary, []byte(`{"signal":"demo.echo","opts":{"content":"bin"}}`))
	if got := f.flushed(t); len(got) != 0 {
		t.Errorf("frames answered: %q", got)
	}
	select {
	case c := <-f.calls:
		t.Fatalf("a handler ran: %s", c)
	default:
	}
	send(`{"signal":"demo.echo","opts":{"content":"hi"}}`)
	if c := <-f.calls; c != `demo.echo {"content":"hi"}` {
		t.Errorf("call %s", c)
	}
	if got := f.flushed(t); len(got) != 0 {
		t.Errorf("a call was answered: %q", got)
	}
	// A trigger: {"signal", "opts", "signal_id"}.
	res, err := f.h.cfg.Signals.Trigger(context.Background(), signal.Trigger{Signal: "html.content", To: signal.Target{Broadcast: true}, Kwargs: json.RawMessage(`{"selector":"#x","content":"<b>y</b>"}`)})
	if err != nil {
		t.Fatal(err)
	}
	got := f.flushed(t)
	want := `{"signal":"html.content","opts":{"selector":"#x","content":"<b>y</b>"},"signal_id":"` + res.SignalID + `"}`
	if len(got) != 1 || !sameJSON(got[0], want) {
		t.Errorf("push\n got %q\nwant %s", got, want)
	}
}

// Whatever a client sends, nothing is answered but the heartbeat, and
// nothing panics.
func FuzzFrame(f *testing.F) {
	for _, s := range []string{
		Heartbeat,
		`{"signal":"demo.echo","opts":{"content":"hi"}}`,
		`{"signal":"demo.echo","opts":{"content":[1,{"x":null}]}}`,
		`{"signal":"demo.private","opts":null}`,
		`{"signal":"","opts":"x"}`,
		`{"signal":"a.b.c","opts":{"":1e999},"eta":1}`,
		`{"opts":{}}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	fx := newFixture(f, Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.h.handle(fx.sess, ws.Text, data)
		got := fx.flushed(t)
		want := 0
		if string(data) == Heartbeat {
			want = 1
		}
		if len(got) != want {
			t.Fatalf("input %q answered %q", data, got)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// sameJSON compares a frame with the expected one as parsed JSON.
func sameJSON(frame []byte, want string) bool {
	var a, b any
	return json.Unmarshal(frame, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}
