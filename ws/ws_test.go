package ws_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// mode is one way of serving connections; every behaviour test runs in
// each.
type mode struct {
	name string
	opts func(t *testing.T) []ws.Option
}

var modes = []mode{
	{"private", func(t *testing.T) []ws.Option { return nil }},
	{"epoll", func(t *testing.T) []ws.Option { return []ws.Option{ws.WithEngine(newEngine(t, false))} }},
	{"goroutines", func(t *testing.T) []ws.Option { return []ws.Option{ws.WithEngine(newEngine(t, true))} }},
}

func newEngine(t *testing.T, goroutines bool) *ws.Engine {
	t.Helper()
	e, err := ws.NewEngine(ws.EngineConfig{Goroutines: goroutines, SweepInterval: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func wsURL(s *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + path
}

func dial(t *testing.T, url string, hdr http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("message type %d, want text", typ)
	}
	return string(data)
}

// expectClose reads until the server's close frame and checks its code.
func expectClose(t *testing.T, c *websocket.Conn, code int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want close %d, got %v", code, err)
		}
		if ce.Code != code {
			t.Fatalf("close code %d (%q), want %d", ce.Code, ce.Text, code)
		}
		return
	}
}

// lowerHandler answers plain HTTP and every WebSocket message with the
// lower-cased text.
func lowerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := ws.FromRequest(r); c != nil {
			for m := range c.Messages(r.Context()) {
				if err := c.Send(r.Context(), []byte(strings.ToLower(string(m)))); err != nil {
					return
				}
			}
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprint(w, strings.ToLower(string(b)))
	})
}

func TestAcceptServesHTTPAndWebSocket(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv := httptest.NewServer(ws.Accept(lowerHandler(), m.opts(t)...))
			defer srv.Close()

			resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("HeLLo"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello" {
				t.Fatalf("plain HTTP: %d %q", resp.StatusCode, body)
			}

			c := dial(t, wsURL(srv, "/"), nil)
			for _, s := range []string{"ABC", "Déjà VU", strings.Repeat("X", 70000/2)} {
				c.WriteMessage(websocket.TextMessage, []byte(s))
				if got := readText(t, c); got != strings.ToLower(s) {
					t.Fatalf("echo of %.20q = %.20q", s, got)
				}
			}
		})
	}
}

func TestRequireRefusesPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(ws.Require(lowerHandler()))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 400 || body.Error.Code != "websocket_required" {
		t.Fatalf("got %d %+v", resp.StatusCode, body)
	}
	c := dial(t, wsURL(srv, "/"), nil)
	c.WriteMessage(websocket.TextMessage, []byte("OK"))
	if got := readText(t, c); got != "ok" {
		t.Fatalf("got %q", got)
	}
}

// rawUpgrade sends a hand-written request and returns the status code.
func rawUpgrade(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, request)
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return resp.StatusCode, string(body)
}

func TestMalformedUpgrades(t *testing.T) {
	srv := httptest.NewServer(ws.Accept(lowerHandler()))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	cases := []struct {
		name, req string
		status    int
		code      string
	}{
		{"no key", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, "bad_key"},
		{"short key", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: YWJj\r\n\r\n", 400, "bad_key"},
		{"old version", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " + key + "\r\n\r\n", 400, "unsupported_version"},
		{"no connection header", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n", 400, "bad_upgrade"},
		{"POST", "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\nContent-Length: 0\r\n\r\n", 400, "bad_method"},
		{"cross origin", "GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n", 403, "origin_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := rawUpgrade(t, addr, tc.req)
			if status != tc.status || !strings.Contains(body, tc.code) {
				t.Fatalf("got %d %s, want %d %s", status, body, tc.status, tc.code)
			}
		})
	}
	// The server is still serving.
	c := dial(t, wsURL(srv, "/"), nil)
	c.WriteMessage(websocket.TextMessage, []byte("STILL"))
	if got := readText(t, c); got != "still" {
		t.Fatalf("got %q", got)
	}
}

func TestOrigins(t *testing.T) {
	srv := httptest.NewServer(ws.Accept(lowerHandler(), ws.AllowedOrigins("https://app.example.com", "*.trusted.dev")))
	defer srv.Close()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{srv.URL, true}, // same origin
		{"https://app.example.com", true},
		{"https://a.b.trusted.dev", true},
		{"https://other.example.com", false},
		{"http://app.example.com", false},
		{"null", false},
	} {
		hdr := http.Header{}
		if tc.origin != "" {
			hdr.Set("Origin", tc.origin)
		}
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "/"), hdr)
		if tc.ok != (err == nil) {
			t.Errorf("origin %q: err %v, want ok=%v", tc.origin, err, tc.ok)
		}
		if !tc.ok && resp != nil && resp.StatusCode != 403 {
			t.Errorf("origin %q: status %d, want 403", tc.origin, resp.StatusCode)
		}
		if c != nil {
			c.Close()
		}
	}
}

func TestLimitsCloseCodes(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := append(m.opts(t), ws.MaxMessageSize(1024))
			srv := httptest.NewServer(ws.Require(lowerHandler(), opts...))
			defer srv.Close()

			t.Run("1009 too big", func(t *testing.T) {
				c := dial(t, wsURL(srv, "/"), nil)
				c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 1024))) // at the limit: fine
				if got := readText(t, c); len(got) != 1024 {
					t.Fatalf("got %d bytes", len(got))
				}
				// Far over the limit, so the client is still writing when the
				// server closes: it must see the close frame, not a reset.
				go c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 4<<20)))
				expectClose(t, c, ws.CloseMessageTooBig)
			})
			t.Run("1009 fragmented", func(t *testing.T) {
				c := dial(t, wsURL(srv, "/"), nil)
				w, _ := c.NextWriter(websocket.TextMessage)
				for range 5 {
					w.Write([]byte(strings.Repeat("b", 300)))
				}
				w.Close()
				expectClose(t, c, ws.CloseMessageTooBig)
			})
			t.Run("1007 invalid utf-8", func(t *testing.T) {
				c := dial(t, wsURL(srv, "/"), nil)
				c.WriteMessage(websocket.TextMessage, []byte{'o', 'k', 0xff, 0xfe})
				expectClose(t, c, ws.CloseInvalidPayload)
			})
			t.Run("binary need not be utf-8", func(t *testing.T) {
				srvBin := httptest.NewServer(ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c := ws.FromRequest(r)
					m, err := c.Wait(r.Context())
					if err == nil {
						c.SendBinary(r.Context(), m)
					}
				}), m.opts(t)...))
				defer srvBin.Close()
				c := dial(t, wsURL(srvBin, "/"), nil)
				c.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0xfe})
				typ, data, err := c.ReadMessage()
				if err != nil || typ != websocket.BinaryMessage || string(data) != "\xff\xfe" {
					t.Fatalf("got %d %q %v", typ, data, err)
				}
			})
		})
	}
}

func TestQueueMethods(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			results := make(chan string, 10)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c := ws.FromRequest(r)
				ctx := r.Context()
				if !ws.IsWebSocket(r) {
					results <- "not a websocket"
					return
				}
				if c.HasMessages() || c.CountMessages() != 0 {
					results <- "messages before any was sent"
				}
				if _, ok := c.Read(); ok {
					results <- "Read returned a message before any was sent"
				}
				c.Send(ctx, []byte("ready"))
				first, err := c.Wait(ctx)
				if err != nil {
					results <- "wait: " + err.Error()
					return
				}
				// The client sent three more with the first; wait for them.
				deadline := time.Now().Add(5 * time.Second)
				for c.CountMessages() < 3 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				n := c.CountMessages()
				has := c.HasMessages()
				b, _ := c.Read()
				cc, _ := c.Read()
				d, _ := c.Read()
				_, more := c.Read()
				results <- fmt.Sprintf("%s %d %v %s %s %s %v", first, n, has, b, cc, d, more)
				c.Send(ctx, []byte("iterate"))
				var got []string
				for m := range c.Messages(ctx) {
					got = append(got, string(m))
				}
				_, err = c.Wait(ctx)
				results <- strings.Join(got, ",") + " " + fmt.Sprint(err == io.EOF)
			})
			srv := httptest.NewServer(ws.Require(h, m.opts(t)...))
			defer srv.Close()
			c := dial(t, wsURL(srv, "/"), nil)
			if got := readText(t, c); got != "ready" {
				t.Fatalf("got %q", got)
			}
			for _, s := range []string{"a", "b", "c", "d"} {
				c.WriteMessage(websocket.TextMessage, []byte(s))
			}
			if got := <-results; got != "a 3 true b c d false" {
				t.Fatalf("queue: %q", got)
			}
			if got := readText(t, c); got != "iterate" {
				t.Fatalf("got %q", got)
			}
			for _, s := range []string{"x", "y", "z"} {
				c.WriteMessage(websocket.TextMessage, []byte(s))
			}
			c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
			select {
			case got := <-results:
				if got != "x,y,z true" {
					t.Fatalf("iterate: %q", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("handler did not see the close")
			}
		})
	}
}

func TestPanicInHandlerClosesOnlyThatConnection(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c := ws.FromRequest(r)
				for msg := range c.Messages(r.Context()) {
					if string(msg) == "boom" {
						panic("boom")
					}
					c.Send(r.Context(), msg)
				}
			})
			srv := httptest.NewServer(ws.Require(h, append(m.opts(t), ws.WithLogger(testLogger(t)))...))
			defer srv.Close()
			good := dial(t, wsURL(srv, "/"), nil)
			bad := dial(t, wsURL(srv, "/"), nil)
			bad.WriteMessage(websocket.TextMessage, []byte("boom"))
			expectClose(t, bad, ws.CloseInternalError)
			good.WriteMessage(websocket.TextMessage, []byte("still here"))
			if got := readText(t, good); got != "still here" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

// echoHandler is an event-mode handler.
type echoHandler struct {
	mu     sync.Mutex
	opened int
	closed chan error
}

func (h *echoHandler) OnOpen(c *ws.Conn) {
	h.mu.Lock()
	h.opened++
	h.mu.Unlock()
	c.SetValue("session")
	c.Send(context.Background(), []byte("welcome"))
}

func (h *echoHandler) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	switch string(data) {
	case "panic":
		panic("handler bug")
	case "value":
		data = []byte(c.Value().(string))
	}
	if typ == ws.Binary {
		c.SendBinary(context.Background(), data)
		return
	}
	c.Send(context.Background(), data)
}

func (h *echoHandler) OnClose(c *ws.Conn, err error) { h.closed <- err }

func TestUpgradeEventMode(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutines=%v", goroutines), func(t *testing.T) {
			e := newEngine(t, goroutines)
			h := &echoHandler{closed: make(chan error, 10)}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws.Upgrade(w, r, e, h, ws.MaxMessageSize(1<<20))
			}))
			defer srv.Close()
			c := dial(t, wsURL(srv, "/"), nil)
			if got := readText(t, c); got != "welcome" {
				t.Fatalf("got %q", got)
			}
			// Many messages, some fragmented by the client (gorilla splits
			// messages over its 4 KiB write buffer), arrive in order.
			for i := range 200 {
				msg := fmt.Sprintf("%d:%s", i, strings.Repeat("z", i*97))
				c.WriteMessage(websocket.TextMessage, []byte(msg))
			}
			for i := range 200 {
				want := fmt.Sprintf("%d:%s", i, strings.Repeat("z", i*97))
				if got := readText(t, c); got != want {
					t.Fatalf("message %d out of order or damaged: %.30q", i, got)
				}
			}
			c.WriteMessage(websocket.TextMessage, []byte("value"))
			if got := readText(t, c); got != "session" {
				t.Fatalf("value: %q", got)
			}
			if e.Len() != 1 {
				t.Fatalf("engine has %d connections", e.Len())
			}
			c.WriteMessage(websocket.TextMessage, []byte("panic"))
			expectClose(t, c, ws.CloseInternalError)
			select {
			case err := <-h.closed:
				var ce *ws.CloseError
				if !errors.As(err, &ce) || ce.Code != ws.CloseInternalError {
					t.Fatalf("OnClose err %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("OnClose not called")
			}
			st := e.Stats()
			if st.Panics != 1 || st.MessagesIn < 201 || st.Accepted != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestPingAndReadTimeout(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := append(m.opts(t), ws.PingInterval(30*time.Millisecond), ws.ReadTimeout(300*time.Millisecond))
			srv := httptest.NewServer(ws.Require(lowerHandler(), opts...))
			defer srv.Close()

			// A live client answers pings (gorilla's default ping handler) and
			// stays connected past the read timeout.
			live := dial(t, wsURL(srv, "/"), nil)
			pings := make(chan struct{}, 100)
			live.SetPingHandler(func(data string) error {
				select {
				case pings <- struct{}{}:
				default:
				}
				return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			})
			done := make(chan error, 1)
			go func() {
				_, _, err := live.ReadMessage()
				done <- err
			}()

			// A dead client completes the handshake and then says nothing.
			nc, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			all, _ := io.ReadAll(nc) // until the server hangs up
			if !strings.HasPrefix(string(all), "HTTP/1.1 101") {
				t.Fatalf("handshake: %q", all)
			}
			if time.Since(start) < 250*time.Millisecond || time.Since(start) > 4*time.Second {
				t.Fatalf("dead client dropped after %v", time.Since(start))
			}
			select {
			case err := <-done:
				t.Fatalf("live client dropped: %v", err)
			default:
			}
			if len(pings) < 3 {
				t.Fatalf("live client saw %d pings", len(pings))
			}
		})
	}
}

func TestEngineShutdownSends1001(t *testing.T) {
	e := newEngine(t, false)
	h := &echoHandler{closed: make(chan error, 10)}
	srv := httptest.NewServer(ws.Accept(lowerHandler(), ws.WithEngine(e)))
	defer srv.Close()
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ws.Upgrade(w, r, e, h) }))
	defer srv2.Close()
	a := dial(t, wsURL(srv, "/"), nil)
	b := dial(t, wsURL(srv2, "/"), nil)
	readText(t, b) // welcome
	// The clients answer the close frame, as browsers do.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.Shutdown(ctx) }()
	expectClose(t, a, ws.CloseGoingAway)
	expectClose(t, b, ws.CloseGoingAway)
	a.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1001, ""), time.Now().Add(time.Second))
	b.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1001, ""), time.Now().Add(time.Second))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if e.Len() != 0 {
		t.Fatalf("%d connections left", e.Len())
	}
	// New upgrades are refused.
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "/"), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("dial after shutdown: %v", err)
	}
}

func TestCompressionAndSubprotocols(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			opts := append(m.opts(t), ws.Compression(true), ws.Subprotocols("v2.switchyard", "v1.switchyard"))
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c := ws.FromRequest(r)
				c.Send(r.Context(), []byte("proto="+c.Subprotocol()))
				lowerHandler().ServeHTTP(w, r)
			})
			srv := httptest.NewServer(ws.Require(h, opts...))
			defer srv.Close()
			d := websocket.Dialer{EnableCompression: true, Subprotocols: []string{"v1.switchyard", "v2.switchyard"}}
			c, resp, err := d.Dial(wsURL(srv, "/"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
				t.Fatalf("extensions %q", ext)
			}
			if got := readText(t, c); got != "proto=v2.switchyard" {
				t.Fatalf("got %q", got)
			}
			c.EnableWriteCompression(true)
			big := strings.Repeat("Compressible TEXT ", 2000) // 36 KB, under the 64 KiB limit
			c.WriteMessage(websocket.TextMessage, []byte(big))
			if got := readText(t, c); got != strings.ToLower(big) {
				t.Fatalf("compressed echo damaged (%d bytes)", len(got))
			}
			// A message that inflates past the limit is refused.
			c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 200<<10)))
			expectClose(t, c, ws.CloseMessageTooBig)
		})
	}
}

func TestPeerCloseEndsWaitWithEOF(t *testing.T) {
	got := make(chan error, 1)
	srv := httptest.NewServer(ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := ws.FromRequest(r).Wait(r.Context())
		got <- err
	})))
	defer srv.Close()
	c := dial(t, wsURL(srv, "/"), nil)
	c.Close() // TCP close without a close frame
	select {
	case err := <-got:
		if err != io.EOF {
			t.Fatalf("Wait: %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
	}
}
