package main

// gorilla: net/http + github.com/gorilla/websocket, one goroutine per
// connection blocked in ReadMessage (the idiomatic way: the read loop runs in
// the net/http handler goroutine).

import (
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

// serveGorilla is tuned for memory: small read/write buffers and a shared
// write-buffer pool, so an idle connection holds only its 512-byte read
// buffer (the hijacked net/http buffers are not reused).
func serveGorilla(listen string) error {
	return serveGorillaWith(listen, websocket.Upgrader{
		ReadBufferSize:  512,
		WriteBufferSize: 512,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true },
	})
}

// serveGorillaDefault uses the library defaults (buffers of 0: the upgrader
// reuses the 4 KiB buffers net/http allocated for the handshake).
func serveGorillaDefault(listen string) error {
	return serveGorillaWith(listen, websocket.Upgrader{
		CheckOrigin: func(*http.Request) bool { return true },
	})
}

// serveGorillaDetached is serveGorilla with the read loop in a goroutine of
// its own, so the net/http handler returns and the server's per-request
// state (its bufio reader and writers, the request) can be collected.
func serveGorillaDetached(listen string) error {
	up := websocket.Upgrader{
		ReadBufferSize:  512,
		WriteBufferSize: 512,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true },
	}
	return serveHTTP(listen, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		go gorillaConn(c)
	})
}

func serveGorillaWith(listen string, up websocket.Upgrader) error {
	return serveHTTP(listen, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade already answered with an HTTP error
		}
		gorillaConn(c) // the read loop runs in the handler goroutine
	})
}

// gorillaConn sends hello, then echoes text until the connection ends.
func gorillaConn(c *websocket.Conn) {
	defer c.Close()
	track.opened()
	defer track.closed()
	if err := c.WriteMessage(websocket.TextMessage, []byte(helloMessage)); err != nil {
		return
	}
	// The default ping and close handlers answer pong and close.
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if mt == websocket.TextMessage {
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		}
	}
}
