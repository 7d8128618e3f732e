package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/wiretest"
)

// channelsConfig declares the namespaces the channel tests use.
func channelsConfig(c *config.Config) {
	open := config.ChannelPermissions{Subscribe: "anyone", Publish: "anyone", Presence: "anyone", History: "anyone"}
	c.Channels.Namespaces = []config.Namespace{
		{Name: "chat", ChannelOptions: config.ChannelOptions{Presence: true, HistorySize: 100, HistoryTTL: config.Duration(time.Hour), Recover: true, Permissions: open}},
		{Name: "short", ChannelOptions: config.ChannelOptions{HistorySize: 3, HistoryTTL: config.Duration(time.Hour), Recover: true, Permissions: open}},
		{Name: "news", ChannelOptions: config.ChannelOptions{Permissions: open}},
		{Name: "members", ChannelOptions: config.ChannelOptions{Permissions: config.ChannelPermissions{Subscribe: "authenticated", Publish: "authenticated", Presence: "none", History: "none"}}},
	}
}

// liveClient is a /live connection that reads in the background and lets
// tests wait for replies by request_id and for pushes by action.
type liveClient struct {
	t    *testing.T
	id   string // client_id from $session connected
	c    *websocket.Conn
	mu   sync.Mutex
	in   []map[string]any
	cond chan struct{}
	err  error
	next int
}

func newLiveClient(t *testing.T, base string) *liveClient {
	t.Helper()
	lc := &liveClient{t: t, c: dialLive(t, base), cond: make(chan struct{}, 1)}
	go lc.readLoop()
	hello := lc.waitFor(func(m map[string]any) bool { return m["stream"] == "$session" })
	lc.id = hello["payload"].(map[string]any)["client_id"].(string)
	return lc
}

func (lc *liveClient) readLoop() {
	for {
		_, data, err := lc.c.ReadMessage()
		lc.mu.Lock()
		if err != nil {
			lc.err = err
			lc.mu.Unlock()
			lc.signal()
			return
		}
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			m = map[string]any{"raw": string(data)}
		}
		wiretest.CheckNoNullCollections(lc.t, "/live frame", data)
		lc.in = append(lc.in, m)
		lc.mu.Unlock()
		lc.signal()
	}
}

func (lc *liveClient) signal() {
	select {
	case lc.cond <- struct{}{}:
	default:
	}
}

// waitFor returns (and consumes) the first received frame matching f.
func (lc *liveClient) waitFor(f func(map[string]any) bool) map[string]any {
	lc.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		lc.mu.Lock()
		for i, m := range lc.in {
			if f(m) {
				lc.in = append(lc.in[:i:i], lc.in[i+1:]...)
				lc.mu.Unlock()
				return m
			}
		}
		err := lc.err
		lc.mu.Unlock()
		if err != nil {
			lc.t.Fatalf("connection ended: %v", err)
		}
		select {
		case <-lc.cond:
		case <-deadline:
			lc.t.Fatal("timed out waiting for a frame")
		}
	}
}

// request sends a $channels request and returns the reply payload.
func (lc *liveClient) request(stream, action string, fields map[string]any) map[string]any {
	lc.t.Helper()
	lc.mu.Lock()
	lc.next++
	rid := fmt.Sprintf("r%d", lc.next)
	lc.mu.Unlock()
	payload := map[string]any{"action": action, "request_id": rid}
	for k, v := range fields {
		payload[k] = v
	}
	if err := lc.c.WriteJSON(map[string]any{"stream": stream, "payload": payload}); err != nil {
		lc.t.Fatal(err)
	}
	m := lc.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p != nil && p["request_id"] == rid
	})
	return m["payload"].(map[string]any)
}

func (lc *liveClient) ok(action string, fields map[string]any) map[string]any {
	lc.t.Helper()
	p := lc.request("$channels", action, fields)
	if p["response_status"] != 200.0 {
		lc.t.Fatalf("%s %v: %v", action, fields, p)
	}
	return p["data"].(map[string]any)
}

func (lc *liveClient) push(action, channel string) map[string]any {
	lc.t.Helper()
	m := lc.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return m["stream"] == "$channels" && p["action"] == action && p["channel"] == channel && p["request_id"] == nil
	})
	return m["payload"].(map[string]any)
}

// Every subscriber gets every message in order, whether the writers
// write through io_uring (limits.io_uring: auto, the default) or one
// client at a time (off); /metrics tells which way they wrote.
func TestChannelsFanOutInOrder(t *testing.T) {
	for _, mode := range []string{"auto", "off"} {
		t.Run("io_uring="+mode, func(t *testing.T) {
			base, _ := start(t, func(c *config.Config) {
				channelsConfig(c)
				c.Limits.IOURing = mode
			}, Options{})
			fanOutInOrder(t, base)
			_, body := get(t, base+"/metrics")
			writers, writes := metricValue(t, body, "switchyard_io_uring_writers"), metricValue(t, body, "switchyard_io_uring_writes_total")
			if mode == "off" && (writers != 0 || writes != 0) {
				t.Fatalf("io_uring off: %v writers wrote %v batches through it", writers, writes)
			}
			if mode == "auto" && (writers < 1 || writes < 1) {
				// The CI machines run a kernel with io_uring: a server
				// that falls back there is a defect, not a skip.
				t.Fatalf("io_uring auto: %v writers wrote %v batches through it", writers, writes)
			}
		})
	}
}

// metricValue is the value of an unlabelled metric in a /metrics body.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

func fanOutInOrder(t *testing.T, base string) {
	const subscribers, messages = 20, 50
	clients := make([]*liveClient, subscribers)
	for i := range clients {
		clients[i] = newLiveClient(t, base)
		d := clients[i].ok("subscribe", map[string]any{"channel": "chat:room"})
		if d["channel"] != "chat:room" || d["recovered"] != false || d["epoch"] == "" {
			t.Fatalf("subscribe reply %v", d)
		}
	}
	pub := newLiveClient(t, base)
	for i := range messages {
		d := pub.ok("publish", map[string]any{"channel": "chat:room", "data": map[string]any{"n": i}})
		if d["offset"] != float64(i+1) {
			t.Fatalf("publish %d got offset %v", i, d["offset"])
		}
	}
	for ci, c := range clients {
		for i := range messages {
			p := c.push("message", "chat:room")
			if p["offset"] != float64(i+1) || p["data"].(map[string]any)["n"] != float64(i) {
				t.Fatalf("client %d message %d: %v", ci, i, p)
			}
			if info, _ := p["info"].(map[string]any); info["client_id"] == "" {
				t.Fatalf("publication without publisher info: %v", p)
			}
		}
	}
}

func TestPresenceJoinLeave(t *testing.T) {
	base, _ := start(t, channelsConfig, Options{})
	a := newLiveClient(t, base)
	a.ok("subscribe", map[string]any{"channel": "chat:lobby"})
	b := newLiveClient(t, base)
	b.ok("subscribe", map[string]any{"channel": "chat:lobby"})
	// a sees its own join, then b's.
	if own := a.push("join", "chat:lobby"); own["info"].(map[string]any)["client_id"] != a.id {
		t.Fatalf("first join %v, want a's own (%s)", own, a.id)
	}
	join := a.push("join", "chat:lobby")
	bid := join["info"].(map[string]any)["client_id"]
	if bid != b.id {
		t.Fatalf("join %v, want b (%s)", join, b.id)
	}
	clients := a.ok("presence", map[string]any{"channel": "chat:lobby"})["clients"].([]any)
	if len(clients) != 2 {
		t.Fatalf("presence %v", clients)
	}
	b.c.Close()
	leave := a.push("leave", "chat:lobby")
	if leave["info"].(map[string]any)["client_id"] != bid {
		t.Fatalf("leave %v, want %v", leave, bid)
	}
	eventuallyLen := func(want int) {
		eventually(t, 5*time.Second, func() error {
			got := len(a.ok("presence", map[string]any{"channel": "chat:lobby"})["clients"].([]any))
			if got != want {
				return fmt.Errorf("presence has %d clients, want %d", got, want)
			}
			return nil
		})
	}
	eventuallyLen(1)
	// No presence in a namespace without it.
	p := a.request("$channels", "presence", map[string]any{"channel": "news:x"})
	if p["response_status"] != 400.0 {
		t.Fatalf("presence where disabled: %v", p)
	}
}

func TestRecovery(t *testing.T) {
	base, _ := start(t, channelsConfig, Options{})
	pub := newLiveClient(t, base)
	sub := newLiveClient(t, base)
	d := sub.ok("subscribe", map[string]any{"channel": "chat:r"})
	epoch := d["epoch"].(string)
	pub.ok("publish", map[string]any{"channel": "chat:r", "data": "one"})
	first := sub.push("message", "chat:r")
	sub.c.Close() // the client goes away after seeing offset 1

	for _, s := range []string{"two", "three"} {
		pub.ok("publish", map[string]any{"channel": "chat:r", "data": s})
	}
	back := newLiveClient(t, base)
	d = back.ok("subscribe", map[string]any{"channel": "chat:r", "since": map[string]any{"offset": first["offset"], "epoch": epoch}})
	pubs := d["publications"].([]any)
	if d["recovered"] != true || len(pubs) != 2 || pubs[0].(map[string]any)["data"] != "two" || pubs[1].(map[string]any)["offset"] != 3.0 || d["offset"] != 3.0 {
		t.Fatalf("recovery: %v", d)
	}
	// Live messages follow the recovered ones.
	pub.ok("publish", map[string]any{"channel": "chat:r", "data": "four"})
	if m := back.push("message", "chat:r"); m["offset"] != 4.0 {
		t.Fatalf("after recovery: %v", m)
	}

	// A gap: history keeps 3, the client saw offset 1 of 6.
	for i := range 6 {
		pub.ok("publish", map[string]any{"channel": "short:g", "data": i})
	}
	hist := pub.ok("history", map[string]any{"channel": "short:g"})
	gap := newLiveClient(t, base)
	d = gap.ok("subscribe", map[string]any{"channel": "short:g", "since": map[string]any{"offset": 1, "epoch": hist["epoch"]}})
	if d["recovered"] != false || len(d["publications"].([]any)) != 0 || d["offset"] != 6.0 {
		t.Fatalf("gap not reported: %v", d)
	}
	// Another epoch: not recovered either.
	other := newLiveClient(t, base)
	d = other.ok("subscribe", map[string]any{"channel": "chat:r", "since": map[string]any{"offset": 1, "epoch": "not-the-epoch"}})
	if d["recovered"] != false {
		t.Fatalf("foreign epoch recovered: %v", d)
	}
	// Nothing missed: recovered with no publications.
	d = newLiveClient(t, base).ok("subscribe", map[string]any{"channel": "chat:r", "since": map[string]any{"offset": 4, "epoch": epoch}})
	if d["recovered"] != true || len(d["publications"].([]any)) != 0 {
		t.Fatalf("up to date: %v", d)
	}
	// History: oldest first, limit, since.
	h := pub.ok("history", map[string]any{"channel": "chat:r", "limit": 2})
	hp := h["publications"].([]any)
	if len(hp) != 2 || hp[0].(map[string]any)["offset"] != 1.0 || h["offset"] != 4.0 {
		t.Fatalf("history limit: %v", h)
	}
	h = pub.ok("history", map[string]any{"channel": "chat:r", "since": map[string]any{"offset": 2, "epoch": epoch}})
	if hp := h["publications"].([]any); len(hp) != 2 || hp[0].(map[string]any)["offset"] != 3.0 {
		t.Fatalf("history since: %v", h)
	}
}

func TestSlowConsumerIsDisconnected(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		channelsConfig(c)
		c.Limits.MaxMessageSize = 16 << 10
		// Room for the fast client to fall 64 messages behind on a loaded
		// machine (CI runs every package at once on 2 cores); the slow one
		// still overflows it by far (16 MB against this and the kernel's
		// buffers).
		c.Limits.MaxQueuedBytes = 512 << 10
		// The slow client resumes reading only after all 2,000 publications
		// (several seconds under load): its stuck write must outlast that for
		// the close frame to follow the data instead of the socket being cut.
		c.WebSocket.WriteTimeout = config.Duration(time.Minute)
	}, Options{})
	fast := newLiveClient(t, base)
	fast.ok("subscribe", map[string]any{"channel": "news:firehose"})
	slow := newLiveClient(t, base)
	slow.ok("subscribe", map[string]any{"channel": "news:firehose"})
	// The slow client stops reading: its socket buffers fill, then its
	// outbox.
	slow.mu.Lock()
	pub := newLiveClient(t, base)
	payload := strings.Repeat("x", 8<<10)
	const n = 2000 // 16 MB: far more than the kernel buffers hold
	done := make(chan struct{})
	got := 0
	go func() {
		defer close(done)
		for range n {
			fast.push("message", "news:firehose")
			got++
		}
	}()
	for range n {
		pub.ok("publish", map[string]any{"channel": "news:firehose", "data": payload})
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the fast client got %d of %d", got, n)
	}
	slow.mu.Unlock()
	// The slow client reads what was buffered, then the close frame with
	// 4008 (it resumed reading within the write timeout).
	deadline := time.Now().Add(15 * time.Second)
	for {
		slow.mu.Lock()
		err := slow.err
		slow.in = nil
		slow.mu.Unlock()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 4008 {
				t.Fatalf("slow client ended with %v, want close 4008", err)
			}
			t.Logf("slow client ended: %v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow client was not disconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestChannelErrorsAndPermissions(t *testing.T) {
	base, _ := start(t, channelsConfig, Options{})
	c := newLiveClient(t, base)
	cases := []struct {
		action string
		fields map[string]any
		status float64
	}{
		{"subscribe", map[string]any{}, 400},                                          // no channel
		{"subscribe", map[string]any{"channel": "nowhere:x"}, 404},                    // unknown namespace
		{"subscribe", map[string]any{"channel": "$resource:todos"}, 403},              // reserved
		{"subscribe", map[string]any{"channel": "members:vip"}, 403},                  // authenticated only
		{"subscribe", map[string]any{"channel": "chat:dm#alice,bob"}, 403},            // user-limited
		{"subscribe", map[string]any{"channel": "has space"}, 400},                    // bad name
		{"subscribe", map[string]any{"channel": "chat:x", "since": "yesterday"}, 400}, // wrong type
		{"publish", map[string]any{"channel": "plain"}, 403},                          // default: publish none
		{"publish", map[string]any{"channel": "chat:x"}, 400},                         // no data
		{"unsubscribe", map[string]any{"channel": "chat:never"}, 400},                 // not subscribed
		{"history", map[string]any{"channel": "news:x"}, 400},                         // no history here
		{"history", map[string]any{"channel": "chat:x", "limit": -1}, 400},            // bad limit
		{"dance", map[string]any{"channel": "chat:x"}, 405},                           // unknown action
		{"presence", map[string]any{"channel": "members:vip"}, 403},                   // presence none
		{"subscribe", map[string]any{"channel": strings.Repeat("a", 1025)}, 400},      // too long
	}
	for _, tc := range cases {
		p := c.request("$channels", tc.action, tc.fields)
		if p["response_status"] != tc.status || len(p["errors"].([]any)) != 1 {
			t.Errorf("%s %v: got %v, want %v", tc.action, tc.fields, p, tc.status)
		}
	}
	// Subscribing twice is an error; the first subscription still works.
	c.ok("subscribe", map[string]any{"channel": "chat:x"})
	if p := c.request("$channels", "subscribe", map[string]any{"channel": "chat:x"}); p["response_status"] != 400.0 {
		t.Fatalf("double subscribe: %v", p)
	}
	c.ok("publish", map[string]any{"channel": "chat:x", "data": 1})
	c.push("message", "chat:x")
	c.ok("unsubscribe", map[string]any{"channel": "chat:x"})
}

func TestMessageRateLimit(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		channelsConfig(c)
		c.Limits.MessagesPerSecond = 5
	}, Options{})
	c := newLiveClient(t, base)
	// A burst of 30 frames: the first 10 (twice the rate) pass, most of
	// the rest are refused with 429, and the connection stays open.
	for range 30 {
		c.c.WriteJSON(map[string]any{"stream": "$channels", "payload": map[string]any{"action": "presence", "request_id": "burst", "channel": "chat:r"}})
	}
	answered, limited := 0, 0
	for answered+limited < 30 {
		m := c.waitFor(func(map[string]any) bool { return true })
		p := m["payload"].(map[string]any)
		switch {
		case p["request_id"] != "burst":
		case p["response_status"] == 429.0:
			limited++
		default:
			answered++
		}
	}
	if answered < 10 || answered > 13 || limited < 17 {
		t.Fatalf("%d answered, %d limited", answered, limited)
	}
	// Tokens come back with time.
	eventually(t, 5*time.Second, func() error {
		p := c.request("$channels", "presence", map[string]any{"channel": "chat:r"})
		if p["response_status"] != 200.0 {
			return fmt.Errorf("still limited: %v", p)
		}
		return nil
	})
}
