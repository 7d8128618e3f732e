package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/wiretest"
	"github.com/switchyardhq/switchyard/protocol/channelstream"
)

const csSecret = "cs-secret"

// csCall is a signed Channelstream API call, as an application makes it.
func csCall(t *testing.T, base, method, path string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Channelstream-Secret", channelstream.Sign(csSecret, "channelstream", time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	wiretest.CheckNoNullCollections(t, method+" "+path, out)
	return resp.StatusCode, out
}

func csConnect(t *testing.T, base string, body map[string]any) string {
	t.Helper()
	st, out := csCall(t, base, "POST", "/connect", body)
	if st != 200 {
		t.Fatalf("connect: %d %s", st, out)
	}
	var res struct {
		ConnID string `json:"conn_id"`
	}
	json.Unmarshal(out, &res)
	return res.ConnID
}

// csSocket reads a /ws socket's frames into a channel.
func csSocket(t *testing.T, base, connID string) (<-chan []map[string]any, *websocket.Conn) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?conn_id="+connID, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan []map[string]any, 100)
	go func() {
		defer close(ch)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var f []map[string]any
			json.Unmarshal(data, &f)
			wiretest.CheckNoNullCollections(t, "/ws frame", data)
			ch <- f
		}
	}()
	return ch, c
}

func nextMessage(t *testing.T, ch <-chan []map[string]any, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatal("socket closed")
			}
			for _, m := range f {
				if match(m) {
					return m
				}
			}
		case <-deadline:
			t.Fatal("timed out waiting for a Channelstream message")
		}
	}
}

func channelstreamConfig(open bool) func(*config.Config) {
	return func(c *config.Config) {
		c.Channelstream.Enabled = true
		c.Channelstream.Secret = csSecret
		c.APIKeys = []config.Secret{"test-api-key-000001"}
		if open {
			perms := config.ChannelPermissions{Subscribe: "anyone", Publish: "anyone", Presence: "anyone", History: "anyone"}
			c.Channels.Namespaces = []config.Namespace{{Name: "channelstream", ChannelOptions: config.ChannelOptions{Permissions: perms}}}
		}
	}
}

// Channelstream channels are hub channels: a /message publish reaches a
// native $channels subscriber of channelstream:<name>, a native publish
// and a server API publish reach Channelstream sockets, and private
// messages stay private on both sides.
func TestChannelstreamAndNativeSeeEachOther(t *testing.T) {
	base, _ := start(t, channelstreamConfig(true), Options{})
	id := csConnect(t, base, map[string]any{"username": "alice", "channels": []string{"room"}})
	frames, _ := csSocket(t, base, id)
	eventually(t, 5*time.Second, func() error { // the socket is attached once a message arrives live
		csCall(t, base, "POST", "/message", []map[string]any{{"user": "probe", "channel": "room"}})
		select {
		case f := <-frames:
			if len(f) == 1 && f[0]["catchup"] == false {
				return nil
			}
		case <-time.After(100 * time.Millisecond):
		}
		return io.EOF
	})

	lc := newLiveClient(t, base)
	lc.ok("subscribe", map[string]any{"channel": "channelstream:room"})

	st, out := csCall(t, base, "POST", "/message", []map[string]any{
		{"user": "bob", "channel": "room", "message": map[string]any{"text": "from channelstream"}},
		{"user": "bob", "channel": "room", "pm_users": []string{"alice"}, "message": map[string]any{"text": "private"}},
		{"user": "bob", "channel": "room", "message": map[string]any{"text": "after"}},
	})
	if st != 200 {
		t.Fatalf("message: %d %s", st, out)
	}
	pub := lc.push("message", "channelstream:room")
	data := pub["data"].(map[string]any)
	if data["type"] != "message" || data["user"] != "bob" || data["channel"] != "room" || data["message"].(map[string]any)["text"] != "from channelstream" {
		t.Fatalf("native subscriber got %v", data)
	}
	if next := lc.push("message", "channelstream:room")["data"].(map[string]any); next["message"].(map[string]any)["text"] != "after" {
		t.Fatalf("the anonymous native subscriber got a message for alice only: %v", next)
	}
	nextMessage(t, frames, func(m map[string]any) bool {
		return m["message"] != nil && m["message"].(map[string]any)["text"] == "private"
	})

	// Native client → Channelstream.
	lc.ok("publish", map[string]any{"channel": "channelstream:room", "data": map[string]any{"text": "from live"}})
	m := nextMessage(t, frames, func(m map[string]any) bool {
		return m["message"] != nil && m["message"].(map[string]any)["text"] == "from live"
	})
	if m["type"] != "message" || m["channel"] != "room" || m["catchup"] != false || m["uuid"] == nil || m["timestamp"] == nil {
		t.Fatalf("wrapped native publication %v", m)
	}
	// Server API → Channelstream.
	if st, res := callAPI(t, base, "test-api-key-000001", "publish", map[string]any{"channel": "channelstream:room", "data": map[string]any{"text": "from backend"}}); st != 200 {
		t.Fatalf("server API publish: %d %v", st, res)
	}
	nextMessage(t, frames, func(m map[string]any) bool {
		return m["message"] != nil && m["message"].(map[string]any)["text"] == "from backend"
	})

	// The server API's disconnect of a user ends its Channelstream
	// connections too (4003).
	if st, res := callAPI(t, base, "test-api-key-000001", "disconnect", map[string]any{"user": "alice"}); st != 200 {
		t.Fatalf("disconnect: %d %v", st, res)
	}
	for range frames {
	}
	eventually(t, 5*time.Second, func() error {
		st, out := csCall(t, base, "GET", "/disconnect?conn_id="+id, nil)
		if st != 200 || strings.TrimSpace(string(out)) != "false" {
			return io.EOF
		}
		return nil
	})
}

// Undeclared, the Channelstream namespace is closed to /live clients.
func TestChannelstreamNamespaceClosedByDefault(t *testing.T) {
	base, _ := start(t, channelstreamConfig(false), Options{})
	csConnect(t, base, map[string]any{"username": "alice", "channels": []string{"room"}})
	lc := newLiveClient(t, base)
	if p := lc.request("$channels", "subscribe", map[string]any{"channel": "channelstream:room"}); p["response_status"] != 403.0 {
		t.Fatalf("subscribe to an undeclared channelstream namespace: %v", p)
	}
}

// The JS client's flows (specs/channelstream.md §9.2), through the Node
// ws package as a browser would: tests/channelstream/flow.js signs like
// an application, connects two users, opens their sockets and checks
// presence, messages, heartbeats, subscribe, user state, edit/delete and
// disconnect → parted.
func TestChannelstreamNodeClient(t *testing.T) {
	dir := nodeTestDir(t, "channelstream", "ws")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required for the Channelstream client flows")
	}
	base, _ := start(t, func(c *config.Config) {
		channelstreamConfig(false)(c)
		c.Channelstream.HeartbeatInterval = config.Duration(500 * time.Millisecond)
	}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "flow.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SWITCHYARD_URL="+base, "CHANNELSTREAM_SECRET="+csSecret)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the Channelstream client flows failed: %v", err)
	}
}
