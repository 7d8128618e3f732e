package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

func TestEchoRoutes(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/once", ws.Require(http.HandlerFunc(once)))
	mux.Handle("/lower", ws.Accept(http.HandlerFunc(lower)))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")

	// /lower over plain HTTP and over a WebSocket.
	resp, err := http.Post(srv.URL+"/lower", "text/plain", strings.NewReader("HeLLo"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("POST /lower: %q", body)
	}
	c, _, err := websocket.DefaultDialer.Dial(wsURL+"/lower", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, m := range []string{"ONE", "Two"} {
		c.WriteMessage(websocket.TextMessage, []byte(m))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != strings.ToLower(m) {
			t.Fatalf("ws /lower: %q %v", got, err)
		}
	}

	// /once: plain HTTP refused, one echo, then a normal close.
	resp, err = http.Get(srv.URL + "/once")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("GET /once: %d", resp.StatusCode)
	}
	o, _, err := websocket.DefaultDialer.Dial(wsURL+"/once", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	o.SetReadDeadline(time.Now().Add(5 * time.Second))
	o.WriteMessage(websocket.TextMessage, []byte("Echo Me"))
	if _, got, err := o.ReadMessage(); err != nil || string(got) != "Echo Me" {
		t.Fatalf("ws /once: %q %v", got, err)
	}
	if _, _, err := o.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after the echo: %v", err)
	}
}
