package channelstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/internal/wiretest"
	"github.com/switchyardhq/switchyard/ws"
)

const testSecret = "secret"

// testServer is a real Channelstream API on loopback: a hub on the memory
// broker, the ws engine, and an HTTP server.
type testServer struct {
	t   testing.TB
	srv *Server
	hub *hub.Hub
	url string
}

func newTestServer(t testing.TB, mutate func(*Config)) *testServer {
	t.Helper()
	b := memory.New(memory.Config{})
	none := config.ChannelPermissions{Subscribe: "none", Publish: "none", Presence: "none", History: "none"}
	h, err := hub.New(hub.Config{Broker: b, Presence: b, Channels: config.Channels{
		Default:    config.DefaultChannelOptions(),
		Namespaces: []config.Namespace{{Name: "channelstream", ChannelOptions: config.ChannelOptions{Permissions: none}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Hub:          h,
		Engine:       eng,
		Secret:       testSecret,
		Allowed:      []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		StrictFields: true,
		AdminUser:    "admin",
		AdminSecret:  "admin-pw",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux, "/")
	hs := httptest.NewServer(mux)
	// Answered parked polls come back to the same http.Server.
	var handback sync.WaitGroup
	handback.Go(func() { hs.Config.Serve(s.Handback()) })
	if !cfg.PollGoroutines {
		eventually(t, 5*time.Second, func() error {
			if !s.handback.serving.Load() {
				return fmt.Errorf("handback not served yet")
			}
			return nil
		})
	}
	t.Cleanup(func() {
		s.Close()
		handback.Wait()
		hs.CloseClientConnections()
		hs.Close()
		eng.Shutdown(context.Background())
		h.Close()
		b.Close(context.Background())
	})
	return &testServer{t: t, srv: s, hub: h, url: hs.URL}
}

// do sends a request (signed when sign) and returns the status and body.
func (ts *testServer) do(method, path string, body any, sign bool, hdr ...string) (int, http.Header, []byte) {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if sign {
		// Signed by the server's clock, which tests may set far from now.
		req.Header.Set("X-Channelstream-Secret", Sign(testSecret, "channelstream", ts.srv.now()))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	wiretest.CheckNoNullCollections(ts.t, method+" "+path, out)
	return resp.StatusCode, resp.Header, out
}

// call is a signed request that must answer want; it returns the decoded
// body.
func (ts *testServer) call(method, path string, body any, want int) any {
	ts.t.Helper()
	status, _, out := ts.do(method, path, body, true)
	if status != want {
		ts.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		ts.t.Fatalf("%s %s: body %q: %v", method, path, out, err)
	}
	return v
}

func (ts *testServer) post(path string, body any) map[string]any {
	ts.t.Helper()
	m, _ := ts.call("POST", path, body, 200).(map[string]any)
	return m
}

// connect connects a user and returns the conn_id.
func (ts *testServer) connect(body map[string]any) string {
	ts.t.Helper()
	return ts.post("/connect", body)["conn_id"].(string)
}

// client is a real WebSocket client on /ws that keeps every frame.
type client struct {
	t      testing.TB
	c      *websocket.Conn
	mu     sync.Mutex
	frames [][]any
	raw    []string
	closed *websocket.CloseError
	done   chan struct{}
}

func (ts *testServer) dial(connID string) *client {
	ts.t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.url, "http")+"/ws?conn_id="+connID, http.Header{"Origin": {"http://app.example.com"}})
	if err != nil {
		ts.t.Fatalf("dial: %v (%v)", err, resp)
	}
	cl := &client{t: ts.t, c: c, done: make(chan struct{})}
	go cl.read()
	ts.t.Cleanup(func() { c.Close() })
	// The handshake's answer comes before the server attaches the socket
	// (what arrives in between is catch-up): wait for the attachment.
	ts.srv.mu.Lock()
	conn := ts.srv.conns[connID]
	ts.srv.mu.Unlock()
	if conn != nil {
		eventually(ts.t, 5*time.Second, func() error {
			conn.tport.mu.Lock()
			defer conn.tport.mu.Unlock()
			if conn.tport.ws == nil {
				return fmt.Errorf("socket not attached")
			}
			return nil
		})
	}
	return cl
}

func (cl *client) read() {
	defer close(cl.done)
	for {
		_, data, err := cl.c.ReadMessage()
		if err != nil {
			cl.mu.Lock()
			if ce, ok := err.(*websocket.CloseError); ok {
				cl.closed = ce
			}
			cl.mu.Unlock()
			return
		}
		var arr []any
		if err := json.Unmarshal(data, &arr); err != nil {
			cl.t.Errorf("frame %q is not a JSON array: %v", data, err)
		}
		wiretest.CheckNoNullCollections(cl.t, "/ws frame", data)
		cl.mu.Lock()
		cl.frames = append(cl.frames, arr)
		cl.raw = append(cl.raw, string(data))
		cl.mu.Unlock()
	}
}

// messages returns the messages received so far (heartbeats left out).
func (cl *client) messages() []map[string]any {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []map[string]any
	for _, f := range cl.frames {
		for _, m := range f {
			out = append(out, m.(map[string]any))
		}
	}
	return out
}

func (cl *client) heartbeats() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	n := 0
	for _, f := range cl.frames {
		if len(f) == 0 {
			n++
		}
	}
	return n
}

// waitFor waits until a message matches and returns it.
func (cl *client) waitFor(what string, match func(map[string]any) bool) map[string]any {
	cl.t.Helper()
	var found map[string]any
	eventually(cl.t, 5*time.Second, func() error {
		for _, m := range cl.messages() {
			if match(m) {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no %s among %v", what, cl.messages())
	})
	return found
}

func (cl *client) waitClosed() *websocket.CloseError {
	cl.t.Helper()
	select {
	case <-cl.done:
	case <-time.After(5 * time.Second):
		cl.t.Fatal("socket not closed")
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.closed
}

func typed(typ string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == typ }
}

func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jsonEq compares a decoded value with a JSON text.
func jsonEq(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	ws, _ := json.Marshal(w)
	if string(g) != string(ws) {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, ws)
	}
}

// waitKept waits until the connection keeps a catch-up frame containing
// want. The hub writes a publication to a connection on a goroutine of its
// own after the call that made it returns, so a test that then opens a
// socket or poll and expects the frame as catch-up waits for it first.
func (ts *testServer) waitKept(t testing.TB, id, want string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		ts.srv.mu.Lock()
		c := ts.srv.conns[id]
		ts.srv.mu.Unlock()
		if c == nil {
			return fmt.Errorf("no connection %s", id)
		}
		c.tport.mu.Lock()
		defer c.tport.mu.Unlock()
		for _, f := range c.tport.pending {
			if strings.Contains(string(f), want) {
				return nil
			}
		}
		return fmt.Errorf("%q not kept as catch-up yet", want)
	})
}
