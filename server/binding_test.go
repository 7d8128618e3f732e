package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/protocol/binding"
	"github.com/switchyardhq/switchyard/resource"
)

// The channels-binding wire (specs/bindings-signals.md §A): every frame of
// the conformance section, compared as parsed JSON, against a real server.
// Setup as the spec's: a binding for app.User, 102 users, the admin last
// (its pk stands in for the spec's 5763; the spec's 42 is user 42).

// startWith is start with the server itself and its options.
func startWith(t *testing.T, mutate func(*config.Config), o Options) (*Server, string) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	o.Logger = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	base := "http://" + srv.Addr().String()
	eventually(t, 5*time.Second, func() error {
		if code, _ := get(t, base+"/healthz"); code != 200 {
			return fmt.Errorf("healthz %d", code)
		}
		return nil
	})
	return srv, base
}

func bindingConfig(c *config.Config) {
	c.Auth.JWT.HMACSecret = testSecret
	c.APIKeys = []config.Secret{testAPIKey}
	anyone := config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"}
	maxLen := 150
	c.Resources = []config.Resource{
		{Name: "users", PKField: "id", PageSize: 25, Ordering: []string{"id"}, Permissions: anyone,
			Fields: []config.Field{
				{Name: "username", Type: config.FieldString, Required: true, MaxLength: &maxLen},
				{Name: "email", Type: config.FieldString, Default: ""},
			},
			Binding: &config.ResourceBinding{Stream: "app.User"}},
		// has_permission → False: nobody may read.
		{Name: "secrets", PKField: "id", PageSize: 25, Fields: []config.Field{{Name: "text", Type: config.FieldString}},
			Permissions: config.ResourcePermissions{Read: "none", Create: "none", Update: "none", Delete: "none"},
			Binding:     &config.ResourceBinding{Stream: "app.Secret"}},
		// Per-user records: a connection hears only of its user's.
		{Name: "notes", PKField: "pk", PageSize: 25, Fields: []config.Field{{Name: "text", Type: config.FieldString}, {Name: "owner", Type: config.FieldString}},
			Permissions: config.ResourcePermissions{Read: "owner:owner", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"},
			Binding:     &config.ResourceBinding{Stream: "app.Note"}},
	}
}

// seedUsers creates users 1..101 ("user1"…) and the admin (102).
func seedUsers(t *testing.T, srv *Server) int64 {
	t.Helper()
	ctx := context.Background()
	var admin int64
	for i := 1; i <= 102; i++ {
		body := fmt.Sprintf(`{"username": "user%d", "email": "user%d@example.com"}`, i, i)
		if i == 102 {
			body = `{"username": "Admin", "email": "admin@admin.com"}`
		}
		out, err := srv.Resources().Create(ctx, "users", resource.AsServer(), json.RawMessage(body))
		if err != nil {
			t.Fatal(err)
		}
		var rec struct{ ID int64 }
		json.Unmarshal(out, &rec)
		if rec.ID != int64(i) {
			t.Fatalf("user %d got pk %d", i, rec.ID)
		}
		admin = rec.ID
	}
	return admin
}

// bclient is a channels-binding connection.
type bclient struct {
	t      *testing.T
	c      *websocket.Conn
	frames chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

func bindingURL(base, query string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/live/binding" + query
}

// dialBinding connects, or returns the refused handshake's status and body.
func dialBinding(t *testing.T, base, query string, hdr http.Header) (*bclient, int, string) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(bindingURL(base, query), hdr)
	if err != nil {
		if resp == nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(body)
	}
	b := &bclient{t: t, c: c, frames: make(chan []byte, 1000), done: make(chan struct{})}
	t.Cleanup(func() { c.Close() })
	go func() {
		defer close(b.done)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				b.mu.Lock()
				b.err = err
				b.mu.Unlock()
				return
			}
			b.frames <- data
		}
	}()
	return b, 101, ""
}

func newBinding(t *testing.T, base string, query string) *bclient {
	t.Helper()
	b, status, body := dialBinding(t, base, query, nil)
	if b == nil {
		t.Fatalf("dial %s: %d %s", query, status, body)
	}
	return b
}

func (b *bclient) send(event string, data any) {
	b.t.Helper()
	frame, _ := json.Marshal(map[string]any{"event": event, "data": data})
	b.sendRaw(string(frame))
}

func (b *bclient) sendRaw(s string) {
	b.t.Helper()
	if err := b.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		b.t.Fatal(err)
	}
}

// next returns the next frame as parsed JSON.
func (b *bclient) next() any {
	b.t.Helper()
	select {
	case f := <-b.frames:
		var v any
		if err := json.Unmarshal(f, &v); err != nil {
			b.t.Fatalf("a frame that is not JSON: %q", f)
		}
		return v
	case <-b.done:
		b.mu.Lock()
		defer b.mu.Unlock()
		b.t.Fatalf("the socket closed: %v", b.err)
	case <-time.After(5 * time.Second):
		b.t.Fatal("no frame within 5s")
	}
	return nil
}

// nextN returns the next n frames, sorted by event (a reply and the push
// its write causes may come in either order: the original answers
// concurrently, and the JS client routes by event).
func (b *bclient) nextN(n int) []any {
	b.t.Helper()
	out := make([]any, n)
	for i := range out {
		out[i] = b.next()
	}
	event := func(v any) string { m, _ := v.(map[string]any); s, _ := m["event"].(string); return s }
	sort.SliceStable(out, func(i, j int) bool { return event(out[i]) < event(out[j]) })
	return out
}

// quiet proves nothing is queued for the socket: a probe request's reply
// is the next frame (every frame of a connection leaves in order).
func (b *bclient) quiet() {
	b.t.Helper()
	b.send("app.Nope.probe", map[string]any{})
	got := b.next()
	want := map[string]any{"event": "app.Nope.probe", "error": "No binding found for app.Nope.probe"}
	if !reflect.DeepEqual(got, want) {
		b.t.Fatalf("expected nothing before the probe's reply, got %v", got)
	}
}

// closed waits for the socket to close and returns the close code.
func (b *bclient) closed() int {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.t.Fatal("the socket did not close")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var ce *websocket.CloseError
	if errors.As(b.err, &ce) {
		return ce.Code
	}
	return -1
}

// jsonEq compares a parsed frame with the JSON text of the expected one.
func jsonEq(t *testing.T, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	if !reflect.DeepEqual(got, w) {
		g, _ := json.Marshal(got)
		t.Errorf("frame mismatch\n got: %s\nwant: %s", g, want)
	}
}

func userJSON(i int) string {
	if i == 102 {
		return `{"id": 102, "username": "Admin", "email": "admin@admin.com"}`
	}
	return fmt.Sprintf(`{"id": %d, "username": "user%d", "email": "user%d@example.com"}`, i, i, i)
}

func usersJSON(from, to int) string {
	parts := []string{}
	for i := from; i <= to; i++ {
		parts = append(parts, userJSON(i))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestBindingConformance(t *testing.T) {
	srv, base := startWith(t, bindingConfig, Options{BindingEvents: map[string]binding.Custom{
		"simple_reflexion.ping": {Stream: "simple_reflexion", Handle: func(ctx context.Context, r *binding.Request) (json.RawMessage, error) {
			return json.Marshal(map[string]any{"pong": true, "time": float64(time.Now().UnixMilli()) / 1000, "message": "Hi"})
		}},
		// request.reflect / dispatch / broadcast from a handler; no result.
		"chat.Room.say": {Stream: "chat.Room", Handle: func(ctx context.Context, r *binding.Request) (json.RawMessage, error) {
			r.Reflect("chat.Room.said", json.RawMessage(`{"ok": true}`))
			if err := r.Dispatch(ctx, "chat.Room", "chat.Room.message", r.Data); err != nil {
				return nil, err
			}
			return nil, r.Broadcast(ctx, "", json.RawMessage(`"everyone"`))
		}},
		"chat.Room.secret": {Stream: "chat.Room", Allowed: func(r *binding.Request) bool { return r.User != "" }, Handle: func(ctx context.Context, r *binding.Request) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil // falsy: not reflected
		}},
	}})
	admin := seedUsers(t, srv)
	if admin != 102 {
		t.Fatalf("admin pk %d", admin)
	}
	a := newBinding(t, base, "")

	a.send("app.User.retrieve#102", map[string]any{})
	jsonEq(t, a.next(), `{"event": "app.User.retrieve#102", "data": `+userJSON(102)+`}`)

	a.send("app.User.retrieve", map[string]any{"id": 102})
	jsonEq(t, a.next(), `{"event": "app.User.retrieve", "data": `+userJSON(102)+`}`)

	a.send("app.User.retrieve", map[string]any{"id": []int{1, 2}})
	jsonEq(t, a.next(), `{"event": "app.User.retrieve", "data": `+usersJSON(1, 2)+`}`)

	// The #uid wins over data.id.
	a.send("app.User.retrieve#3", map[string]any{"id": 4})
	jsonEq(t, a.next(), `{"event": "app.User.retrieve#3", "data": `+userJSON(3)+`}`)

	a.send("app.User.search#listA", map[string]any{"page": 2})
	jsonEq(t, a.next(), `{"event": "app.User.search#listA", "data": {"page": 2, "limit": 25, "count": 102, "order": null, "rows": `+usersJSON(26, 50)+`}}`)

	a.send("app.User.search", map[string]any{"page": 1, "limit": 5})
	jsonEq(t, a.next(), `{"event": "app.User.search", "data": {"page": 1, "limit": 10, "count": 102, "order": null, "rows": `+usersJSON(1, 10)+`}}`)

	a.send("app.User.search", map[string]any{"page": "x", "limit": 1000})
	jsonEq(t, a.next(), `{"event": "app.User.search", "data": {"page": 1, "limit": 100, "count": 102, "order": null, "rows": `+usersJSON(1, 100)+`}}`)

	a.send("app.User.search", map[string]any{"page": 99})
	jsonEq(t, a.next(), `{"event": "app.User.search", "data": {"page": 5, "limit": 25, "count": 102, "order": null, "rows": `+usersJSON(101, 102)+`}}`)

	a.send("app.Nope.retrieve", map[string]any{})
	jsonEq(t, a.next(), `{"event": "app.Nope.retrieve", "error": "No binding found for app.Nope.retrieve"}`)

	a.sendRaw(`{"data":{}}`)
	jsonEq(t, a.next(), `{"event": "error", "error": "No binding found for error"}`)

	a.send("app.User.retrieve#999999", map[string]any{})
	f := a.next().(map[string]any)
	if len(f) != 2 || f["event"] != "app.User.retrieve#999999" || !strings.Contains(f["error"].(string), "Does Not Exist") {
		t.Errorf("missing record: %v (want exactly {event, error}, error containing 'Does Not Exist')", f)
	}

	a.send("app.Secret.retrieve#1", map[string]any{})
	jsonEq(t, a.next(), `{"event": "app.Secret.retrieve#1", "error": "No permision for app.Secret.retrieve#1"}`)

	fields := func(username, email string) string {
		return fmt.Sprintf(`[{"name": "username", "label": "Username", "type": "CharField", "value": %q}, {"name": "email", "label": "Email", "type": "CharField", "value": %q}]`, username, email)
	}
	a.send("app.User.form#102", map[string]any{})
	jsonEq(t, a.next(), `{"event": "app.User.form#102", "data": {"errors": null, "success": null, "object": `+userJSON(102)+`, "fields": `+fields("Admin", "admin@admin.com")+`, "id": 102}}`)

	// A second socket B made a request on app.User; C did not.
	b := newBinding(t, base, "")
	b.send("app.User.retrieve#1", map[string]any{})
	jsonEq(t, b.next(), `{"event": "app.User.retrieve#1", "data": `+userJSON(1)+`}`)
	c := newBinding(t, base, "")

	a.send("app.User.form#102", map[string]any{"submit": map[string]any{"username": "Changed"}})
	changed := `{"id": 102, "username": "Changed", "email": "admin@admin.com"}`
	got := a.nextN(2)
	jsonEq(t, got[0], `{"event": "app.User.form#102", "data": {"errors": null, "success": true, "object": `+changed+`, "fields": `+fields("Changed", "admin@admin.com")+`, "id": 102}}`)
	jsonEq(t, got[1], `{"event": "app.User.updated#102", "data": true}`)
	jsonEq(t, b.next(), `{"event": "app.User.updated#102", "data": true}`)

	// The server deletes user 42: B hears, C does not.
	if err := srv.Resources().Delete(context.Background(), "users", resource.AsServer(), 42); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, b.next(), `{"event": "app.User.deleted#42", "data": true}`)
	jsonEq(t, a.next(), `{"event": "app.User.deleted#42", "data": true}`)
	c.quiet()

	// delete and save with the recommended compat replies.
	a.send("app.User.delete#41", map[string]any{})
	got = a.nextN(2)
	jsonEq(t, got[0], `{"event": "app.User.delete#41", "data": {"success": true, "id": 41}}`)
	jsonEq(t, got[1], `{"event": "app.User.deleted#41", "data": true}`)
	jsonEq(t, b.next(), `{"event": "app.User.deleted#41", "data": true}`)

	a.send("app.User.save", map[string]any{"id": 102, "username": "Changed again"})
	got = a.nextN(2)
	jsonEq(t, got[0], `{"event": "app.User.save", "data": {"success": true, "id": 102}}`)
	jsonEq(t, got[1], `{"event": "app.User.updated#102", "data": true}`)
	jsonEq(t, b.next(), `{"event": "app.User.updated#102", "data": true}`)
	a.send("app.User.save", map[string]any{"id": 102, "username": ""})
	jsonEq(t, a.next(), `{"event": "app.User.save", "data": {"errors": {"username": ["This field may not be blank."]}}}`)

	// The custom event: the handler's result reflected.
	a.send("simple_reflexion.ping", map[string]any{})
	f = a.next().(map[string]any)
	d, _ := f["data"].(map[string]any)
	if f["event"] != "simple_reflexion.ping" || d["pong"] != true || d["message"] != "Hi" || d["time"] == nil {
		t.Errorf("custom event: %v", f)
	}
	if _, ok := d["time"].(float64); !ok {
		t.Errorf("time must be a float: %v", d["time"])
	}

	// A handler's reflect, dispatch (to the stream's group, which the
	// request joined) and broadcast; C made no chat.Room request.
	a.send("chat.Room.say", map[string]any{"text": "hi"})
	got = a.nextN(3)
	jsonEq(t, got[0], `{"event": "chat.Room.message", "data": {"text": "hi"}}`)
	jsonEq(t, got[1], `{"event": "chat.Room.said", "data": {"ok": true}}`)
	jsonEq(t, got[2], `{"event": "chat.Room.say", "data": "everyone"}`)
	jsonEq(t, b.next(), `{"event": "chat.Room.say", "data": "everyone"}`)
	jsonEq(t, c.next(), `{"event": "chat.Room.say", "data": "everyone"}`)
	c.quiet()
	// has_permission false for an anonymous connection.
	a.send("chat.Room.secret#1", map[string]any{})
	jsonEq(t, a.next(), `{"event": "chat.Room.secret#1", "error": "No permision for chat.Room.secret#1"}`)
	alice := newBinding(t, base, "?token="+token(t, "alice", time.Hour, nil))
	alice.send("chat.Room.secret", map[string]any{})
	alice.quiet() // permitted, and a falsy result is not reflected

	// Invalid JSON: an error frame (documented; the JS client only logs
	// it), and the socket stays open.
	a.sendRaw("not json")
	jsonEq(t, a.next(), `{"event": "error", "error": "invalid frame: expected a JSON object {\"event\": \"<stream>.<action>\", \"data\": {...}}"}`)
	a.quiet()
	b.quiet()
	c.quiet()
}

// binding.anonymous false (ANONYMOUS_CONNECTION_ALLOWED = False): the
// handshake is refused with 403, no frames; a user gets in.
func TestBindingAnonymousRefused(t *testing.T) {
	_, base := startWith(t, func(c *config.Config) { bindingConfig(c); c.Binding.Anonymous = false }, Options{})
	if b, status, body := dialBinding(t, base, "", nil); b != nil || status != 403 || !strings.Contains(body, "binding.anonymous") {
		t.Fatalf("anonymous: %d %s", status, body)
	}
	b := newBinding(t, base, "?token="+token(t, "alice", time.Hour, nil))
	b.quiet()
	if code, body := get(t, base+"/live/binding"); code != 400 || !strings.Contains(body, "websocket_required") {
		t.Fatalf("plain GET: %d %s", code, body)
	}
}

// Who receives what: a change reaches a connection only for a record its
// user may read, as the resource service decides on every delivery.
func TestBindingPushesRespectReadPermissions(t *testing.T) {
	srv, base := startWith(t, bindingConfig, Options{})
	ctx := context.Background()
	svc := srv.Resources()
	alice := newBinding(t, base, "?token="+token(t, "alice", time.Hour, nil))
	bob := newBinding(t, base, "?token="+token(t, "bob", time.Hour, nil))
	anon := newBinding(t, base, "")
	other := newBinding(t, base, "?token="+token(t, "carol", time.Hour, nil)) // joins app.User only

	alice.send("app.Note.search", map[string]any{})
	jsonEq(t, alice.next(), `{"event": "app.Note.search", "data": {"page": 1, "limit": 25, "count": 0, "order": null, "rows": []}}`)
	bob.send("app.Note.search", map[string]any{})
	bob.next()
	// Anonymous may read no note: refused, and so never joined.
	anon.send("app.Note.search", map[string]any{})
	jsonEq(t, anon.next(), `{"event": "app.Note.search", "error": "No permision for app.Note.search"}`)
	other.send("app.User.search", map[string]any{})
	other.next()

	// alice creates a note (over the wire): only alice hears.
	alice.send("app.Note.save", map[string]any{"text": "mine", "owner": "bob"}) // owner is not hers to set: ignored
	got := alice.nextN(2)
	jsonEq(t, got[0], `{"event": "app.Note.save", "data": {"success": true, "id": 1}}`)
	jsonEq(t, got[1], `{"event": "app.Note.updated#1", "data": true}`)
	alice.send("app.Note.retrieve#1", map[string]any{})
	jsonEq(t, alice.next(), `{"event": "app.Note.retrieve#1", "data": {"id": 1, "pk": 1, "text": "mine", "owner": "alice"}}`)
	bob.quiet()
	anon.quiet()
	other.quiet()

	// bob cannot read, change or delete it: it does not exist for him.
	bob.send("app.Note.retrieve#1", map[string]any{})
	if f := bob.next().(map[string]any); !strings.Contains(fmt.Sprint(f["error"]), "Does Not Exist") {
		t.Errorf("bob retrieves alice's note: %v", f)
	}
	bob.send("app.Note.delete#1", map[string]any{})
	if f := bob.next().(map[string]any); !strings.Contains(fmt.Sprint(f["error"]), "Does Not Exist") {
		t.Errorf("bob deletes alice's note: %v", f)
	}
	bob.send("app.Note.save", map[string]any{"id": 1, "text": "bob's now"})
	if f := bob.next().(map[string]any); !strings.Contains(fmt.Sprint(f["error"]), "Does Not Exist") {
		t.Errorf("bob changes alice's note: %v", f)
	}
	alice.quiet()

	// The server gives the note to bob: alice is told it left (deleted),
	// bob that it is there now.
	if _, err := svc.Write(ctx, "notes", resource.AsServer(), 1, json.RawMessage(`{"owner": "bob"}`), resource.Patch); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, alice.next(), `{"event": "app.Note.deleted#1", "data": true}`)
	jsonEq(t, bob.next(), `{"event": "app.Note.updated#1", "data": true}`)
	// A change to bob's note: bob hears, alice not any more.
	if _, err := svc.Write(ctx, "notes", resource.AsServer(), 1, json.RawMessage(`{"text": "edited"}`), resource.Patch); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, bob.next(), `{"event": "app.Note.updated#1", "data": true}`)
	alice.quiet()
	// Deleted: bob only.
	if err := svc.Delete(ctx, "notes", resource.AsServer(), 1); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, bob.next(), `{"event": "app.Note.deleted#1", "data": true}`)
	alice.quiet()
	anon.quiet()
	other.quiet()

	// Search lists only what the user may read.
	if _, err := svc.Create(ctx, "notes", resource.As("alice"), json.RawMessage(`{"text": "a"}`)); err != nil {
		t.Fatal(err)
	}
	alice.next() // updated#2
	bob.send("app.Note.search", map[string]any{})
	jsonEq(t, bob.next(), `{"event": "app.Note.search", "data": {"page": 1, "limit": 25, "count": 0, "order": null, "rows": []}}`)
	anon.quiet()
	other.quiet()
}

// post_save / post_delete off: no pushes of that kind.
func TestBindingPushesOptOut(t *testing.T) {
	off := false
	srv, base := startWith(t, func(c *config.Config) {
		bindingConfig(c)
		c.Resources[0].Binding.PostSave = &off
	}, Options{})
	b := newBinding(t, base, "")
	b.send("app.User.search", map[string]any{})
	b.next()
	ctx := context.Background()
	out, err := srv.Resources().Create(ctx, "users", resource.AsServer(), json.RawMessage(`{"username": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	b.quiet()
	var rec struct{ ID int64 }
	json.Unmarshal(out, &rec)
	if err := srv.Resources().Delete(ctx, "users", resource.AsServer(), rec.ID); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, b.next(), fmt.Sprintf(`{"event": "app.User.deleted#%d", "data": true}`, rec.ID))
}

// Search: ordering (inverted by default, as channels-binding; Django's
// with the flag off), filters, and Django's get_page for odd pages.
func TestBindingSearch(t *testing.T) {
	for _, inverted := range []bool{true, false} {
		t.Run(fmt.Sprintf("inverted=%v", inverted), func(t *testing.T) {
			srv, base := startWith(t, func(c *config.Config) { bindingConfig(c); c.Binding.InvertedOrdering = inverted }, Options{})
			seedUsers(t, srv)
			b := newBinding(t, base, "")
			desc, asc := usersJSON(102, 102), usersJSON(1, 1)
			first := func() string {
				f := b.next().(map[string]any)
				rows, _ := f["data"].(map[string]any)["rows"].([]any)
				if len(rows) == 0 {
					t.Fatalf("no rows: %v", f)
				}
				out, _ := json.Marshal(rows[:1])
				return string(out)
			}
			b.send("app.User.search", map[string]any{"order": "-id"})
			want := asc // "-id" is ascending in channels-binding
			if !inverted {
				want = desc
			}
			jsonEq(t, jsonParse(first()), want)
			b.send("app.User.search", map[string]any{"order": "id"})
			want = desc
			if !inverted {
				want = asc
			}
			jsonEq(t, jsonParse(first()), want)
		})
	}
	srv, base := startWith(t, bindingConfig, Options{})
	seedUsers(t, srv)
	b := newBinding(t, base, "")
	// The order is echoed; a username order with the pk to break ties.
	b.send("app.User.search", map[string]any{"order": "-username", "limit": 10})
	f := b.next().(map[string]any)["data"].(map[string]any)
	if f["order"] != "-username" || f["rows"].([]any)[0].(map[string]any)["username"] != "Admin" {
		t.Errorf("order -username (ascending): %v", f["rows"].([]any)[0])
	}
	b.send("app.User.search", map[string]any{"filters": map[string]any{"username": "user7"}})
	jsonEq(t, b.next(), `{"event": "app.User.search", "data": {"page": 1, "limit": 25, "count": 1, "order": null, "rows": [`+userJSON(7)+`]}}`)
	// Page 0 and negative pages are the last page (Django's get_page);
	// "2" is 2; a page as a float is truncated.
	for _, c := range []struct {
		page any
		want int
	}{{0, 5}, {-3, 5}, {"2", 2}, {2.7, 2}, {nil, 1}, {true, 1}, {[]int{1}, 1}} {
		b.send("app.User.search", map[string]any{"page": c.page})
		d := b.next().(map[string]any)["data"].(map[string]any)
		if d["page"] != float64(c.want) {
			t.Errorf("page %v: served %v, want %d", c.page, d["page"], c.want)
		}
	}
	// limit: "" and 0 are the page size; "30" is 30.
	for _, c := range []struct {
		limit any
		want  int
	}{{"", 25}, {0, 25}, {"30", 30}, {true, 10}} {
		b.send("app.User.search", map[string]any{"limit": c.limit})
		d := b.next().(map[string]any)["data"].(map[string]any)
		if d["limit"] != float64(c.want) || len(d["rows"].([]any)) != c.want {
			t.Errorf("limit %v: %v rows %d, want %d", c.limit, d["limit"], len(d["rows"].([]any)), c.want)
		}
	}
	// An empty result is page 1 of 1.
	b.send("app.User.search", map[string]any{"page": 3, "filters": map[string]any{"username": "nobody"}})
	jsonEq(t, b.next(), `{"event": "app.User.search", "data": {"page": 1, "limit": 25, "count": 0, "order": null, "rows": []}}`)
}

func jsonParse(s string) any {
	var v any
	json.Unmarshal([]byte(s), &v)
	return v
}

// Bad input on the wire: each gets an error frame (the upstream behaviour
// or a documented, safer one), the socket stays open, others are not
// touched; a frame over the size limit closes only its own socket (1009).
func TestBindingBadInput(t *testing.T) {
	srv, base := startWith(t, func(c *config.Config) {
		bindingConfig(c)
		c.Limits.MaxMessageSize = 4096
		c.Limits.MaxOutgoingMessageSize = 4096
		c.Binding.MaxRetrieveIDs = 5
	}, Options{})
	seedUsers(t, srv)
	a := newBinding(t, base, "")
	bystander := newBinding(t, base, "")
	bystander.send("app.User.retrieve#1", map[string]any{})
	bystander.next()
	for _, c := range []struct{ frame, event, msg string }{
		{`[1, 2]`, "error", "invalid frame"},
		{`"app.User.retrieve"`, "error", "invalid frame"},
		{`{"event": 5, "data": {}}`, "error", "event must be a string"},
		{`{"event": null}`, "error", "event must be a string"},
		{`{"event": "app.User.list", "data": {}}`, "app.User.list", "No binding found for app.User.list"},
		{`{"event": "app.User.create", "data": {}}`, "app.User.create", "No binding found for app.User.create"},
		{`{"event": "app.User", "data": {}}`, "app.User", "No binding found for app.User"},
		{`{"event": "#1", "data": {}}`, "#1", "No binding found for #1"},
		{`{"event": "app.User.retrieve", "data": {"id": "abc"}}`, "app.User.retrieve", "ValueError: Field 'id' expected a number but got 'abc'."},
		{`{"event": "app.User.retrieve#abc", "data": {}}`, "app.User.retrieve#abc", "ValueError: Field 'id' expected a number but got 'abc'."},
		{`{"event": "app.User.retrieve", "data": {}}`, "app.User.retrieve", "DoesNotExist: app.User id:None Does Not Exist"},
		{`{"event": "app.User.retrieve", "data": [1, 2]}`, "app.User.retrieve", "AttributeError: 'list' object has no attribute 'get'"},
		{`{"event": "app.User.retrieve", "data": {"id": [1, 2, 3, 4, 5, 6]}}`, "app.User.retrieve", "at most 5 per retrieve (binding.max_retrieve_ids)"},
		{`{"event": "app.User.retrieve", "data": {"id": [1, 999]}}`, "app.User.retrieve", "DoesNotExist: app.User id:999 Does Not Exist"},
		{`{"event": "app.User.search", "data": {"limit": "abc"}}`, "app.User.search", "ValueError: invalid literal for int() with base 10: 'abc'"},
		{`{"event": "app.User.search", "data": {"limit": {"a": 1}}}`, "app.User.search", "TypeError: int() argument must be a string"},
		{`{"event": "app.User.search", "data": {"order": "nope"}}`, "app.User.search", `ValidationError: {"ordering":["Invalid ordering field \"nope\"."]}`},
		{`{"event": "app.User.search", "data": {"order": ["id"]}}`, "app.User.search", "AttributeError: 'list' object has no attribute 'replace'"},
		{`{"event": "app.User.search", "data": {"filters": {"username": ["a", "b"]}}}`, "app.User.search", "filters.username: a list of values is not supported"},
		{`{"event": "app.User.search", "data": {"filters": {"nope": 1}}}`, "app.User.search", `ValidationError: {"nope":["Unknown field to filter on."]}`},
		{`{"event": "app.User.search", "data": {"filters": "x"}}`, "app.User.search", "AttributeError: 'str' object has no attribute 'items'"},
		{`{"event": "app.User.form#1", "data": {"submit": "x"}}`, "app.User.form#1", "AttributeError: 'str' object has no attribute 'get'"},
		{`{"event": "app.User.delete", "data": {}}`, "app.User.delete", "DoesNotExist: app.User id:None Does Not Exist"},
		{`{"event": "app.User.delete#999", "data": {}}`, "app.User.delete#999", "DoesNotExist: app.User id:999 Does Not Exist"},
		{`{"event": "app.Secret.form", "data": {}}`, "app.Secret.form", "No permision for app.Secret.form"},
	} {
		a.sendRaw(c.frame)
		f, _ := a.next().(map[string]any)
		if len(f) != 2 || f["event"] != c.event || !strings.Contains(fmt.Sprint(f["error"]), c.msg) {
			t.Errorf("%s: got %v, want {event: %q, error: …%s…}", c.frame, f, c.event, c.msg)
		}
	}
	// Data that is neither an object nor an array is {}: the #uid works.
	a.sendRaw(`{"event": "app.User.retrieve#1", "data": "x"}`)
	jsonEq(t, a.next(), `{"event": "app.User.retrieve#1", "data": `+userJSON(1)+`}`)
	// Spaces around the event's parts are trimmed; the reply echoes the
	// event as received.
	a.sendRaw(`{"event": " app.User.retrieve # 2 ", "data": {}}`)
	jsonEq(t, a.next(), `{"event": " app.User.retrieve # 2 ", "data": `+userJSON(2)+`}`)
	// A reply over limits.max_outgoing_message_size: an error frame in its
	// place (100 users are about 6 KiB).
	a.send("app.User.search", map[string]any{"limit": 100})
	if f := a.next().(map[string]any); f["event"] != "app.User.search" || !strings.Contains(fmt.Sprint(f["error"]), "limits.max_outgoing_message_size") {
		t.Errorf("a reply over the limit: %v", f)
	}
	// Over the size limit: 1009 for that socket only.
	a.sendRaw(`{"event": "app.User.search", "data": {"x": "` + strings.Repeat("y", 5000) + `"}}`)
	if code := a.closed(); code != 1009 {
		t.Fatalf("over the limit: close %d, want 1009", code)
	}
	bystander.quiet()
}

// Rate limit: a frame over limits.messages_per_second gets an error frame
// naming the key; the socket stays open.
func TestBindingRateLimit(t *testing.T) {
	_, base := startWith(t, func(c *config.Config) { bindingConfig(c); c.Limits.MessagesPerSecond = 1 }, Options{})
	b := newBinding(t, base, "")
	for range 3 { // a burst of twice the rate passes
		b.send("app.User.search", map[string]any{})
	}
	b.next()
	b.next()
	f := b.next().(map[string]any)
	if f["event"] != "app.User.search" || !strings.Contains(fmt.Sprint(f["error"]), "limits.messages_per_second") {
		t.Fatalf("third frame: %v", f)
	}
}

// binding_send: channels-binding's utils.send through the server API.
func TestBindingSend(t *testing.T) {
	_, base := startWith(t, bindingConfig, Options{})
	alice := newBinding(t, base, "?token="+token(t, "alice", time.Hour, nil))
	alice2 := newBinding(t, base, "?token="+token(t, "alice", time.Hour, nil))
	bob := newBinding(t, base, "?token="+token(t, "bob", time.Hour, nil))
	anon := newBinding(t, base, "")
	anon.send("app.User.search", map[string]any{}) // anon joins app.User
	anon.next()
	send := func(body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/api/server/binding_send", strings.NewReader(body))
		req.Header.Set("Authorization", "apikey "+testAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	if code, body := send(`{"event": "notify", "data": {"n": 1}, "stream": "app.User", "uid": "7", "user": "alice"}`); code != 200 || !strings.Contains(body, `"event":"app.User.notify#7"`) {
		t.Fatalf("to a user: %d %s", code, body)
	}
	jsonEq(t, alice.next(), `{"event": "app.User.notify#7", "data": {"n": 1}}`)
	jsonEq(t, alice2.next(), `{"event": "app.User.notify#7", "data": {"n": 1}}`)
	bob.quiet()
	anon.quiet()
	if code, body := send(`{"event": "app.User.refresh", "data": null, "group": "app.User"}`); code != 200 {
		t.Fatalf("to a group: %d %s", code, body)
	}
	jsonEq(t, anon.next(), `{"event": "app.User.refresh", "data": null}`)
	alice.quiet()
	bob.quiet()
	if code, body := send(`{"event": "hello", "data": "all", "all": true}`); code != 200 {
		t.Fatalf("to all: %d %s", code, body)
	}
	for _, c := range []*bclient{alice, alice2, bob, anon} {
		jsonEq(t, c.next(), `{"event": "hello", "data": "all"}`)
	}
	// Django pks are integers.
	if code, body := send(`{"event": "x", "data": 1, "user": 42}`); code != 200 {
		t.Fatalf("integer user: %d %s", code, body)
	}
	for _, c := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"data": 1, "all": true}`, 400, `field \"event\" is required`},
		{`{"event": "x", "all": true}`, 400, `field \"data\" is required`},
		{`{"event": "x", "data": 1}`, 400, "exactly one of group, user, conn and all"},
		{`{"event": "x", "data": 1, "all": true, "user": "bob"}`, 400, "exactly one of group, user, conn and all"},
		{`{"event": "x", "data": 1, "all": true, "to": "bob"}`, 400, `unknown field \"to\"`},
		{`{"event": "x", "data": 1, "user": {"pk": 1}}`, 400, "must be a string or an integer"},
		{`not json`, 400, "JSON object"},
	} {
		if code, body := send(c.body); code != c.code || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s, want %d …%s…", c.body, code, body, c.code, c.msg)
		}
	}
	for _, cl := range []*bclient{alice, alice2, bob, anon} {
		cl.quiet()
	}
	// A /live client cannot listen to the wire's groups.
	lc := newLiveClient(t, base)
	if p := lc.request("$channels", "subscribe", map[string]any{"channel": binding.GroupChannel(binding.AllGroup)}); p["response_status"] != 403.0 {
		t.Fatalf("/live subscribing to $binding:__all__: %v", p)
	}
}

func TestBindingSendWireOff(t *testing.T) {
	_, base := startWith(t, func(c *config.Config) { bindingConfig(c); c.Binding.Path = "" }, Options{})
	req, _ := http.NewRequest("POST", base+"/api/server/binding_send", strings.NewReader(`{"event": "x", "data": 1, "all": true}`))
	req.Header.Set("Authorization", "apikey "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "binding.path") {
		t.Fatalf("wire off: %d %s", resp.StatusCode, body)
	}
	if code, _ := get(t, base+"/live/binding"); code != 404 {
		t.Fatalf("the wire's path with the wire off: %d", code)
	}
}

// The @channels-binding/core Consumer's flows (§A.10), imitated through
// Node's ws (tests/binding: consumer.js, flow.test.js): pending calls
// flushed on open, hashed events, passive binds on updated#pk, useSave,
// useDelete, useForm, error frames dispatched to no listener, server push,
// and reconnect after the server drops the socket.
func TestBindingNodeClient(t *testing.T) {
	dir := nodeTestDir(t, "binding", "ws")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required for the channels-binding client flows")
	}
	srv, base := startWith(t, bindingConfig, Options{})
	seedUsers(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "flow.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"SWITCHYARD_URL="+bindingURL(base, ""), "SWITCHYARD_HTTP="+base, "SWITCHYARD_API_KEY="+testAPIKey,
		"TOKEN_ALICE="+token(t, "alice", time.Hour, nil), "TOKEN_BOB="+token(t, "bob", time.Hour, nil))
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the channels-binding client flows failed: %v", err)
	}
	if !strings.Contains(string(out), "ℹ pass 8") || !strings.Contains(string(out), "ℹ fail 0") {
		t.Fatal("unexpected summary: want 8 passing and none failing")
	}
}
