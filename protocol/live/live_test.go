package live

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/store"
	"github.com/switchyardhq/switchyard/store/sqlite"
)

// frames is a hub.Writer that keeps what the session wrote.
type frames struct {
	mu    sync.Mutex
	got   [][]byte
	wrote chan struct{} // signalled after each write
}

func (f *frames) WriteFrames(ctx context.Context, b [][]byte) error {
	f.mu.Lock()
	f.got = append(f.got, b...)
	f.mu.Unlock()
	select {
	case f.wrote <- struct{}{}:
	default:
	}
	return nil
}
func (f *frames) Close(int, string) error { return nil }

func testHandler(tb testing.TB) (*Handler, *session, *frames) {
	tb.Helper()
	b := memory.New(memory.Config{})
	open := config.ChannelPermissions{Subscribe: "anyone", Publish: "anyone", Presence: "anyone", History: "anyone"}
	hb, err := hub.New(hub.Config{Broker: b, Presence: b, Channels: config.Channels{
		Default:    config.DefaultChannelOptions(),
		Namespaces: []config.Namespace{{Name: "chat", ChannelOptions: config.ChannelOptions{Presence: true, HistorySize: 10, HistoryTTL: config.Duration(time.Hour), Recover: true, Permissions: open}}},
	}, Reserved: map[string]config.ChannelOptions{"$resource": {}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hb.Close(); b.Close(context.Background()) })
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "live.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	svc, err := resource.NewService(context.Background(), resource.ServiceConfig{Store: db, Resources: []config.Resource{{
		Name: "todos", PKField: "id", PageSize: 25,
		Fields:      []config.Field{{Name: "title", Type: config.FieldString}},
		Permissions: config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"},
	}, {
		Name: "notes", PKField: "id", PageSize: 25,
		Fields:      []config.Field{{Name: "title", Type: config.FieldString}, {Name: "owner", Type: config.FieldString}},
		Permissions: config.ResourcePermissions{Read: "owner:owner", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := svc.Create(context.Background(), "todos", resource.As(""), json.RawMessage(`{"title": "one"}`)); err != nil {
		tb.Fatal(err)
	}
	h := New(Config{Hub: hb, Resources: svc})
	w := &frames{wrote: make(chan struct{}, 1)}
	return h, &session{hs: hb.Connect("fuzz", hub.Principal{}, w, h.enc)}, w
}

// Whatever a client sends, the handler answers with well-formed frames
// and never panics.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"stream":"$channels","payload":{"action":"subscribe","request_id":1,"channel":"chat:a"}}`,
		`{"stream":"$channels","payload":{"action":"publish","request_id":2,"channel":"chat:a","data":{"x":[1,2]}}}`,
		`{"stream":"$channels","payload":{"action":"history","request_id":3,"channel":"chat:a","since":{"offset":1,"epoch":"e"},"limit":2}}`,
		`{"stream":"$channels","payload":{"action":"presence","channel":"chat:a"}}`,
		`{"stream":"$session","payload":{"action":"refresh","token":"x"}}`,
		`{"stream":"todos","payload":{"action":"list"}}`,
		`{"stream":"$channels","payload":{"action":"subscribe","channel":"chat:a","since":"x"}}`,
		`{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"a","pk":1,"since":0}}`,
		`{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"b","pk":1,"since":1}}`,
		`{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"c","pk":"1","since":99999999999}}`,
		`{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"d","pk":1,"since":-3}}`,
		`{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"e","pk":1,"since":{"offset":1}}}`,
		`{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"f","pk":2,"since":null}}`,
		`{"stream":"todos","payload":{"action":"unsubscribe_instance","request_id":"a","pk":1}}`,
		`not json`, `[]`, `{"stream":1}`, `{"payload":null}`,
	} {
		f.Add([]byte(s))
	}
	h, sess, w := testHandler(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h.handle(sess, data)
		w.mu.Lock()
		got := w.got
		w.got = nil
		w.mu.Unlock()
		for _, fr := range got {
			var env struct {
				Stream  string         `json:"stream"`
				Payload map[string]any `json:"payload"`
			}
			if err := json.Unmarshal(fr, &env); err != nil || env.Stream == "" || env.Payload == nil {
				t.Fatalf("malformed frame %q for input %q", fr, data)
			}
		}
	})
}

func TestRepliesKeepRequestOrder(t *testing.T) {
	h, sess, w := testHandler(t)
	for _, s := range []string{
		`{"stream":"$channels","payload":{"action":"subscribe","request_id":"a","channel":"chat:o"}}`,
		`{"stream":"$channels","payload":{"action":"publish","request_id":"b","channel":"chat:o","data":1}}`,
		`{"stream":"$channels","payload":{"action":"nope","request_id":"c"}}`,
	} {
		h.handle(sess, []byte(s))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := len(w.got)
		w.mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var order []string
	for _, fr := range w.got {
		var env struct {
			Payload struct {
				Action    string `json:"action"`
				RequestID any    `json:"request_id"`
				Status    int    `json:"response_status"`
			} `json:"payload"`
		}
		json.Unmarshal(fr, &env)
		order = append(order, env.Payload.Action)
	}
	// subscribe reply, own join, publish reply and the message (in the
	// order the hub queued them), then the 405.
	if len(order) != 5 || order[0] != "subscribe" || order[4] != "nope" {
		t.Fatalf("order %v", order)
	}
}

func BenchmarkEncodePublication(b *testing.B) {
	enc := &encoder{}
	pub := switchyard.Publication{Offset: 42, Data: json.RawMessage(`{"text":"hello, world","n":12345}`), Info: &switchyard.ClientInfo{ClientID: "6ZL4ZQABCDEFGHIJKLMNOPQRST", User: "alice"}}
	sp := switchyard.StreamPosition{Offset: 42, Epoch: "Xk3qT2LP"}
	b.ReportAllocs()
	for b.Loop() {
		enc.EncodePublication("chat:lobby", pub, sp)
	}
}

// exchange sends one frame and returns the n frames the session then
// wrote (the session's writer runs on its own goroutine).
func exchange(t *testing.T, h *Handler, sess *session, w *frames, frame string, n int) []string {
	t.Helper()
	h.handle(sess, []byte(frame))
	deadline := time.After(5 * time.Second)
	for {
		w.mu.Lock()
		if len(w.got) >= n {
			var out []string
			for _, f := range w.got {
				out = append(out, string(f))
			}
			w.got = nil
			w.mu.Unlock()
			if len(out) != n {
				t.Fatalf("%s: %d frames %q", frame, len(out), out)
			}
			return out
		}
		w.mu.Unlock()
		select {
		case <-w.wrote:
		case <-deadline:
			t.Fatalf("%s: timed out waiting for %d frames", frame, n)
		}
	}
}

// since is decoded per stream: a stream position on $channels (with the
// error it always had), a change-log seq on resource streams.
func TestSinceDecodedPerStream(t *testing.T) {
	h, sess, w := testHandler(t)
	wait := func(n int, frame string) []string { return exchange(t, h, sess, w, frame, n) }
	got := wait(1, `{"stream":"$channels","payload":{"action":"subscribe","request_id":1,"channel":"chat:a","since":"x"}}`)
	if !strings.Contains(got[0], `"invalid payload: field since must be switchyard.StreamPosition"`) || !strings.Contains(got[0], `"response_status":400`) {
		t.Fatalf("$channels since of the wrong type: %s", got[0])
	}
	got = wait(1, `{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"s","pk":1,"since":"x"}}`)
	if !strings.Contains(got[0], `"errors":[{"since":["A valid integer is required."]}]`) {
		t.Fatalf("resource since of the wrong type: %s", got[0])
	}
	got = wait(1, `{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"s","pk":1,"since":0}}`)
	if !strings.Contains(got[0], `"data":{"seq":1,"recovered":true}`) || !strings.Contains(got[0], `"response_status":201`) {
		t.Fatalf("since 0: %q", got)
	}
	// From the record's creation (seq 1): nothing changed since.
	got = wait(1, `{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"t","pk":1,"since":1}}`)
	if !strings.Contains(got[0], `"data":{"seq":1,"recovered":true}`) {
		t.Fatalf("since 1: %q", got)
	}
	// A number that is not an integer is refused like a string.
	got = wait(1, `{"stream":"todos","payload":{"action":"subscribe_instance","request_id":"u","pk":1,"since":0.0}}`)
	if !strings.Contains(got[0], `"response_status":400`) {
		t.Fatalf("since 0.0: %q", got)
	}
}

// A live query's events never reach the client before its subscribe
// reply: an event that comes between the subscription and the reply is
// held, and goes out right after the reply. Holding does not widen what
// a query receives: bob, subscribed the same way to notes he may not
// read (owner:owner), holds nothing and receives only his reply.
func TestListEventsWaitForTheReply(t *testing.T) {
	h, _, _ := testHandler(t)
	ctx := context.Background()
	svc, hb := h.cfg.Resources, h.cfg.Hub
	ch := resource.CollectionChannel("notes")
	type sub struct {
		sess *session
		w    *frames
		ls   *listSub
	}
	subscribe := func(user string) sub {
		w := &frames{wrote: make(chan struct{}, 1)}
		sess := &session{hs: hb.Connect(user, hub.Principal{User: user}, w, h.enc)}
		sess.hs.SetValue(sess)
		q, err := svc.LiveQuery("notes", resource.As(user), resource.LiveFilter{})
		if err != nil {
			t.Fatal(err)
		}
		ls := &listSub{rid: json.RawMessage(`"lq"`), q: q, holding: true}
		sess.addList(ch, ls)
		if err := h.subscribeEvents(ctx, sess, ch); err != nil {
			t.Fatal(err)
		}
		return sub{sess, w, ls}
	}
	alice, bob := subscribe("alice"), subscribe("bob")
	// alice's note, created now, published as the server's OnChange does.
	pos, err := svc.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := resource.Event{Resource: "notes", PK: 1, Op: store.OpCreate, Seq: pos + 1, Data: json.RawMessage(`{"id":1,"title":"between","owner":"alice"}`)}
	for _, c := range ev.Channels() {
		if _, err := hb.PublishOrdered(ctx, c, ev.Payload(), ev.Sequence()); err != nil {
			t.Fatal(err)
		}
	}
	held := func(s sub) int {
		s.sess.smu.Lock()
		defer s.sess.smu.Unlock()
		return len(s.ls.held)
	}
	eventually(t, 5*time.Second, func() error {
		if n := held(alice); n != 1 {
			return fmt.Errorf("%d events held", n)
		}
		return nil
	})
	time.Sleep(20 * time.Millisecond) // a frame queued wrongly would be written by now
	written := func(s sub) [][]byte {
		s.w.mu.Lock()
		defer s.w.mu.Unlock()
		return append([][]byte(nil), s.w.got...)
	}
	for name, s := range map[string]sub{"alice": alice, "bob": bob} {
		if got := written(s); len(got) != 0 {
			t.Fatalf("%d frames reached %s before the reply: %q", len(got), name, got)
		}
	}
	if n := held(bob); n != 0 {
		t.Fatalf("bob holds %d events of alice's note", n)
	}
	alice.sess.releaseList(alice.ls, []byte("REPLY"))
	bob.sess.releaseList(bob.ls, []byte("REPLY"))
	eventually(t, 5*time.Second, func() error {
		if n := len(written(alice)); n < 2 {
			return fmt.Errorf("alice got %d frames", n)
		}
		if n := len(written(bob)); n < 1 {
			return fmt.Errorf("bob got %d frames", n)
		}
		return nil
	})
	time.Sleep(20 * time.Millisecond) // anything more for bob would be written by now
	if got := written(alice); string(got[0]) != "REPLY" || !strings.Contains(string(got[1]), `"between"`) || !strings.Contains(string(got[1]), `"request_id":"lq"`) {
		t.Fatalf("alice's frames %q: want the reply, then the event", got)
	}
	if got := written(bob); len(got) != 1 || string(got[0]) != "REPLY" {
		t.Fatalf("bob's frames %q: want his reply only", got)
	}
	for _, s := range []sub{alice, bob} {
		s.sess.smu.Lock()
		holding := s.ls.holding
		s.sess.smu.Unlock()
		if holding {
			t.Fatal("a query still holds its events after the reply")
		}
	}
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
