//go:build linux

package ws_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestDetach: on an epoll engine the socket leaves package net after the
// handshake (an idle connection does not keep net's state), and the
// connection works as before: messages both ways, the peer's address,
// closing; the detach leaks no descriptor. A goroutine engine keeps net's
// socket.
func TestDetach(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutines=%v", goroutines), func(t *testing.T) {
			e := newEngine(t, goroutines)
			h := &echoHandler{closed: make(chan error, 100)}
			conns := make(chan *ws.Conn, 100)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c, err := ws.Upgrade(w, r, e, h); err == nil {
					conns <- c
				}
			}))
			defer srv.Close()
			// Warm up the server and the client's transport, so the count
			// below sees only the connections' descriptors.
			warm := dial(t, wsURL(srv, "/"), nil)
			readText(t, warm)
			<-conns
			before := openFDs(t)

			const n = 20
			for i := range n {
				c := dial(t, wsURL(srv, "/"), nil)
				if got := readText(t, c); got != "welcome" {
					t.Fatalf("got %q", got)
				}
				sc := <-conns
				if ws.Detached(sc) == goroutines {
					t.Fatalf("detached %v on a goroutines=%v engine", ws.Detached(sc), goroutines)
				}
				if got, want := sc.RemoteAddr().String(), c.LocalAddr().String(); got != want {
					t.Fatalf("RemoteAddr %s, want the client's %s", got, want)
				}
				msg := fmt.Sprintf("message %d", i)
				c.WriteMessage(websocket.TextMessage, []byte(msg))
				if got := readText(t, c); got != msg {
					t.Fatalf("echo %q, want %q", got, msg)
				}
				if err := sc.Send(context.Background(), []byte("from the server")); err != nil {
					t.Fatal(err)
				}
				if got := readText(t, c); got != "from the server" {
					t.Fatalf("got %q", got)
				}
				if i%2 == 0 {
					c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
					expectClose(t, c, websocket.CloseNormalClosure)
				} else {
					sc.Close(ws.CloseNormal, "bye")
					expectClose(t, c, ws.CloseNormal)
				}
				c.Close()
				select {
				case err := <-h.closed:
					if err == nil {
						t.Fatal("OnClose with a nil error")
					}
				case <-time.After(5 * time.Second):
					t.Fatal("OnClose not called")
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for e.Len() > 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			// Every closed connection gave its descriptors back (the
			// client's and the server's side; net's original was closed at
			// the detach).
			var after int
			for {
				after = openFDs(t)
				if after <= before || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if after > before {
				t.Fatalf("%d descriptors open after %d connections came and went, %d before", after, n, before)
			}
		})
	}
}

// blockingHandler never reads its peer's messages and lets the test
// write.
type blockingHandler struct{ conns chan *ws.Conn }

func (h blockingHandler) OnOpen(c *ws.Conn)                          { h.conns <- c }
func (h blockingHandler) OnMessage(*ws.Conn, ws.MessageType, []byte) {}
func (h blockingHandler) OnClose(*ws.Conn, error)                    {}

// TestDetachWriteDeadline: writes to a detached socket whose peer does not
// read still wait in the netpoller and end at the write timeout or the
// context's deadline, never hang, and the connection is closed after.
func TestDetachWriteDeadline(t *testing.T) {
	e := newEngine(t, false)
	h := blockingHandler{conns: make(chan *ws.Conn, 2)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, e, h, ws.WriteTimeout(300*time.Millisecond))
	}))
	defer srv.Close()
	big := make([]byte, 256<<10)

	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want func(error) bool
	}{
		{"context deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"write timeout", func() (context.Context, context.CancelFunc) {
			return context.Background(), func() {}
		}, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, _, _ := rawDial(t, srv, "") // and never read
			defer nc.Close()
			c := <-h.conns
			if !ws.Detached(c) {
				t.Fatal("the socket was not detached")
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			var err error
			for i := 0; err == nil; i++ {
				if time.Since(start) > 10*time.Second {
					t.Fatalf("%d writes of %d KiB to a peer that does not read went on for 10 s", i, len(big)>>10)
				}
				err = c.SendBinary(ctx, big)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("the write ended after %v", took)
			}
			if !tc.want(err) {
				t.Fatalf("write error %v", err)
			}
			if c.Err() == nil {
				t.Fatal("the connection is still open after a failed write")
			}
			// Nothing is written after the failure.
			if err := c.Send(context.Background(), []byte("late")); !errors.Is(err, ws.ErrClosed) {
				t.Fatalf("a send after the failure: %v, want ErrClosed", err)
			}
		})
	}
}
