package ws

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestNoHandlerAfterShutdown: an Accept handler whose upgrade raced a
// Shutdown does not start once the engine is closing (Shutdown would not
// wait for it: a goroutine without an owner); its connection is closed.
func TestNoHandlerAfterShutdown(t *testing.T) {
	e, err := NewEngine(EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if e.goIfOpen(func() { t.Error("a goroutine started after Shutdown") }) {
		t.Fatal("goIfOpen started work on a closed engine")
	}

	// Upgrades racing a Shutdown: every handler that started ended
	// before Shutdown returned, and none starts after.
	for range 5 {
		e, err := NewEngine(EngineConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var done atomic.Bool
		var running atomic.Int64
		srv := httptest.NewServer(Accept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if done.Load() {
				t.Error("a handler started after Shutdown returned")
			}
			running.Add(1)
			defer running.Add(-1)
			<-r.Context().Done()
		}), WithEngine(e)))
		url := "ws" + strings.TrimPrefix(srv.URL, "http")
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, _, err := websocket.DefaultDialer.Dial(url, nil); err == nil {
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					c.ReadMessage() // the close frame
					c.Close()
				}
			}()
		}
		time.Sleep(time.Millisecond)
		e.Close()
		done.Store(true)
		if n := running.Load(); n != 0 {
			t.Fatalf("%d handlers still running after Shutdown returned", n)
		}
		wg.Wait()
		srv.Close()
	}
}
