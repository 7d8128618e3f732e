package ws_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// openHandler hands each opened connection to a channel.
type openHandler struct{ opened chan *ws.Conn }

func (h openHandler) OnOpen(c *ws.Conn) { h.opened <- c }
func (h openHandler) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	c.Send(context.Background(), data)
}
func (h openHandler) OnClose(*ws.Conn, error) {}

// engineConn opens one connection through an epoll engine and returns
// the server's end and the client.
func engineConn(b *testing.B) (*ws.Conn, *websocket.Conn) {
	b.Helper()
	e, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	h := openHandler{opened: make(chan *ws.Conn, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, e, h)
	}))
	b.Cleanup(srv.Close)
	c, _, err := websocket.DefaultDialer.Dial("ws"+srv.URL[len("http"):], nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	select {
	case sc := <-h.opened:
		return sc, c
	case <-time.After(5 * time.Second):
		b.Fatal("no OnOpen")
	}
	return nil, nil
}

// processCPU is this process's user + system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// One 100-byte message written without waiting (the hub's writer pool's
// path) to a client that reads everything, a delivery per op: the
// server's side of a fan-out delivery, the loopback TCP stack included.
func BenchmarkTrySendBatch(b *testing.B) {
	sc, c := engineConn(b)
	go func() {
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		done, err := sc.TrySendBatch(msg)
		if err != nil {
			b.Fatal(err)
		}
		if !done { // the socket was full: wait for the rest
			if err := sc.SendBatch(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A message every 12 ms, echoed: the engine's epoll loop waits more than
// 10 ms between events, as it does for subscribers that send little.
// cpu-µs/wake is the whole process's CPU per message (client included):
// a loop blocked in epoll_wait for that long has its P retaken by the
// runtime's monitor, which then wakes every 20 µs for a millisecond or
// more; a loop parked in the netpoller does not. Run with -benchtime 200x.
func BenchmarkSparseWakes(b *testing.B) {
	_, c := engineConn(b)
	msg := []byte("x")
	cpu0 := processCPU()
	n := 0
	for b.Loop() {
		time.Sleep(12 * time.Millisecond)
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(n), "cpu-µs/wake")
}
