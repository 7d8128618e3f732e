package ws_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/switchyardhq/switchyard/ws"
)

// A broadcast frame sent to many connections with permessage-deflate is
// compressed once: the other connections are served the same compressed
// bytes. A caller that reuses its buffer for another message is never
// served the previous message's compression.
func TestDeflateOncePerBroadcast(t *testing.T) {
	eng := newEngine(t, false)
	const clients = 4
	var (
		mu    sync.Mutex
		conns []*ws.Conn
		ready = make(chan struct{})
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ws.FromRequest(r)
		mu.Lock()
		conns = append(conns, c)
		if len(conns) == clients {
			close(ready)
		}
		mu.Unlock()
		c.Wait(r.Context())
	})
	srv := httptest.NewServer(ws.Require(h, ws.WithEngine(eng), ws.Compression(true)))
	defer srv.Close()
	d := websocket.Dialer{EnableCompression: true}
	var clientConns []*websocket.Conn
	for range clients {
		c, resp, err := d.Dial(wsURL(srv, "/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp.Header.Get("Sec-WebSocket-Extensions") == "" {
			t.Fatal("permessage-deflate not negotiated")
		}
		clientConns = append(clientConns, c)
	}
	<-ready

	buf := bytes.Repeat([]byte("shared broadcast frame "), 200) // 4.6 KB
	first := string(buf)
	before := eng.Stats().DeflateShared
	for _, c := range conns {
		if err := c.SendBatch(t.Context(), buf); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clientConns {
		if got := readText(t, c); got != first {
			t.Fatalf("client got %d bytes, want the %d-byte broadcast", len(got), len(first))
		}
	}
	if got := eng.Stats().DeflateShared - before; got != clients-1 {
		t.Fatalf("%d of %d deliveries reused the compression, want %d", got, clients, clients-1)
	}

	// The same buffer, rewritten in place: a new message, compressed anew.
	copy(buf, bytes.Repeat([]byte("REWRITTEN in place!!! "), 200))
	second := string(buf)
	for _, c := range conns {
		if err := c.SendBatch(t.Context(), buf); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clientConns {
		if got := readText(t, c); got != second {
			t.Fatalf("after the buffer was rewritten a client got the old message (%.30q…)", got)
		}
	}
}
