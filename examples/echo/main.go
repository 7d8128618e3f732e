// Command echo shows the two ways of using package ws on a net/http mux.
//
//	go run ./examples/echo            # listens on 127.0.0.1:8080
//
// /once uses ws.Require: it answers plain HTTP with 400, and over a
// WebSocket it waits for one message, echoes it, and returns, which closes
// the connection.
//
// /lower uses ws.Accept: the same handler lower-cases a POST body over
// plain HTTP and every message over a WebSocket.
//
//	curl -d 'HeLLo' http://127.0.0.1:8080/lower          # hello
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard/ws"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	flag.Parse()

	mux := http.NewServeMux()
	mux.Handle("/once", ws.Require(http.HandlerFunc(once)))
	mux.Handle("/lower", ws.Accept(http.HandlerFunc(lower)))

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("echo: listening on %s (/once, /lower)", *addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// once echoes one message, then returns: the connection closes with 1000.
func once(w http.ResponseWriter, r *http.Request) {
	c := ws.FromRequest(r)
	msg, err := c.Wait(r.Context())
	if err != nil {
		return
	}
	c.Send(r.Context(), msg)
}

// lower answers plain HTTP and WebSocket alike.
func lower(w http.ResponseWriter, r *http.Request) {
	if !ws.IsWebSocket(r) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		fmt.Fprint(w, strings.ToLower(string(body)))
		return
	}
	c := ws.FromRequest(r)
	for msg := range c.Messages(r.Context()) {
		if err := c.Send(r.Context(), []byte(strings.ToLower(string(msg)))); err != nil {
			return
		}
	}
}
