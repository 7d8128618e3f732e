package ws_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// plainCounter is a handler written for plain HTTP: it counts the
// requests that reach it.
type plainCounter struct {
	mu sync.Mutex
	n  int
}

func (p *plainCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	io.WriteString(w, "plain")
}

func (p *plainCounter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// dialStatus tries an upgrade and returns the status and body of a refusal
// (101 and the connection on success).
func dialStatus(t *testing.T, url string, hdr http.Header) (*websocket.Conn, int, string) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, hdr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		return c, 101, ""
	}
	if resp == nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return nil, resp.StatusCode, string(body)
}

// Without AcceptAll, an upgrade to a handler that did not opt in is
// refused with 400 before it runs; handlers that did opt in upgrade.
func TestMiddlewareRefusesHandlersThatDidNotOptIn(t *testing.T) {
	plain := &plainCounter{}
	mux := http.NewServeMux()
	mux.Handle("/plain", plain)
	mux.Handle("/accept", ws.Accept(lowerHandler()))
	mux.Handle("/require", ws.Require(lowerHandler()))
	srv := httptest.NewServer(ws.Middleware(mux))
	defer srv.Close()

	_, status, body := dialStatus(t, wsURL(srv, "/plain"), nil)
	if status != 400 || !strings.Contains(body, "websocket_not_accepted") {
		t.Fatalf("upgrade to a plain handler: %d %s", status, body)
	}
	if plain.count() != 0 {
		t.Fatal("the plain handler ran for an upgrade request")
	}
	for _, p := range []string{"/accept", "/require"} {
		c, status, body := dialStatus(t, wsURL(srv, p), nil)
		if c == nil {
			t.Fatalf("%s: %d %s", p, status, body)
		}
		c.WriteMessage(websocket.TextMessage, []byte("HeLLo"))
		if got := readText(t, c); got != "hello" {
			t.Fatalf("%s: %q", p, got)
		}
	}
	// Plain HTTP is untouched; an unknown path is still 404.
	resp, err := http.Get(srv.URL + "/plain")
	if err != nil || resp.StatusCode != 200 || plain.count() != 1 {
		t.Fatalf("plain GET: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, status, _ := dialStatus(t, wsURL(srv, "/nowhere"), nil); status != 404 {
		t.Fatalf("upgrade to no route: %d", status)
	}
}

// AcceptAll (WEBSOCKET_ACCEPT_ALL) lets every handler behind it take
// WebSockets, with FromRequest, while handlers that opted in keep their
// own options.
func TestAcceptAll(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/plain-or-ws", lowerHandler()) // not wrapped in Accept
	mux.Handle("/proto", ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ws.FromRequest(r)
		c.Send(r.Context(), []byte("subprotocol "+c.Subprotocol()))
	}), ws.Subprotocols("chat.v1")))
	srv := httptest.NewServer(ws.Middleware(ws.AcceptAll(mux, ws.MaxMessageSize(64))))
	defer srv.Close()

	c := dial(t, wsURL(srv, "/plain-or-ws"), nil)
	c.WriteMessage(websocket.TextMessage, []byte("ACCEPTED"))
	if got := readText(t, c); got != "accepted" {
		t.Fatalf("got %q", got)
	}
	// AcceptAll's options apply to the handlers it upgrades for.
	c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 65))
	expectClose(t, c, 1009)
	// Plain HTTP on the same route.
	resp, err := http.Post(srv.URL+"/plain-or-ws", "text/plain", strings.NewReader("PLAIN"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "plain" {
		t.Fatalf("plain HTTP: %q", b)
	}
	// An Acceptor behind it upgrades with its own options.
	d := websocket.Dialer{Subprotocols: []string{"chat.v1"}}
	pc, _, err := d.Dial(wsURL(srv, "/proto"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if got := readText(t, pc); got != "subprotocol chat.v1" {
		t.Fatalf("got %q", got)
	}
	// AcceptAll around a handler that cannot be looked into: that
	// handler's own Accept serves the upgraded connection.
	wrapped := httptest.NewServer(ws.AcceptAll(http.StripPrefix("/x", ws.Accept(lowerHandler()))))
	defer wrapped.Close()
	wc := dial(t, wsURL(wrapped, "/x/y"), nil)
	wc.WriteMessage(websocket.TextMessage, []byte("NESTED"))
	if got := readText(t, wc); got != "nested" {
		t.Fatalf("nested: %q", got)
	}
}

// WaitTimeout waits for a message at most so long and leaves the
// connection open when none came.
func TestWaitTimeout(t *testing.T) {
	results := make(chan string, 4)
	srv := httptest.NewServer(ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ws.FromRequest(r)
		start := time.Now()
		_, err := c.WaitTimeout(50 * time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 50*time.Millisecond {
			results <- "first wait: " + errString(err)
			return
		}
		c.Send(r.Context(), []byte("timed out"))
		m, err := c.WaitTimeout(5 * time.Second)
		results <- "second wait: " + string(m) + " " + errString(err)
		_, err = c.WaitTimeout(5 * time.Second)
		results <- "after close: " + errString(err)
	})))
	defer srv.Close()
	c := dial(t, wsURL(srv, "/"), nil)
	if got := readText(t, c); got != "timed out" {
		t.Fatalf("got %q; %s", got, <-results)
	}
	c.WriteMessage(websocket.TextMessage, []byte("now"))
	if got := <-results; got != "second wait: now <nil>" {
		t.Fatal(got)
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	if got := <-results; got != "after close: EOF" {
		t.Fatal(got)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// A refused origin names the setting to change, in the body and in an
// info log line.
func TestOriginConfigKey(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	srv := httptest.NewServer(ws.Accept(lowerHandler(), ws.AllowedOrigins("https://app.example.com"), ws.OriginConfigKey("websocket.allowed_origins"), ws.WithLogger(log)))
	defer srv.Close()
	_, status, body := dialStatus(t, wsURL(srv, "/"), http.Header{"Origin": {"https://evil.example.com"}})
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal([]byte(body), &e)
	if status != 403 || e.Error.Code != "origin_not_allowed" || e.Error.Message != `origin "https://evil.example.com" is not allowed: add it to websocket.allowed_origins` {
		t.Fatalf("%d %s", status, body)
	}
	mu.Lock()
	defer mu.Unlock()
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil || line["level"] != "INFO" || line["key"] != "websocket.allowed_origins" || line["msg"] != "websocket refused" {
		t.Fatalf("log %s (%v)", logs.Bytes(), err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
