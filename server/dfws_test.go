package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/protocol/dfws"
	"github.com/switchyardhq/switchyard/signal"
)

// dfwsServer serves the df_websockets wire (beside Channelstream, whose
// /ws has no slash) with the spec's handlers: demo.echo (everyone, a
// required content string), which triggers demo.reply to its WINDOW and
// "room1", and demo.private (server_side). ran receives the content of
// every demo.echo run.
func dfwsServer(t *testing.T, mutate func(*config.Config)) (base string, ran chan string) {
	t.Helper()
	ran = make(chan string, 100)
	register := func(s *signal.Service) error {
		echo := func(ctx context.Context, c *signal.Call) (any, error) {
			var a struct{ Content string }
			if err := json.Unmarshal(c.Kwargs, &a); err != nil {
				return nil, err
			}
			ran <- a.Content
			kw, _ := json.Marshal(map[string]string{"text": a.Content})
			// trigger(window_info, "demo.reply", to=[WINDOW, "room1"], text=...)
			_, err := c.Trigger(ctx, signal.Trigger{Signal: "demo.reply", Kwargs: kw,
				To: signal.Target{Windows: []string{c.Window.WindowKey}, Topics: []string{dfws.StringTopic("room1")}}})
			return nil, err
		}
		err := s.Register("demo.echo", echo, signal.Options{Allowed: "anyone", Sync: true, Args: []config.SignalArg{{Name: "content", Type: "string", Required: true}}})
		if err != nil {
			return err
		}
		return s.Register("demo.private", echo, signal.Options{Sync: true, ExtraArgs: "accept"})
	}
	base, _ = start(t, func(c *config.Config) {
		authConfig(true)(c)
		c.Channelstream.Enabled, c.Channelstream.Secret = true, "channelstream-secret"
		c.Limits.MaxMessageSize = 4 * config.KiB
		if mutate != nil {
			mutate(c)
		}
	}, Options{Signals: register})
	return base, ran
}

// dfwsClient is a socket of the df_websockets wire, reading in the
// background.
type dfwsClient struct {
	t    *testing.T
	c    *websocket.Conn
	mu   sync.Mutex
	in   []string
	err  error
	cond chan struct{}
}

func dialDFWS(t *testing.T, base, key string, hdr http.Header) *dfwsClient {
	t.Helper()
	if hdr == nil {
		hdr = http.Header{}
	}
	if key != "" {
		hdr.Set("Cookie", "csrftoken=x; dfwskey="+key)
	}
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws/", hdr)
	if err != nil {
		t.Fatalf("dial /ws/: %v (%v)", err, resp)
	}
	dc := &dfwsClient{t: t, c: c, cond: make(chan struct{}, 1)}
	go func() {
		for {
			_, data, err := c.ReadMessage()
			dc.mu.Lock()
			if err != nil {
				dc.err = err
			} else {
				dc.in = append(dc.in, string(data))
			}
			dc.mu.Unlock()
			select {
			case dc.cond <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return dc
}

func (dc *dfwsClient) send(s string) {
	dc.t.Helper()
	if err := dc.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		dc.t.Fatal(err)
	}
}

// next waits for the next frame.
func (dc *dfwsClient) next() string {
	dc.t.Helper()
	deadline := time.After(slow)
	for {
		dc.mu.Lock()
		if len(dc.in) > 0 {
			f := dc.in[0]
			dc.in = dc.in[1:]
			dc.mu.Unlock()
			return f
		}
		err := dc.err
		dc.mu.Unlock()
		if err != nil {
			dc.t.Fatalf("connection ended: %v", err)
		}
		select {
		case <-dc.cond:
		case <-deadline:
			dc.t.Fatal("no frame")
		}
	}
}

// quiet checks that nothing but the answer to a heartbeat sent now
// arrives: the server delivers in order, so anything sent before it
// would come first.
func (dc *dfwsClient) quiet() {
	dc.t.Helper()
	dc.send(dfws.Heartbeat)
	if f := dc.next(); f != dfws.Heartbeat {
		dc.t.Fatalf("unexpected frame %s", f)
	}
}

// closed waits for the connection to end and returns its close code.
func (dc *dfwsClient) closed() int {
	dc.t.Helper()
	deadline := time.After(slow)
	for {
		dc.mu.Lock()
		err := dc.err
		dc.mu.Unlock()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
		select {
		case <-dc.cond:
		case <-deadline:
			dc.t.Fatal("still open")
		}
	}
}

// push is a server → client signal frame, compared as parsed JSON.
type push struct {
	Signal   string         `json:"signal"`
	Opts     map[string]any `json:"opts"`
	SignalID string         `json:"signal_id"`
}

var uuid4RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func (dc *dfwsClient) push(signal string, opts map[string]any) push {
	dc.t.Helper()
	f := dc.next()
	var keys map[string]json.RawMessage
	var p push
	if json.Unmarshal([]byte(f), &keys) != nil || json.Unmarshal([]byte(f), &p) != nil || len(keys) != 3 {
		dc.t.Fatalf("frame %s: want exactly {signal, opts, signal_id}", f)
	}
	if p.Signal != signal || !reflect.DeepEqual(p.Opts, opts) || !uuid4RE.MatchString(p.SignalID) {
		dc.t.Fatalf("frame %s: want signal %s, opts %v and a uuid4 signal_id", f, signal, opts)
	}
	return p
}

// bootstrap is the page view's call: a window key and its cookies.
func bootstrap(t *testing.T, base string, body map[string]any) (key string, out map[string]any) {
	t.Helper()
	status, out := callAPI(t, base, testAPIKey, "windows", body)
	if status != 200 {
		t.Fatalf("windows %v: %d %v", body, status, out)
	}
	return out["window_key"].(string), out
}

func sha224hex(s string) string {
	sum := sha256.Sum224([]byte(s))
	return hex.EncodeToString(sum[:])
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// The df_websockets frames of the conformance section, against a real
// server, compared as parsed JSON.
func TestDFWebsocketsConformance(t *testing.T) {
	base, ran := dfwsServer(t, nil)

	// HTTP GET /page → the two Set-Cookie values, byte for byte.
	key, out := bootstrap(t, base, map[string]any{"topics": []any{"room1"}, "user": 1, "host": "example.com:8000"})
	if !regexp.MustCompile(`^[a-z0-9]{32}$`).MatchString(key) {
		t.Fatalf("window key %q", key)
	}
	wantCookies := []any{
		"dfwsurl=ws%3A%2F%2Fexample.com%3A8000%2Fws%2F; Max-Age=86400; Path=/; SameSite=Lax",
		"dfwskey=" + key + "; Max-Age=86400; Path=/; SameSite=Lax",
	}
	if !reflect.DeepEqual(out["cookies"], wantCookies) || out["url"] != "ws://example.com:8000/ws/" {
		t.Fatalf("bootstrap %v", out)
	}

	// WS GET /ws/ Cookie: dfwskey=<key> → 101, groups = sha256 of the
	// window's serialized topics.
	a := dialDFWS(t, base, key, nil)
	a.quiet() // open, and --heartbeat-- is echoed verbatim
	status, list := callAPI(t, base, testAPIKey, "windows", map[string]any{"window": key})
	ws, _ := list["windows"].([]any)
	if status != 200 || len(ws) != 1 {
		t.Fatalf("windows %d %v", status, list)
	}
	win := ws[0].(map[string]any)
	var groups []string
	for _, topic := range win["topics"].([]any) {
		groups = append(groups, sha256hex(topic.(string)))
	}
	slices.Sort(groups)
	want := []string{
		sha256hex("-window." + key),
		"7e8c980efe5bc654f4eae9b110014bcb3cb1a892a0eb70092abec016072eeb2d", // -broadcast
		sha256hex("-str." + sha224hex("room1")),
		"af1d3cef7ff35aa63e3e3828a2c174e93d0c624017e38c3f437cb9605abca828", // -auth.user.1
	}
	slices.Sort(want)
	if !slices.Equal(groups, want) || win["transport"] != "dfws" || win["user"] != "1" || win["window_key"] != key {
		t.Fatalf("window %v: groups %v, want %v", win, groups, want)
	}

	// A second page in room1 (user 2), and a socket with no cookie.
	key2, _ := bootstrap(t, base, map[string]any{"topics": []any{"room1", 100}, "user": "2", "host": "example.com:8000"})
	b := dialDFWS(t, base, key2, nil)
	c := dialDFWS(t, base, "", nil)
	b.quiet()
	c.quiet()

	// A call: the handler runs, nothing is answered; its trigger to
	// [WINDOW, "room1"] reaches this window once (it is in both), and the
	// other window of room1, with the same signal_id.
	a.send(`{"signal":"demo.echo","opts":{"content":"hi"}}`)
	if got := <-ran; got != "hi" {
		t.Fatalf("ran with %q", got)
	}
	pa := a.push("demo.reply", map[string]any{"text": "hi"})
	pb := b.push("demo.reply", map[string]any{"text": "hi"})
	if pa.SignalID != pb.SignalID {
		t.Errorf("two signal_ids for one trigger: %s %s", pa.SignalID, pb.SignalID)
	}
	a.quiet()
	c.quiet() // not in room1: nothing

	// Calls that are not run, and frames that are ignored: no answer,
	// the socket stays open.
	for _, in := range []string{
		`{"signal":"demo.private","opts":{}}`,
		`{"signal":"demo.echo","opts":{}}`,
		`{"signal":"demo.echo","opts":{"content":"x","extra":1}}`,
		`{"signal":"no.such","opts":{}}`,
		`{"opts":{}}`,
		`{"signal":"demo.echo"}`,
		`not json`,
	} {
		a.send(in)
	}
	a.quiet()
	select {
	case got := <-ran:
		t.Fatalf("a handler ran with %q", got)
	default:
	}

	// server: trigger(…, "html.content", to=BROADCAST, …) → every window.
	status, res := callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "html.content", "to": map[string]any{"broadcast": true}, "kwargs": map[string]any{"selector": "#x", "content": "<b>y</b>"}})
	if status != 200 || res["delivered"] != 3.0 {
		t.Fatalf("trigger %d %v", status, res)
	}
	for _, cl := range []*dfwsClient{a, b, c} {
		if p := cl.push("html.content", map[string]any{"selector": "#x", "content": "<b>y</b>"}); p.SignalID != res["signal_id"] {
			t.Errorf("signal_id %s, want %s", p.SignalID, res["signal_id"])
		}
	}

	// server: trigger(request_of_user_1, "notify", to=USER, n=1) → only
	// the windows of user 1.
	callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "notify", "to": map[string]any{"users": []string{"1"}}, "kwargs": map[string]any{"n": 1}})
	a.push("notify", map[string]any{"n": 1.0})
	// A topic given as an integer: -int.100.
	callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "count", "to": map[string]any{"topics": []string{"-int.100"}}, "kwargs": map[string]any{}})
	b.push("count", map[string]any{})
	for _, cl := range []*dfwsClient{a, b, c} {
		cl.quiet()
	}

	// The same cookie after a reconnect: the same window, the same topics.
	a.c.Close()
	a2 := dialDFWS(t, base, key, nil)
	a2.quiet()
	callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "again", "to": map[string]any{"topics": []string{dfws.StringTopic("room1")}}, "kwargs": map[string]any{}})
	a2.push("again", map[string]any{})
	b.push("again", map[string]any{})
	c.quiet()
}

// A missing or unknown dfwskey is accepted with no topics, as upstream;
// such a socket receives broadcasts and nothing addressed to the topics,
// users or keys of others.
func TestDFWebsocketsUnknownKey(t *testing.T) {
	base, _ := dfwsServer(t, nil)
	key, _ := bootstrap(t, base, map[string]any{"topics": []any{"room1"}, "user": 1, "host": "h"})
	owner := dialDFWS(t, base, key, nil)
	unknown := dialDFWS(t, base, strings.Repeat("z", 32), nil)
	tooLong := dialDFWS(t, base, strings.Repeat("k", 300), nil)
	none := dialDFWS(t, base, "", nil)
	for _, cl := range []*dfwsClient{owner, unknown, tooLong, none} {
		cl.quiet()
	}
	_, list := callAPI(t, base, testAPIKey, "windows", map[string]any{"limit": 100})
	n := 0
	for _, w := range list["windows"].([]any) {
		w := w.(map[string]any)
		if w["window_key"] == key {
			continue
		}
		n++
		if len(w["topics"].([]any)) != 0 || w["user"] != "" {
			t.Errorf("a socket without a known key has topics or a user: %v", w)
		}
	}
	if n != 3 {
		t.Fatalf("%d other windows: %v", n, list)
	}
	for _, to := range []map[string]any{
		{"topics": []string{dfws.StringTopic("room1")}},
		{"users": []string{"1"}},
		{"windows": []string{key}},
	} {
		callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "private.thing", "to": to, "kwargs": map[string]any{}})
		owner.push("private.thing", map[string]any{})
	}
	callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "everyone", "to": map[string]any{"broadcast": true}})
	for _, cl := range []*dfwsClient{owner, unknown, tooLong, none} {
		cl.push("everyone", map[string]any{})
		cl.quiet()
	}
}

// Bad input on the wire never closes another socket: a frame over
// limits.max_message_size closes its own socket with 1009, a flood of
// calls is cut by signals.calls_per_second, and the others keep
// receiving.
func TestDFWebsocketsBadInput(t *testing.T) {
	base, ran := dfwsServer(t, func(c *config.Config) { c.Signals.CallsPerSecond = 2 })
	key, _ := bootstrap(t, base, map[string]any{"topics": []any{"room1"}, "host": "h"})
	bad := dialDFWS(t, base, key, nil)
	good := dialDFWS(t, base, key, nil)
	bad.quiet()
	good.quiet()
	// A flood: at most the burst (twice the rate) runs, and is never
	// answered; each run's trigger reaches both sockets of the window.
	for i := range 20 {
		bad.send(fmt.Sprintf(`{"signal":"demo.echo","opts":{"content":"%d"}}`, i))
	}
	bad.send(dfws.Heartbeat)
	n := 0
	for f := bad.next(); f != dfws.Heartbeat; f = bad.next() {
		n++
		good.push("demo.reply", map[string]any{"text": fmt.Sprint(n - 1)})
	}
	if n < 1 || n > 5 || len(ran) != n {
		t.Errorf("%d of 20 calls ran (%d pushes) with calls_per_second 2", len(ran), n)
	}
	good.quiet()
	bad.send(`{"signal":"demo.echo","opts":{"content":"` + strings.Repeat("x", 5000) + `"}}`)
	if code := bad.closed(); code != websocket.CloseMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}
	callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "still", "to": map[string]any{"windows": []string{key}}})
	good.push("still", map[string]any{})
	good.quiet()
}

// Channelstream's /ws (no slash) and df_websockets' /ws/ are two wires;
// plain HTTP to /ws/ is refused; the bootstrap's errors name the field;
// with the wire off, /ws/ is not served and windows without a window is
// refused as before.
func TestDFWebsocketsRoutes(t *testing.T) {
	base, _ := dfwsServer(t, nil)
	status, body := get(t, base+"/ws/")
	if status != 400 || !strings.Contains(body, "df_websockets") {
		t.Errorf("GET /ws/: %d %s", status, body)
	}
	// /ws is Channelstream's: plain HTTP gets its answer, and a socket
	// without a conn_id its close.
	if status, body := get(t, base+"/ws"); status != 400 || !strings.Contains(body, `"request"`) || strings.Contains(body, "df_websockets") {
		t.Errorf("GET /ws: %d %s", status, body)
	}
	cs, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cs.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := cs.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) || !strings.Contains(err.Error(), "conn_id") {
		t.Errorf("/ws without conn_id: %v", err)
	}
	for _, tc := range []struct {
		body map[string]any
		msg  string
	}{
		{map[string]any{"topics": []any{"a", 1.5}, "host": "h"}, `field "topics"[1]`},
		{map[string]any{"topics": []any{}}, `field "host" is required`},
		{map[string]any{"topics": "room", "host": "h"}, `field "topics" has the wrong type`},
		{map[string]any{"user": true, "host": "h"}, `field "user" must be a string or an integer`},
		{map[string]any{"user": "1", "host": "h", "add": []string{"x"}}, `unknown field "add"`},
	} {
		status, out := callAPI(t, base, testAPIKey, "windows", tc.body)
		if status != 400 || !strings.Contains(fmt.Sprint(out), tc.msg) {
			t.Errorf("%v: %d %v, want 400 with %s", tc.body, status, out, tc.msg)
		}
	}
	// Without the API key: 401, no window.
	if status, _ := callAPI(t, base, "", "windows", map[string]any{"topics": []any{"a"}, "host": "h"}); status != 401 {
		t.Errorf("no API key: %d", status)
	}

	off, _ := dfwsServer(t, func(c *config.Config) { c.DFWebsockets.Path = "" })
	if status, _ := get(t, off+"/ws/"); status != 404 {
		t.Errorf("wire off: GET /ws/ %d", status)
	}
	if status, out := callAPI(t, off, testAPIKey, "windows", map[string]any{"topics": []any{"a"}}); status != 400 || !strings.Contains(fmt.Sprint(out), `"window" is required`) {
		t.Errorf("wire off: %d %v", status, out)
	}
}

// TestDFWebsocketsNodeClient runs the flows of df_websockets.min.js
// (tests/dfws: an imitation of the unmodified client, which is not on
// npm, over the Node ws package) against this server. CI installs the
// ws package with npm ci; locally the test skips, visibly, until `cd
// tests/dfws && npm ci`.
func TestDFWebsocketsNodeClient(t *testing.T) {
	dir := nodeTestDir(t, "dfws", "ws")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required for the df_websockets client flows")
	}
	register := func(s *signal.Service) error {
		return s.Register("flow.echo", func(ctx context.Context, c *signal.Call) (any, error) {
			_, err := c.Reply(ctx, "flow.echoed", c.Kwargs)
			return nil, err
		}, signal.Options{Allowed: "anyone", Sync: true, Args: []config.SignalArg{{Name: "n", Type: "int", Required: true}}})
	}
	base, _ := start(t, func(c *config.Config) {
		authConfig(true)(c)
		c.Channelstream.Enabled, c.Channelstream.Secret = true, "channelstream-secret"
	}, Options{Signals: register})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "flow.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SWITCHYARD_URL="+base, "SWITCHYARD_API_KEY="+testAPIKey, "SWITCHYARD_JWT_SECRET="+testSecret)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("df_websockets client flows failed: %v", err)
	}
	if !strings.Contains(string(out), "ℹ pass 6") || !strings.Contains(string(out), "ℹ fail 0") {
		t.Fatal("unexpected summary: want 6 passing and none failing")
	}
}

// The configuration of docs/django.md loads as written, and its
// bootstrap answers the cookies the page shows.
func TestDjangoDocDFWebsocketsConfig(t *testing.T) {
	cfg, err := config.Parse("docs/django.md", yamlBlock(t, "../docs/django.md", "df_websockets:"), nil)
	if err != nil {
		t.Fatalf("the documented config does not load: %v", err)
	}
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	base, _ := run(t, cfg, Options{})
	status, out := callAPI(t, base, "a-long-random-key-for-django", "windows", map[string]any{"topics": []any{"room1", 100, map[string]any{"model": "app.thing", "pk": 3}}, "user": 1})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	key := out["window_key"].(string)
	want := []any{
		"dfwsurl=wss%3A%2F%2Fwww.example.com%2Fws%2F; Max-Age=86400; Path=/; SameSite=Lax; Secure",
		"dfwskey=" + key + "; Max-Age=86400; Path=/; SameSite=Lax; Secure",
	}
	topics := []any{"-window." + key, "-broadcast", "-auth.user.1", "-str." + sha224hex("room1"), "-int.100", "-app.thing.3"}
	if !reflect.DeepEqual(out["cookies"], want) || !reflect.DeepEqual(out["topics"], topics) {
		t.Errorf("bootstrap %v", out)
	}
}
