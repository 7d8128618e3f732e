package server

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/protocol/binding"
	"github.com/switchyardhq/switchyard/signal"
)

// Custom events (<stream>.<name>) with no Go handler go to the signal of
// the same name: its access rules and argument schema apply, a sync
// handler's truthy result is reflected as {event, data}, a queued one's
// handler triggers back to the window as {event: signal, data: kwargs};
// an event with neither is "No binding found".
func TestBindingCustomEventsAreSignals(t *testing.T) {
	register := func(s *signal.Service) error {
		hello := func(ctx context.Context, c *signal.Call) (any, error) {
			var a struct{ Name string }
			json.Unmarshal(c.Kwargs, &a)
			return map[string]string{"hi": a.Name}, nil
		}
		if err := s.Register("app.User.hello", hello, signal.Options{Allowed: "anyone", Sync: true,
			Args: []config.SignalArg{{Name: "name", Type: "string", Required: true}}}); err != nil {
			return err
		}
		if err := s.Register("app.User.nothing", func(ctx context.Context, c *signal.Call) (any, error) { return nil, nil },
			signal.Options{Allowed: "anyone", Sync: true, ExtraArgs: "accept"}); err != nil {
			return err
		}
		if err := s.Register("app.User.staff", hello, signal.Options{Allowed: "authenticated", Sync: true, ExtraArgs: "accept"}); err != nil {
			return err
		}
		return s.Register("app.User.ping", func(ctx context.Context, c *signal.Call) (any, error) {
			_, err := c.Trigger(ctx, signal.Trigger{Signal: "app.User.pong", Kwargs: json.RawMessage(`{"n":1}`), To: signal.Target{Windows: []string{c.Window.ClientID}}})
			return nil, err
		}, signal.Options{Allowed: "anyone", ExtraArgs: "accept"})
	}
	_, base := startWith(t, bindingConfig, Options{Signals: register})
	anon := newBinding(t, base, "")
	anon.send("app.User.hello#u1", map[string]any{"name": "Ann"})
	jsonEq(t, anon.next(), `{"event": "app.User.hello#u1", "data": {"hi": "Ann"}}`)
	anon.send("app.User.nothing", map[string]any{})
	anon.quiet() // a falsy result is not reflected
	anon.send("app.User.staff#2", map[string]any{})
	jsonEq(t, anon.next(), `{"event": "app.User.staff#2", "error": "No permision for app.User.staff#2"}`)
	anon.send("app.User.hello#3", map[string]any{})
	if m, _ := anon.next().(map[string]any); m["event"] != "app.User.hello#3" || m["error"] == nil {
		t.Fatalf("a missing argument: %v", m)
	}
	anon.send("app.User.ping", map[string]any{})
	jsonEq(t, anon.next(), `{"event": "app.User.pong", "data": {"n": 1}}`)
	anon.send("app.User.unknown", map[string]any{})
	jsonEq(t, anon.next(), `{"event": "app.User.unknown", "error": "No binding found for app.User.unknown"}`)

	alice := newBinding(t, base, "?token="+token(t, "alice", time.Hour, nil))
	alice.send("app.User.staff", map[string]any{"name": "Al"})
	jsonEq(t, alice.next(), `{"event": "app.User.staff", "data": {"hi": "Al"}}`)
	// A trigger to a user reaches their binding sockets too.
	code, res := callAPI(t, base, testAPIKey, "trigger", map[string]any{"signal": "app.notify", "to": map[string]any{"users": []string{"alice"}}, "kwargs": map[string]any{"x": 2}})
	if code != 200 || res["delivered"] != 1.0 {
		t.Fatalf("trigger: %d %v", code, res)
	}
	jsonEq(t, alice.next(), `{"event": "app.notify", "data": {"x": 2}}`)
	anon.quiet()
}

// Login and logout helpers push the session cookie's key, as
// channels-binding's request.login() / logout() do (spec A, item 18).
func TestBindingSessionPush(t *testing.T) {
	events := map[string]binding.Custom{
		"app.User.login": {Handle: func(ctx context.Context, r *binding.Request) (json.RawMessage, error) {
			r.Login("s3ss10nk3y")
			return nil, nil
		}},
		"app.User.logout": {Handle: func(ctx context.Context, r *binding.Request) (json.RawMessage, error) {
			r.Logout()
			return nil, nil
		}},
	}
	_, base := startWith(t, bindingConfig, Options{BindingEvents: events})
	b := newBinding(t, base, "")
	b.send("app.User.login", map[string]any{"username": "ann", "password": "x"})
	jsonEq(t, b.next(), `{"event": "sessionid", "data": "s3ss10nk3y"}`)
	b.send("app.User.logout", map[string]any{})
	jsonEq(t, b.next(), `{"event": "sessionid", "data": null}`)
	b.quiet()
}

// binding_send reaches one connection by its client id (the id the
// connect proxy and webhooks carry): a login view pushes the session key
// to the socket that logged in, and to no other.
func TestBindingSendToOneConnection(t *testing.T) {
	app := newCookieApp(t)
	app.set("s-alice", `{"user": 42}`)
	app.set("s-bob", `{"user": 43}`)
	_, base := startWith(t, proxyConfig(app), Options{})
	a, status, body := dialBinding(t, base, "", cookie("s-alice"))
	if a == nil {
		t.Fatalf("dial: %d %s", status, body)
	}
	call, _, _ := app.lastCall()
	cid, _ := call["client_id"].(string)
	bob, status, body := dialBinding(t, base, "", cookie("s-bob"))
	if bob == nil || cid == "" {
		t.Fatalf("dial: %d %s (client id %q)", status, body, cid)
	}
	// The socket joins its connection group once the server has opened it,
	// which may come a moment after the client sees the upgrade: send
	// again until it arrives (the group keeps no history).
	var got []byte
	for try := 0; got == nil; try++ {
		code, res := callAPI(t, base, testAPIKey, "binding_send", map[string]any{"event": "sessionid", "data": "k3y", "conn": cid})
		if code != 200 {
			t.Fatalf("binding_send: %d %v", code, res)
		}
		select {
		case got = <-a.frames:
		case <-time.After(time.Second):
			if try == 5 {
				t.Fatal("binding_send to the connection: no frame after 6 tries")
			}
		}
	}
	var frame any
	json.Unmarshal(got, &frame)
	jsonEq(t, frame, `{"event": "sessionid", "data": "k3y"}`)
	bob.quiet()
	a.quiet()
	if code, _ := callAPI(t, base, testAPIKey, "binding_send", map[string]any{"event": "x", "data": 1, "conn": cid, "all": true}); code != 400 {
		t.Fatalf("two targets: %d", code)
	}
}
