package ws_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// maskedText encodes a client text frame.
func maskedText(s string) []byte {
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	b := []byte{0x81, 0x80 | byte(len(s))}
	b = append(b, key[:]...)
	for i := range len(s) {
		b = append(b, s[i]^key[i%4])
	}
	return b
}

// A client may send frames in the same packet as its handshake; they must
// not be lost in the HTTP server's buffer.
func TestFramesRightAfterHandshake(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv := httptest.NewServer(ws.Require(lowerHandler(), m.opts(t)...))
			defer srv.Close()
			nc, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
			nc.Write(append([]byte(req), maskedText("EARLY")...))
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(nc)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("handshake: %v %v", resp, err)
			}
			hdr := make([]byte, 2)
			io.ReadFull(br, hdr)
			payload := make([]byte, hdr[1]&0x7f)
			io.ReadFull(br, payload)
			if string(payload) != "early" {
				t.Fatalf("got %q", payload)
			}
		})
	}
}

// A handler that does not take its messages stops the reading of its own
// connection, not the server.
func TestQueueBackpressure(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			release := make(chan struct{})
			counts := make(chan int, 1)
			queued := make(chan int, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c := ws.FromRequest(r)
				<-release
				queued <- c.CountMessages()
				n := 0
				for range c.Messages(r.Context()) {
					n++
					if n == 100 {
						break
					}
				}
				counts <- n
			})
			srv := httptest.NewServer(ws.Require(h, append(m.opts(t), ws.MaxMessageSize(1024), ws.MaxQueuedBytes(4096))...))
			defer srv.Close()
			c := dial(t, wsURL(srv, "/"), nil)
			msg := []byte(strings.Repeat("q", 1000))
			// 100 KB against a 4 KB queue: the writes succeed only because
			// the socket buffers absorb them; nothing is dropped.
			done := make(chan error, 1)
			go func() {
				for range 100 {
					if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			// Let the client write all it can (kernel buffers absorb most of
			// it) before the handler starts taking messages.
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				done <- nil
			case <-time.After(2 * time.Second):
			}
			close(release)
			// The queue holds at most MaxQueuedBytes plus one read's worth.
			if q := <-queued; q > (4096+32<<10)/1000+2 {
				t.Fatalf("%d messages queued: the reader did not stop", q)
			}
			select {
			case n := <-counts:
				if n != 100 {
					t.Fatalf("handler got %d messages", n)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("handler starved")
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The handler's context ends when the peer goes away.
func TestHandlerContextEndsWithConnection(t *testing.T) {
	ended := make(chan error, 1)
	srv := httptest.NewServer(ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		ended <- r.Context().Err()
	})))
	defer srv.Close()
	c := dial(t, wsURL(srv, "/"), nil)
	c.Close()
	select {
	case err := <-ended:
		if err != context.Canceled {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("context not canceled")
	}
}

func TestCloseCodeValidation(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(ws.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ws.FromRequest(r)
		err1 := c.Close(1005, "reserved")
		err2 := c.Close(4000, strings.Repeat("é", 100)) // reason cut to 123 bytes on a rune boundary
		err3 := c.Close(4000, "twice")
		got <- fmt.Sprint(err1 != nil, err2, err3)
	})))
	defer srv.Close()
	c := dial(t, wsURL(srv, "/"), nil)
	if s := <-got; s != "true <nil> ws: connection closed" {
		t.Fatal(s)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	ce, ok := err.(*websocket.CloseError)
	if !ok || ce.Code != 4000 || len(ce.Text) != 122 {
		t.Fatalf("%v (%d bytes)", err, len(ce.Text))
	}
}
