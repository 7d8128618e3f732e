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

// engineConns opens n connections through one epoll engine, each with a
// client that reads everything, and returns the server's ends.
func engineConns(b *testing.B, n int) []*ws.Conn {
	b.Helper()
	e, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	h := openHandler{opened: make(chan *ws.Conn, n)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, e, h)
	}))
	b.Cleanup(srv.Close)
	conns := make([]*ws.Conn, 0, n)
	for range n {
		c, _, err := websocket.DefaultDialer.Dial("ws"+srv.URL[len("http"):], nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		go func() {
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		select {
		case sc := <-h.opened:
			conns = append(conns, sc)
		case <-time.After(5 * time.Second):
			b.Fatal("no OnOpen")
		}
	}
	return conns
}

// One 100-byte message to 64 connections (a writer worker's share of a
// broadcast, readyChunk in package hub) per op: one TrySendBatch per
// connection (a write(2) each), against a WriteRing (one io_uring_enter
// for all 64). ns/delivery is the wall time per connection written,
// cpu-ns/delivery the whole process's CPU (the 64 reading clients
// included).
func BenchmarkDeliver64(b *testing.B) {
	msg := make([]byte, 100)
	for _, way := range []string{"write", "io_uring"} {
		b.Run("way="+way, func(b *testing.B) {
			conns := engineConns(b, 64)
			var ring *ws.WriteRing
			if way == "io_uring" {
				var err error
				if ring, err = ws.NewWriteRing(len(conns)); err != nil {
					b.Skip("no io_uring:", err)
				}
				defer ring.Close()
			}
			var pending []*ws.Conn
			result := func(i int, done bool, err error) {
				if err != nil {
					b.Fatal(err)
				}
				if !done {
					pending = append(pending, conns[i])
				}
			}
			b.ReportAllocs()
			cpu0, start := processCPU(), time.Now()
			for b.Loop() {
				pending = pending[:0]
				if ring != nil {
					for _, c := range conns {
						ring.Add(c, msg)
					}
					ring.Flush(result)
				} else {
					for i, c := range conns {
						done, err := c.TrySendBatch(msg)
						result(i, done, err)
					}
				}
				for _, c := range pending { // a full socket: wait for the rest
					if err := c.SendBatch(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			}
			d := float64(b.N * len(conns))
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/d, "ns/delivery")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/d, "cpu-ns/delivery")
		})
	}
}
