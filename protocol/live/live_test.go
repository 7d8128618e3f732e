package live

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
)

// frames is a hub.Writer that keeps what the session wrote.
type frames struct {
	mu  sync.Mutex
	got [][]byte
}

func (f *frames) WriteFrames(ctx context.Context, b [][]byte) error {
	f.mu.Lock()
	f.got = append(f.got, b...)
	f.mu.Unlock()
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
	}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hb.Close(); b.Close(context.Background()) })
	h := New(Config{Hub: hb})
	w := &frames{}
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
