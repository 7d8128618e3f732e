package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/resource"
)

// logBuffer collects JSON log lines, safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the decoded log lines whose msg is msg.
func (b *logBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Tokens from the apps people run: simplejwt's {"user_id": 42} is user
// "42"; with auth.anonymous false a signed token without the user claim
// is refused before the upgrade with a body naming the claim; the log
// says why at info, without the token.
func TestTokensFromRealApps(t *testing.T) {
	var logs logBuffer
	base, _ := start(t, func(c *config.Config) {
		authConfig(false)(c)
		c.Auth.JWT.UserClaim = "user_id"
	}, Options{Logger: logs.logger()})

	simplejwt := token(t, "", time.Hour, map[string]any{"user_id": 42, "token_type": "access", "jti": "abc"})
	ok, status, body := dialStatus(t, base, "?token="+simplejwt, nil)
	if ok == nil {
		t.Fatalf("simplejwt token: %d %s", status, body)
	}
	ok.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hello struct {
		Stream  string
		Payload map[string]any
	}
	if err := ok.ReadJSON(&hello); err != nil || hello.Stream != "$session" || hello.Payload["user"] != "42" {
		t.Fatalf("connected as %+v (%v), want user \"42\"", hello, err)
	}

	noUser := token(t, "alice", time.Hour, nil) // sub, but the claim is user_id
	c, status, body := dialStatus(t, base, "?token="+noUser, nil)
	if c != nil || status != http.StatusUnauthorized || !strings.Contains(body, `token has no \"user_id\" claim`) {
		t.Fatalf("token without the user claim: %d %s", status, body)
	}
	expired := token(t, "", -time.Hour, map[string]any{"user_id": 7})
	if _, status, body = dialStatus(t, base, "?token="+expired, nil); status != 401 || !strings.Contains(body, "token expired") {
		t.Fatalf("expired: %d %s", status, body)
	}
	refused := logs.lines("websocket refused")
	if len(refused) != 2 {
		t.Fatalf("%d refusals logged, want 2:\n%s", len(refused), logs.String())
	}
	if r := refused[0]; r["level"] != "INFO" || r["key"] != "auth.jwt.user_claim" || !strings.Contains(r["reason"].(string), `"user_id"`) {
		t.Fatalf("refusal log %v", r)
	}
	if r := refused[1]; r["reason"] != "token expired" {
		t.Fatalf("refusal log %v", r)
	}
	for _, tok := range []string{noUser, expired} {
		for _, part := range strings.Split(tok, ".") {
			if strings.Contains(logs.String(), part) {
				t.Fatalf("the log holds (part of) a token:\n%s", logs.String())
			}
		}
	}
}

// The REST API refuses the same token with the same reason, logged alike.
func TestRESTRefusalSaysWhy(t *testing.T) {
	var logs logBuffer
	base, _ := start(t, func(c *config.Config) {
		resourcesConfig(c)
		c.Auth.Anonymous = false
		c.Auth.JWT.HMACSecret = testSecret
	}, Options{Logger: logs.logger()})
	anonymousToken := token(t, "", time.Hour, nil)
	code, m, raw := rest(t, "GET", base+"/api/resources/things/", "", anonymousToken)
	if code != 401 || m["detail"] != `token has no "sub" claim (the user id)` {
		t.Fatalf("REST: %d %s", code, raw)
	}
	if l := logs.lines("request refused"); len(l) != 1 || l[0]["key"] != "auth.jwt.user_claim" || l[0]["level"] != "INFO" {
		t.Fatalf("logged %v", l)
	}
	code, m, raw = rest(t, "GET", base+"/api/resources/things/", "", token(t, "alice", time.Hour, nil))
	if code != 200 {
		t.Fatalf("with a user: %d %s %v", code, raw, m)
	}
}

// A refused WebSocket says which config key governs the refusal: in the
// body and in an info log line.
func TestRejectedWebSocketNamesTheKey(t *testing.T) {
	var logs logBuffer
	base, _ := start(t, func(c *config.Config) {
		c.WebSocket.AllowedOrigins = []string{"https://app.example.com"}
		c.Limits.MaxConnections = 2 // the start helper's keep-alive /healthz connection may hold one
	}, Options{Logger: logs.logger()})

	hdr := http.Header{"Origin": {"https://evil.example.com"}}
	_, status, body := dialStatus(t, base, "", hdr)
	if status != http.StatusForbidden || !strings.Contains(body, "websocket.allowed_origins") || !strings.Contains(body, "https://evil.example.com") {
		t.Fatalf("cross origin: %d %s", status, body)
	}
	if c, status, body := dialStatus(t, base, "", http.Header{"Origin": {"https://app.example.com"}}); c == nil {
		t.Fatalf("allowed origin: %d %s", status, body)
	}
	// The limit counts every connection (the start helper's keep-alive
	// /healthz one too): dial until refused.
	for i := 0; ; i++ {
		c, st, b := dialStatus(t, base, "", nil)
		if c == nil {
			status, body = st, b
			break
		}
		if i == 4 {
			t.Fatal("never refused over limits.max_connections: 2")
		}
	}
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "limits.max_connections") {
		t.Fatalf("over the limit: %d %s", status, body)
	}
	refused := logs.lines("websocket refused")
	if len(refused) < 1 || refused[0]["key"] != "websocket.allowed_origins" || refused[0]["level"] != "INFO" {
		t.Fatalf("refusals logged: %v", refused)
	}
	// Over the limit the connection gate refuses before /live sees the
	// request; whichever refuses logs the key.
	named := false
	for _, l := range append(refused[1:], logs.lines("connection limit reached: refusing new connections")...) {
		named = named || l["key"] == "limits.max_connections"
	}
	if !named {
		t.Fatalf("the connection limit's refusal is not logged with its key:\n%s", logs.String())
	}
}

// A panic in a resource hook answers 500 in each wire's error shape, is
// logged with its stack through slog's default logger when Options.Logger
// is nil, and the server goes on.
func TestPanicInHookAnswers500(t *testing.T) {
	var logs logBuffer
	old := slog.Default()
	slog.SetDefault(logs.logger())
	t.Cleanup(func() { slog.SetDefault(old) })

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Resources = []config.Resource{{Name: "posts", Fields: []config.Field{{Name: "title", Type: "string"}}}}
	base, _ := run(t, cfg, Options{ResourceHooks: map[string]resource.Hooks{"posts": {
		Validate: func(ctx context.Context, w resource.Write) error {
			if w.Row["title"] == "boom" {
				panic("a bug in the application's hook")
			}
			return nil
		},
	}}})

	code, m, raw := rest(t, "POST", base+"/api/resources/posts/", `{"title": "boom"}`, "")
	if code != 500 || m["detail"] != "A server error occurred." || len(m) != 1 {
		t.Fatalf("REST: %d %s", code, raw)
	}
	c := newLiveClient(t, base)
	p := c.request("posts", "create", map[string]any{"data": map[string]any{"title": "boom"}})
	if p["response_status"] != 500.0 || fmt.Sprint(p["errors"]) != "[internal error]" {
		t.Fatalf("/live: %v", p)
	}
	// Both kept serving: the connection and the API.
	if p := c.request("posts", "create", map[string]any{"data": map[string]any{"title": "fine"}}); p["response_status"] != 201.0 {
		t.Fatalf("/live after the panic: %v", p)
	}
	if code, _, raw := rest(t, "POST", base+"/api/resources/posts/", `{"title": "fine"}`, ""); code != 201 {
		t.Fatalf("REST after the panic: %d %s", code, raw)
	}
	rl, ll := logs.lines("panic serving a resource request"), logs.lines("live: panic in a resource action")
	if len(rl) != 1 || len(ll) != 1 {
		t.Fatalf("panics logged: REST %d, /live %d:\n%s", len(rl), len(ll), logs.String())
	}
	for _, l := range []map[string]any{rl[0], ll[0]} {
		if l["level"] != "ERROR" || !strings.Contains(l["panic"].(string), "a bug in the application's hook") || !strings.Contains(l["stack"].(string), "firsthour_test.go") {
			t.Fatalf("panic log without its stack: %v", l)
		}
	}
}

// CheckConfig refuses what this build does not serve, naming the keys.
func TestCheckConfig(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	if err := CheckConfig(cfg); err != nil {
		t.Fatalf("the default: %v", err)
	}
	// postgres and redis are served (they are checked at start, not here).
	cfg.Store.Driver, cfg.Store.URL = "postgres", "postgres://u@h/db"
	cfg.Broker.Driver, cfg.Broker.URL = "redis", "redis://127.0.0.1:6379/0"
	if err := CheckConfig(cfg); err != nil {
		t.Fatalf("postgres and redis: %v", err)
	}
	cfg.Broker.Driver, cfg.Broker.URL = "nats", "nats://127.0.0.1:4222"
	err := CheckConfig(cfg)
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "broker.driver" ||
		!strings.Contains(errs[0].Msg, "not available in this build (memory, redis are)") {
		t.Fatalf("drivers: %v", err)
	}
	if _, err := New(cfg, Options{}); err == nil || err.Error() != errs.Error() {
		t.Fatalf("New refuses the same: %v", err)
	}
}

// A since older than the change log's retention answers recovered:false
// (trimmed by store.change_log.max_rows at start), and max_replay bounds
// a catch-up.
func TestChangeLogRetention(t *testing.T) {
	dir := t.TempDir()
	cfgOf := func(c *config.Config) {
		resourcesConfigOpen(nil)(c)
		c.DataDir = dir
		c.Store.ChangeLog.MaxRows = 5
		c.Store.ChangeLog.MaxReplay = 3
	}
	base, stop := start(t, cfgOf, Options{})
	api := base + "/api/resources/things/"
	pk := restWrite(t, "POST", api, `{"name": "x"}`)["pk"]
	item := fmt.Sprintf("%s%v/", api, pk)
	w := dialRecorder(t, base, "")
	since, _ := position(t, w.subscribe("things", pk, "w", 0))

	// max_replay 3: three missed changes are replayed, four are not.
	for i := 1; i <= 3; i++ {
		restWrite(t, "PATCH", item, fmt.Sprintf(`{"counter": %d}`, i))
	}
	w.waitFor("w", 4)
	c := dialRecorder(t, base, "")
	if _, recovered := position(t, c.subscribe("things", pk, "three", since)); !recovered {
		t.Fatal("3 missed changes with max_replay 3: not recovered")
	}
	restWrite(t, "PATCH", item, `{"counter": 4}`)
	w.waitFor("w", 5)
	if _, recovered := position(t, c.subscribe("things", pk, "four", since)); recovered {
		t.Fatal("4 missed changes with max_replay 3: recovered")
	}
	for i := 5; i <= 12; i++ {
		restWrite(t, "PATCH", item, fmt.Sprintf(`{"counter": %d}`, i))
	}
	last := w.waitFor("w", 13)[12].seq()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Restarted: the trimmer's first pass keeps the 5 newest changes.
	base, _ = start(t, cfgOf, Options{})
	r := dialRecorder(t, base, "")
	eventually(t, 10*time.Second, func() error {
		rid := fmt.Sprint("probe", time.Now().UnixNano())
		if _, recovered := position(t, r.subscribe("things", pk, rid, last-6)); recovered {
			return errors.New("not trimmed yet")
		}
		return nil
	})
	now, recovered := position(t, r.subscribe("things", pk, "old", since))
	got := r.waitFor("old", 2)
	if recovered || now != last || got[1].payload["data"].(map[string]any)["counter"] != 12.0 {
		t.Fatalf("since beyond the retention: recovered %v at %d:\n%s", recovered, now, raws(got))
	}
	if _, recovered := position(t, r.subscribe("things", pk, "kept", last-2)); !recovered {
		t.Fatal("since within the retention: not recovered")
	}
}

// "The last 20 messages" is one call: history with reverse on /live and
// on the server API answers newest first; with since it pages backwards.
func TestHistoryReverse(t *testing.T) {
	base, _ := start(t, authConfig(true), Options{})
	for i := 1; i <= 30; i++ {
		if status, out := callAPI(t, base, testAPIKey, "publish", map[string]any{"channel": "chat:log", "data": i}); status != 200 {
			t.Fatalf("publish %d: %v", i, out)
		}
	}
	offsets := func(pubs any) []int {
		var out []int
		for _, p := range pubs.([]any) {
			out = append(out, int(p.(map[string]any)["offset"].(float64)))
		}
		return out
	}
	status, out := callAPI(t, base, testAPIKey, "history", map[string]any{"channel": "chat:log", "limit": 3, "reverse": true})
	if status != 200 || fmt.Sprint(offsets(out["publications"])) != "[30 29 28]" || out["offset"] != 30.0 {
		t.Fatalf("server API latest 3: %d %v", status, out)
	}
	epoch := out["epoch"]
	status, out = callAPI(t, base, testAPIKey, "history", map[string]any{"channel": "chat:log", "limit": 3, "reverse": true, "since": map[string]any{"offset": 28, "epoch": epoch}})
	if status != 200 || fmt.Sprint(offsets(out["publications"])) != "[27 26 25]" {
		t.Fatalf("server API page before 28: %d %v", status, out)
	}
	status, out = callAPI(t, base, testAPIKey, "history", map[string]any{"channel": "chat:log", "limit": 2})
	if status != 200 || fmt.Sprint(offsets(out["publications"])) != "[1 2]" {
		t.Fatalf("server API oldest first by default: %d %v", status, out)
	}
	if status, out = callAPI(t, base, testAPIKey, "history", map[string]any{"channel": "chat:log", "reverse": "yes"}); status != 400 {
		t.Fatalf("reverse not a bool: %d %v", status, out)
	}

	c := newLiveClient(t, base)
	d := c.ok("history", map[string]any{"channel": "chat:log", "limit": 20, "reverse": true})
	got := offsets(d["publications"])
	if len(got) != 20 || got[0] != 30 || got[19] != 11 {
		t.Fatalf("/live latest 20: %v", got)
	}
	d = c.ok("history", map[string]any{"channel": "chat:log", "limit": 20, "reverse": true, "since": map[string]any{"offset": 11, "epoch": epoch}})
	if got := offsets(d["publications"]); len(got) != 10 || got[0] != 10 || got[9] != 1 {
		t.Fatalf("/live before 11: %v", got)
	}
}

// channels and info take no body and change nothing: GET works as POST
// does; the other methods stay POST only.
func TestServerAPIReadOnlyMethodsAnswerGet(t *testing.T) {
	base, _ := start(t, authConfig(true), Options{})
	get := func(method, key string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest("GET", base+"/api/server/"+method, nil)
		if key != "" {
			req.Header.Set("Authorization", "apikey "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header, out
	}
	if status, _, out := get("info", testAPIKey); status != 200 || out["version"] == nil || out["connections"] != 0.0 {
		t.Fatalf("GET info: %d %v", status, out)
	}
	if status, _, out := get("channels", testAPIKey); status != 200 || out["channels"] == nil {
		t.Fatalf("GET channels: %d %v", status, out)
	}
	if status, _, out := get("info", ""); status != 401 {
		t.Fatalf("GET info without a key: %d %v", status, out)
	}
	if status, hdr, out := get("publish", testAPIKey); status != 405 || hdr.Get("Allow") != "POST" {
		t.Fatalf("GET publish: %d %v %v", status, hdr, out)
	}
}
