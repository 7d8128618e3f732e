package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/ws"
)

// N clients each send a message; each message reaches all N, the sender
// included, and the page is served over plain HTTP on the same route.
func TestBroadcastReachesEveryClient(t *testing.T) {
	const n = 6
	rm := newRoom()
	mux := http.NewServeMux()
	mux.Handle("/", rm)
	srv := httptest.NewServer(ws.AcceptAll(mux))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "new WebSocket") {
		t.Fatalf("page: %s", body)
	}

	clients := make([]*websocket.Conn, n)
	for i := range clients {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	// Everyone is in the room before anyone speaks.
	deadline := time.Now().Add(5 * time.Second)
	for rm.size() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients joined", rm.size(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var wg sync.WaitGroup
	got := make([][]string, n)
	for i, c := range clients {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for range n {
				_, m, err := c.ReadMessage()
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				got[i] = append(got[i], string(m))
			}
		})
	}
	for i, c := range clients {
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "from %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("from %d", i))
	}
	for i, msgs := range got {
		sort.Strings(msgs)
		if fmt.Sprint(msgs) != fmt.Sprint(want) {
			t.Errorf("client %d received %v, want %v", i, msgs, want)
		}
	}
	// A client that leaves is no longer broadcast to.
	clients[0].Close()
	for rm.size() != n-1 {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("the closed client is still in the room")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
