package channelstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Deliveries to clients (specs/channelstream.md §6, §7, §9): the cases
// its own suite does not cover.

func presenceConfig(extra map[string]any) map[string]any {
	c := map[string]any{"notify_presence": true, "broadcast_presence_with_user_lists": true, "notify_state": true}
	for k, v := range extra {
		c[k] = v
	}
	return map[string]any{"room": c}
}

func TestPresenceAndCatchup(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}, "channel_configs": presenceConfig(nil),
		"user_state": map[string]any{"status": "online", "secret": "x"}, "state_public_keys": []string{"status"}})
	// bob joins before alice's socket is open: she gets it as catch-up.
	bob := ts.connect(map[string]any{"username": "bob", "channels": []string{"room"}, "user_state": map[string]any{"status": "away"}, "state_public_keys": []string{"status"}})
	ts.call("POST", "/message", []map[string]any{{"user": "system", "pm_users": []string{"alice"}, "message": map[string]any{"text": "psst"}},
		{"user": "system", "pm_users": []string{"bob"}, "message": map[string]any{"text": "not for alice"}}}, 200)
	ts.waitKept(t, alice, "psst")
	ca := ts.dial(alice)
	joined := ca.waitFor("joined", typed("presence"))
	if joined["catchup"] != true || joined["user"] != "bob" || joined["channel"] != "room" {
		t.Fatalf("joined %v", joined)
	}
	jsonEq(t, "joined message", joined["message"], `{"action": "joined"}`)
	jsonEq(t, "joiner's public state", joined["state"], `{"status": "away"}`)
	jsonEq(t, "user list with public state", joined["users"], `[{"user": "alice", "state": {"status": "online"}}, {"user": "bob", "state": {"status": "away"}}]`)
	pm := ca.waitFor("pm", typed("message"))
	if pm["catchup"] != true || pm["channel"] != nil || pm["message"].(map[string]any)["text"] != "psst" {
		t.Fatalf("pm %v", pm)
	}
	cb := ts.dial(bob)
	// A live message: catchup false, delivery keys stripped, every frame
	// an array of one message.
	ts.call("POST", "/message", []map[string]any{{"user": "alice", "channel": "room", "message": map[string]any{"text": "hello"}, "extra_key": 1, "type": "spoof", "timestamp": "2020-01-02T03:04:05Z"}}, 200)
	live := cb.waitFor("hello", func(m map[string]any) bool {
		return m["type"] == "message" && m["catchup"] == false && m["channel"] == "room"
	})
	if live["extra_key"] != 1.0 || live["edited"] != nil || live["timestamp"] != "2020-01-02T03:04:05Z" {
		t.Fatalf("live message %v", live)
	}
	for _, k := range []string{"pm_users", "exclude_users", "no_history"} {
		if _, ok := live[k]; ok {
			t.Fatalf("%s delivered: %v", k, live)
		}
	}
	for _, m := range ca.messages() {
		if m["type"] == "message" && m["channel"] == nil && m["message"].(map[string]any)["text"] == "not for alice" {
			t.Fatalf("alice got bob's private message")
		}
		if m["type"] == "presence" && m["user"] == "alice" {
			t.Fatalf("alice got her own presence: %v", m)
		}
	}
	// pm_users and exclude_users in a channel.
	ts.call("POST", "/message", []map[string]any{
		{"user": "x", "channel": "room", "pm_users": []string{"bob"}, "message": map[string]any{"n": 1}},
		{"user": "x", "channel": "room", "exclude_users": []string{"bob"}, "message": map[string]any{"n": 2}},
		{"user": "x", "channel": "room", "pm_users": []string{"bob"}, "exclude_users": []string{"bob"}, "message": map[string]any{"n": 3}},
		{"user": "x", "channel": "room", "message": map[string]any{"n": 4}},
	}, 200)
	numbers := func(cl *client) string {
		var ns []string
		for _, m := range cl.messages() {
			if mm, ok := m["message"].(map[string]any); ok && m["user"] == "x" {
				ns = append(ns, fmt.Sprint(mm["n"]))
			}
		}
		return strings.Join(ns, ",")
	}
	eventually(t, 5*time.Second, func() error {
		if a, b := numbers(ca), numbers(cb); a != "2,4" || b != "1,4" {
			return fmt.Errorf("alice got %s (want 2,4), bob %s (want 1,4)", a, b)
		}
		return nil
	})
	// user_state_change: to everyone in the channel, public keys only.
	ts.post("/user_state", map[string]any{"user": "bob", "user_state": map[string]any{"status": "busy", "secret": 5}})
	for _, cl := range []*client{ca, cb} {
		ch := cl.waitFor("state change", typed("user_state_change"))
		if ch["user"] != "bob" || ch["channel"] != "room" || ch["catchup"] != false {
			t.Fatalf("state change %v", ch)
		}
		jsonEq(t, "state change message", ch["message"], `{"state": {"status": "busy"}, "changed": [{"key": "status", "value": "busy"}]}`)
	}
	ts.post("/user_state", map[string]any{"user": "bob", "user_state": map[string]any{"secret": 6}})
	ca.waitFor("private-only change", func(m map[string]any) bool {
		return m["type"] == "user_state_change" && string(mustJSON(m["message"].(map[string]any)["changed"])) == "[]"
	})
	// Disconnect: the others get parted, without bob in the list.
	st, _, _ := ts.do("POST", "/disconnect?conn_id="+bob, map[string]any{"conn_id": bob}, false)
	if st != 200 {
		t.Fatal(st)
	}
	parted := ca.waitFor("parted", func(m map[string]any) bool {
		return m["type"] == "presence" && m["message"].(map[string]any)["action"] == "parted"
	})
	if parted["user"] != "bob" || parted["state"] != nil {
		t.Fatalf("parted %v", parted)
	}
	jsonEq(t, "parted user list", parted["users"], `[{"user": "alice", "state": {"status": "online"}}]`)
	if ce := cb.waitClosed(); ce == nil || ce.Code != 1000 {
		t.Fatalf("bob's socket closed with %v", ce)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// No spurious parted when a connection leaves a channel it never joined
// (§10 #5), and presence only for the user's first and last connection.
func TestPresencePerUser(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}, "channel_configs": presenceConfig(nil)})
	ca := ts.dial(alice)
	b1 := ts.connect(map[string]any{"username": "bob", "channels": []string{"room"}})
	b2 := ts.connect(map[string]any{"username": "bob", "channels": []string{"room"}})
	b3 := ts.connect(map[string]any{"username": "bob"})
	ts.post("/unsubscribe", map[string]any{"conn_id": b3, "channels": []string{"room"}}) // never joined
	ts.post("/unsubscribe", map[string]any{"conn_id": b1, "channels": []string{"room"}})
	ts.post("/unsubscribe", map[string]any{"conn_id": b2, "channels": []string{"room"}})
	ts.call("POST", "/message", []map[string]any{{"user": "end", "channel": "room"}}, 200)
	ca.waitFor("end", func(m map[string]any) bool { return m["user"] == "end" })
	var actions []string
	for _, m := range ca.messages() {
		if m["type"] == "presence" {
			actions = append(actions, m["message"].(map[string]any)["action"].(string))
		}
	}
	if strings.Join(actions, ",") != "joined,parted" {
		t.Fatalf("presence %v, want joined,parted", actions)
	}
}

func TestWebSocket(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = 200 * time.Millisecond })
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
	cl := ts.dial(id)
	// Heartbeats: [] frames while idle.
	eventually(t, 5*time.Second, func() error {
		if n := cl.heartbeats(); n < 2 {
			return fmt.Errorf("%d heartbeats", n)
		}
		return nil
	})
	// What the client sends is ignored (the JS client's heartbeat).
	if err := cl.c.WriteMessage(websocket.TextMessage, []byte(`{"type":"heartbeat"}`)); err != nil {
		t.Fatal(err)
	}
	// A second socket replaces the first, which is closed; the connection
	// stays (§10 #10).
	second := ts.dial(id)
	if ce := cl.waitClosed(); ce == nil || ce.Code != 1000 {
		t.Fatalf("replaced socket closed with %v", ce)
	}
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room"}}, 200)
	second.waitFor("message", typed("message"))
	// Unknown and invalid conn_ids: the socket is closed.
	if ce := ts.dial(newUUID()).waitClosed(); ce == nil || ce.Code != 1000 {
		t.Fatalf("unknown conn_id: %v", ce)
	}
	if ce := ts.dial("nope").waitClosed(); ce == nil || ce.Code != 1008 {
		t.Fatalf("invalid conn_id: %v", ce)
	}
	// Plain HTTP on /ws.
	if st, _, _ := ts.do("GET", "/ws", nil, false); st != 400 {
		t.Fatalf("plain GET /ws: %d", st)
	}
	// The client closes: the connection ends.
	second.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	second.waitClosed()
	eventually(t, 5*time.Second, func() error {
		if st, _, body := ts.do("GET", "/disconnect?conn_id="+id, nil, false); st != 200 || string(body) != "false\n" {
			return fmt.Errorf("connection still there: %s", body)
		}
		return nil
	})
}

// A socket opened long after /connect lives: heartbeats keep it (§10 #4).
func TestLateSocketLives(t *testing.T) {
	clock := newClock()
	ts := newTestServer(t, func(c *Config) { c.Now = clock.now })
	id := ts.connect(map[string]any{"username": "alice"})
	clock.add(7 * time.Second) // Channelstream's heartbeats stopped for good here
	ts.srv.sweep(clock.now())
	cl := ts.dial(id)
	for range 8 { // 40 s with only heartbeats
		clock.add(5 * time.Second)
		ts.srv.sweep(clock.now())
	}
	eventually(t, 5*time.Second, func() error {
		if n := cl.heartbeats(); n != 8 {
			return fmt.Errorf("%d heartbeats, want 8", n)
		}
		return nil
	})
	if ts.srv.numConns() != 1 {
		t.Fatal("connection collected while its socket is open")
	}
	select {
	case <-cl.done:
		t.Fatalf("socket closed: %v", cl.closed)
	default:
	}
}

// clock is a test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// listen is one long-poll.
func (ts *testServer) listen(query string) (int, http.Header, string, time.Duration) {
	ts.t.Helper()
	start := time.Now()
	resp, err := http.Get(ts.url + "/listen?" + query)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), time.Since(start)
}

func TestLongPoll(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = 300 * time.Millisecond })
	id := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}})
	// Idle: [] after the heartbeat interval.
	st, hdr, body, took := ts.listen("conn_id=" + id)
	if st != 200 || body != "[]" || took < 250*time.Millisecond || hdr.Get("Access-Control-Allow-Origin") != "*" || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("idle poll: %d %q %v %v", st, body, took, hdr)
	}
	// Messages between polls are kept (catchup), then a parked poll gets
	// the next ones in one batch.
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 1}}}, 200)
	ts.waitKept(t, id, `"n":1`)
	_, _, body, _ = ts.listen("conn_id=" + id)
	var got []map[string]any
	json.Unmarshal([]byte(body), &got)
	if len(got) != 1 || got[0]["catchup"] != true {
		t.Fatalf("catch-up poll %s", body)
	}
	done := make(chan string)
	go func() {
		_, _, b, _ := ts.listen("conn_id=" + id + "&callback=app.cb_1")
		done <- b
	}()
	eventually(t, 5*time.Second, func() error {
		if !ts.srv.conns[id].tport.attached() {
			return fmt.Errorf("not parked yet")
		}
		return nil
	})
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 2}}, {"user": "x", "channel": "room", "message": map[string]any{"n": 3}}}, 200)
	b := <-done
	if !strings.HasPrefix(b, "app.cb_1([") || !strings.HasSuffix(b, "])") {
		t.Fatalf("JSONP %q", b)
	}
	json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(b, "app.cb_1("), ")")), &got)
	if len(got) != 2 || got[0]["catchup"] != false || got[1]["message"].(map[string]any)["n"] != 3.0 {
		t.Fatalf("batch %s", b)
	}
	// Bad input.
	for _, tc := range []struct {
		query  string
		status int
		body   string
	}{
		{"conn_id=nope", 422, `["Wrong UUID format"]`},
		{"", 422, `["Wrong UUID format"]`},
		{"conn_id=" + newUUID(), 401, `{"conn_id":["Unknown connection"]}`},
		{"conn_id=" + id + "&callback=alert(1)//", 422, `{"callback":["Not a valid JavaScript function name."]}`},
	} {
		st, _, body, _ := ts.listen(tc.query)
		if st != tc.status || strings.TrimSpace(body) != tc.body {
			t.Errorf("listen?%s: %d %s, want %d %s", tc.query, st, body, tc.status, tc.body)
		}
	}
}

// Polls keep a long-poll connection alive; without them it is collected
// after 15 s and its channels see parted (connections in no channel too,
// §10 #3); users without connections are forgotten after a day.
func TestConnectionGC(t *testing.T) {
	clock := newClock()
	ts := newTestServer(t, func(c *Config) {
		c.Now = clock.now
		c.Heartbeat = 50 * time.Millisecond // the idle polls' wait
	})
	watcher := ts.connect(map[string]any{"username": "w", "channels": []string{"room"}, "channel_configs": presenceConfig(nil)})
	cw := ts.dial(watcher)
	poller := ts.connect(map[string]any{"username": "p", "channels": []string{"room"}})
	ts.connect(map[string]any{"username": "idle"})
	for range 4 { // 40 s, a poll every 10 s
		clock.add(10 * time.Second)
		ts.srv.sweep(clock.now())
		if st, _, _, _ := ts.listen("conn_id=" + poller); st != 200 {
			t.Fatalf("poller collected while polling: %d", st)
		}
	}
	if n := ts.srv.numConns(); n != 2 {
		t.Fatalf("connections %d, want 2 (the idle one collected)", n)
	}
	clock.add(16 * time.Second) // the poller stops polling
	ts.srv.sweep(clock.now())
	if n := ts.srv.numConns(); n != 1 {
		t.Fatalf("connections %d, want 1", n)
	}
	parted := cw.waitFor("parted", func(m map[string]any) bool {
		return m["type"] == "presence" && m["message"].(map[string]any)["action"] == "parted"
	})
	if parted["user"] != "p" {
		t.Fatalf("parted %v", parted)
	}
	if st, _, _, _ := ts.listen("conn_id=" + poller); st != 401 {
		t.Fatalf("poll of a collected connection: %d, want 401", st)
	}
	clock.add(25 * time.Hour)
	ts.srv.sweep(clock.now())
	ts.srv.mu.Lock()
	defer ts.srv.mu.Unlock()
	if _, ok := ts.srv.users["idle"]; ok {
		t.Error("user idle still remembered after a day")
	}
	if _, ok := ts.srv.users["w"]; !ok {
		t.Error("user w, still connected, was forgotten")
	}
}

func (s *Server) numConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// store_frames: false drops what arrives for a detached connection.
func TestStoreFramesOff(t *testing.T) {
	ts := newTestServer(t, nil)
	id := ts.connect(map[string]any{"username": "a", "channels": []string{"quiet", "loud"},
		"channel_configs": map[string]any{"quiet": map[string]any{"store_frames": false}}})
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "quiet"}, {"user": "x", "channel": "loud"}}, 200)
	ts.waitKept(t, id, `"loud"`) // and so quiet's, before it, dropped
	cl := ts.dial(id)
	cl.waitFor("loud", func(m map[string]any) bool { return m["channel"] == "loud" })
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "quiet", "message": map[string]any{"live": true}}}, 200)
	cl.waitFor("live quiet", func(m map[string]any) bool { return m["channel"] == "quiet" })
	for _, m := range cl.messages() {
		if m["channel"] == "quiet" && m["catchup"] == true {
			t.Fatalf("catch-up of a store_frames: false channel: %v", m)
		}
	}
}

func TestSignedAccess(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Allowed = nil })
	if st, _, body := ts.do("POST", "/connect", map[string]any{"username": "u"}, true); st != 403 || !strings.Contains(string(body), `"403 Forbidden"`) {
		t.Fatalf("unlisted address: %d %s", st, body)
	}
	ts = newTestServer(t, nil)
	if st, _, _ := ts.do("POST", "/connect", map[string]any{"username": "u"}, false); st != 403 {
		t.Fatalf("no token: %d", st)
	}
	old := Sign(testSecret, "channelstream", time.Now().Add(-61*time.Second))
	for _, tok := range []string{"nodot", old, Sign("other", "channelstream", time.Now()), "x." + strings.Repeat("A", 27)} {
		st, _, body := ts.do("POST", "/connect", map[string]any{"username": "u"}, false, "X-Channelstream-Secret", tok)
		if st != 401 || strings.TrimSpace(string(body)) != `{"request":"Bad Signature"}` {
			t.Fatalf("token %q: %d %s", tok, st, body)
		}
	}
	// The secret parameter works too.
	if st, _, _ := ts.do("POST", "/connect?secret="+Sign(testSecret, "/connect", time.Now()), map[string]any{"username": "u"}, false); st != 200 {
		t.Fatalf("secret param: %d", st)
	}
	// A bad token on a free route is still 401, as in Channelstream.
	if st, _, _ := ts.do("GET", "/disconnect?conn_id="+newUUID(), nil, false, "X-Channelstream-Secret", "bad"); st != 401 {
		t.Fatalf("bad token on /disconnect: %d", st)
	}
	// validate_requests = false: old signatures pass.
	ts = newTestServer(t, func(c *Config) { c.SignatureMaxAge = -1 })
	if st, _, _ := ts.do("POST", "/connect", map[string]any{"username": "u"}, false, "X-Channelstream-Secret", old); st != 200 {
		t.Fatalf("no age check: %d", st)
	}
}

func TestHTTPSurface(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxBody = 1024; c.AllowCORS = []string{"good.example"} })
	// Preflight on /disconnect (the JS client posts JSON there).
	st, hdr, body := ts.do("OPTIONS", "/disconnect", nil, false, "Origin", "http://good.example")
	if st != 200 || len(body) != 0 || hdr.Get("Access-Control-Allow-Origin") != "*" || hdr.Get("Access-Control-Max-Age") != "86400" ||
		!strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "PATCH") || hdr.Get("XDomainRequestAllowed") != "1" {
		t.Fatalf("preflight: %d %q %v", st, body, hdr)
	}
	if _, hdr, _ := ts.do("OPTIONS", "/listen", nil, false, "Origin", "http://evil.example"); hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("origin outside allow_cors got CORS")
	}
	// Over the body limit: 413 with JSON.
	big := `[{"user": "u", "channel": "c", "message": {"t": "` + strings.Repeat("x", 2000) + `"}}]`
	if st, _, body := ts.do("POST", "/message", big, true); st != 413 || !strings.Contains(string(body), "_schema") {
		t.Fatalf("big body: %d %s", st, body)
	}
	// Malformed JSON: 422, never 500.
	if st, _, body := ts.do("POST", "/connect", `{"username": `, true); st != 422 || strings.TrimSpace(string(body)) != `{"_schema":["Invalid JSON body."]}` {
		t.Fatalf("malformed: %d %s", st, body)
	}
	// A wrong method.
	if st, hdr, _ := ts.do("GET", "/connect", nil, true); st != 405 || hdr.Get("Allow") != "POST" {
		t.Fatalf("GET /connect: %d", st)
	}
	// enforce_https.
	ts = newTestServer(t, func(c *Config) { c.EnforceHTTPS = true })
	if st, _, _ := ts.do("POST", "/info", nil, true); st != 406 {
		t.Fatalf("http with enforce_https: %d", st)
	}
	if st, _, _ := ts.do("POST", "/info", nil, true, "X-Forwarded-Proto", "https"); st != 200 {
		t.Fatalf("https behind a proxy: %d", st)
	}
}

func TestAdmin(t *testing.T) {
	ts := newTestServer(t, nil)
	a := ts.connect(map[string]any{"username": "alice", "channels": []string{"room"}, "user_state": map[string]any{"pub": 1, "priv": 2}, "state_public_keys": []string{"pub"}})
	ts.connect(map[string]any{"username": "alice", "channels": []string{"other"}, "state_public_keys": []string{"pub"}})
	ts.connect(map[string]any{"username": "bob", "channels": []string{"room"}})
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room"}, {"user": "x", "channel": "nowhere"}}, 200)
	ts.do("GET", "/disconnect?conn_id="+ts.connect(map[string]any{"username": "carol"}), nil, false)
	adm := ts.post("/admin/admin.json", nil)
	for k, want := range map[string]float64{"remembered_user_count": 3, "unique_user_count": 2, "total_connections": 3, "total_channels": 2, "total_messages": 2, "total_unique_messages": 2} {
		if adm[k] != want {
			t.Errorf("%s = %v, want %v", k, adm[k], want)
		}
	}
	users := adm["users"].([]any)
	al := users[0].(map[string]any)
	if al["user"] != "alice" || len(al["connections"].([]any)) != 2 || !strings.HasPrefix(adm["uptime"].(string), "0:00:0") {
		t.Fatalf("admin users %v uptime %v", users, adm["uptime"])
	}
	jsonEq(t, "public state in admin.json", al["state"], `{"pub": 1}`)
	_ = a
	// Unsigned: refused; basic auth and the sign-in cookie work.
	if st, _, _ := ts.do("GET", "/admin/admin.json", nil, false); st != 403 {
		t.Fatalf("unsigned admin.json: %d", st)
	}
	req, _ := http.NewRequest("GET", ts.url+"/admin/admin.json", nil)
	req.SetBasicAuth("admin", "admin-pw")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("basic auth: %v %v", resp, err)
	}
	if st, _, body := ts.do("GET", "/admin/sign_in", nil, false); st != 200 || !strings.Contains(string(body), "<form") {
		t.Fatalf("sign_in page: %d", st)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(ts.url+"/admin/sign_in", map[string][]string{"username": {"admin"}, "password": {"admin-pw"}})
	if err != nil || resp.StatusCode != 302 || len(resp.Cookies()) != 1 {
		t.Fatalf("sign in: %v %v", resp, err)
	}
	req, _ = http.NewRequest("GET", ts.url+"/admin/admin.json", nil)
	req.AddCookie(resp.Cookies()[0])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("cookie: %v %v", resp, err)
	}
	resp, _ = noRedirect.PostForm(ts.url+"/admin/sign_in", map[string][]string{"username": {"admin"}, "password": {"wrong"}})
	if resp.StatusCode != 200 || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
}

// The hub's side of the mapping: a Channelstream channel is a hub channel
// under the namespace (names the hub refuses are escaped).
func TestChannelNames(t *testing.T) {
	for _, name := range []string{"room", "a:b", "my room", "50%", "dm#1", "tab\there", "日本"} {
		esc := escapeChannel(name)
		if unescapeChannel(esc) != name || strings.ContainsAny(esc, " \t#") {
			t.Errorf("%q -> %q -> %q", name, esc, unescapeChannel(esc))
		}
	}
	ts := newTestServer(t, nil)
	id := ts.connect(map[string]any{"username": "u", "channels": []string{"my room"}})
	if got := ts.hub.Channels(); got["channelstream:my%20room"] != 1 {
		t.Fatalf("hub channels %v", got)
	}
	cl := ts.dial(id)
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "my room"}}, 200)
	if m := cl.waitFor("message", typed("message")); m["channel"] != "my room" {
		t.Fatalf("channel %v", m["channel"])
	}
	long := strings.Repeat("日", 256)
	if st, _, _ := ts.do("POST", "/connect", map[string]any{"username": "u", "channels": []string{long}}, true); st != 200 {
		t.Fatalf("256 characters: %d", st)
	}
}

// Channel-less edits and deletes go to the pm_users' connections.
func TestPrivateEditDelete(t *testing.T) {
	ts := newTestServer(t, nil)
	a := ts.dial(ts.connect(map[string]any{"username": "alice"}))
	b := ts.dial(ts.connect(map[string]any{"username": "bob"}))
	id := newUUID()
	ts.call("POST", "/message", []map[string]any{{"uuid": id, "user": "sys", "pm_users": []string{"alice"}, "message": map[string]any{"v": 1}}}, 200)
	ts.call("PATCH", "/message", []map[string]any{{"uuid": id, "pm_users": []string{"alice"}, "message": map[string]any{"v": 2}}}, 200)
	ts.call("DELETE", "/message", []map[string]any{{"uuid": id, "pm_users": []string{"alice"}}}, 200)
	del := a.waitFor("delete", typed("message:delete"))
	jsonEq(t, "private delete", del, fmt.Sprintf(`{"type": "message:delete", "uuid": %q, "channel": null}`, id))
	if e := a.waitFor("edit", typed("message:edit")); e["message"].(map[string]any)["v"] != 2.0 || e["channel"] != nil {
		t.Fatalf("private edit %v", e)
	}
	ts.call("POST", "/message", []map[string]any{{"user": "sys", "pm_users": []string{"bob"}, "message": map[string]any{"end": true}}}, 200)
	b.waitFor("end", func(m map[string]any) bool {
		return m["message"] != nil && m["message"].(map[string]any)["end"] == true
	})
	if n := len(b.messages()); n != 1 {
		t.Fatalf("bob got alice's private messages: %v", b.messages())
	}
}

// history_size 0 ("unlimited" in Channelstream) and sizes above the
// limit keep history_limit messages.
func TestHistoryLimit(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.HistoryLimit = 4 })
	ts.connect(map[string]any{"username": "u", "channels": []string{"zero", "big"}, "channel_configs": map[string]any{
		"zero": map[string]any{"store_history": true, "history_size": 0},
		"big":  map[string]any{"store_history": true, "history_size": 50},
	}})
	for i := range 10 {
		ts.call("POST", "/message", []map[string]any{{"user": "u", "channel": "zero", "message": map[string]any{"n": i}}, {"user": "u", "channel": "big", "message": map[string]any{"n": i}}}, 200)
	}
	chans := ts.post("/info", nil)["channels"].(map[string]any)
	for _, name := range []string{"zero", "big"} {
		h := chans[name].(map[string]any)["history"].([]any)
		if len(h) != 4 || h[3].(map[string]any)["message"].(map[string]any)["n"] != 9.0 {
			t.Fatalf("%s history: %d entries %v", name, len(h), h)
		}
	}
	if chans["zero"].(map[string]any)["settings"].(map[string]any)["history_size"] != 0.0 {
		t.Fatal("settings must show the requested history_size")
	}
}

// A second poll makes the first answer at once; a poll whose client left
// gives its messages back for the next poll.
func TestPollReplacedAndAbandoned(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Heartbeat = 3 * time.Second })
	id := ts.connect(map[string]any{"username": "a", "channels": []string{"room"}})
	first := make(chan time.Duration)
	go func() { _, _, _, took := ts.listen("conn_id=" + id); first <- took }()
	waitParked := func() {
		eventually(t, 5*time.Second, func() error {
			if ts.srv.Stats().Polls != 1 {
				return fmt.Errorf("%d polls parked", ts.srv.Stats().Polls)
			}
			return nil
		})
	}
	waitParked()
	second := make(chan string)
	go func() { _, _, body, _ := ts.listen("conn_id=" + id); second <- body }()
	if took := <-first; took > 2*time.Second {
		t.Fatalf("the replaced poll answered after %v", took)
	}
	waitParked()
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 1}}}, 200)
	if b := <-second; !strings.Contains(b, `"n":1`) {
		t.Fatalf("second poll %s", b)
	}
	// Abandoned: the client gives up inside the batching window.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+"/listen?conn_id="+id, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitParked()
	ts.call("POST", "/message", []map[string]any{{"user": "x", "channel": "room", "message": map[string]any{"n": 2}}}, 200)
	cancel()
	<-done
	eventually(t, 5*time.Second, func() error {
		if ts.srv.Stats().Polls != 0 {
			return fmt.Errorf("poll still parked")
		}
		return nil
	})
	ts.waitKept(t, id, `"n":2`)
	_, _, body, _ := ts.listen("conn_id=" + id)
	var got []map[string]any
	json.Unmarshal([]byte(body), &got)
	if len(got) != 1 || got[0]["catchup"] != true || got[0]["message"].(map[string]any)["n"] != 2.0 {
		t.Fatalf("after an abandoned poll: %s", body)
	}
}
