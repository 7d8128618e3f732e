package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/internal/wiretest"
)

const testSecret = "a-test-secret-of-at-least-16-bytes"
const testAPIKey = "test-api-key-0123456789"

func authConfig(anonymous bool) func(*config.Config) {
	return func(c *config.Config) {
		channelsConfig(c)
		c.Auth.Anonymous = anonymous
		c.Auth.JWT.HMACSecret = testSecret
		c.APIKeys = []config.Secret{testAPIKey}
	}
}

func token(t *testing.T, sub string, exp time.Duration, extra map[string]any) string {
	t.Helper()
	claims := jwt.MapClaims{"exp": time.Now().Add(exp).Unix()}
	if sub != "" {
		claims["sub"] = sub
	}
	for k, v := range extra {
		claims[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialStatus tries a /live connection and returns the HTTP status and
// body of a refused handshake.
func dialStatus(t *testing.T, base, query string, hdr http.Header) (*websocket.Conn, int, string) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/live"+query, hdr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		return c, 101, ""
	}
	if resp == nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return nil, resp.StatusCode, string(body)
}

func newLiveClientWith(t *testing.T, base, tok string) *liveClient {
	t.Helper()
	c, status, body := dialStatus(t, base, "?token="+tok, nil)
	if c == nil {
		t.Fatalf("dial: %d %s", status, body)
	}
	lc := &liveClient{t: t, c: c, cond: make(chan struct{}, 1)}
	go lc.readLoop()
	hello := lc.waitFor(func(m map[string]any) bool { return m["stream"] == "$session" })
	lc.id = hello["payload"].(map[string]any)["client_id"].(string)
	return lc
}

func TestTokensAtConnect(t *testing.T) {
	base, _ := start(t, authConfig(false), Options{})
	if _, status, body := dialStatus(t, base, "", nil); status != 401 || !strings.Contains(body, "authentication required") {
		t.Fatalf("no token: %d %s", status, body)
	}
	bad := token(t, "alice", time.Hour, nil) + "x"
	if _, status, body := dialStatus(t, base, "?token="+bad, nil); status != 401 || strings.Contains(body, bad) {
		t.Fatalf("bad token: %d %s", status, body)
	}
	if _, status, body := dialStatus(t, base, "?token="+token(t, "alice", -time.Minute, nil), nil); status != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("expired token: %d %s", status, body)
	}
	// Query, cookie and the connected frame's user.
	for _, how := range []string{"query", "cookie"} {
		tok := token(t, "alice", time.Hour, map[string]any{"info": map[string]any{"name": "Alice"}})
		query, hdr := "?token="+tok, http.Header{}
		if how == "cookie" {
			query = ""
			hdr.Set("Cookie", "switchyard_token="+tok)
		}
		c, status, body := dialStatus(t, base, query, hdr)
		if c == nil {
			t.Fatalf("%s: %d %s", how, status, body)
		}
		var hello frame
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, _ := c.ReadMessage()
		json.Unmarshal(data, &hello)
		if !strings.Contains(string(data), `"user":"alice"`) {
			t.Fatalf("%s: connected frame %s", how, data)
		}
	}
	// The token's channels are joined server-side, and info reaches
	// presence.
	lc := newLiveClientWith(t, base, token(t, "bob", time.Hour, map[string]any{"channels": []string{"chat:welcome", "nowhere:x"}, "info": map[string]any{"name": "Bob"}}))
	sub := lc.push("subscribed", "chat:welcome")
	if sub["epoch"] == "" {
		t.Fatalf("subscribed push %v", sub)
	}
	errFrame := lc.waitFor(func(m map[string]any) bool {
		p, _ := m["payload"].(map[string]any)
		return p["response_status"] == 404.0
	})
	if !strings.Contains(errFrame["payload"].(map[string]any)["errors"].([]any)[0].(string), "nowhere") {
		t.Fatalf("error for the unknown namespace: %v", errFrame)
	}
	clients := lc.ok("presence", map[string]any{"channel": "chat:welcome"})["clients"].([]any)
	if len(clients) != 1 || clients[0].(map[string]any)["user"] != "bob" || clients[0].(map[string]any)["info"].(map[string]any)["name"] != "Bob" {
		t.Fatalf("presence %v", clients)
	}
}

func TestUserLimitedAndAuthenticatedChannels(t *testing.T) {
	base, _ := start(t, authConfig(true), Options{})
	alice := newLiveClientWith(t, base, token(t, "alice", time.Hour, nil))
	carol := newLiveClientWith(t, base, token(t, "carol", time.Hour, nil))
	anon := newLiveClient(t, base)
	alice.ok("subscribe", map[string]any{"channel": "chat:dm#alice,bob"})
	if p := carol.request("$channels", "subscribe", map[string]any{"channel": "chat:dm#alice,bob"}); p["response_status"] != 403.0 {
		t.Fatalf("carol in alice's channel: %v", p)
	}
	alice.ok("subscribe", map[string]any{"channel": "members:vip"})
	if p := anon.request("$channels", "subscribe", map[string]any{"channel": "members:vip"}); p["response_status"] != 403.0 {
		t.Fatalf("anonymous in an authenticated namespace: %v", p)
	}
	alice.ok("publish", map[string]any{"channel": "members:vip", "data": "hi"})
	if m := alice.push("message", "members:vip"); m["info"].(map[string]any)["user"] != "alice" {
		t.Fatalf("message %v", m)
	}
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	base, _ := start(t, authConfig(false), Options{})
	expiring := newLiveClientWith(t, base, token(t, "alice", 2*time.Second, nil))
	refreshed := newLiveClientWith(t, base, token(t, "alice", 2*time.Second, nil))

	// Refresh errors first: another user, a bad token, no token.
	if p := refreshed.request("$session", "refresh", map[string]any{"token": token(t, "mallory", time.Hour, nil)}); p["response_status"] != 403.0 {
		t.Fatalf("refresh as another user: %v", p)
	}
	if p := refreshed.request("$session", "refresh", map[string]any{"token": "garbage"}); p["response_status"] != 401.0 {
		t.Fatalf("refresh with garbage: %v", p)
	}
	if p := refreshed.request("$session", "refresh", map[string]any{}); p["response_status"] != 400.0 {
		t.Fatalf("refresh without token: %v", p)
	}
	p := refreshed.request("$session", "refresh", map[string]any{"token": token(t, "alice", time.Hour, nil)})
	if p["response_status"] != 200.0 || p["data"].(map[string]any)["expires"] == nil {
		t.Fatalf("refresh: %v", p)
	}

	// The expiring one is closed with 4001 once its token expires.
	deadline := time.Now().Add(8 * time.Second)
	for {
		expiring.mu.Lock()
		err := expiring.err
		expiring.mu.Unlock()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 4001 {
				t.Fatalf("expired connection ended with %v, want 4001", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired connection still open")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The refreshed one is still serving.
	refreshed.ok("subscribe", map[string]any{"channel": "chat:still-here"})
}

// callAPI calls the server API.
func callAPI(t *testing.T, base, key, method string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader = http.NoBody
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest("POST", base+"/api/server/"+method, rd)
	if key != "" {
		req.Header.Set("Authorization", "apikey "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	wiretest.CheckNoNullCollections(t, "server API "+method, raw)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func TestServerAPI(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		authConfig(true)(c)
		c.Limits.MaxRequestBody = 64 << 10
	}, Options{})
	alice := newLiveClientWith(t, base, token(t, "alice", time.Hour, map[string]any{"info": map[string]any{"n": 1}}))
	alice2 := newLiveClientWith(t, base, token(t, "alice", time.Hour, nil))
	bob := newLiveClientWith(t, base, token(t, "bob", time.Hour, nil))
	bob.ok("subscribe", map[string]any{"channel": "chat:room"})
	bob.ok("subscribe", map[string]any{"channel": "news:flash"})

	// publish and broadcast
	status, out := callAPI(t, base, testAPIKey, "publish", map[string]any{"channel": "chat:room", "data": map[string]any{"text": "from the backend"}})
	if status != 200 || out["offset"] != 1.0 || out["epoch"] == "" {
		t.Fatalf("publish: %d %v", status, out)
	}
	if m := bob.push("message", "chat:room"); m["data"].(map[string]any)["text"] != "from the backend" || m["info"] != nil {
		t.Fatalf("pushed %v", m)
	}
	status, out = callAPI(t, base, testAPIKey, "broadcast", map[string]any{"channels": []string{"chat:room", "news:flash"}, "data": 7})
	if status != 200 || len(out["publications"].([]any)) != 2 {
		t.Fatalf("broadcast: %d %v", status, out)
	}
	bob.push("message", "chat:room")
	bob.push("message", "news:flash")

	// server-side subscribe for every connection of a user
	status, out = callAPI(t, base, testAPIKey, "subscribe", map[string]any{"user": "alice", "channel": "chat:room"})
	if status != 200 || out["sessions"] != 2.0 {
		t.Fatalf("subscribe: %d %v", status, out)
	}
	alice.push("subscribed", "chat:room")
	alice2.push("subscribed", "chat:room")

	// presence and stats
	status, out = callAPI(t, base, testAPIKey, "presence", map[string]any{"channel": "chat:room"})
	if status != 200 || len(out["clients"].([]any)) != 3 {
		t.Fatalf("presence: %d %v", status, out)
	}
	status, out = callAPI(t, base, testAPIKey, "presence_stats", map[string]any{"channel": "chat:room"})
	if status != 200 || out["num_clients"] != 3.0 || out["num_users"] != 2.0 {
		t.Fatalf("presence_stats: %d %v", status, out)
	}
	// history
	status, out = callAPI(t, base, testAPIKey, "history", map[string]any{"channel": "chat:room", "limit": 1})
	if status != 200 || len(out["publications"].([]any)) != 1 || out["offset"] != 2.0 {
		t.Fatalf("history: %d %v", status, out)
	}
	// channels and info
	status, out = callAPI(t, base, testAPIKey, "channels", nil)
	if status != 200 || out["channels"].(map[string]any)["chat:room"].(map[string]any)["num_clients"] != 3.0 {
		t.Fatalf("channels: %d %v", status, out)
	}
	status, out = callAPI(t, base, testAPIKey, "info", nil)
	if status != 200 || out["connections"] != 3.0 || out["version"] == "" || out["channels"] != 2.0 {
		t.Fatalf("info: %d %v", status, out)
	}
	// server-side unsubscribe
	status, out = callAPI(t, base, testAPIKey, "unsubscribe", map[string]any{"user": "alice", "channel": "chat:room"})
	if status != 200 || out["sessions"] != 2.0 {
		t.Fatalf("unsubscribe: %d %v", status, out)
	}
	alice.push("unsubscribed", "chat:room")
	// disconnect: every connection of the user, with 4003
	status, out = callAPI(t, base, testAPIKey, "disconnect", map[string]any{"user": "alice"})
	if status != 200 || out["sessions"] != 2.0 {
		t.Fatalf("disconnect: %d %v", status, out)
	}
	for _, c := range []*liveClient{alice, alice2} {
		eventually(t, 5*time.Second, func() error {
			c.mu.Lock()
			defer c.mu.Unlock()
			var ce *websocket.CloseError
			if !errors.As(c.err, &ce) || ce.Code != 4003 {
				return errors.New("not closed with 4003 yet")
			}
			return nil
		})
	}
	bob.ok("subscribe", map[string]any{"channel": "chat:other"}) // bob unaffected
}

func TestServerAPIBadInput(t *testing.T) {
	base, _ := start(t, func(c *config.Config) {
		authConfig(true)(c)
		c.Limits.MaxRequestBody = 1024
	}, Options{})
	cases := []struct {
		name, key, method string
		body              any
		status            int
		code, mention     string
	}{
		{"no key", "", "publish", map[string]any{"channel": "chat:x", "data": 1}, 401, "unauthorized", "API key"},
		{"wrong key", "wrong-key-0123456789", "publish", map[string]any{"channel": "chat:x", "data": 1}, 401, "unauthorized", "API key"},
		{"unknown method", testAPIKey, "explode", nil, 404, "not_found", "explode"},
		{"not JSON", testAPIKey, "publish", "{nope", 400, "bad_request", "JSON object"},
		{"missing channel", testAPIKey, "publish", map[string]any{"data": 1}, 400, "bad_request", `"channel"`},
		{"missing data", testAPIKey, "publish", map[string]any{"channel": "chat:x"}, 400, "bad_request", `"data"`},
		{"wrong type", testAPIKey, "publish", map[string]any{"channel": 5, "data": 1}, 400, "bad_request", `"channel"`},
		{"unknown field", testAPIKey, "publish", map[string]any{"channel": "chat:x", "data": 1, "chanel": "y"}, 400, "bad_request", `"chanel"`},
		{"unknown namespace", testAPIKey, "publish", map[string]any{"channel": "zz:x", "data": 1}, 404, "not_found", "zz"},
		{"bad limit", testAPIKey, "history", map[string]any{"channel": "chat:x", "limit": -2}, 400, "bad_request", `"limit"`},
		{"broadcast nothing", testAPIKey, "broadcast", map[string]any{"channels": []string{}, "data": 1}, 400, "bad_request", `"channels"`},
		{"broadcast bad channel", testAPIKey, "broadcast", map[string]any{"channels": []string{"chat:a", "zz:b"}, "data": 1}, 404, "not_found", `"zz:b"`},
		{"empty user", testAPIKey, "subscribe", map[string]any{"user": "", "channel": "chat:x"}, 400, "bad_request", `"user"`},
		{"too large", testAPIKey, "publish", map[string]any{"channel": "chat:x", "data": strings.Repeat("x", 2000)}, 413, "too_large", "1024"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := callAPI(t, base, tc.key, tc.method, tc.body)
			e, _ := out["error"].(map[string]any)
			if status != tc.status || e["code"] != tc.code || !strings.Contains(e["message"].(string), tc.mention) {
				t.Fatalf("got %d %v, want %d %s mentioning %s", status, out, tc.status, tc.code, tc.mention)
			}
		})
	}
	// GET is for the methods that take no body (info, channels) only.
	req, _ := http.NewRequest("GET", base+"/api/server/publish", nil)
	req.Header.Set("Authorization", "apikey "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}
