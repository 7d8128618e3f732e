package main

// nbio: github.com/lesismal/nbio's nbhttp.Engine in its non-blocking mode
// (its own epoll pollers, no goroutine per connection) and its websocket
// Upgrader, the way its examples wire them.

import (
	"net"
	"net/http"
	"time"

	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

func serveNbio(listen string) error {
	logging.SetLevel(logging.LevelError)

	up := websocket.NewUpgrader()
	// No read deadline on idle connections, like the other candidates (the
	// default would close a connection silent for 120 s).
	up.KeepaliveTime = 0
	up.CheckOrigin = func(*http.Request) bool { return true }
	hello := []byte(helloMessage)
	up.OnOpen(func(c *websocket.Conn) {
		track.opened()
		_ = c.WriteMessage(websocket.TextMessage, hello)
	})
	up.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
		if mt == websocket.TextMessage {
			_ = c.WriteMessage(websocket.TextMessage, data)
		}
	})
	up.OnClose(func(*websocket.Conn, error) { track.closed() })

	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", statsHandler)
	mux.HandleFunc("GET "+wsPath, func(w http.ResponseWriter, r *http.Request) {
		_, _ = up.Upgrade(w, r, nil) // on error Upgrade has answered already
	})

	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{listen},
		IOMod:                   nbhttp.IOModNonBlocking,
		ReleaseWebsocketPayload: true,
		Handler:                 mux,
		// Listen is wrapped only to learn the port chosen for :0.
		Listen: func(network, addr string) (net.Listener, error) {
			return listenAnnounce(addr)
		},
	})
	if err := engine.Start(); err != nil {
		return err
	}
	for {
		time.Sleep(time.Hour) // until the parent kills the process
	}
}
