package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/signal"
)

// The connect proxy (auth.proxy) end to end: a small Go application that
// authenticates its users with a session cookie, as a Django site does,
// answers Switchyard's signed calls.

const proxySecret = "proxy-secret-0123456789"

// cookieApp is the application: sessionid cookie → its user.
type cookieApp struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	sessions map[string]string // sessionid → the JSON answer ("" refuses)
	calls    []map[string]any
	headers  []http.Header
	hold     chan struct{} // closed at the end; "slow" sessions wait on it
}

func newCookieApp(t *testing.T) *cookieApp {
	a := &cookieApp{t: t, sessions: map[string]string{}, hold: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() { close(a.hold); a.srv.Close() })
	return a
}

// serve is what docs/django.md's view does, in Go.
func (a *cookieApp) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if auth.VerifySignature([]byte(proxySecret), r.Header.Get(auth.SignatureHeader), body, time.Now(), 5*time.Minute) != nil {
		http.Error(w, `{"detail": "bad signature"}`, http.StatusBadRequest)
		return
	}
	var call map[string]any
	json.Unmarshal(body, &call)
	var answer string
	if ck, err := r.Cookie("sessionid"); err == nil {
		a.mu.Lock()
		answer = a.sessions[ck.Value]
		a.mu.Unlock()
	}
	a.mu.Lock()
	a.calls = append(a.calls, call)
	a.headers = append(a.headers, r.Header.Clone())
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch answer {
	case "":
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"detail": "Not logged in."}`)
	case "forbidden":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"detail": "This account is disabled."}`)
	case "slow":
		<-a.hold
	default:
		io.WriteString(w, answer)
	}
}

func (a *cookieApp) set(session, answer string) {
	a.mu.Lock()
	a.sessions[session] = answer
	a.mu.Unlock()
}

func (a *cookieApp) lastCall() (map[string]any, http.Header, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) == 0 {
		return nil, nil, 0
	}
	return a.calls[len(a.calls)-1], a.headers[len(a.headers)-1], len(a.calls)
}

func proxyConfig(app *cookieApp) func(*config.Config) {
	return func(c *config.Config) {
		bindingConfig(c)
		c.Auth.Anonymous = false
		c.Auth.Proxy.URL = app.srv.URL + "/switchyard/connect"
		c.Auth.Proxy.Secret = proxySecret
		c.Auth.Proxy.Timeout = config.Duration(300 * time.Millisecond)
		c.Auth.Proxy.RefreshBefore = config.Duration(time.Second)
	}
}

func cookie(s string) http.Header {
	return http.Header{"Cookie": {"csrftoken=x; sessionid=" + s}}
}

func TestProxyOnLive(t *testing.T) {
	app := newCookieApp(t)
	app.set("s-alice", `{"user": 42, "info": {"name": "Alice"}, "channels": ["news"], "expire_at": null}`)
	app.set("s-banned", "forbidden")
	app.set("s-slow", "slow")
	_, base := startWith(t, proxyConfig(app), Options{})

	c, status, body := dialStatus(t, base, "", cookie("s-alice"))
	if c == nil {
		t.Fatalf("a logged-in session: %d %s", status, body)
	}
	var hello struct {
		Payload struct {
			Action   string `json:"action"`
			User     string `json:"user"`
			ClientID string `json:"client_id"`
		} `json:"payload"`
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.ReadJSON(&hello); err != nil || hello.Payload.Action != "connected" || hello.Payload.User != "42" {
		t.Fatalf("first frame %+v %v (want the application's user 42)", hello, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	call, hdr, _ := app.lastCall()
	// The application's channels are joined at connect, announced as
	// "subscribed".
	_, data, err := c.ReadMessage()
	if err != nil || !strings.Contains(string(data), `"subscribed"`) || !strings.Contains(string(data), `"news"`) {
		t.Fatalf("the application's channel: %s %v", data, err)
	}
	if call["client_id"] != hello.Payload.ClientID || call["protocol"] != "live" || call["transport"] != "websocket" ||
		call["path"] != "/live" || call["user_agent"] != "Go-http-client/1.1" || !strings.HasPrefix(fmt.Sprint(call["remote_addr"]), "127.0.0.1:") || call["refresh"] != false {
		t.Errorf("the call's body: %v (client %s)", call, hello.Payload.ClientID)
	}
	if hdr.Get("Cookie") != "csrftoken=x; sessionid=s-alice" {
		t.Errorf("the cookie was not forwarded: %v", hdr)
	}

	// Refusals keep the application's status and message.
	if _, status, body := dialStatus(t, base, "", nil); status != 401 || !strings.Contains(body, "Not logged in.") {
		t.Errorf("no session: %d %s", status, body)
	}
	if _, status, body := dialStatus(t, base, "", cookie("s-banned")); status != 403 || !strings.Contains(body, "This account is disabled.") {
		t.Errorf("a disabled account: %d %s", status, body)
	}
	// An application that does not answer: 503 at the timeout, never hung.
	began := time.Now()
	if _, status, body := dialStatus(t, base, "", cookie("s-slow")); status != 503 || !strings.Contains(body, "unavailable") {
		t.Errorf("a slow application: %d %s", status, body)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("refusing took %v with a 300ms timeout", d)
	}
}

// A valid token decides without asking the application.
func TestProxyNotAskedWithAToken(t *testing.T) {
	app := newCookieApp(t)
	_, base := startWith(t, proxyConfig(app), Options{})
	lc := newLiveClientWith(t, base, token(t, "bob", time.Hour, nil))
	if p := lc.request("$channels", "subscribe", map[string]any{"channel": "room"}); p["response_status"] != 200.0 {
		t.Fatalf("subscribe: %v", p)
	}
	b := newBinding(t, base, "?token="+token(t, "bob", time.Hour, nil))
	b.quiet()
	if _, _, n := app.lastCall(); n != 0 {
		t.Fatalf("the application was asked %d times", n)
	}
}

func TestProxyOnBinding(t *testing.T) {
	app := newCookieApp(t)
	app.set("s-alice", `{"user": "42", "channels": ["room"]}`)
	app.set("s-anon", `{"user": null}`)
	_, base := startWith(t, func(c *config.Config) { proxyConfig(app)(c); c.Auth.Anonymous = true; c.Binding.Anonymous = false }, Options{})
	b, status, body := dialBinding(t, base, "", cookie("s-alice"))
	if b == nil {
		t.Fatalf("dial: %d %s", status, body)
	}
	call, _, _ := app.lastCall()
	if call["protocol"] != "binding" || call["path"] != "/live/binding" {
		t.Errorf("call %v", call)
	}
	// Its user's group and the application's channels (groups here).
	req := func(body string) {
		r, _ := http.NewRequest("POST", base+"/api/server/binding_send", strings.NewReader(body))
		r.Header.Set("Authorization", "apikey "+testAPIKey)
		resp, err := http.DefaultClient.Do(r)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("binding_send: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	req(`{"event": "hi", "data": 1, "user": 42}`)
	jsonEq(t, b.next(), `{"event": "hi", "data": 1}`)
	req(`{"event": "room.msg", "data": 2, "group": "room"}`)
	jsonEq(t, b.next(), `{"event": "room.msg", "data": 2}`)
	// The application vouches for an anonymous visitor, whom
	// binding.anonymous: false refuses.
	if b, status, body := dialBinding(t, base, "", cookie("s-anon")); b != nil || status != 403 || !strings.Contains(body, "binding.anonymous") {
		t.Fatalf("anonymous: %d %s", status, body)
	}
	if b, status, body := dialBinding(t, base, "", nil); b != nil || status != 401 || !strings.Contains(body, "Not logged in.") {
		t.Fatalf("no session: %d %s", status, body)
	}
	// /live has no binding.anonymous: auth.anonymous (true here) lets the
	// application's anonymous visitor in.
	c, status, body := dialStatus(t, base, "", cookie("s-anon"))
	if c == nil {
		t.Fatalf("/live, anonymous answer: %d %s", status, body)
	}
}

// auth.anonymous false: an anonymous answer is refused like a connection
// without credentials.
func TestProxyAnonymousAnswerRefused(t *testing.T) {
	app := newCookieApp(t)
	app.set("s-anon", `{"user": null}`)
	_, base := startWith(t, proxyConfig(app), Options{})
	if c, status, body := dialStatus(t, base, "", cookie("s-anon")); c != nil || status != 401 || !strings.Contains(body, "authentication required") {
		t.Fatalf("/live: %d %s", status, body)
	}
	if b, status, body := dialBinding(t, base, "", cookie("s-anon")); b != nil || status != 401 {
		t.Fatalf("binding: %d %s", status, body)
	}
}

// expire_at: asked again before it; while the application answers, the
// connection lives past the first expiry; once it refuses, 4001.
func TestProxyExpiry(t *testing.T) {
	app := newCookieApp(t)
	answer := func() string {
		return fmt.Sprintf(`{"user": "42", "expire_at": %.3f}`, float64(time.Now().Add(1500*time.Millisecond).UnixMilli())/1000)
	}
	app.set("s-alice", answer())
	_, base := startWith(t, proxyConfig(app), Options{})
	b, status, body := dialBinding(t, base, "", cookie("s-alice"))
	if b == nil {
		t.Fatalf("dial: %d %s", status, body)
	}
	firstExpiry := time.Now().Add(1500 * time.Millisecond)
	eventually(t, 10*time.Second, func() error {
		app.set("s-alice", answer()) // the session goes on
		call, _, n := app.lastCall()
		if n < 3 || call["refresh"] != true || time.Now().Before(firstExpiry.Add(200*time.Millisecond)) {
			return fmt.Errorf("%d calls, last %v", n, call)
		}
		return nil
	})
	b.quiet() // alive past its first expiry
	app.set("s-alice", "")
	if code := b.closed(); code != 4001 {
		t.Fatalf("close code %d, want 4001", code)
	}

	// /live too: the same rule.
	app.set("s-bob", answer())
	c, status, body := dialStatus(t, base, "", cookie("s-bob"))
	if c == nil {
		t.Fatalf("dial /live: %d %s", status, body)
	}
	app.set("s-bob", "")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4001 {
				t.Fatalf("/live: %v, want close 4001", err)
			}
			break
		}
	}
}

// The application's answer carries what a token would: topics put the
// connection's signal window in them, and the other keys are claims for
// signal access rules (claim:<name>).
func TestProxyTopicsAndClaimsReachSignals(t *testing.T) {
	app := newCookieApp(t)
	app.set("s-staff", `{"user": "42", "topics": ["room1"], "is_staff": true}`)
	app.set("s-user", `{"user": "43"}`)
	register := func(s *signal.Service) error {
		return s.Register("staff.only", func(ctx context.Context, c *signal.Call) (any, error) {
			return map[string]bool{"ok": true}, nil
		}, signal.Options{Allowed: "claim:is_staff", Sync: true})
	}
	_, base := startWith(t, proxyConfig(app), Options{Signals: register})
	dial := func(session string) *liveClient {
		t.Helper()
		c, status, body := dialStatus(t, base, "", cookie(session))
		if c == nil {
			t.Fatalf("dial %s: %d %s", session, status, body)
		}
		lc := &liveClient{t: t, c: c, cond: make(chan struct{}, 1)}
		go lc.readLoop()
		hello := lc.waitFor(func(m map[string]any) bool { return m["stream"] == "$session" })
		lc.id = hello["payload"].(map[string]any)["client_id"].(string)
		return lc
	}
	staff, user := dial("s-staff"), dial("s-user")
	code, res := callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "room.news", "to": map[string]any{"topics": []string{"room1"}}})
	if code != 200 || res["delivered"] != 1.0 {
		t.Fatalf("trigger to the topic: %d %v", code, res)
	}
	staff.signalPush("room.news")
	user.noSignal()
	if p := staff.request("$signals", "call", map[string]any{"signal": "staff.only"}); p["response_status"] != 200.0 {
		t.Fatalf("a claim the application answered: %v", p)
	}
	if p := user.request("$signals", "call", map[string]any{"signal": "staff.only"}); p["response_status"] != 403.0 {
		t.Fatalf("without the claim: %v", p)
	}
}

// The df_websockets wire asks the application too: a Django session
// cookie is all a page needs; without one the upgrade is refused with the
// application's answer, and the user it vouched for receives triggers to
// that user (and others do not).
func TestProxyOnDFWebsockets(t *testing.T) {
	app := newCookieApp(t)
	app.set("s-alice", `{"user": 42}`)
	app.set("s-bob", `{"user": 43}`)
	_, base := startWith(t, proxyConfig(app), Options{})
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws/"
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("no session: %v %v", err, resp)
	}
	alice := dialDFWS(t, base, "", cookie("s-alice"))
	alice.quiet()
	call, _, _ := app.lastCall()
	if call["protocol"] != "df_websockets" || call["path"] != "/ws/" {
		t.Errorf("the call's body: %v", call)
	}
	bob := dialDFWS(t, base, "", cookie("s-bob"))
	bob.quiet()
	code, res := callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "hello", "to": map[string]any{"users": []string{"42"}}, "kwargs": map[string]any{"n": 1}})
	if code != 200 || res["delivered"] != 1.0 {
		t.Fatalf("trigger to user 42: %d %v", code, res)
	}
	alice.push("hello", map[string]any{"n": 1.0})
	bob.quiet() // a heartbeat answered, and nothing before it
}
