package ws_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// One handler answers plain HTTP and WebSocket requests.
func ExampleAccept() {
	h := ws.Accept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ws.IsWebSocket(r) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprint(w, strings.ToLower(string(body)))
			return
		}
		c := ws.FromRequest(r)
		for msg := range c.Messages(r.Context()) {
			c.Send(r.Context(), bytes.ToLower(msg))
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, _ := http.Post(srv.URL, "text/plain", strings.NewReader("Over HTTP"))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	c, _, _ := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	defer c.Close()
	c.WriteMessage(websocket.TextMessage, []byte("Over WebSocket"))
	_, msg, _ := c.ReadMessage()
	fmt.Println(string(msg))
	// Output:
	// over http
	// over websocket
}

// Require refuses plain HTTP; the connection closes when the handler
// returns.
func ExampleRequire() {
	h := ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ws.FromRequest(r)
		if msg, err := c.Wait(r.Context()); err == nil {
			c.Send(r.Context(), msg) // echo once, then return
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, _ := http.Get(srv.URL)
	resp.Body.Close()
	fmt.Println("plain HTTP:", resp.StatusCode)

	c, _, _ := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	defer c.Close()
	c.WriteMessage(websocket.TextMessage, []byte("ping me back"))
	_, msg, _ := c.ReadMessage()
	fmt.Println(string(msg))
	_, _, err := c.ReadMessage()
	fmt.Println(err)
	// Output:
	// plain HTTP: 400
	// ping me back
	// websocket: close 1000 (normal)
}

type greeter struct{}

func (greeter) OnOpen(c *ws.Conn) { c.Send(context.Background(), []byte("hello")) }
func (greeter) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	c.Send(context.Background(), append([]byte("got "), data...))
}
func (greeter) OnClose(c *ws.Conn, err error) {}

// An engine serves connections without a goroutine each; Upgrade returns
// at once and the handler's methods are called for the events.
func ExampleUpgrade() {
	engine, _ := ws.NewEngine(ws.EngineConfig{})
	defer engine.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, engine, greeter{})
	}))
	defer srv.Close()

	c, _, _ := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	defer c.Close()
	_, msg, _ := c.ReadMessage()
	fmt.Println(string(msg))
	c.WriteMessage(websocket.TextMessage, []byte("news"))
	_, msg, _ = c.ReadMessage()
	fmt.Println(string(msg))
	// Output:
	// hello
	// got news
}

// An Upgrader resolves its options once: every connection it accepts
// shares them.
func ExampleUpgrader() {
	engine, _ := ws.NewEngine(ws.EngineConfig{})
	defer engine.Close()
	up := ws.NewUpgrader(engine, ws.MaxMessageSize(1<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.Upgrade(w, r, greeter{})
	}))
	defer srv.Close()

	for range 2 {
		c, _, _ := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		_, msg, _ := c.ReadMessage()
		fmt.Println(string(msg))
		c.Close()
	}
	// Output:
	// hello
	// hello
}
