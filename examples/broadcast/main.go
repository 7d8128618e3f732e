// Command broadcast is dwebsocket's broadcast echo sample on package ws:
// every message a client sends reaches every connected client, the sender
// included.
//
//	go run ./examples/broadcast          # listens on 127.0.0.1:8080
//
// The mux is wrapped in ws.AcceptAll (dwebsocket's WEBSOCKET_ACCEPT_ALL),
// so the plain handler of "/" takes WebSockets too: plain HTTP gets a tiny
// page, a WebSocket joins the room. Open http://127.0.0.1:8080/ in two
// tabs, or:
//
//	websocat ws://127.0.0.1:8080/
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/switchyardhq/switchyard/ws"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	flag.Parse()

	r := newRoom()
	mux := http.NewServeMux()
	mux.Handle("/", r)
	srv := &http.Server{Addr: *addr, Handler: ws.AcceptAll(mux), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		r.closeAll()
		srv.Shutdown(context.Background())
	}()
	log.Printf("broadcast: listening on %s", *addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// room is the set of connected clients.
type room struct {
	mu      sync.Mutex
	clients map[*ws.Conn]struct{}
}

func newRoom() *room { return &room{clients: map[*ws.Conn]struct{}{}} }

// ServeHTTP serves the page over plain HTTP; a WebSocket joins the room
// until it closes, and each of its messages goes to everyone.
func (rm *room) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := ws.FromRequest(r)
	if c == nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
		return
	}
	rm.join(c)
	defer rm.leave(c)
	for msg := range c.Messages(r.Context()) {
		rm.broadcast(msg)
	}
}

func (rm *room) join(c *ws.Conn) {
	rm.mu.Lock()
	rm.clients[c] = struct{}{}
	rm.mu.Unlock()
}

func (rm *room) leave(c *ws.Conn) {
	rm.mu.Lock()
	delete(rm.clients, c)
	rm.mu.Unlock()
}

// size returns how many clients are in the room.
func (rm *room) size() int {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return len(rm.clients)
}

// broadcast sends msg to every client, framed once for all of them. A
// client that cannot take it within a second is dropped by its own write
// timeout; the others are not held up longer than that.
func (rm *room) broadcast(msg []byte) {
	pm := ws.NewPreparedMessage(ws.Text, msg)
	rm.mu.Lock()
	targets := make([]*ws.Conn, 0, len(rm.clients))
	for c := range rm.clients {
		targets = append(targets, c)
	}
	rm.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, c := range targets {
		c.WritePrepared(ctx, pm)
	}
}

// closeAll closes every connection with 1001 (going away).
func (rm *room) closeAll() {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for c := range rm.clients {
		c.Close(ws.CloseGoingAway, "server shutting down")
	}
}

const page = `<!doctype html>
<title>broadcast</title>
<input id=m autofocus placeholder="say something, Enter to send"><pre id=log></pre>
<script>
const s = new WebSocket(location.href.replace(/^http/, "ws"));
s.onmessage = e => { log.textContent += e.data + "\n"; };
m.onkeydown = e => { if (e.key === "Enter") { s.send(m.value); m.value = ""; } };
</script>
`
