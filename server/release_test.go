package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// syncBuffer is a log sink for a goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// TestReleaseAfterBursts: limits.idle_release collects once after a burst
// of connections has settled, not while fewer than the burst came, not
// again without a new burst, and its goroutine ends with its context.
func TestReleaseAfterBursts(t *testing.T) {
	e, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(ws.Accept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}), ws.WithEngine(e)))
	defer srv.Close()
	dial := func() {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	const quiet, burst = 50 * time.Millisecond, 4
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	since := e.Stats().Accepted
	go func() {
		defer close(done)
		releaseAfterBursts(ctx, quiet, burst, since, e, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	const msg = "memory released after a connection burst"
	for range burst - 1 {
		dial()
	}
	time.Sleep(6 * quiet)
	if n := logs.count(msg); n != 0 {
		t.Fatalf("%d releases after %d connections, fewer than the burst of %d", n, burst-1, burst)
	}
	dial()
	deadline := time.Now().Add(5 * time.Second)
	for logs.count(msg) == 0 && time.Now().Before(deadline) {
		time.Sleep(quiet)
	}
	if n := logs.count(msg); n != 1 {
		t.Fatalf("%d releases after the burst, want 1", n)
	}
	time.Sleep(6 * quiet)
	if n := logs.count(msg); n != 1 {
		t.Fatalf("%d releases without a new burst, want 1", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the release goroutine did not end with its context")
	}
}
