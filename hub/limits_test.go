package hub

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
)

func limitedHub(t *testing.T, cfg Config) *Hub {
	t.Helper()
	b := memory.New(memory.Config{})
	cfg.Broker, cfg.Presence = b, b
	cfg.Channels = config.Channels{Default: config.DefaultChannelOptions()}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); b.Close(context.Background()) })
	return h
}

// gateWriter writes when told to: each release lets one batch through.
type gateWriter struct {
	release chan struct{}
	closed  chan int
	wrote   atomic.Int64
}

func newGateWriter() *gateWriter {
	return &gateWriter{release: make(chan struct{}, 100), closed: make(chan int, 1)}
}

func (w *gateWriter) WriteFrames(ctx context.Context, frames [][]byte) error {
	<-w.release
	for _, f := range frames {
		w.wrote.Add(int64(len(f)))
	}
	return nil
}

func (w *gateWriter) Close(code int, reason string) error {
	select {
	case w.closed <- code:
	default:
	}
	return nil
}

// closedWith waits a little for the session's close (it is asynchronous)
// and returns its code, 0 when none came.
func (w *gateWriter) closedWith(wait time.Duration) int {
	select {
	case code := <-w.closed:
		w.closed <- code
		return code
	case <-time.After(wait):
		return 0
	}
}

// The reproduction: one reply bigger than max_queued_bytes (an
// unpaginated list with two 1 MB rows) closed every client with 4008,
// however fast it read. A frame up to MaxFrameBytes now always goes into
// an empty outbox, and one such frame at a time may pass the bound; the
// slow-consumer rule still closes a session whose outbox keeps growing
// behind it.
func TestOneBigFrameIsNotASlowConsumer(t *testing.T) {
	h := limitedHub(t, Config{MaxQueuedBytes: 64 << 10, MaxFrameBytes: 4 << 20})
	big := make([]byte, 2<<20)
	small := make([]byte, 16<<10)

	// A reader: big frames, one after another, all delivered.
	w := newGateWriter()
	s := h.Connect("reader", Principal{}, w, offsetEncoder{})
	for i := range 3 {
		s.Send(big)
		s.Send(small) // a push behind the reply
		w.release <- struct{}{}
		w.release <- struct{}{}
		want := int64(i+1) * int64(len(big)+len(small))
		deadline := time.Now().Add(5 * time.Second)
		for w.wrote.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if code := w.closedWith(100 * time.Millisecond); code != 0 {
		t.Fatalf("a client that reads was closed (%d) for big frames", code)
	}

	// A client that does not read its big frame: what queues behind it is
	// bounded by MaxQueuedBytes.
	stuck := newGateWriter()
	s = h.Connect("stuck", Principal{}, stuck, offsetEncoder{})
	s.Send(big)
	for range 4 { // 64 KiB behind the big frame: still within the bound
		s.Send(small)
	}
	if code := stuck.closedWith(100 * time.Millisecond); code != 0 {
		t.Fatal("closed within the bound")
	}
	s.Send(small)
	if stuck.closedWith(5*time.Second) != CloseSlowConsumer {
		t.Fatal("an outbox growing past the bound behind an unread frame was not closed")
	}
	close(stuck.release)

	// A second big frame while the first is unread, and a frame over
	// MaxFrameBytes even into an empty outbox: closed.
	two := newGateWriter()
	s = h.Connect("two", Principal{}, two, offsetEncoder{})
	s.Send(big)
	s.Send(big)
	if two.closedWith(5*time.Second) != CloseSlowConsumer {
		t.Fatal("two big frames queued: not closed")
	}
	close(two.release)
	huge := newGateWriter()
	s = h.Connect("huge", Principal{}, huge, offsetEncoder{})
	s.Send(make([]byte, 5<<20))
	if huge.closedWith(5*time.Second) != CloseSlowConsumer {
		t.Fatal("a frame over MaxFrameBytes was queued")
	}
	close(huge.release)
	close(w.release)
}

// counted is a protocol's session value that holds subscriptions of its
// own.
type counted int

func (c counted) Subscriptions() int { return int(c) }

// limits.max_subscriptions bounds one session's subscriptions (its
// protocol's own included), limits.max_subscriptions_per_user those of
// one user across sessions; both answer CodeRateLimited naming the key,
// and unsubscribing makes room again.
func TestSubscriptionLimits(t *testing.T) {
	h := limitedHub(t, Config{MaxSubscriptions: 3, MaxUserSubscriptions: 5})
	ctx := context.Background()
	ok := func(SubscribeResult) []byte { return nil }
	limited := func(err error, key string) bool {
		var e *switchyard.Error
		return errors.As(err, &e) && e.Code == switchyard.CodeRateLimited && strings.Contains(e.Message, "("+key+")")
	}

	anon := h.Connect("anon", Principal{}, &recordWriter{}, offsetEncoder{})
	for _, ch := range []string{"a", "b", "c"} {
		if err := h.Subscribe(ctx, anon, ch, nil, ok); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Subscribe(ctx, anon, "d", nil, ok); !limited(err, "limits.max_subscriptions") {
		t.Fatalf("4th subscription: %v", err)
	}
	if err := h.SubscribeServer(ctx, anon, "d"); !limited(err, "limits.max_subscriptions") {
		t.Fatalf("4th, by the server: %v", err)
	}
	if got := h.Channels()["d"]; got != 0 {
		t.Fatalf("the refused subscription went through: %d", got)
	}
	if err := h.Unsubscribe(ctx, anon, "a"); err != nil {
		t.Fatal(err)
	}
	if err := h.Subscribe(ctx, anon, "d", nil, ok); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
	// Silent subscriptions are the protocol's to count.
	if err := h.SubscribeSilent(ctx, anon, "$x"); err != nil {
		t.Fatal(err)
	}
	anon.SetValue(counted(0))
	if err := anon.Admit(1); !limited(err, "limits.max_subscriptions") {
		t.Fatalf("Admit at the limit: %v", err)
	}

	// A user's sessions share the user limit; the protocol's own count.
	a1 := h.Connect("a1", Principal{User: "alice"}, &recordWriter{}, offsetEncoder{})
	a2 := h.Connect("a2", Principal{User: "alice"}, &recordWriter{}, offsetEncoder{})
	a1.SetValue(counted(2))
	if err := h.Subscribe(ctx, a1, "x", nil, ok); err != nil {
		t.Fatal(err)
	}
	if err := h.Subscribe(ctx, a1, "y", nil, ok); !limited(err, "limits.max_subscriptions") {
		t.Fatalf("a1 over its own limit with 2 of its protocol's: %v", err)
	}
	for _, ch := range []string{"x", "y"} {
		if err := h.Subscribe(ctx, a2, ch, nil, ok); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Subscribe(ctx, a2, "z", nil, ok); !limited(err, "limits.max_subscriptions_per_user") {
		t.Fatalf("alice's 6th: %v", err)
	}
	// Another user is not affected, and a disconnect frees alice's.
	bob := h.Connect("b", Principal{User: "bob"}, &recordWriter{}, offsetEncoder{})
	if err := h.Subscribe(ctx, bob, "z", nil, ok); err != nil {
		t.Fatal(err)
	}
	h.Disconnect(a1)
	if err := h.Subscribe(ctx, a2, "z", nil, ok); err != nil {
		t.Fatalf("after a disconnect: %v", err)
	}
}
