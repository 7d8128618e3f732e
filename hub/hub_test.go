package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

// recordWriter keeps every frame a session wrote.
type recordWriter struct {
	mu     sync.Mutex
	frames []string
	closed int
}

func (w *recordWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range frames {
		w.frames = append(w.frames, string(f))
	}
	return nil
}

func (w *recordWriter) Close(code int, reason string) error {
	w.mu.Lock()
	w.closed = code
	w.mu.Unlock()
	return nil
}

func (w *recordWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.frames)
}

func (w *recordWriter) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.frames...)
}

// offsetEncoder writes "pub:<offset>" frames.
type offsetEncoder struct{}

func (offsetEncoder) EncodePublication(ch string, pub switchyard.Publication, sp switchyard.StreamPosition) []byte {
	return fmt.Appendf(nil, "pub:%d", pub.Offset)
}
func (offsetEncoder) EncodeJoin(ch string, info switchyard.ClientInfo) []byte { return []byte("join") }
func (offsetEncoder) EncodeLeave(ch string, info switchyard.ClientInfo) []byte {
	return []byte("leave")
}

func testHub(t *testing.T, maxQueued int64) *Hub {
	t.Helper()
	b := memory.New(memory.Config{})
	opts := config.ChannelOptions{HistorySize: 1_000_000, HistoryTTL: config.Duration(time.Hour), Recover: true, Permissions: config.DefaultChannelOptions().Permissions}
	h, err := New(Config{Broker: b, Presence: b, MaxQueuedBytes: maxQueued, Channels: config.Channels{Default: config.DefaultChannelOptions(), Namespaces: []config.Namespace{{Name: "h", ChannelOptions: opts}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	return h
}

// Subscribing with recovery while publications keep arriving: the client
// sees every offset exactly once, in order, across the reply and the live
// stream.
func TestSubscribeRecoveryHasNoGapOrDuplicate(t *testing.T) {
	for round := range 20 {
		h := testHub(t, 1<<30)
		ctx := context.Background()
		for range 10 {
			h.Publish(ctx, nil, "h:x", json.RawMessage(`1`))
		}
		_, pos, _ := h.History(ctx, nil, "h:x", 0, nil, false)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					h.Publish(ctx, nil, "h:x", json.RawMessage(`2`))
				}
			}
		})
		w := &recordWriter{}
		s := h.Connect("c", Principal{}, w, offsetEncoder{})
		since := &switchyard.StreamPosition{Offset: 5, Epoch: pos.Epoch}
		err := h.Subscribe(ctx, s, "h:x", since, func(res SubscribeResult) []byte {
			b := fmt.Appendf(nil, "reply:%v:%d", res.Recovered, res.Offset)
			for _, p := range res.Publications {
				b = fmt.Appendf(b, ",%d", p.Offset)
			}
			return b
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // let live publications flow
		close(stop)
		wg.Wait()
		h.writers.Wait()
		frames := w.snapshot()
		var reply string
		var recoveredOffsets []uint64
		var replyOffset uint64
		var recovered bool
		reply = frames[0]
		var rest string
		if _, err := fmt.Sscanf(reply, "reply:%t:%d", &recovered, &replyOffset); err != nil {
			t.Fatalf("first frame %q", reply)
		}
		if i := len(fmt.Sprintf("reply:%v:%d", recovered, replyOffset)); i < len(reply) {
			rest = reply[i:]
		}
		for _, part := range splitComma(rest) {
			var o uint64
			fmt.Sscanf(part, "%d", &o)
			recoveredOffsets = append(recoveredOffsets, o)
		}
		if !recovered || len(recoveredOffsets) == 0 || recoveredOffsets[0] != 6 || recoveredOffsets[len(recoveredOffsets)-1] != replyOffset {
			t.Fatalf("round %d: reply %q", round, reply)
		}
		next := replyOffset + 1
		for _, f := range frames[1:] {
			var o uint64
			if _, err := fmt.Sscanf(f, "pub:%d", &o); err != nil {
				t.Fatalf("frame %q", f)
			}
			if o != next {
				t.Fatalf("round %d: live offset %d after %d", round, o, next-1)
			}
			next++
		}
	}
}

func splitComma(s string) []string {
	var out []string
	for len(s) > 0 {
		if s[0] == ',' {
			s = s[1:]
		}
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		if i > 0 {
			out = append(out, s[:i])
		}
		s = s[i:]
	}
	return out
}

// A session whose transport is stuck is closed with 4008 once its outbox
// is full, and the publisher is not slowed.
func TestSlowConsumerOutboxBound(t *testing.T) {
	h := testHub(t, 4096)
	ctx := context.Background()
	stuck := &blockingWriter{release: make(chan struct{}), closed: make(chan int, 1)}
	s := h.Connect("slow", Principal{}, stuck, offsetEncoder{})
	fast := &recordWriter{}
	f := h.Connect("fast", Principal{}, fast, offsetEncoder{})
	for _, sess := range []*Session{s, f} {
		if err := h.Subscribe(ctx, sess, "news", nil, func(SubscribeResult) []byte { return []byte("ok") }); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for i := range 5000 {
		if _, err := h.Publish(ctx, nil, "news", json.RawMessage(`"abcdefghijklmnopqrstuvwxyz"`)); err != nil {
			t.Fatal(err)
		}
		// The fast session keeps up (it has written this publication
		// before the next one), the stuck one never drains.
		deadline := time.Now().Add(5 * time.Second)
		for fast.count() < i+2 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("publishing took %v with a stuck subscriber", d)
	}
	select {
	case code := <-stuck.closed:
		if code != CloseSlowConsumer {
			t.Fatalf("closed with %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("slow session not closed")
	}
	close(stuck.release)
	h.Disconnect(s)
	h.writers.Wait()
	if got := len(fast.snapshot()); got != 5001 { // the reply and every publication
		t.Fatalf("fast session got %d frames", got)
	}
}

type blockingWriter struct {
	release chan struct{}
	closed  chan int
}

func (w *blockingWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	<-w.release
	return nil
}

func (w *blockingWriter) Close(code int, reason string) error {
	select {
	case w.closed <- code:
	default:
	}
	return nil
}

func TestChannelRules(t *testing.T) {
	h := testHub(t, 1<<20)
	alice := h.Connect("a", Principal{User: "alice"}, &recordWriter{}, offsetEncoder{})
	anon := h.Connect("b", Principal{}, &recordWriter{}, offsetEncoder{})
	ok := func(SubscribeResult) []byte { return nil }
	ctx := context.Background()
	if err := h.Subscribe(ctx, alice, "h:dm#alice,bob", nil, ok); err != nil {
		t.Fatalf("alice in her channel: %v", err)
	}
	for _, tc := range []struct {
		s    *Session
		ch   string
		code switchyard.Code
	}{
		{anon, "h:dm#alice,bob", switchyard.CodeForbidden},
		{alice, "h:dm#carol", switchyard.CodeForbidden},
		{alice, "zz:x", switchyard.CodeNotFound},
		{alice, "$resource:x", switchyard.CodeForbidden},
		{alice, "", switchyard.CodeBadRequest},
		{alice, "bad\x00name", switchyard.CodeBadRequest},
	} {
		err := h.Subscribe(ctx, tc.s, tc.ch, nil, ok)
		if switchyard.ErrorCode(err) != tc.code {
			t.Errorf("%q: %v, want %s", tc.ch, err, tc.code)
		}
	}
	// The server may publish anywhere, clients only where allowed.
	if _, err := h.Publish(ctx, nil, "plain", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(ctx, alice, "plain", json.RawMessage(`{}`)); switchyard.ErrorCode(err) != switchyard.CodeForbidden {
		t.Fatalf("client publish to a publish:none namespace: %v", err)
	}
	if _, err := h.Publish(ctx, nil, "plain", json.RawMessage(`{not json`)); switchyard.ErrorCode(err) != switchyard.CodeBadRequest {
		t.Fatalf("invalid JSON: %v", err)
	}
	if got := h.Channels()["h:dm#alice,bob"]; got != 1 {
		t.Fatalf("channels %v", h.Channels())
	}
	h.Disconnect(alice)
	if len(h.Channels()) != 0 || h.NumSessions() != 1 {
		t.Fatalf("after disconnect: %v, %d sessions", h.Channels(), h.NumSessions())
	}
}

func (offsetEncoder) EncodeSubscribed(res SubscribeResult) []byte {
	return []byte("subscribed:" + res.Channel)
}
func (offsetEncoder) EncodeUnsubscribed(ch string) []byte { return []byte("unsubscribed:" + ch) }

// A publication with an audience reaches only the users it includes: live,
// in a recovering subscribe's reply, and in a client's history read; the
// server's history read sees everything.
func TestPublishAudience(t *testing.T) {
	h := testHub(t, 1<<20)
	ctx := context.Background()
	writers := map[string]*recordWriter{}
	sessions := map[string]*Session{}
	for _, u := range []string{"ann", "bob", "cat", ""} {
		w := &recordWriter{}
		s := h.Connect("c-"+u, Principal{User: u}, w, offsetEncoder{})
		if err := h.SubscribeSilent(ctx, s, "h:room"); err != nil {
			t.Fatal(err)
		}
		writers[u], sessions[u] = w, s
	}
	mustPublish := func(aud switchyard.Audience) {
		t.Helper()
		if _, err := h.PublishAudience(ctx, "h:room", json.RawMessage(`{}`), aud); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish(switchyard.Audience{})                                                            // 1: everyone
	mustPublish(switchyard.Audience{Users: []string{"ann", "bob"}})                               // 2: ann, bob
	mustPublish(switchyard.Audience{ExceptUsers: []string{"ann"}})                                // 3: all but ann
	mustPublish(switchyard.Audience{Users: []string{"ann", "bob"}, ExceptUsers: []string{"bob"}}) // 4: ann
	h.writers.Wait()
	want := map[string][]string{
		"ann": {"pub:1", "pub:2", "pub:4"},
		"bob": {"pub:1", "pub:2", "pub:3"},
		"cat": {"pub:1", "pub:3"},
		"":    {"pub:1", "pub:3"},
	}
	for u, frames := range want {
		if got := writers[u].snapshot(); fmt.Sprint(got) != fmt.Sprint(frames) {
			t.Errorf("user %q got %v, want %v", u, got, frames)
		}
	}
	offsets := func(pubs []switchyard.Publication) []uint64 {
		var out []uint64
		for _, p := range pubs {
			out = append(out, p.Offset)
		}
		return out
	}
	if pubs, _, err := h.History(ctx, sessions["cat"], "h:room", 0, nil, false); err != nil || fmt.Sprint(offsets(pubs)) != "[1 3]" {
		t.Errorf("cat's history %v %v, want [1 3]", offsets(pubs), err)
	}
	if pubs, _, err := h.History(ctx, nil, "h:room", 0, nil, false); err != nil || fmt.Sprint(offsets(pubs)) != "[1 2 3 4]" {
		t.Errorf("server history %v %v, want [1 2 3 4]", offsets(pubs), err)
	}
	// Recovery: bob resubscribes from offset 0 of the same epoch.
	_, pos, _ := h.History(ctx, nil, "h:room", 0, nil, false)
	w := &recordWriter{}
	s := h.Connect("c-bob2", Principal{User: "bob"}, w, offsetEncoder{})
	var got []uint64
	err := h.Subscribe(ctx, s, "h:room", &switchyard.StreamPosition{Offset: 0, Epoch: pos.Epoch}, func(res SubscribeResult) []byte {
		got = offsets(res.Publications)
		return []byte("reply")
	})
	if err != nil || fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("bob's recovery %v %v, want [1 2 3]", got, err)
	}
}
