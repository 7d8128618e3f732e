package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func serverCall(t *testing.T, base, method string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+"/api/server/"+method, bytes.NewReader(b))
	req.Header.Set("Authorization", "apikey "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// closeCode waits for a socket's close and returns its code (-1: none
// within the timeout).
func closeCode(c *websocket.Conn, timeout time.Duration) int {
	c.SetReadDeadline(time.Now().Add(timeout))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
	}
}

// refresh moves the expiry of a user's connections (closed with 4001 at
// the new time) and leaves the other users' alone; bad input is a 400
// naming the field.
func TestServerAPIRefresh(t *testing.T) {
	base, _ := start(t, authConfig(false), Options{})
	alice, _, _ := dialStatus(t, base, "?token="+token(t, "alice", time.Hour, nil), nil)
	bob, _, _ := dialStatus(t, base, "?token="+token(t, "bob", time.Hour, nil), nil)
	code, res := serverCall(t, base, "refresh", map[string]any{"user": "alice", "expire_at": time.Now().Add(time.Second).Unix()})
	if code != 200 || res["sessions"] != 1.0 || res["nodes"] != 1.0 {
		t.Fatalf("refresh: %d %v", code, res)
	}
	if got := closeCode(alice, 10*time.Second); got != 4001 {
		t.Fatalf("alice's socket: close %d, want 4001 at the refreshed expiry", got)
	}
	if got := closeCode(bob, 1500*time.Millisecond); got != -1 {
		t.Fatalf("bob's socket closed (%d) by alice's refresh", got)
	}
	for _, body := range []map[string]any{{}, {"user": ""}, {"user": "alice", "expire_at": -1}, {"user": "alice", "expire_at": "soon"}, {"user": "alice", "ttl": 5}} {
		if code, res := serverCall(t, base, "refresh", body); code != 400 {
			t.Fatalf("refresh %v: %d %v, want 400", body, code, res)
		}
	}
}
